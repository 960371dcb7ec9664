package sequential

import (
	"math"
	"sort"
	"sync"
)

// This file holds the comparison with a baseline known only by its counts:
// the two-sample e-processes described in the package comment, and the
// search for the infimum over the baseline's rate that they are made of.

// Grid of the baseline's factor B(q): a mixture over alternatives at λ
// "standard errors" of the baseline's counts from q, u = λ/sqrt(q·r + f),
// for every λ in baseLambdas and every level (r, f), plus the null
// alternative itself (B = 1) with weight baseNullWeight.
var baseLambdas = [...]float64{0.75, 1.5, 2.25, 3, 3.75}

// preLevelWeights are the weights of the levels r = M0·4^k when the
// pre-deploy counts (M0 requests) are known: mostly the pre-deploy sample's
// own size, a little for a live baseline that grows beyond it.
var preLevelWeights = [...]float64{0.85, 0.1, 0.05}

const (
	baseNullWeight = 0.4
	// levelFloor is the smallest f of a level (u = λ/sqrt(q·r + f)).
	levelFloor = 1
	// Levels are spaced by levelStep in the reference size r (requests);
	// with pre-deploy counts they are r = M0·4^k (preLevelWeights), without
	// them liveLevels levels from liveLevelStart requests up, equally
	// weighted.
	levelStep      = 4
	liveLevels     = 15
	liveLevelStart = 16
	// Levels far from the baseline's current size add almost nothing and
	// are skipped (which only lowers B, so it stays valid): those with a
	// reference more than levelAbove times above or levelBelow times below
	// it.
	levelAbove = 2
	levelBelow = 64
	// maxLnE caps the reported log e-values (e^700 is near the largest
	// float64); capping lowers an e-value, so it stays valid.
	maxLnE = 700
)

// baseLevel is one level of the baseline's factor: alternatives at
// u = λ/sqrt(q·r + f) for each λ, each with log weight lw.
type baseLevel struct {
	r, f, lw float64
}

// twoSample is the comparison of the new version with a baseline known by
// counts: pre-deploy counts fixed when the watch starts, and live counts
// that keep arriving. Its methods are not safe for concurrent use.
type twoSample struct {
	effect Effect
	// The new version's alternatives: above the baseline (regression) and
	// below it (health).
	reg, healthy *prior
	// levels, by increasing r (shared by every watch without pre-deploy
	// counts), and those of the current call (a part of levels).
	levels, active []baseLevel
	// Warm starts: the minimising rates of the previous call, 0 if none.
	qReg, qHealthy float64
}

// liveBaseLevels are the levels without pre-deploy counts, the same for
// every watch.
var liveBaseLevels = func() []baseLevel {
	levels := make([]baseLevel, liveLevels)
	for k := range levels {
		r := liveLevelStart * math.Pow(levelStep, float64(k))
		levels[k] = baseLevel{r: r, f: levelFloor, lw: math.Log((1-baseNullWeight)/liveLevels/float64(len(baseLambdas))) - weightSlack}
	}
	return levels
}()

// newTwoSample sets up the comparison for the pre-deploy counts pre (zero
// when unknown), before any data of the new version.
func newTwoSample(pre Counts, e Effect) *twoSample {
	ts := &twoSample{effect: e}
	if pre.Requests > 0 {
		ref := (pre.Errors + 0.5) / (pre.Requests + 1)
		ts.reg = regressionPrior(ref, e, 0)
		ts.healthy = relativeHealthyPrior(ref)
		ts.levels = make([]baseLevel, len(preLevelWeights))
		for k, v := range preLevelWeights {
			r := pre.Requests * math.Pow(levelStep, float64(k))
			ts.levels[k] = baseLevel{r: r, f: levelFloor, lw: math.Log((1-baseNullWeight)*v/float64(len(baseLambdas))) - weightSlack}
		}
	} else {
		ts.reg, ts.healthy = broadPrior, broadPrior
		ts.levels = liveBaseLevels
	}
	return ts
}

// mixes are the new version's factors of one evaluation, against a
// regression and for health. Their buffers serve only during it, so
// evaluations take them from mixPool instead of every watch keeping its own.
type mixes struct{ reg, healthy boundaryMix }

