package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rollback-guardian/guardian/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// serviceConfig is a valid configuration whose only service is named name,
// so tests can tell versions apart.
func serviceConfig(name string) string {
	return fmt.Sprintf(`
services:
  - name: %s
    scrape: { url: "http://127.0.0.1:8080/metrics" }
    triggers:
      - name: errors
        query: 'up{version="{{.Version}}"}'
        below: 1
`, name)
}

// invalidConfig is valid but for one unknown field.
var invalidConfig = serviceConfig("broken") + "    triggr: oops\n"

// applied records the configurations handed to apply.
type applied struct {
	mu    sync.Mutex
	names []string
	fail  error
}

func (a *applied) apply(c *Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		return a.fail
	}
	a.names = append(a.names, c.Services[0].Name)
	return nil
}

func (a *applied) setFail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail = err
}

func (a *applied) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.names...)
}

func (a *applied) last() string {
	l := a.list()
	if len(l) == 0 {
		return ""
	}
	return l[len(l)-1]
}

func (a *applied) count(name string) int {
	n := 0
	for _, x := range a.list() {
		if x == name {
			n++
		}
	}
	return n
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// eventually waits for cond, up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.EventuallyTrue(t, 5*time.Second, cond, what)
}

// await returns the result of a Request, failing the test if it takes too long.
func await(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for a reload result")
		return nil
	}
}

type fixture struct {
	r   *Reloader
	app *applied
}

func (f *fixture) successful() float64 { return testutil.ToFloat64(f.r.success) }
func (f *fixture) reloads(result string) float64 {
	return testutil.ToFloat64(f.r.reloads.WithLabelValues(result))
}

// newFixture loads path initially and starts Run, and Watch if watch is set;
// both stop when the test ends. opts adjust the Reloader first.
func newFixture(t *testing.T, path string, watch bool, opts ...func(*Reloader)) *fixture {
	t.Helper()
	app := &applied{}
	r := NewReloader(path, app.apply, zaptest.NewLogger(t), prometheus.NewRegistry())
	r.Debounce = 20 * time.Millisecond
	for _, o := range opts {
		o(r)
	}
	if _, err := r.LoadInitial(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if watch {
		watching := make(chan struct{})
		r.onWatching = func() { close(watching) }
		wg.Go(func() {
			if err := r.Watch(ctx); err != nil {
				t.Errorf("Watch: %v", err)
			}
		})
		select {
		case <-watching:
		case <-time.After(5 * time.Second):
			t.Fatal("Watch did not start")
		}
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return &fixture{r: r, app: app}
}

func TestWatchInPlaceEdit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, serviceConfig("v1"))
	f := newFixture(t, path, true)

	// Truncate and write the same file, as most editors and `>` do.
	writeFile(t, path, serviceConfig("v2"))
	eventually(t, "v2 applied", func() bool { return f.app.last() == "v2" })
	eventually(t, "successful reload metric", func() bool { return f.successful() == 1 })
	if got := f.r.Current().Services[0].Name; got != "v2" {
		t.Errorf("Current() = %s, want v2", got)
	}
}

func TestWatchRenameOver(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, serviceConfig("v1"))
	f := newFixture(t, path, true)

	// Editors such as vim write a temporary file and rename it over.
	tmp := filepath.Join(dir, ".config.yaml.tmp")
	writeFile(t, tmp, serviceConfig("v2"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "v2 applied", func() bool { return f.app.last() == "v2" })
	// The checksum makes any later event a no-op: wait for the events to
	// settle with a marker request, then check v2 was applied only once.
	if err := await(t, f.r.Request()); err != nil {
		t.Fatal(err)
	}
	if got := f.app.count("v2"); got != 1 {
		t.Errorf("v2 applied %d times, want 1", got)
	}
	if got := f.reloads(resultFailure); got != 0 {
		t.Errorf("%v failed reloads, want 0", got)
	}
	if f.successful() != 1 {
		t.Error("guardian_config_last_reload_successful != 1")
	}
}

