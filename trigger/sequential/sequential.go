// Package sequential is Guardian's anytime-valid sequential test on counts:
// it decides from the errors and requests of a freshly deployed version (and
// of its baseline, or against an absolute limit) whether the version
// regressed, is healthy, or whether the evidence is inconclusive, with a
// false-rollback probability of at most Alpha however often it is checked.
//
// # Model
//
// Each request of a version fails independently with a probability that is
// constant over the watch: p for the new version, q for the baseline. The
// counts are cumulative since the deploy, so the test is a function of the
// counts alone: no state is needed for validity, and a missed or repeated
// evaluation changes nothing (beyond the tolerance of the search described
// below). (The Bernoulli likelihood only depends on the totals whatever the
// traffic does over time, which is why a canary whose weight changes needs
// no special care.)
//
// # Statistics
//
// The test is built from e-processes: non-negative processes E_t with
// P(sup_t E_t >= 1/a) <= a under their null hypothesis (Ville's inequality),
// which may therefore be checked at every tick.
//
//   - Against an absolute limit L ("above" of the trigger), the regression
//     e-process is a mixture likelihood ratio against the boundary:
//     N(L) = Σ_k w_k L(max(p_k, L)) / L(L), with L(p) = p^x (1-p)^(n-x) for
//     x errors in n requests and a discrete prior {w_k, p_k} over rates of
//     at least L×min_effect (or L+min_effect), plus a broad part whose
//     rates below L are moved onto it. Under any p <= L each term is a test
//     supermartingale: a request multiplies it by a factor of mean
//     p·p_k/L + (1-p)(1-p_k)/(1-L) <= 1 when p_k >= L. "Healthy" is the
//     mirror image, with rates at most L/min_effect.
//   - Against the baseline, whose rate q is only counted: the two-sample
//     e-processes below, which spend no share of alpha on the baseline.
//   - With both a baseline and a limit, each test gets alpha/2 (Bonferroni).
//
// # Comparing with a baseline
//
// The baseline is known by its counts before the deploy (Y0 errors in M0
// requests over the trigger's baseline_window, fixed when the watch
// starts) and since it (live counts that keep arriving, as in a canary).
// Assumed: the baseline's rate q is the same before and after the deploy,
// and over the watch. If the baseline itself degrades at the deploy (a
// shared dependency failing), the new version is compared with what the
// baseline was.
//
// For each value q of the baseline's rate, the product R_t(q) = N_t(q)·B_t(q)
// is a test supermartingale under every null pair (p <= q, baseline q):
//
//   - N_t(q) is the new version's factor above, with q as the limit. Its
//     prior is centred on the pre-deploy rate, known before any count of
//     the new version (without pre-deploy counts, the broad part alone).
//   - B_t(q) = w_0 + Σ_j w_j (q_j/q)^Y e^(-M(q_j-q)) is the baseline's:
//     Poisson likelihood ratios of all its counts (Y errors in M requests,
//     pre-deploy plus live) against q, for alternatives q_j = q·e^(-u_j)
//     below q, u_j = λ_j/sqrt(q·r_j + 1): about λ_j standard errors of a
//     sample of r_j requests, with r_j = M0 (and 4·M0, 16·M0 for a live
//     baseline that outgrows it; without pre-deploy counts, r_j from 16
//     requests up by factors of 4). The alternatives depend on q and on
//     request counts only, never on a counted error; the terms used are
//     those whose r_j is near the baseline's current request count
//     (leaving terms out only lowers B).
//
// Validity, for Bernoulli (not only Poisson) counts: binomial counts are
// sub-Poisson. For a request failing with probability q, the Poisson
// likelihood ratio's factor has mean (1 + q_j - q)·e^-(q_j-q) <= 1 (as
// 1 + z <= e^z), so each term of B is a supermartingale per baseline
// request, and N's terms per new-version request. The versions' outcomes
// are independent given which version serves each request; after the
// deploy that may depend on the past (a canary whose weight changes), and
// the pre-deploy request count M0 is taken as given (traffic does not
// depend on which requests failed). So R(q) is a test supermartingale in
// the filtration of all requests in their order of arrival, the
// pre-deploy requests first, starting from 1. Under a null
// with true rate q*, E_t = inf_q R_t(q) <= R_t(q*): Ville's inequality for
// R(q*) bounds the false-rollback probability by alpha.
//
// ln E adds the two log-evidences at the q between the two estimates
// that minimises their sum. In the Gaussian limit that is
// D²/2(σ_new² + σ_base²) minus the mixtures' costs: the uncertainties add
// in quadrature, where confidence bounds on q added them linearly (and
// took a share of alpha). "Healthy" is the mirror image: the infimum over
// q of a factor for p >= q×min_effect (or q+min_effect), with alternatives
// below it, times B with alternatives q(1+u_j) above q.
//
// Every factor is a likelihood ratio of independent requests, which only
// depends on the cumulative counts, not their order: E_t is a function of
// the counts at t. The test needs no state for validity, and a missed,
// late or repeated evaluation is the same supermartingale looked at
// another time, which Ville's inequality covers. Each term of N is
// non-decreasing in the new version's errors (its alternatives are at or
// above q; mirrored for health), and B for a regression decreases with the
// baseline's errors (for health it increases): more errors of the new
// version never lower the regression e-value nor raise the health
// e-value, and more errors of the baseline do the opposite.
//
// The conditional test of Lindon and Malek (given both versions' total
// errors, the new version's share is binomial with the share of requests
// n/(n+m)) is an e-process when both versions' requests grow in a fixed
// proportion, as concurrent streams with a constant split do. A fixed
// pre-deploy sample, or a canary whose weight changes, moves that share
// over the watch, and the mixture ratio's drift then depends on the unknown
// q: an e-value at each fixed time, not an e-process. The product above
// needs no such proportion.
//
// The infimum is computed, not approximated from above: N(q) is
// non-increasing up to x/n and non-decreasing after, B non-decreasing, so
// the infimum lies in [0, x/n], where any interval's lower bound follows
// from monotonicity and, tighter, from the derivatives at its ends with a
// bound on the curvature (N is convex in q, and B's terms have a
// computable bound). The search refines the interval with the lowest bound
// until that bound is within 1e-4 (plus 1e-6 relative) of the best value
// found and reports the bound, a smaller e-value and so still valid. It
// starts from the previous evaluation's minimiser, which changes the value
// only within that tolerance, never above the infimum.
//
// The reported e-value is the largest of the tests' e-values scaled by their
// share of alpha, so that "regressed" is exactly "E >= 1/alpha"; the
// always-valid p-value is min(1, 1/E). Zero or few counts give E near 1 or
// below: inconclusive, never regressed. No normal approximation is made,
// so the guarantee holds for a handful of requests as for millions.
//
// What it costs (docs/benchmarks.md: bench/detection, reduced run): against
// 30 minutes of pre-deploy baseline, the median requests to detect a
// 1.5x, 2x or 5x regression are 1.23–1.46 times those of Wald's SPRT that
// knows both rates wherever the baseline holds 1,800 errors or more; with
// 180 or 18 baseline errors, 1.3–1.9 times for 2x and 5x (1% → 5% at
// 1 req/s: 1.78, where bounds on the baseline's rate needed 4.7), and a
// 1.5x regression takes about half the watch. There the baseline's own
// uncertainty dominates: an SPRT that knows both rates but must still rule
// out the least favourable null needs 1.1–1.5 times the oracle. One
// decision costs about 5–10 µs.
package sequential

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Decision is the outcome of the test at one time.
type Decision int