var mixPool = sync.Pool{New: func() any { return new(mixes) }}

func getMixes() *mixes { return mixPool.Get().(*mixes) }

// putMixes returns mx to the pool, without the prior it last pointed to.
func putMixes(mx *mixes) {
	mx.reg.pr, mx.healthy.pr = nil, nil
	mixPool.Put(mx)
}

// evidence returns the log e-values of a regression and of health for the
// new version's cleaned counts (x errors in n requests) against the
// baseline's cleaned counts b, pre-deploy plus live, with the factors mx.
func (ts *twoSample) evidence(x, n float64, b Counts, mx *mixes) (lnE, lnH float64) {
	y, m := b.Errors, b.Requests
	ts.activeLevels(m)
	phat := mle(x, n)

	// Regression: inf over q in [0, phat] of ln N(q) + ln B_down(q).
	mx.reg.reset(ts.reg, x, n, true)
	reg := objective{ts: ts, mix: &mx.reg, y: y, m: m}
	lnE, ts.qReg = reg.minimize(0, phat, ts.qReg)

	// Health: inf over q with bound(q) in [phat, 1] of ln N_h(bound(q)) +
	// ln B_up(q).
	mx.healthy.reset(ts.healthy, x, n, false)
	h := objective{ts: ts, mix: &mx.healthy, y: y, m: m, healthy: true}
	lo, hi := phat/ts.effect.Ratio, 1/ts.effect.Ratio
	if !ts.effect.IsRatio() {
		lo, hi = max(phat-ts.effect.Delta, 0), 1-ts.effect.Delta
	}
	lnH, ts.qHealthy = h.minimize(lo, hi, ts.qHealthy)
	return lnE, lnH
}

// activeLevels picks the levels near the baseline's current size (m
// requests, pre-deploy plus live). The choice depends on requests only, so
// that B stays monotone in the baseline's errors. As the levels increase in
// r, those picked follow each other.
func (ts *twoSample) activeLevels(m float64) {
	size := max(m, 1)
	from, to := len(ts.levels), 0
	nearest, dist := 0, math.Inf(1)
	for i, lv := range ts.levels {
		if lv.r <= levelAbove*size && lv.r*levelBelow >= size {
			from, to = min(from, i), i+1
		}
		if d := math.Abs(math.Log(lv.r / size)); d < dist {
			nearest, dist = i, d
		}
	}
	if from >= to {
		from, to = nearest, nearest+1
	}
	ts.active = ts.levels[from:to:to]
}

// lnBase returns ln B(q) for the baseline's counts (y errors in m
// requests), and its derivative in q: the mixture of the Poisson likelihood
// ratios of the alternatives q·e^-u (up false: evidence that q is too
// high) or q(1+u) (up true: that q is too low) against q, with
// u = λ/sqrt(q·r + f). Every term is monotone in q: non-decreasing for up
// false, non-increasing for up true; for up true each is also convex.
func (ts *twoSample) lnBase(q, y, m float64, up bool) (float64, float64) {
	best, sum, dsum := math.Log(baseNullWeight)-weightSlack, 1.0, 0.0
	for _, lv := range ts.active {
		z := q*lv.r + lv.f
		inv := 1 / math.Sqrt(z)
		for _, l := range baseLambdas {
			u := l * inv
			du := -lv.r / 2 * u / z
			var h, dh float64
			if up {
				h, dh = -m*q*u, -m*(u+q*du)
				if y > 0 {
					h += y * math.Log1p(u)
					dh += y * du / (1 + u)
				}
			} else {
				// q' = q·e^-u: h = -y·u + m·q·(1-e^-u).
				e := math.Exp(-u)
				h, dh = m*q*(1-e), m*((1-e)+q*e*du)
				if y > 0 {
					h -= y * u
					dh -= y * du
				}
			}
			t := lv.lw + h
			if t > best {
				e := math.Exp(best - t)
				sum, dsum = sum*e+1, dsum*e+dh
				best = t
			} else {
				e := math.Exp(t - best)
				sum += e
				dsum += e * dh
			}
		}
	}
	return best + math.Log(sum), dsum / sum
}

