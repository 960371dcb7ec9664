package latency

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// promBuckets are Prometheus client libraries' default buckets (seconds).
var promBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func mustNew(t testing.TB, c Config) *Test {
	t.Helper()
	te, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return te
}

func defaultConfig(alpha float64) Config {
	return Config{Alpha: alpha, MinEffect: sequential.Effect{Ratio: 1.5}}
}

// dist is a latency distribution: a lognormal with median med whose upper
// half (above the median) has spread sigmaUp and lower half sigmaLow.
type dist struct{ med, sigmaLow, sigmaUp float64 }

func lognormal(med, sigma float64) dist { return dist{med, sigma, sigma} }

// probs returns the probability of each bucket of bounds (len(bounds)+1).
func (d dist) probs(bounds []float64) []float64 {
	out := make([]float64, len(bounds)+1)
	prev := 0.0
	for i, b := range bounds {
		z := math.Log(b / d.med)
		var c float64
		if z < 0 {
			c = normCDF(z / d.sigmaLow)
		} else {
			c = normCDF(z / d.sigmaUp)
		}
		out[i] = c - prev
		prev = c
	}
	out[len(bounds)] = 1 - prev
	return out
}

// poisson draws from a Poisson distribution: by inversion for small means,
// by the normal approximation for large ones (only the simulation uses it).
func poisson(r *rand.Rand, mu float64) float64 {
	if mu <= 0 {
		return 0
	}
	if mu > 50 {
		return math.Max(0, math.Round(mu+math.Sqrt(mu)*r.NormFloat64()))
	}
	u, p := r.Float64(), math.Exp(-mu)
	f, k := p, 0.0
	for u > f && k < 1000 {
		k++
		p *= mu / k
		f += p
	}
	return k
}

// hist returns the cumulative histogram of per-bucket counts.
func hist(bounds, counts []float64) Histogram {
	h := make(Histogram, 0, len(counts))
	cum := 0.0
	for i, c := range counts {
		cum += c
		b := math.Inf(1)
		if i < len(bounds) {
			b = bounds[i]
		}
		h = append(h, Bucket{UpperBound: b, Count: cum})
	}
	return h
}

// stream describes simulated deploys: Poisson traffic, each request's
// latency drawn from the new version's distribution at its time, checked
// every tick seconds.
type stream struct {
	rate       float64 // new version's requests per second
	tick       float64
	ticks      int
	bounds     []float64
	base       dist
	newDist    func(t float64) dist
	preSeconds float64 // pre-deploy window at the same traffic (0: none)
	liveRate   float64 // live baseline's requests per second (0: none)
}

// simulate runs one deploy: start returns the watch for the pre-deploy
// histogram, check is called at every tick with the cumulative histograms
// until it returns true.
func (s stream) simulate(seed uint64, start func(pre Histogram) *Watch, check func(i int, w *Watch, nh, live Histogram) bool) {
	r := rand.New(rand.NewPCG(seed, 42))
	J := len(s.bounds) + 1
	qb := s.base.probs(s.bounds)
	pre := make([]float64, J)
	for j := range pre {
		pre[j] = poisson(r, s.rate*s.preSeconds*qb[j])
	}
	w := start(hist(s.bounds, pre))
	nc, lc := make([]float64, J), make([]float64, J)
	for i := range s.ticks {
		t := float64(i) * s.tick
		pb := s.newDist(t + s.tick/2).probs(s.bounds)
		for j := range nc {
			nc[j] += poisson(r, s.rate*s.tick*pb[j])
			lc[j] += poisson(r, s.liveRate*s.tick*qb[j])
		}
		var live Histogram
		if s.liveRate > 0 {
			live = hist(s.bounds, lc)
		}
		if check(i, w, hist(s.bounds, nc), live) {
			return
		}
	}
}

func constant(d dist) func(float64) dist { return func(float64) dist { return d } }

// falseRollbacks simulates runs deploys and returns how many were ever
// judged regressed.
func falseRollbacks(runs int, s stream, te *Test) int {
	bad := 0
	for run := range runs {
		s.simulate(uint64(run), func(pre Histogram) *Watch { return te.Watch(pre, uint64(run)) }, func(_ int, w *Watch, nh, live Histogram) bool {
			if w.Decide(nh, live).Decision == sequential.Regressed {
				bad++
				return true
			}
			return false
		})
	}
	return bad
}

// maxAllowed is the largest count of false rollbacks in runs that is
// consistent with a rate of at most alpha: alpha·runs plus three binomial
// standard deviations.
func maxAllowed(alpha float64, runs int) int {
	n := float64(runs)
	return int(math.Floor(alpha*n + 3*math.Sqrt(n*alpha*(1-alpha))))
}
