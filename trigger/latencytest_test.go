package trigger

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger/latency"
	"github.com/rollback-guardian/guardian/trigger/sequential"
)

const bucketsT = `sum by (le) (increase(lat_bucket{service="{{.Service}}",version="{{.Version}}"}[{{.SinceDeploy}}]))`

// latDef returns a latency definition (alpha 0.001, 1.5x, default
// quantiles, 30m of pre-deploy baseline) modified by mods.
func latDef(t testing.TB, mods ...func(*Definition)) Definition {
	t.Helper()
	dd := Definition{
		Name:   "latency",
		Window: time.Minute,
		Latency: &Latency{
			Buckets: tmpl(t, bucketsT), Alpha: 0.001, MinEffect: BaselineLimit{Ratio: 1.5, Text: "1.5x"}, BaselineWindow: 30 * time.Minute,
		},
	}
	for _, m := range mods {
		m(&dd)
	}
	return dd
}

// latencyBounds are Prometheus's default histogram buckets.
var latencyBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// split is a lognormal latency with its median and the spreads of its
// lower and upper halves: a larger upper spread slows the tail only.
type split struct{ med, low, up float64 }

func (s split) cdf(x float64) float64 {
	z := math.Log(x / s.med)
	if z <= 0 {
		z /= s.low
	} else {
		z /= s.up
	}
	return 0.5 * math.Erfc(-z/math.Sqrt2)
}

var (
	normal  = split{0.05, 0.6, 0.6}  // p99 ≈ 0.2 s
	slowP99 = split{0.05, 0.6, 1.07} // the same median, p99 ≈ 0.6 s
)

// histService answers the buckets queries of a simulated service: the
// new version (v2) serves newRate requests per second with latency nw
// since deployAt; the baseline (v1) served preRate before it and serves
// liveRate after it, with latency base. Counts are the expected ones,
// rounded.
type histService struct {
	nw, base                   split
	newRate, preRate, liveRate float64
	// at is the deploy time (deployAt when zero).
	at time.Time
	// native answers with native histograms instead of le series.
	native bool
	// gone makes the new version's answer empty from this time on.
	gone time.Time
	// values lowers the new version's counts read with last_over_time by
	// this factor (1: the same as increase()).
	values float64

	mu    sync.Mutex
	calls []string
}

var bucketsRE = regexp.MustCompile(`^sum by \(le\) \((increase|last_over_time)\(lat_bucket\{service="checkout",version="([^"]*)"\}\[([0-9a-z]+)\]\)\)$`)
var nativeRE = regexp.MustCompile(`^sum\((increase|last_over_time)\(lat\{service="checkout",version="([^"]*)"\}\[([0-9a-z]+)\]\)\)$`)

func (h *histService) query(_ context.Context, q string, ts time.Time) (source.Result, error) {
	h.mu.Lock()
	h.calls = append(h.calls, fmt.Sprintf("%s@%s", q, ts.Sub(t0)))
	h.mu.Unlock()
	re := bucketsRE
	if h.native {
		re = nativeRE
	}
	m := re.FindStringSubmatch(q)
	if m == nil {
		return source.Result{}, fmt.Errorf("unexpected query %s", q)
	}
	md, err := model.ParseDuration(m[3])
	if err != nil {
		return source.Result{}, err
	}
	rng, version := time.Duration(md), m[2]
	at := deployAt
	if !h.at.IsZero() {
		at = h.at
	}
	var n float64
	dist := h.base
	switch {
	case version == "v1" && ts.Equal(at):
		n = h.preRate * rng.Seconds()
	case version == "v1":
		n = h.liveRate * min(rng, ts.Sub(at)).Seconds()
	case version == "v2":
		if !h.gone.IsZero() && !ts.Before(h.gone) {
			return source.Result{}, nil
		}
		dist = h.nw
		n = h.newRate * min(rng, ts.Sub(at)).Seconds()
		if m[1] == "last_over_time" && h.values > 0 {
			n *= h.values
		}
	}
	if n <= 0 {
		return source.Result{}, nil
	}
	if h.native {
		sh := &model.SampleHistogram{Count: model.FloatString(n)}
		lower := 0.0
		for _, b := range append(latencyBounds, math.Inf(1)) {
			if c := math.Round(n * (h.cdfAt(dist, b) - h.cdfAt(dist, lower))); c > 0 {
				sh.Buckets = append(sh.Buckets, &model.HistogramBucket{Lower: model.FloatString(lower), Upper: model.FloatString(b), Count: model.FloatString(c)})
			}
			lower = b
		}
		return source.Result{Vector: model.Vector{{Metric: model.Metric{}, Histogram: sh}}}, nil
	}
	var v model.Vector
	for _, b := range append(latencyBounds, math.Inf(1)) {
		le := model.LabelValue(fmt.Sprint(b))
		if math.IsInf(b, 1) {
			le = "+Inf"
		}
		v = append(v, &model.Sample{Metric: model.Metric{"le": le}, Value: model.SampleValue(math.Round(n * h.cdfAt(dist, b)))})
	}
	return source.Result{Vector: v}, nil
}