// Decisions.
const (
	// Inconclusive: not enough evidence either way (always so with little or
	// no traffic).
	Inconclusive Decision = iota
	// Regressed: the new version is worse than the baseline (or above the
	// limit), with a false-rollback probability of at most Alpha.
	Regressed
	// Healthy: any regression is smaller than MinEffect (or, against a
	// limit, the rate is below it), with an error probability of at most
	// Alpha.
	Healthy
)

var decisionNames = [...]string{Inconclusive: "inconclusive", Regressed: "regressed", Healthy: "healthy"}

// String returns "inconclusive", "regressed" or "healthy".
func (d Decision) String() string {
	if d < 0 || int(d) >= len(decisionNames) {
		return "unknown"
	}
	return decisionNames[d]
}

// MarshalText encodes the decision as its name.
func (d Decision) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Effect is the smallest regression worth acting on: a ratio of error rates
// (Ratio > 1, "1.5x") or a difference (Delta in (0, 1), "+0.01"). Exactly
// one is set.
type Effect struct {
	Ratio float64
	Delta float64
}

// IsRatio reports whether e is a ratio rather than a difference.
func (e Effect) IsRatio() bool { return e.Ratio > 0 }

// String writes the effect as configured: "1.5x" or "+0.01".
func (e Effect) String() string {
	if e.IsRatio() {
		return strconv.FormatFloat(e.Ratio, 'g', -1, 64) + "x"
	}
	return "+" + strconv.FormatFloat(e.Delta, 'g', -1, 64)
}

