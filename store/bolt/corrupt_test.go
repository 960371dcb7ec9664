package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/store/bolt"
)

// pageSize is bbolt's page size on the machines the tests run on; the
// tests only use it to aim at data pages, past the two meta pages.
var pageSize = os.Getpagesize()

// writeIncidents writes n incident-sized values and an outbox entry to a
// new state file at path and closes it.
func writeIncidents(t testing.TB, path string, n int) {
	t.Helper()
	ctx := context.Background()
	s, err := bolt.OpenTimeout(path, time.Second, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	value := []byte(strings.Repeat(`{"timeline":[{"type":"incident.declared","message":"error ratio 0.12 above 0.05"}]}`, 20))
	for range n {
		id, err := s.NextID(ctx, "incidents")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, "incidents", store.Key(id), value, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(ctx, "outbox", "hook.00000000000000000001", []byte(`{}`), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// openErr opens path and returns the error, failing the test on success.
func openErr(t *testing.T, path string) error {
	t.Helper()
	s, err := bolt.OpenTimeout(path, 200*time.Millisecond, zap.NewNop())
	if err == nil {
		_ = s.Close()
		t.Fatalf("Open(%s) succeeded, want an error", path)
	}
	return err
}

// wantRecovery checks that err is ErrCorrupt, names path and says how to
// recover.
func wantRecovery(t *testing.T, err error, path string, more ...string) {
	t.Helper()
	t.Log(err)
	if !errors.Is(err, bolt.ErrCorrupt) {
		t.Errorf("err = %v, want ErrCorrupt", err)
	}
	for _, want := range append([]string{path, "guardian state backup", "move it away"}, more...) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to say %q", err, want)
		}
	}
}

func TestOpenMissingFileStartsEmptyAndSaysSo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "guardian.db")
	core, logs := observer.New(zap.InfoLevel)
	s, err := bolt.OpenTimeout(path, time.Second, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := logs.FilterMessageSnippet("starting with an empty state").All()
	if len(got) != 1 || got[0].ContextMap()["path"] != path {
		t.Errorf("logs = %v, want one info line saying the state starts empty, with the path", logs.All())
	}
	if kvs, err := s.List(context.Background(), "incidents"); err != nil || len(kvs) != 0 {
		t.Errorf("List = %v, %v; want empty", kvs, err)
	}
}

// TestOpenEmptyFile: bbolt makes a new database of a 0-byte file; Guardian
// must not, since the file held incidents before it was truncated.
func TestOpenEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "guardian.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := openErr(t, path)
	wantRecovery(t, err, path, "is empty (0 bytes)")
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("the empty file was changed: %v, %v", fi, err)
	}
}

// TestOpenTruncatedFile cuts a state file short at several lengths: each is
// an error, never a fresh start or a crash.
func TestOpenTruncatedFile(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full.db")
	writeIncidents(t, full, 200)
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 100, pageSize, pageSize + 10, 2 * pageSize, 4 * pageSize, len(data) / 3, len(data) / 2} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("cut-%d.db", n))
			if err := os.WriteFile(path, data[:n], 0o600); err != nil {
				t.Fatal(err)
			}
			wantRecovery(t, openErr(t, path), path)
		})
	}
}

// scribble overwrites the data pages of the file at path (all but the two
// meta pages) with random bytes from a fixed seed.
func scribble(t testing.TB, path string, seed uint64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := 2 * pageSize; i < len(data); i++ {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRandomDataPages overwrites the data pages with random bytes: bbolt
// panics on such pages (invalid freelist page, unexpected page type...);
// Open must say the file is corrupt instead.
func TestOpenRandomDataPages(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "guardian.db")
			writeIncidents(t, path, 100)
			scribble(t, path, seed)
			wantRecovery(t, openErr(t, path), path, "is corrupt")
		})
	}
}

