package sequential

import (
	"math"
	"testing"

	"pgregory.net/rapid"
)

// sameEvidence reports whether two e-values of the same counts agree
// within the search's tolerance (they may come from searches started at
// different points).
func sameEvidence(a, b float64) bool {
	la, lb := math.Log(a), math.Log(b)
	if la == lb {
		return true
	}
	return math.Abs(la-lb) <= 2*(searchTolAbs+searchTolRel*math.Max(math.Abs(la), math.Abs(lb)))
}

// countsGen draws cleaned counts: small, large, huge (1e12) and zero,
// with error shares from 0 to 1.
func countsGen(label string) *rapid.Generator[Counts] {
	return rapid.Custom(func(t *rapid.T) Counts {
		n := rapid.OneOf(
			rapid.SampledFrom([]float64{0, 1, 2, 1e12}),
			rapid.Float64Range(0, 100),
			rapid.Float64Range(0, 1e5),
			rapid.Float64Range(0, 1e12),
		).Draw(t, label+" requests")
		share := rapid.OneOf(
			rapid.SampledFrom([]float64{0, 1, 0.5}),
			rapid.Float64Range(0, 0.02),
			rapid.Float64Range(0, 1),
		).Draw(t, label+" error share")
		return Counts{Errors: share * n, Requests: n}.Clean()
	})
}

// configGen draws a test's configuration: a ratio or a difference, with or
// without a limit.
func configGen() *rapid.Generator[Config] {
	return rapid.Custom(func(t *rapid.T) Config {
		c := Config{Alpha: rapid.SampledFrom([]float64{DefaultAlpha, 0.05, 0.5}).Draw(t, "alpha")}
		if rapid.Bool().Draw(t, "ratio") {
			c.MinEffect.Ratio = rapid.Float64Range(1.01, 10).Draw(t, "min_effect ratio")
		} else {
			c.MinEffect.Delta = rapid.Float64Range(1e-4, 0.5).Draw(t, "min_effect difference")
		}
		if rapid.Bool().Draw(t, "limit") {
			c.Limit = ptr(rapid.Float64Range(1e-4, 0.99).Draw(t, "limit"))
		}
		return c
	})
}

// TestEValuesMonotoneInTheNewVersionsErrors checks that, at fixed
// exposures, one more error of the new version never lowers the evidence
// of a regression and never raises that of health (within the search's
// tolerance), whatever the counts.
func TestEValuesMonotoneInTheNewVersionsErrors(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := configGen().Draw(t, "config")
		te, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		baseline := rapid.Bool().Draw(t, "baseline") || cfg.Limit == nil
		pre, live := countsGen("pre-deploy").Draw(t, "pre"), countsGen("live").Draw(t, "live")
		nc := countsGen("new").Draw(t, "new")
		if nc.Errors >= nc.Requests {
			nc.Errors = nc.Requests - 1
		}
		if nc.Errors < 0 {
			t.Skip("no requests")
		}
		more := Counts{Errors: nc.Errors + 1, Requests: nc.Requests}
		// Fresh watches: no search starts from the other's solution.
		r0 := te.Watch(baseline, pre).Decide(nc, live)
		r1 := te.Watch(baseline, pre).Decide(more, live)
		if r1.E < r0.E && !sameEvidence(r1.E, r0.E) {
			t.Fatalf("%v then %v errors: regression evidence fell from %g to %g", nc, more, r0.E, r1.E)
		}
		if r1.EHealthy > r0.EHealthy && !sameEvidence(r1.EHealthy, r0.EHealthy) {
			t.Fatalf("%v then %v errors: health evidence rose from %g to %g", nc, more, r0.EHealthy, r1.EHealthy)
		}
		if r0.Decision == Regressed && r1.Decision != Regressed {
			t.Fatalf("regressed with %v, %v with %v", nc, r1.Decision, more)
		}
	})
}