// DefaultAlpha is the default false-rollback budget.
const DefaultAlpha = 0.001

// Config configures a Test.
type Config struct {
	// Alpha bounds the probability of a false rollback (and of a false
	// "healthy") over the whole watch, however often the test is checked.
	Alpha float64
	// MinEffect is the smallest regression worth acting on.
	MinEffect Effect
	// Limit, when set, is an absolute limit on the new version's error
	// ratio, tested on its own (no baseline needed).
	Limit *float64
}

// ErrInvalidConfig is wrapped by the errors of New and Config.Validate.
var ErrInvalidConfig = errors.New("invalid sequential test")

// Validate checks that Alpha is in (0, 0.5], MinEffect is a ratio above 1
// or a difference in (0, 1), and Limit, if set, is in (0, 1).
func (c Config) Validate() error {
	switch e := c.MinEffect; {
	case !(c.Alpha > 0 && c.Alpha <= 0.5):
		return fmt.Errorf("alpha %g must be in (0, 0.5]: %w", c.Alpha, ErrInvalidConfig)
	case e.Ratio != 0 && e.Delta != 0:
		return fmt.Errorf("min_effect: set a ratio or a difference, not both: %w", ErrInvalidConfig)
	case e.IsRatio() && !(e.Ratio > 1 && !math.IsInf(e.Ratio, 0)):
		return fmt.Errorf("min_effect %s: a ratio must be above 1: %w", e, ErrInvalidConfig)
	case !e.IsRatio() && !(e.Delta > 0 && e.Delta < 1):
		return fmt.Errorf("min_effect %s: a difference must be in (0, 1): %w", e, ErrInvalidConfig)
	case c.Limit != nil && !(*c.Limit > 0 && *c.Limit < 1):
		return fmt.Errorf("limit %g must be an error ratio in (0, 1): %w", *c.Limit, ErrInvalidConfig)
	}
	return nil
}

// Test is a configured sequential test. It is immutable and safe for
// concurrent use; Watch starts its use for one deploy.
type Test struct {
	cfg Config
	// The absolute limit's priors do not depend on the deploy.
	regAbs, healthyAbs *prior
}

// New returns the test for c.
func New(c Config) (*Test, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	t := &Test{cfg: c}
	if c.Limit != nil {
		t.regAbs = regressionPrior(*c.Limit, c.MinEffect, 0)
		t.healthyAbs = limitHealthyPrior(*c.Limit, c.MinEffect)
	}
	return t, nil
}

// Config returns the test's configuration.
func (t *Test) Config() Config { return t.cfg }

// Counts are cumulative counts since the deploy (or, for the pre-deploy
// baseline, over a period before it). Non-integer values, as PromQL's
// increase() returns, are rounded to the nearest integer; negative and NaN
// values count as 0 and errors are capped at requests.
type Counts struct {
	Errors   float64
	Requests float64
}

// Add returns c+o.
func (c Counts) Add(o Counts) Counts {
	return Counts{Errors: c.Errors + o.Errors, Requests: c.Requests + o.Requests}
}

// Rate returns Errors/Requests, NaN without requests.
func (c Counts) Rate() float64 {
	if c.Requests <= 0 {
		return math.NaN()
	}
	return c.Errors / c.Requests
}

