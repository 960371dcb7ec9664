// Package changepoint detects a regression that starts, or grows, after a
// deploy: a sequential change detector on error counts (an e-detector in the
// sense of Shin, Ramdas and Rinaldo, "E-detectors: a nonparametric framework
// for sequential change detection", 2023) with a false-alarm probability of
// at most Alpha however long it runs and however often it is checked.
//
// A test of all the data since the deploy (package trigger/sequential) is
// diluted by the healthy start of a slow burn; this detector weighs the
// evidence of every possible start of the regression instead, and raises an
// alarm as soon as the data since some start are convincing.
//
// # Model
//
// At each evaluation tick the caller hands in the new version's errors and
// requests in that tick (increments, not totals) and q0, a bound on the
// error ratio the new version should not exceed (typically the baseline's
// upper confidence bound). Each request of the tick fails independently with
// the new version's current rate p_t. The null hypothesis is "p_t <= q0_t at
// every tick": the version never got worse than the bound.
//
// # Statistic
//
// For an alternative ratio r, the tick's e-value is the Bernoulli
// likelihood ratio of p = min(q0·r, 0.999) against q0,
//
//	e_t(r) = (p/q0)^x · ((1-p)/(1-q0))^(n-x)    (x errors in n requests),
//
// whose expectation is at most 1 under any p_t <= q0 (it is increasing in
// p_t and equal to 1 at q0), exactly for any counts: no normal
// approximation. A tick without requests has e-value 1.
//
// Possible starts of the change are the beginnings of blocks of Block
// (10 s by default) from the deploy up to Window, each with a weight π_j
// (the weights sum to 1: see Detector for their shape). The ratio after the
// change is unknown: a grid of ratios r_k from MinEffect upwards, with
// weights w_k summing to 1. The statistic is the mixture
//
//	M_t = Σ_k w_k Σ_{j started} π_j Π_{ticks i >= start j} e_i(r_k) + Σ_{j not started yet} π_j,
//
// kept with one recursion per ratio, A_t(r) = (A_{t-1}(r) + π_new)·e_t(r):
// O(number of ratios) memory and time per tick, whatever the number of
// ticks. Under the null each term of the mixture is a non-negative
// supermartingale (the weight of a start stays constant until that start,
// then is multiplied by e-values), so M is a non-negative supermartingale
// with M_0 = 1, and by Ville's inequality
//
//	P(M_t >= 1/Alpha for some t) <= Alpha,
//
// over the whole run, ticks after Window included (they add no new starts).
// (With a prior over the change time this is a Shiryaev-type statistic.)
//
// The guarantee is a probability over the watch, which is what a rollback
// needs, rather than an average run length. Two classic detectors compare
// as follows. With uniform weights 1/T over T starts, M_t is, up to the
// weight of the starts still to come, the Shiryaev–Roberts statistic R_t
// divided by T; R_t is a non-negative submartingale with E[R_t] = t
// (R_t - t is a martingale), so Doob's inequality gives
// P(max_{t<=T} R_t >= T/Alpha) <= Alpha: the alarm M_t >= 1/Alpha is that
// Shiryaev–Roberts alarm at T/Alpha. A CUSUM (max over starts) alarm at
// 1/Alpha bounds the average run length under the null by 1/Alpha ticks,
// but the probability of a false alarm within T ticks only by T·Alpha; at
// T/Alpha it is valid but never above M_t's alarm, since the max is at most
// the sum. The weights here are not uniform (see Detector): they keep the
// price of a start at the deploy small, where most regressions begin.
//
// # The bound q0
//
// The guarantee is conditional on q0_t being a true bound: if the caller's
// q0 holds at every tick with probability at least 1-α_b (a confidence
// sequence of the baseline's rate at level 1-α_b, on data independent of the
// new version's), a false alarm has probability at most Alpha + α_b. q0 may
// move from tick to tick but must not depend on the new version's counts.
// Tick times (At) must not depend on them either: they come from the clock.
//
// # Blocks
//
// Starts on a grid of blocks rather than at every tick cut the price of not
// knowing the start (ln of one over its weight) without coarsening the
// checks: the statistic is evaluated at every tick, and a change that starts
// inside a block is caught by the next block's start, at the cost of the
// evidence of one partial block.
//
// # Detection delay
//
// Simulated at 1 to 1,000 req/s with baselines of 0.1% and 1%, alpha 0.001
// and min_effect 1.5 (README.md has the tables and the command), in median
// requests to alarm over those of Wald's SPRT that knows the change's
// shape: against a known limit, a slow burn from 1x to 5x over 10 minutes
// takes 1.12–1.17x (1.37x at 1,000 req/s and 1%), where a test of all the
// data since the deploy takes 1.17–1.24x (1.73x); a step to 3x at minute 5
// takes 1.00–1.30x (all the data: 1.13–1.38x); 5x from the deploy takes
// 1.25–1.36x (all the data: 1.16–1.24x: the price of the other starts).
// Against 30 minutes of pre-deploy baseline (q0 its upper bound), slow
// burns take 1.40–1.53x from 10 req/s up (all the data: 1.47–1.88x), and
// 2.4x at 10 req/s and 0.1%, where the baseline's 18 errors bound its rate
// only within about 2.3 times their ratio. Uniform weights over the window
// (the classic Shiryaev–Roberts detector, starts every 1 to 60 s) are as
// fast on steps, a little slower on burns (1.16–1.28x; 1.39–1.62x) and need
// 1.7–2.5x on regressions present from the deploy.
package changepoint

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// DefaultAlpha is the default false-alarm budget.
const DefaultAlpha = 0.001