func (h *histService) cdfAt(s split, b float64) float64 {
	switch {
	case b <= 0:
		return 0
	case math.IsInf(b, 1):
		return 1
	}
	return s.cdf(b)
}

func (h *histService) sent(substr string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, q := range h.calls {
		if strings.Contains(q, substr) {
			out = append(out, q)
		}
	}
	return out
}

func TestLatencyFromSpec(t *testing.T) {
	spec := func(mods ...func(*Spec)) Spec {
		s := Spec{Name: "latency", Latency: &LatencySpec{Buckets: bucketsT, Alpha: 0.001, MinEffect: BaselineLimit{Ratio: 1.5, Text: "1.5x"}, BaselineWindow: 30 * time.Minute}}
		for _, m := range mods {
			m(&s)
		}
		return s
	}
	dd, err := FromSpec(spec())
	if err != nil {
		t.Fatal(err)
	}
	if want := "histogram_quantile(0.99, " + bucketsT + ")"; dd.Query.Text() != want {
		t.Errorf("derived query %s, want %s", dd.Query.Text(), want)
	}
	dd, err = FromSpec(spec(func(s *Spec) { s.Latency.Quantiles = []float64{0.5, 0.95} }))
	if err != nil || !strings.HasPrefix(dd.Query.Text(), "histogram_quantile(0.95, ") {
		t.Errorf("derived query with quantiles [0.5, 0.95]: %v, %v", dd.Query, err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
		err  string
	}{
		{"with above", func(s *Spec) { s.Above = f64(0.5) }, "cannot be combined with above"},
		{"with sequential", func(s *Spec) {
			s.Sequential = &SequentialSpec{Errors: errorsT, Requests: requestsT, Alpha: 0.001, MinEffect: BaselineLimit{Ratio: 1.5}}
		}, "cannot be combined with sequential"},
		{"with min_requests", func(s *Spec) { s.MinRequests, s.VolumeQuery = 10, requestsT }, "cannot be combined with min_requests"},
		{"not by le", func(s *Spec) {
			s.Latency.Buckets = `sum(increase(lat_bucket{version="{{.Version}}"}[{{.SinceDeploy}}]))`
		}, "does not group by le"},
		{"version in a regex", func(s *Spec) {
			s.Latency.Buckets = `sum by (le) (increase(lat_bucket{version=~"{{.Version}}"}[{{.SinceDeploy}}]))`
		}, "regex matcher"},
		{"bad alpha", func(s *Spec) { s.Latency.Alpha = 0.9 }, "alpha"},
		{"bad quantile", func(s *Spec) { s.Latency.Quantiles = []float64{1.5} }, "quantile 1.5"},
		{"negative baseline window", func(s *Spec) { s.Latency.BaselineWindow = -time.Minute }, "negative baseline_window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromSpec(spec(tc.mod))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("FromSpec = %v, want an error containing %q", err, tc.err)
			}
		})
	}
}

