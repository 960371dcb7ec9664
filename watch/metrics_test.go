package watch

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

// The querier bounds each query by the timeout and counts failures by
// reason, naming the service; a cancellation is neither counted nor wrapped.
func TestQuerier(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		err     error // the source's error; nil: a deadline error when one is set
		reason  string
		wrapped bool
	}{
		{"unavailable", 0, errDown, source.ReasonUnavailable, true},
		{"bad query", 0, source.ErrBadQuery, source.ReasonBadQuery, true},
		{"timeout applied", time.Hour, nil, source.ReasonTimeout, true},
		{"canceled", 0, context.Canceled, "", false},
		{"no timeout, no error", 0, nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			inner := source.QueryFunc(func(ctx context.Context, q string, _ time.Time) (source.Result, error) {
				if tc.err != nil {
					return source.Result{}, tc.err
				}
				if _, ok := ctx.Deadline(); ok {
					return source.Result{}, context.DeadlineExceeded // the deadline is set: pretend it passed
				}
				return source.Result{}, nil
			})
			_, err := m.Querier("checkout", inner, tc.timeout).Query(context.Background(), "up", t0)
			switch {
			case tc.wrapped:
				if err == nil || !strings.HasPrefix(err.Error(), "querying checkout: ") {
					t.Errorf("err %v, want it wrapped with the service", err)
				}
			case tc.err != nil:
				if !errors.Is(err, tc.err) || strings.Contains(err.Error(), "checkout") {
					t.Errorf("err %v, want %v as is", err, tc.err)
				}
			case err != nil:
				t.Errorf("err %v", err)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("err %v does not wrap %v", err, tc.err)
			}
			want := 0
			if tc.reason != "" {
				want = 1
				if got := testutil.ToFloat64(m.queryErrors.WithLabelValues("checkout", tc.reason)); got != 1 {
					t.Errorf("guardian_query_errors_total{reason=%q} = %v, want 1", tc.reason, got)
				}
			}
			if n := testutil.CollectAndCount(m.queryErrors); n != want {
				t.Errorf("guardian_query_errors_total has %d series, want %d", n, want)
			}
		})
	}
}

// With ObserveWith the querier tells the observer every outcome but a
// cancellation: nil on success, the source's own error (not wrapped with the
// service) on failure, its own timeout included; it still counts failures.
func TestQuerierObserve(t *testing.T) {
	for _, tc := range []struct {
		name     string
		timeout  time.Duration
		err      error // the source's error; nil: a deadline error when one is set
		observed bool
		want     error  // what the observer gets
		counted  string // the reason counted, if any
	}{
		{"success", 0, nil, true, nil, ""},
		{"unavailable", 0, errDown, true, errDown, source.ReasonUnavailable},
		{"bad query", 0, source.ErrBadQuery, true, source.ErrBadQuery, source.ReasonBadQuery},
		{"timeout", time.Hour, nil, true, context.DeadlineExceeded, source.ReasonTimeout},
		{"canceled", 0, context.Canceled, false, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			inner := source.QueryFunc(func(ctx context.Context, q string, _ time.Time) (source.Result, error) {
				if tc.err != nil {
					return source.Result{}, tc.err
				}
				if _, ok := ctx.Deadline(); ok {
					return source.Result{}, context.DeadlineExceeded
				}
				return source.Result{}, nil
			})
			type key struct{}
			ctx := context.WithValue(context.Background(), key{}, "tick")
			var got []error
			q := m.Querier("checkout", inner, tc.timeout, ObserveWith(func(octx context.Context, err error) {
				if octx.Value(key{}) != "tick" {
					t.Error("the observer does not get the query's context")
				}
				if _, ok := octx.Deadline(); ok {
					t.Error("the observer's context carries the query timeout")
				}
				got = append(got, err)
			}))
			_, _ = q.Query(ctx, "up", t0)
			switch {
			case !tc.observed && len(got) != 0:
				t.Errorf("observed %v, want nothing", got)
			case tc.observed && len(got) != 1:
				t.Fatalf("observed %d outcomes, want 1", len(got))
			case tc.observed && tc.want == nil && got[0] != nil:
				t.Errorf("observed %v, want success", got[0])
			case tc.observed && tc.want != nil && (!errors.Is(got[0], tc.want) || strings.Contains(got[0].Error(), "checkout")):
				t.Errorf("observed %v, want the source's %v", got[0], tc.want)
			}
			want := 0
			if tc.counted != "" {
				want = 1
			}
			if n := testutil.CollectAndCount(m.queryErrors); n != want {
				t.Errorf("guardian_query_errors_total has %d series, want %d", n, want)
			}
			if tc.counted != "" {
				if n := testutil.ToFloat64(m.queryErrors.WithLabelValues("checkout", tc.counted)); n != 1 {
					t.Errorf("guardian_query_errors_total{reason=%q} = %v, want 1", tc.counted, n)
				}
			}
		})
	}
	// A nil observer is no option at all.
	m := NewMetrics(prometheus.NewRegistry())
	ok := source.QueryFunc(func(context.Context, string, time.Time) (source.Result, error) { return source.Result{}, nil })
	if _, err := m.Querier("checkout", ok, 0, ObserveWith(nil)).Query(context.Background(), "up", t0); err != nil {
		t.Fatal(err)
	}
}

