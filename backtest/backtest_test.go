package backtest_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/app"
	"github.com/rollback-guardian/guardian/backtest"
	"github.com/rollback-guardian/guardian/backtest/scenario"
	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/watch"
)

const interval = 15 * time.Second

// history is the default scenario, ending a while before now on a whole
// hour, as history a Prometheus holds.
func history() scenario.History {
	return scenario.Default(time.Now().UTC().Truncate(time.Hour).Add(-4 * time.Hour))
}

func service(t testing.TB, url string) config.Service {
	t.Helper()
	cfg, err := config.Parse([]byte(scenario.Config(url, interval)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Services[0]
}

// span is the backtest's range: from a minute into the history (the
// version query needs a minute of samples) to its end.
func span(h scenario.History) (time.Time, time.Time) {
	return h.Start.Add(time.Minute), h.End()
}

func TestFindDeploys(t *testing.T) {
	h := history()
	q := newEngineQuerier(t, h)
	from, to := span(h)
	evs, err := backtest.FindDeploys(context.Background(), service(t, "http://unused"), q, from, to, interval)
	if err != nil {
		t.Fatal(err)
	}
	want := h.Deploys()
	if len(evs) != len(want) {
		t.Fatalf("found %d deploys, want %d: %v", len(evs), len(want), evs)
	}
	for i, ev := range evs {
		w := want[i]
		if ev.Version != w.Version || ev.Baseline != w.Baseline {
			t.Errorf("deploy %d: %s from %s, want %s from %s", i, ev.Version, ev.Baseline, w.Version, w.Baseline)
		}
		// The version query sees the new version once rate has two of
		// its samples: within a minute of the switch.
		if ev.At.Before(w.Switch) || ev.At.After(w.Switch.Add(time.Minute)) {
			t.Errorf("deploy %d (%s) found at %s, want within a minute after the switch at %s", i, ev.Version, ev.At, w.Switch)
		}
		if ev.At.UnixMilli()%interval.Milliseconds() != 0 {
			t.Errorf("deploy %d found at %s, off the evaluation ticks", i, ev.At)
		}
	}
}

// checkScenario checks a report of the default scenario against what the
// scenario is built to produce.
func checkScenario(t *testing.T, h scenario.History, rep *backtest.Report) {
	t.Helper()
	for _, d := range rep.Deploys {
		for i, j := range d.Judgements {
			t.Logf("%s %s from %s [%s]: %s after %s, %d ticks; %s", d.At.Format(time.TimeOnly), d.Version, d.Baseline, rep.Variants[i], j.Verdict, j.Delay, j.Ticks, j.Evidence)
		}
	}
	want := h.Deploys()
	if len(rep.Deploys) != len(want) {
		t.Fatalf("judged %d deploys, want %d: %+v", len(rep.Deploys), len(want), rep.Deploys)
	}
	for i, d := range rep.Deploys {
		w, j := want[i], d.Judgements[0]
		if d.Version != w.Version || j.Verdict != w.Verdict {
			t.Errorf("deploy %s: %s (%s), want %s: %s", d.Version, j.Verdict, j.Evidence, w.Version, w.Verdict)
			continue
		}
		switch {
		case w.Verdict == backtest.WouldRollBack && (j.FiredAt == nil || j.Trigger != "error-rate" || j.Evidence == ""):
			t.Errorf("deploy %s would roll back without a firing time, trigger or evidence: %+v", d.Version, j)
		case w.Verdict != backtest.WouldRollBack && j.FiredAt != nil:
			t.Errorf("deploy %s judged %s but fired at %s", d.Version, j.Verdict, j.FiredAt)
		case w.Verdict == backtest.WouldRollBack && w.SlowBurn && j.Delay < 8*time.Minute:
			// Errors cross 5% about 10 minutes in.
			t.Errorf("slow burn %s fired after %s, before its errors crossed the threshold", d.Version, j.Delay)
		case w.Verdict == backtest.WouldRollBack && !w.SlowBurn && (j.Delay < time.Minute || j.Delay > 3*time.Minute):
			// for: 1m, then the 1m rate window fills with the bad version.
			t.Errorf("bad deploy %s fired after %s, want between 1m (for) and 3m", d.Version, j.Delay)
		case w.Verdict == backtest.NotEnoughData && (len(j.NoData) != 1 || j.NoData[0] != "error-rate"):
			t.Errorf("deploy %s: no data for %v, want error-rate", d.Version, j.NoData)
		}
		if j.FiredAt != nil && !j.FiredAt.Equal(d.At.Add(j.Delay)) {
			t.Errorf("deploy %s: fired at %s, %s after the deploy at %s", d.Version, j.FiredAt, j.Delay, d.At)
		}
	}
	s := rep.Summary[0]
	if s.Deploys != 5 || s.Rollbacks != 2 || s.Healthy != 2 || s.NotEnoughData != 1 || s.MaxDelay < s.MedianDelay || s.MaxDelay == 0 {
		t.Errorf("summary %+v", s)
	}
	if rep.Queries == 0 || rep.Ticks == 0 {
		t.Errorf("%d queries, %d ticks", rep.Queries, rep.Ticks)
	}
}

func TestRunJudgesEachDeploy(t *testing.T) {
	h := history()
	q := newEngineQuerier(t, h)
	svc := service(t, "http://unused")
	from, to := span(h)
	var progress []backtest.Progress
	rep, err := backtest.Run(context.Background(), backtest.Options{
		Service: svc, Interval: interval, From: from, To: to, Querier: q,
		Progress: func(p backtest.Progress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	checkScenario(t, h, rep)
	if len(progress) != 5 || progress[4].DeploysDone != 5 || progress[4].TicksDone != progress[4].Ticks || progress[4].Queries == 0 {
		t.Errorf("progress: %+v", progress)
	}
	if last := rep.Deploys[4]; !last.Cut || last.Until.After(to.Add(time.Second)) {
		t.Errorf("the last deploy's window runs past the range's end: %+v", last)
	}
	if first := rep.Deploys[0]; first.Cut || !first.Until.Equal(rep.Deploys[1].At) {
		t.Errorf("the first deploy's replay should end at the next deploy %s: %+v", rep.Deploys[1].At, first)
	}
}

func TestRunComparesASetting(t *testing.T) {
	h := history()
	q := newEngineQuerier(t, h)
	svc := service(t, "http://unused")
	set, err := backtest.ParseSetting("error-rate.above=0.15")
	if err != nil {
		t.Fatal(err)
	}
	changed, err := backtest.Apply(svc.Triggers, []backtest.Setting{set})
	if err != nil {
		t.Fatal(err)
	}
	if *svc.Triggers[0].Above != 0.05 || *changed[0].Above != 0.15 {
		t.Fatalf("Apply changed the configuration or not the copy: %v %v", *svc.Triggers[0].Above, *changed[0].Above)
	}
	from, to := span(h)
	counting := &countingQuerier{q: q}
	rep, err := backtest.Run(context.Background(), backtest.Options{
		Service: svc, Interval: interval, From: from, To: to, Querier: counting, Concurrency: 2,
		Variants: []backtest.Variant{{Name: "configured", Triggers: svc.Triggers}, {Name: set.String(), Triggers: changed}},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkScenario(t, h, rep)
	got := map[string]string{}
	for _, d := range rep.Deploys {
		got[d.Version] = d.Judgements[1].Verdict
	}
	// 20% errors still breach 15%; the slow burn tops out at 12%.
	if got["v3"] != backtest.WouldRollBack || got["v4"] != backtest.Healthy || got["v2"] != backtest.Healthy {
		t.Errorf("with above 0.15: %v", got)
	}
	if rep.Summary[1].Rollbacks != 1 {
		t.Errorf("summary with above 0.15: %+v", rep.Summary[1])
	}
	if n := counting.n.Load(); n != rep.Queries {
		t.Errorf("report counts %d queries, Prometheus got %d", rep.Queries, n)
	}
	if m := counting.maxInFlight.Load(); m > 2 || m < 1 {
		t.Errorf("%d queries in flight at most, want 1 or 2", m)
	}
}

func TestRunHoldsTheRate(t *testing.T) {
	h := history()
	q := &countingQuerier{q: newEngineQuerier(t, h)}
	svc := service(t, "http://unused")
	// Two deploys' worth: v2 and v3 (v3 fires early).
	from, to := h.Start.Add(time.Minute), h.Start.Add(45*time.Minute)
	start := time.Now()
	rep, err := backtest.Run(context.Background(), backtest.Options{
		Service: svc, Interval: interval, From: from, To: to, Querier: q, Rate: 200, Concurrency: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	// A token bucket of one: n queries take at least (n-1)/rate.
	if min := time.Duration(float64(rep.Queries-1) / 200 * float64(time.Second)); el < min {
		t.Errorf("%d queries in %s, faster than 200/s allows (%s)", rep.Queries, el, min)
	}
}

func TestRunRefusesBadOptions(t *testing.T) {
	svc := service(t, "http://unused")
	now := time.Now()
	for name, o := range map[string]backtest.Options{
		"no querier":  {Service: svc, Interval: interval, From: now.Add(-time.Hour), To: now},
		"reversed":    {Service: svc, Interval: interval, From: now, To: now.Add(-time.Hour), Querier: &engineQuerier{}},
		"no interval": {Service: svc, From: now.Add(-time.Hour), To: now, Querier: &engineQuerier{}},
	} {
		if _, err := backtest.Run(context.Background(), o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	noQuery := svc
	noQuery.Deploy.VersionQuery = ""
	if _, err := backtest.Run(context.Background(), backtest.Options{Service: noQuery, Interval: interval, From: now.Add(-time.Hour), To: now, Querier: &engineQuerier{}}); err == nil {
		t.Error("no version query: no error")
	}
	for _, s := range []string{"error-rate", "error-rate.above", "error-rate.above=x", "error-rate.window=1m", "error-rate.for=soon", ".above=1"} {
		if _, err := backtest.ParseSetting(s); err == nil {
			t.Errorf("ParseSetting(%q): no error", s)
		}
	}
	set, _ := backtest.ParseSetting("latency.above=1")
	if _, err := backtest.Apply(svc.Triggers, []backtest.Setting{set}); err == nil {
		t.Error("a setting of an unknown trigger: no error")
	}
}

type countingQuerier struct {
	q                        backtest.RangeQuerier
	n, inFlight, maxInFlight atomic.Int64
}

func (c *countingQuerier) enter() func() {
	c.n.Add(1)
	n := c.inFlight.Add(1)
	for {
		m := c.maxInFlight.Load()
		if n <= m || c.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { c.inFlight.Add(-1) }
}

func (c *countingQuerier) Query(ctx context.Context, qs string, ts time.Time) (source.Result, error) {
	defer c.enter()()
	return c.q.Query(ctx, qs, ts)
}

func (c *countingQuerier) QueryRange(ctx context.Context, qs string, start, end time.Time, step time.Duration) (model.Matrix, error) {
	defer c.enter()()
	return c.q.QueryRange(ctx, qs, start, end, step)
}

// liveDeploy is what the daemon's loop decided about a deploy.
type liveDeploy struct {
	version, baseline string
	at                time.Time
	verdict           string
	firedAt           time.Time
	trigger           string
}

// live runs the daemon's watch loop over the history: one watch.Service
// with the configured deploy detector, ticked at every interval from from
// to to, every query an instant query (the version query too), and returns
// what it decided about each deploy.
func live(t *testing.T, svc config.Service, q source.Querier, from, to time.Time) []liveDeploy {
	t.Helper()
	det, err := rollout.NewDetector(svc.Name, app.DetectorConfig(svc.Deploy))
	if err != nil {
		t.Fatal(err)
	}
	var evs []trigger.Evaluator
	for _, tc := range svc.Triggers {
		def, err := trigger.FromSpec(app.TriggerSpec(tc))
		if err != nil {
			t.Fatal(err)
		}
		tr, err := trigger.New(def)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, tr)
	}
	var mu sync.Mutex
	var out []liveDeploy
	judged := map[int]bool{}
	w, err := watch.New(watch.Options{
		Name: svc.Name, Detector: det, Triggers: evs, Querier: q, Window: time.Duration(svc.WatchWindow), Interval: interval,
		Metrics: watch.NewMetrics(prometheus.NewRegistry()),
		OnVerdict: func(_ context.Context, d rollout.Event, v trigger.Verdict) {
			mu.Lock()
			defer mu.Unlock()
			if len(out) == 0 || !out[len(out)-1].at.Equal(d.At) {
				out = append(out, liveDeploy{version: d.Version, baseline: d.Baseline, at: d.At})
			}
			i := len(out) - 1
			cur := &out[i]
			if v.Outcome == trigger.OK || v.Outcome == trigger.Violated {
				judged[i] = true
			}
			if v.State == trigger.Firing && cur.firedAt.IsZero() {
				cur.firedAt, cur.trigger = v.At, v.Trigger
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for ts := from; !ts.After(to); ts = ts.Add(interval) {
		w.Tick(context.Background(), ts)
	}
	for i := range out {
		switch {
		case !out[i].firedAt.IsZero():
			out[i].verdict = backtest.WouldRollBack
		case judged[i]:
			out[i].verdict = backtest.Healthy
		default:
			out[i].verdict = backtest.NotEnoughData
		}
	}
	return out
}

// sameAsLive checks that a backtest decided what the daemon's loop did.
func sameAsLive(t *testing.T, rep *backtest.Report, want []liveDeploy) {
	t.Helper()
	if len(rep.Deploys) != len(want) {
		t.Fatalf("backtest judged %d deploys, the live loop %d", len(rep.Deploys), len(want))
	}
	for i, d := range rep.Deploys {
		w, j := want[i], d.Judgements[0]
		var fired time.Time
		if j.FiredAt != nil {
			fired = *j.FiredAt
		}
		if d.Version != w.version || d.Baseline != w.baseline || !d.At.Equal(w.at) || j.Verdict != w.verdict || !fired.Equal(w.firedAt) || j.Trigger != w.trigger {
			t.Errorf("deploy %d: backtest %s from %s at %s: %s at %v by %q; live %s from %s at %s: %s at %v by %q", i,
				d.Version, d.Baseline, d.At, j.Verdict, fired, j.Trigger, w.version, w.baseline, w.at, w.verdict, w.firedAt, w.trigger)
		}
	}
}

func TestRunAgreesWithTheLiveLoop(t *testing.T) {
	h := history()
	q := newEngineQuerier(t, h)
	svc := service(t, "http://unused")
	from, to := span(h)
	rep, err := backtest.Run(context.Background(), backtest.Options{Service: svc, Interval: interval, From: from, To: to, Querier: q})
	if err != nil {
		t.Fatal(err)
	}
	sameAsLive(t, rep, live(t, svc, q, from, to))
}

// TestFindDeploysInChunks finds the deploys at a fine interval, whose
// history needs more than one range query (Prometheus answers at most
// 11,000 steps).
func TestFindDeploysInChunks(t *testing.T) {
	h := history()
	q := &countingQuerier{q: newEngineQuerier(t, h)}
	from, to := span(h)
	step := 500 * time.Millisecond // 17,880 steps
	evs, err := backtest.FindDeploys(context.Background(), service(t, "http://unused"), q, from, to, step)
	if err != nil {
		t.Fatal(err)
	}
	if n := q.n.Load(); n != 2 {
		t.Errorf("%d range queries, want 2", n)
	}
	want := h.Deploys()
	if len(evs) != len(want) {
		t.Fatalf("found %d deploys, want %d: %v", len(evs), len(want), evs)
	}
	for i, ev := range evs {
		if ev.Version != want[i].Version || ev.At.Before(want[i].Switch) || ev.At.After(want[i].Switch.Add(time.Minute)) {
			t.Errorf("deploy %d: %s at %s, want %s within a minute after %s", i, ev.Version, ev.At, want[i].Version, want[i].Switch)
		}
	}
}

// A version label the API would refuse (control characters) is a deploy
// the daemon judges, and so does the backtest.
func TestRunOddVersion(t *testing.T) {
	h := history()
	odd := "v2\nnext"
	h.Length = 30 * time.Minute
	h.Phases = []scenario.Phase{
		{At: 0, Version: "v1", RPS: 10, ErrStart: 0.005, ErrEnd: 0.005},
		{At: 10 * time.Minute, Version: odd, RPS: 10, ErrStart: 0.2, ErrEnd: 0.2},
	}
	q := newEngineQuerier(t, h)
	svc := service(t, "http://unused")
	from, to := span(h)
	rep, err := backtest.Run(context.Background(), backtest.Options{Service: svc, Interval: interval, From: from, To: to, Querier: q})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deploys) != 1 || rep.Deploys[0].Version != odd || rep.Deploys[0].Judgements[0].Verdict != backtest.WouldRollBack {
		t.Fatalf("deploys: %+v", rep.Deploys)
	}
	sameAsLive(t, rep, live(t, svc, q, from, to))
}

// failing fails the queries of one version's triggers.
type failing struct {
	backtest.RangeQuerier
	version string
}

func (f failing) Query(ctx context.Context, qs string, ts time.Time) (source.Result, error) {
	if strings.Contains(qs, `version="`+f.version+`"`) {
		return source.Result{}, fmt.Errorf("%w: prometheus is down", source.ErrUnavailable)
	}
	return f.RangeQuerier.Query(ctx, qs, ts)
}

// Query errors are counted, not taken for a lack of traffic.
func TestRunCountsQueryErrors(t *testing.T) {
	h := history()
	svc := service(t, "http://unused")
	from, to := span(h)
	rep, err := backtest.Run(context.Background(), backtest.Options{Service: svc, Interval: interval, From: from, To: to,
		Querier: failing{RangeQuerier: newEngineQuerier(t, h), version: "v6"}})
	if err != nil {
		t.Fatal(err)
	}
	last := rep.Deploys[4].Judgements[0]
	if last.Verdict != backtest.NotEnoughData || last.QueryErrors != last.Ticks || !strings.Contains(last.Error, "prometheus is down") {
		t.Errorf("v6 with failing queries: %+v", last)
	}
	if first := rep.Deploys[0].Judgements[0]; first.QueryErrors != 0 || rep.Summary[0].QueryErrors != last.QueryErrors {
		t.Errorf("query errors: v2 %d, summary %d", first.QueryErrors, rep.Summary[0].QueryErrors)
	}
}
