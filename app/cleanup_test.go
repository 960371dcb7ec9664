package app

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

// leftovers lists the embedded sources' temporary directories in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "guardian-embedded-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// A start that fails (a damaged state file, a listen address in use)
// leaves no temporary directory of the embedded source behind.
func TestFailedStartLeavesNoTemporaryDirectories(t *testing.T) {
	t.Run("empty state file", func(t *testing.T) {
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		if err := os.MkdirAll(data, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "guardian.db"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "guardian.yml")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, appConfig, dir, "http://127.0.0.1:1", "1"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := New(Options{ConfigFile: cfg, Logger: zaptest.NewLogger(t), NoWatch: true})
		if err == nil || !strings.Contains(err.Error(), "empty") {
			t.Fatalf("New with an empty state file: %v", err)
		}
		if got := leftovers(t, data); len(got) != 0 {
			t.Fatalf("left behind %v", got)
		}
	})
	t.Run("listen address in use", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		dir := t.TempDir()
		cfg := filepath.Join(dir, "guardian.yml")
		text := fmt.Sprintf(appConfig, dir, "http://127.0.0.1:1", "1")
		text = strings.Replace(text, "global:\n", "global:\n  listen_address: "+busy.Addr().String()+"\n", 1)
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := New(Options{ConfigFile: cfg, Logger: zaptest.NewLogger(t), NoWatch: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listening on") {
			t.Fatalf("Run on a busy address: %v", err)
		}
		if got := leftovers(t, filepath.Join(dir, "data")); len(got) != 0 {
			t.Fatalf("left behind %v", got)
		}
	})
}
