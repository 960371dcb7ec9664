package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
)

var errDown = fmt.Errorf("connection refused: %w", source.ErrUnavailable)

// The version query learns v1, then sees v2: a deploy with v1 as its
// baseline opens a watch, every trigger is judged at each tick of it, and
// the window closes at its end.
func TestTick(t *testing.T) {
	f := newFixture(t, fixtureOpts{versionQuery: true})
	ctx := context.Background()
	f.src.set(func(s *fakeSource) { s.versions["v1"] = 10; s.values[errV1] = 0.01 })
	if vs := f.svc.Tick(ctx, tick(0)); len(vs) != 0 {
		t.Fatalf("verdicts before any deploy: %v", vs)
	}
	if st := f.svc.Status(); st.Current != "v1" || st.Watch != nil || st.Name != "checkout" {
		t.Fatalf("after learning: %+v", st)
	}
	if len(f.saved) != 1 {
		t.Fatalf("saved %d times after learning v1, want 1", len(f.saved))
	}

	f.src.set(func(s *fakeSource) { s.versions["v2"] = 5; s.values[errV2] = 0.015; s.values[latencyV2] = 0.1 })
	vs := f.svc.Tick(ctx, tick(1))
	if got := states(vs); len(vs) != 2 || got["error-rate"] != trigger.Inactive || got["latency"] != trigger.Inactive {
		t.Fatalf("verdicts %v", vs)
	}
	if vs[0].Outcome != trigger.OK || !vs[0].Deploy.Equal(trigger.Deploy{Service: "checkout", Version: "v2", Baseline: "v1", At: tick(1)}) {
		t.Errorf("error-rate verdict %+v", vs[0])
	}
	// v2 may have served since the version query's range (1m) and one
	// evaluation interval (1s) before it was seen.
	if vs[0].Deploy.Lead != time.Minute+time.Second {
		t.Errorf("lead %s, want 1m1s", vs[0].Deploy.Lead)
	}
	st := f.svc.Status()
	w := st.Watch
	if st.Current != "v2" || !slices.Equal(st.Serving, []string{"v1", "v2"}) || w == nil || w.Version != "v2" || w.Baseline != "v1" ||
		w.Via != "version_query" || !w.Since.Equal(tick(1)) || !w.Until.Equal(tick(1).Add(10*time.Minute)) {
		t.Fatalf("status %+v, watch %+v", st, w)
	}
	if len(w.Triggers) != 2 || w.Triggers[0].Name != "error-rate" || w.Triggers[0].State != "inactive" || w.Triggers[0].Outcome != "ok" ||
		!strings.HasPrefix(w.Triggers[0].Evidence, "error-rate v2: 0.015") || w.Triggers[1].Name != "latency" {
		t.Errorf("trigger status %+v", w.Triggers)
	}
	if len(f.verdicts) != 2 {
		t.Errorf("OnVerdict saw %d verdicts, want 2", len(f.verdicts))
	}
	for name, got := range map[string]float64{
		"deploys":     testutil.ToFloat64(f.m.deploys.WithLabelValues("checkout", "version_query")),
		"watching":    testutil.ToFloat64(f.m.watching.WithLabelValues("checkout")),
		"evaluations": testutil.ToFloat64(f.m.evaluations.WithLabelValues("checkout", "error-rate", "ok")),
	} {
		if got != 1 {
			t.Errorf("%s = %v, want 1", name, got)
		}
	}
	if n := testutil.CollectAndCount(f.m.evalDuration); n != 1 {
		t.Errorf("guardian_evaluation_duration_seconds has %d series, want 1", n)
	}
	saves := len(f.saved)
	f.svc.Tick(ctx, tick(2))
	if len(f.saved) != saves {
		t.Errorf("a tick that learnt nothing saved again")
	}

	if vs := f.svc.Tick(ctx, tick(1).Add(10*time.Minute)); len(vs) != 0 {
		t.Errorf("verdicts at the window's end: %v", vs)
	}
	if w := f.svc.Status().Watch; w != nil {
		t.Errorf("watch still open: %+v", w)
	}
	if got := testutil.ToFloat64(f.m.watching.WithLabelValues("checkout")); got != 0 {
		t.Errorf("guardian_watch_active = %v after the window", got)
	}
	if n := f.logs.FilterMessage("watch window ended").FilterField(zap.String("version", "v2")).Len(); n != 1 {
		t.Errorf("logged the window's end %d times", n)
	}
}