// evalUntilViolated evaluates tr for deploy dd at ticks 1..n and returns
// the verdicts up to the first Violated one, included.
func evalUntilViolated(tr *Trigger, dd Deploy, q QueryFunc, n int) []Verdict {
	var vs []Verdict
	for i := 1; i <= n; i++ {
		v := tr.Eval(context.Background(), tick(i), dd, q)
		vs = append(vs, v)
		if v.Outcome == Violated {
			break
		}
	}
	return vs
}

// A p99 three times the baseline's, the median unchanged, is caught within
// ten minutes of 20 requests per second, evaluated every 10 seconds from
// the deploy on (in practice within the first 20 seconds); an unchanged or
// a faster distribution is never violated, and with enough traffic is
// judged healthy.
func TestLatencyTrigger(t *testing.T) {
	const evals = 60 // 10 minutes
	for _, tc := range []struct {
		name     string
		svc      *histService
		violated bool
		healthy  bool // by the end (when false: healthy or not)
	}{
		{"p99 x3", &histService{nw: slowP99, base: normal, newRate: 20, preRate: 50}, true, false},
		{"p99 x3 live baseline only", &histService{nw: slowP99, base: normal, newRate: 20, liveRate: 50}, true, false},
		{"p99 x3 native", &histService{nw: slowP99, base: normal, newRate: 20, preRate: 50, native: true}, true, false},
		{"same", &histService{nw: normal, base: normal, newRate: 20, preRate: 50}, false, false},
		{"same with live baseline", &histService{nw: normal, base: normal, newRate: 20, preRate: 50, liveRate: 50}, false, false},
		{"same with much traffic", &histService{nw: normal, base: normal, newRate: 500, preRate: 500}, false, true},
		{"faster", &histService{nw: split{0.03, 0.6, 0.6}, base: normal, newRate: 20, preRate: 50}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dd := latDef(t)
			if tc.svc.native {
				dd.Latency.Buckets = tmpl(t, `sum(increase(lat{service="{{.Service}}",version="{{.Version}}"}[{{.SinceDeploy}}]))`)
			}
			fresh := d
			fresh.At, tc.svc.at = t0, t0
			tr := newTrigger(t, dd)
			vs := evalUntilViolated(tr, fresh, tc.svc.query, evals)
			last := vs[len(vs)-1]
			le := last.Evidence.Latency
			if le == nil {
				t.Fatalf("no latency evidence: %s", last.Summary())
			}
			if got := last.Outcome == Violated; got != tc.violated {
				t.Fatalf("violated %v after %d evaluations, want %v: %s", got, len(vs), tc.violated, last.Summary())
			}
			if le.Native != tc.svc.native {
				t.Errorf("native %v, want %v", le.Native, tc.svc.native)
			}
			if !tc.violated {
				if healthy := last.Outcome == OK && le.Decision == sequential.Healthy; tc.healthy && !healthy {
					t.Errorf("healthy %v after %d evaluations, want %v: %s", healthy, evals, tc.healthy, last.Summary())
				}
				return
			}
			t.Logf("violated at evaluation %d, after %g requests: %s", len(vs), le.NewRequests, last.Summary())
			if last.State != Firing || le.E < 1/le.Alpha || le.P > le.Alpha || !le.DecidedAt.Equal(last.At) {
				t.Errorf("violated with state %v, e %g, p %g, decided at %v: %s", last.State, le.E, le.P, le.DecidedAt, last.Summary())
			}
			if last.Evidence.Value == nil || last.Evidence.BaselineValue == nil || *last.Evidence.Value <= 2**last.Evidence.BaselineValue {
				t.Errorf("p99 %v vs baseline %v, want over twice it", last.Evidence.Value, last.Evidence.BaselineValue)
			}
			if !strings.Contains(last.Summary(), "regressed: p99 ") || !strings.Contains(last.Evidence.Conditions[0].Text, "latency regressed") {
				t.Errorf("summary %q, condition %q", last.Summary(), last.Evidence.Conditions[0].Text)
			}
		})
	}
}

