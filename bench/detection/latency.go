package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/rollback-guardian/guardian/trigger/latency"
	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// The latency scenarios: request latencies drawn from a lognormal
// distribution (median latMedian, spread latSigma in ln seconds) and
// observed into Prometheus buckets, the new version healthy, slower, or
// slowing down over time.

// latKind is the new version's latency behaviour.
type latKind int

const (
	latHealthy latKind = iota
	latMedian          // median +20%, same spread
	latP99             // p99 ×2, median and lower half unchanged
	latBurn            // median ×1 → ×1.5 over 10 minutes
)

var latKindNames = [...]string{latHealthy: "healthy (= baseline)", latMedian: "median +20%", latP99: "p99 ×2, median unchanged", latBurn: "slow burn: median ×1 → ×1.5 over 10 min"}

func (k latKind) String() string { return latKindNames[k] }

// z99 is the standard normal quantile of 0.99.
const z99 = 2.3263478740408408

// latScenario is one traffic level and behaviour.
type latScenario struct {
	id   int
	rate float64
	kind latKind
}

// latMethods compared on the latency streams.
const (
	lmGuardian = iota // trigger/latency vs the pre-deploy histogram
	lmBucket          // trigger/sequential on the requests above the baseline's p99 bucket
	lmFlagger         // p99 of the last 60 s above 1.5× the baseline's p99
	lmOracle          // SPRT with the true distributions, on the buckets
	nLatMethods
)

func latMethodName(m int) string {
	switch m {
	case lmGuardian:
		return "Guardian latency test, vs baseline (pre-deploy histogram)"
	case lmBucket:
		return "Guardian sequential, requests above the baseline's p99 bucket as errors"
	case lmFlagger:
		return "Flagger-style 60s × 1, p99 above 1.5× the baseline's p99"
	}
	return "oracle: Wald SPRT, true distributions, on the buckets"
}

// latBench holds the latency part's parameters.
type latBench struct {
	*bench
	median, sigma float64
	bounds        []float64
	pre           float64 // seconds of pre-deploy baseline
}

// dist is a split lognormal: spread sigmaLow below the median, sigmaUp
// above.
type latDist struct{ med, sigmaLow, sigmaUp float64 }

// probs returns each bucket's probability (len(bounds)+1 buckets), from
// the distribution function below the median and the survival function
// above it, so that the far buckets keep their precision.
func (d latDist) probs(bounds []float64) []float64 {
	// below[i]: P(L <= b_i) if b_i is below the median; else above[i]:
	// P(L > b_i).
	K := len(bounds)
	cdf, sf := make([]float64, K), make([]float64, K)
	for i, b := range bounds {
		z := math.Log(b / d.med)
		if z < 0 {
			cdf[i] = 0.5 * math.Erfc(-z/d.sigmaLow/math.Sqrt2)
			sf[i] = 1 - cdf[i]
		} else {
			sf[i] = 0.5 * math.Erfc(z/d.sigmaUp/math.Sqrt2)
			cdf[i] = 1 - sf[i]
		}
	}
	out := make([]float64, K+1)
	for i := range out {
		switch {
		case i == 0:
			out[i] = cdf[0]
		case i == K:
			out[i] = sf[K-1]
		case bounds[i] <= d.med:
			out[i] = cdf[i] - cdf[i-1]
		default:
			out[i] = sf[i-1] - sf[i]
		}
		out[i] = max(0, out[i])
	}
	return out
}

func (lb *latBench) base() latDist { return latDist{lb.median, lb.sigma, lb.sigma} }

// newDist is the new version's distribution t seconds after the deploy.
func (lb *latBench) newDist(k latKind, t float64) latDist {
	d := lb.base()
	switch k {
	case latMedian:
		d.med *= 1.2
	case latP99:
		d.sigmaUp += math.Ln2 / z99
	case latBurn:
		d.med *= 1 + 0.5*min(t/600, 1)
	}
	return d
}

// latOutcome is one simulated latency stream's result.
type latOutcome struct {
	det       [nLatMethods]detection
	healthyAt float64 // when the latency test declared the version healthy; -1 if never
}