// TestWatchConfigMap mimics the kubelet updating a mounted ConfigMap:
//
//	config.yaml -> ..data/config.yaml
//	..data -> ..2026_11_25_10_00_00.1
//
// An update writes a new timestamped directory, points ..data_tmp at it,
// renames ..data_tmp over ..data and removes the old directory. The file
// config.yaml itself never changes.
func TestWatchConfigMap(t *testing.T) {
	dir := t.TempDir()
	old := "..2026_11_25_10_00_00.1"
	if err := os.Mkdir(filepath.Join(dir, old), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, old, "config.yaml"), serviceConfig("v1"))
	for _, l := range []struct{ target, name string }{
		{old, "..data"},
		{filepath.Join("..data", "config.yaml"), "config.yaml"},
	} {
		if err := os.Symlink(l.target, filepath.Join(dir, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "config.yaml")
	f := newFixture(t, path, true)
	if f.app.last() != "v1" {
		t.Fatalf("initial config %q, want v1", f.app.last())
	}

	next := "..2026_11_25_10_05_00.2"
	if err := os.Mkdir(filepath.Join(dir, next), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, next, "config.yaml"), serviceConfig("v2"))
	if err := os.Symlink(next, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
		t.Fatal(err)
	}

	eventually(t, "v2 applied", func() bool { return f.app.last() == "v2" })
	if err := await(t, f.r.Request()); err != nil {
		t.Fatal(err)
	}
	if got := f.reloads(resultFailure); got != 0 {
		t.Errorf("%v failed reloads, want 0", got)
	}
	if got := f.app.count("v2"); got != 1 {
		t.Errorf("v2 applied %d times, want 1", got)
	}
	if got := f.reloads(resultSuccess); got != 2 {
		t.Errorf("%v successful loads, want 2 (the first and the swap)", got)
	}
}

func TestRequest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, serviceConfig("v1"))
	f := newFixture(t, path, false)

	writeFile(t, path, serviceConfig("v2"))
	if err := await(t, f.r.Request()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := f.app.list(); len(got) != 2 || got[1] != "v2" {
		t.Fatalf("applied %v, want [v1 v2]", got)
	}

	t.Run("unchanged file is not applied again", func(t *testing.T) {
		before := f.reloads(resultUnchanged)
		if err := await(t, f.r.Request()); err != nil {
			t.Fatal(err)
		}
		if got := f.app.list(); len(got) != 2 {
			t.Errorf("applied %v, want no new apply", got)
		}
		if got := f.reloads(resultUnchanged); got != before+1 {
			t.Errorf("unchanged reloads %v, want %v", got, before+1)
		}
	})

	t.Run("concurrent requests all get a result", func(t *testing.T) {
		writeFile(t, path, serviceConfig("v3"))
		chans := make([]<-chan error, 10)
		for i := range chans {
			chans[i] = f.r.Request()
		}
		for _, ch := range chans {
			if err := await(t, ch); err != nil {
				t.Fatal(err)
			}
		}
		if got := f.app.count("v3"); got != 1 {
			t.Errorf("v3 applied %d times, want 1", got)
		}
	})
}

func TestInvalidReloadKeepsOldConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, serviceConfig("v1"))
	f := newFixture(t, path, false)
	if f.successful() != 1 {
		t.Fatal("initial load not successful")
	}

	writeFile(t, path, invalidConfig)
	err := await(t, f.r.Request())
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Path != "services[0].triggr" {
		t.Fatalf("got %v, want the unknown field error", err)
	}
	if got := f.app.list(); len(got) != 1 {
		t.Errorf("apply called with an invalid config: %v", got)
	}
	if got := f.r.Current().Services[0].Name; got != "v1" {
		t.Errorf("Current() = %s, want the old v1", got)
	}
	if f.successful() != 0 {
		t.Error("guardian_config_last_reload_successful != 0 after a failed reload")
	}
	if got := f.reloads(resultFailure); got != 1 {
		t.Errorf("%v failed reloads, want 1", got)
	}

	t.Run("reverting to the running config", func(t *testing.T) {
		writeFile(t, path, serviceConfig("v1"))
		if err := await(t, f.r.Request()); err != nil {
			t.Fatal(err)
		}
		if f.successful() != 1 {
			t.Error("the file matches the running config again, but the metric is not 1")
		}
		if got := f.app.list(); len(got) != 1 {
			t.Errorf("unchanged config applied again: %v", got)
		}
	})

	t.Run("fixing the file", func(t *testing.T) {
		writeFile(t, path, invalidConfig)
		if err := await(t, f.r.Request()); err == nil {
			t.Fatal("want an error")
		}
		writeFile(t, path, serviceConfig("v2"))
		if err := await(t, f.r.Request()); err != nil {
			t.Fatal(err)
		}
		if f.successful() != 1 || f.app.last() != "v2" {
			t.Errorf("successful=%v last=%s, want 1 and v2", f.successful(), f.app.last())
		}
	})
}

func TestApplyFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, serviceConfig("v1"))
	f := newFixture(t, path, false)

	errBuild := errors.New("cannot build source")
	f.app.setFail(errBuild)
	writeFile(t, path, serviceConfig("v2"))
	if err := await(t, f.r.Request()); !errors.Is(err, errBuild) {
		t.Fatalf("got %v, want %v", err, errBuild)
	}
	if f.successful() != 0 || f.r.Current().Services[0].Name != "v1" {
		t.Errorf("successful=%v current=%s, want 0 and v1", f.successful(), f.r.Current().Services[0].Name)
	}

	// The same file is tried again: a failed apply is not "unchanged".
	f.app.setFail(nil)
	if err := await(t, f.r.Request()); err != nil {
		t.Fatal(err)
	}
	if f.successful() != 1 || f.app.last() != "v2" {
		t.Errorf("successful=%v last=%s, want 1 and v2", f.successful(), f.app.last())
	}
}

func TestLoadInitial(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	app := &applied{}

	t.Run("invalid file fails", func(t *testing.T) {
		writeFile(t, path, invalidConfig)
		r := NewReloader(path, app.apply, zaptest.NewLogger(t), prometheus.NewRegistry())
		_, err := r.LoadInitial()
		var es Errors
		if !errors.As(err, &es) {
			t.Fatalf("got %v, want Errors", err)
		}
		if len(app.list()) != 0 || r.Current() != nil {
			t.Error("invalid config applied")
		}
	})

	t.Run("missing file fails", func(t *testing.T) {
		r := NewReloader(filepath.Join(dir, "nope.yaml"), app.apply, zaptest.NewLogger(t), prometheus.NewRegistry())
		if _, err := r.LoadInitial(); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("got %v, want ErrNotExist", err)
		}
	})

	t.Run("valid file is applied and stamped", func(t *testing.T) {
		writeFile(t, path, serviceConfig("v1"))
		r := NewReloader(path, app.apply, zaptest.NewLogger(t), prometheus.NewRegistry())
		now := time.Date(2026, 11, 25, 10, 0, 0, 500_000_000, time.UTC)
		r.Now = func() time.Time { return now }
		cfg, err := r.LoadInitial()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Services[0].Name != "v1" || app.last() != "v1" || r.Current() != cfg {
			t.Errorf("cfg %s, applied %v", cfg.Services[0].Name, app.list())
		}
		if got, want := testutil.ToFloat64(r.lastTime), float64(now.UnixNano())/1e9; got != want {
			t.Errorf("success timestamp %v, want %v", got, want)
		}
		if testutil.ToFloat64(r.success) != 1 {
			t.Error("guardian_config_last_reload_successful != 1")
		}
	})
}

func TestRequestAfterStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, serviceConfig("v1"))
	r := NewReloader(path, (&applied{}).apply, zaptest.NewLogger(t), prometheus.NewRegistry())

	// A request made before Run starts is pending; stopping Run answers it.
	pending := r.Request()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// Run may have served the pending request before seeing ctx done.
	if err := await(t, pending); err != nil && !errors.Is(err, ErrReloaderStopped) {
		t.Errorf("pending request: %v", err)
	}
	if err := await(t, r.Request()); !errors.Is(err, ErrReloaderStopped) {
		t.Errorf("request after stop: %v, want ErrReloaderStopped", err)
	}
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewReloader("config.yaml", (&applied{}).apply, zaptest.NewLogger(t), reg)
	n, err := testutil.GatherAndCount(reg,
		"guardian_config_last_reload_successful",
		"guardian_config_last_reload_success_timestamp_seconds",
		"guardian_config_reloads_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 { // two gauges and three results
		t.Errorf("%d series, want 5", n)
	}
}