// Clean returns c rounded to whole counts, as the test uses them.
func (c Counts) Clean() Counts {
	n := roundCount(c.Requests)
	return Counts{Errors: min(roundCount(c.Errors), n), Requests: n}
}

func roundCount(v float64) float64 {
	if !(v > 0) || math.IsInf(v, 1) {
		return 0
	}
	return math.Floor(v + 0.5)
}

// Watch is the test applied to one deploy. Its methods are not safe for
// concurrent use (it keeps the previous evaluation's minimisers to start
// the next search from).
type Watch struct {
	t           *Test
	hasBaseline bool
	pre         Counts
	// two compares with the baseline (nil without one).
	two *twoSample
	// Shares of alpha of the relative (aRel) and absolute (aAbs) tests.
	aRel, aAbs float64
}

// Watch starts the test for a deploy. baseline says whether the deploy has
// a baseline version to compare with (not whether it has data); pre is the
// baseline's counts over a period before the deploy, taken when the deploy
// was seen (zero when unknown). What Watch decides here depends on no data
// of the new version, as the validity of the test requires.
func (t *Test) Watch(baseline bool, pre Counts) *Watch {
	w := &Watch{t: t, hasBaseline: baseline, pre: pre.Clean()}
	switch {
	case baseline && t.cfg.Limit != nil:
		w.aRel, w.aAbs = t.cfg.Alpha/2, t.cfg.Alpha/2
	case baseline:
		w.aRel = t.cfg.Alpha
	case t.cfg.Limit != nil:
		w.aAbs = t.cfg.Alpha
	}
	if baseline {
		w.two = newTwoSample(w.pre, t.cfg.MinEffect)
	}
	return w
}

// HasBaseline reports whether the watch compares with a baseline.
func (w *Watch) HasBaseline() bool { return w.hasBaseline }

// Result is the test's finding at one time, with its evidence.
type Result struct {
	Decision Decision
	// E is the evidence of a regression: Regressed once E >= 1/Alpha. It
	// is the largest of the tests' e-values, each scaled by its share of
	// Alpha. P = min(1, 1/E) is an always-valid p-value.
	E float64
	// EHealthy is the evidence that any regression is below MinEffect (or
	// the rate below the limit): Healthy once every applicable test has
	// EHealthy >= 1/Alpha after the same scaling (the smallest is reported).
	EHealthy float64
	// Alpha is the configured false-rollback budget.
	Alpha float64

	// New and Baseline are the counts judged, cleaned; Baseline is the
	// pre-deploy counts plus the live counts since the deploy.
	New, Baseline Counts
	// Relative and Absolute say which tests ran.
	Relative, Absolute bool

	// NewRate is the new version's error ratio, with its confidence
	// sequence [NewLower, NewUpper] at level 1-Alpha/2 (1-Alpha when only
	// the limit is tested).
	NewRate, NewLower, NewUpper float64
	// BaselineRate is the baseline's error ratio with its confidence
	// sequence at level 1-Alpha/2 (relative test only; NaN otherwise).
	BaselineRate, BaselineLower, BaselineUpper float64
	// Effect is the estimated effect of the relative test, the ratio
	// NewRate/BaselineRate or the difference NewRate-BaselineRate as
	// MinEffect is written, with an anytime-valid interval at level
	// 1-Alpha (from the two sequences). NaN when no relative test ran.
	Effect, EffectLower, EffectUpper float64
}

// P returns the always-valid p-value min(1, 1/E).
func (r Result) P() float64 {
	if !(r.E > 1) {
		return 1
	}
	return 1 / r.E
}

