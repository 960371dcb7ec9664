package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
)

// BenchmarkDetectionDelay measures, on the end-to-end stack (demo service at
// 100 req/s, 1 s scrapes, 1 s evaluations, error-rate trigger with for: 3s
// over a 10s window), the time from a bad deploy (0.5% → 20% errors) to the
// trigger firing, for each source. Each iteration first ships a healthy
// version, then a bad one, on the same running stack.
//
//	go test -run '^$' -bench DetectionDelay -benchtime 7x ./e2e
func BenchmarkDetectionDelay(b *testing.B) {
	for _, mode := range modes {
		b.Run(string(mode), func(b *testing.B) {
			s := startStack(b, mode, stackOpts{watch: time.Hour})
			var delays []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				good, bad := fmt.Sprintf("g%d", i), fmt.Sprintf("b%d", i)
				s.deploy(good, 0.005)
				testenv.Eventually(b, 60*time.Second, func() error {
					if w := s.watch(); w == nil || w.Version != good {
						return fmt.Errorf("watch %+v", w)
					}
					return nil
				}, "the healthy deploy to be seen")
				fault := time.Now()
				s.deploy(bad, 0.20)
				var fired trigger.Verdict
				testenv.Eventually(b, 90*time.Second, func() error {
					s.mu.Lock()
					defer s.mu.Unlock()
					for _, v := range s.verdicts {
						if v.deploy.Version == bad && v.verdict.State == trigger.Firing {
							fired = v.verdict
							return nil
						}
					}
					return fmt.Errorf("%s not fired", bad)
				}, "the bad deploy to fire")
				delays = append(delays, fired.At.Sub(fault))
			}
			b.StopTimer()
			slices.Sort(delays)
			median := delays[len(delays)/2]
			if len(delays)%2 == 0 {
				median = (delays[len(delays)/2-1] + delays[len(delays)/2]) / 2
			}
			b.ReportMetric(median.Seconds(), "s-median")
			b.ReportMetric(delays[len(delays)-1].Seconds(), "s-max")
			b.ReportMetric(delays[0].Seconds(), "s-min")
			b.Logf("%s: fault→fired over %d runs: %v", mode, len(delays), delays)
		})
	}
}