// A trigger that fires is counted once and tells OnFiring at every firing
// tick, with every trigger's last baseline value and its own severity.
func TestFiring(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	f.svc.Learn(ctx, "v1", t0)
	if _, err := f.svc.Announce(ctx, "v2", "", tick(1)); err != nil {
		t.Fatal(err)
	}
	f.src.set(func(s *fakeSource) { s.values[errV1] = 0.01; s.values[errV2] = 0.2; s.values[latencyV2] = 0.9 })

	vs := f.svc.Tick(ctx, tick(2))
	if got := states(vs); got["error-rate"] != trigger.Firing || got["latency"] != trigger.Pending {
		t.Fatalf("states %v", got)
	}
	if len(f.firings) != 1 {
		t.Fatalf("OnFiring called %d times, want 1", len(f.firings))
	}
	fr := f.firings[0]
	if fr.verdict.Trigger != "error-rate" || fr.severity != "SEV-2" || fr.deploy.Version != "v2" || fr.deploy.Baseline != "v1" ||
		fr.deploy.Origin != rollout.OriginAPI || len(fr.refs) != 1 || fr.refs["error-rate"] != 0.01 {
		t.Errorf("firing %+v", fr)
	}
	if len(f.verdicts) != 2 || f.verdicts[0].State != trigger.Firing {
		t.Errorf("OnVerdict saw %d verdicts, the first %s", len(f.verdicts), f.verdicts[0].State)
	}
	logged := f.logs.FilterMessage("trigger firing").All()
	if len(logged) != 1 {
		t.Fatalf("logged %d firings", len(logged))
	}
	fields := logged[0].ContextMap()
	for k, want := range map[string]string{"trigger": "error-rate", "version": "v2", "baseline": "v1", "outcome": "violated", "state": "firing"} {
		if fields[k] != want {
			t.Errorf("firing log %s = %v, want %q", k, fields[k], want)
		}
	}

	f.svc.Tick(ctx, tick(3))
	vs = f.svc.Tick(ctx, tick(2).Add(time.Minute))
	if got := states(vs); got["latency"] != trigger.Firing {
		t.Fatalf("latency %s a minute after pending", got["latency"])
	}
	var severities []string
	for _, fr := range f.firings {
		severities = append(severities, fr.verdict.Trigger+"/"+fr.severity)
	}
	if want := []string{"error-rate/SEV-2", "error-rate/SEV-2", "error-rate/SEV-2", "latency/"}; !slices.Equal(severities, want) {
		t.Errorf("firings %v, want %v", severities, want)
	}
	for trig, want := range map[string]float64{"error-rate": 1, "latency": 1} {
		if got := testutil.ToFloat64(f.m.triggersFired.WithLabelValues("checkout", trig)); got != want {
			t.Errorf("guardian_triggers_fired_total{trigger=%q} = %v, want %v", trig, got, want)
		}
		if got := testutil.ToFloat64(f.m.triggerState.WithLabelValues("checkout", trig)); got != 2 {
			t.Errorf("guardian_trigger_state{trigger=%q} = %v, want 2", trig, got)
		}
	}
	tr := f.svc.Status().Watch.Triggers[1]
	if tr.State != "firing" || tr.ActiveSince == nil || !tr.ActiveSince.Equal(tick(2)) {
		t.Errorf("latency status %+v", tr)
	}
}

