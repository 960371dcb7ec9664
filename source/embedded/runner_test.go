package embedded

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/zap/zaptest"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/testenv"
)

// A Runner scrapes once started (a second Start starts nothing more), is
// the same only for the same settings and retention, Pause ends the loop
// and keeps the samples until Start, and Stop ends the loop and closes the
// source for good, started or not.
func TestRunner(t *testing.T) {
	tg := newTarget(t, false)
	tg.serve()
	cfg := config.Scrape{URL: tg.srv.URL, Interval: config.Duration(20 * time.Millisecond), Timeout: config.Duration(10 * time.Second)}
	r, err := NewRunner(cfg, Options{Retention: 7 * time.Minute}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	other := cfg
	other.URL += "/other"
	for _, tc := range []struct {
		name      string
		cfg       config.Scrape
		retention time.Duration
		want      bool
	}{
		{"same", cfg, 7 * time.Minute, true},
		{"other retention", cfg, 8 * time.Minute, false},
		{"other URL", other, 7 * time.Minute, false},
	} {
		if got := r.Same(tc.cfg, tc.retention); got != tc.want {
			t.Errorf("%s: Same = %v, want %v", tc.name, got, tc.want)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.Start(ctx)
	r.Start(ctx)
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := float64(r.Source().stats.scrapes.Load()); n < 3 {
			return fmt.Errorf("%g scrapes", n)
		}
		return nil
	}, "three scrapes")
	if got := single(t, r.Source(), "up", time.Now()); got != 1 {
		t.Errorf("up = %v, want 1", got)
	}
	// Paused: no scrape, the samples kept; started again: it scrapes.
	r.Pause()
	paused := float64(r.Source().stats.scrapes.Load())
	if got := single(t, r.Source(), "up", time.Now()); got != 1 {
		t.Errorf("up after Pause = %v, want 1", got)
	}
	r.Start(ctx)
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := float64(r.Source().stats.scrapes.Load()); n < paused+2 {
			return fmt.Errorf("%g scrapes, %g when paused", n, paused)
		}
		return nil
	}, "scrapes again after Pause and Start")
	r.Stop()
	r.Start(ctx)
	if _, err := r.Source().Query(context.Background(), "up", time.Now()); !errors.Is(err, ErrClosed) {
		t.Errorf("query after Stop and Start: %v, want ErrClosed", err)
	}
	if _, err := r.Source().Query(context.Background(), "up", time.Now()); !errors.Is(err, ErrClosed) {
		t.Errorf("query after Stop: %v, want ErrClosed", err)
	}

	idle, err := NewRunner(cfg, Options{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	idle.Stop()
	if _, err := idle.Source().Query(context.Background(), "up", time.Now()); !errors.Is(err, ErrClosed) {
		t.Errorf("query after Stop of a runner never started: %v, want ErrClosed", err)
	}
	if _, err := NewRunner(config.Scrape{}, Options{}, zaptest.NewLogger(t)); err == nil {
		t.Error("a runner without a URL was built")
	}
}

func TestRetention(t *testing.T) {
	const margin = 2*time.Second + LookbackDelta // two 1s scrape intervals and the lookback
	service := func(mod func(*config.Service)) config.Service {
		sc := config.Service{Name: "checkout", WatchWindow: config.Duration(30 * time.Minute),
			Scrape: &config.Scrape{URL: "http://127.0.0.1:8080/metrics", Interval: config.Duration(time.Second)}}
		mod(&sc)
		return sc
	}
	trig := func(tc config.Trigger) func(*config.Service) {
		return func(sc *config.Service) { sc.Triggers = append(sc.Triggers, tc) }
	}
	for _, tc := range []struct {
		name string
		sc   config.Service
		want time.Duration
		err  string
	}{
		{"nothing to query", service(func(*config.Service) {}), margin, ""},
		{"version query", service(func(sc *config.Service) { sc.Deploy.VersionQuery = `sum by (version) (rate(x[2m]))` }), 2*time.Minute + margin, ""},
		{"trigger window", service(trig(config.Trigger{Name: "e", Query: `rate(x[{{.Window}}])`, Window: config.Duration(10 * time.Minute)})), 10*time.Minute + margin, ""},
		{"default window", service(trig(config.Trigger{Name: "e", Query: `rate(x[{{.Window}}])`})), 3*time.Minute + margin, ""},
		{"volume query", service(trig(config.Trigger{Name: "e", Query: `x`, VolumeQuery: `increase(x[15m])`})), 15*time.Minute + margin, ""},
		{"since the deploy", service(trig(config.Trigger{Name: "e", Query: `increase(x[{{.SinceDeploy}}])`})), 30*time.Minute + margin, ""},
		{"sequential baseline", service(trig(config.Trigger{Name: "e", Sequential: &config.Sequential{
			Errors: `increase(e[{{.SinceDeploy}}])`, Requests: `increase(r[{{.Window}}])`, BaselineWindow: config.Duration(time.Hour)}})),
			90*time.Minute + margin, ""},
		// The pre-deploy counts run at the deploy time, up to a watch window
		// ago, and reach baseline_window (and any offset) before it.
		{"sequential baseline with an offset", service(trig(config.Trigger{Name: "e", Sequential: &config.Sequential{
			Errors: `increase(e[{{.SinceDeploy}}] offset 10m)`, Requests: `increase(r[{{.SinceDeploy}}])`, BaselineWindow: config.Duration(30 * time.Minute)}})),
			70*time.Minute + margin, ""},
		// The new version's counts start a lead before the deploy: the
		// version query's range (2m) plus the evaluation interval (5s).
		{"sequential new version lead", service(func(sc *config.Service) {
			sc.Deploy.VersionQuery = `sum by (version) (rate(x[2m]))`
			trig(config.Trigger{Name: "e", Sequential: &config.Sequential{
				Errors: `increase(e[{{.SinceDeploy}}])`, Requests: `increase(r[{{.SinceDeploy}}])`}})(sc)
		}), 32*time.Minute + 5*time.Second + margin, ""},
		// Recovery checks run the derived errors/requests over the window.
		{"sequential window", service(trig(config.Trigger{Name: "e", Window: config.Duration(2 * time.Hour), Sequential: &config.Sequential{
			Errors: `increase(e[{{.SinceDeploy}}])`, Requests: `increase(r[{{.SinceDeploy}}])`, BaselineWindow: config.Duration(30 * time.Minute)}})),
			2*time.Hour + margin, ""},
		// The live counts use the trigger's window, not baseline_window.
		{"sequential live window", service(trig(config.Trigger{Name: "e", Window: config.Duration(2 * time.Hour), Sequential: &config.Sequential{
			Errors: `increase(e[{{.SinceDeploy}}])`, Requests: `increase(r[{{.Window}}])`, BaselineWindow: config.Duration(30 * time.Minute)}})),
			2*time.Hour + 30*time.Minute + margin, ""},
		// A latency test's buckets query runs as a sequential test's
		// counts: since the deploy plus the lead, and over baseline_window
		// at the deploy time.
		{"latency baseline", service(trig(config.Trigger{Name: "l", Latency: &config.Latency{
			Buckets: `sum by (le) (increase(h_bucket[{{.SinceDeploy}}]))`, BaselineWindow: config.Duration(time.Hour)}})),
			90*time.Minute + margin, ""},
		{"latency new version lead", service(func(sc *config.Service) {
			sc.Deploy.VersionQuery = `sum by (version) (rate(x[2m]))`
			trig(config.Trigger{Name: "l", Latency: &config.Latency{Buckets: `sum by (le) (increase(h_bucket[{{.SinceDeploy}}]))`}})(sc)
		}), 32*time.Minute + 5*time.Second + margin, ""},
		{"bad latency query", service(trig(config.Trigger{Name: "l", Latency: &config.Latency{Buckets: `(`}})), 0, "trigger l: latency"},
		{"bad version query", service(func(sc *config.Service) { sc.Deploy.VersionQuery = `sum(` }), 0, "deploy.version_query"},
		{"bad trigger query", service(trig(config.Trigger{Name: "e", Query: `rate(x[`})), 0, "trigger e"},
		{"bad sequential query", service(trig(config.Trigger{Name: "e", Sequential: &config.Sequential{Errors: `(`, Requests: `r`}})), 0, "trigger e: sequential"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Retention(tc.sc, 3*time.Minute, 5*time.Second)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want it to mention %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Retention = %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

// The source keeps what its queries need plus an incident's span, so that
// the report's charts of an incident still find its deploy.
func TestSourceRetention(t *testing.T) {
	const margin = 2*time.Second + LookbackDelta
	service := func(mode string, timeout time.Duration) config.Service {
		return config.Service{Name: "checkout", WatchWindow: config.Duration(30 * time.Minute),
			Approval: config.Approval{Mode: mode, Timeout: config.Duration(timeout)},
			Recovery: config.Recovery{Timeout: config.Duration(15 * time.Minute)},
			Triggers: []config.Trigger{{Name: "e", Query: `rate(x[{{.Window}}])`, Window: config.Duration(2 * time.Minute)}},
			Scrape:   &config.Scrape{URL: "http://127.0.0.1:8080/metrics", Interval: config.Duration(time.Second)}}
	}
	for _, tc := range []struct {
		name string
		sc   config.Service
		want time.Duration
	}{
		// 30m watch + 15m manual allowance + 15m recovery + 10m margin, + 2m window and margin.
		{"manual", service("manual", 0), 70*time.Minute + 2*time.Minute + margin},
		{"auto_after", service("auto_after", 5*time.Minute), 60*time.Minute + 2*time.Minute + margin},
		{"auto", service("auto", 0), 55*time.Minute + 2*time.Minute + margin},
		// No watch window, no query: the 10m margin and the lookback.
		{"nothing configured", config.Service{Name: "x", Approval: config.Approval{Mode: "auto"}}, 10*time.Minute + LookbackDelta},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SourceRetention(tc.sc, 3*time.Minute, 5*time.Second)
			if err != nil || got != tc.want {
				t.Fatalf("SourceRetention = %s, %v; want %s", got, err, tc.want)
			}
		})
	}
	if _, err := SourceRetention(config.Service{Name: "x", Triggers: []config.Trigger{{Name: "e", Query: "rate(x["}}}, time.Minute, time.Second); err == nil {
		t.Fatal("a bad query gave a retention")
	}
}

// The scrape loop scrapes at its start and every interval after it; its
// schedule is known once Start returns.
func TestNextScrape(t *testing.T) {
	const interval = time.Second
	r, err := NewRunner(config.Scrape{URL: "http://127.0.0.1:1/metrics", Interval: config.Duration(interval)}, Options{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	src := r.Source()
	if got := src.NextScrape(time.Now()); !got.IsZero() {
		t.Fatalf("before Start: %v, want zero", got)
	}
	before := time.Now()
	r.Start(context.Background())
	after := time.Now()
	first := src.NextScrape(before.Add(-time.Hour))
	if first.Before(before) || first.After(after) {
		t.Fatalf("first scrape at %v, want within Start (%v to %v)", first, before, after)
	}
	if got := src.NextScrape(first); !got.Equal(first) {
		t.Errorf("NextScrape(first) = first+%s, want first", got.Sub(first))
	}
	// Then a grid of the interval whose phase is the URL's, from at least
	// half an interval after the first scrape.
	second := src.NextScrape(first.Add(time.Nanosecond))
	if d := second.Sub(first); d < interval/2 || d >= interval*3/2 {
		t.Fatalf("second scrape first+%s, want within [first+%s, first+%s)", d, interval/2, interval*3/2)
	}
	offset := time.Duration(second.UnixNano() % int64(interval))
	if want := time.Duration(xxhash.Sum64String(src.url)%scrapePhases) * interval / scrapePhases; offset != want {
		t.Errorf("grid's phase %s, want the URL's hash modulo %d phases, %s", offset, scrapePhases, want)
	}
	for _, tc := range []struct {
		at, want time.Duration // after the second scrape
	}{
		{-time.Nanosecond, 0}, {0, 0}, {time.Nanosecond, interval}, {interval, interval}, {5 * interval / 2, 3 * interval},
	} {
		if got := src.NextScrape(second.Add(tc.at)); !got.Equal(second.Add(tc.want)) {
			t.Errorf("NextScrape(second+%s) = second+%s, want second+%s", tc.at, got.Sub(second), tc.want)
		}
	}
	// Targets spread over every phase.
	phases := map[time.Duration]bool{}
	for i := range 64 {
		o, err := New(config.Scrape{URL: fmt.Sprintf("http://127.0.0.1:%d/metrics", 1000+i), Interval: config.Duration(interval)}, Options{}, zaptest.NewLogger(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		phases[o.newSchedule(first).offset] = true
		_ = o.Close()
	}
	if len(phases) != scrapePhases {
		t.Errorf("64 targets in %d phases, want %d", len(phases), scrapePhases)
	}
}

// Between scrapes a scrape loop holds a timer, and its kept-alive
// connection no goroutine either.
func TestIdleLoopsHoldNoGoroutine(t *testing.T) {
	tg := newTarget(t, false)
	tg.serve()
	const n = 20
	var runners []*Runner
	for i := range n {
		r, err := NewRunner(config.Scrape{URL: fmt.Sprintf("%s/%d", tg.srv.URL, i), Interval: config.Duration(time.Hour)}, Options{}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Stop()
		r.Start(context.Background())
		runners = append(runners, r)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		for i, r := range runners {
			if n := float64(r.Source().stats.scrapes.Load()); n != 1 {
				return fmt.Errorf("runner %d: %g scrapes", i, n)
			}
		}
		if g := scrapeGoroutines(); len(g) > 0 {
			return fmt.Errorf("%d goroutines of scrapes or their connections, the first:\n%s", len(g), g[0])
		}
		return nil
	}, "every loop scraped once and holds no goroutine")
}

// scrapeGoroutines returns the stacks of the goroutines that run a scrape
// loop or a scrape, or serve a client connection of net/http's (the test's
// own goroutines and the target's aside).
func scrapeGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "TestIdleLoopsHoldNoGoroutine") || strings.Contains(g, "embedded.TestMain") {
			continue
		}
		if strings.Contains(g, "source/embedded.") || strings.Contains(g, "net/http.(*persistConn)") {
			found = append(found, g)
		}
	}
	return found
}
