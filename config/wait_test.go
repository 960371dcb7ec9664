package config

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// waiting is a Reloader whose first load failed, with Watch running and
// WaitValid started in the background.
type waiting struct {
	*fixture
	logs   *observer.ObservedLogs
	cancel context.CancelFunc
	done   chan struct{}
	cfg    *Config
	err    error

	mu       sync.Mutex
	failures []error
}

func (w *waiting) failed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.failures)
}

func startWaiting(t *testing.T, path string, retry time.Duration) *waiting {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	app := &applied{}
	r := NewReloader(path, app.apply, zap.New(core), prometheus.NewRegistry())
	r.Debounce = 20 * time.Millisecond
	if _, err := r.LoadInitial(); err == nil {
		t.Fatal("the first load succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &waiting{fixture: &fixture{r: r, app: app}, logs: logs, cancel: cancel, done: make(chan struct{})}
	watching := make(chan struct{})
	r.onWatching = func() { close(watching) }
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Watch(ctx); err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	<-watching
	go func() {
		defer close(w.done)
		w.cfg, w.err = r.WaitValid(ctx, retry, func(err error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.failures = append(w.failures, err)
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-w.done
		wg.Wait()
	})
	return w
}

// errorLines counts WaitValid's error lines.
func (w *waiting) errorLines() int {
	n := 0
	for _, e := range w.logs.All() {
		if e.Level == zapcore.ErrorLevel && e.Message != "" && e.ContextMap()["retry"] != nil {
			n++
		}
	}
	return n
}

// TestWaitValid: a configuration that does not load is tried again at
// each change of the file and each request, each failure logged at error
// level and reported, the metric at 0, until a valid file is applied.
func TestWaitValid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, invalidConfig)
	w := startWaiting(t, path, time.Hour)

	for range 5 {
		renameOver(t, path, invalidConfig) // the same bytes: not tried again
	}
	noise(t, dir, 100)
	renameOver(t, path, invalidConfig+"    another: oops\n")
	eventually(t, "the changed file tried", func() bool { return w.failed() == 1 })
	if got := w.errorLines(); got != 1 {
		t.Errorf("%d error lines, want 1", got)
	}
	var errs Errors
	w.mu.Lock()
	first := w.failures[0]
	w.mu.Unlock()
	if !errors.As(first, &errs) || len(errs) != 2 {
		t.Errorf("reported %v, want the file's two errors", first)
	}
	if got := w.successful(); got != 0 {
		t.Errorf("guardian_config_last_reload_successful %v while waiting", got)
	}

	if err := await(t, w.r.Request()); err == nil {
		t.Fatal("a request for the same bytes: want their error")
	}
	if got := w.failed(); got != 2 {
		t.Errorf("%d failures reported after a request, want 2", got)
	}
	select {
	case <-w.done:
		t.Fatal("WaitValid returned while the file is invalid")
	default:
	}

	renameOver(t, path, serviceConfig("fixed"))
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		t.Fatal("WaitValid still waiting after the file was fixed")
	}
	if w.err != nil || w.cfg == nil || w.cfg.Services[0].Name != "fixed" || w.app.last() != "fixed" {
		t.Fatalf("WaitValid returned %v, %v; applied %v", w.cfg, w.err, w.app.list())
	}
	if w.r.Current() != w.cfg || w.successful() != 1 || w.reloads(resultSuccess) != 1 {
		t.Errorf("current %v, successful %v, %v successful loads", w.r.Current(), w.successful(), w.reloads(resultSuccess))
	}
}

// TestWaitValidRetries: without any change the file is tried again every
// retry (the secret files it names may have been fixed), and WaitValid
// ends with its context.
func TestWaitValidRetries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, invalidConfig)
	w := startWaiting(t, path, 10*time.Millisecond)
	eventually(t, "three retries", func() bool { return w.failed() >= 3 })
	if got := w.errorLines(); got < 3 {
		t.Errorf("%d error lines for %d failures", got, w.failed())
	}
	w.cancel()
	<-w.done
	if !errors.Is(w.err, context.Canceled) || w.cfg != nil {
		t.Errorf("WaitValid after cancel: %v, %v", w.cfg, w.err)
	}
}

func TestPeekListenAddress(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body, want string
		err              bool
	}{
		{"set, in an invalid file", "global: {listen_address: 0.0.0.0:9100, bogus: 1}\nservices: 3\n", "0.0.0.0:9100", false},
		{"not set", "services: []\n", DefaultListenAddress, false},
		{"not YAML", "global: [\n", DefaultListenAddress, true},
		{"not an address", "global: {listen_address: nine}\n", DefaultListenAddress, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "config.yaml")
			writeFile(t, path, tc.body)
			got, err := PeekListenAddress(path)
			if got != tc.want || (err != nil) != tc.err {
				t.Errorf("%q, %v; want %q, error %v", got, err, tc.want, tc.err)
			}
		})
	}
	if got, err := PeekListenAddress(filepath.Join(dir, "missing.yaml")); got != DefaultListenAddress || err == nil {
		t.Errorf("a missing file: %q, %v", got, err)
	}
}

// TestWaitValidSeesAFixBeforeTheWatch: a file fixed after WaitValid's
// first attempt but before Watch watches its directory, which no event
// will report, is tried as soon as Watch starts, not at the next retry.
func TestWaitValidSeesAFixBeforeTheWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, invalidConfig)
	app := &applied{}
	r := NewReloader(path, app.apply, zap.NewNop(), prometheus.NewRegistry())
	r.Debounce = 20 * time.Millisecond
	if _, err := r.LoadInitial(); err == nil {
		t.Fatal("the first load succeeded")
	}
	attempted := make(chan struct{}, 10)
	r.onAttempt = func() { attempted <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := r.WaitValid(ctx, time.Hour, nil)
		done <- err
	}()
	<-attempted
	renameOver(t, path, serviceConfig("fixed"))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { _ = r.Watch(ctx) })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitValid: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fix written before Watch started was not tried")
	}
	if r.Current() == nil {
		t.Error("no configuration applied")
	}
}