// The built-in progress-deadline trigger is judged like the others: it
// fires (and is counted) once while the watched version's rollout is
// stalled, tells OnFiring at each firing tick, and clears on progress.
func TestProgressDeadline(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []string // the stalled version before each tick; "" none
		want  []trigger.State
		fired int
	}{
		{"stall fires, progress clears", []string{"", "v2", "v2", ""}, []trigger.State{trigger.Inactive, trigger.Firing, trigger.Firing, trigger.Inactive}, 2},
		{"another version's stall", []string{"v3"}, []trigger.State{trigger.Inactive}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stalled := ""
			f := newFixture(t, fixtureOpts{triggers: func(t *testing.T) []trigger.Evaluator {
				return []trigger.Evaluator{
					trigger.NewProgressDeadline("progress-deadline", "SEV-1", func() (trigger.Stall, bool) {
						return trigger.Stall{Version: stalled, Deadline: 30 * time.Second, Description: "stuck"}, stalled != ""
					}),
					metricTrigger(t, "latency", time.Minute, ""),
				}
			}})
			ctx := context.Background()
			if _, err := f.svc.Announce(ctx, "v2", "v1", tick(0)); err != nil {
				t.Fatal(err)
			}
			for i, s := range tc.steps {
				stalled = s
				vs := f.svc.Tick(ctx, tick(i+1))
				if len(vs) != 2 || vs[0].Trigger != "progress-deadline" || vs[0].State != tc.want[i] {
					t.Fatalf("step %d: verdicts %v", i, vs)
				}
			}
			if len(f.firings) != tc.fired {
				t.Errorf("OnFiring called %d times, want %d", len(f.firings), tc.fired)
			}
			for _, fr := range f.firings {
				if fr.severity != "SEV-1" || fr.verdict.Evidence.Detail != "stuck" {
					t.Errorf("firing %+v", fr)
				}
			}
			want := 0.0
			if tc.fired > 0 {
				want = 1
			}
			if got := testutil.ToFloat64(f.m.triggersFired.WithLabelValues("checkout", "progress-deadline")); got != want {
				t.Errorf("guardian_triggers_fired_total = %v, want %v", got, want)
			}
			if got := testutil.ToFloat64(f.m.evaluations.WithLabelValues("checkout", "progress-deadline", "ok")); got == 0 {
				t.Error("no ok evaluation of the progress-deadline trigger counted")
			}
		})
	}
}