func (lb *latBench) run(rates []float64, nHealthy, nBad int) (string, error) {
	te, err := latency.New(latency.Config{Alpha: lb.alpha, MinEffect: sequential.Effect{Ratio: lb.effect}})
	if err != nil {
		return "", err
	}
	seq, err := sequential.New(sequential.Config{Alpha: lb.alpha, MinEffect: sequential.Effect{Ratio: lb.effect}})
	if err != nil {
		return "", err
	}
	var scen []latScenario
	for _, r := range rates {
		for k := latHealthy; k <= latBurn; k++ {
			scen = append(scen, latScenario{id: len(scen), rate: r, kind: k})
		}
	}
	results := make([][]latOutcome, len(scen))
	for _, s := range scen {
		n := nBad
		if s.kind == latHealthy {
			n = nHealthy
		}
		results[s.id] = make([]latOutcome, n)
	}
	type job struct {
		s        latScenario
		from, to int
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done, all := 0, 0
	for _, s := range scen {
		all += len(results[s.id])
	}
	for range lb.workers {
		wg.Go(func() {
			for j := range jobs {
				for i := j.from; i < j.to; i++ {
					results[j.s.id][i] = lb.stream(j.s, i, te, seq)
				}
				if lb.progress {
					mu.Lock()
					done += j.to - j.from
					fmt.Fprintf(lb.stderr, "\r%d/%d latency streams", done, all)
					mu.Unlock()
				}
			}
		})
	}
	const chunk = 20
	for _, s := range scen {
		for from := 0; from < len(results[s.id]); from += chunk {
			jobs <- job{s: s, from: from, to: min(len(results[s.id]), from+chunk)}
		}
	}
	close(jobs)
	wg.Wait()
	if lb.progress {
		fmt.Fprintln(lb.stderr)
	}
	return lb.table(scen, results), nil
}

// stream simulates one deploy of scenario s.
func (lb *latBench) stream(s latScenario, idx int, te *latency.Test, seq *sequential.Test) latOutcome {
	// Seeds apart from the error scenarios' (their ids are small).
	rng := rand.New(rand.NewPCG(lb.seed, 1<<62|uint64(s.id)<<32|uint64(idx)))
	o := latOutcome{healthyAt: -1}
	healthy := s.kind == latHealthy
	J := len(lb.bounds) + 1
	q := lb.base().probs(lb.bounds)

	pre := make([]float64, J)
	for j := range pre {
		pre[j] = poisson(rng, s.rate*lb.pre*q[j])
	}
	w := te.Watch(cumulative(lb.bounds, pre), rng.Uint64())
	// The bucket above the baseline's p99: the first bound with 99% of the
	// pre-deploy requests at or below it.
	kb := len(lb.bounds) - 1
	for k, c := 0, 0.0; k < len(lb.bounds); k++ {
		c += pre[k]
		if c >= 0.99*sum(pre) {
			kb = k
			break
		}
	}
	above := func(c []float64) sequential.Counts {
		return sequential.Counts{Errors: sum(c[kb+1:]), Requests: sum(c)}
	}
	sw := seq.Watch(true, above(pre))
	baseP99 := bucketQuantile(0.99, lb.bounds, pre)

	upper := math.Log((1 - lb.alpha) / lb.alpha)
	lower := math.Log(lb.alpha / (1 - lb.alpha))
	llr, sprtDone := 0.0, healthy

	nc := make([]float64, J) // cumulative new-version counts
	iv := make([]float64, J) // the current 60 s interval's
	var n float64
	decided := func() bool {
		if healthy {
			return false // the whole window: false rollbacks
		}
		for m := range nLatMethods {
			if !o.det[m].ok && !(m == lmOracle && sprtDone) {
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
	baseRate := s.rate
	tickBase := 10 / baseRate
	inc := make([]float64, J)
	for sec := 0; sec < lb.window && !decided(); sec++ {
		dt := min(1, max(tickBase, float64(sec)/200))
		sub := max(1, int(math.Round(1/dt)))
		for k := range sub {
			at := float64(sec) + float64(k+1)/float64(sub)
			p := lb.newDist(s.kind, float64(sec)+(float64(k)+0.5)/float64(sub)).probs(lb.bounds)
			lam := s.rate / float64(sub)
			var got, exceed float64
			for j := range inc {
				inc[j] = poisson(rng, lam*p[j])
				nc[j] += inc[j]
				iv[j] += inc[j]
				got += inc[j]
				if j > kb {
					exceed += inc[j]
				}
				if !sprtDone && inc[j] > 0 {
					llr += inc[j] * math.Log(p[j]/q[j])
				}
			}
			n += got
			if !sprtDone {
				switch {
				case llr >= upper:
					mark(lmOracle, at)
					sprtDone = true
				case llr <= lower:
					sprtDone = true
				}
			}
			if got == 0 {
				continue
			}
			if !o.det[lmGuardian].ok {
				r := w.Decide(cumulative(lb.bounds, nc), nil)
				switch r.Decision {
				case sequential.Regressed:
					mark(lmGuardian, at)
				case sequential.Healthy:
					if o.healthyAt < 0 && !o.det[lmGuardian].ok {
						o.healthyAt = at
					}
				}
			}
			if exceed > 0 && !o.det[lmBucket].ok && sw.Decide(above(nc), sequential.Counts{}).Decision == sequential.Regressed {
				mark(lmBucket, at)
			}
		}
		if (sec+1)%60 == 0 {
			if sum(iv) > 0 && bucketQuantile(0.99, lb.bounds, iv) > 1.5*baseP99 {
				mark(lmFlagger, float64(sec+1))
			}
			clear(iv)
		}
	}
	return o
}

// cumulative returns the histogram of per-bucket counts.
func cumulative(bounds, counts []float64) latency.Histogram {
	h := make(latency.Histogram, 0, len(counts))
	c := 0.0
	for i, v := range counts {
		c += v
		b := math.Inf(1)
		if i < len(bounds) {
			b = bounds[i]
		}
		h = append(h, latency.Bucket{UpperBound: b, Count: c})
	}
	return h
}

// bucketQuantile is PromQL's histogram_quantile on per-bucket counts:
// linear interpolation inside the bucket holding the rank (from 0 for the
// first bucket), the largest finite bound when the rank is in the +Inf
// bucket.
func bucketQuantile(q float64, bounds, counts []float64) float64 {
	total := sum(counts)
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	c, lo := 0.0, 0.0
	for i, b := range bounds {
		if c+counts[i] >= rank && counts[i] > 0 {
			return lo + (b-lo)*(rank-c)/counts[i]
		}
		c += counts[i]
		lo = b
	}
	return bounds[len(bounds)-1]
}

func sum(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}

// table formats the latency results as one Markdown table, in the style of
// the error scenarios'.
func (lb *latBench) table(scen []latScenario, results [][]latOutcome) string {
	var sb strings.Builder
	sb.WriteString("| req/s | baseline | new version | rule | false rollbacks / detected | median requests | p95 requests | median s | p95 s | median requests ÷ oracle |\n")
	sb.WriteString("|---:|---|---|---|---:|---:|---:|---:|---:|---:|\n")
	base := fmt.Sprintf("p50 %s, p99 %s", fmtMs(lb.median), fmtMs(lb.median*math.Exp(lb.sigma*z99)))
	for _, s := range scen {
		res := results[s.id]
		head := fmt.Sprintf("| %s | %s | %s ", fmtNum(s.rate), base, s.kind)
		req := func(m int) []float64 {
			out := make([]float64, len(res))
			for i, o := range res {
				out[i] = math.Inf(1)
				if o.det[m].ok {
					out[i] = o.det[m].requests
				}
			}
			return out
		}
		if s.kind == latHealthy {
			for m := range nLatMethods - 1 {
				fr := 0
				for _, o := range res {
					if o.det[m].ok {
						fr++
					}
				}
				extra := ""
				if m == lmGuardian {
					hs := make([]float64, len(res))
					for i, o := range res {
						hs[i] = math.Inf(1)
						if o.healthyAt >= 0 {
							hs[i] = o.healthyAt
						}
					}
					extra = fmt.Sprintf("; declared healthy: median %s s, p95 %s s", fmtQ(quantile(hs, 0.5)), fmtQ(quantile(hs, 0.95)))
				}
				fmt.Fprintf(&sb, "%s| %s | %s (%d/%d)%s | | | | | |\n", head, latMethodName(m), pct(float64(fr)/float64(len(res))), fr, len(res), extra)
			}
			continue
		}
		oracleMed := quantile(req(lmOracle), 0.5)
		for m := range nLatMethods {
			r := req(m)
			secs := make([]float64, len(res))
			det := 0
			for i, o := range res {
				secs[i] = math.Inf(1)
				if o.det[m].ok {
					det++
					secs[i] = o.det[m].at
				}
			}
			med := quantile(r, 0.5)
			ratio := "—"
			if !math.IsInf(med, 1) && !math.IsInf(oracleMed, 1) && oracleMed > 0 {
				ratio = strconv.FormatFloat(med/oracleMed, 'f', 2, 64)
			}
			fmt.Fprintf(&sb, "%s| %s | %s detected | %s | %s | %s | %s | %s |\n", head, latMethodName(m),
				pct(float64(det)/float64(len(res))), fmtQ(med), fmtQ(quantile(r, 0.95)),
				fmtQ(quantile(secs, 0.5)), fmtQ(quantile(secs, 0.95)), ratio)
		}
	}
	return sb.String()
}

func fmtMs(sec float64) string { return strconv.FormatFloat(sec*1000, 'f', 0, 64) + " ms" }

// latBuckets parses the bucket bounds flag.
func latBuckets(s string) ([]float64, error) {
	bs, err := floats(s)
	if err != nil {
		return nil, err
	}
	if !slices.IsSorted(bs) || len(slices.Compact(slices.Clone(bs))) != len(bs) {
		return nil, fmt.Errorf("bounds %v must increase", bs)
	}
	return bs, nil
}