// boundaryMix evaluates, for fixed counts (x errors in n requests) and many
// boundaries q, the new version's factor: with above, ln Σ_k w_k
// L(max(p_k, q))/L(q), the mixture likelihood ratio against the boundary
// with every alternative below it moved onto it (a test supermartingale
// under any rate p <= q); without, ln Σ_k w_k L(min(p_k, q))/L(q) (under
// any p >= q).
type boundaryMix struct {
	pr    *prior
	x, n  float64
	above bool
	// The sum of w_j L(p_j) over j >= k (above) or j < k (below) is
	// s[k]·e^(m[k]) (s[k] = 0 for an empty sum).
	m, s []float64
}

// negligible is where a term is dropped from a sum: below e^-negligible
// times the sum's largest term (dropping terms only lowers the e-value).
const negligible = 40

func (b *boundaryMix) reset(pr *prior, x, n float64, above bool) {
	b.pr, b.x, b.n, b.above = pr, x, n, above
	k := len(pr.p)
	if cap(b.m) < k+1 {
		b.m, b.s = make([]float64, k+1), make([]float64, k+1)
	}
	b.m, b.s = b.m[:k+1], b.s[:k+1]
	add := func(to, from, j int) {
		t := pr.lw[j]
		if x > 0 {
			t += x * pr.lp[j]
		}
		if n-x > 0 {
			t += (n - x) * pr.lq[j]
		}
		m, s := b.m[from], b.s[from]
		switch {
		case s == 0:
			m, s = t, 1
		case t > m:
			s = s*math.Exp(m-t) + 1
			m = t
		case t > m-negligible:
			s += math.Exp(t - m)
		}
		b.m[to], b.s[to] = m, s
	}
	if above {
		b.m[k], b.s[k] = 0, 0
		for j := k - 1; j >= 0; j-- {
			add(j, j+1, j)
		}
		return
	}
	b.m[0], b.s[0] = 0, 0
	for j := range k {
		add(j+1, j, j)
	}
}

// at returns the factor for boundary q in [0, 1] and its derivative in q
// (NaN where the factor is infinite).
func (b *boundaryMix) at(q float64) (float64, float64) {
	pr := b.pr
	m := len(pr.p)
	lq := logLik(b.x, b.n, q)
	var k int
	var moved float64
	if b.above {
		k = sort.SearchFloat64s(pr.p, q) // first p_k >= q
		moved = math.Log(pr.cw[k])       // alternatives below q, moved on it
		if k == m {
			return moved, 0
		}
	} else {
		k = sort.Search(m, func(i int) bool { return pr.p[i] > q })
		moved = math.Log(pr.cwAbove[k])
		if k == 0 {
			return moved, 0
		}
	}
	lt := b.m[k] + math.Log(b.s[k]) - lq // ln of the alternatives' likelihood ratios
	v := logAddExp(moved, lt)
	if math.IsInf(v, 0) {
		return v, math.NaN()
	}
	// d/dq ln(W + T) = T/(W+T) · -ℓ'(q), ℓ'(q) = x/q - (n-x)/(1-q).
	var dl float64
	if b.x > 0 {
		dl += b.x / q
	}
	if b.n-b.x > 0 {
		dl -= (b.n - b.x) / (1 - q)
	}
	return v, -dl * math.Exp(lt-v)
}

// objective is the function whose infimum over the baseline's rate q is
// a two-sample log e-value, split into a non-increasing part dec and a
// non-decreasing part inc.
type objective struct {
	ts *twoSample
	// mix is the new version's factor, reset for the counts.
	mix     *boundaryMix
	y, m    float64
	healthy bool
}

// searchPoint is the objective at q: its two parts and their derivatives.
type searchPoint struct{ q, dec, ddec, inc, dinc float64 }

func (p searchPoint) value() float64 { return p.dec + p.inc }
func (p searchPoint) slope() float64 { return p.ddec + p.dinc }

func (o *objective) eval(q float64) searchPoint {
	ts := o.ts
	if !o.healthy {
		f, df := o.mix.at(q)
		g, dg := ts.lnBase(q, o.y, o.m, false)
		return searchPoint{q, f, df, g, dg}
	}
	b, db := q+ts.effect.Delta, 1.0
	if ts.effect.IsRatio() {
		b, db = q*ts.effect.Ratio, ts.effect.Ratio
	}
	g, dg := ts.lnBase(q, o.y, o.m, true)
	f, df := o.mix.at(min(b, 1))
	return searchPoint{q, g, dg, f, df * db}
}