// Deploys announced through the API and seen by a workload watcher open a
// watch; the version the latest deploy replaced coming back is a rollback,
// learnt without one; another version seen before is a deploy again.
func TestAnnounceAndDeployed(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	f.svc.Learn(ctx, "v1", t0)
	if st := f.svc.Status(); st.Current != "v1" || st.Watch != nil {
		t.Fatalf("after Learn: %+v", st)
	}
	if _, err := f.svc.Announce(ctx, "", "", tick(1)); !errors.Is(err, rollout.ErrInvalidVersion) {
		t.Fatalf("empty version: %v", err)
	}
	if f.svc.Status().Watch != nil {
		t.Fatal("a refused announcement opened a watch")
	}
	ev, err := f.svc.Announce(ctx, "v2", "", tick(1))
	if err != nil || ev.Baseline != "v1" || ev.Origin != rollout.OriginAPI {
		t.Fatalf("Announce = %+v, %v", ev, err)
	}
	if w := f.svc.Status().Watch; w == nil || w.Via != "api" || w.Version != "v2" {
		t.Fatalf("watch %+v", w)
	}

	f.svc.Deployed(ctx, rollout.Event{Service: "checkout", Version: "v3", Baseline: "v2", At: tick(2), Origin: rollout.OriginKubernetes})
	if w := f.svc.Status().Watch; w == nil || w.Via != "kubernetes" || w.Version != "v3" || w.Baseline != "v2" || !w.Until.Equal(tick(2).Add(10*time.Minute)) {
		t.Fatalf("watch %+v", w)
	}
	if n := f.logs.FilterMessage("new deploy replaces the open watch").Len(); n != 1 {
		t.Errorf("logged %d replaced watches, want 1", n)
	}
	// Back to v2, the version v3 replaced: a rollback, learnt without a watch.
	f.svc.Deployed(ctx, rollout.Event{Service: "checkout", Version: "v2", Baseline: "v3", At: tick(3), Origin: rollout.OriginKubernetes})
	if st := f.svc.Status(); st.Current != "v2" || st.Watch == nil || st.Watch.Version != "v3" {
		t.Errorf("a rollback to v2: %+v", st)
	}
	// v1, seen long ago, coming back after v2 and v3 served: a deploy to judge.
	f.svc.Deployed(ctx, rollout.Event{Service: "checkout", Version: "v1", Baseline: "v2", At: tick(4), Origin: rollout.OriginKubernetes})
	if w := f.svc.Status().Watch; w == nil || w.Version != "v1" || w.Baseline != "v2" {
		t.Errorf("v1 back after other versions: %+v", w)
	}
	f.svc.Deployed(ctx, rollout.Event{Service: "checkout", Version: "v4", Baseline: "v4", At: tick(5), Origin: rollout.OriginKubernetes})
	if w := f.svc.Status().Watch; w.Version != "v1" {
		t.Errorf("an unusable deploy replaced the watch: %+v", w)
	}
	for origin, want := range map[string]float64{"api": 1, "kubernetes": 2} {
		if got := testutil.ToFloat64(f.m.deploys.WithLabelValues("checkout", origin)); got != want {
			t.Errorf("guardian_deploys_total{source=%q} = %v, want %v", origin, got, want)
		}
	}
	if len(f.saved) == 0 || !strings.Contains(string(f.saved[len(f.saved)-1]), `"current":"v1"`) {
		t.Errorf("the last deploy was not saved")
	}
}

// savedV2 is a state saved in the middle of the watch of v2 (the format of
// existing state files).
const savedV2 = `{"detector":{"primed":true,"current":"v2","seen":{"v1":"2026-03-01T11:00:00Z","v2":"2026-03-01T12:00:10Z"},"serving":["v1","v2"]},` +
	`"watch":{"deploy":{"Service":"checkout","Version":"v2","Baseline":"v1","At":"2026-03-01T12:00:10Z","Origin":0,"Traffic":5},"until":"2026-03-01T12:10:10Z","fired":true}}`

// A restart in the middle of a watch resumes it from the saved state;
// a watch whose window has passed is dropped; saving writes the same format.
func TestRestore(t *testing.T) {
	ctx := context.Background()
	t.Run("open watch", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		if err := f.svc.Restore([]byte(savedV2), tick(5)); err != nil {
			t.Fatal(err)
		}
		st := f.svc.Status()
		if st.Current != "v2" || !slices.Equal(st.Serving, []string{"v1", "v2"}) || st.Watch == nil || st.Watch.Version != "v2" ||
			st.Watch.Baseline != "v1" || st.Watch.Via != "version_query" || !st.Watch.Until.Equal(tick(1).Add(10*time.Minute)) {
			t.Fatalf("restored %+v, watch %+v", st, st.Watch)
		}
		if got := testutil.ToFloat64(f.m.watching.WithLabelValues("checkout")); got != 1 {
			t.Errorf("guardian_watch_active = %v", got)
		}
		f.src.set(func(s *fakeSource) { s.values[errV2] = 0.01 })
		if vs := f.svc.Tick(ctx, tick(6)); len(vs) != 2 {
			t.Errorf("the restored watch judged %d triggers", len(vs))
		}
		// Saving the same state writes the same bytes: nothing to persist.
		if len(f.saved) != 0 {
			t.Errorf("saved %s, a different encoding of the same state", f.saved[0])
		}
		if got := testutil.ToFloat64(f.m.deploys.WithLabelValues("checkout", "version_query")); got != 0 {
			t.Errorf("the restored deploy was counted again")
		}
	})
	t.Run("window passed", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		if err := f.svc.Restore([]byte(savedV2), tick(1).Add(10*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if st := f.svc.Status(); st.Current != "v2" || st.Watch != nil {
			t.Errorf("restored %+v", st)
		}
	})
	t.Run("round trip", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		f.svc.Learn(ctx, "v1", t0)
		if _, err := f.svc.Announce(ctx, "v2", "", tick(1)); err != nil {
			t.Fatal(err)
		}
		g := newFixture(t, fixtureOpts{})
		if err := g.svc.Restore(f.saved[len(f.saved)-1], tick(2)); err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(f.svc.Status())
		b, _ := json.Marshal(g.svc.Status())
		if string(a) != string(b) || !strings.Contains(string(a), `"version":"v2","baseline":"v1","baseline_why":"the version current until the announcement","via":"api"`) {
			t.Errorf("restored %s\nsaved    %s", b, a)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		if err := f.svc.Restore([]byte(`{"detector":`), tick(1)); err == nil || !strings.Contains(err.Error(), "checkout") {
			t.Errorf("err %v", err)
		}
	})
}