// TestWatchBusyDirectory checks that a file changing all the time next to
// the config does not postpone reloads forever.
func TestWatchBusyDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, serviceConfig("v1"))
	// Events come every few milliseconds, far more often than Debounce.
	f := newFixture(t, path, true, func(r *Reloader) { r.Debounce = 200 * time.Millisecond })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				if err := os.WriteFile(filepath.Join(dir, "noise.log"), fmt.Appendf(nil, "%d\n", i), 0o600); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()

	writeFile(t, path, serviceConfig("v2"))
	eventually(t, "v2 applied despite the noise", func() bool { return f.app.last() == "v2" })
}

// observed makes a fixture's Reloader log to an observer at debug level.
func observed(logs **observer.ObservedLogs) func(*Reloader) {
	return func(r *Reloader) {
		core, l := observer.New(zap.DebugLevel)
		r.logger = zap.New(core)
		*logs = l
	}
}

// renameOver replaces path with body in one step, as editors do: the
// directory sees one event for path.
func renameOver(t *testing.T, path, body string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	writeFile(t, tmp, body)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// noise writes to another file in dir n times.
func noise(t *testing.T, dir string, n int) {
	t.Helper()
	for i := range n {
		writeFile(t, filepath.Join(dir, "guardian.log"), fmt.Sprintf("line %d\n", i))
	}
}

// TestWatchIgnoresOtherFiles checks that changes to other files in the
// config's directory (a log file there, at debug level) neither reload the
// config nor log anything, at any level.
func TestWatchIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, serviceConfig("v1"))
	var logs *observer.ObservedLogs
	f := newFixture(t, path, true, observed(&logs))
	logs.TakeAll() // the first load

	noise(t, dir, 1000)
	// The events arrive in order: once v2 is applied, the noise was seen.
	renameOver(t, path, serviceConfig("v2"))
	eventually(t, "v2 applied", func() bool { return f.app.last() == "v2" })

	for result, want := range map[string]float64{resultSuccess: 2, resultUnchanged: 0, resultFailure: 0} {
		if got := f.reloads(result); got != want {
			t.Errorf("%s reloads: %v, want %v", result, got, want)
		}
	}
	unexpected := 0
	for _, e := range logs.AllUntimed() {
		if e.Message == "configuration loaded" {
			continue
		}
		if e.Message == "config file changed" && e.ContextMap()["event"] != nil &&
			strings.Contains(fmt.Sprint(e.ContextMap()["event"]), "config.yaml") {
			continue
		}
		unexpected++
		if unexpected <= 3 {
			t.Errorf("unexpected log line: %s %s %v", e.Level, e.Message, e.ContextMap())
		}
	}
	if unexpected > 0 {
		t.Errorf("%d unexpected log lines", unexpected)
	}
}

// TestWatchFailedReloadNotRetried checks that an invalid config is tried
// once: neither other files changing nor rewriting the same bytes retry it.
func TestWatchFailedReloadNotRetried(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, serviceConfig("v1"))
	var logs *observer.ObservedLogs
	f := newFixture(t, path, true, observed(&logs))

	renameOver(t, path, invalidConfig)
	eventually(t, "a failed reload", func() bool { return f.reloads(resultFailure) == 1 })

	noise(t, dir, 1000)
	for range 5 {
		renameOver(t, path, invalidConfig) // the same bytes
	}
	// A different invalid file is tried: once it has failed, every event
	// before it was handled.
	renameOver(t, path, invalidConfig+"    another: oops\n")
	eventually(t, "a second failed reload", func() bool { return f.reloads(resultFailure) >= 2 })
	if got := f.reloads(resultFailure); got != 2 {
		t.Errorf("%v failed reloads, want 2", got)
	}
	if got := logs.FilterMessage("configuration not loaded, keeping the running one").Len(); got != 2 {
		t.Errorf("%d error lines, want 2", got)
	}
	if got := f.r.Current().Services[0].Name; got != "v1" {
		t.Errorf("running %s, want v1", got)
	}

	t.Run("a request retries the same file", func(t *testing.T) {
		if err := await(t, f.r.Request()); err == nil {
			t.Fatal("want an error")
		}
		if got := f.reloads(resultFailure); got != 3 {
			t.Errorf("%v failed reloads, want 3", got)
		}
	})
}
