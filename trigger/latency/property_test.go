package latency

import (
	"math"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

var propTest = func() *Test {
	te, err := New(defaultConfig(0.01))
	if err != nil {
		panic(err)
	}
	return te
}()

// histGen draws a histogram over some of the bounds, with any counts, odd
// values and huge numbers included, cumulative or not.
func histGen() *rapid.Generator[Histogram] {
	return rapid.Custom(func(t *rapid.T) Histogram {
		odd := rapid.SampledFrom([]float64{0, -1, math.NaN(), math.Inf(1), math.Inf(-1), 1e300, 0.5, 1, 2.5e15})
		count := rapid.OneOf(rapid.Float64Range(0, 1e4), rapid.Float64Range(0, 1e12), odd)
		bounds := rapid.SliceOfDistinct(rapid.SampledFrom(append(slices.Clone(promBuckets), math.NaN(), -1, 0.07)), func(f float64) float64 { return f }).Draw(t, "bounds")
		var h Histogram
		cum := 0.0
		for _, b := range bounds {
			cum += count.Draw(t, "count")
			h = append(h, Bucket{UpperBound: b, Count: cum})
		}
		if rapid.Bool().Draw(t, "inf") {
			h = append(h, Bucket{UpperBound: math.Inf(1), Count: cum + count.Draw(t, "count")})
		}
		return h
	})
}

// growing returns h with each count raised by a random amount: the next
// scrape's cumulative counts (odd values keep their oddness).
func growing(t *rapid.T, h Histogram) Histogram {
	out := slices.Clone(h)
	for i := range out {
		out[i].Count += rapid.Float64Range(0, 1e5).Draw(t, "more")
	}
	return out
}

// drawWatch plays a watch through random calls, checking every result.
func drawWatch(t *rapid.T) *Watch {
	w := propTest.Watch(histGen().Draw(t, "pre"), rapid.Uint64().Draw(t, "seed"))
	nh, live := histGen().Draw(t, "new"), histGen().Draw(t, "live")
	for i := range rapid.IntRange(0, 4).Draw(t, "calls") {
		r := w.Decide(nh, live)
		for name, v := range map[string]float64{"E": r.E, "EShift": r.EShift, "EStretch": r.EStretch, "EHealthy": r.EHealthy, "P": r.P(), "Judged": r.Judged, "Dropped": r.Dropped, "Reference": r.Reference} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("call %d: %s = %v", i, name, v)
			}
		}
		for _, g := range r.Guards {
			for _, v := range []float64{g.EHealthy, g.New.Errors, g.New.Requests, g.Baseline.Errors, g.Baseline.Requests} {
				if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
					t.Fatalf("call %d: guard %+v", i, g)
				}
			}
		}
		if r.Judged > float64(i+1)*MaxPerCall {
			t.Fatalf("call %d judged %v", i, r.Judged)
		}
		if rapid.Bool().Draw(t, "grow") {
			nh, live = growing(t, nh), growing(t, live)
		} else {
			nh, live = histGen().Draw(t, "new"), histGen().Draw(t, "live")
		}
	}
	return w
}

func TestPropertyNeverNaN(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWatch(t)
		if _, err := propTest.Resume(w.State()); err != nil {
			t.Fatalf("Resume of a reachable state: %v", err)
		}
	})
}

// TestPropertyMonotoneInTheEvidence: from any state a watch can reach, one
// more request of the new version never lowers E for being slower.
func TestPropertyMonotoneInTheEvidence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWatch(t)
		if !w.hasLayout || sum(w.newSeen) > 1e15 {
			return // one more request would be lost in the rounding
		}
		J := len(w.layout) + 1
		j1 := rapid.IntRange(0, J-1).Draw(t, "bucket")
		j2 := rapid.IntRange(j1, J-1).Draw(t, "slower bucket")
		one := func(j int) Result {
			w2, err := propTest.Resume(w.State())
			if err != nil {
				t.Fatal(err)
			}
			counts := slices.Clone(w2.newSeen)
			counts[j]++
			return w2.Decide(hist(w2.layout, counts), hist(w2.layout, w2.liveSeen))
		}
		a, b := one(j1), one(j2)
		if a.Judged != b.Judged {
			t.Fatalf("judged %v and %v", a.Judged, b.Judged)
		}
		if b.E < a.E*(1-1e-12) {
			t.Fatalf("a request in bucket %d: E %v; in the slower bucket %d: E %v", j1, a.E, j2, b.E)
		}
	})
}

// TestPropertyBetsAreDensities: on any partition of the scores into cells,
// every bet integrates to 1 and never decreases.
func TestPropertyBetsAreDensities(t *testing.T) {
	bets := defaultBets()
	rapid.Check(t, func(t *rapid.T) {
		inner := rapid.SliceOfNDistinct(rapid.Float64Range(-9, 9), 0, 30, func(f float64) float64 { return f }).Draw(t, "edges")
		slices.Sort(inner)
		e := append(append([]float64{math.Inf(-1)}, inner...), math.Inf(1))
		bt := bets[rapid.IntRange(0, len(bets)-1).Draw(t, "bet")]
		total, prev := 0.0, 0.0
		for i := 0; i+1 < len(e); i++ {
			v := bt.cellMean(e[i], e[i+1])
			if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
				t.Fatalf("cell (%g, %g): %v", e[i], e[i+1], v)
			}
			if v < prev*(1-1e-9) && normMass(e[i], e[i+1], e[i+1]-e[i]) > 1e-300 {
				t.Fatalf("cell (%g, %g) pays %g, below the previous %g", e[i], e[i+1], v, prev)
			}
			prev = v
			total += v * normMass(e[i], e[i+1], e[i+1]-e[i])
		}
		if math.Abs(total-1) > 1e-9 {
			t.Fatalf("integrates to %.12f", total)
		}
	})
}

// TestPropertyWatchBetsAreDensities: for any bag, each bet the watch uses
// integrates to 1 over the p-values and never increases with them (never
// decreases with the latency).
func TestPropertyWatchBetsAreDensities(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		count := rapid.OneOf(rapid.Float64Range(0, 10), rapid.Float64Range(0, 1e6), rapid.SampledFrom([]float64{0, 1, 1e12, 1e300}))
		bag := rapid.SliceOfN(count, 1, 40).Draw(t, "bag")
		if !(sum(bag) > 0) {
			return
		}
		w := &Watch{t: propTest, cellBag: bag}
		w.bet()
		for i, lv := range w.lnv {
			total := 0.0
			for s, v := range lv {
				end := 1.0
				if s+1 < len(w.seg) {
					end = w.seg[s+1]
				}
				total += math.Exp(v) * (end - w.seg[s])
				if s > 0 && v > lv[s-1]+1e-12 {
					t.Fatalf("bet %d: segment %d pays e^%v, more than the one before (e^%v)", i, s, v, lv[s-1])
				}
			}
			if math.Abs(total-1) > 1e-9 {
				t.Fatalf("bet %d integrates to %.12f", i, total)
			}
		}
	})
}
