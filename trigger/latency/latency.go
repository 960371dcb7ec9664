// Package latency is Guardian's anytime-valid test of a freshly deployed
// version's latency against its baseline's, on Prometheus histogram bucket
// counts: it decides whether the new version is slower (regressed), not
// slower by more than MinEffect (healthy), or whether the evidence is
// inconclusive, with a false-rollback probability of at most Alpha however
// often it is checked. "p99 got worse with the median unchanged" and "the
// whole distribution shifted right" are both decided.
//
// # Model
//
// The latencies of the requests of each version are independent draws from
// one distribution per version: P for the new version, Q for the baseline,
// both in the pre-deploy window and live next to the new version. Only the
// bucket of each request is seen: its counts per bucket, cumulative since
// the deploy. The regression test's null hypothesis is P = Q.
//
// # Statistic
//
// The test is a conformal test martingale (Vovk, Gammerman and Shafer,
// "Algorithmic learning in a random world", 2005 and 2022; Vovk, "Testing
// randomness online", 2021). A reference, the bag, holds the pre-deploy
// requests, the live baseline's requests and the new version's requests
// judged so far. At each call the live baseline's new requests join the bag;
// then each new request of the new version, in a random order, joins the bag
// and gets the smoothed conformal p-value
//
//	p = (A + τ·B) / N
//
// with A the bag's requests in slower buckets, B those in its own bucket
// (itself included), N the bag's size and τ uniform on (0, 1]. Under the
// null hypothesis the pooled sequence of requests in that order is
// exchangeable: the order is set by the versions and by the test's random
// source, never by a latency. Vovk's theorem then says that the smoothed
// p-values are independent and uniform on (0, 1); so are those of the new
// version's requests.
//
// A bet is a density f on (0, 1) (∫f = 1) chosen before the p-value it is
// applied to is seen. Π f(p_i) over the new version's requests is then a
// non-negative martingale with mean 1, and so is a mixture Σ_k w_k Π f_k(p_i)
// with weights summing to 1. By Ville's inequality,
//
//	P(E_t >= 1/Alpha for some t) <= Alpha,
//
// so the test rolls back when E >= 1/Alpha and may be checked at every tick.
// Nothing is approximated: the guarantee holds for three requests as for
// millions, and the counts need no minimum.
//
// The bets are written in the normal score z = Φ⁻¹(1-p), standard normal
// under the null hypothesis and larger for slower requests, so that one
// prior serves every latency distribution and bucket layout:
//
//   - shifts, f(z) = exp(θz - θ²/2): the whole distribution moved right by θ
//     of its spread (θ from 0.03 to 2.5);
//   - stretches: the likelihood ratio of the upper half stretched by a
//     factor s (1.1 to 5) with the median and the lower half unchanged,
//     with its dip above the median flattened so that it never decreases:
//     the likelihood ratio against the closest distribution that is nowhere
//     slower than the baseline. This is "p99 got worse".
//
// Half of the prior weight is on each family, uniform within it (see
// defaultBets). A bucket does not say where in it a request fell, so each
// bet is fitted to the buckets: its mass on a bucket's cell of the bag (the
// cells partition the scores) is spread uniformly over the interval the
// p-value of a request of that bucket is uniform on, and the result is made
// non-increasing in p by pooling adjacent violators, which keeps its
// integral. It is still a density fixed before the p-values are seen, and
// it removes the noise τ adds inside a bucket. The bets are computed from
// the bag as it was when it last grew by a 64th: bets of an older bag are
// still densities, a little less fitted to the buckets.
//
// Why not a binomial test of the requests above each bucket bound against
// the baseline's, with a Bonferroni correction: for a lognormal latency
// (median 50 ms, σ 0.6, the default Prometheus buckets) the best single bound
// carries 1/1.43 of the information of all buckets for a median +20% and
// 1/1.67 for a p99 ×2, before the cost of not knowing which bound; and a
// comparison through the baseline's confidence bound adds its uncertainty
// linearly. Ranks against the pooled requests need no bound on the
// baseline: its uncertainty only shows as the resolution of the bag, as in
// a fixed-sample two-sample rank test.
//
// # What it assumes
//
//   - No drift: the pre-deploy window's latencies come from the same
//     distribution as the baseline's during the watch. A daily pattern that
//     slows everything down during the watch looks like a regression. A live
//     baseline (a canary's stable version) shares the watch's conditions.
//   - Requests are routed to a version independently of their latency.
//   - The bucket layout does not depend on the latencies (see below).
//   - The new version's false-rollback guarantee is proven for P = Q. The
//     bets only grow with slow requests, so a faster version makes them
//     shrink, and the tests check that its false-rollback rate stays below
//     Alpha; but since the bag holds the new version's own requests, a
//     proof for every faster distribution is not given here.
//
// # Healthy
//
// "Healthy" is decided at the guarded bounds: the bounds at or above the
// baseline's quantiles of interest (Quantiles, by default p50, p90, p99)
// in its pre-deploy histogram (or, without one, the first live one). At each
// such bound the requests slower than the bound are "errors" for
// trigger/sequential's relative test, which decides healthy when the new
// version's share above the bound is below MinEffect times the baseline's
// (with error probability at most Alpha). The version is healthy when it is
// at every guarded bound.
//
// # Bucket layouts
//
// The watch judges on the bounds all the histograms it was given share. A
// bound that a later histogram lacks (the new version's build changed its
// buckets, or a series is missing from a scrape) merges its two buckets in
// the bag for the rest of the watch; bounds that appear later are merged
// away. The layout is then a function of time and of which series exist, not
// of the latencies, so the p-values stay exact: no alpha is spent again and
// no evidence is lost. Only the guarded bound that disappears is replaced by
// the next bound above it, with a fresh healthy test. Without a common bound
// the watch has one bucket and no evidence.
//
// Native histograms are judged through FromNative, which evaluates them at
// bounds that are boundaries of their buckets (NativeBounds of the
// pre-deploy histogram). A lower resolution (a schema change) drops the
// bounds it no longer has, as above. What is left: choosing bounds for a
// native histogram without pre-deploy data, and more than a few hundred
// bounds, which the per-call cost (linear in the bounds) does not suit.
//
// # State and cost
//
// A Watch keeps what it has judged: the bag, the counts it took in, each
// bet's log-evidence and its random source. Counts that decrease are taken
// as unchanged. State and Resume carry a watch across restarts; a watch
// started anew after a restart judges the whole backlog again, and each such
// restart can spend Alpha again. A call judges at most MaxPerCall new
// requests; the rest, chosen at random, stay out of the bag, which keeps the
// guarantee exact. A call costs a few microseconds plus about 40 ns per new
// request (BenchmarkDecide).
package latency

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// MaxPerCall is the largest number of new requests one call judges.
const MaxPerCall = 1 << 17

