package trigger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger/sequential"
)

const (
	errorsT   = `sum(increase(http_requests_total{service="{{.Service}}",version="{{.Version}}",code=~"5.."}[{{.SinceDeploy}}]))`
	requestsT = `sum(increase(http_requests_total{service="{{.Service}}",version="{{.Version}}"}[{{.SinceDeploy}}]))`
)

// seqDef returns a sequential definition (alpha 0.001, 1.5x, 30m of
// pre-deploy baseline) modified by mods.
func seqDef(t testing.TB, mods ...func(*Definition)) Definition {
	t.Helper()
	dd := Definition{
		Name:   "errors",
		Window: time.Minute,
		Sequential: &Sequential{
			Errors: tmpl(t, errorsT), Requests: tmpl(t, requestsT),
			Alpha: 0.001, MinEffect: BaselineLimit{Ratio: 1.5, Text: "1.5x"}, BaselineWindow: 30 * time.Minute,
		},
	}
	for _, m := range mods {
		m(&dd)
	}
	return dd
}

func alphaOf(a float64) func(*Definition) { return func(d *Definition) { d.Sequential.Alpha = a } }

// counter answers the count queries of a simulated service: errors or
// requests of a version over a range ending at the evaluation time.
type counter struct {
	mu sync.Mutex
	// counts returns the cumulative counts of version over (ts-rng, ts].
	counts func(version string, ts time.Time, rng time.Duration) (sequential.Counts, bool)
	// fail makes every query fail.
	fail  bool
	calls []string
}

func (c *counter) query(_ context.Context, q string, ts time.Time) (source.Result, error) {
	c.mu.Lock()
	c.calls = append(c.calls, fmt.Sprintf("%s@%s", q, ts.Sub(t0)))
	fail := c.fail
	c.mu.Unlock()
	if fail {
		return source.Result{}, errDown
	}
	// The queries are the templates above, rendered: the version is the
	// version="..." matcher, an errors query has a code matcher, the range
	// is in brackets.
	m := queryRE.FindStringSubmatch(q)
	if m == nil {
		return source.Result{}, fmt.Errorf("unexpected query %s", q)
	}
	version, isErrors := m[1], m[2] != ""
	md, err := model.ParseDuration(m[3])
	if err != nil {
		return source.Result{}, fmt.Errorf("query %s: %w", q, err)
	}
	rng := time.Duration(md)
	cs, ok := c.counts(version, ts, rng)
	if !ok {
		return source.Result{}, nil
	}
	v := cs.Requests
	if isErrors {
		if cs.Errors == 0 {
			return source.Result{}, nil // no 5xx series yet: an empty result
		}
		v = cs.Errors
	}
	return source.Result{Vector: model.Vector{{Metric: model.Metric{}, Value: model.SampleValue(v)}}}, nil
}

var queryRE = regexp.MustCompile(`^sum\(increase\(http_requests_total\{service="checkout",version="((?:[^"\\]|\\.)*)"(,code=~"5\.\.")?\}\[([0-9a-z]+)\]\)\)$`)

func (c *counter) sent(substr string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, q := range c.calls {
		if strings.Contains(q, substr) {
			out = append(out, q)
		}
	}
	return out
}

// linear is a service whose versions get constant traffic: rate requests
// per second with error ratio p for the new version, and the baseline's
// over the pre-deploy window (pre) and, when live > 0, since the deploy.
type linear struct {
	rate, p         float64
	pre             sequential.Counts
	live, liveRatio float64 // baseline requests per second since the deploy, and its error ratio
}

func (l linear) source() *counter {
	return &counter{counts: func(version string, ts time.Time, rng time.Duration) (sequential.Counts, bool) {
		switch {
		case version == "v1" && ts.Equal(deployAt) && rng == 30*time.Minute:
			return l.pre, l.pre.Requests > 0
		case version == "v1":
			s := rng.Seconds()
			return sequential.Counts{Errors: l.live * l.liveRatio * s, Requests: l.live * s}, l.live > 0
		}
		s := min(rng, ts.Sub(deployAt)).Seconds()
		return sequential.Counts{Errors: l.rate * l.p * s, Requests: l.rate * s}, s > 0 && l.rate > 0
	}}
}