// A reload carries the open watch (with the new window), the versions
// learnt and the state of unchanged triggers over to the new service; a
// changed trigger starts afresh and a firing one does not fire again.
func TestTakeOver(t *testing.T) {
	ctx := context.Background()
	stalled := func() (trigger.Stall, bool) { return trigger.Stall{Version: "v2", Description: "stuck"}, true }
	build := func(errFor time.Duration) func(t *testing.T) []trigger.Evaluator {
		return func(t *testing.T) []trigger.Evaluator {
			return []trigger.Evaluator{
				trigger.NewProgressDeadline("progress-deadline", "SEV-1", stalled),
				metricTrigger(t, "error-rate", errFor, ""),
				metricTrigger(t, "latency", time.Minute, ""),
			}
		}
	}
	old := newFixture(t, fixtureOpts{triggers: build(time.Minute)})
	old.svc.Learn(ctx, "v1", t0)
	if _, err := old.svc.Announce(ctx, "v2", "", tick(1)); err != nil {
		t.Fatal(err)
	}
	old.src.set(func(s *fakeSource) { s.values[errV1] = 0.01; s.values[errV2] = 0.2; s.values[latencyV2] = 0.9 })
	if got := states(old.svc.Tick(ctx, tick(2))); got["error-rate"] != trigger.Pending || got["latency"] != trigger.Pending || got["progress-deadline"] != trigger.Firing {
		t.Fatalf("before the reload: %v", got)
	}

	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("keep detector %v", keep), func(t *testing.T) {
			next := newFixture(t, fixtureOpts{triggers: build(2 * time.Minute), window: 20 * time.Minute, metrics: old.m})
			next.src = old.src
			next.svc.querier = old.src
			next.svc.TakeOver(old.svc, keep)
			st := next.svc.Status()
			if st.Watch == nil || st.Watch.Version != "v2" || !st.Watch.Until.Equal(tick(1).Add(20*time.Minute)) {
				t.Fatalf("watch %+v", st.Watch)
			}
			if want := map[bool]string{true: "v2", false: ""}[keep]; st.Current != want {
				t.Errorf("current %q, want %q", st.Current, want)
			}
			vs := next.svc.Tick(ctx, tick(2).Add(time.Minute))
			got := states(vs)
			// latency was pending since tick(2) and fires a minute later; the
			// changed error-rate starts pending now.
			if got["latency"] != trigger.Firing || got["error-rate"] != trigger.Pending || got["progress-deadline"] != trigger.Firing {
				t.Errorf("after the reload: %v", got)
			}
			for _, v := range vs {
				if v.Trigger == "progress-deadline" && v.Changed {
					t.Error("the progress-deadline trigger fired again after the reload")
				}
				if v.Trigger == "error-rate" && !v.Evidence.ActiveSince.Equal(tick(2).Add(time.Minute)) {
					t.Errorf("changed error-rate pending since %v", v.Evidence.ActiveSince)
				}
			}
		})
	}
	if got := testutil.ToFloat64(old.m.triggersFired.WithLabelValues("checkout", "progress-deadline")); got != 1 {
		t.Errorf("progress-deadline fired %v times, want 1", got)
	}
}

