// Package storetest is the contract every store.Store implementation passes:
// the same table of behaviours runs against the in-memory store, bbolt and
// any later backend.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/rollback-guardian/guardian/store"
)

// Run runs the contract against stores made by open, one fresh, empty store
// per subtest. open registers its own cleanup; Run closes stores it tests
// Close on.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		f    func(t *testing.T, s store.Store)
	}{
		{"get missing key is ErrNotFound", testGetMissing},
		{"put creates then get reads it back", testPutGet},
		{"put with wrong revision conflicts and writes nothing", testConflict},
		{"delete removes and is idempotent", testDelete},
		{"recreated key gets a fresh revision", testRecreate},
		{"list is ordered by key and per bucket", testList},
		{"values are copied in and out", testCopies},
		{"next id is monotonic per bucket", testNextID},
		{"concurrent puts: exactly one wins per revision", testConcurrentPuts},
		{"concurrent next ids are unique", testConcurrentNextID},
		{"invalid names are rejected", testInvalidNames},
		{"cancelled context is refused", testCancelled},
		{"use after close is ErrClosed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.f(t, open(t))
		})
	}
}

func mustPut(t *testing.T, s store.Store, bucket, key, value string, rev uint64) uint64 {
	t.Helper()
	r, err := s.Put(context.Background(), bucket, key, []byte(value), rev)
	if err != nil {
		t.Fatalf("Put(%s/%s, rev %d): %v", bucket, key, rev, err)
	}
	if r == 0 {
		t.Fatalf("Put(%s/%s) returned revision 0", bucket, key)
	}
	return r
}

func testGetMissing(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.Get(ctx, "b", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get in a missing bucket: err = %v, want ErrNotFound", err)
	}
	mustPut(t, s, "b", "other", "x", 0)
	if _, err := s.Get(ctx, "b", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of a missing key: err = %v, want ErrNotFound", err)
	}
}

func testPutGet(t *testing.T, s store.Store) {
	ctx := context.Background()
	r1 := mustPut(t, s, "incidents", "k", "v1", 0)
	kv, err := s.Get(ctx, "incidents", "k")
	if err != nil {
		t.Fatal(err)
	}
	if kv.Key != "k" || string(kv.Value) != "v1" || kv.Revision != r1 {
		t.Errorf("Get = %+v, want k=v1 at revision %d", kv, r1)
	}
	r2 := mustPut(t, s, "incidents", "k", "v2", r1)
	if r2 == r1 {
		t.Errorf("update kept revision %d", r1)
	}
	kv, err = s.Get(ctx, "incidents", "k")
	if err != nil {
		t.Fatal(err)
	}
	if string(kv.Value) != "v2" || kv.Revision != r2 {
		t.Errorf("Get after update = %q@%d, want v2@%d", kv.Value, kv.Revision, r2)
	}
	// An empty value is a value, not an absence.
	mustPut(t, s, "incidents", "empty", "", 0)
	kv, err = s.Get(ctx, "incidents", "empty")
	if err != nil || len(kv.Value) != 0 {
		t.Errorf("Get of empty value = %q, %v", kv.Value, err)
	}
}

func testConflict(t *testing.T, s store.Store) {
	ctx := context.Background()
	r1 := mustPut(t, s, "b", "k", "first", 0)
	tests := []struct {
		name string
		rev  uint64
	}{
		{"create over existing", 0},
		{"stale revision", r1 + 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Put(ctx, "b", "k", []byte("lost"), tc.rev); !errors.Is(err, store.ErrConflict) {
				t.Errorf("Put(rev %d) err = %v, want ErrConflict", tc.rev, err)
			}
			kv, err := s.Get(ctx, "b", "k")
			if err != nil || string(kv.Value) != "first" || kv.Revision != r1 {
				t.Errorf("after conflict Get = %q@%d, %v; want first@%d", kv.Value, kv.Revision, err, r1)
			}
		})
	}
	if _, err := s.Put(ctx, "b", "absent", []byte("x"), r1); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Put of a missing key with rev %d: err = %v, want ErrConflict", r1, err)
	}
}

func testDelete(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustPut(t, s, "b", "k", "v", 0)
	for i := range 2 {
		if err := s.Delete(ctx, "b", "k"); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if _, err := s.Get(ctx, "b", "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete: err = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "never", "k"); err != nil {
		t.Errorf("Delete in a missing bucket: %v", err)
	}
}

func testRecreate(t *testing.T, s store.Store) {
	ctx := context.Background()
	old := mustPut(t, s, "b", "k", "v", 0)
	if err := s.Delete(ctx, "b", "k"); err != nil {
		t.Fatal(err)
	}
	fresh := mustPut(t, s, "b", "k", "again", 0)
	if fresh == old {
		t.Fatalf("recreated key reused revision %d", old)
	}
	if _, err := s.Put(ctx, "b", "k", []byte("stale writer"), old); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Put with the deleted key's revision: err = %v, want ErrConflict", err)
	}
}

