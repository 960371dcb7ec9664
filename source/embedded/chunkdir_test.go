package embedded

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/rollback-guardian/guardian/config"
)

// leftover makes a chunk directory as a crashed or failed start leaves it,
// last changed an hour ago.
func leftover(t *testing.T, parent, name string) string {
	t.Helper()
	dir := filepath.Join(parent, name)
	if err := os.MkdirAll(filepath.Join(dir, "chunks_head"), 0o700); err != nil {
		t.Fatal(err)
	}
	age(t, dir)
	return dir
}

// age sets path's modification time an hour back.
func age(t *testing.T, path string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestNewRemovesLeftoverChunkDirs: the chunk directories earlier runs left
// in the state directory (a start that failed after building its sources,
// a crash) are removed when a Source is next made there.
func TestNewRemovesLeftoverChunkDirs(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	parent := t.TempDir()
	stale := leftover(t, parent, "guardian-embedded-1234567")
	s, err := New(config.Scrape{URL: srv.URL}, Options{Dir: parent}, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if exists(stale) {
		t.Errorf("leftover chunk directory %s is still there", stale)
	}
	if !exists(s.store.dir.path) {
		t.Errorf("the new source's directory %s is gone", s.store.dir.path)
	}
}

// TestRemoveStale removes only what is certainly a leftover: a directory
// of the chunk directories' name, ours, older than a minute and not locked
// by a living Source, in this process or another.
func TestRemoveStale(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	parent := t.TempDir()
	live, err := New(config.Scrape{URL: srv.URL}, Options{Dir: parent}, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	age(t, live.store.dir.path)

	unlocked := leftover(t, parent, "guardian-embedded-unlocked")
	if err := os.WriteFile(filepath.Join(unlocked, lockName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	age(t, unlocked)
	noLock := leftover(t, parent, "guardian-embedded-nolock")
	young := filepath.Join(parent, "guardian-embedded-young")
	if err := os.Mkdir(young, 0o700); err != nil {
		t.Fatal(err)
	}
	other := leftover(t, parent, "prometheus-data")
	file := filepath.Join(parent, "guardian-embedded-file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	age(t, file)
	target := leftover(t, t.TempDir(), "elsewhere")
	link := filepath.Join(parent, "guardian-embedded-link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}

	n, err := RemoveStale(parent, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("RemoveStale removed %d directories, want 2", n)
	}
	for path, want := range map[string]bool{
		live.store.dir.path: true, unlocked: false, noLock: false, young: true, other: true, file: true, link: true, target: true,
	} {
		if exists(path) != want {
			t.Errorf("%s: exists = %t, want %t", path, !want, want)
		}
	}
	// Closed, the live source's directory is gone.
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	if exists(live.store.dir.path) {
		t.Errorf("closed source's directory %s is still there", live.store.dir.path)
	}
}

// childEnv makes the test binary a second Guardian process holding a
// Source in the directory it names.
const childEnv = "GUARDIAN_EMBEDDED_TEST_CHILD"

// child makes a Source under parent, prints its chunk directory and waits
// to be killed.
func child(parent string) int {
	s, err := New(config.Scrape{URL: "http://127.0.0.1:1/metrics"}, Options{Dir: parent}, zap.NewNop(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(s.store.dir.path)
	select {} // killed by the parent
}

// TestRemoveStaleSparesAnotherProcess: two Guardians may share a
// state_dir for a moment (the second makes its sources before it finds the
// state file locked). The first's sweep leaves the living second's chunk
// directory alone, and removes it once that process is killed.
func TestRemoveStaleSparesAnotherProcess(t *testing.T) {
	parent := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+parent)
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
		t.Fatalf("reading the child's chunk directory: %v", err)
	}
	dir := strings.TrimSpace(line)
	age(t, dir)
	if n, err := RemoveStale(parent, zaptest.NewLogger(t)); err != nil || n != 0 || !exists(dir) {
		t.Fatalf("RemoveStale with the other process alive: removed %d (%v), its directory exists: %t", n, err, exists(dir))
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	if n, err := RemoveStale(parent, zaptest.NewLogger(t)); err != nil || n != 1 || exists(dir) {
		t.Errorf("RemoveStale after the other process died: removed %d (%v), its directory exists: %t", n, err, exists(dir))
	}
}
