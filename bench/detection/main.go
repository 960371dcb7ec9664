// Command detection is Guardian's detection benchmark: it simulates request
// streams of freshly deployed versions, healthy and regressed, and compares
// on the same streams how fast, and how often wrongly, five kinds of rules
// roll back:
//
//   - a Flagger-style rule: the error ratio over the last interval above a
//     threshold (twice the baseline's ratio) is a failed check, N failed
//     checks roll back (intervals 10 s and 60 s, N = 1 and 5);
//   - the same rule with its threshold tuned on the healthy streams so that
//     its false-rollback rate is at most Guardian's;
//   - Guardian's sequential test (trigger/sequential) against the baseline's
//     counts over the 30 minutes before the deploy, and against an absolute
//     limit equal to the baseline's true rate;
//   - Guardian's sequential test with slow_burn on: the same test against
//     the baseline at alpha/2, or the change detector (trigger/changepoint)
//     at alpha/4 on each tick's counts, with q0 the upper bound of the
//     baseline's anytime-valid confidence sequence at level 1-alpha/4 and
//     min_effect halfway to 1 (1.25 for 1.5), as the daemon does;
//   - Wald's SPRT with the true rates known, the oracle lower bound.
//
// Arrivals are Poisson; each request fails independently. A stream is
// simulated in ticks of about ten requests at first (so that request counts
// to detect are resolved finely), growing to one second after a few
// minutes; Flagger's checks run at whole intervals, Guardian's test at every
// tick that saw an error and at every whole second, and the SPRT at every
// tick. Every stream has its own seed derived from -seed, so the table does
// not depend on the number of workers.
//
// With -latency it also simulates latency regressions (latency.go): request
// latencies from a lognormal distribution observed into Prometheus histogram
// buckets, the new version healthy, its median +20%, its p99 ×2 with the
// median unchanged, or its median slowing from ×1 to ×1.5 over 10 minutes;
// judged by Guardian's latency test (trigger/latency), by its sequential
// test on the requests above the baseline's p99 bucket, by a Flagger-style
// p99 threshold, and by Wald's SPRT with the true distributions on the same
// buckets. -errors=false leaves the error scenarios out.
//
//	go run ./bench/detection -seed 1
//	go run ./bench/detection -seed 1 -errors=false -latency
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rollback-guardian/guardian/trigger/changepoint"
	"github.com/rollback-guardian/guardian/trigger/sequential"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("detection", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		seed     = fs.Uint64("seed", 1, "seed of the simulation")
		healthy  = fs.Int("healthy", 10000, "simulated healthy deploys per traffic level and baseline rate")
		bad      = fs.Int("regressed", 1000, "simulated regressed deploys per scenario")
		window   = fs.Duration("window", 30*time.Minute, "watch window")
		alpha    = fs.Float64("alpha", sequential.DefaultAlpha, "Guardian's false-rollback budget (and the SPRT's alpha and beta)")
		effect   = fs.Float64("min-effect", 1.5, "Guardian's min_effect (a ratio)")
		rates    = fs.String("rates", "1,10,100,1000", "request rates (req/s)")
		bases    = fs.String("baselines", "0.001,0.01", "baseline error ratios")
		workers  = fs.Int("workers", runtime.GOMAXPROCS(0), "simulation goroutines")
		progress = fs.Bool("progress", false, "report progress on stderr")
		errScen  = fs.Bool("errors", true, "run the error-ratio scenarios")
		latScen  = fs.Bool("latency", false, "run the latency scenarios")
		latMed   = fs.Float64("latency-median", 0.05, "latency scenarios: the baseline's median latency (seconds)")
		latSigma = fs.Float64("latency-sigma", 0.6, "latency scenarios: the baseline's spread (standard deviation of ln latency)")
		buckets  = fs.String("buckets", ".005,.01,.025,.05,.1,.25,.5,1,2.5,5,10", "latency scenarios: histogram bucket bounds (seconds)")
		latPre   = fs.Duration("latency-baseline-window", 30*time.Minute, "latency scenarios: the pre-deploy window of the baseline's histogram")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rs, err := floats(*rates)
	if err != nil {
		fmt.Fprintf(stderr, "-rates: %v\n", err)
		return 2
	}
	bs, err := floats(*bases)
	if err != nil {
		fmt.Fprintf(stderr, "-baselines: %v\n", err)
		return 2
	}
	b := &bench{
		seed: *seed, window: int(window.Seconds()), alpha: *alpha, effect: *effect,
		workers: max(1, *workers), progress: *progress, stderr: stderr,
	}
	if b.window < 60 {
		fmt.Fprintln(stderr, "-window must be at least 1m")
		return 2
	}
	if !*errScen && !*latScen {
		fmt.Fprintln(stderr, "nothing to run: -errors=false without -latency")
		return 2
	}
	if *errScen {
		start := time.Now()
		tab, err := b.run(rs, bs, *healthy, *bad)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "Detection benchmark: seed %d, %d healthy deploys per traffic level and baseline, %d per regression, watch window %s, alpha %g, min_effect %gx, %d workers, %s.\n\n",
			*seed, *healthy, *bad, *window, *alpha, *effect, b.workers, time.Since(start).Round(time.Second))
		fmt.Fprint(stdout, tab)
	}
	if *latScen {
		bounds, err := latBuckets(*buckets)
		if err != nil {
			fmt.Fprintf(stderr, "-buckets: %v\n", err)
			return 2
		}
		if !(*latMed > 0) || !(*latSigma > 0) {
			fmt.Fprintln(stderr, "-latency-median and -latency-sigma must be positive")
			return 2
		}
		if *latPre < time.Second {
			fmt.Fprintln(stderr, "-latency-baseline-window must be at least 1s")
			return 2
		}
		lb := &latBench{bench: b, median: *latMed, sigma: *latSigma, bounds: bounds, pre: latPre.Seconds()}
		start := time.Now()
		tab, err := lb.run(rs, *healthy, *bad)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if *errScen {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "Latency detection benchmark: seed %d, %d healthy deploys per traffic level, %d per regression, lognormal latency (median %s, sigma %g) in buckets %s, baseline window %s, watch window %s, alpha %g, min_effect %gx, %d workers, %s.\n\n",
			*seed, *healthy, *bad, fmtMs(*latMed), *latSigma, *buckets, *latPre, *window, *alpha, *effect, b.workers, time.Since(start).Round(time.Second))
		fmt.Fprint(stdout, tab)
	}
	return 0
}