// TestCorruptionWhileOpen damages the file under an open store: the reads
// that meet the damage fail with ErrCorrupt instead of panicking.
func TestCorruptionWhileOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "guardian.db")
	writeIncidents(t, path, 100)
	s := open(t, path)
	defer s.Close()
	scribble(t, path, 42)
	_, err := s.List(ctx, "incidents")
	wantRecovery(t, err, path, "is corrupt")
	_, err = s.Get(ctx, "incidents", store.Key(50))
	if !errors.Is(err, bolt.ErrCorrupt) {
		t.Errorf("Get after the damage: err = %v, want ErrCorrupt", err)
	}
	// bbolt's memory may be half changed after its panic: the store
	// refuses every later call, even one that would read sound pages.
	if _, err := s.NextID(ctx, "outbox"); !errors.Is(err, bolt.ErrCorrupt) {
		t.Errorf("NextID after a panic: err = %v, want ErrCorrupt", err)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	writeIncidents(t, good, 30)
	s, err := bolt.OpenReadOnly(good, time.Second, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Errorf("Check of a sound file: %v", err)
	}
	got, err := s.Buckets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []bolt.BucketInfo{{Name: "incidents", Keys: 30, Sequence: 30}, {Name: "outbox", Keys: 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Buckets = %v, want %v", got, want)
	}
	if _, err := s.Put(context.Background(), "incidents", "x", nil, 0); err == nil {
		t.Error("Put on a read-only store succeeded")
	}
	rw := open(t, filepath.Join(dir, "rw.db"))
	defer rw.Close()
	if _, err := rw.Put(context.Background(), "incidents", "x", []byte("12345678"), 0); err != nil {
		t.Fatal(err)
	}
	if err := rw.Check(); err != nil {
		t.Errorf("Check of an open, writable store: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if _, err := bolt.OpenReadOnly(filepath.Join(dir, "missing.db"), time.Second, zap.NewNop()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenReadOnly of a missing file: err = %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !os.IsNotExist(err) {
		t.Errorf("OpenReadOnly created the missing file: %v", err)
	}
}

// TestReadOnlyWhileLocked: a read-only open of a file a running Guardian
// holds gives up with ErrLocked after the timeout.
func TestReadOnlyWhileLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "guardian.db")
	s := open(t, path)
	defer s.Close()
	start := time.Now()
	_, err := bolt.OpenReadOnly(path, 100*time.Millisecond, zap.NewNop())
	if !errors.Is(err, bolt.ErrLocked) {
		t.Fatalf("OpenReadOnly of a held file: err = %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s, want about 100ms", d)
	}
}

func TestBackup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "guardian.db")
	writeIncidents(t, path, 30)
	s := open(t, path)
	f, err := os.Create(filepath.Join(dir, "copy.db"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.WriteTo(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Writes after the copy are not in it.
	if _, err := s.Put(ctx, "incidents", store.Key(999), []byte("later"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(f.Name())
	if err != nil || fi.Size() != n {
		t.Fatalf("copy: %v, %v; want %d bytes", fi, err, n)
	}
	c, err := bolt.OpenReadOnly(f.Name(), time.Second, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Check(); err != nil {
		t.Errorf("Check of the copy: %v", err)
	}
	kvs, err := c.List(ctx, "incidents")
	if err != nil || len(kvs) != 30 {
		t.Errorf("the copy lists %d incidents (%v), want 30", len(kvs), err)
	}
}

// TestOpenOneDamagedPage overwrites one page at a time with random bytes:
// whichever page it is (freelist, branch, leaf, free), Open and the reads
// after it report corruption or succeed, and never panic. A damaged page
// in use is found at open.
func TestOpenOneDamagedPage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	full := filepath.Join(dir, "full.db")
	writeIncidents(t, full, 100)
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	found := 0
	for page := 2; page < len(data)/pageSize; page++ {
		damaged := slices.Clone(data)
		for i := page * pageSize; i < (page+1)*pageSize; i++ {
			damaged[i] = byte(rng.Uint32())
		}
		path := filepath.Join(dir, fmt.Sprintf("page-%d.db", page))
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := bolt.OpenTimeout(path, time.Second, zap.NewNop())
		if err != nil {
			if !errors.Is(err, bolt.ErrCorrupt) {
				t.Errorf("page %d: err = %v, want ErrCorrupt", page, err)
			}
			found++
			continue
		}
		// The page was free: everything reads back.
		kvs, err := s.List(ctx, "incidents")
		if err != nil || len(kvs) != 100 {
			t.Errorf("page %d: Open succeeded, then List = %d incidents, %v", page, len(kvs), err)
		}
		_ = s.Close()
	}
	if found == 0 {
		t.Error("no damaged page was found")
	}
	t.Logf("%d of %d damaged pages found at open", found, len(data)/pageSize-2)
}
