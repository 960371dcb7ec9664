package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/store/bolt"
)

// runState runs guardian state with args and returns its stdout, stderr
// and error.
func runState(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newStateCmd(&out, &errb)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

// writeState writes a state file in dir with an open and a resolved
// incident (three timeline entries) and a waiting notification.
func writeState(t *testing.T, dir string) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(dir, "guardian.db")
	s, err := bolt.Open(path, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for id, rec := range map[uint64]string{
		1: `{"id":1,"service":"checkout","state":"resolved","timeline":[{"type":"incident.declared"},{"type":"incident.resolved"}]}`,
		2: `{"id":2,"service":"checkout","state":"awaiting_approval","timeline":[{"type":"incident.declared"}]}`,
	} {
		if _, err := s.Put(ctx, "incidents", store.Key(id), []byte(rec), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(ctx, "outbox", "hook.00000000000000000001", []byte(`{}`), 0); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStateCheck(t *testing.T) {
	dir := t.TempDir()
	path := writeState(t, dir)
	out, errs, err := runState(t, "check", "--state-dir", dir)
	if err != nil {
		t.Fatalf("state check: %v\n%s", err, errs)
	}
	for _, want := range []string{
		path + ": OK (",
		"incidents: 2 (1 open), 3 timeline events",
		"outbox: 1 notification waiting",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestStateCheckFindsTheFileThroughTheConfig(t *testing.T) {
	dir := t.TempDir()
	writeState(t, filepath.Join(dir, "data"))
	cfg := filepath.Join(dir, "guardian.yaml")
	if err := os.WriteFile(cfg, []byte(`global:
  state_dir: `+filepath.Join(dir, "data")+`
services:
  - name: checkout
    scrape: { url: http://127.0.0.1:8080/metrics }
    triggers:
      - name: errors
        query: 'sum(rate(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.Window}}]))'
        above: 0.05
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, err := runState(t, "check", "--config", cfg)
	if err != nil || !strings.Contains(out, "incidents: 2 (1 open)") {
		t.Errorf("state check --config: %v\n%s%s", err, out, errs)
	}
}

func TestStateCheckDamaged(t *testing.T) {
	for name, damage := range map[string]func(path string) error{
		"empty": func(path string) error { return os.Truncate(path, 0) },
		"truncated": func(path string) error {
			return os.Truncate(path, int64(2*os.Getpagesize()))
		},
		"scribbled": func(path string) error {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i := 2 * os.Getpagesize(); i < len(b); i++ {
				b[i] = byte(i*7 + 3)
			}
			return os.WriteFile(path, b, 0o600)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeState(t, dir)
			if err := damage(path); err != nil {
				t.Fatal(err)
			}
			out, errs, err := runState(t, "check", "--state-dir", dir)
			if !errors.Is(err, errSilent) {
				t.Errorf("err = %v, want the exit status 1 of a reported problem", err)
			}
			if out != "" || !strings.Contains(errs, path) || !strings.Contains(errs, "guardian state backup") {
				t.Errorf("stdout %q, stderr %q: want the damage and the way out on stderr", out, errs)
			}
		})
	}
}

// TestStateWhileGuardianRuns: the daemon holds the lock; the command gives
// up after --lock-timeout and says to stop Guardian.
func TestStateWhileGuardianRuns(t *testing.T) {
	dir := t.TempDir()
	path := writeState(t, dir)
	s, err := bolt.Open(path, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for sub, args := range map[string][]string{
		"check":  {"check", "--state-dir", dir, "--lock-timeout", "100ms"},
		"backup": {"backup", "--state-dir", dir, "--lock-timeout", "100ms", "--to", filepath.Join(dir, "copy.db")},
	} {
		start := time.Now()
		_, _, err := runState(t, args...)
		if !errors.Is(err, bolt.ErrLocked) || !strings.Contains(err.Error(), "stop Guardian first") {
			t.Errorf("state %s: err = %v, want ErrLocked saying to stop Guardian", sub, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("state %s gave up after %s", sub, d)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "copy.db")); !os.IsNotExist(err) {
		t.Errorf("a backup was written: %v", err)
	}
}

func TestStateBackup(t *testing.T) {
	dir := t.TempDir()
	writeState(t, dir)
	to := filepath.Join(t.TempDir(), "backup.db")
	out, errs, err := runState(t, "backup", "--state-dir", dir, "--to", to)
	if err != nil || !strings.Contains(out, "copied to "+to) {
		t.Fatalf("state backup: %v\n%s%s", err, out, errs)
	}
	out, errs, err = runState(t, "check", "--file", to)
	if err != nil || !strings.Contains(out, "incidents: 2 (1 open)") {
		t.Errorf("state check of the backup: %v\n%s%s", err, out, errs)
	}
	if fi, err := os.Stat(to); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, %v; want mode 600", fi, err)
	}
	if _, _, err := runState(t, "backup", "--state-dir", dir, "--to", to); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("backup over an existing file: err = %v, want a refusal naming --force", err)
	}
	if _, _, err := runState(t, "backup", "--state-dir", dir, "--to", to, "--force"); err != nil {
		t.Errorf("backup --force: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(to), ".backup.db.tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestStateCheckNoFile(t *testing.T) {
	dir := t.TempDir()
	_, _, err := runState(t, "check", "--state-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "no state file at "+filepath.Join(dir, "guardian.db")) {
		t.Errorf("err = %v, want it to say there is no state file", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "guardian.db")); !os.IsNotExist(err) {
		t.Errorf("check made a state file: %v", err)
	}
}
