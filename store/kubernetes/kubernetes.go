// Package kubernetes keeps Guardian's durable state in the cluster, so that
// several replicas share it and a new leader takes over open incidents: one
// ConfigMap per key, its resourceVersion as the revision, so every write is
// an optimistic-concurrency update checked by the API server.
package kubernetes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/rollback-guardian/guardian/store"
)

// Labels and annotations on the ConfigMaps.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelStore     = "guardian.rollback-guardian.io/store"
	LabelBucket    = "guardian.rollback-guardian.io/bucket"
	AnnotationKey  = "guardian.rollback-guardian.io/key"
	// AnnotationWrite is unique per write: the API server skips an update
	// that changes nothing, without a new resourceVersion, which would let
	// two writers "win" the same revision. A nonce makes every write real.
	AnnotationWrite = "guardian.rollback-guardian.io/write"
	valueKey        = "value"
	counterKey      = "next"
)

// maxNameLen is the longest ConfigMap name.
const maxNameLen = 253

// Store is a store.Store over ConfigMaps in one namespace.
type Store struct {
	client k8s.Interface
	ns     string
	prefix string
	closed atomic.Bool
}

var _ store.Store = (*Store)(nil)

// New returns a store keeping its ConfigMaps in namespace, their names
// starting with prefix (a DNS label such as "guardian").
func New(client k8s.Interface, namespace, prefix string) (*Store, error) {
	if namespace == "" {
		return nil, errors.New("kubernetes store: namespace is required")
	}
	if prefix == "" || len(prefix) > 40 || sanitize(prefix) != prefix {
		return nil, fmt.Errorf("kubernetes store: prefix %q must be a lowercase DNS label of at most 40 characters", prefix)
	}
	return &Store{client: client, ns: namespace, prefix: prefix}, nil
}

func (s *Store) check(ctx context.Context, bucket string, key *string) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := store.CheckBucket(bucket); err != nil {
		return err
	}
	if key != nil {
		return store.CheckKey(*key)
	}
	return nil
}

// name maps a bucket and key to a ConfigMap name: readable where the key
// allows, with a hash suffix where it had to be changed or shortened.
func (s *Store) name(bucket, key string) string {
	base := s.prefix + "-" + bucket + "-"
	k := sanitize(key)
	if k != key || len(base)+len(k) > maxNameLen {
		h := fnv.New32a()
		h.Write([]byte(key))
		suffix := fmt.Sprintf("-%08x", h.Sum32())
		if room := maxNameLen - len(base) - len(suffix); len(k) > room {
			k = k[:room]
		}
		k = strings.TrimRight(k, "-.") + suffix
	}
	return base + k
}

// sanitize lowercases s and replaces what a ConfigMap name cannot hold.
func sanitize(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-.")
}

func revision(cm *corev1.ConfigMap) (uint64, error) {
	rv, err := strconv.ParseUint(cm.ResourceVersion, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("configmap %s: resourceVersion %q is not a number", cm.Name, cm.ResourceVersion)
	}
	return rv, nil
}

func (s *Store) wrap(op, bucket, key string, err error) error {
	return fmt.Errorf("kubernetes store: %s %s/%s in namespace %s: %w", op, bucket, key, s.ns, err)
}

// Get returns the value of key in bucket, or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, bucket, key string) (store.KV, error) {
	if err := s.check(ctx, bucket, &key); err != nil {
		return store.KV{}, err
	}
	cm, err := s.client.CoreV1().ConfigMaps(s.ns).Get(ctx, s.name(bucket, key), metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && cm.Annotations[AnnotationKey] != key {
		return store.KV{}, store.ErrNotFound
	}
	if err != nil {
		return store.KV{}, s.wrap("get", bucket, key, err)
	}
	return s.kv(cm)
}

func (s *Store) kv(cm *corev1.ConfigMap) (store.KV, error) {
	rev, err := revision(cm)
	if err != nil {
		return store.KV{}, err
	}
	return store.KV{Key: cm.Annotations[AnnotationKey], Value: slices.Clone(cm.BinaryData[valueKey]), Revision: rev}, nil
}

