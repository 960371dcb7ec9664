package bolt_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/store/bolt"
	"github.com/rollback-guardian/guardian/store/storetest"
)

// childEnv makes the test binary act as a second Guardian process.
const childEnv = "GUARDIAN_BOLT_TEST_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(child(path))
	}
	goleak.VerifyTestMain(m)
}

// child writes a value, says so on stdout and then waits, holding the lock,
// until it is killed: it never closes the store.
func child(path string) int {
	s, err := bolt.Open(path, zap.NewNop())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	id, err := s.NextID(ctx, "incidents")
	if err == nil {
		_, err = s.Put(ctx, "incidents", store.Key(id), []byte("written by the child"), 0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("written", id)
	select {} // killed by the parent
}

func open(t *testing.T, path string) *bolt.Store {
	t.Helper()
	s, err := bolt.OpenTimeout(path, 200*time.Millisecond, zap.NewNop())
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := open(t, filepath.Join(t.TempDir(), "state.db"))
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestOpenCreatesPrivateFileAndDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "state.db")
	s := open(t, path)
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("state file mode = %o, want 600", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("state directory mode = %o, want 700", perm)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	var last uint64
	for range 3 {
		id, err := s.NextID(ctx, "incidents")
		if err != nil {
			t.Fatal(err)
		}
		last = id
	}
	rev, err := s.Put(ctx, "incidents", store.Key(last), []byte("incident three"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	defer s.Close()
	kv, err := s.Get(ctx, "incidents", store.Key(last))
	if err != nil {
		t.Fatal(err)
	}
	if string(kv.Value) != "incident three" || kv.Revision != rev {
		t.Errorf("after reopen Get = %q@%d, want %q@%d", kv.Value, kv.Revision, "incident three", rev)
	}
	id, err := s.NextID(ctx, "incidents")
	if err != nil {
		t.Fatal(err)
	}
	if id != last+1 {
		t.Errorf("NextID after reopen = %d, want %d", id, last+1)
	}
	// The store-wide revision counter survives too: a new write never reuses
	// a revision handed out before the restart.
	rev2, err := s.Put(ctx, "incidents", store.Key(id), []byte("four"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if rev2 <= rev {
		t.Errorf("revision after reopen = %d, want > %d", rev2, rev)
	}
}

// TestCrashedProcess runs a second process that writes and is then killed
// (SIGKILL, no Close). While it lives, Open here fails with the lock error
// after the timeout instead of blocking forever; after it dies, the lock is
// gone and its committed write is there.
func TestCrashedProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the child's report: %v", err)
	}
	var id uint64
	if _, err := fmt.Sscanf(line, "written %d", &id); err != nil {
		t.Fatalf("child said %q: %v", line, err)
	}

	start := time.Now()
	_, err = bolt.OpenTimeout(path, 200*time.Millisecond, zap.NewNop())
	if !errors.Is(err, bolt.ErrLocked) {
		t.Fatalf("Open while another process holds the file: err = %v, want ErrLocked", err)
	}
	want := fmt.Sprintf("state file %s is locked by another guardian process", path)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("lock error = %q, want it to say %q", err, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open took %s to give up, want about the 200ms timeout", d)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true

	s := open(t, path)
	defer s.Close()
	kv, err := s.Get(context.Background(), "incidents", store.Key(id))
	if err != nil {
		t.Fatalf("the killed process's write is lost: %v", err)
	}
	if string(kv.Value) != "written by the child" {
		t.Errorf("value = %q", kv.Value)
	}
	next, err := s.NextID(context.Background(), "incidents")
	if err != nil || next != id+1 {
		t.Errorf("NextID after the crash = %d, %v; want %d", next, err, id+1)
	}
}

// TestSecondHandleRefused covers the same lock within one process: bbolt's
// flock is per open file, so a second Open of a file this process holds
// also times out with ErrLocked, and succeeds after Close.
func TestSecondHandleRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	if _, err := bolt.OpenTimeout(path, 100*time.Millisecond, zap.NewNop()); !errors.Is(err, bolt.ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, path)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejectsForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, []byte("not a bbolt file, certainly not one of ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := bolt.OpenTimeout(path, 100*time.Millisecond, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Open of a garbage file: err = %v, want an error naming %s", err, path)
	}
}
