package latency

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkDecide measures one call of a watch of a 30-minute pre-deploy
// baseline, with the requests of one 5-second evaluation interval at 10,
// 100 and 1,000 req/s (12 buckets), and a call without new requests.
func BenchmarkDecide(b *testing.B) {
	base := lognormal(0.05, 0.6).probs(promBuckets)
	slow := lognormal(0.052, 0.6).probs(promBuckets) // a small shift: E keeps moving
	for _, bc := range []struct {
		name string
		rate float64
	}{{"no new requests", 0}, {"10 req/s", 10}, {"100 req/s", 100}, {"1000 req/s", 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			te := mustNew(b, defaultConfig(0.001))
			r := rand.New(rand.NewPCG(1, 2))
			pre := make([]float64, len(base))
			for j := range pre {
				pre[j] = poisson(r, max(bc.rate, 10)*1800*base[j])
			}
			w := te.Watch(hist(promBuckets, pre), 1)
			counts := make([]float64, len(base))
			// Histograms of the coming calls, drawn before timing.
			const calls = 512
			hs := make([]Histogram, calls)
			for i := range hs {
				for j := range counts {
					counts[j] += poisson(r, bc.rate*5*slow[j])
				}
				hs[i] = hist(promBuckets, counts)
			}
			i := 0
			for b.Loop() {
				if i == calls { // start over on a fresh watch
					b.StopTimer()
					w, i = te.Watch(hist(promBuckets, pre), 1), 0
					b.StartTimer()
				}
				w.Decide(hs[i], nil)
				i++
			}
		})
	}
}