// DefaultBlock is the default spacing of the possible starts of a change.
const DefaultBlock = 10 * time.Second

// DefaultMinEffect is the default smallest ratio of error rates to detect.
const DefaultMinEffect = 1.5

// maxBlocks bounds Window/Block, the number of possible starts.
const maxBlocks = 1 << 20

// Config configures a Detector.
type Config struct {
	// Alpha bounds the probability of a false alarm over the whole run,
	// however often it is checked (given a true bound q0).
	Alpha float64
	// Window is the span after the deploy in which a change may start.
	// Ticks after it are still judged, against the starts before it.
	Window time.Duration
	// Block is the spacing of the possible starts (DefaultBlock when 0).
	Block time.Duration
	// MinEffect is the smallest ratio p/q0 worth detecting (above 1). The
	// alternatives range from it upwards; the null is p <= q0 regardless,
	// and a smaller effect is detected too, given enough data. When q0 is
	// a conservative bound (an upper confidence bound of the baseline's
	// rate) rather than the rate itself, a regression of the baseline's
	// rate by some factor is a smaller ratio to q0: lower MinEffect
	// accordingly.
	MinEffect float64
}

// ErrInvalidConfig is wrapped by the errors of New and Config.Validate.
var ErrInvalidConfig = errors.New("invalid change detector")

// ErrState is wrapped by the errors of Detector.Resume.
var ErrState = errors.New("change detector state does not match its configuration")

// Validate checks that Alpha is in (0, 0.5], Window is positive, Block is
// not negative and at most Window, Window/Block is at most about a million,
// and MinEffect is a ratio above 1.
func (c Config) Validate() error {
	block := c.block()
	switch {
	case !(c.Alpha > 0 && c.Alpha <= 0.5):
		return fmt.Errorf("alpha %g must be in (0, 0.5]: %w", c.Alpha, ErrInvalidConfig)
	case c.Window <= 0:
		return fmt.Errorf("window %v must be positive: %w", c.Window, ErrInvalidConfig)
	case c.Block < 0:
		return fmt.Errorf("block %v must not be negative: %w", c.Block, ErrInvalidConfig)
	case block > c.Window:
		return fmt.Errorf("block %v must be at most the window %v: %w", block, c.Window, ErrInvalidConfig)
	case c.Window/block > maxBlocks:
		return fmt.Errorf("window %v holds more than %d blocks of %v: %w", c.Window, maxBlocks, block, ErrInvalidConfig)
	case !(c.MinEffect > 1 && c.MinEffect < maxRatio):
		return fmt.Errorf("min_effect %g must be a ratio in (1, %g): %w", c.MinEffect, float64(maxRatio), ErrInvalidConfig)
	}
	return nil
}

func (c Config) block() time.Duration {
	if c.Block == 0 {
		return DefaultBlock
	}
	return c.Block
}

