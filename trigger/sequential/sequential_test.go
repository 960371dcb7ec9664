package sequential

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func ptr(f float64) *float64 { return &f }

func mustNew(t testing.TB, c Config) *Test {
	t.Helper()
	te, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return te
}

func TestConfigValidate(t *testing.T) {
	ratio := Effect{Ratio: 1.5}
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default", Config{Alpha: DefaultAlpha, MinEffect: ratio}, true},
		{"difference", Config{Alpha: 0.01, MinEffect: Effect{Delta: 0.01}}, true},
		{"with a limit", Config{Alpha: 0.05, MinEffect: ratio, Limit: ptr(0.05)}, true},
		{"alpha 0.5", Config{Alpha: 0.5, MinEffect: ratio}, true},
		{"alpha 0", Config{MinEffect: ratio}, false},
		{"alpha 1", Config{Alpha: 1, MinEffect: ratio}, false},
		{"alpha NaN", Config{Alpha: math.NaN(), MinEffect: ratio}, false},
		{"negative alpha", Config{Alpha: -0.01, MinEffect: ratio}, false},
		{"ratio 1", Config{Alpha: 0.01, MinEffect: Effect{Ratio: 1}}, false},
		{"ratio below 1", Config{Alpha: 0.01, MinEffect: Effect{Ratio: 0.5}}, false},
		{"ratio +Inf", Config{Alpha: 0.01, MinEffect: Effect{Ratio: math.Inf(1)}}, false},
		{"no effect", Config{Alpha: 0.01}, false},
		{"difference 1", Config{Alpha: 0.01, MinEffect: Effect{Delta: 1}}, false},
		{"negative difference", Config{Alpha: 0.01, MinEffect: Effect{Delta: -0.1}}, false},
		{"ratio and difference", Config{Alpha: 0.01, MinEffect: Effect{Ratio: 2, Delta: 0.1}}, false},
		{"limit 0", Config{Alpha: 0.01, MinEffect: ratio, Limit: ptr(0)}, false},
		{"limit 1", Config{Alpha: 0.01, MinEffect: ratio, Limit: ptr(1)}, false},
		{"limit NaN", Config{Alpha: 0.01, MinEffect: ratio, Limit: ptr(math.NaN())}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("New: %v", err)
			case !tc.ok && !errors.Is(err, ErrInvalidConfig):
				t.Fatalf("New: %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestCountsClean(t *testing.T) {
	for _, tc := range []struct {
		in, want Counts
	}{
		{Counts{Errors: 1.49, Requests: 10.2}, Counts{Errors: 1, Requests: 10}},
		{Counts{Errors: 2.5, Requests: 99.5}, Counts{Errors: 3, Requests: 100}},
		{Counts{Errors: -0.3, Requests: -1}, Counts{}},
		{Counts{Errors: math.NaN(), Requests: math.NaN()}, Counts{}},
		{Counts{Errors: 12.2, Requests: 10.1}, Counts{Errors: 10, Requests: 10}},
		{Counts{Errors: math.Inf(1), Requests: math.Inf(1)}, Counts{}},
	} {
		t.Run(fmt.Sprintf("%v", tc.in), func(t *testing.T) {
			if got := tc.in.Clean(); got != tc.want {
				t.Fatalf("Clean() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecisionString(t *testing.T) {
	for d, want := range map[Decision]string{Inconclusive: "inconclusive", Regressed: "regressed", Healthy: "healthy", 7: "unknown"} {
		if got := d.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(d), got, want)
		}
	}
}

// poisson draws from a Poisson distribution by inversion (small means) or
// a normal approximation (large means; only used for request counts).
func poisson(r *rand.Rand, mu float64) float64 {
	if mu <= 0 {
		return 0
	}
	if mu > 50 {
		return math.Max(0, math.Round(mu+math.Sqrt(mu)*r.NormFloat64()))
	}
	u, p := r.Float64(), math.Exp(-mu)
	f, k := p, 0.0
	for u > f && k < 1000 {
		k++
		p *= mu / k
		f += p
	}
	return k
}

// stream describes simulated deploys: checks every tick seconds over a
// watch window, Poisson traffic, each request failing independently.
type stream struct {
	rate     float64 // requests per second of the new version
	tick     float64 // seconds between checks
	ticks    int     // checks per deploy
	newRate  func(t float64) float64
	baseRate float64 // the baseline's error ratio
	// preSeconds is the pre-deploy window at the same traffic (0: none).
	preSeconds float64
	// liveShare is the baseline's share of the live traffic at time t (nil:
	// it no longer serves): a canary whose weight changes.
	liveShare func(t float64) float64
}

// simulate runs one deploy with seed: start returns the watch for the
// pre-deploy counts, and check is called at every tick with the cumulative
// counts until it returns true.
func (s stream) simulate(seed uint64, start func(pre Counts) *Watch, check func(i int, w *Watch, nc, live Counts) bool) {
	rng := rand.New(rand.NewPCG(seed, 42))
	var pre Counts
	if s.preSeconds > 0 {
		pre.Requests = poisson(rng, s.rate*s.preSeconds)
		pre.Errors = binomial(rng, pre.Requests, s.baseRate)
	}
	w := start(pre)
	var nc, live Counts
	for i := range s.ticks {
		t := float64(i) * s.tick
		n := poisson(rng, s.rate*s.tick)
		nc.Requests += n
		nc.Errors += binomial(rng, n, s.newRate(t+s.tick/2))
		if s.liveShare != nil {
			share := s.liveShare(t)
			m := poisson(rng, s.rate*s.tick*share/(1-share))
			live.Requests += m
			live.Errors += binomial(rng, m, s.baseRate)
		}
		if check(i, w, nc, live) {
			return
		}
	}
}

// binomial draws the failures among n requests exactly: the gaps between
// failures are geometric.
func binomial(r *rand.Rand, n, p float64) float64 {
	switch {
	case n <= 0 || p <= 0:
		return 0
	case p >= 1:
		return n
	case p > 0.5:
		return n - binomial(r, n, 1-p)
	}
	lq := math.Log1p(-p)
	k, i := 0.0, 0.0
	for {
		i += math.Floor(math.Log(1-r.Float64())/lq) + 1
		if i > n {
			return k
		}
		k++
	}
}

// scaled returns runs scaled by statScale (smaller under the race
// detector) and by a quarter with -short, at least min.
func scaled(runs, min int) int {
	f := statScale
	if testing.Short() {
		f /= 4
	}
	return max(min, int(float64(runs)*f))
}

// falseRollbacks simulates runs healthy deploys, checking at every tick,
// and returns how many were ever judged regressed.
func falseRollbacks(t *testing.T, runs int, s stream, start func(pre Counts) *Watch) int {
	t.Helper()
	bad := 0
	for run := range runs {
		s.simulate(uint64(run), start, func(_ int, w *Watch, nc, live Counts) bool {
			if w.Decide(nc, live).Decision == Regressed {
				bad++
				return true
			}
			return false
		})
	}
	return bad
}

// maxAllowed is the largest count of false rollbacks in runs that is
// consistent with a rate of at most alpha: alpha·runs plus three binomial
// standard deviations.
func maxAllowed(alpha float64, runs int) int {
	n := float64(runs)
	return int(math.Floor(alpha*n + 3*math.Sqrt(n*alpha*(1-alpha))))
}

func constant(p float64) func(float64) float64 { return func(float64) float64 { return p } }

// TestFalseRollbackRateAA checks, on simulated A/A deploys (the new version
// exactly as good as the baseline, or exactly at the limit, the worst case
// of the null hypothesis) checked at every tick of a 30-minute watch, that
// the share ever judged regressed stays at or below alpha within binomial
// confidence. Errors are drawn per request (Bernoulli), the case the
// two-sample test's sub-Poisson argument covers. Checks every 15 or 30
// seconds keep the test fast; TestPeekingInflatesANaiveTest shows that
// the harness catches a test that is not anytime-valid.
func TestFalseRollbackRateAA(t *testing.T) {
	minute := 60.0
	ramp := func(t float64) float64 { // canary weight 10% → 50% (baseline 90% → 50%)
		switch {
		case t < 5*minute:
			return 0.9
		case t < 10*minute:
			return 0.7
		}
		return 0.5
	}
	ratio, delta := Effect{Ratio: 1.5}, Effect{Delta: 0.01}
	for _, tc := range []struct {
		name   string
		alpha  float64
		runs   int
		s      stream
		limit  bool
		effect Effect
	}{
		{"vs pre-deploy baseline, 100 req/s, 1%", 0.05, 600,
			stream{rate: 100, tick: 30, ticks: 60, newRate: constant(0.01), baseRate: 0.01, preSeconds: 1800}, false, ratio},
		{"vs pre-deploy baseline, 1 req/s, 5%", 0.05, 600,
			stream{rate: 1, tick: 15, ticks: 120, newRate: constant(0.05), baseRate: 0.05, preSeconds: 1800}, false, ratio},
		{"vs live canary baseline with changing weight, no pre-deploy data", 0.05, 600,
			stream{rate: 20, tick: 30, ticks: 60, newRate: constant(0.02), baseRate: 0.02, liveShare: ramp}, false, ratio},
		{"vs pre-deploy and live canary baseline, 10 req/s, 2%", 0.05, 600,
			stream{rate: 10, tick: 30, ticks: 60, newRate: constant(0.02), baseRate: 0.02, preSeconds: 1800, liveShare: ramp}, false, ratio},
		{"vs short pre-deploy window, 10 req/s, 2%", 0.05, 600,
			stream{rate: 10, tick: 30, ticks: 60, newRate: constant(0.02), baseRate: 0.02, preSeconds: 120}, false, ratio},
		{"vs 30 s of pre-deploy baseline, 100 req/s, 1%: the baseline's uncertainty dominates", 0.05, 600,
			stream{rate: 100, tick: 30, ticks: 60, newRate: constant(0.01), baseRate: 0.01, preSeconds: 30}, false, ratio},
		{"vs pre-deploy baseline, 5 req/s, 20%: Bernoulli far from Poisson", 0.05, 600,
			stream{rate: 5, tick: 30, ticks: 60, newRate: constant(0.2), baseRate: 0.2, preSeconds: 600}, false, ratio},
		{"vs pre-deploy baseline, min_effect +0.01, 10 req/s, 5%", 0.05, 600,
			stream{rate: 10, tick: 30, ticks: 60, newRate: constant(0.05), baseRate: 0.05, preSeconds: 600}, false, delta},
		{"vs limit, at the limit, 100 req/s, 1%", 0.05, 600,
			stream{rate: 100, tick: 15, ticks: 120, newRate: constant(0.01)}, true, ratio},
		{"vs limit, at the limit, 2 req/s, 10%", 0.05, 600,
			stream{rate: 2, tick: 15, ticks: 120, newRate: constant(0.1)}, true, ratio},
		{"vs pre-deploy baseline, alpha 0.001, 100 req/s, 1%", 0.001, 2000,
			stream{rate: 100, tick: 30, ticks: 60, newRate: constant(0.01), baseRate: 0.01, preSeconds: 1800}, false, ratio},
		{"vs limit, at the limit, alpha 0.001, 50 req/s, 2%", 0.001, 2000,
			stream{rate: 50, tick: 30, ticks: 60, newRate: constant(0.02)}, true, ratio},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Alpha: tc.alpha, MinEffect: tc.effect}
			if tc.limit {
				cfg.Limit = ptr(tc.s.newRate(0))
			}
			te := mustNew(t, cfg)
			runs := scaled(tc.runs, 200)
			bad := falseRollbacks(t, runs, tc.s, func(pre Counts) *Watch { return te.Watch(!tc.limit, pre) })
			t.Logf("%d false rollbacks in %d deploys (alpha %g)", bad, runs, tc.alpha)
			if lim := maxAllowed(tc.alpha, runs); bad > lim {
				t.Fatalf("%d false rollbacks in %d deploys, more than %d allowed at alpha %g", bad, runs, lim, tc.alpha)
			}
		})
	}
}

// TestPeekingInflatesANaiveTest shows that the A/A harness above can fail:
// a fixed-sample one-sided z-test of the same data at alpha 0.05, checked at
// every tick, rolls back far more than 5% of healthy deploys.
func TestPeekingInflatesANaiveTest(t *testing.T) {
	const alpha, runs = 0.05, 1000
	s := stream{rate: 100, tick: 10, ticks: 180, newRate: constant(0.01), baseRate: 0.01, preSeconds: 1800}
	te := mustNew(t, Config{Alpha: alpha, MinEffect: Effect{Ratio: 1.5}})
	bad := 0
	for run := range runs {
		var pre Counts
		s.simulate(uint64(run), func(p Counts) *Watch { pre = p; return te.Watch(true, p) }, func(_ int, _ *Watch, nc, _ Counts) bool {
			p1, p2 := nc.Errors/nc.Requests, pre.Errors/pre.Requests
			pool := (nc.Errors + pre.Errors) / (nc.Requests + pre.Requests)
			z := (p1 - p2) / math.Sqrt(pool*(1-pool)*(1/nc.Requests+1/pre.Requests))
			if z > 1.645 {
				bad++
				return true
			}
			return false
		})
	}
	t.Logf("naive z-test checked every tick: %d false rollbacks in %d deploys", bad, runs)
	if bad <= 2*maxAllowed(alpha, runs) {
		t.Fatalf("the naive test rolled back only %d of %d healthy deploys: the harness cannot tell a peeking test", bad, runs)
	}
}

// detection simulates runs deploys and returns the tick of each first
// "regressed" (-1 when never).
func detection(runs int, s stream, start func(pre Counts) *Watch) []int {
	at := make([]int, runs)
	for run := range runs {
		at[run] = -1
		s.simulate(uint64(run)+1e6, start, func(i int, w *Watch, nc, live Counts) bool {
			if w.Decide(nc, live).Decision == Regressed {
				at[run] = i
				return true
			}
			return false
		})
	}
	return at
}

// TestDetectsRegression checks that a 5x regression is caught, and how
// fast, against the baseline and against a limit. At low traffic, where 30
// minutes of baseline hold 18 errors, Wald's SPRT that knows both rates
// needs about 150 s (1 req/s) and 145 s (10 req/s); the median allowed is
// below what the test needed when it bounded the baseline's rate (700 s
// and 740 s).
func TestDetectsRegression(t *testing.T) {
	for _, tc := range []struct {
		name      string
		s         stream
		cfg       Config
		baseline  bool
		maxMedian float64 // seconds
	}{
		{"1% → 5% at 100 req/s vs the baseline's last 30 minutes",
			stream{rate: 100, tick: 1, ticks: 120, newRate: constant(0.05), baseRate: 0.01, preSeconds: 1800},
			Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}}, true, 5},
		{"1% → 5% at 100 req/s vs a live canary baseline at 90%",
			stream{rate: 100, tick: 1, ticks: 120, newRate: constant(0.05), baseRate: 0.01, liveShare: constant(0.9)},
			Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}}, true, 10},
		{"1% → 5% at 100 req/s vs a limit of 1%",
			stream{rate: 100, tick: 1, ticks: 120, newRate: constant(0.05)},
			Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}, Limit: ptr(0.01)}, false, 5},
		{"1% → 5% at 1 req/s vs the baseline's last 30 minutes (18 errors)",
			stream{rate: 1, tick: 5, ticks: 360, newRate: constant(0.05), baseRate: 0.01, preSeconds: 1800},
			Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}}, true, 400},
		{"0.1% → 0.5% at 10 req/s vs the baseline's last 30 minutes (18 errors)",
			stream{rate: 10, tick: 5, ticks: 360, newRate: constant(0.005), baseRate: 0.001, preSeconds: 1800},
			Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}}, true, 400},
		{"1% → 5% at 100 req/s, min_effect +0.01",
			stream{rate: 100, tick: 1, ticks: 120, newRate: constant(0.05), baseRate: 0.01, preSeconds: 1800},
			Config{Alpha: DefaultAlpha, MinEffect: Effect{Delta: 0.01}}, true, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := mustNew(t, tc.cfg)
			at := detection(scaled(200, 100), tc.s, func(pre Counts) *Watch { return te.Watch(tc.baseline, pre) })
			if slices.Contains(at, -1) {
				t.Fatalf("missed in %d of %d deploys", len(at)-len(slices.DeleteFunc(slices.Clone(at), func(i int) bool { return i < 0 })), len(at))
			}
			slices.Sort(at)
			med, p95 := float64(at[len(at)/2]+1)*tc.s.tick, float64(at[len(at)*95/100]+1)*tc.s.tick
			t.Logf("detected in every deploy: median %g s (%.0f requests), p95 %g s", med, med*tc.s.rate, p95)
			if med > tc.maxMedian {
				t.Fatalf("median detection after %g s, want at most %g s", med, tc.maxMedian)
			}
		})
	}
}

