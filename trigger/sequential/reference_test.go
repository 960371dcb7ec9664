package sequential

import (
	"math"
	"slices"
	"strconv"
	"testing"

	"pgregory.net/rapid"
)

// refPrior is the priors' first construction, kept as the reference that
// the present one must reproduce bit for bit: six slices built by append,
// both cumulative weights.
type refPrior struct {
	p, lp, lq, lw, cw, cwAbove []float64
}

func refRegressionPrior(ref float64, e Effect, floor float64) *refPrior {
	start := ref + e.Delta
	if e.IsRatio() {
		start = ref * e.Ratio
	}
	start = max(start, floor)
	var ps []float64
	for k := 0; ; k++ {
		var p float64
		if e.IsRatio() {
			p = start * math.Pow(priorStep, float64(k))
		} else {
			p = start + e.Delta*(math.Pow(priorStep, float64(k))-1)
		}
		if p >= maxRate {
			ps = append(ps, maxRate)
			break
		}
		ps = append(ps, p)
	}
	return refMixWithBroad(ps)
}

func refRelativeHealthyPrior(ref float64) *refPrior {
	return refMixWithBroad(refDownFrom(min(ref, maxRate)))
}

func refLimitHealthyPrior(limit float64, e Effect) *refPrior {
	start := limit / priorStep
	if e.IsRatio() {
		start = limit / e.Ratio
	} else if limit-e.Delta > 0 {
		start = limit - e.Delta
	}
	return refMixWithBroad(refDownFrom(start))
}

func refDownFrom(start float64) []float64 {
	var ps []float64
	for p := start; p >= max(minRate, start*healthySpan); p /= priorStep {
		ps = append(ps, p)
	}
	return ps
}

func refBroadRates() []float64 {
	var ps []float64
	for p := 1e-6; p < maxRate; p *= broadStep {
		ps = append(ps, p)
	}
	return ps
}

func refBroadPrior() *refPrior {
	ps := refBroadRates()
	w := make([]float64, len(ps))
	for i := range w {
		w[i] = 1 / float64(len(ps))
	}
	return refNewPrior(ps, w)
}

func refMixWithBroad(ps []float64) *refPrior {
	if len(ps) == 0 {
		return refBroadPrior()
	}
	var ws []float64
	sum, wk := 0.0, 1.0
	for range ps {
		ws = append(ws, wk)
		sum += wk
		wk *= priorDecay
	}
	for i := range ws {
		ws[i] *= (1 - broadWeight) / sum
	}
	broad := refBroadRates()
	for _, p := range broad {
		ps = append(ps, p)
		ws = append(ws, broadWeight/float64(len(broad)))
	}
	return refNewPrior(ps, ws)
}

func refNewPrior(ps, ws []float64) *refPrior {
	idx := make([]int, len(ps))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case ps[a] < ps[b]:
			return -1
		case ps[a] > ps[b]:
			return 1
		}
		return 0
	})
	pr := &refPrior{}
	for _, i := range idx {
		p := ps[i]
		pr.p = append(pr.p, p)
		pr.lp = append(pr.lp, math.Log(p))
		pr.lq = append(pr.lq, math.Log1p(-p))
		lw := math.Log(ws[i]) - weightSlack
		pr.lw = append(pr.lw, lw)
	}
	m := len(pr.p)
	pr.cw, pr.cwAbove = make([]float64, m+1), make([]float64, m+1)
	for k := range m {
		pr.cw[k+1] = pr.cw[k] + math.Exp(pr.lw[k])
	}
	for k := m - 1; k >= 0; k-- {
		pr.cwAbove[k] = pr.cwAbove[k+1] + math.Exp(pr.lw[k])
	}
	return pr
}

// samePrior fails t unless got holds want's values bit for bit, in slices
// of exactly their length, with the cumulative weights of the sides it is
// used on (above, below) and no other (the shared broad prior, which
// serves without targeted rates, has both).
func samePrior(t *rapid.T, name string, got *prior, want *refPrior, above, below bool) {
	t.Helper()
	if got == broadPrior {
		above, below = true, true
	}
	check := func(field string, g, w []float64, kept bool) {
		t.Helper()
		if !kept {
			if g != nil {
				t.Fatalf("%s: %s kept (%d values), not used", name, field, len(g))
			}
			return
		}
		if len(g) != len(w) || cap(g) != len(g) {
			t.Fatalf("%s: %s has %d values (capacity %d), want %d", name, field, len(g), cap(g), len(w))
		}
		for i := range w {
			if math.Float64bits(g[i]) != math.Float64bits(w[i]) {
				t.Fatalf("%s: %s[%d] = %v, want %v", name, field, i, g[i], w[i])
			}
		}
	}
	check("p", got.p, want.p, true)
	check("lp", got.lp, want.lp, true)
	check("lq", got.lq, want.lq, true)
	check("lw", got.lw, want.lw, true)
	check("cw", got.cw, want.cw, above)
	check("cwAbove", got.cwAbove, want.cwAbove, below)
}

