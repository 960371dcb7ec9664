package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Memory is an in-memory Store for unit tests of other packages. It keeps the
// full contract (revisions, conflicts, ordering, sequences) but nothing
// survives the process; Guardian itself uses store/bolt.
type Memory struct {
	mu      sync.Mutex
	closed  bool
	rev     uint64
	buckets map[string]map[string]KV
	seqs    map[string]uint64
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{buckets: map[string]map[string]KV{}, seqs: map[string]uint64{}}
}

// begin validates the call and locks m; callers must unlock.
func (m *Memory) begin(ctx context.Context, bucket string, key *string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckBucket(bucket); err != nil {
		return err
	}
	if key != nil {
		if err := CheckKey(*key); err != nil {
			return err
		}
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return fmt.Errorf("memory store: %w", ErrClosed)
	}
	return nil
}

// Get returns the value of key in bucket, or ErrNotFound.
func (m *Memory) Get(ctx context.Context, bucket, key string) (KV, error) {
	if err := m.begin(ctx, bucket, &key); err != nil {
		return KV{}, err
	}
	defer m.mu.Unlock()
	kv, ok := m.buckets[bucket][key]
	if !ok {
		return KV{}, fmt.Errorf("getting key %s/%s: %w", bucket, key, ErrNotFound)
	}
	kv.Value = slices.Clone(kv.Value)
	return kv, nil
}

// Put writes value if the stored revision equals rev (0: must not exist).
func (m *Memory) Put(ctx context.Context, bucket, key string, value []byte, rev uint64) (uint64, error) {
	if err := m.begin(ctx, bucket, &key); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	b := m.buckets[bucket]
	if b == nil {
		b = map[string]KV{}
		m.buckets[bucket] = b
	}
	if cur := b[key].Revision; cur != rev {
		return 0, fmt.Errorf("putting key %s/%s at revision %d (stored %d): %w", bucket, key, rev, cur, ErrConflict)
	}
	m.rev++
	v := slices.Clone(value)
	if v == nil {
		v = []byte{}
	}
	b[key] = KV{Key: key, Value: v, Revision: m.rev}
	return m.rev, nil
}

// Delete removes key from bucket; a missing key is not an error.
func (m *Memory) Delete(ctx context.Context, bucket, key string) error {
	if err := m.begin(ctx, bucket, &key); err != nil {
		return err
	}
	defer m.mu.Unlock()
	delete(m.buckets[bucket], key)
	return nil
}

// List returns every value of bucket, ordered by key.
func (m *Memory) List(ctx context.Context, bucket string) ([]KV, error) {
	if err := m.begin(ctx, bucket, nil); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	out := make([]KV, 0, len(m.buckets[bucket]))
	for _, kv := range m.buckets[bucket] {
		kv.Value = slices.Clone(kv.Value)
		out = append(out, kv)
	}
	slices.SortFunc(out, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// NextID returns the next number of bucket's sequence, starting at 1.
func (m *Memory) NextID(ctx context.Context, bucket string) (uint64, error) {
	if err := m.begin(ctx, bucket, nil); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	m.seqs[bucket]++
	return m.seqs[bucket], nil
}

// Close marks the store closed; later calls return ErrClosed.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