func TestSequentialFromSpec(t *testing.T) {
	seq := func(alpha float64, effect BaselineLimit, window time.Duration) *SequentialSpec {
		return &SequentialSpec{Errors: errorsT, Requests: requestsT, Alpha: alpha, MinEffect: effect, BaselineWindow: window}
	}
	tcs := []Spec{
		{Name: "errors", Above: f64(0.05), Sequential: seq(0.001, BaselineLimit{Ratio: 1.5, Text: "1.5x"}, 30*time.Minute)},
		{Name: "errors-delta", Window: 2 * time.Minute, Sequential: seq(0.01, BaselineLimit{Delta: 0.01, Text: "+0.01"}, time.Hour)},
	}
	for _, tc := range []struct {
		name   string
		c      Spec
		alpha  float64
		effect string
		window time.Duration
		limit  *float64
		query  string
	}{
		{"defaults with a limit", tcs[0], 0.001, "1.5x", 30 * time.Minute, f64(0.05),
			`((sum(increase(http_requests_total{service="checkout",version="v2",code=~"5.."}[1m]))) or vector(0)) / (sum(increase(http_requests_total{service="checkout",version="v2"}[1m])))`},
		{"difference", tcs[1], 0.01, "+0.01", time.Hour, nil,
			`((sum(increase(http_requests_total{service="checkout",version="v2",code=~"5.."}[2m]))) or vector(0)) / (sum(increase(http_requests_total{service="checkout",version="v2"}[2m])))`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dd, err := FromSpec(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			s := dd.Sequential
			if s == nil {
				t.Fatal("no sequential test")
			}
			if s.Alpha != tc.alpha || s.MinEffect.Text != tc.effect || s.BaselineWindow != tc.window || !floatPtrEqual(dd.Above, tc.limit) {
				t.Fatalf("alpha %g effect %s window %s limit %v", s.Alpha, s.MinEffect.Text, s.BaselineWindow, dd.Above)
			}
			// The derived query is the error ratio over the window, for
			// recovery checks.
			q, err := dd.Query.Render(query.Vars{Service: "checkout", Version: "v2", Window: dd.Window})
			if err != nil {
				t.Fatal(err)
			}
			if q != tc.query {
				t.Fatalf("derived query\n%s\nwant\n%s", q, tc.query)
			}
			if _, err := New(dd); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSequentialDefinitionValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Definition)
		want string
	}{
		{"alpha 0", alphaOf(0), "alpha 0 must be in (0, 0.5]"},
		{"alpha 1", alphaOf(1), "alpha 1 must be in (0, 0.5]"},
		{"ratio 1", func(d *Definition) { d.Sequential.MinEffect = BaselineLimit{Ratio: 1, Text: "1x"} }, "a ratio must be above 1"},
		{"difference 0", func(d *Definition) { d.Sequential.MinEffect = BaselineLimit{Text: "+0"} }, "a difference must be in (0, 1)"},
		{"no requests query", func(d *Definition) { d.Sequential.Requests = nil }, "needs errors and requests"},
		{"with above_baseline", ratio(2), "cannot be combined with below or above_baseline"},
		{"with below", below(0.1), "cannot be combined with below or above_baseline"},
		{"with min_requests", minRequests(10), "cannot be combined with min_requests"},
		{"limit above 1", above(5), "limit 5 must be an error ratio in (0, 1)"},
		{"negative baseline window", func(d *Definition) { d.Sequential.BaselineWindow = -time.Second }, "negative baseline_window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(seqDef(t, tc.mod))
			if !errors.Is(err, ErrInvalidDefinition) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q wrapping ErrInvalidDefinition", err, tc.want)
			}
		})
	}
	t.Run("valid without a query", func(t *testing.T) {
		tr, err := New(seqDef(t))
		if err != nil {
			t.Fatal(err)
		}
		if tr.Definition().Query == nil {
			t.Fatal("New did not derive the query")
		}
	})
}