// The pre-deploy histogram is read once per deploy, at the deploy time
// over the baseline window; the live baseline since the deploy.
func TestLatencyQueries(t *testing.T) {
	svc := &histService{nw: normal, base: normal, newRate: 20, preRate: 50, liveRate: 50}
	tr := newTrigger(t, latDef(t))
	run(tr, svc.query, 3)
	pre := svc.sent(`version="v1"}[30m]`)
	if len(pre) != 1 || !strings.HasSuffix(pre[0], "@-5m0s") {
		t.Errorf("pre-deploy queries %q, want one at the deploy time", pre)
	}
	v := tr.Eval(context.Background(), tick(3), d, svc.query)
	le := v.Evidence.Latency
	want := `sum by (le) (increase(lat_bucket{service="checkout",version="v2"}[5m30s]))`
	if v.Evidence.Query != want || le.PreDeployQuery != `sum by (le) (increase(lat_bucket{service="checkout",version="v1"}[30m]))` ||
		v.Evidence.BaselineQuery != `sum by (le) (increase(lat_bucket{service="checkout",version="v1"}[5m30s]))` {
		t.Errorf("queries %q, %q, %q", v.Evidence.Query, le.PreDeployQuery, v.Evidence.BaselineQuery)
	}
	if le.PreDeployRequests != 50*1800 || le.LiveRequests != 50*330 || le.NewRequests != 20*330 || le.Judged != 20*330 {
		t.Errorf("requests: pre %g, live %g, new %g, judged %g", le.PreDeployRequests, le.LiveRequests, le.NewRequests, le.Judged)
	}
	if v.Evidence.BaselineMode != BaselineLive || *v.Evidence.SampleSize != le.Judged {
		t.Errorf("baseline mode %v, sample size %v", v.Evidence.BaselineMode, *v.Evidence.SampleSize)
	}
}

// With a lead, each bucket is the smaller of its increase() and its
// last_over_time() readings.
func TestLatencyCountsCappedByValues(t *testing.T) {
	svc := &histService{nw: normal, base: normal, newRate: 20, preRate: 50, values: 0.5}
	dl := d
	dl.Lead = time.Minute
	tr := newTrigger(t, latDef(t))
	v := tr.Eval(context.Background(), t0, dl, svc.query)
	le := v.Evidence.Latency
	if le.ValueQuery != `sum by (le) (last_over_time(lat_bucket{service="checkout",version="v2"}[6m]))` {
		t.Errorf("value query %q", le.ValueQuery)
	}
	if le.NewRequests != 20*300*0.5 {
		t.Errorf("new requests %g, want %g (the counter values)", le.NewRequests, 20*300*0.5)
	}
}

func TestLatencyNoData(t *testing.T) {
	// The new version has no buckets yet: no data, nothing judged.
	svc := &histService{nw: slowP99, base: normal, preRate: 50}
	tr := newTrigger(t, latDef(t))
	if v := tr.Eval(context.Background(), t0, d, svc.query); v.Outcome != NoData || v.State != Inactive {
		t.Fatalf("without data: %v %v", v.Outcome, v.State)
	}
	// A regressed version that stops reporting stays violated.
	svc = &histService{nw: slowP99, base: normal, newRate: 20, preRate: 50}
	tr = newTrigger(t, latDef(t))
	vs := evalUntilViolated(tr, d, svc.query, 30)
	last := vs[len(vs)-1]
	if last.Outcome != Violated {
		t.Fatalf("not violated: %s", last.Summary())
	}
	svc.gone = last.At.Add(step)
	v := tr.Eval(context.Background(), svc.gone, d, svc.query)
	if v.Outcome != Violated || v.State != Firing || !strings.Contains(v.Summary(), "no buckets data now") {
		t.Fatalf("after the data went: %v %v %s", v.Outcome, v.State, v.Summary())
	}
}

func TestLatencyBadAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    model.Vector
		err  string
	}{
		{"no le", model.Vector{{Metric: model.Metric{"job": "x"}, Value: 1}}, "without an le label"},
		{"le twice", model.Vector{{Metric: model.Metric{"le": "0.1", "pod": "a"}, Value: 1}, {Metric: model.Metric{"le": "0.1", "pod": "b"}, Value: 1}}, "two series with le"},
		{"le not a number", model.Vector{{Metric: model.Metric{"le": "fast"}, Value: 1}}, "not a number"},
		{"native among others", model.Vector{{Histogram: &model.SampleHistogram{}}, {Histogram: &model.SampleHistogram{}}}, "aggregate it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := func(context.Context, string, time.Time) (source.Result, error) {
				return source.Result{Vector: tc.v}, nil
			}
			v := newTrigger(t, latDef(t)).Eval(context.Background(), t0, d, q)
			if v.Outcome != QueryError || v.Err == nil || !strings.Contains(v.Err.Error(), tc.err) {
				t.Fatalf("outcome %v, error %v, want one containing %q", v.Outcome, v.Err, tc.err)
			}
		})
	}
}

// A native histogram is read at the bounds of the pre-deploy histogram;
// without one it is not judged.
func TestLatencyNativeWithoutPreDeploy(t *testing.T) {
	svc := &histService{nw: slowP99, base: normal, newRate: 20, liveRate: 50, native: true}
	dd := latDef(t)
	dd.Latency.Buckets = tmpl(t, `sum(increase(lat{service="{{.Service}}",version="{{.Version}}"}[{{.SinceDeploy}}]))`)
	v := newTrigger(t, dd).Eval(context.Background(), t0, d, svc.query)
	if v.Outcome != NotEnoughEvidence || !strings.Contains(v.Summary(), "native histogram") {
		t.Fatalf("%v: %s", v.Outcome, v.Summary())
	}
}

// The test's randomness comes from the deploy: two triggers judging the
// same deploy on the same data agree exactly, and a trigger that carries
// its state across a reload continues the same test.
func TestLatencyReproducibleAndReloaded(t *testing.T) {
	svc := &histService{nw: split{0.05, 0.6, 0.7}, base: normal, newRate: 20, preRate: 50, liveRate: 20}
	a, b := newTrigger(t, latDef(t)), newTrigger(t, latDef(t))
	va, vb := run(a, svc.query, 5), run(b, svc.query, 5)
	for i := range va {
		if ea, eb := va[i].Evidence.Latency.E, vb[i].Evidence.Latency.E; ea != eb {
			t.Fatalf("tick %d: e %g and %g for the same deploy", i, ea, eb)
		}
	}
	// Reload after tick 4: the new trigger continues a's test.
	reloaded := newTrigger(t, latDef(t))
	if !reloaded.CopyStateFrom(a) {
		t.Fatal("an equal definition did not copy")
	}
	for i := 5; i < 10; i++ {
		vr := reloaded.Eval(context.Background(), tick(i), d, svc.query)
		vb := b.Eval(context.Background(), tick(i), d, svc.query)
		if lr, lb := vr.Evidence.Latency, vb.Evidence.Latency; lr.E != lb.E || lr.Judged != lb.Judged || lr.P != lb.P {
			t.Fatalf("tick %d after the reload: e %g judged %g p %g, without a reload e %g judged %g p %g", i, lr.E, lr.Judged, lr.P, lb.E, lb.Judged, lb.P)
		}
	}
	other := latDef(t)
	other.Latency.Alpha = 0.01
	if newTrigger(t, other).CopyStateFrom(a) {
		t.Error("a definition with another alpha copied the test")
	}
	q := latDef(t)
	q.Latency.Quantiles = []float64{0.5, 0.9, 0.99}
	if !newTrigger(t, q).CopyStateFrom(a) {
		t.Error("the default quantiles written out did not copy")
	}
}