// Failed version queries are counted, logged once per distinct error and
// once more on recovery.
func TestVersionQueryFailures(t *testing.T) {
	f := newFixture(t, fixtureOpts{versionQuery: true})
	ctx := context.Background()
	f.src.set(func(s *fakeSource) { s.errs[versionQ] = errDown })
	f.svc.Tick(ctx, tick(0))
	f.svc.Tick(ctx, tick(1))
	if got := testutil.ToFloat64(f.m.versionQueryErr.WithLabelValues("checkout")); got != 2 {
		t.Errorf("guardian_version_query_failures_total = %v, want 2", got)
	}
	if n := f.logs.FilterMessage("deploy detection failed").Len(); n != 1 {
		t.Errorf("logged %d failures, want 1", n)
	}
	f.src.set(func(s *fakeSource) { delete(s.errs, versionQ); s.versions["v1"] = 1 })
	f.svc.Tick(ctx, tick(2))
	if n := f.logs.FilterMessage("deploy detection recovered").Len(); n != 1 || f.svc.Status().Current != "v1" {
		t.Errorf("logged %d recoveries, current %q", n, f.svc.Status().Current)
	}
}

// A tick cut short by its context records no verdict and saves nothing.
func TestTickCanceled(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.svc.Learn(context.Background(), "v1", t0)
	if _, err := f.svc.Announce(context.Background(), "v2", "", tick(1)); err != nil {
		t.Fatal(err)
	}
	saves := len(f.saved)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if vs := f.svc.Tick(ctx, tick(2)); len(vs) != 0 || len(f.verdicts) != 0 || len(f.saved) != saves {
		t.Errorf("canceled tick: %d verdicts, %d told, %d saves", len(vs), len(f.verdicts), len(f.saved)-saves)
	}
}

// Started, a service ticks at once; stop ends its ticks.
func TestStart(t *testing.T) {
	f := newFixture(t, fixtureOpts{versionQuery: true})
	f.src.set(func(s *fakeSource) { s.versions["v1"] = 1 })
	stop := f.svc.Start(context.Background(), func() time.Time { return t0 }, nil)
	defer stop()
	testenv.Eventually(t, 10*time.Second, func() error {
		if c := f.svc.Status().Current; c != "v1" {
			return fmt.Errorf("current %q", c)
		}
		return nil
	}, "the first tick")
}

// With Align, the first tick waits: stopped during the wait, the service
// has queried nothing.
func TestStartAligned(t *testing.T) {
	asked := 0
	f := newFixture(t, fixtureOpts{versionQuery: true, align: func() time.Duration { asked++; return time.Hour }})
	f.src.set(func(s *fakeSource) { s.versions["v1"] = 1 })
	stop := f.svc.Start(context.Background(), func() time.Time { return t0 }, nil)
	stop()
	f.src.set(func(s *fakeSource) {
		if asked != 1 || len(s.queries) != 0 {
			t.Errorf("align asked %d times, queries %q; want once and none", asked, s.queries)
		}
	})
}

func TestNewNeedsItsParts(t *testing.T) {
	det, err := rollout.NewDetector("checkout", rollout.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"detector", Options{Name: "checkout", Querier: newSource(), Metrics: m}, "no deploy detector"},
		{"querier", Options{Name: "checkout", Detector: det, Metrics: m}, "no querier"},
		{"metrics", Options{Name: "checkout", Detector: det, Querier: newSource()}, "no metrics"},
	} {
		if _, err := New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "checkout") {
			t.Errorf("%s: err %v", tc.name, err)
		}
	}
	s, err := New(Options{Name: "checkout", Detector: det, Querier: newSource(), Metrics: m,
		Triggers: []trigger.Evaluator{trigger.NewProgressDeadline("progress-deadline", "", nil)}})
	if err != nil || s.Name() != "checkout" || !slices.Equal(s.TriggerNames(), []string{"progress-deadline"}) {
		t.Errorf("New = %v, %v", s, err)
	}
}