// DefaultQuantiles are the baseline quantiles whose bounds are guarded for
// the healthy decision.
var DefaultQuantiles = []float64{0.5, 0.9, 0.99}

// Config configures a Test.
type Config struct {
	// Alpha bounds the probability of a false rollback (and of a false
	// "healthy") over the whole watch, however often the test is checked.
	Alpha float64
	// MinEffect is the largest regression a healthy version may have, as a
	// ratio (or difference) of the shares of requests slower than each
	// guarded bound.
	MinEffect sequential.Effect
	// Quantiles are the baseline quantiles whose bounds are guarded for the
	// healthy decision (DefaultQuantiles when empty).
	Quantiles []float64
}

// ErrInvalidConfig is wrapped by the errors of New and Config.Validate.
var ErrInvalidConfig = errors.New("invalid latency test")

// Validate checks Alpha and MinEffect as trigger/sequential does, and that
// the quantiles are in (0, 1).
func (c Config) Validate() error {
	if err := (sequential.Config{Alpha: c.Alpha, MinEffect: c.MinEffect}).Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	for _, q := range c.Quantiles {
		if !(q > 0 && q < 1) {
			return fmt.Errorf("quantile %g must be in (0, 1), for example 0.99: %w", q, ErrInvalidConfig)
		}
	}
	return nil
}