// effectGen draws a minimum effect: a ratio (some very near 1, which
// makes long priors) or a difference.
func effectGen() *rapid.Generator[Effect] {
	return rapid.Custom(func(t *rapid.T) Effect {
		if rapid.Bool().Draw(t, "ratio") {
			return Effect{Ratio: rapid.OneOf(
				rapid.Float64Range(1.0001, 1.05),
				rapid.Float64Range(1.01, 100),
				rapid.SampledFrom([]float64{1.1, 1.25, 1.5, 2, 5}),
			).Draw(t, "min_effect ratio")}
		}
		return Effect{Delta: rapid.OneOf(
			rapid.Float64Range(1e-6, 0.01),
			rapid.Float64Range(1e-4, 0.999),
			rapid.SampledFrom([]float64{0.001, 0.01, 0.05}),
		).Draw(t, "min_effect difference")}
	})
}

// TestPriorsMatchTheirReference checks that the priors, as built for a
// watch's pre-deploy counts and for a limit, hold the values of their
// reference construction bit for bit, so that every e-value stays the same.
func TestPriorsMatchTheirReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		e := effectGen().Draw(t, "effect")
		var ref float64
		if rapid.Bool().Draw(t, "from counts") {
			pre := countsGen("pre-deploy").Draw(t, "pre")
			ref = (pre.Errors + 0.5) / (pre.Requests + 1)
		} else {
			ref = rapid.OneOf(
				rapid.Float64Range(1e-13, 1e-6),
				rapid.Float64Range(1e-6, 0.1),
				rapid.Float64Range(0.1, 1),
			).Draw(t, "reference rate")
		}
		limit := rapid.Float64Range(1e-9, 0.999999).Draw(t, "limit")
		samePrior(t, "regression", regressionPrior(ref, e, 0), refRegressionPrior(ref, e, 0), true, false)
		samePrior(t, "relative health", relativeHealthyPrior(ref), refRelativeHealthyPrior(ref), false, true)
		samePrior(t, "limit regression", regressionPrior(limit, e, 0), refRegressionPrior(limit, e, 0), true, false)
		samePrior(t, "limit health", limitHealthyPrior(limit, e), refLimitHealthyPrior(limit, e), false, true)
		samePrior(t, "broad", broadPrior, refBroadPrior(), true, true)
	})
}

// refLevels and refActiveLevels are the baseline's levels and their choice
// as first built, by append.
func refLevels(pre Counts) []baseLevel {
	var levels []baseLevel
	if pre.Requests > 0 {
		for k, v := range preLevelWeights {
			r := pre.Requests * math.Pow(levelStep, float64(k))
			levels = append(levels, baseLevel{r: r, f: levelFloor, lw: math.Log((1-baseNullWeight)*v/float64(len(baseLambdas))) - weightSlack})
		}
		return levels
	}
	for k := range liveLevels {
		r := liveLevelStart * math.Pow(levelStep, float64(k))
		levels = append(levels, baseLevel{r: r, f: levelFloor, lw: math.Log((1-baseNullWeight)/liveLevels/float64(len(baseLambdas))) - weightSlack})
	}
	return levels
}

func refActiveLevels(levels []baseLevel, m float64) []baseLevel {
	var active []baseLevel
	size := max(m, 1)
	nearest, dist := 0, math.Inf(1)
	for i, lv := range levels {
		if lv.r <= levelAbove*size && lv.r*levelBelow >= size {
			active = append(active, lv)
		}
		if d := math.Abs(math.Log(lv.r / size)); d < dist {
			nearest, dist = i, d
		}
	}
	if len(active) == 0 {
		active = append(active, levels[nearest])
	}
	return active
}

// sameLevels fails t unless got and want hold the same levels bit for bit.
func sameLevels(t *rapid.T, name string, got, want []baseLevel) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d levels, want %d", name, len(got), len(want))
	}
	bits := math.Float64bits
	for i, w := range want {
		if g := got[i]; bits(g.r) != bits(w.r) || bits(g.f) != bits(w.f) || bits(g.lw) != bits(w.lw) {
			t.Fatalf("%s: level %d is %+v, want %+v", name, i, g, w)
		}
	}
}

// TestBaseLevelsMatchTheirReference checks that a two-sample comparison's
// baseline levels, and those it picks for the baseline's size, are those of
// their reference construction, bit for bit.
func TestBaseLevelsMatchTheirReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pre := Counts{}
		if rapid.Bool().Draw(t, "pre-deploy counts") {
			pre = countsGen("pre-deploy").Draw(t, "pre")
		}
		ts := newTwoSample(pre, effectGen().Draw(t, "effect"))
		want := refLevels(pre)
		sameLevels(t, "levels", ts.levels, want)
		for i := range 5 {
			m := pre.Requests + countsGen("live").Draw(t, "live "+strconv.Itoa(i)).Requests
			ts.activeLevels(m)
			sameLevels(t, "active levels", ts.active, refActiveLevels(want, m))
		}
	})
}
