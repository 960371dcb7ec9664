package sequential

import "testing"

// BenchmarkDecide measures one Decide of a watch against a pre-deploy
// baseline (30 minutes at 100 req/s, 1% errors), with a live baseline and
// counts that grow by one second of traffic per call, as a watch sees them.
func BenchmarkDecide(b *testing.B) {
	for _, bc := range []struct {
		name    string
		pre     Counts
		newRate float64
		live    bool
	}{
		{"healthy vs pre-deploy", Counts{Errors: 1800, Requests: 180000}, 0.01, false},
		{"regressed vs pre-deploy", Counts{Errors: 1800, Requests: 180000}, 0.05, false},
		{"healthy vs pre-deploy and live", Counts{Errors: 1800, Requests: 180000}, 0.01, true},
		{"healthy vs live only", Counts{}, 0.01, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			te := mustNew(b, Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}})
			w := te.Watch(true, bc.pre)
			b.ReportAllocs()
			n := 0.0
			for b.Loop() {
				n += 100
				var live Counts
				if bc.live {
					live = Counts{Errors: n / 100, Requests: n}
				}
				w.Decide(Counts{Errors: n * bc.newRate, Requests: n}, live)
			}
		})
	}
}