// curvature returns a lower bound of the objective's second derivative on
// [a, b], at most 0. The new version's factors and the baseline's factor
// for health are convex in q (0); the baseline's factor against a
// regression is bounded through its terms (see lnBase).
func (o *objective) curvature(a, b float64) float64 {
	if o.healthy {
		return 0
	}
	k := 0.0
	for _, lv := range o.ts.active {
		za := a*lv.r + lv.f
		for _, l := range baseLambdas {
			// u = l z^-1/2, u' = -(r/2) u/z, u'' = (3r²/4) u/z²: u, |u'|
			// and u'' decrease in q. h = -y·u + m·q·(1-e^-u) has
			// h'' = -y u'' + m e^-u (2u' - q u'² + q u''), and the last
			// term is positive.
			ua := l / math.Sqrt(za)
			d1 := -lv.r / 2 * ua / za
			d2 := 3 * lv.r * lv.r / 4 * ua / (za * za)
			k = min(k, -o.y*d2+o.m*(2*d1-b*d1*d1))
		}
	}
	return k
}

// kink returns the point of (a, b) nearest to near (or to the middle when
// near is NaN) where the new version's factor has a kink (a boundary
// crossing one of its prior's rates), NaN if there is none. The objective
// is smooth between kinks, where the bounds converge fast.
func (o *objective) kink(a, b, near float64) float64 {
	pr := o.ts.reg.p
	scale, shift := 1.0, 0.0
	if o.healthy {
		pr = o.ts.healthy.p
		if o.ts.effect.IsRatio() {
			scale = 1 / o.ts.effect.Ratio
		} else {
			shift = -o.ts.effect.Delta
		}
	}
	// Rates r of the prior map to q = r·scale + shift.
	i := sort.Search(len(pr), func(i int) bool { return pr[i]*scale+shift > a })
	j := sort.Search(len(pr), func(i int) bool { return pr[i]*scale+shift >= b })
	if i >= j {
		return math.NaN()
	}
	if math.IsNaN(near) {
		near = a + (b-a)/2
	}
	best := math.NaN()
	for k := i; k < j; k++ {
		q := pr[k]*scale + shift
		if math.IsNaN(best) || math.Abs(q-near) < math.Abs(best-near) {
			best = q
		}
	}
	return best
}

// Search limits: at most maxPoints evaluations; stop when the certified
// lower bound is within searchTolAbs + searchTolRel·|value| of the best
// value found.
const (
	maxPoints    = 64
	searchTolAbs = 1e-4
	searchTolRel = 1e-6
	coldPoints   = 4
)

// bound returns a lower bound of the objective on [a, b], and where to
// split the interval to tighten it. Two bounds hold: by monotonicity
// (dec >= dec(b), inc >= inc(a)), and by Taylor's theorem with the
// curvature bound k <= 0 from either end (A from a, B from b; the better
// of the two at each q). A - B is linear in q, so the smallest max(A, B)
// is at an end or where they cross, which is also where the minimum
// likely is.
func (o *objective) bound(a, b searchPoint) (lb, split float64) {
	lb = b.dec + a.inc
	split = math.NaN()
	va, vb, sa, sb := a.value(), b.value(), a.slope(), b.slope()
	okA := !math.IsInf(va, 0) && !math.IsNaN(va) && !math.IsInf(sa, 0) && !math.IsNaN(sa)
	okB := !math.IsInf(vb, 0) && !math.IsNaN(vb) && !math.IsInf(sb, 0) && !math.IsNaN(sb)
	if !okA && !okB {
		return lb, split
	}
	k := o.curvature(a.q, b.q)
	A := func(q float64) float64 { return va + sa*(q-a.q) + k/2*(q-a.q)*(q-a.q) }
	B := func(q float64) float64 { return vb + sb*(q-b.q) + k/2*(q-b.q)*(q-b.q) }
	var lb2 float64
	switch {
	case !okB: // A alone, concave: smallest at an end
		lb2 = min(va, A(b.q))
	case !okA:
		lb2 = min(B(a.q), vb)
	default:
		lb2 = min(max(va, B(a.q)), max(A(b.q), vb))
		// A(q) - B(q) = c0 + c1·q.
		c1 := sa - sb + k*(b.q-a.q)
		c0 := A(0) - B(0)
		if c1 != 0 {
			if r := -c0 / c1; r > a.q && r < b.q {
				lb2 = min(lb2, A(r))
				split = r
			}
		}
	}
	if math.IsNaN(lb2) {
		return lb, split
	}
	return max(lb, lb2), split
}