// Put writes value when the key's revision is rev (0: it must not exist);
// the API server checks it, so two replicas can never both win.
func (s *Store) Put(ctx context.Context, bucket, key string, value []byte, rev uint64) (uint64, error) {
	if err := s.check(ctx, bucket, &key); err != nil {
		return 0, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:        s.name(bucket, key),
			Namespace:   s.ns,
			Labels:      map[string]string{LabelManagedBy: "guardian", LabelStore: s.prefix, LabelBucket: bucket},
			Annotations: map[string]string{AnnotationKey: key, AnnotationWrite: nonce()},
		},
		BinaryData: map[string][]byte{valueKey: slices.Clone(value)},
	}
	var (
		out *corev1.ConfigMap
		err error
	)
	if rev == 0 {
		out, err = s.client.CoreV1().ConfigMaps(s.ns).Create(ctx, cm, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return 0, store.ErrConflict
		}
	} else {
		cm.ResourceVersion = strconv.FormatUint(rev, 10)
		out, err = s.client.CoreV1().ConfigMaps(s.ns).Update(ctx, cm, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return 0, store.ErrConflict
		}
	}
	if err != nil {
		return 0, s.wrap("put", bucket, key, err)
	}
	return revision(out)
}

// nonce returns 16 random hex digits.
func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, bucket, key string) error {
	if err := s.check(ctx, bucket, &key); err != nil {
		return err
	}
	err := s.client.CoreV1().ConfigMaps(s.ns).Delete(ctx, s.name(bucket, key), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return s.wrap("delete", bucket, key, err)
	}
	return nil
}

// List returns the bucket's values ordered by key.
func (s *Store) List(ctx context.Context, bucket string) ([]store.KV, error) {
	if err := s.check(ctx, bucket, nil); err != nil {
		return nil, err
	}
	sel := fmt.Sprintf("%s=%s,%s=%s", LabelStore, s.prefix, LabelBucket, bucket)
	list, err := s.client.CoreV1().ConfigMaps(s.ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, s.wrap("list", bucket, "*", err)
	}
	out := make([]store.KV, 0, len(list.Items))
	for i := range list.Items {
		cm := &list.Items[i]
		if _, ok := cm.BinaryData[valueKey]; !ok {
			continue // a sequence counter
		}
		kv, err := s.kv(cm)
		if err != nil {
			return nil, err
		}
		out = append(out, kv)
	}
	slices.SortFunc(out, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// NextID increments the bucket's counter with compare-and-swap updates.
func (s *Store) NextID(ctx context.Context, bucket string) (uint64, error) {
	if err := s.check(ctx, bucket, nil); err != nil {
		return 0, err
	}
	name := s.prefix + "-seq-" + bucket
	cms := s.client.CoreV1().ConfigMaps(s.ns)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(time.Duration(min(attempt, 20)) * 5 * time.Millisecond):
			}
		}
		cm, err := cms.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = cms.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.ns,
					Labels: map[string]string{LabelManagedBy: "guardian", LabelStore: s.prefix, LabelBucket: bucket}},
				Data: map[string]string{counterKey: "1"},
			}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return 0, s.wrap("next id", bucket, "", err)
			}
			return 1, nil
		}
		if err != nil {
			return 0, s.wrap("next id", bucket, "", err)
		}
		n, err := strconv.ParseUint(cm.Data[counterKey], 10, 64)
		if err != nil {
			return 0, s.wrap("next id", bucket, "", fmt.Errorf("counter %q: %w", cm.Data[counterKey], err))
		}
		cm.Data[counterKey] = strconv.FormatUint(n+1, 10)
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
			continue
		} else if err != nil {
			return 0, s.wrap("next id", bucket, "", err)
		}
		return n + 1, nil
	}
}

// Close makes later calls fail with store.ErrClosed.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}