// Test is a configured latency test. It is immutable and safe for
// concurrent use; Watch starts its use for one deploy.
type Test struct {
	cfg  Config
	bets []bet
	seq  *sequential.Test
}

// New returns the test for c.
func New(c Config) (*Test, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.Quantiles = slices.Clone(c.Quantiles)
	if len(c.Quantiles) == 0 {
		c.Quantiles = slices.Clone(DefaultQuantiles)
	}
	slices.Sort(c.Quantiles)
	c.Quantiles = slices.Compact(c.Quantiles)
	seq, err := sequential.New(sequential.Config{Alpha: c.Alpha, MinEffect: c.MinEffect})
	if err != nil {
		return nil, err
	}
	return &Test{cfg: c, bets: defaultBets(), seq: seq}, nil
}

// Config returns the test's configuration.
func (t *Test) Config() Config { return t.cfg }

// Watch is the test applied to one deploy. It is not safe for concurrent
// use: it keeps what it has judged.
type Watch struct {
	t   *Test
	pcg *rand.PCG
	rng *rand.Rand

	layout    []float64 // bounds judged on; nil until known
	hasLayout bool
	pre       []float64 // pre-deploy requests per bucket
	bag       []float64 // the reference: pre-deploy, live, judged new requests
	newSeen   []float64 // new version's requests taken in (judged or not)
	liveSeen  []float64 // live baseline's requests taken in
	sums      []float64 // per bet: ln Π f(p)
	judged    float64
	dropped   float64
	guards    []guard

	// The bets in force: computed from the bag cellBag (nil: none), each
	// bet's log value on the segments of p-values that start at seg.
	cellBag []float64
	seg     []float64
	lnv     [][]float64
}

type guard struct {
	quantile, bound float64
	w               *sequential.Watch
}

// Watch starts the test for a deploy. pre is the baseline's histogram over
// a period before the deploy (empty when unknown: the live baseline is then
// the only reference). seed seeds the test's random source (the order of
// each call's new requests and the τ of their p-values); it must not depend
// on the new version's latencies, and the same seed and calls give the same
// results.
func (t *Test) Watch(pre Histogram, seed uint64) *Watch {
	w := &Watch{t: t, pcg: rand.NewPCG(seed, 0x9e3779b97f4a7c15)}
	w.rng = rand.New(w.pcg)
	w.sums = make([]float64, len(t.bets))
	if !pre.empty() {
		w.setLayout(pre.bounds())
		w.pre, _ = pre.counts(w.layout)
		copy(w.bag, w.pre)
		w.guardFrom(w.pre)
	}
	return w
}

func (w *Watch) setLayout(bounds []float64) {
	w.layout, w.hasLayout = bounds, true
	n := len(bounds) + 1
	w.pre, w.bag = make([]float64, n), make([]float64, n)
	w.newSeen, w.liveSeen = make([]float64, n), make([]float64, n)
}

// guardFrom picks the guarded bounds from the baseline's counts per bucket.
func (w *Watch) guardFrom(base []float64) {
	total := sum(base)
	if total <= 0 {
		return
	}
	for _, q := range w.t.cfg.Quantiles {
		cum := 0.0
		for i, b := range w.layout {
			cum += base[i]
			if cum >= q*total {
				if len(w.guards) == 0 || w.guards[len(w.guards)-1].bound != b {
					w.guards = append(w.guards, guard{quantile: q, bound: b, w: w.t.seq.Watch(true, w.exceed(w.pre, i))})
				}
				break
			}
		}
	}
}

// exceed returns the requests above bound i of counts per bucket, as
// trigger/sequential's errors.
func (w *Watch) exceed(counts []float64, i int) sequential.Counts {
	return sequential.Counts{Errors: sum(counts[i+1:]), Requests: sum(counts)}
}