// The state kept in a store survives a restart: saved under the service's
// name over its last revision, restored into a fresh Service.
func TestStoreState(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	ss := StoreState{Store: func() store.Store { return st }}
	f := newFixture(t, fixtureOpts{})
	if err := ss.Restore(ctx, f.svc, tick(1)); err != nil {
		t.Fatalf("nothing saved yet: %v", err)
	}
	for range 2 { // the second save goes over the first's revision
		if err := ss.Persist(ctx, "checkout", []byte(savedV2)); err != nil {
			t.Fatal(err)
		}
	}
	g := newFixture(t, fixtureOpts{})
	if err := ss.Restore(ctx, g.svc, tick(5)); err != nil {
		t.Fatal(err)
	}
	if w := g.svc.Status().Watch; w == nil || w.Version != "v2" {
		t.Fatalf("restored watch %+v", w)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ss.Restore(ctx, g.svc, tick(5)); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("restoring from a closed store: %v", err)
	}
}

// feed plays a Kubernetes workload watch: the running version at start,
// then one fresh deploy.
type feed struct {
	emit    func(rollout.Event)
	learn   func(string)
	stopped chan struct{}
}

func (f *feed) SetEmit(emit func(rollout.Event), learn func(string)) { f.emit, f.learn = emit, learn }