// Forget drops the series of one trigger, or of a whole service, and
// leaves the others.
func TestForget(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	for _, svc := range []string{"checkout", "cart"} {
		for _, trig := range []string{"error-rate", "latency"} {
			m.evaluations.WithLabelValues(svc, trig, "ok").Inc()
			m.triggerState.WithLabelValues(svc, trig).Set(1)
			m.triggersFired.WithLabelValues(svc, trig).Inc()
		}
		m.watching.WithLabelValues(svc).Set(1)
		m.deploys.WithLabelValues(svc, "api").Inc()
	}
	m.Forget("checkout", "latency")
	if n := testutil.CollectAndCount(m.triggerState); n != 3 {
		t.Errorf("%d trigger state series after forgetting one trigger, want 3", n)
	}
	if n := testutil.CollectAndCount(m.evaluations); n != 3 {
		t.Errorf("%d evaluation series after forgetting one trigger, want 3", n)
	}
	m.Forget("checkout", "")
	for name, c := range map[string]prometheus.Collector{"evaluations": m.evaluations, "fired": m.triggersFired, "watching": m.watching, "deploys": m.deploys} {
		want := map[string]int{"evaluations": 2, "fired": 2, "watching": 1, "deploys": 1}[name]
		if n := testutil.CollectAndCount(c); n != want {
			t.Errorf("%s: %d series after forgetting checkout, want %d (cart's)", name, n, want)
		}
	}
	if got := testutil.ToFloat64(m.watching.WithLabelValues("cart")); got != 1 {
		t.Errorf("cart's watch gauge = %v", got)
	}
}

// The metrics keep their names, help texts and labels.
func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.evaluations.WithLabelValues("s", "t", "ok").Inc()
	m.evalDuration.WithLabelValues("s").Observe(1)
	m.queryErrors.WithLabelValues("s", "timeout").Inc()
	m.triggerState.WithLabelValues("s", "t").Set(1)
	m.triggersFired.WithLabelValues("s", "t").Inc()
	m.deploys.WithLabelValues("s", "api").Inc()
	m.watching.WithLabelValues("s").Set(1)
	m.warnings.WithLabelValues("s").Inc()
	m.versionQueryErr.WithLabelValues("s").Inc()
	m.triggerValue.WithLabelValues("s", "t").Set(1)
	m.triggerThreshold.WithLabelValues("s", "t").Set(1)
	m.triggerBaseline.WithLabelValues("s", "t").Set(1)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, mf := range mfs {
		var labels []string
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		got[mf.GetName()] = strings.Join(labels, ",") + " " + mf.GetHelp()
	}
	for name, want := range map[string]string{
		"guardian_evaluations_total":            "outcome,service,trigger Trigger evaluations by outcome (ok, violated, not_enough_evidence, no_data, nan, query_error).",
		"guardian_evaluation_duration_seconds":  "service Duration of one evaluation tick of a service: deploy detection and every trigger.",
		"guardian_query_errors_total":           "reason,service Failed metric queries by reason (timeout, unavailable, bad_response, bad_query, canceled, other).",
		"guardian_trigger_state":                "service,trigger State of each trigger: 0 inactive, 1 pending, 2 firing.",
		"guardian_triggers_fired_total":         "service,trigger Times a trigger went to firing.",
		"guardian_deploys_total":                "service,source Fresh deploys seen, by how they were learnt (version_query, api).",
		"guardian_watch_active":                 "service 1 while a service's watch window after a deploy is open.",
		"guardian_query_warnings_total":         "service Queries that returned warnings.",
		"guardian_version_query_failures_total": "service Failed deploy-detection (version_query) evaluations.",
		"guardian_trigger_value":                "service,trigger The new version's value at a trigger's latest evaluation, while the service's watch window is open (absent without data).",
		"guardian_trigger_threshold":            "service,trigger The limit of a trigger's first judged condition at its latest evaluation (baseline × factor for above_baseline), while the watch window is open.",
		"guardian_trigger_baseline":             "service,trigger The baseline version's value at a trigger's latest evaluation, while the watch window is open (absent without a baseline).",
	} {
		if got[name] != want {
			t.Errorf("%s: %q, want %q", name, got[name], want)
		}
	}
	if len(got) != 12 {
		t.Errorf("%d metrics registered, want 12", len(got))
	}
}