func TestSequentialEval(t *testing.T) {
	pre := sequential.Counts{Errors: 1800, Requests: 180000} // 1% over 30 minutes at 100 req/s
	type tick struct {
		at      time.Duration // after t0 (the deploy was 5 minutes before t0)
		outcome Outcome
		state   State
	}
	for _, tc := range []struct {
		name   string
		def    Definition
		dep    Deploy
		src    *counter
		ticks  []tick
		checks func(t *testing.T, v Verdict, src *counter)
	}{
		{"5x the pre-deploy baseline: violated, firing at once",
			seqDef(t), d, linear{rate: 100, p: 0.05, pre: pre}.source(),
			[]tick{{0, Violated, Firing}},
			func(t *testing.T, v Verdict, src *counter) {
				se := v.Evidence.Sequential
				if se.Decision != sequential.Regressed || se.E < 1000 || se.P > 0.001 {
					t.Errorf("decision %v e %g p %g", se.Decision, se.E, se.P)
				}
				if se.New != (sequential.Counts{Errors: 1500, Requests: 30000}) || se.PreDeploy != pre || se.Live != (sequential.Counts{}) {
					t.Errorf("counts new %v pre %v live %v", se.New, se.PreDeploy, se.Live)
				}
				if se.SinceDeploy != 5*time.Minute || !strings.Contains(v.Evidence.Query, "[5m]") {
					t.Errorf("range %s, query %s", se.SinceDeploy, v.Evidence.Query)
				}
				if *v.Evidence.Value != 0.05 || *v.Evidence.BaselineValue != 0.01 || v.Evidence.BaselineMode != BaselinePreDeploy || *v.Evidence.SampleSize != 30000 {
					t.Errorf("value %v baseline %v (%v) n %v", *v.Evidence.Value, *v.Evidence.BaselineValue, v.Evidence.BaselineMode, *v.Evidence.SampleSize)
				}
				if !(se.Effect == 5 && se.EffectLower > 1 && se.EffectUpper > 5) {
					t.Errorf("effect %g [%g, %g]", se.Effect, se.EffectLower, se.EffectUpper)
				}
				if got := src.sent(`[30m]`); len(got) != 2 || !strings.HasSuffix(got[0], "@-5m0s") {
					t.Errorf("pre-deploy queries %q, want errors and requests over 30m at the deploy", got)
				}
				if len(v.Evidence.Conditions) != 1 || !v.Evidence.Conditions[0].Breached {
					t.Errorf("conditions %+v", v.Evidence.Conditions)
				}
			}},
		{"for applies on top",
			seqDef(t, forDur(20*time.Second)), d, linear{rate: 100, p: 0.05, pre: pre}.source(),
			[]tick{{0, Violated, Pending}, {10 * time.Second, Violated, Pending}, {20 * time.Second, Violated, Firing}}, nil},
		{"the same as the baseline: inconclusive, then healthy",
			seqDef(t), d, linear{rate: 100, p: 0.01, pre: pre}.source(),
			[]tick{{-4 * time.Minute, NotEnoughEvidence, Inactive}, {25 * time.Minute, OK, Inactive}},
			func(t *testing.T, v Verdict, _ *counter) {
				if se := v.Evidence.Sequential; se.Decision != sequential.Healthy || se.EHealthy < 1000 || !(se.EffectUpper < 1.5) {
					t.Errorf("decision %v healthy e %g effect ≤ %g", se.Decision, se.EHealthy, se.EffectUpper)
				}
			}},
		{"little traffic: inconclusive",
			seqDef(t), d, linear{rate: 0.01, p: 0.5, pre: pre}.source(),
			[]tick{{0, NotEnoughEvidence, Inactive}, {time.Minute, NotEnoughEvidence, Inactive}}, nil},
		{"a live canary baseline",
			seqDef(t, func(d *Definition) { d.Sequential.BaselineWindow = 0 }), d,
			linear{rate: 10, p: 0.05, live: 90, liveRatio: 0.01}.source(),
			[]tick{{0, Violated, Firing}},
			func(t *testing.T, v Verdict, src *counter) {
				if v.Evidence.BaselineMode != BaselineLive || v.Evidence.Sequential.Live != (sequential.Counts{Errors: 270, Requests: 27000}) {
					t.Errorf("mode %v live %v", v.Evidence.BaselineMode, v.Evidence.Sequential.Live)
				}
				if !strings.Contains(v.Evidence.BaselineQuery, `version="v1"`) || !strings.Contains(v.Evidence.BaselineQuery, "[5m]") {
					t.Errorf("baseline query %s", v.Evidence.BaselineQuery)
				}
				if got := src.sent("[30m]"); len(got) != 0 {
					t.Errorf("pre-deploy queries %q without a baseline window", got)
				}
			}},
		{"no baseline: against the limit",
			seqDef(t, above(0.01)), Deploy{Service: "checkout", Version: "v2", At: deployAt}, linear{rate: 100, p: 0.05}.source(),
			[]tick{{0, Violated, Firing}},
			func(t *testing.T, v Verdict, _ *counter) {
				se := v.Evidence.Sequential
				if se.Relative || !se.Absolute || v.Evidence.BaselineMode != BaselineNone || !(se.NewLower > 0.01) {
					t.Errorf("relative %v absolute %v mode %v lower %g", se.Relative, se.Absolute, v.Evidence.BaselineMode, se.NewLower)
				}
			}},
		{"no baseline and no limit: inconclusive",
			seqDef(t), Deploy{Service: "checkout", Version: "v2", At: deployAt}, linear{rate: 100, p: 0.5}.source(),
			[]tick{{0, NotEnoughEvidence, Inactive}}, nil},
		{"no requests: no data",
			seqDef(t), d, linear{pre: pre}.source(),
			[]tick{{0, NoData, Inactive}}, nil},
		{"no requests with on_no_data fire",
			seqDef(t, onNoData(PolicyFire)), d, linear{pre: pre}.source(),
			[]tick{{0, NoData, Firing}}, nil},
		{"a failing source: query error",
			seqDef(t), d, &counter{fail: true},
			[]tick{{0, QueryError, Inactive}}, nil},
		{"before the deploy: inconclusive",
			seqDef(t), Deploy{Service: "checkout", Version: "v2", Baseline: "v1", At: t0.Add(time.Hour)}, linear{rate: 100, p: 0.5}.source(),
			[]tick{{0, NotEnoughEvidence, Inactive}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrigger(t, tc.def)
			var v Verdict
			for i, tk := range tc.ticks {
				v = tr.Eval(context.Background(), t0.Add(tk.at), tc.dep, tc.src.query)
				if v.Outcome != tk.outcome || v.State != tk.state {
					t.Fatalf("tick %d: %v, %v (%s; err %v), want %v, %v", i, v.Outcome, v.State, v.Summary(), v.Err, tk.outcome, tk.state)
				}
				if v.Outcome != QueryError && v.Evidence.Sequential == nil {
					t.Fatalf("tick %d: no sequential evidence", i)
				}
			}
			if s := v.Summary(); strings.Contains(s, "\n") {
				t.Errorf("summary is not one line: %q", s)
			}
			if tc.checks != nil {
				tc.checks(t, v, tc.src)
			}
		})
	}
}