// TestLowTrafficIsInconclusive checks that no or little traffic never
// gives a verdict, and that a baseline without data never makes a
// regression.
func TestLowTrafficIsInconclusive(t *testing.T) {
	te := mustNew(t, Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}})
	lim := mustNew(t, Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}, Limit: ptr(0.01)})
	pre := Counts{Errors: 180, Requests: 18000}
	for _, tc := range []struct {
		name      string
		w         *Watch
		new, live Counts
		maxE      float64 // the evidence of a regression stays at or below this
	}{
		{"no traffic", te.Watch(true, pre), Counts{}, Counts{}, 1},
		{"no traffic vs a limit", lim.Watch(false, Counts{}), Counts{}, Counts{}, 1},
		{"10 requests, no error", te.Watch(true, pre), Counts{Requests: 10}, Counts{}, 1},
		{"3 requests, 1 error", te.Watch(true, pre), Counts{Errors: 1, Requests: 3}, Counts{}, 10},
		{"2 requests, both failed", te.Watch(true, pre), Counts{Errors: 2, Requests: 2}, Counts{}, 200},
		{"20 requests, 1 error vs a limit of 1%", lim.Watch(false, Counts{}), Counts{Errors: 1, Requests: 20}, Counts{}, 10},
		{"a fractional error from increase()", te.Watch(true, pre), Counts{Errors: 0.4, Requests: 1.3}, Counts{}, 1},
		{"baseline without any data", te.Watch(true, Counts{}), Counts{Errors: 500, Requests: 1000}, Counts{}, 1},
		{"no baseline and no limit", te.Watch(false, Counts{}), Counts{Errors: 500, Requests: 1000}, Counts{}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.w.Judge(tc.new, tc.live)
			if r.Decision != Inconclusive {
				t.Fatalf("decision %v (e %g, healthy e %g), want inconclusive", r.Decision, r.E, r.EHealthy)
			}
			if r.E > tc.maxE {
				t.Fatalf("e %g, want at most %g", r.E, tc.maxE)
			}
			if r.P() <= DefaultAlpha {
				t.Fatalf("p %g at most alpha", r.P())
			}
		})
	}
}