// TestEValuesMonotoneInTheBaselinesErrors checks that more live errors of
// the baseline never raise the evidence of a regression nor lower that of
// health.
func TestEValuesMonotoneInTheBaselinesErrors(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := configGen().Draw(t, "config")
		te, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pre, live := countsGen("pre-deploy").Draw(t, "pre"), countsGen("live").Draw(t, "live")
		nc := countsGen("new").Draw(t, "new")
		if live.Errors >= live.Requests {
			t.Skip("no room for another baseline error")
		}
		more := Counts{Errors: live.Errors + 1, Requests: live.Requests}
		r0 := te.Watch(true, pre).Decide(nc, live)
		r1 := te.Watch(true, pre).Decide(nc, more)
		if r1.E > r0.E && !sameEvidence(r1.E, r0.E) {
			t.Fatalf("baseline %v then %v: regression evidence rose from %g to %g", live, more, r0.E, r1.E)
		}
		if r1.EHealthy < r0.EHealthy && !sameEvidence(r1.EHealthy, r0.EHealthy) {
			t.Fatalf("baseline %v then %v: health evidence fell from %g to %g", live, more, r0.EHealthy, r1.EHealthy)
		}
	})
}

// TestEValuesAreFinite checks that no counts, zeros, huge numbers and
// invalid values included, give a NaN or infinite e-value or p-value, and
// that without any error of the new version the regression evidence
// stays at or below 1.
func TestEValuesAreFinite(t *testing.T) {
	odd := rapid.SampledFrom([]float64{0, -1, math.NaN(), math.Inf(1), math.Inf(-1), 1e300, 0.4, 1e12, 1e12 + 1})
	raw := func(label string) *rapid.Generator[Counts] {
		return rapid.Custom(func(t *rapid.T) Counts {
			v := rapid.OneOf(odd, rapid.Float64Range(0, 1e12), rapid.Float64Range(0, 100))
			return Counts{Errors: v.Draw(t, label+" errors"), Requests: v.Draw(t, label+" requests")}
		})
	}
	rapid.Check(t, func(t *rapid.T) {
		cfg := configGen().Draw(t, "config")
		te, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		w := te.Watch(rapid.Bool().Draw(t, "baseline"), raw("pre-deploy").Draw(t, "pre"))
		for i := range rapid.IntRange(1, 3).Draw(t, "evaluations") {
			nc, live := raw("new").Draw(t, "new"), raw("live").Draw(t, "live")
			r := w.Judge(nc, live)
			for name, v := range map[string]float64{"E": r.E, "EHealthy": r.EHealthy, "P": r.P()} {
				if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
					t.Fatalf("evaluation %d of %v vs %v: %s = %g", i, nc, live, name, v)
				}
			}
			if nc.Clean().Errors == 0 && r.E > 1 {
				t.Fatalf("no error of the new version (%v), yet E = %g", nc, r.E)
			}
		}
	})
}

// denseMin returns the smallest value of the objective on a dense grid of
// [lo, hi], refined by golden-section search around the best grid point:
// an upper bound of the infimum.
func denseMin(o *objective, lo, hi float64) float64 {
	if lo == hi {
		return o.eval(lo).value()
	}
	const k = 3000
	from := lo
	if from <= 0 {
		from = hi * 1e-12
	}
	at := func(i float64) float64 { return math.Exp(math.Log(from) + (math.Log(hi)-math.Log(from))*i/k) }
	best, bi := math.Inf(1), 0.0
	for i := 0.0; i <= k; i++ {
		if v := o.eval(at(i)).value(); v < best {
			best, bi = v, i
		}
	}
	best = math.Min(best, o.eval(lo).value())
	a, b := at(max(bi-1, 0)), at(min(bi+1, k))
	g := (math.Sqrt(5) - 1) / 2
	for range 100 {
		c, d := b-g*(b-a), a+g*(b-a)
		vc, vd := o.eval(c).value(), o.eval(d).value()
		best = math.Min(best, math.Min(vc, vd))
		if vc < vd {
			b = d
		} else {
			a = c
		}
	}
	return best
}