func TestSequentialStaysRegressed(t *testing.T) {
	pre := sequential.Counts{Errors: 1800, Requests: 180000}
	bad := linear{rate: 100, p: 0.05, pre: pre}.source()
	good := linear{rate: 100, p: 0.01, pre: pre}.source()
	tr := newTrigger(t, seqDef(t))
	v := tr.Eval(context.Background(), t0, d, bad.query)
	if v.Outcome != Violated {
		t.Fatalf("outcome %v", v.Outcome)
	}
	// Later counts that look fine do not undo a crossing: the test stopped.
	v = tr.Eval(context.Background(), t0.Add(time.Minute), d, good.query)
	se := v.Evidence.Sequential
	if v.Outcome != Violated || v.State != Firing || se.Decision != sequential.Regressed || !se.DecidedAt.Equal(t0) {
		t.Fatalf("outcome %v state %v decision %v since %v", v.Outcome, v.State, se.Decision, se.DecidedAt)
	}
	if se.E >= 1000 || se.P > 0.001 {
		t.Fatalf("e %g (now), p %g (the running minimum)", se.E, se.P)
	}
	if !strings.Contains(v.Summary(), "regressed since 12:00:00") {
		t.Fatalf("summary %q", v.Summary())
	}
	// A reload with the same definition keeps it; a new deploy starts over.
	fresh := newTrigger(t, seqDef(t))
	if !fresh.CopyStateFrom(tr) {
		t.Fatal("CopyStateFrom refused an equal definition")
	}
	if v := fresh.Eval(context.Background(), t0.Add(2*time.Minute), d, good.query); v.Outcome != Violated {
		t.Fatalf("after a reload: %v", v.Outcome)
	}
	// A regressed version that stops reporting stays regressed.
	if v := fresh.Eval(context.Background(), t0.Add(150*time.Second), d, linear{pre: pre}.source().query); v.Outcome != Violated || v.State != Firing {
		t.Fatalf("without data after regressing: %v, %v (%s)", v.Outcome, v.State, v.Summary())
	}
	other := d
	other.Version = "v3"
	if v := fresh.Eval(context.Background(), t0.Add(3*time.Minute), other, good.query); v.Outcome == Violated {
		t.Fatalf("a new deploy inherited the decision: %s", v.Summary())
	}
	if changed := newTrigger(t, seqDef(t, alphaOf(0.01))); changed.CopyStateFrom(tr) {
		t.Fatal("CopyStateFrom copied across a changed alpha")
	}
}

