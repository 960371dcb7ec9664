package sequential

import (
	"math"
	"runtime"
	"testing"
)

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

// BenchmarkWatchFootprint reports the heap a watch keeps (B/watch) once it
// has been judged, as a service's watch is every few seconds: watches are
// started for a thousand deploys with pre-deploy counts of different
// sizes and rates (or none), each judged once, and the live heap is read
// before and after.
func BenchmarkWatchFootprint(b *testing.B) {
	const watches = 1000
	for _, bc := range []struct {
		name  string
		cfg   Config
		noPre bool
	}{
		{"vs pre-deploy", Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}}, false},
		{"vs pre-deploy, difference", Config{Alpha: DefaultAlpha, MinEffect: Effect{Delta: 0.01}}, false},
		{"vs pre-deploy and a limit", Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}, Limit: ptr(0.05)}, false},
		{"vs live only", Config{Alpha: DefaultAlpha, MinEffect: Effect{Ratio: 1.5}}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			te := mustNew(b, bc.cfg)
			ws := make([]*Watch, watches)
			var retained float64
			for b.Loop() {
				clear(ws)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for i := range ws {
					var pre Counts
					if !bc.noPre {
						// 30 minutes at 1 to 1,000 req/s, with 0.1% to 10% errors.
						reqs := 1800 * math.Pow(10, float64(i%4))
						rate := 0.001 * math.Pow(10, float64(i%3))
						pre = Counts{Errors: math.Round(reqs * rate * (1 + float64(i%7)/10)), Requests: reqs}
					}
					ws[i] = te.Watch(true, pre)
					ws[i].Decide(Counts{Errors: 1, Requests: 100}, Counts{Errors: 1, Requests: 100})
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				retained = float64(after.HeapAlloc) - float64(before.HeapAlloc)
			}
			runtime.KeepAlive(ws)
			b.ReportMetric(retained/watches, "B/watch")
		})
	}
}
