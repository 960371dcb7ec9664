package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/rollback-guardian/guardian/testenv"
)

// get returns a GET's status and body; a refused connection is status 0.
func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWaitValid: with a configuration that does not load, WaitValid
// serves health but not readiness on the file's listen address, with the
// reload metric at 0, reports each failure, and returns once the file is
// fixed; Run then serves ready on the same address.
func TestWaitValid(t *testing.T) {
	dir := t.TempDir()
	addr := testenv.FreePort(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	good := fmt.Sprintf("global: {listen_address: %q, state_dir: %q}\n", addr, filepath.Join(dir, "data"))
	write := func(body string) {
		t.Helper()
		tmp := cfgPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	write(good + "services: [{name: checkout, bogus: 1}]\n")

	a := NewUnloaded(Options{ConfigFile: cfgPath, Logger: zaptest.NewLogger(t)})
	var mu sync.Mutex
	var failures []error
	loaded := make(chan struct{})
	waited := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		waited <- a.WaitValid(ctx, WaitOptions{Retry: time.Hour,
			OnFailure: func(err error) { mu.Lock(); failures = append(failures, err); mu.Unlock() },
			OnLoaded:  func() { close(loaded) },
		})
	}()
	base := "http://" + addr
	testenv.EventuallyTrue(t, 10*time.Second, func() bool { code, _ := get(base + "/-/healthy"); return code == 200 }, "healthy while waiting")
	if code, body := get(base + "/-/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not configured") {
		t.Errorf("/-/ready %d %q while waiting", code, body)
	}
	if _, body := get(base + "/metrics"); !strings.Contains(body, "guardian_config_last_reload_successful 0") {
		t.Errorf("/metrics while waiting:\n%s", body)
	}
	mu.Lock()
	if len(failures) != 1 || !strings.Contains(failures[0].Error(), "bogus") {
		t.Errorf("failures reported %v, want the first load's", failures)
	}
	mu.Unlock()

	write(good + "services: []\n")
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("WaitValid: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting after the file was fixed")
	}
	<-loaded
	if a.Config() == nil || a.Config().Global.ListenAddress != addr {
		t.Fatalf("config %+v", a.Config())
	}
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	testenv.EventuallyTrue(t, 10*time.Second, func() bool { code, _ := get(base + "/-/ready"); return code == 200 }, "ready once configured")
	if _, body := get(base + "/metrics"); !strings.Contains(body, "guardian_config_last_reload_successful 1") {
		t.Errorf("/metrics once configured lacks the reload metric at 1")
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestWaitValidStops: cancelling the context ends the wait with its error
// and closes the server; a valid configuration returns at once.
func TestWaitValidStops(t *testing.T) {
	dir := t.TempDir()
	addr := testenv.FreePort(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("global: {listen_address: %q, state_dir: %q, bogus: 1}\n", addr, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	a := NewUnloaded(Options{ConfigFile: cfgPath, Logger: zaptest.NewLogger(t)})
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() { waited <- a.WaitValid(ctx, WaitOptions{}) }()
	testenv.EventuallyTrue(t, 10*time.Second, func() bool { code, _ := get("http://" + addr + "/-/healthy"); return code == 200 }, "healthy while waiting")
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitValid after cancel: %v", err)
	}
	if code, _ := get("http://" + addr + "/-/healthy"); code != 0 {
		t.Errorf("still serving after the wait ended: %d", code)
	}
}