func TestSequentialSnapshot(t *testing.T) {
	pre := sequential.Counts{Errors: 180, Requests: 18000}
	src := linear{rate: 100, p: 0.01, pre: pre}.source()
	tr := newTrigger(t, seqDef(t))
	tr.Reset()
	v, ok, err := tr.Snapshot(context.Background(), d, src.query)
	if err != nil || !ok || v != 0.01 {
		t.Fatalf("Snapshot = %g, %v, %v", v, ok, err)
	}
	for i := range 3 {
		tr.Eval(context.Background(), t0.Add(time.Duration(i)*10*time.Second), d, src.query)
	}
	if got := src.sent("[30m]"); len(got) != 2 {
		t.Fatalf("pre-deploy counts queried %d times, want once each for errors and requests: %q", len(got), got)
	}
	// A failed snapshot is retried at the next evaluation.
	failing := &counter{fail: true}
	tr2 := newTrigger(t, seqDef(t))
	if _, _, err := tr2.Snapshot(context.Background(), d, failing.query); err == nil {
		t.Fatal("Snapshot: no error from a failing source")
	}
	if v := tr2.Eval(context.Background(), t0, d, src.query); v.Evidence.Sequential.PreDeploy != pre {
		t.Fatalf("pre-deploy counts %v after a failed snapshot, want %v", v.Evidence.Sequential.PreDeploy, pre)
	}
}

func TestSequentialSummary(t *testing.T) {
	pre := sequential.Counts{Errors: 1800, Requests: 180000}
	for _, tc := range []struct {
		name string
		def  Definition
		dep  Deploy
		src  *counter
		at   time.Duration
		want []string
	}{
		{"regressed", seqDef(t), d, linear{rate: 1, p: 0.05, pre: pre}.source(), 0, []string{
			"errors v2: regressed: 15/300 errors (5%) in 5m0s vs baseline v1 1800/180000 (1%, pre_deploy); ratio 5 [",
			"]; e ", " ≥ 1000 (p ", ", alpha 0.001); firing (was inactive)"}},
		{"inconclusive", seqDef(t), d, linear{rate: 0.1, p: 0.02, pre: pre}.source(), 0, []string{
			"errors v2: inconclusive: 1/30 errors (3.33%) in 5m0s vs baseline v1 1800/180000 (1%, pre_deploy); ratio 3.33 [",
			" < 1000 (p 1, alpha 0.001), healthy e ", "; inactive"}},
		{"healthy", seqDef(t), d, linear{rate: 100, p: 0.01, pre: pre}.source(), 25 * time.Minute, []string{
			"errors v2: healthy: 1800/180000 errors (1%) in 30m0s vs baseline v1 1800/180000 (1%, pre_deploy); ratio 1 [",
			"; healthy e ", "(need 1000): any regression < 1.5x; inactive"}},
		{"against a limit", seqDef(t, above(0.01)), Deploy{Service: "checkout", Version: "v2", At: deployAt},
			linear{rate: 1, p: 0.05}.source(), 0, []string{
				"errors v2: regressed: 15/300 errors (5%) in 5m0s, limit 1%; rate 5% [", "; firing (was inactive)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrigger(t, tc.def)
			v := tr.Eval(context.Background(), t0.Add(tc.at), tc.dep, tc.src.query)
			s := v.Summary()
			for _, w := range tc.want {
				if !strings.Contains(s, w) {
					t.Fatalf("summary\n%s\nlacks %q", s, w)
				}
			}
		})
	}
}