// TestSearchCertifiesTheInfimum checks the two-sample search against a
// dense grid: its value is never above the grid's minimum (which would
// overstate the evidence) and within tolerance below it.
func TestSearchCertifiesTheInfimum(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		e := Effect{Ratio: rapid.Float64Range(1.05, 5).Draw(t, "ratio")}
		if rapid.Bool().Draw(t, "difference") {
			e = Effect{Delta: rapid.Float64Range(1e-3, 0.3).Draw(t, "delta")}
		}
		pre := countsGen("pre-deploy").Draw(t, "pre")
		base := pre.Add(countsGen("live").Draw(t, "live"))
		nc := countsGen("new").Draw(t, "new")
		ts := newTwoSample(pre, e)
		var mx mixes
		if rapid.Bool().Draw(t, "warm") {
			warm := countsGen("earlier").Draw(t, "earlier new")
			ts.evidence(warm.Errors, warm.Requests, base, &mx)
		}
		lnE, lnH := ts.evidence(nc.Errors, nc.Requests, base, &mx)

		phat := mle(nc.Errors, nc.Requests)
		mx.reg.reset(ts.reg, nc.Errors, nc.Requests, true)
		reg := &objective{ts: ts, mix: &mx.reg, y: base.Errors, m: base.Requests}
		mx.healthy.reset(ts.healthy, nc.Errors, nc.Requests, false)
		h := &objective{ts: ts, mix: &mx.healthy, y: base.Errors, m: base.Requests, healthy: true}
		lo, hi := phat/e.Ratio, 1/e.Ratio
		if !e.IsRatio() {
			lo, hi = max(phat-e.Delta, 0), 1-e.Delta
		}
		for _, c := range []struct {
			name string
			got  float64
			o    *objective
			lo   float64
			hi   float64
		}{{"regression", lnE, reg, 0, phat}, {"health", lnH, h, lo, hi}} {
			want := denseMin(c.o, c.lo, c.hi)
			// Rounding grows with the counts (x·ln q with x = 1e12).
			tol := 1e-9*(1+math.Abs(want)) + 1e-12*(nc.Requests+base.Requests)
			if c.got > want+tol {
				t.Fatalf("%s: search %g above the grid's minimum %g", c.name, c.got, want)
			}
			if slack := 2*searchTolAbs + 1e-5*math.Abs(want) + 1e-12*(nc.Requests+base.Requests); c.got < want-slack {
				t.Fatalf("%s: search %g more than %g below the grid's minimum %g", c.name, c.got, slack, want)
			}
		}
	})
}

// TestEvaluationScheduleChangesNothing checks that the e-value of the
// counts at some time does not depend on which earlier evaluations were
// made (all, none, or repeated ones), beyond the search's tolerance.
func TestEvaluationScheduleChangesNothing(t *testing.T) {
	te := mustNew(t, Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}})
	pre := Counts{Errors: 40, Requests: 3000}
	every, once, twice := te.Watch(true, pre), te.Watch(true, pre), te.Watch(true, pre)
	var last, lastOnce, lastTwice Result
	for i := 1; i <= 300; i++ {
		nc := Counts{Errors: math.Floor(float64(i) * 0.27), Requests: float64(i) * 10}
		live := Counts{Errors: math.Floor(float64(i) * 0.1), Requests: float64(i) * 9}
		last = every.Decide(nc, live)
		if i%7 == 0 {
			twice.Decide(nc, live)
			lastTwice = twice.Decide(nc, live)
		}
		if i == 294 {
			lastOnce = once.Decide(nc, live)
			if !sameEvidence(last.E, lastOnce.E) || !sameEvidence(last.EHealthy, lastOnce.EHealthy) || !sameEvidence(last.E, lastTwice.E) {
				t.Fatalf("evidence at tick %d: %g/%g every tick, %g/%g once, %g/%g twice every 7 ticks",
					i, last.E, last.EHealthy, lastOnce.E, lastOnce.EHealthy, lastTwice.E, lastTwice.EHealthy)
			}
		}
	}
	if last.Decision != Regressed {
		t.Fatalf("a 2.7%% error ratio against a 1.3%% baseline: %v after 3000 requests (e %g)", last.Decision, last.E)
	}
}