// Result is the test's finding at one time, with its evidence.
type Result struct {
	Decision sequential.Decision
	// E is the evidence of a regression: Regressed once E >= 1/Alpha. Its
	// always-valid p-value is min(1, 1/E). E is capped at e^690.
	E float64
	// EShift and EStretch are the shares of E of the two families of bets:
	// the distribution shifted right, and its upper tail stretched.
	EShift, EStretch float64
	// EHealthy is the smallest evidence of health of the guarded bounds:
	// Healthy once it is at least 1/Alpha at every one (0 without guards).
	EHealthy float64
	Alpha    float64

	// Judged is the number of the new version's requests judged; Dropped
	// those left out because a call had more than MaxPerCall.
	Judged, Dropped float64
	// Reference is the number of baseline requests in the bag (pre-deploy
	// and live); the bag also holds the judged requests.
	Reference float64
	// Bounds are the bucket bounds judged on.
	Bounds []float64
	// Guards are the guarded bounds of the healthy decision.
	Guards []Guard
}

// Guard is the healthy test at one guarded bound.
type Guard struct {
	// Quantile is the baseline quantile the bound was picked for: the
	// smallest bound with at least that share of the baseline's pre-deploy
	// requests at or below it.
	Quantile, Bound float64
	// New and Baseline count the requests slower than Bound as errors;
	// Baseline is the pre-deploy plus the live counts.
	New, Baseline sequential.Counts
	Decision      sequential.Decision
	EHealthy      float64
}

// P returns the always-valid p-value min(1, 1/E).
func (r Result) P() float64 {
	if !(r.E > 1) {
		return 1
	}
	return 1 / r.E
}

// Decide takes the new version's histogram and the live baseline's (empty
// when the baseline no longer serves), both cumulative since the deploy,
// judges the requests that are new since the last call and returns the
// decision with its evidence.
func (w *Watch) Decide(newH, live Histogram) Result {
	r := Result{Alpha: w.t.cfg.Alpha}
	if !w.hasLayout {
		switch {
		case !live.empty():
			w.setLayout(live.bounds())
		case !newH.empty():
			w.setLayout(newH.bounds())
		default:
			return w.result(r, nil, nil)
		}
	}
	if l := common(common(w.layout, newH), live); len(l) < len(w.layout) {
		w.coarsen(l)
	}
	nc, _ := newH.counts(w.layout)
	lc, _ := live.counts(w.layout)
	if len(w.guards) == 0 {
		if sum(w.pre) > 0 {
			w.guardFrom(w.pre)
		} else {
			w.guardFrom(lc)
		}
	}
	inc := make([]float64, len(nc))
	for j := range lc {
		d := max(0, lc[j]-w.liveSeen[j])
		w.liveSeen[j] += d
		w.bag[j] += d
		inc[j] = max(0, nc[j]-w.newSeen[j])
		w.newSeen[j] += inc[j]
	}
	w.judge(inc)
	return w.result(r, nc, lc)
}