// After a reload, Retire forgets a dropped trigger's series, or a gone
// service's, and keeps the others.
func TestRetire(t *testing.T) {
	f := newFixture(t, fixtureOpts{}) // error-rate and latency
	only := newFixture(t, fixtureOpts{metrics: f.m, triggers: func(t *testing.T) []trigger.Evaluator {
		return []trigger.Evaluator{metricTrigger(t, "error-rate", 0, "")}
	}})
	for _, trig := range []string{"error-rate", "latency"} {
		f.m.triggerState.WithLabelValues("checkout", trig).Set(1)
	}
	f.m.Retire(f.svc, only.svc)
	if n := testutil.CollectAndCount(f.m.triggerState); n != 1 {
		t.Fatalf("%d trigger state series after dropping latency, want 1", n)
	}
	f.m.Retire(only.svc, nil)
	if n := testutil.CollectAndCount(f.m.triggerState); n != 0 {
		t.Fatalf("%d trigger state series after the service went, want 0", n)
	}
}

// While a watch is open, each trigger's latest value, threshold and
// baseline are exported; what an evaluation lacks is absent, and all of
// them go when the window closes.
func TestTriggerValueMetrics(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	f.svc.Learn(ctx, "v1", t0)
	if _, err := f.svc.Announce(ctx, "v2", "", tick(1)); err != nil {
		t.Fatal(err)
	}
	f.src.set(func(s *fakeSource) { s.values[errV1] = 0.01; s.values[errV2] = 0.2; s.values[latencyV2] = 0.9 })
	f.svc.Tick(ctx, tick(2))
	for _, c := range []struct {
		vec     *family
		trigger string
		want    float64
	}{
		{f.m.triggerValue, "error-rate", 0.2},
		{f.m.triggerThreshold, "error-rate", 0.05},
		{f.m.triggerBaseline, "error-rate", 0.01},
		{f.m.triggerValue, "latency", 0.9},
		{f.m.triggerThreshold, "latency", 0.5},
	} {
		if got := testutil.ToFloat64(c.vec.WithLabelValues("checkout", c.trigger)); got != c.want {
			t.Errorf("%s = %v, want %v", c.trigger, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(f.m.triggerBaseline); n != 1 {
		t.Errorf("%d baseline series, want 1 (latency has no baseline)", n)
	}

	// The error rate's data goes: its value is no longer exported.
	f.src.set(func(s *fakeSource) { delete(s.values, errV2) })
	f.svc.Tick(ctx, tick(3))
	if n := testutil.CollectAndCount(f.m.triggerValue); n != 1 {
		t.Errorf("%d value series after error-rate lost its data, want 1", n)
	}

	// The window closes.
	f.svc.Tick(ctx, tick(1).Add(time.Hour))
	for name, vec := range map[string]*family{"value": f.m.triggerValue, "threshold": f.m.triggerThreshold, "baseline": f.m.triggerBaseline} {
		if n := testutil.CollectAndCount(vec); n != 0 {
			t.Errorf("%d %s series after the window closed, want 0", n, name)
		}
	}
}