// Grid of post-change ratios: from MinEffect up by ratioStep to maxRatio,
// weights decaying by ratioDecay per step (small effects need the weight:
// large ones are detected quickly anyway). Rates are capped at maxRate.
const (
	ratioStep  = 1.25
	ratioDecay = 0.85
	maxRatio   = 1000
	maxRate    = 0.999
)

// Detector is a configured change detector. It is immutable and safe for
// concurrent use; Start begins a run for one deploy.
//
// The weights of the starts: half on the deploy itself (block 0), where a
// regression present from the start, or a burn that begins with the
// deploy, is best caught; the other half spread over the window's J blocks
// in proportion to 1/(j+1), so that a change early in the watch (the likely
// case after a deploy) costs little more evidence than one at the deploy.
// The price of a start is ln(1/π_j) nats of evidence: about 0.5 at the
// deploy, 3 ten seconds later and ln(2·J·(ln J + 0.58)) at the end of the
// window (7.6 for 30 minutes of 10 s blocks, against 5.2 for uniform
// weights, which pay those 5.2 at the deploy too).
type Detector struct {
	cfg   Config
	block time.Duration
	// Ratios and their log weights.
	r, lnW []float64
	// lnPi[j] is the log weight of a start at block j; cum[j] the total
	// weight of blocks before j (cum[J] = 1).
	lnPi, cum []float64
	lnThr     float64
	key       string
}

// New returns the detector for c.
func New(c Config) (*Detector, error) {
	return newWith(c, defaultDesign)
}

// design holds the shapes of the weights, fixed for users and varied by
// the package's study of detection delays.
type design struct {
	// deployWeight is the weight of a start at the deploy; the rest is
	// spread over the blocks (0 included) by shape.
	deployWeight float64
	shape        shape
	// Ratio grid: from MinEffect up by step, weights decaying by decay.
	step, decay float64
}

type shape int

const (
	uniform   shape = iota // 1/J
	harmonic               // ∝ 1/(j+1)
	quadratic              // ∝ 1/((j+1)(j+2))
)

var defaultDesign = design{deployWeight: 0.5, shape: harmonic, step: ratioStep, decay: ratioDecay}

func newWith(c Config, ds design) (*Detector, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d := &Detector{cfg: c, block: c.block(), lnThr: math.Log(1 / c.Alpha)}
	d.key = fmt.Sprintf("alpha=%g window=%v block=%v min_effect=%g", c.Alpha, c.Window, d.block, c.MinEffect)

	// Ratios.
	var ws []float64
	sum := 0.0
	wk := 1.0
	for r := c.MinEffect; r < maxRatio*ds.step; r *= ds.step {
		d.r = append(d.r, min(r, maxRatio))
		ws = append(ws, wk)
		sum += wk
		wk *= ds.decay
	}
	for _, w := range ws {
		d.lnW = append(d.lnW, math.Log(w/sum))
	}

	// Starts.
	nb := int((c.Window + d.block - 1) / d.block)
	pi := make([]float64, nb)
	total := 0.0
	for j := range pi {
		switch ds.shape {
		case uniform:
			pi[j] = 1
		case harmonic:
			pi[j] = 1 / float64(j+1)
		case quadratic:
			pi[j] = 1 / (float64(j+1) * float64(j+2))
		}
		total += pi[j]
	}
	d.lnPi = make([]float64, nb)
	d.cum = make([]float64, nb+1)
	for j := range pi {
		pi[j] *= (1 - ds.deployWeight) / total
		if j == 0 {
			pi[j] += ds.deployWeight
		}
		d.lnPi[j] = math.Log(pi[j])
		d.cum[j+1] = d.cum[j] + pi[j]
	}
	return d, nil
}

// Config returns the detector's configuration.
func (d *Detector) Config() Config { return d.cfg }

// Threshold returns 1/Alpha, the alarm threshold of the statistic.
func (d *Detector) Threshold() float64 { return 1 / d.cfg.Alpha }