// Judge runs the test on the new version's counts and the baseline's live
// counts since the deploy, and returns the decision with its evidence.
func (w *Watch) Judge(newCounts, live Counts) Result {
	r := w.judge(newCounts, live)
	a := w.t.cfg.Alpha
	x, n := r.New.Errors, r.New.Requests
	r.NewRate = rateOf(x, n)
	r.BaselineRate, r.BaselineLower, r.BaselineUpper = math.NaN(), math.NaN(), math.NaN()
	r.Effect, r.EffectLower, r.EffectUpper = math.NaN(), math.NaN(), math.NaN()
	if !r.Relative {
		r.NewLower, r.NewUpper = confidence(x, n, a)
		return r
	}
	r.NewLower, r.NewUpper = confidence(x, n, a/2)
	bx, bn := r.Baseline.Errors, r.Baseline.Requests
	r.BaselineRate = rateOf(bx, bn)
	r.BaselineLower, r.BaselineUpper = confidence(bx, bn, a/2)
	if w.t.cfg.MinEffect.IsRatio() {
		r.Effect = ratio(r.NewRate, r.BaselineRate)
		r.EffectLower = ratio(r.NewLower, r.BaselineUpper)
		r.EffectUpper = ratio(r.NewUpper, r.BaselineLower)
	} else {
		r.Effect = r.NewRate - r.BaselineRate
		r.EffectLower = r.NewLower - r.BaselineUpper
		r.EffectUpper = r.NewUpper - r.BaselineLower
	}
	return r
}

// Decide is Judge without the confidence intervals for display: the
// decision and e-values only. It is what the detection benchmark runs.
func (w *Watch) Decide(newCounts, live Counts) Result { return w.judge(newCounts, live) }

func (w *Watch) judge(newCounts, live Counts) Result {
	cfg := w.t.cfg
	nc := newCounts.Clean()
	r := Result{Alpha: cfg.Alpha, New: nc, E: 0, EHealthy: math.Inf(1)}
	x, n := nc.Errors, nc.Requests
	regressed, healthy, ran := false, true, false
	mx := getMixes()
	if w.hasBaseline {
		ran, r.Relative = true, true
		base := w.pre.Add(live.Clean())
		r.Baseline = base
		lnE, lnH := w.two.evidence(x, n, base, mx)
		regressed, healthy = w.combine(&r, lnE, lnH, w.aRel, regressed, healthy)
	}
	if lim := cfg.Limit; lim != nil {
		ran, r.Absolute = true, true
		mx.reg.reset(w.t.regAbs, x, n, true)
		mx.healthy.reset(w.t.healthyAbs, x, n, false)
		lnE, _ := mx.reg.at(*lim)
		lnH, _ := mx.healthy.at(*lim)
		regressed, healthy = w.combine(&r, lnE, lnH, w.aAbs, regressed, healthy)
	}
	putMixes(mx)
	switch {
	case !ran:
		r.EHealthy = 0
	case regressed:
		r.Decision = Regressed
	case healthy:
		r.Decision = Healthy
	}
	return r
}

// combine folds one test's log e-values, run at level a, into r. A NaN
// (which no counts should produce) counts as no evidence.
func (w *Watch) combine(r *Result, lnE, lnH, a float64, regressed, healthy bool) (bool, bool) {
	if math.IsNaN(lnE) {
		lnE = math.Inf(-1)
	}
	if math.IsNaN(lnH) {
		lnH = math.Inf(-1)
	}
	alpha := w.t.cfg.Alpha
	scale := math.Log(a / alpha)
	r.E = max(r.E, math.Exp(min(lnE+scale, maxLnE)))
	r.EHealthy = min(r.EHealthy, math.Exp(min(lnH+scale, maxLnE)))
	thr := math.Log(1 / a)
	return regressed || lnE >= thr, healthy && lnH >= thr
}

func rateOf(x, n float64) float64 {
	if n <= 0 {
		return math.NaN()
	}
	return x / n
}

// ratio divides rates, with 0/0 = NaN and x/0 = +Inf.
func ratio(a, b float64) float64 {
	switch {
	case math.IsNaN(a) || math.IsNaN(b):
		return math.NaN()
	case b == 0 && a == 0:
		return math.NaN()
	case b == 0:
		return math.Inf(1)
	}
	return a / b
}

// mle returns x/n, 0 without requests.
func mle(x, n float64) float64 {
	if n <= 0 {
		return 0
	}
	return x / n
}

// logLik is the Bernoulli log-likelihood x·ln p + (n-x)·ln(1-p), with
// 0·ln 0 = 0.
func logLik(x, n, p float64) float64 {
	var l float64
	if x > 0 {
		if p <= 0 {
			return math.Inf(-1)
		}
		l += x * math.Log(p)
	}
	if n-x > 0 {
		if p >= 1 {
			return math.Inf(-1)
		}
		l += (n - x) * math.Log1p(-p)
	}
	return l
}

