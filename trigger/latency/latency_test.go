package latency

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/rollback-guardian/guardian/trigger/sequential"
)

func TestConfigValidate(t *testing.T) {
	ratio := sequential.Effect{Ratio: 1.5}
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default", Config{Alpha: sequential.DefaultAlpha, MinEffect: ratio}, true},
		{"quantiles", Config{Alpha: 0.01, MinEffect: ratio, Quantiles: []float64{0.99, 0.5}}, true},
		{"difference", Config{Alpha: 0.01, MinEffect: sequential.Effect{Delta: 0.05}}, true},
		{"alpha 0", Config{MinEffect: ratio}, false},
		{"alpha NaN", Config{Alpha: math.NaN(), MinEffect: ratio}, false},
		{"no effect", Config{Alpha: 0.01}, false},
		{"ratio 1", Config{Alpha: 0.01, MinEffect: sequential.Effect{Ratio: 1}}, false},
		{"quantile 1", Config{Alpha: 0.01, MinEffect: ratio, Quantiles: []float64{1}}, false},
		{"quantile 0", Config{Alpha: 0.01, MinEffect: ratio, Quantiles: []float64{0}}, false},
		{"quantile NaN", Config{Alpha: 0.01, MinEffect: ratio, Quantiles: []float64{math.NaN()}}, false},
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

func TestHistogramCounts(t *testing.T) {
	inf := math.Inf(1)
	layout := []float64{0.1, 0.5, 1}
	for _, tc := range []struct {
		name string
		h    Histogram
		want []float64
		all  bool
	}{
		{"in order", Histogram{{0.1, 5}, {0.5, 8}, {1, 9}, {inf, 10}}, []float64{5, 3, 1, 1}, true},
		{"any order, rounded", Histogram{{inf, 10.2}, {0.5, 7.6}, {0.1, 4.5}, {1, 9}}, []float64{5, 3, 1, 1}, true},
		{"extra bound merged into the bucket above", Histogram{{0.1, 5}, {0.25, 6}, {0.5, 8}, {1, 9}, {inf, 10}}, []float64{5, 3, 1, 1}, true},
		{"missing bound", Histogram{{0.1, 5}, {1, 9}, {inf, 10}}, []float64{5, 0, 4, 1}, false},
		{"no +Inf: the largest count is the total", Histogram{{0.1, 5}, {0.5, 8}, {1, 9}}, []float64{5, 3, 1, 0}, true},
		{"decreasing counts raised", Histogram{{0.1, 5}, {0.5, 4}, {1, 9}, {inf, 8}}, []float64{5, 0, 4, 0}, true},
		{"odd values", Histogram{{0.1, math.NaN()}, {0.5, -3}, {1, inf}, {inf, 2}, {math.NaN(), 7}}, []float64{0, 0, 0, 2}, true},
		{"empty", nil, []float64{0, 0, 0, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, all := tc.h.counts(layout)
			if !slices.Equal(got, tc.want) || all != tc.all {
				t.Fatalf("counts = %v, %v; want %v, %v", got, all, tc.want, tc.all)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	got := merge([]float64{1, 2, 3, 4, 5}, []float64{1, 2, 3, 4}, []float64{2, 4})
	if want := []float64{3, 7, 5}; !slices.Equal(got, want) {
		t.Fatalf("merge = %v, want %v", got, want)
	}
	if got := merge([]float64{1, 2, 3}, []float64{1, 2}, nil); !slices.Equal(got, []float64{6}) {
		t.Fatalf("merge to one bucket = %v", got)
	}
}

func TestFromNative(t *testing.T) {
	nb := []NativeBucket{{0, 0.001, 2}, {0.1, 0.2, 5}, {0.2, 0.4, 3}, {0.4, 0.8, 0}, {0.8, 1.6, 1}}
	if got, want := NativeBounds(nb), []float64{0.001, 0.2, 0.4, 1.6}; !slices.Equal(got, want) {
		t.Fatalf("NativeBounds = %v, want %v", got, want)
	}
	// 0.3 falls inside (0.2, 0.4] with requests: left out; 0.6 inside an
	// empty bucket and 0.05 outside every bucket are exact.
	h := FromNative(nb, []float64{0.05, 0.2, 0.3, 0.6, 1.6})
	got, all := h.counts([]float64{0.05, 0.2, 0.3, 0.6, 1.6})
	if want := []float64{2, 5, 0, 3, 1, 0}; !slices.Equal(got, want) || all {
		t.Fatalf("counts = %v (all %v), want %v without 0.3", got, all, want)
	}
}

// TestBetsAreDensities checks that every bet, averaged over any partition
// of the scores into cells, integrates to 1 under the null hypothesis, and
// never decreases with the latency.
func TestBetsAreDensities(t *testing.T) {
	edges := [][]float64{
		{math.Inf(-1), math.Inf(1)},
		{math.Inf(-1), -1, 0, 0.5, 2.33, math.Inf(1)},
		{math.Inf(-1), -6, -3, -0.2, 0.1, 1.1, 1.3, 3, 5, 8, math.Inf(1)},
	}
	for _, bt := range defaultBets() {
		for _, e := range edges {
			total, prev := 0.0, 0.0
			for i := 0; i+1 < len(e); i++ {
				v := bt.cellMean(e[i], e[i+1])
				total += v * normMass(e[i], e[i+1], e[i+1]-e[i])
				if v < prev*(1-1e-9) {
					t.Fatalf("bet %v %g: cell (%g, %g) pays %g, below the previous cell's %g", bt.kind, bt.param, e[i], e[i+1], v, prev)
				}
				prev = v
			}
			if math.Abs(total-1) > 1e-9 {
				t.Fatalf("bet %v %g over %v integrates to %.12f", bt.kind, bt.param, e, total)
			}
		}
	}
}

// TestFalseRollbackRateAA checks, on simulated A/A deploys (the new version
// exactly as fast as the baseline) checked at every tick, that the share
// ever judged regressed stays at or below alpha within binomial confidence;
// and the same for versions that are faster.
func TestFalseRollbackRateAA(t *testing.T) {
	base := lognormal(0.05, 0.6)
	for _, tc := range []struct {
		name  string
		alpha float64
		runs  int
		s     stream
	}{
		{"vs pre-deploy, 10 req/s", 0.05, 800,
			stream{rate: 10, tick: 5, ticks: 120, base: base, newDist: constant(base), preSeconds: 1800}},
		{"vs pre-deploy, 1 req/s", 0.05, 800,
			stream{rate: 1, tick: 10, ticks: 180, base: base, newDist: constant(base), preSeconds: 1800}},
		{"vs a short pre-deploy window, 20 req/s", 0.05, 800,
			stream{rate: 20, tick: 5, ticks: 60, base: base, newDist: constant(base), preSeconds: 30}},
		{"vs a live canary baseline, no pre-deploy data", 0.05, 800,
			stream{rate: 5, tick: 5, ticks: 120, base: base, newDist: constant(base), liveRate: 20}},
		{"vs pre-deploy, alpha 0.001, 20 req/s", 0.001, 2000,
			stream{rate: 20, tick: 5, ticks: 60, base: base, newDist: constant(base), preSeconds: 1800}},
		{"faster: median -20%", 0.05, 500,
			stream{rate: 10, tick: 5, ticks: 120, base: base, newDist: constant(lognormal(0.04, 0.6)), preSeconds: 1800}},
		{"faster: upper half compressed (p99 /2)", 0.05, 500,
			stream{rate: 10, tick: 5, ticks: 120, base: base, newDist: constant(dist{0.05, 0.6, 0.3}), preSeconds: 1800}},
		{"faster: median -20%, same upper tail", 0.05, 500,
			stream{rate: 10, tick: 5, ticks: 120, base: base, newDist: constant(dist{0.04, 0.6, 0.7}), preSeconds: 1800}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.bounds = promBuckets
			tc.runs = int(float64(tc.runs) * statScale)
			if testing.Short() {
				tc.runs /= 5
			}
			te := mustNew(t, defaultConfig(tc.alpha))
			bad := falseRollbacks(tc.runs, tc.s, te)
			t.Logf("%d false rollbacks in %d deploys (alpha %g)", bad, tc.runs, tc.alpha)
			if lim := maxAllowed(tc.alpha, tc.runs); bad > lim {
				t.Fatalf("%d false rollbacks in %d deploys, more than %d allowed at alpha %g", bad, tc.runs, lim, tc.alpha)
			}
		})
	}
}

// TestPeekingInflatesANaiveTest shows that the A/A harness above can fail:
// comparing each new request with the pre-deploy histogram alone (the rank
// among a fixed reference, without the new requests in the bag), with the
// same bets, rolls back more healthy deploys than alpha allows.
func TestPeekingInflatesANaiveTest(t *testing.T) {
	const alpha = 0.05
	runs := int(1000 * statScale)
	base := lognormal(0.05, 0.6)
	s := stream{rate: 10, tick: 5, ticks: 120, bounds: promBuckets, base: base, newDist: constant(base), preSeconds: 60}
	te := mustNew(t, defaultConfig(alpha))
	bad := 0
	for run := range runs {
		s.simulate(uint64(run), func(pre Histogram) *Watch { return te.Watch(pre, uint64(run)) }, func(_ int, w *Watch, nh, _ Histogram) bool {
			// Undo the bag's growth: the reference stays the pre-deploy requests.
			copy(w.bag, w.pre)
			w.cellBag = nil
			if w.Decide(nh, nil).Decision == sequential.Regressed {
				bad++
				return true
			}
			return false
		})
	}
	t.Logf("fixed reference: %d false rollbacks in %d deploys", bad, runs)
	if bad <= maxAllowed(alpha, runs) {
		t.Fatalf("a fixed 60-second reference rolled back only %d of %d healthy deploys: the harness cannot tell an invalid test", bad, runs)
	}
}

// TestDetectsRegression checks that a median +20% and a p99 ×2 with the
// median unchanged are caught at 10 req/s, against the pre-deploy baseline
// and against a live canary baseline.
func TestDetectsRegression(t *testing.T) {
	base := lognormal(0.05, 0.6)
	stretched := dist{0.05, 0.6, 0.6 + math.Ln2/2.3263} // p99 ×2, median and lower half unchanged
	for _, tc := range []struct {
		name      string
		s         stream
		maxMedian float64 // requests
	}{
		{"median +20% vs pre-deploy", stream{rate: 10, tick: 1, ticks: 300, base: base, newDist: constant(lognormal(0.06, 0.6)), preSeconds: 1800}, 400},
		{"p99 ×2 vs pre-deploy", stream{rate: 10, tick: 1, ticks: 300, base: base, newDist: constant(stretched), preSeconds: 1800}, 250},
		{"median +20% vs a live canary at 90%", stream{rate: 10, tick: 1, ticks: 300, base: base, newDist: constant(lognormal(0.06, 0.6)), liveRate: 90}, 400},
		{"p99 ×2 at 1 req/s vs pre-deploy", stream{rate: 1, tick: 10, ticks: 180, base: base, newDist: constant(stretched), preSeconds: 1800}, 350},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.bounds = promBuckets
			te := mustNew(t, defaultConfig(sequential.DefaultAlpha))
			var at []float64
			missed := 0
			for run := range 200 {
				found := false
				tc.s.simulate(uint64(run)+1e6, func(pre Histogram) *Watch { return te.Watch(pre, uint64(run)) }, func(_ int, w *Watch, nh, live Histogram) bool {
					r := w.Decide(nh, live)
					if r.Decision == sequential.Regressed {
						at = append(at, r.Judged)
						found = true
					}
					return found
				})
				if !found {
					missed++
				}
			}
			if missed > 4 {
				t.Fatalf("missed %d of 200 regressed deploys", missed)
			}
			slices.Sort(at)
			med := at[len(at)/2]
			t.Logf("detected %d of 200: median %.0f requests, p95 %.0f", len(at), med, at[len(at)*95/100])
			if med > tc.maxMedian {
				t.Fatalf("median %.0f requests to detect, want at most %.0f", med, tc.maxMedian)
			}
		})
	}
}

// TestHealthy checks that an unchanged version is declared healthy at
// enough traffic, and that a p99 ×2 never is.
func TestHealthy(t *testing.T) {
	base := lognormal(0.05, 0.6)
	stretched := dist{0.05, 0.6, 0.6 + math.Ln2/2.3263}
	te := mustNew(t, defaultConfig(0.01))
	for _, tc := range []struct {
		name    string
		d       dist
		healthy bool
	}{{"unchanged", base, true}, {"p99 ×2", stretched, false}} {
		t.Run(tc.name, func(t *testing.T) {
			s := stream{rate: 200, tick: 5, ticks: 120, bounds: promBuckets, base: base, newDist: constant(tc.d), preSeconds: 1800}
			n := 0
			for run := range 20 {
				var last Result
				s.simulate(uint64(run), func(pre Histogram) *Watch { return te.Watch(pre, uint64(run)) }, func(_ int, w *Watch, nh, live Histogram) bool {
					last = w.Decide(nh, live)
					return last.Decision != sequential.Inconclusive
				})
				if last.Decision == sequential.Healthy {
					n++
					if len(last.Guards) == 0 || last.EHealthy < 1/te.Config().Alpha {
						t.Fatalf("healthy with guards %+v, EHealthy %g", last.Guards, last.EHealthy)
					}
				}
			}
			if tc.healthy && n < 18 || !tc.healthy && n > 0 {
				t.Fatalf("declared healthy in %d of 20 deploys", n)
			}
		})
	}
}

func TestGuardsFollowTheQuantiles(t *testing.T) {
	te := mustNew(t, Config{Alpha: 0.01, MinEffect: sequential.Effect{Ratio: 1.5}, Quantiles: []float64{0.5, 0.9, 0.96}})
	// 100 requests: 40 at most 0.1, 55 more up to 0.25, 5 more up to 0.5.
	w := te.Watch(Histogram{{0.1, 40}, {0.25, 95}, {0.5, 100}, {math.Inf(1), 100}}, 1)
	var got []float64
	for _, g := range w.guards {
		got = append(got, g.bound)
	}
	if want := []float64{0.25, 0.5}; !slices.Equal(got, want) {
		t.Fatalf("guarded bounds %v, want %v (p50 and p90 share 0.25)", got, want)
	}
}

// TestLayoutChange checks that bounds the new version lacks are merged away
// for the rest of the watch, that the guards move to the next bound, and
// that an unknown bound is ignored.
func TestLayoutChange(t *testing.T) {
	te := mustNew(t, defaultConfig(0.01))
	inf := math.Inf(1)
	w := te.Watch(Histogram{{0.05, 500}, {0.1, 880}, {0.25, 995}, {0.5, 1000}, {inf, 1000}}, 1)
	r := w.Decide(Histogram{{0.05, 5}, {0.1, 9}, {0.2, 9}, {0.25, 10}, {0.5, 10}, {inf, 10}}, nil)
	if want := []float64{0.05, 0.1, 0.25, 0.5}; !slices.Equal(r.Bounds, want) {
		t.Fatalf("bounds %v, want %v", r.Bounds, want)
	}
	// The new build drops 0.1: its two buckets merge, in the bag too.
	r = w.Decide(Histogram{{0.05, 10}, {0.25, 19}, {0.5, 20}, {inf, 20}}, nil)
	if want := []float64{0.05, 0.25, 0.5}; !slices.Equal(r.Bounds, want) {
		t.Fatalf("bounds %v, want %v", r.Bounds, want)
	}
	if want := []float64{510, 495 + 9, 6, 0}; !slices.Equal(w.bag, want) {
		t.Fatalf("bag %v, want %v", w.bag, want)
	}
	if r.Judged != 20 {
		t.Fatalf("judged %v, want 20", r.Judged)
	}
	var guarded []float64
	for _, g := range r.Guards {
		guarded = append(guarded, g.Bound)
	}
	if want := []float64{0.05, 0.25}; !slices.Equal(guarded, want) {
		t.Fatalf("guarded %v, want %v (p90 moved from 0.1 to 0.25)", guarded, want)
	}
	// A histogram without a common bound: one bucket, no evidence change.
	e := r.E
	r = w.Decide(Histogram{{0.07, 15}, {inf, 40}}, nil)
	if len(r.Bounds) != 0 || math.Abs(r.E/e-1) > 1e-12 || r.Judged != 40 {
		t.Fatalf("no common bound: bounds %v, E %v (was %v), judged %v", r.Bounds, r.E, e, r.Judged)
	}
}

func TestNoData(t *testing.T) {
	te := mustNew(t, defaultConfig(0.01))
	w := te.Watch(nil, 1)
	r := w.Decide(nil, nil)
	if r.Decision != sequential.Inconclusive || math.Abs(r.E-1) > 1e-12 || r.EHealthy != 0 || r.Judged != 0 {
		t.Fatalf("no data: %+v", r)
	}
	// The first requests with an empty reference get no bet.
	r = w.Decide(Histogram{{0.1, 3}, {math.Inf(1), 5}}, nil)
	if math.Abs(r.E-1) > 1e-12 || r.Judged != 5 || !slices.Equal(r.Bounds, []float64{0.1}) {
		t.Fatalf("first requests: %+v", r)
	}
}

// TestDecreasingCountsAreIgnored checks that counts going down (a counter
// reset seen through increase()) neither judge requests twice nor undo any.
func TestDecreasingCountsAreIgnored(t *testing.T) {
	te := mustNew(t, defaultConfig(0.01))
	w := te.Watch(hist(promBuckets, lognormal(0.05, 0.6).probs(promBuckets)).scale(1e4), 1)
	h := hist(promBuckets, lognormal(0.05, 0.6).probs(promBuckets)).scale(100)
	r1 := w.Decide(h, nil)
	r2 := w.Decide(h.scale(0.5), nil)
	r3 := w.Decide(h, nil)
	if r1.Judged != r2.Judged || r2.Judged != r3.Judged || r1.E != r3.E {
		t.Fatalf("judged %v, %v, %v; E %v then %v", r1.Judged, r2.Judged, r3.Judged, r1.E, r3.E)
	}
}

func (h Histogram) scale(f float64) Histogram {
	out := slices.Clone(h)
	for i := range out {
		out[i].Count *= f
	}
	return out
}

// TestMaxPerCall checks that a call judges at most MaxPerCall requests and
// counts the rest as dropped.
func TestMaxPerCall(t *testing.T) {
	te := mustNew(t, defaultConfig(0.01))
	p := lognormal(0.05, 0.6).probs(promBuckets)
	w := te.Watch(hist(promBuckets, p).scale(1e5), 1)
	r := w.Decide(hist(promBuckets, p).scale(3e5), nil)
	if r.Judged != MaxPerCall || math.Abs(r.Judged+r.Dropped-3e5) > 20 {
		t.Fatalf("judged %v, dropped %v of about 3e5", r.Judged, r.Dropped)
	}
	if got := sum(w.bag) - 1e5; math.Abs(got-MaxPerCall) > 20 {
		t.Fatalf("bag grew by %v, want %d", got, MaxPerCall)
	}
}

// TestStateResume checks that a resumed watch continues exactly, and that
// Resume refuses a state it cannot trust.
func TestStateResume(t *testing.T) {
	te := mustNew(t, defaultConfig(0.01))
	base := lognormal(0.05, 0.6)
	s := stream{rate: 10, tick: 5, ticks: 40, bounds: promBuckets, base: base, newDist: constant(lognormal(0.055, 0.6)), preSeconds: 600}
	var a, b *Watch
	s.simulate(7, func(pre Histogram) *Watch { a = te.Watch(pre, 3); return a }, func(i int, _ *Watch, nh, live Histogram) bool {
		ra := a.Decide(nh, live)
		if i == 10 {
			data, err := json.Marshal(a.State())
			if err != nil {
				t.Fatal(err)
			}
			var st State
			if err := json.Unmarshal(data, &st); err != nil {
				t.Fatal(err)
			}
			if b, err = te.Resume(st); err != nil {
				t.Fatal(err)
			}
			return false
		}
		if b != nil {
			// The healthy e-value comes from sequential's two-sample test,
			// whose search starts from the previous tick's answer: a
			// resumed watch may differ from the original by up to 1e-4
			// nats there.
			if rb := b.Decide(nh, live); rb.E != ra.E || rb.Judged != ra.Judged || math.Abs(math.Log(rb.EHealthy)-math.Log(ra.EHealthy)) > 1e-4 {
				t.Fatalf("tick %d: E %v, judged %v, E healthy %v; resumed %v, %v, %v", i, ra.E, ra.Judged, ra.EHealthy, rb.E, rb.Judged, rb.EHealthy)
			}
		}
		return false
	})
	if b == nil {
		t.Fatal("never resumed")
	}
	other := mustNew(t, defaultConfig(0.05))
	for _, tc := range []struct {
		name string
		te   *Test
		f    func(*State)
	}{
		{"other configuration", other, func(*State) {}},
		{"short bag", te, func(s *State) { s.Bag = s.Bag[1:] }},
		{"NaN", te, func(s *State) { s.LogE[3] = math.NaN() }},
		{"negative count", te, func(s *State) { s.NewSeen[0] = -1 }},
		{"unsorted bounds", te, func(s *State) { s.Bounds[0], s.Bounds[1] = s.Bounds[1], s.Bounds[0] }},
		{"guard off the bounds", te, func(s *State) { s.Guards[0].Bound = 0.07 }},
		{"bad random state", te, func(s *State) { s.Random = []byte("x") }},
		{"short bets' bag", te, func(s *State) { s.BetBag = s.BetBag[1:] }},
		{"bets' bag of zeros", te, func(s *State) { clear(s.BetBag) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := a.State()
			tc.f(&st)
			if _, err := tc.te.Resume(st); !errors.Is(err, ErrState) {
				t.Fatalf("Resume: %v, want ErrState", err)
			}
		})
	}
}

func TestSameSeedSameResult(t *testing.T) {
	te := mustNew(t, defaultConfig(0.01))
	p := lognormal(0.05, 0.6).probs(promBuckets)
	pre := hist(promBuckets, p).scale(1000)
	nh := hist(promBuckets, lognormal(0.06, 0.6).probs(promBuckets)).scale(200)
	a, b, c := te.Watch(pre, 5), te.Watch(pre, 5), te.Watch(pre, 6)
	ra, rb, rc := a.Decide(nh, nil), b.Decide(nh, nil), c.Decide(nh, nil)
	if ra.E != rb.E {
		t.Fatalf("same seed: E %v and %v", ra.E, rb.E)
	}
	if ra.E == rc.E {
		t.Fatalf("another seed gave the same E %v: the random source is not used", ra.E)
	}
}
