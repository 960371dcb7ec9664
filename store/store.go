// Package store is Guardian's durable state seam: a small key-value store of
// named buckets with optimistic concurrency, used by the incident manager,
// the notification outbox and the watch stage's learnt state. The embedded bbolt implementation (store/bolt) is
// the default; NewMemory serves unit tests; a Kubernetes-backed one
// (ConfigMaps with resourceVersion checks) can be added behind the same
// interface without touching callers.
package store

import (
	"context"
	"errors"
	"fmt"
)

// Errors callers branch on with errors.Is.
var (
	// ErrNotFound means the key does not exist in the bucket.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a Put's expected revision did not match the stored
	// one: someone else wrote (or created, or deleted) the key first. Re-read
	// and retry.
	ErrConflict = errors.New("revision conflict")
	// ErrClosed means the store was used after Close.
	ErrClosed = errors.New("store closed")
)

// KV is one stored value and the revision it was written at.
type KV struct {
	Key   string
	Value []byte
	// Revision identifies this write of the key. It is never 0 for a stored
	// value; compare revisions only for equality.
	Revision uint64
}

// Store is a durable key-value store of named buckets. Bucket and key names
// are restricted to a portable set (see CheckBucket and CheckKey); keys in a
// bucket are ordered bytewise; Key makes numeric IDs sort in numeric order. Values are
// copied in and out: callers may reuse their slices. All methods are safe for
// concurrent use.
type Store interface {
	// Get returns the value of key in bucket, or ErrNotFound.
	Get(ctx context.Context, bucket, key string) (KV, error)
	// Put writes value if the stored revision of key equals rev (0: the key
	// must not exist) and returns the new revision; otherwise it returns
	// ErrConflict and writes nothing. Revisions are never reused, so a key
	// that is deleted and created again does not match an old revision.
	Put(ctx context.Context, bucket, key string, value []byte, rev uint64) (uint64, error)
	// Delete removes key from bucket. Deleting a missing key is not an
	// error, so an acknowledgement can be repeated after a crash.
	Delete(ctx context.Context, bucket, key string) error
	// List returns every value of bucket, ordered by key. A bucket that was
	// never written is empty.
	List(ctx context.Context, bucket string) ([]KV, error)
	// NextID returns the next number of bucket's sequence, starting at 1.
	// It increases monotonically, never repeats and survives restarts.
	NextID(ctx context.Context, bucket string) (uint64, error)
	// Close releases the store. Later calls return ErrClosed.
	Close() error
}

// keyDigits is wide enough for any uint64.
const keyDigits = 20

// Key returns id as a zero-padded decimal string, so that keys made from
// NextID sort in numeric order.
func Key(id uint64) string {
	return fmt.Sprintf("%0*d", keyDigits, id)
}

// Name limits, chosen so that every implementation can hold any bucket and
// key: a bucket may become part of a Kubernetes object name, a key a
// ConfigMap data key.
const (
	maxBucketLen = 63
	maxKeyLen    = 253
)

// ErrInvalidName means a bucket or key name is outside the portable set.
var ErrInvalidName = errors.New("invalid name")

// CheckBucket validates a bucket name: 1 to 63 of a-z, 0-9 and "-", not
// starting or ending with "-" (a DNS label, usable in a ConfigMap name).
// Every implementation calls it so that all of them accept the same names.
func CheckBucket(bucket string) error {
	if len(bucket) == 0 || len(bucket) > maxBucketLen || bucket[0] == '-' || bucket[len(bucket)-1] == '-' {
		return fmt.Errorf("bucket %q: %w", bucket, ErrInvalidName)
	}
	for i := 0; i < len(bucket); i++ {
		c := bucket[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("bucket %q: %w", bucket, ErrInvalidName)
		}
	}
	return nil
}

// CheckKey validates a key: 1 to 253 of a-z, A-Z, 0-9, "-", "_" and "."
// (a ConfigMap data key). Every implementation calls it.
func CheckKey(key string) error {
	if len(key) == 0 || len(key) > maxKeyLen || key == "." || key == ".." {
		return fmt.Errorf("key %q: %w", key, ErrInvalidName)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("key %q: %w", key, ErrInvalidName)
		}
	}
	return nil
}