func testList(t *testing.T, s store.Store) {
	ctx := context.Background()
	got, err := s.List(ctx, "empty")
	if err != nil || len(got) != 0 {
		t.Fatalf("List of a missing bucket = %v, %v; want empty", got, err)
	}
	ids := []uint64{10, 2, 300, 1}
	revs := map[string]uint64{}
	for _, id := range ids {
		k := store.Key(id)
		revs[k] = mustPut(t, s, "outbox", k, fmt.Sprint(id), 0)
	}
	mustPut(t, s, "other", store.Key(5), "elsewhere", 0)
	got, err = s.List(ctx, "outbox")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range got {
		keys = append(keys, kv.Key)
		if kv.Revision != revs[kv.Key] {
			t.Errorf("List %s revision = %d, want %d", kv.Key, kv.Revision, revs[kv.Key])
		}
	}
	want := []string{store.Key(1), store.Key(2), store.Key(10), store.Key(300)}
	if !slices.Equal(keys, want) {
		t.Errorf("List keys = %v, want %v", keys, want)
	}
	if string(got[2].Value) != "10" {
		t.Errorf("List value of key 10 = %q", got[2].Value)
	}
}

func testCopies(t *testing.T, s store.Store) {
	ctx := context.Background()
	in := []byte("abc")
	if _, err := s.Put(ctx, "b", "k", in, 0); err != nil {
		t.Fatal(err)
	}
	in[0] = 'X'
	kv, err := s.Get(ctx, "b", "k")
	if err != nil {
		t.Fatal(err)
	}
	if string(kv.Value) != "abc" {
		t.Fatalf("stored value changed with the caller's slice: %q", kv.Value)
	}
	kv.Value[0] = 'Y'
	again, err := s.Get(ctx, "b", "k")
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	list[0].Value[1] = 'Z'
	if string(again.Value) != "abc" {
		t.Errorf("stored value changed with a returned slice: %q", again.Value)
	}
	if again, _ = s.Get(ctx, "b", "k"); string(again.Value) != "abc" {
		t.Errorf("stored value changed with a listed slice: %q", again.Value)
	}
}

func testNextID(t *testing.T, s store.Store) {
	ctx := context.Background()
	for want := uint64(1); want <= 3; want++ {
		id, err := s.NextID(ctx, "incidents")
		if err != nil {
			t.Fatal(err)
		}
		if id != want {
			t.Errorf("NextID(incidents) = %d, want %d", id, want)
		}
	}
	if id, err := s.NextID(ctx, "outbox"); err != nil || id != 1 {
		t.Errorf("NextID(outbox) = %d, %v; want 1 (sequences are per bucket)", id, err)
	}
	// Sequences do not interfere with the bucket's keys.
	if got, err := s.List(ctx, "incidents"); err != nil || len(got) != 0 {
		t.Errorf("List after NextID = %v, %v; want empty", got, err)
	}
}

func testConcurrentPuts(t *testing.T, s store.Store) {
	ctx := context.Background()
	rev := mustPut(t, s, "b", "k", "start", 0)
	const writers, rounds = 8, 5
	for round := range rounds {
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []int
			newRev  uint64
		)
		for w := range writers {
			wg.Go(func() {
				r, err := s.Put(ctx, "b", "k", []byte(fmt.Sprint(w)), rev)
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, w)
					newRev = r
					mu.Unlock()
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("round %d writer %d: %v", round, w, err)
				}
			})
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d writers won revision %d, want exactly 1", round, len(winners), rev)
		}
		kv, err := s.Get(ctx, "b", "k")
		if err != nil {
			t.Fatal(err)
		}
		if string(kv.Value) != fmt.Sprint(winners[0]) || kv.Revision != newRev {
			t.Fatalf("round %d: stored %q@%d, want the winner %d@%d", round, kv.Value, kv.Revision, winners[0], newRev)
		}
		rev = newRev
	}
}

func testConcurrentNextID(t *testing.T, s store.Store) {
	const n = 50
	ids := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id, err := s.NextID(context.Background(), "seq")
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	slices.Sort(ids)
	for i, id := range ids {
		if id != uint64(i+1) {
			t.Fatalf("concurrent NextIDs sorted = %v, want 1..%d without gaps or repeats", ids, n)
		}
	}
}

func testInvalidNames(t *testing.T, s store.Store) {
	ctx := context.Background()
	tests := []struct{ name, bucket, key string }{
		{"empty bucket", "", "k"},
		{"upper-case bucket", "Outbox", "k"},
		{"slash in bucket", "a/b", "k"},
		{"empty key", "b", ""},
		{"slash in key", "b", "a/b"},
		{"dot-dot key", "b", ".."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Put(ctx, tc.bucket, tc.key, []byte("v"), 0); !errors.Is(err, store.ErrInvalidName) {
				t.Errorf("Put(%q, %q) err = %v, want ErrInvalidName", tc.bucket, tc.key, err)
			}
			if _, err := s.Get(ctx, tc.bucket, tc.key); !errors.Is(err, store.ErrInvalidName) {
				t.Errorf("Get(%q, %q) err = %v, want ErrInvalidName", tc.bucket, tc.key, err)
			}
		})
	}
	if _, err := s.NextID(ctx, "Bad_Bucket"); !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("NextID(Bad_Bucket) err = %v, want ErrInvalidName", err)
	}
}

func testCancelled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, "b", "k", []byte("v"), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context: err = %v, want context.Canceled", err)
	}
	if _, err := s.Get(context.Background(), "b", "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused Put wrote anyway: Get err = %v", err)
	}
}

func testClosed(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustPut(t, s, "b", "k", "v", 0)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checks := map[string]error{}
	_, checks["Get"] = s.Get(ctx, "b", "k")
	_, checks["Put"] = s.Put(ctx, "b", "k2", []byte("v"), 0)
	checks["Delete"] = s.Delete(ctx, "b", "k")
	_, checks["List"] = s.List(ctx, "b")
	_, checks["NextID"] = s.NextID(ctx, "b")
	for op, err := range checks {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", op, err)
		}
	}
}