// prior is a discrete mixing distribution over error rates, sorted by rate.
// It is immutable once built (the broad grid's prior is shared by every
// watch), and its slices share one array of exactly their size.
type prior struct {
	p, lp, lq, lw []float64 // rate, ln rate, ln(1-rate), ln weight
	// cw[k] is the weight of the rates below p[k], cwAbove[k] that of p[k]
	// and above (len(p)+1 entries each). Each is kept only when the prior
	// is used on that side of a boundary (see boundaryMix): cw for
	// alternatives above it (a regression), cwAbove for those below it
	// (health); the other is nil.
	cw, cwAbove []float64
}

// Grid of the priors: rates step by a factor of priorStep; the weights of
// the targeted part decay by priorDecay per step away from the boundary,
// and the broad part (a log-uniform grid from 1e-6 to 0.999, for robustness
// when the pre-deploy rate is a poor guide) gets broadWeight.
const (
	priorStep   = 1.25
	priorDecay  = 0.85
	broadStep   = 2
	broadWeight = 0.1
	minRate     = 1e-7
	// healthySpan bounds how far below its start the healthy prior goes.
	healthySpan = 1e-3
	maxRate     = 0.999
)

// regressionPrior targets rates from ref×ratio (or ref+delta), but at
// least from floor, upwards.
func regressionPrior(ref float64, e Effect, floor float64) *prior {
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
	return mixWithBroad(ps, true)
}

// relativeHealthyPrior targets rates from the baseline's (ratio 1) downwards.
func relativeHealthyPrior(ref float64) *prior {
	return mixWithBroad(downFrom(min(ref, maxRate)), false)
}

// limitHealthyPrior targets rates from limit/ratio (or limit-delta)
// downwards.
func limitHealthyPrior(limit float64, e Effect) *prior {
	start := limit / priorStep
	if e.IsRatio() {
		start = limit / e.Ratio
	} else if limit-e.Delta > 0 {
		start = limit - e.Delta
	}
	return mixWithBroad(downFrom(start), false)
}

func downFrom(start float64) []float64 {
	var ps []float64
	for p := start; p >= max(minRate, start*healthySpan); p /= priorStep {
		ps = append(ps, p)
	}
	return ps
}

func broadRates() []float64 {
	var ps []float64
	for p := 1e-6; p < maxRate; p *= broadStep {
		ps = append(ps, p)
	}
	return ps
}

// broadPrior is the broad grid alone, for a baseline without pre-deploy
// data, on either side of a boundary. It is the same for every watch.
var broadPrior = func() *prior {
	ps := broadRates()
	w := make([]float64, len(ps))
	for i := range w {
		w[i] = 1 / float64(len(ps))
	}
	return newPrior(ps, w, true, true)
}()