// A regressed decision survives a restart as the count test's does.
func TestLatencyLatchAcrossRestart(t *testing.T) {
	bad := &histService{nw: slowP99, base: normal, newRate: 20, preRate: 50}
	good := &histService{nw: normal, base: normal, newRate: 20, preRate: 50}
	tr := newTrigger(t, latDef(t))
	vs := evalUntilViolated(tr, d, bad.query, 30)
	at, ok := tr.Regressed()
	if !ok || !at.Equal(vs[len(vs)-1].At) {
		t.Fatalf("regressed %v %v", at, ok)
	}
	restarted := newTrigger(t, latDef(t))
	restarted.Latch(d, at)
	v := restarted.Eval(context.Background(), tick(40), d, good.query)
	if v.Outcome != Violated || v.State != Firing || !v.Evidence.Latency.DecidedAt.Equal(at) {
		t.Fatalf("after the restart: %v %v (%s)", v.Outcome, v.State, v.Summary())
	}
	restarted.Reset()
	if v := restarted.Eval(context.Background(), tick(40), d, good.query); v.Outcome == Violated {
		t.Fatalf("Reset kept the latch: %s", v.Summary())
	}
}

func TestHistogramQuantile(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    [][2]float64 // bound, cumulative count
		q    float64
		want float64
	}{
		{"median in the first bucket", [][2]float64{{0.1, 60}, {0.5, 90}, {math.Inf(1), 100}}, 0.5, 0.1 * 50 / 60},
		{"interpolated", [][2]float64{{0.1, 50}, {0.5, 90}, {math.Inf(1), 100}}, 0.7, 0.1 + 0.4*20/40},
		{"in +Inf", [][2]float64{{0.1, 50}, {0.5, 90}, {math.Inf(1), 100}}, 0.99, 0.5},
		{"unordered", [][2]float64{{math.Inf(1), 100}, {0.5, 90}, {0.1, 50}}, 0.7, 0.1 + 0.4*20/40},
		{"empty", [][2]float64{{0.1, 0}, {math.Inf(1), 0}}, 0.5, math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hist latency.Histogram
			for _, b := range tc.h {
				hist = append(hist, latency.Bucket{UpperBound: b[0], Count: b[1]})
			}
			got := histogramQuantile(tc.q, hist)
			if !(math.Abs(got-tc.want) < 1e-12 || math.IsNaN(got) && math.IsNaN(tc.want)) {
				t.Errorf("quantile %g = %g, want %g", tc.q, got, tc.want)
			}
		})
	}
}

// BenchmarkEvalLatency measures one evaluation of a latency trigger, each
// 1 s after the last: the new version's and the live baseline's buckets
// queries (12 buckets, 100 req/s each) answered from memory, read and
// judged by the test. (The pre-deploy query runs once per deploy, at the
// first evaluation, which the timing leaves out.)
func BenchmarkEvalLatency(b *testing.B) {
	svc := &histService{nw: normal, base: normal, newRate: 100, preRate: 100, liveRate: 100}
	const calls = 256
	answers := map[string]source.Result{}
	key := func(q string, ts time.Time) string { return q + "@" + ts.String() }
	record := func(_ context.Context, q string, ts time.Time) (source.Result, error) {
		res, err := svc.query(context.Background(), q, ts)
		answers[key(q, ts)] = res
		return res, err
	}
	ctx := context.Background()
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	tr := newTrigger(b, latDef(b))
	for i := range calls {
		if v := tr.Eval(ctx, at(i), d, record); v.Evidence.Latency == nil || v.Outcome == QueryError {
			b.Fatalf("outcome %v: %s", v.Outcome, v.Summary())
		}
	}
	q := func(_ context.Context, q string, ts time.Time) (source.Result, error) {
		return answers[key(q, ts)], nil
	}
	b.ReportAllocs()
	tr, i := newTrigger(b, latDef(b)), calls
	for b.Loop() {
		if i == calls { // start over on a fresh trigger
			b.StopTimer()
			tr, i = newTrigger(b, latDef(b)), 0
			tr.Eval(ctx, at(i), d, q)
			i++
			b.StartTimer()
		}
		tr.Eval(ctx, at(i), d, q)
		i++
	}
}