// simulated answers the count queries from simulated Poisson streams: the
// new version at rate req/s with error ratio p(t) and the baseline's 30
// pre-deploy minutes at the same rate with error ratio base; each count is
// inflated by up to half a 5 s scrape interval at both ends, as increase()
// extrapolates, so that counts are fractional.
func simulated(seed uint64, rate float64, p func(time.Duration) float64, base float64) *counter {
	rng := rand.New(rand.NewPCG(seed, 7))
	preN := rate * 1800
	pre := sequential.Counts{Requests: preN, Errors: binomialDraw(rng, preN, base)}
	type point struct {
		at   time.Duration
		c    sequential.Counts
		infl float64
	}
	var pts []point // cumulative counts, per second
	var cum sequential.Counts
	return &counter{counts: func(version string, ts time.Time, rng2 time.Duration) (sequential.Counts, bool) {
		if version == "v1" {
			if ts.Equal(deployAt) {
				return pre, true
			}
			return sequential.Counts{}, false
		}
		for len(pts) == 0 || pts[len(pts)-1].at < ts.Sub(deployAt) {
			at := time.Duration(len(pts)+1) * time.Second
			n := float64(poissonDraw(rng, rate))
			cum.Requests += n
			cum.Errors += binomialDraw(rng, n, p(at))
			pts = append(pts, point{at: at, c: cum, infl: 1 + rng.Float64()*5/max(at.Seconds(), 5)})
		}
		pt := pts[int(ts.Sub(deployAt)/time.Second)-1]
		return sequential.Counts{Errors: pt.c.Errors * pt.infl, Requests: pt.c.Requests * pt.infl}, pt.c.Requests > 0
	}}
}

func poissonDraw(r *rand.Rand, mu float64) int {
	u, p := r.Float64(), math.Exp(-mu)
	f, k := p, 0
	for u > f && k < 10000 {
		k++
		p *= mu / float64(k)
		f += p
	}
	return k
}

func binomialDraw(r *rand.Rand, n, p float64) float64 {
	switch {
	case n*p > 50:
		return math.Round(n*p + math.Sqrt(n*p*(1-p))*r.NormFloat64())
	case n > 200:
		return float64(poissonDraw(r, n*p))
	}
	k := 0.0
	for range int(n) {
		if r.Float64() < p {
			k++
		}
	}
	return k
}

// TestSequentialTriggerAA runs the whole trigger (queries, rounding of
// fractional counts, state machine) on simulated A/A deploys evaluated every
// 10 s for 30 minutes: at alpha 0.05, at most 5% of them may fire, within
// binomial confidence.
func TestSequentialTriggerAA(t *testing.T) {
	const alpha, runs = 0.05, 300
	fired := 0
	for run := range runs {
		src := simulated(uint64(run), 20, func(time.Duration) float64 { return 0.02 }, 0.02)
		tr := newTrigger(t, seqDef(t, alphaOf(alpha)))
		for i := 1; i <= 180; i++ {
			if v := tr.Eval(context.Background(), deployAt.Add(time.Duration(i)*10*time.Second), d, src.query); v.State == Firing {
				fired++
				break
			}
		}
	}
	limit := int(alpha*runs + 3*math.Sqrt(runs*alpha*(1-alpha)))
	t.Logf("%d of %d healthy deploys fired (alpha %g)", fired, runs, alpha)
	if fired > limit {
		t.Fatalf("%d of %d healthy deploys fired, more than %d allowed at alpha %g", fired, runs, limit, alpha)
	}
}

// TestSequentialTriggerDetects runs the trigger on a 1% → 5% regression at
// 100 req/s, evaluated every second: it fires within seconds.
func TestSequentialTriggerDetects(t *testing.T) {
	var delays []int
	for run := range 50 {
		src := simulated(uint64(run)+1000, 100, func(time.Duration) float64 { return 0.05 }, 0.01)
		tr := newTrigger(t, seqDef(t))
		delay := -1
		for i := 1; i <= 120; i++ {
			if v := tr.Eval(context.Background(), deployAt.Add(time.Duration(i)*time.Second), d, src.query); v.State == Firing {
				delay = i
				break
			}
		}
		if delay < 0 {
			t.Fatalf("run %d: not detected in 2 minutes", run)
		}
		delays = append(delays, delay)
	}
	worst := 0
	sum := 0
	for _, s := range delays {
		worst = max(worst, s)
		sum += s
	}
	t.Logf("fired after %.1f s on average, %d s at worst", float64(sum)/float64(len(delays)), worst)
	if worst > 30 {
		t.Fatalf("fired only after %d s", worst)
	}
}