// mixWithBroad weighs the targeted rates ps by priorDecay^k, normalised to
// 1-broadWeight, and adds the broad grid with broadWeight. The prior is
// for alternatives above a boundary (above) or below it.
func mixWithBroad(ps []float64, above bool) *prior {
	if len(ps) == 0 {
		return broadPrior
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
	broad := broadRates()
	for _, p := range broad {
		ps = append(ps, p)
		ws = append(ws, broadWeight/float64(len(broad)))
	}
	return newPrior(ps, ws, above, !above)
}

// weightSlack lowers every log weight a little, so that mixture weights
// sum to less than 1 after rounding: without data, an e-value stays at or
// below 1.
const weightSlack = 1e-12

// newPrior sorts the rates ps with their weights ws into a prior, with
// the cumulative weights for alternatives above a boundary (above) and
// below it (below).
func newPrior(ps, ws []float64, above, below bool) *prior {
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
	m := len(ps)
	size := 4 * m
	if above {
		size += m + 1
	}
	if below {
		size += m + 1
	}
	buf := make([]float64, size)
	next := func(k int) []float64 {
		s := buf[:k:k]
		buf = buf[k:]
		return s
	}
	pr := &prior{p: next(m), lp: next(m), lq: next(m), lw: next(m)}
	for k, i := range idx {
		p := ps[i]
		pr.p[k] = p
		pr.lp[k] = math.Log(p)
		pr.lq[k] = math.Log1p(-p)
		pr.lw[k] = math.Log(ws[i]) - weightSlack
	}
	if above {
		pr.cw = next(m + 1)
		for k := range m {
			pr.cw[k+1] = pr.cw[k] + math.Exp(pr.lw[k])
		}
	}
	if below {
		pr.cwAbove = next(m + 1)
		for k := m - 1; k >= 0; k-- {
			pr.cwAbove[k] = pr.cwAbove[k+1] + math.Exp(pr.lw[k])
		}
	}
	return pr
}

// confidence returns the anytime-valid confidence sequence for a Bernoulli
// rate at level 1-a after x errors in n requests: the rates q for which the
// beta-binomial mixture (Beta(1/2, 1/2), Robbins' construction) against q
// stays below 1/a. It is [0, 1] without requests.
func confidence(x, n, a float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	return region(x, n, lbeta(x+0.5, n-x+0.5)-lbeta(0.5, 0.5), math.Log(1/a))
}

// region returns the interval of rates q with lnNum - logLik(q) < thr
// (lnNum is at most the maximum of the log-likelihood, so it contains x/n).
// Its ends are returned slightly outside, so the interval never shrinks by
// numerical error.
func region(x, n, lnNum, thr float64) (lo, hi float64) {
	// g(u) = lnNum - logLik(q) - thr with q = expit(u): the interval is
	// where g < 0; g' = n·q - x.
	g := func(u float64) (float64, float64) {
		q := expit(u)
		return lnNum - logLik(x, n, q) - thr, n*q - x
	}
	const tiny = 1e-15
	p := min(max(x/n, tiny), 1-tiny) // inside the logit's domain
	// Newton starts from the normal approximation of the ends.
	half := math.Sqrt(2*max(thr, 1)*max(p*(1-p), 1/n)/n) + 1/n
	lo, hi = 0, 1
	if x > 0 {
		if v, _ := g(logit(tiny)); v > 0 {
			lo = expit(root(g, logit(tiny), logit(p), logit(max(p-half, tiny))) - 1e-9)
		}
	}
	if x < n {
		if v, _ := g(logit(1 - tiny)); v > 0 {
			hi = expit(root(g, logit(p), logit(1-tiny), logit(min(p+half, 1-tiny))) + 1e-9)
		}
	}
	return lo, hi
}

// root finds the zero of the monotone g between a and b, where g has
// opposite signs, by Newton's method from start (moved to the middle when
// outside), safeguarded with bisection.
func root(g func(float64) (float64, float64), a, b, start float64) float64 {
	ga, _ := g(a)
	u := start
	if !(u > a && u < b) {
		u = (a + b) / 2
	}
	for range 100 {
		v, dv := g(u)
		if v == 0 {
			return u
		}
		if (v > 0) == (ga > 0) {
			a, ga = u, v
		} else {
			b = u
		}
		if b-a < 1e-10 {
			break
		}
		next := u - v/dv
		if dv == 0 || math.IsNaN(next) || next <= a || next >= b {
			next = (a + b) / 2
		} else if math.Abs(next-u) < 1e-10 {
			return next
		}
		u = next
	}
	return (a + b) / 2
}

func logit(p float64) float64 { return math.Log(p) - math.Log1p(-p) }
func expit(u float64) float64 { return 1 / (1 + math.Exp(-u)) }

func lbeta(a, b float64) float64 {
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	return la + lb - lab
}

// Confidence returns the anytime-valid confidence sequence for the error
// ratio of counts c at level 1-a: the interval that holds the true rate at
// every time at once with probability at least 1-a, as counts accrue (the
// sequence of Result's NewLower/NewUpper and BaselineLower/BaselineUpper,
// which use a = Alpha/2). Counts are cleaned first; without requests it is
// [0, 1]. a must be in (0, 1).
func Confidence(c Counts, a float64) (lo, hi float64) {
	c = c.Clean()
	return confidence(c.Errors, c.Requests, a)
}