func floats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(v > 0) {
			return nil, fmt.Errorf("invalid number %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// kind is the new version's behaviour.
type kind int

const (
	healthyKind kind = iota
	x15
	x2
	x5
	burn
)

var kindNames = [...]string{healthyKind: "healthy (= baseline)", x15: "1.5x", x2: "2x", x5: "5x", burn: "slow burn 1x→5x over 10 min"}

func (k kind) String() string { return kindNames[k] }

// scenario is one traffic level, baseline rate and behaviour.
type scenario struct {
	id   int
	rate float64 // requests per second
	base float64 // baseline error ratio
	kind kind
}

// newRate is the new version's error ratio t seconds after the deploy.
func (s scenario) newRate(t float64) float64 {
	switch s.kind {
	case x15:
		return 1.5 * s.base
	case x2:
		return 2 * s.base
	case x5:
		return 5 * s.base
	case burn:
		return s.base * (1 + 4*min(t/600, 1))
	}
	return s.base
}

// Rules compared. The Flagger-style rules come in four variants each.
var (
	intervals = [2]int{10, 60}
	failures  = [2]int{1, 5}
)

const (
	nFlagger = 4 // intervals × failures
	// methods: 4 fixed Flagger, 4 tuned Flagger, Guardian vs baseline,
	// Guardian vs limit, Guardian + change detector vs baseline, oracle
	// SPRT.
	mGuardian = 2 * nFlagger
	mLimit    = mGuardian + 1
	mBurn     = mLimit + 1
	mOracle   = mBurn + 1
	nMethods  = mOracle + 1
)

func flaggerIndex(i, n int) int { return i*2 + n }

func methodName(m int) string {
	switch {
	case m < nFlagger:
		return fmt.Sprintf("Flagger-style %ds × %d, threshold 2× baseline", intervals[m/2], failures[m%2])
	case m < 2*nFlagger:
		f := m - nFlagger
		return fmt.Sprintf("Flagger-style %ds × %d, tuned threshold", intervals[f/2], failures[f%2])
	case m == mGuardian:
		return "Guardian sequential, vs baseline (30m pre-deploy)"
	case m == mLimit:
		return "Guardian sequential, vs limit = baseline rate"
	case m == mBurn:
		return "Guardian + change detector (slow_burn), vs baseline (30m pre-deploy)"
	}
	return "oracle: Wald SPRT, true rates known"
}

// detection is when a rule rolled back a stream.
type detection struct {
	ok       bool
	at       float64 // seconds after the deploy
	requests float64 // requests of the new version until then
}

// outcome is one simulated stream's result.
type outcome struct {
	det [nMethods]detection
	// nth[f] is the N-th largest interval error ratio of Flagger variant f
	// over the window: the variant rolls back iff its threshold is below it.
	nth [nFlagger]float64
	// healthyAt is when Guardian (vs baseline) declared the version
	// healthy; -1 if it did not.
	healthyAt float64
	sprtLower bool // the SPRT accepted the null (stopped without detection)
}

type bench struct {
	// burn holds the slow_burn variant's test and detector.
	burn burnTest

	seed     uint64
	window   int
	alpha    float64
	effect   float64
	workers  int
	progress bool
	stderr   io.Writer
}

// tuned are the tuned thresholds of one traffic level and baseline rate.
type tuned [nFlagger]float64

func (b *bench) run(rates, bases []float64, nHealthy, nBad int) (string, error) {
	rel, err := sequential.New(sequential.Config{Alpha: b.alpha, MinEffect: sequential.Effect{Ratio: b.effect}})
	if err != nil {
		return "", err
	}
	if b.burn, err = newBurnTest(b.alpha, b.effect, b.window); err != nil {
		return "", err
	}
	var scen []scenario
	for _, r := range rates {
		for _, p := range bases {
			for k := healthyKind; k <= burn; k++ {
				scen = append(scen, scenario{id: len(scen), rate: r, base: p, kind: k})
			}
		}
	}
	// Phase 1: healthy streams, for false rollbacks and the tuned thresholds.
	results := make([][]outcome, len(scen))
	var healthyScen []scenario
	for _, s := range scen {
		if s.kind == healthyKind {
			healthyScen = append(healthyScen, s)
		}
	}
	b.simulate(healthyScen, nHealthy, rel, nil, results)
	thresholds := map[[2]float64]tuned{}
	for _, s := range healthyScen {
		thresholds[[2]float64{s.rate, s.base}] = tune(results[s.id])
	}
	// Phase 2: regressed streams with those thresholds.
	var badScen []scenario
	for _, s := range scen {
		if s.kind != healthyKind {
			badScen = append(badScen, s)
		}
	}
	b.simulate(badScen, nBad, rel, thresholds, results)
	return b.table(scen, results, thresholds), nil
}

// tune returns, per Flagger variant, the lowest threshold that rolls back
// at most as many healthy streams as Guardian (vs baseline) did.
func tune(res []outcome) tuned {
	allowed := 0
	for _, o := range res {
		if o.det[mGuardian].ok {
			allowed++
		}
	}
	var t tuned
	for f := range nFlagger {
		v := make([]float64, len(res))
		for i, o := range res {
			v[i] = o.nth[f]
		}
		slices.Sort(v)
		slices.Reverse(v)
		if allowed < len(v) {
			t[f] = v[allowed] // exactly the streams with nth > t[f] roll back
		}
	}
	return t
}

type job struct {
	s        scenario
	from, to int
}

// simulate runs n streams of every scenario on b.workers goroutines.
func (b *bench) simulate(scen []scenario, n int, rel *sequential.Test, thr map[[2]float64]tuned, results [][]outcome) {
	for _, s := range scen {
		results[s.id] = make([]outcome, n)
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range b.workers {
		wg.Go(func() {
			for j := range jobs {
				var t *tuned
				if thr != nil {
					tt := thr[[2]float64{j.s.rate, j.s.base}]
					t = &tt
				}
				for i := j.from; i < j.to; i++ {
					results[j.s.id][i] = b.stream(j.s, i, rel, t)
				}
				if b.progress {
					mu.Lock()
					done += j.to - j.from
					fmt.Fprintf(b.stderr, "\r%d/%d streams", done, n*len(scen))
					mu.Unlock()
				}
			}
		})
	}
	const chunk = 50
	for _, s := range scen {
		for from := 0; from < n; from += chunk {
			jobs <- job{s: s, from: from, to: min(n, from+chunk)}
		}
	}
	close(jobs)
	wg.Wait()
	if b.progress {
		fmt.Fprintln(b.stderr)
	}
}

// healthyEvery is how often (in seconds) the healthy phase checks whether
// Guardian declares the version healthy.
const healthyEvery = 5

// preDeploy is the period before the deploy whose baseline counts Guardian
// compares with (the trigger's default baseline_window).
const preDeploy = 1800.0

// stream simulates one deploy of scenario s. t holds the tuned thresholds
// (nil in the healthy phase, which records what tuning needs instead).
func (b *bench) stream(s scenario, idx int, rel *sequential.Test, t *tuned) outcome {
	rng := rand.New(rand.NewPCG(b.seed, uint64(s.id)<<32|uint64(idx)))
	var o outcome
	o.healthyAt = -1
	healthy := s.kind == healthyKind

	// Baseline counts over the 30 minutes before the deploy.
	preErr := poisson(rng, s.rate*preDeploy*s.base)
	preOK := poisson(rng, s.rate*preDeploy*(1-s.base))
	w := rel.Watch(true, sequential.Counts{Errors: preErr, Requests: preErr + preOK})
	wb := b.burn.test.Watch(true, sequential.Counts{Errors: preErr, Requests: preErr + preOK})
	_, q0 := sequential.Confidence(sequential.Counts{Errors: preErr, Requests: preErr + preOK}, b.burn.boundAlpha)
	cp := b.burn.detector.Start()
	lim := s.base
	abs, _ := sequential.New(sequential.Config{Alpha: b.alpha, MinEffect: sequential.Effect{Ratio: b.effect}, Limit: &lim})
	wa := abs.Watch(false, sequential.Counts{})

	// Flagger state per interval length and per variant.
	var ivErr, ivReq [2]float64
	var fails [2 * nFlagger]int // fixed, then tuned
	var top [nFlagger][]float64 // N largest interval ratios (healthy phase)

	// Wald's SPRT bounds with alpha = beta.
	upper := math.Log((1 - b.alpha) / b.alpha)
	lower := math.Log(b.alpha / (1 - b.alpha))
	llr, sprtDone := 0.0, healthy // no oracle on healthy streams
	p0 := s.base

	var x, n float64 // cumulative errors and requests of the new version
	decided := func() bool {
		if healthy {
			return false // run the whole window: false rollbacks and tuning
		}
		for m := range nMethods {
			if !o.det[m].ok && !(m == mOracle && sprtDone) {
				return false
			}
		}
		return true
	}
	mark := func(m int, at float64) {
		if !o.det[m].ok {
			o.det[m] = detection{ok: true, at: at, requests: n}
		}
	}
	// Ticks of about ten requests, growing to a second (0.5% of the time
	// since the deploy), aligned to whole seconds.
	base := 10 / s.rate
	for sec := 0; sec < b.window && !decided(); sec++ {
		dt := min(1, max(base, float64(sec)/200))
		sub := max(1, int(math.Round(1/dt)))
		for j := range sub {
			at := float64(sec) + float64(j+1)/float64(sub)
			p := s.newRate(float64(sec) + (float64(j)+0.5)/float64(sub))
			lam := s.rate / float64(sub)
			e := poisson(rng, lam*p)
			ok := poisson(rng, lam*(1-p))
			x += e
			n += e + ok
			for i := range ivErr {
				ivErr[i] += e
				ivReq[i] += e + ok
			}
			if !sprtDone {
				llr += e*math.Log(p/p0) + ok*math.Log((1-p)/(1-p0))
				switch {
				case llr >= upper:
					mark(mOracle, at)
					sprtDone = true
				case llr <= lower:
					sprtDone, o.sprtLower = true, true
				}
			}
			if !o.det[mBurn].ok && cp.Observe(changepoint.Tick{At: time.Duration(at * float64(time.Second)), Errors: e, Requests: e + ok, Q0: q0}).Alarm {
				mark(mBurn, at)
			}
			// The evidence of a regression grows only with errors: check
			// when some arrived.
			if e > 0 {
				nc := sequential.Counts{Errors: x, Requests: n}
				if !o.det[mGuardian].ok && w.Decide(nc, sequential.Counts{}).Decision == sequential.Regressed {
					mark(mGuardian, at)
				}
				if !o.det[mLimit].ok && wa.Decide(nc, sequential.Counts{}).Decision == sequential.Regressed {
					mark(mLimit, at)
				}
				if !o.det[mBurn].ok && wb.Decide(nc, sequential.Counts{}).Decision == sequential.Regressed {
					mark(mBurn, at)
				}
			}
		}
		end := float64(sec + 1)
		if healthy && o.healthyAt < 0 && !o.det[mGuardian].ok && (sec+1)%healthyEvery == 0 {
			if w.Decide(sequential.Counts{Errors: x, Requests: n}, sequential.Counts{}).Decision == sequential.Healthy {
				o.healthyAt = end
			}
		}
		for i, iv := range intervals {
			if (sec+1)%iv != 0 {
				continue
			}
			if ivReq[i] > 0 { // an interval without traffic is not a failed check here
				r := ivErr[i] / ivReq[i]
				for k, nf := range failures {
					f := flaggerIndex(i, k)
					if r > 2*s.base {
						fails[f]++
						if fails[f] >= nf {
							mark(f, end)
						}
					}
					if t != nil {
						if r > t[f] {
							fails[nFlagger+f]++
							if fails[nFlagger+f] >= nf {
								mark(nFlagger+f, end)
							}
						}
					} else {
						top[f] = keepTop(top[f], r, nf)
					}
				}
			}
			ivErr[i], ivReq[i] = 0, 0
		}
	}
	if t == nil {
		for f := range nFlagger {
			if nf := failures[f%2]; len(top[f]) >= nf {
				o.nth[f] = top[f][nf-1]
			} else {
				o.nth[f] = -1 // fewer than N checks with traffic: never rolls back
			}
		}
	}
	return o
}

// burnTest is the slow_burn variant of Guardian's test against the
// baseline, with the daemon's split of alpha (trigger.Sequential's
// SlowBurn): the sequential test at alpha/2, the change detector at alpha/4
// against q0, the upper bound of the baseline's confidence sequence at
// level 1-alpha/4, and min_effect 1+(r-1)/2 for the test's ratio r (q0 is
// above the baseline's rate, so a regression by r is a smaller ratio to
// q0). It rolls back when either alarms.
type burnTest struct {
	test       *sequential.Test
	detector   *changepoint.Detector
	boundAlpha float64
}

func newBurnTest(alpha, effect float64, window int) (burnTest, error) {
	t, err := sequential.New(sequential.Config{Alpha: alpha / 2, MinEffect: sequential.Effect{Ratio: effect}})
	if err != nil {
		return burnTest{}, err
	}
	d, err := changepoint.New(changepoint.Config{Alpha: alpha / 4, Window: time.Duration(window) * time.Second, MinEffect: 1 + (effect-1)/2})
	if err != nil {
		return burnTest{}, err
	}
	return burnTest{test: t, detector: d, boundAlpha: alpha / 4}, nil
}

// keepTop keeps the k largest values, in descending order.
func keepTop(top []float64, v float64, k int) []float64 {
	i, _ := slices.BinarySearchFunc(top, v, func(a, b float64) int {
		switch {
		case a > b:
			return -1
		case a < b:
			return 1
		}
		return 0
	})
	if i >= k {
		return top
	}
	top = slices.Insert(top, i, v)
	if len(top) > k {
		top = top[:k]
	}
	return top
}

// poisson draws from a Poisson distribution: inversion below a mean of 10,
// Hörmann's PTRS transformed rejection above.
func poisson(r *rand.Rand, mu float64) float64 {
	switch {
	case mu <= 0:
		return 0
	case mu < 10:
		u := r.Float64()
		p := math.Exp(-mu)
		f := p
		k := 0.0
		for u > f && k < 1000 {
			k++
			p *= mu / k
			f += p
		}
		return k
	}
	slam := math.Sqrt(mu)
	loglam := math.Log(mu)
	b := 0.931 + 2.53*slam
	a := -0.059 + 0.02483*b
	invalpha := 1.1239 + 1.1328/(b-3.4)
	vr := 0.9277 - 3.6224/(b-2)
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		k := math.Floor((2*a/us+b)*u + mu + 0.43)
		if us >= 0.07 && v <= vr {
			return k
		}
		if k < 0 || (us < 0.013 && v > us) {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v)+math.Log(invalpha)-math.Log(a/(us*us)+b) <= -mu+k*loglam-lg {
			return k
		}
	}
}

// table formats the results as one Markdown table.
func (b *bench) table(scen []scenario, results [][]outcome, thr map[[2]float64]tuned) string {
	var sb strings.Builder
	sb.WriteString("| req/s | baseline | new version | rule | false rollbacks / detected | median requests | p95 requests | median s | p95 s | median requests ÷ oracle |\n")
	sb.WriteString("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range scen {
		res := results[s.id]
		head := fmt.Sprintf("| %s | %s | %s ", fmtNum(s.rate), pct(s.base), s.kind)
		if s.kind == healthyKind {
			t := thr[[2]float64{s.rate, s.base}]
			for m := range nMethods - 1 {
				fr := 0
				for _, o := range res {
					if o.det[m].ok {
						fr++
					}
				}
				name := methodName(m)
				if m >= nFlagger && m < 2*nFlagger {
					name += fmt.Sprintf(" (%s)", fmtThreshold(t[m-nFlagger]))
					// In-sample: the threshold lets exactly the allowed number through.
					fr = 0
					for _, o := range res {
						if o.nth[m-nFlagger] > t[m-nFlagger] {
							fr++
						}
					}
				}
				extra := ""
				if m == mGuardian {
					var hs []float64
					for _, o := range res {
						if o.healthyAt >= 0 {
							hs = append(hs, o.healthyAt)
						} else {
							hs = append(hs, math.Inf(1))
						}
					}
					extra = fmt.Sprintf("; declared healthy: median %s s, p95 %s s", fmtQ(quantile(hs, 0.5)), fmtQ(quantile(hs, 0.95)))
				}
				fmt.Fprintf(&sb, "%s| %s | %s (%d/%d)%s | | | | | |\n", head, name, pct(float64(fr)/float64(len(res))), fr, len(res), extra)
			}
			continue
		}
		oracleMed := quantile(requestsOf(res, mOracle), 0.5)
		t := thr[[2]float64{s.rate, s.base}]
		for m := range nMethods {
			req := requestsOf(res, m)
			var secs []float64
			det := 0
			for _, o := range res {
				if o.det[m].ok {
					det++
					secs = append(secs, o.det[m].at)
				} else {
					secs = append(secs, math.Inf(1))
				}
			}
			name := methodName(m)
			if m >= nFlagger && m < 2*nFlagger {
				name += fmt.Sprintf(" (%s)", fmtThreshold(t[m-nFlagger]))
			}
			med := quantile(req, 0.5)
			ratio := "—"
			if !math.IsInf(med, 1) && !math.IsInf(oracleMed, 1) && oracleMed > 0 {
				ratio = strconv.FormatFloat(med/oracleMed, 'f', 2, 64)
			}
			fmt.Fprintf(&sb, "%s| %s | %s detected | %s | %s | %s | %s | %s |\n", head, name,
				pct(float64(det)/float64(len(res))), fmtQ(med), fmtQ(quantile(req, 0.95)),
				fmtQ(quantile(secs, 0.5)), fmtQ(quantile(secs, 0.95)), ratio)
		}
	}
	return sb.String()
}

func requestsOf(res []outcome, m int) []float64 {
	out := make([]float64, len(res))
	for i, o := range res {
		if o.det[m].ok {
			out[i] = o.det[m].requests
		} else {
			out[i] = math.Inf(1)
		}
	}
	return out
}

// quantile returns the q-quantile (nearest rank), +Inf for undetected.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.Inf(1)
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func fmtQ(v float64) string {
	if math.IsInf(v, 1) {
		return "—"
	}
	return fmtNum(v)
}

func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func pct(v float64) string { return strconv.FormatFloat(v*100, 'g', 3, 64) + "%" }

func fmtThreshold(v float64) string {
	if v < 0 {
		return "any traffic"
	}
	return "> " + pct(v)
}