// TestHealthy checks that an A/A deploy at 100 req/s is declared healthy
// within the watch, and that a 5x regression never is.
func TestHealthy(t *testing.T) {
	te := mustNew(t, Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}})
	lim := mustNew(t, Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}, Limit: ptr(0.05)})
	for _, tc := range []struct {
		name        string
		s           stream
		test        *Test
		baseline    bool
		wantHealthy bool
	}{
		{"same as the baseline", stream{rate: 100, tick: 10, ticks: 180, newRate: constant(0.01), baseRate: 0.01, preSeconds: 1800}, te, true, true},
		{"half the baseline's errors", stream{rate: 100, tick: 10, ticks: 180, newRate: constant(0.005), baseRate: 0.01, preSeconds: 1800}, te, true, true},
		{"well under the limit", stream{rate: 10, tick: 10, ticks: 180, newRate: constant(0.01)}, lim, false, true},
		{"5x the baseline", stream{rate: 100, tick: 10, ticks: 180, newRate: constant(0.05), baseRate: 0.01, preSeconds: 1800}, te, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const runs = 100
			healthy, regressed := 0, 0
			for run := range runs {
				tc.s.simulate(uint64(run)+2e6, func(pre Counts) *Watch { return tc.test.Watch(tc.baseline, pre) },
					func(_ int, w *Watch, nc, live Counts) bool {
						switch w.Decide(nc, live).Decision {
						case Healthy:
							healthy++
							return true
						case Regressed:
							regressed++
							return true
						}
						return false
					})
			}
			t.Logf("%d healthy, %d regressed of %d", healthy, regressed, runs)
			switch {
			case tc.wantHealthy && (healthy < runs*9/10 || regressed > 0):
				t.Fatalf("%d of %d declared healthy, %d regressed: want at least 90%% healthy, none regressed", healthy, runs, regressed)
			case !tc.wantHealthy && healthy > 0:
				t.Fatalf("%d of %d regressed deploys declared healthy", healthy, runs)
			}
		})
	}
}