func (f *feed) Run(ctx context.Context) error {
	f.learn("v1")
	f.emit(rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1", At: t0, Origin: rollout.OriginAPI})
	<-ctx.Done()
	close(f.stopped)
	return nil
}

func TestStartRunsTheFeed(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	fd := &feed{stopped: make(chan struct{})}
	stop := f.svc.Start(context.Background(), func() time.Time { return t0 }, fd)
	testenv.Eventually(t, 10*time.Second, func() error {
		if w := f.svc.Status().Watch; w == nil || w.Version != "v2" {
			return fmt.Errorf("watch %+v", w)
		}
		return nil
	}, "the fed deploy to open a watch")
	stop()
	select {
	case <-fd.stopped:
	default:
		t.Fatal("stop returned before the feed ended")
	}
}

// seqSource answers a sequential trigger's count queries: errors and
// requests of a version since the deploy, from its error ratio.
type seqSource struct {
	mu    sync.Mutex
	ratio map[string]float64 // version → error ratio; 100 requests each
}

func (s *seqSource) Query(_ context.Context, q string, _ time.Time) (source.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v, p := range s.ratio {
		if strings.Contains(q, `version="`+v+`"`) {
			n := 1000.0
			if strings.Contains(q, "code=") {
				n *= p
			}
			return source.Result{Vector: model.Vector{{Value: model.SampleValue(n)}}}, nil
		}
	}
	return source.Result{}, nil
}

// A sequential trigger's regressed decision is saved with the watch and
// stands after a restart, whatever the counts read then.
func TestRegressedSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	src := &seqSource{ratio: map[string]float64{"v1": 0.01, "v2": 0.2}}
	seqTrigger := func(t *testing.T) []trigger.Evaluator {
		def, err := trigger.FromSpec(trigger.Spec{Name: "errors", Sequential: &trigger.SequentialSpec{
			Errors:   `sum(increase(req{code="5xx",version="{{.Version}}"}[{{.SinceDeploy}}]))`,
			Requests: `sum(increase(req{version="{{.Version}}"}[{{.SinceDeploy}}]))`,
			Alpha:    0.001, MinEffect: trigger.BaselineLimit{Ratio: 1.5, Text: "1.5x"}, BaselineWindow: 30 * time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := trigger.New(def)
		if err != nil {
			t.Fatal(err)
		}
		return []trigger.Evaluator{tr}
	}
	f := newFixture(t, fixtureOpts{triggers: seqTrigger})
	f.svc.querier = src
	f.svc.Learn(ctx, "v1", t0)
	if _, err := f.svc.Announce(ctx, "v2", "v1", tick(1)); err != nil {
		t.Fatal(err)
	}
	if vs := f.svc.Tick(ctx, tick(2)); len(vs) != 1 || vs[0].State != trigger.Firing {
		t.Fatalf("verdicts %+v", vs)
	}
	saved := f.saved[len(f.saved)-1]
	if !strings.Contains(string(saved), `"regressed":{"errors":`) {
		t.Fatalf("saved %s", saved)
	}
	// Restarted; v2's counts now look healthy.
	g := newFixture(t, fixtureOpts{triggers: seqTrigger})
	g.svc.querier = &seqSource{ratio: map[string]float64{"v1": 0.01, "v2": 0.01}}
	if err := g.svc.Restore(saved, tick(3)); err != nil {
		t.Fatal(err)
	}
	vs := g.svc.Tick(ctx, tick(3))
	if len(vs) != 1 || vs[0].State != trigger.Firing || !strings.Contains(vs[0].Summary(), "regressed") {
		t.Fatalf("after the restart: %+v", vs)
	}
}

// RestoreAll reads the saved states with one List and restores each
// service from its own; a state it cannot read is reported by service.
func TestRestoreAll(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	revs := map[string]uint64{}
	for key, value := range map[string]string{"checkout": savedV2, "billing": `{"detector":`} {
		rev, err := st.Put(ctx, Bucket, key, []byte(value), 0)
		if err != nil {
			t.Fatal(err)
		}
		revs[key] = rev
	}
	ss := StoreState{Store: func() store.Store { return st }}
	f := newFixture(t, fixtureOpts{})
	if errs := ss.RestoreAll(ctx, []*Service{f.svc}, tick(5)); len(errs) != 0 {
		t.Fatalf("errors %v", errs)
	}
	if s := f.svc.Status(); s.Current != "v2" || s.Watch == nil || s.Watch.Baseline != "v1" {
		t.Fatalf("restored %+v", s)
	}
	if _, err := st.Put(ctx, Bucket, "checkout", []byte(`{"detector":`), revs["checkout"]); err != nil {
		t.Fatal(err)
	}
	g := newFixture(t, fixtureOpts{})
	if errs := ss.RestoreAll(ctx, []*Service{g.svc}, tick(5)); errs["checkout"] == nil || len(errs) != 1 {
		t.Fatalf("an unreadable state: errors %v", errs)
	}
}

// The versions' traffic shares change at every tick: alone, they are saved
// at most every TickSaveInterval; a deploy is saved at once.
func TestTrafficSavedAtMostEveryInterval(t *testing.T) {
	f := newFixture(t, fixtureOpts{versionQuery: true})
	ctx := context.Background()
	f.src.set(func(s *fakeSource) { s.versions["v1"] = 10; s.versions["v0"] = 1 })
	f.svc.Tick(ctx, tick(0))
	saves := len(f.saved)
	if saves != 1 {
		t.Fatalf("saved %d times after learning v1, want 1", saves)
	}
	for i := 1; i <= 5; i++ {
		f.src.set(func(s *fakeSource) { s.versions["v1"] = float64(10 + i) })
		f.svc.Tick(ctx, tick(i))
	}
	if len(f.saved) != saves {
		t.Fatalf("traffic shares alone saved %d times within %s", len(f.saved)-saves, TickSaveInterval)
	}
	f.src.set(func(s *fakeSource) { s.versions["v2"] = 5 })
	f.svc.Tick(ctx, tick(6))
	if len(f.saved) != saves+1 || !strings.Contains(string(f.saved[len(f.saved)-1]), `"version":"v2"`) {
		t.Fatalf("the deploy of v2 was not saved at once: %d saves", len(f.saved)-saves)
	}
}