func (w *Watch) result(r Result, nc, lc []float64) Result {
	bets := w.t.bets
	lnShift, lnStretch := math.Inf(-1), math.Inf(-1)
	for i, b := range bets {
		v := b.lnw + w.sums[i]
		if b.kind == shift {
			lnShift = logAdd(lnShift, v)
		} else {
			lnStretch = logAdd(lnStretch, v)
		}
	}
	lnE := logAdd(lnShift, lnStretch)
	r.E, r.EShift, r.EStretch = capExp(lnE), capExp(lnShift), capExp(lnStretch)
	r.Judged, r.Dropped = w.judged, w.dropped
	r.Reference = sum(w.pre) + sum(w.liveSeen)
	r.Bounds = slices.Clone(w.layout)
	r.EHealthy = math.Inf(1)
	healthy := len(w.guards) > 0
	for _, g := range w.guards {
		gr := Guard{Quantile: g.quantile, Bound: g.bound}
		if nc != nil {
			i, _ := slices.BinarySearch(w.layout, g.bound)
			gr.New = w.exceed(nc, i)
			live := w.exceed(lc, i)
			sr := g.w.Decide(gr.New, live)
			gr.Baseline = sr.Baseline
			gr.Decision, gr.EHealthy = sr.Decision, min(sr.EHealthy, capExp(690))
			if gr.Decision == sequential.Regressed {
				gr.Decision = sequential.Inconclusive // regressions are judged on all buckets
			}
		}
		healthy = healthy && gr.Decision == sequential.Healthy
		r.EHealthy = min(r.EHealthy, gr.EHealthy)
		r.Guards = append(r.Guards, gr)
	}
	if len(w.guards) == 0 {
		r.EHealthy = 0
	}
	switch {
	case lnE >= math.Log(1/r.Alpha):
		r.Decision = sequential.Regressed
	case healthy:
		r.Decision = sequential.Healthy
	}
	return r
}

// coarsen merges the buckets of the bounds the layout loses.
func (w *Watch) coarsen(to []float64) {
	from := w.layout
	w.pre = merge(w.pre, from, to)
	w.bag = merge(w.bag, from, to)
	w.newSeen = merge(w.newSeen, from, to)
	w.liveSeen = merge(w.liveSeen, from, to)
	w.layout = to
	w.cellBag = nil
	gs := w.guards
	w.guards = nil
	for _, g := range gs {
		i, ok := slices.BinarySearch(to, g.bound)
		if !ok && i == len(to) {
			continue // no bound above it is left
		}
		if !ok {
			g = guard{quantile: g.quantile, bound: to[i], w: w.t.seq.Watch(true, w.exceed(w.pre, i))}
		}
		if len(w.guards) == 0 || w.guards[len(w.guards)-1].bound != g.bound {
			w.guards = append(w.guards, g)
		}
	}
}

// judge adds the new version's requests inc (per bucket) to the bag one by
// one in a random order, betting on each one's conformal p-value; past
// MaxPerCall the rest stay out.
func (w *Watch) judge(inc []float64) {
	total := sum(inc)
	if total <= 0 {
		return
	}
	w.refresh()
	J := len(inc)
	n := min(total, MaxPerCall)
	w.dropped += total - n
	staleN := sum(w.bag)
	// The bag's requests above each bucket at the start of the call.
	above := make([]float64, J)
	for j := J - 2; j >= 0; j-- {
		above[j] = above[j+1] + w.bag[j+1]
	}
	bets := w.cellBag != nil
	rem := newFenwick(inc)
	remTotal := total
	added := newFenwick(make([]float64, J))
	addedArr := make([]float64, J)
	landed := make([]float64, len(w.seg))
	for k := 0.0; k < n; k++ {
		j := rem.find(w.rng.Float64() * remTotal)
		rem.add(j, -1)
		remTotal = max(0, remTotal-1)
		added.add(j, 1)
		addedArr[j]++
		N := staleN + k + 1
		a := above[j] + (k + 1 - added.prefix(j+1))
		b := w.bag[j] + addedArr[j]
		tau := 1 - w.rng.Float64()
		p := (a + tau*b) / N
		if bets {
			// The segment holding p: the last that starts at or below it.
			s, found := slices.BinarySearch(w.seg, p)
			if !found {
				s--
			}
			landed[max(s, 0)]++
		}
	}
	if bets {
		for i := range w.sums {
			s := 0.0
			for c, m := range landed {
				if m > 0 {
					s += m * w.lnv[i][c]
				}
			}
			w.sums[i] += s
		}
	}
	for j, v := range addedArr {
		w.bag[j] += v
	}
	w.judged += n
}

// refreshGrowth is how much the bag grows before the bets are computed
// anew. Bets computed from an older bag are still densities, fixed before
// the p-values they are applied to: only their fit to the buckets suffers,
// and little.
const refreshGrowth = 1.0 / 64