// TestConfidenceSequenceCovers checks that the reported interval for the
// new version's rate holds the true rate at every tick of at least 1-alpha
// of the deploys.
func TestConfidenceSequenceCovers(t *testing.T) {
	const alpha = 0.05
	runs := scaled(1000, 300)
	lim := 0.02
	te := mustNew(t, Config{Alpha: alpha, MinEffect: Effect{Ratio: 1.5}, Limit: &lim})
	s := stream{rate: 10, tick: 10, ticks: 180, newRate: constant(0.02)}
	missed := 0
	for run := range runs {
		s.simulate(uint64(run)+3e6, func(Counts) *Watch { return te.Watch(false, Counts{}) }, func(_ int, w *Watch, nc, live Counts) bool {
			r := w.Judge(nc, live)
			if r.NewLower > 0.02 || r.NewUpper < 0.02 {
				missed++
				return true
			}
			return false
		})
	}
	t.Logf("the interval missed the true rate at some tick in %d of %d deploys", missed, runs)
	if missed > maxAllowed(alpha, runs) {
		t.Fatalf("missed in %d of %d deploys, more than alpha %g allows", missed, runs, alpha)
	}
}

func TestJudgeEvidence(t *testing.T) {
	te := mustNew(t, Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}})
	w := te.Watch(true, Counts{Errors: 1800, Requests: 180000})
	r := w.Judge(Counts{Errors: 40, Requests: 800}, Counts{Errors: 10.4, Requests: 999.6})
	if r.Decision != Regressed || r.E < 1/DefaultAlpha || r.P() > DefaultAlpha {
		t.Fatalf("decision %v, e %g, p %g: want regressed", r.Decision, r.E, r.P())
	}
	if r.New != (Counts{Errors: 40, Requests: 800}) || r.Baseline != (Counts{Errors: 1810, Requests: 181000}) {
		t.Fatalf("counts %v vs %v", r.New, r.Baseline)
	}
	if !r.Relative || r.Absolute {
		t.Fatalf("relative %v absolute %v", r.Relative, r.Absolute)
	}
	if math.Abs(r.Effect-5) > 1e-9 || !(r.EffectLower > 1 && r.EffectLower < 5 && r.EffectUpper > 5) {
		t.Fatalf("effect %g [%g, %g], want 5 inside an interval above 1", r.Effect, r.EffectLower, r.EffectUpper)
	}
	if !(r.NewLower < 0.05 && r.NewUpper > 0.05 && r.BaselineLower < 0.01 && r.BaselineUpper > 0.01) {
		t.Fatalf("rates %g [%g, %g] and %g [%g, %g]", r.NewRate, r.NewLower, r.NewUpper, r.BaselineRate, r.BaselineLower, r.BaselineUpper)
	}
	d := w.Decide(Counts{Errors: 40, Requests: 800}, Counts{Errors: 10.4, Requests: 999.6})
	if d.Decision != r.Decision || !sameEvidence(d.E, r.E) {
		t.Fatalf("Decide %v %g, Judge %v %g", d.Decision, d.E, r.Decision, r.E)
	}
}