// State is a run's whole state, to save across restarts (it encodes as
// JSON: every number is finite). Its zero value is a run with no ticks.
type State struct {
	// Key identifies the configuration the state belongs to.
	Key string `json:"key"`
	// Started is the number of blocks whose start has been counted.
	Started int `json:"started"`
	// LogA[k] is ln Σ_j π_j Π e(r_k) over the started blocks (the
	// Shiryaev–Roberts-type sum for ratio k); LogC[k] the largest term of
	// that sum (CUSUM-type) and StartC[k] its block, for the estimate of
	// the start. Empty before the first start.
	LogA   []float64 `json:"log_a,omitempty"`
	LogC   []float64 `json:"log_c,omitempty"`
	StartC []int     `json:"start_c,omitempty"`
}

// Run is the detector applied to one deploy. It is not safe for concurrent
// use.
type Run struct {
	d *Detector
	s State
	// Cache of the per-ratio log-likelihood-ratio factors for the last q0.
	q0     float64
	lp, lq []float64
}

// Start begins a run at the deploy.
func (d *Detector) Start() *Run {
	return &Run{d: d, s: State{Key: d.key}, q0: math.NaN()}
}

// Resume continues a run from a saved state. It fails (wrapping ErrState)
// when the state belongs to another configuration; a new run then spends a
// new false-alarm budget.
func (d *Detector) Resume(s State) (*Run, error) {
	k := len(d.r)
	switch {
	case s.Key != d.key:
		return nil, fmt.Errorf("state of %q, detector %q: %w", s.Key, d.key, ErrState)
	case s.Started < 0 || s.Started > len(d.lnPi):
		return nil, fmt.Errorf("%d blocks started of %d: %w", s.Started, len(d.lnPi), ErrState)
	case s.Started == 0 && (len(s.LogA)+len(s.LogC)+len(s.StartC) > 0):
		return nil, fmt.Errorf("sums before any start: %w", ErrState)
	case s.Started > 0 && (len(s.LogA) != k || len(s.LogC) != k || len(s.StartC) != k):
		return nil, fmt.Errorf("%d/%d/%d sums for %d ratios: %w", len(s.LogA), len(s.LogC), len(s.StartC), k, ErrState)
	}
	for i := range s.LogA {
		if math.IsNaN(s.LogA[i]) || math.IsInf(s.LogA[i], 0) || math.IsNaN(s.LogC[i]) || math.IsInf(s.LogC[i], 0) ||
			s.StartC[i] < 0 || s.StartC[i] >= s.Started {
			return nil, fmt.Errorf("ratio %g: invalid sums: %w", d.r[i], ErrState)
		}
	}
	s.LogA = append([]float64(nil), s.LogA...)
	s.LogC = append([]float64(nil), s.LogC...)
	s.StartC = append([]int(nil), s.StartC...)
	return &Run{d: d, s: s, q0: math.NaN()}, nil
}

// State returns a copy of the run's state.
func (r *Run) State() State {
	s := r.s
	s.LogA = append([]float64(nil), s.LogA...)
	s.LogC = append([]float64(nil), s.LogC...)
	s.StartC = append([]int(nil), s.StartC...)
	return s
}

// Tick is what one evaluation saw of the new version.
type Tick struct {
	// At is the end of the tick, as time since the deploy.
	At time.Duration
	// Errors and Requests are the new version's counts during the tick.
	// They are rounded to whole numbers; negative, NaN and infinite values
	// count as 0, values above 1e15 as 1e15, and errors are capped at
	// requests.
	Errors, Requests float64
	// Q0 is the bound on the error ratio (see the package comment). A tick
	// with Q0 outside (0, 1) carries no evidence.
	Q0 float64
}

// Result is the detector's finding after a tick.
type Result struct {
	// Alarm is set once E >= Threshold: a change, with a false-alarm
	// probability of at most Alpha over the whole run.
	Alarm bool
	// E is the statistic M_t, an e-value (1/E is an always-valid
	// p-value); LogE its logarithm, finite even where E overflows.
	E, LogE float64
	// Threshold is 1/Alpha.
	Threshold float64
	// Start estimates when the change began (the start of the block that
	// contributes most), and Ratio the ratio p/q0 since then (the grid's
	// ratio that contributes most). Zero before the first tick.
	Start time.Duration
	Ratio float64
}

