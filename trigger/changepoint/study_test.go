package changepoint

import (
	"cmp"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// The study compares variants of the detector with trigger/sequential
// against a known limit and with Wald's SPRT knowing the change's shape, on
// the same simulated streams. It prints a Markdown table and asserts
// nothing; run it with
//
//	go test ./trigger/changepoint -run TestStudy -study -study.n 400 -v
var (
	study      = flag.Bool("study", false, "run the detection-delay study (prints a table)")
	studyN     = flag.Int("study.n", 200, "streams per scenario")
	studyRates = flag.String("study.rates", "10,100,1000", "traffic levels, req/s")
	studyKinds = flag.String("study.kinds", "burn,step", "scenarios: burn (1x→5x over 10 min), step (3x from minute 5), x5, healthy")
	studyVar   = flag.String("study.variants", "", "variants to run, names separated by | (all when empty)")
	studyBase  = flag.Bool("study.baseline", false, "bound the baseline's rate from 30 minutes of pre-deploy counts (q0 = their upper Chernoff bound, compared with trigger/sequential vs the baseline) instead of knowing it")
)

type variant struct {
	name      string
	block     time.Duration
	ds        design
	minEffect float64 // 1.5 when 0
}

func studyVariants() []variant {
	d := defaultDesign
	with := func(f func(*design)) design { x := d; f(&x); return x }
	return []variant{
		{"default (10s, ½ deploy + harmonic)", 10 * time.Second, d, 0},
		{"SR uniform 1s", time.Second, with(func(x *design) { x.deployWeight, x.shape = 0, uniform }), 0},
		{"SR uniform 10s", 10 * time.Second, with(func(x *design) { x.deployWeight, x.shape = 0, uniform }), 0},
		{"SR uniform 30s", 30 * time.Second, with(func(x *design) { x.deployWeight, x.shape = 0, uniform }), 0},
		{"SR uniform 60s", time.Minute, with(func(x *design) { x.deployWeight, x.shape = 0, uniform }), 0},
		{"½ deploy + uniform 10s", 10 * time.Second, with(func(x *design) { x.shape = uniform }), 0},
		{"harmonic 10s", 10 * time.Second, with(func(x *design) { x.deployWeight = 0 }), 0},
		{"quadratic 10s", 10 * time.Second, with(func(x *design) { x.deployWeight, x.shape = 0, quadratic }), 0},
		{"½ deploy + harmonic 1s", time.Second, d, 0},
		{"½ deploy + harmonic 30s", 30 * time.Second, d, 0},
		{"deploy only (all data)", 10 * time.Second, with(func(x *design) { x.deployWeight = 1 }), 0},
		{"default, min 1.25", 10 * time.Second, d, 1.25},
		{"default, min 1.1", 10 * time.Second, d, 1.1},
		{"harmonic 10s, min 1.25", 10 * time.Second, with(func(x *design) { x.deployWeight = 0 }), 1.25},
		{"quadratic 10s, min 1.25", 10 * time.Second, with(func(x *design) { x.deployWeight, x.shape = 0, quadratic }), 1.25},
		{"default, min 1.25, decay 0.7", 10 * time.Second, with(func(x *design) { x.decay = 0.7 }), 1.25},
		{"default, min 1.25, decay 0.95", 10 * time.Second, with(func(x *design) { x.decay = 0.95 }), 1.25},
		{"default, min 1.25, step 1.5", 10 * time.Second, with(func(x *design) { x.step = 1.5 }), 1.25},
		{"¼ deploy + harmonic, min 1.25", 10 * time.Second, with(func(x *design) { x.deployWeight = 0.25 }), 1.25},
	}
}

type studyScenario struct {
	rate, base float64
	kind       string
}

func (s studyScenario) newRate(t float64) float64 {
	switch s.kind {
	case "burn":
		return s.base * (1 + 4*min(t/600, 1))
	case "step":
		if t >= 300 {
			return 3 * s.base
		}
	case "x5":
		return 5 * s.base
	}
	return s.base
}

type hit struct {
	ok       bool
	at, reqs float64
	startEst float64
	ratioEst float64
}

const (
	studyAlpha  = 0.001
	studyWindow = 1800
	studyPre    = 1800
	// studyBaseShare is the share of alpha spent on the baseline's bound
	// (the detectors get the rest).
	studyBaseShare = 0.2
)

// chernoffUpper returns the upper Chernoff bound of a Bernoulli rate after
// x errors in a fixed sample of n requests, at level 1-a: the largest q
// with n·KL(x/n, q) <= ln(1/a).
func chernoffUpper(x, n, a float64) float64 {
	if n <= 0 {
		return 1
	}
	ph := x / n
	kl := func(q float64) float64 {
		var v float64
		if x > 0 {
			v += x * math.Log(ph/q)
		}
		if n-x > 0 {
			v += (n - x) * math.Log((1-ph)/(1-q))
		}
		return v
	}
	lo, hi := ph, 1.0
	for range 100 {
		mid := (lo + hi) / 2
		if kl(mid) <= math.Log(1/a) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

func TestStudy(t *testing.T) {
	if !*study {
		t.Skip("run with -study")
	}
	var rates []float64
	for _, f := range strings.Split(*studyRates, ",") {
		var v float64
		fmt.Sscan(f, &v)
		rates = append(rates, v)
	}
	vars := studyVariants()
	if *studyVar != "" {
		var keep []variant
		for _, v := range vars {
			for _, w := range strings.Split(*studyVar, "|") {
				if v.name == w {
					keep = append(keep, v)
					break
				}
			}
		}
		vars = keep
	}
	dets := make([]*Detector, len(vars))
	for i, v := range vars {
		alpha := studyAlpha
		if *studyBase {
			alpha *= 1 - studyBaseShare
		}
		d, err := newWith(Config{Alpha: alpha, Window: studyWindow * time.Second, Block: v.block, MinEffect: cmp.Or(v.minEffect, 1.5)}, v.ds)
		if err != nil {
			t.Fatal(err)
		}
		dets[i] = d
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "| req/s | baseline | change | oracle req (s) | sequential vs %s ÷ oracle |", map[bool]string{false: "limit", true: "baseline"}[*studyBase])
	for _, v := range vars {
		fmt.Fprintf(&sb, " %s |", v.name)
	}
	fmt.Fprintf(&sb, " CUSUM-type (max), %s weights | %s: median start estimate, ratio at alarm |", vars[0].name, vars[0].name)
	sb.WriteString("\n|---:|---:|---|---:|---:|" + strings.Repeat("---:|", len(vars)+2) + "\n")
	for _, kind := range strings.Split(*studyKinds, ",") {
		for _, rate := range rates {
			for _, base := range []float64{0.001, 0.01} {
				sc := studyScenario{rate: rate, base: base, kind: kind}
				res := make([][]hit, *studyN)
				var wg sync.WaitGroup
				next := make(chan int)
				for range 2 {
					wg.Go(func() {
						for i := range next {
							res[i] = simulate(sc, uint64(i), dets)
						}
					})
				}
				for i := range *studyN {
					next <- i
				}
				close(next)
				wg.Wait()
				col := func(m int) (float64, float64, float64) {
					var reqs, secs []float64
					det := 0
					for _, r := range res {
						if r[m].ok {
							det++
							reqs = append(reqs, r[m].reqs)
							secs = append(secs, r[m].at)
						} else {
							reqs = append(reqs, math.Inf(1))
							secs = append(secs, math.Inf(1))
						}
					}
					return median(reqs), median(secs), float64(det) / float64(len(res))
				}
				oq, os, od := col(0)
				fmt.Fprintf(&sb, "| %g | %g%% | %s | %s |", rate, base*100, kind, fmtReq(oq, os, od))
				for m := 1; m < 3+len(vars); m++ {
					q, s, dr := col(m)
					if kind == "healthy" {
						fmt.Fprintf(&sb, " %.2f%% |", dr*100)
						continue
					}
					fmt.Fprintf(&sb, " %s |", fmtRatio(q, s, dr, oq))
				}
				var st, ra []float64
				for _, r := range res {
					if r[2].ok {
						st = append(st, r[2].startEst)
						ra = append(ra, r[2].ratioEst)
					}
				}
				if len(st) > 0 {
					fmt.Fprintf(&sb, " %.0f s, %.2fx |", median(st), median(ra))
				} else {
					sb.WriteString(" — |")
				}
				sb.WriteString("\n")
				t.Logf("done %v", sc)
			}
		}
	}
	t.Log("\n" + sb.String())
}

func fmtReq(q, s, d float64) string {
	if math.IsInf(q, 1) {
		return fmt.Sprintf("— (%.0f%%)", d*100)
	}
	return fmt.Sprintf("%.0f (%.0f s)", q, s)
}

func fmtRatio(q, s, d, oq float64) string {
	if math.IsInf(q, 1) {
		return fmt.Sprintf("— (%.0f%%)", d*100)
	}
	return fmt.Sprintf("%.2f (%.0f s)", q/oq, s)
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// simulate runs one stream: index 0 of the result is the oracle, 1 the
// sequential test against the limit, then the detectors.
func simulate(sc studyScenario, seed uint64, dets []*Detector) []hit {
	rng := rand.New(rand.NewPCG(seed, uint64(sc.rate*1e6+sc.base*1e9)+uint64(len(sc.kind))))
	out := make([]hit, 3+len(dets))
	healthy := sc.kind == "healthy"
	upper := math.Log((1 - studyAlpha) / studyAlpha)
	lower := math.Log(studyAlpha / (1 - studyAlpha))
	llr, sprtDone := 0.0, healthy
	lim := sc.base
	st, _ := sequential.New(sequential.Config{Alpha: studyAlpha, MinEffect: sequential.Effect{Ratio: 1.5}, Limit: &lim})
	w := st.Watch(false, sequential.Counts{})
	q0 := sc.base
	if *studyBase {
		// Baseline counts over the 30 minutes before the deploy.
		preErr := poisson(rng, sc.rate*studyPre*sc.base)
		preOK := poisson(rng, sc.rate*studyPre*(1-sc.base))
		st, _ = sequential.New(sequential.Config{Alpha: studyAlpha, MinEffect: sequential.Effect{Ratio: 1.5}})
		w = st.Watch(true, sequential.Counts{Errors: preErr, Requests: preErr + preOK})
		q0 = chernoffUpper(preErr, preErr+preOK, studyAlpha*studyBaseShare)
	}
	runs := make([]*Run, len(dets))
	for i, d := range dets {
		runs[i] = d.Start()
	}
	var x, n float64
	done := func() bool {
		if !sprtDone {
			return false
		}
		for _, h := range out[1:] {
			if !h.ok {
				return false
			}
		}
		return true
	}
	base := 10 / sc.rate
	for sec := 0; sec < studyWindow && !done(); sec++ {
		dt := min(1, max(base, float64(sec)/200))
		sub := max(1, int(math.Round(1/dt)))
		for j := range sub {
			at := float64(sec) + float64(j+1)/float64(sub)
			p := sc.newRate(float64(sec) + (float64(j)+0.5)/float64(sub))
			lam := sc.rate / float64(sub)
			e := poisson(rng, lam*p)
			ok := poisson(rng, lam*(1-p))
			x += e
			n += e + ok
			if !sprtDone {
				llr += e*math.Log(p/sc.base) + ok*math.Log((1-p)/(1-sc.base))
				switch {
				case llr >= upper:
					out[0] = hit{ok: true, at: at, reqs: n}
					sprtDone = true
				case llr <= lower:
					sprtDone = true
				}
			}
			if e > 0 && !out[1].ok {
				if w.Decide(sequential.Counts{Errors: x, Requests: n}, sequential.Counts{}).Decision == sequential.Regressed {
					out[1] = hit{ok: true, at: at, reqs: n}
				}
			}
			for i, r := range runs {
				cusumDone := i > 0 || out[len(out)-1].ok
				if out[2+i].ok && cusumDone {
					continue
				}
				res := r.Observe(Tick{At: time.Duration(at * float64(time.Second)), Errors: e, Requests: e + ok, Q0: q0})
				if res.Alarm && !out[2+i].ok {
					out[2+i] = hit{ok: true, at: at, reqs: n, startEst: res.Start.Seconds(), ratioEst: res.Ratio}
				}
				// The CUSUM-type statistic of the first detector: the
				// largest term of its mixture.
				if !cusumDone {
					c := math.Inf(-1)
					for k, lc := range r.s.LogC {
						c = max(c, r.d.lnW[k]+lc)
					}
					if c >= r.d.lnThr {
						out[len(out)-1] = hit{ok: true, at: at, reqs: n}
					}
				}
			}
		}
	}
	return out
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