// minimize returns a lower bound of inf over q in [lo, hi] of the
// objective, within tolerance of the smallest value found, and where that
// value was found. It refines the interval with the lowest bound, starting
// around warm (the previous call's minimiser) when it lies inside.
func (o *objective) minimize(lo, hi, warm float64) (lb, at float64) {
	var pts [maxPoints]searchPoint
	var lbs [maxPoints]float64    // lbs[i]: bound on [pts[i], pts[i+1]]
	var splits [maxPoints]float64 // where to split it
	np := 0
	add := func(q float64) searchPoint {
		if !(q >= lo && q <= hi) || np == len(pts) {
			return searchPoint{q: q, ddec: math.NaN()}
		}
		i := 0
		for i < np && pts[i].q < q {
			i++
		}
		if i < np && pts[i].q == q {
			return pts[i]
		}
		copy(pts[i+1:np+1], pts[i:np])
		copy(lbs[i+1:np+1], lbs[i:np])
		copy(splits[i+1:np+1], splits[i:np])
		pts[i] = o.eval(q)
		np++
		for j := max(i-1, 0); j <= i && j+1 < np; j++ {
			lbs[j], splits[j] = o.bound(pts[j], pts[j+1])
		}
		return pts[i]
	}
	add(lo)
	add(hi)
	if warm > lo && warm < hi {
		// Walk from the previous minimiser downhill, doubling the step,
		// until the slope turns: the minimum is then bracketed.
		p, step := add(warm), warm*1e-3
		dir := 1.0
		if p.slope() > 0 {
			dir = -1
		}
		for range 8 {
			q := warm + dir*step
			if !(q > lo && q < hi) {
				break
			}
			if p := add(q); p.slope()*dir >= 0 || math.IsNaN(p.slope()) {
				break
			}
			step *= 4
		}
	} else if hi > 0 {
		for k := 1; k <= coldPoints; k++ {
			add(hi * math.Pow(10, -float64(k)))
		}
	}
	for {
		best, at := math.Inf(1), pts[0].q
		for _, p := range pts[:np] {
			if v := p.value(); v < best {
				best, at = v, p.q
			}
		}
		if np == 1 {
			return best, at
		}
		lb, j := math.Inf(1), 0
		for i := range np - 1 {
			if lbs[i] < lb {
				lb, j = lbs[i], i
			}
		}
		if math.IsNaN(lb) || math.IsNaN(best) {
			return math.Inf(-1), at
		}
		if best-lb <= searchTolAbs+searchTolRel*math.Abs(best) || np == len(pts) || math.IsInf(lb, 1) {
			return lb, at
		}
		a, b := pts[j].q, pts[j+1].q
		mid := splits[j]
		if k := o.kink(a, b, mid); !math.IsNaN(k) {
			mid = k
		}
		switch {
		case mid > a && mid < b && !math.IsNaN(splits[j]):
		case a <= 0:
			mid = b / 16
		case b > 2*a:
			mid = math.Sqrt(a * b)
		default:
			mid = a + (b-a)/2
		}
		if !(mid > a && mid < b) {
			return lb, at // as narrow as floats allow
		}
		add(mid)
	}
}

// logAddExp returns ln(e^a + e^b).
func logAddExp(a, b float64) float64 {
	switch {
	case math.IsInf(a, -1):
		return b
	case math.IsInf(b, -1):
		return a
	case math.IsInf(a, 1) || math.IsInf(b, 1):
		return math.Inf(1)
	case a > b:
		return a + math.Log1p(math.Exp(b-a))
	}
	return b + math.Log1p(math.Exp(a-b))
}