// Observe adds a tick and returns the finding. Ticks should come in order
// of At; a tick earlier than the last adds no start.
func (r *Run) Observe(t Tick) Result {
	d := r.d
	k := len(d.r)
	// Starts of the blocks that began before the end of this tick (the
	// first tick always counts block 0).
	end := 1
	switch {
	case t.At >= d.cfg.Window:
		end = len(d.lnPi)
	case t.At > 0:
		end = int((t.At + d.block - 1) / d.block)
	}
	if end > r.s.Started {
		mass := math.Log(d.cum[end] - d.cum[r.s.Started])
		best := r.s.Started
		for j := r.s.Started + 1; j < end; j++ {
			if d.lnPi[j] > d.lnPi[best] {
				best = j
			}
		}
		if r.s.Started == 0 {
			r.s.LogA = make([]float64, k)
			r.s.LogC = make([]float64, k)
			r.s.StartC = make([]int, k)
			for i := range k {
				r.s.LogA[i], r.s.LogC[i], r.s.StartC[i] = mass, d.lnPi[best], best
			}
		} else {
			for i := range k {
				r.s.LogA[i] = logAdd(r.s.LogA[i], mass)
				if d.lnPi[best] > r.s.LogC[i] {
					r.s.LogC[i], r.s.StartC[i] = d.lnPi[best], best
				}
			}
		}
		r.s.Started = end
	}

	x, n := clean(t.Errors, t.Requests)
	if n > 0 && t.Q0 > 0 && t.Q0 < 1 {
		r.factors(t.Q0)
		for i := range k {
			le := x*r.lp[i] + (n-x)*r.lq[i]
			r.s.LogA[i] += le
			r.s.LogC[i] += le
		}
	}
	return r.result()
}

// factors caches, per ratio, ln(p/q0) and ln((1-p)/(1-q0)) for q0.
func (r *Run) factors(q0 float64) {
	if q0 == r.q0 {
		return
	}
	k := len(r.d.r)
	if r.lp == nil {
		r.lp, r.lq = make([]float64, k), make([]float64, k)
	}
	lq0, lnq0 := math.Log(q0), math.Log1p(-q0)
	for i, ratio := range r.d.r {
		p := min(q0*ratio, maxRate)
		if p <= q0 {
			r.lp[i], r.lq[i] = 0, 0 // no alternative above q0: e = 1
			continue
		}
		r.lp[i], r.lq[i] = math.Log(p)-lq0, math.Log1p(-p)-lnq0
	}
	r.q0 = q0
}

func (r *Run) result() Result {
	d := r.d
	res := Result{Threshold: 1 / d.cfg.Alpha}
	// ln M by log-sum-exp: the largest term, then the others relative to it.
	top := math.Inf(-1)
	lnRest := math.Inf(-1)
	if rest := 1 - d.cum[r.s.Started]; rest > 1e-12 {
		lnRest = math.Log(rest)
		top = lnRest
	}
	bestK, bestC := -1, math.Inf(-1)
	for i, a := range r.s.LogA {
		top = max(top, d.lnW[i]+a)
		if c := d.lnW[i] + r.s.LogC[i]; c > bestC {
			bestK, bestC = i, c
		}
	}
	sum := math.Exp(lnRest - top)
	for i, a := range r.s.LogA {
		sum += math.Exp(d.lnW[i] + a - top)
	}
	lnM := top + math.Log(sum)
	res.LogE = lnM
	res.E = math.Exp(lnM)
	res.Alarm = lnM >= d.lnThr
	if bestK >= 0 {
		res.Start = time.Duration(r.s.StartC[bestK]) * d.block
		res.Ratio = d.r[bestK]
	}
	return res
}

// logAdd returns ln(e^a + e^b).
func logAdd(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	if math.IsInf(b, -1) {
		return a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// maxCount caps the counts of a tick, so that the sums stay finite.
const maxCount = 1e15

// clean rounds counts to whole numbers, as the likelihoods need them.
func clean(errs, reqs float64) (x, n float64) {
	n = roundCount(reqs)
	return min(roundCount(errs), n), n
}

func roundCount(v float64) float64 {
	if !(v > 0) || math.IsInf(v, 1) {
		return 0
	}
	return min(math.Floor(v+0.5), maxCount)
}