// refresh computes the bets from the bag, unless it grew less than
// refreshGrowth since the last time. Without requests in the bag there are
// no bets.
func (w *Watch) refresh() {
	N := sum(w.bag)
	if w.cellBag != nil && len(w.cellBag) == len(w.bag) && N <= sum(w.cellBag)*(1+refreshGrowth) {
		return
	}
	if !(N > 0) {
		w.cellBag = nil
		return
	}
	w.cellBag = slices.Clone(w.bag)
	w.bet()
}

// bet computes the bets from the bag cellBag. With N requests in it, b_j in
// bucket j and A_j in slower buckets, a request of bucket j has its p-value
// uniform on I_j = [A_j, A_j+b_j+1]/(N+1) (it counts itself). Each bet f
// puts on bucket j the mass m_j of f over the cell [A_j, A_j+b_j]/N, in
// scores (the cells partition the line, so Σ m_j = 1 whatever the rounding
// of the scores), and spreads it uniformly over I_j:
// the density Σ_j m_j·U(I_j), made non-increasing by pooling adjacent
// violators (which keeps its integral). It is constant on the segments
// between the ends of the I_j.
func (w *Watch) bet() {
	b := w.cellBag
	J := len(b)
	N := sum(b)
	Np := N + 1
	above := make([]float64, J)
	for j := J - 2; j >= 0; j-- {
		above[j] = above[j+1] + b[j+1]
	}
	ends := []float64{0, 1}
	for j := range J {
		ends = append(ends, above[j]/Np, (above[j]+b[j]+1)/Np)
	}
	slices.Sort(ends)
	ends = slices.Compact(ends)
	var seg, width []float64
	for k := 0; k+1 < len(ends); k++ {
		if ends[k] < ends[k+1] && ends[k] < 1 {
			seg = append(seg, ends[k])
			width = append(width, ends[k+1]-ends[k])
		}
	}
	w.seg = seg
	bets := w.t.bets
	w.lnv = make([][]float64, len(bets))
	dens := make([]float64, len(seg))
	for i := range bets {
		clear(dens)
		for j := range J {
			if b[j] <= 0 {
				continue
			}
			za, zb := score((above[j]+b[j])/N), score(above[j]/N)
			if !(za < zb) {
				continue
			}
			m := bets[i].mass(za, zb)
			lo, hi := above[j]/Np, (above[j]+b[j]+1)/Np
			d := m / (hi - lo)
			k, _ := slices.BinarySearch(seg, lo)
			for ; k < len(seg) && seg[k] < hi; k++ {
				dens[k] += d
			}
		}
		w.lnv[i] = nonIncreasing(dens, width)
	}
}

// nonIncreasing returns the logarithms of the weighted least-squares
// non-increasing fit of v (pool adjacent violators, weights w): a
// non-increasing step function with the same integral Σ v·w.
func nonIncreasing(v, w []float64) []float64 {
	type block struct {
		mean, width float64
		n           int
	}
	var bs []block
	for k := range v {
		bs = append(bs, block{v[k], w[k], 1})
		for len(bs) > 1 {
			a, c := bs[len(bs)-2], bs[len(bs)-1]
			if a.mean >= c.mean {
				break
			}
			// The weighted mean, without products that could underflow.
			width := a.width + c.width
			bs = append(bs[:len(bs)-2], block{a.mean + (c.mean-a.mean)*(c.width/width), width, a.n + c.n})
		}
	}
	out := make([]float64, 0, len(v))
	for _, b := range bs {
		lv := math.Log(max(b.mean, 1e-300))
		for range b.n {
			out = append(out, lv)
		}
	}
	return out
}

func sum(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}

// logAdd returns ln(e^a + e^b).
func logAdd(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	if math.IsInf(a, -1) {
		return a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// capExp returns e^x, at most e^690.
func capExp(x float64) float64 { return math.Exp(min(x, 690)) }
