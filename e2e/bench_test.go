package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/incident"

	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
)

// BenchmarkDetectionDelay measures, on the end-to-end stack (demo service at
// 100 req/s, 1 s scrapes, 1 s evaluations, error-rate trigger with for: 3s
// over a 10s window), the time from a bad deploy (0.5% → 20% errors) to the
// trigger firing, for each source. Each iteration first ships a healthy
// version, then, once it serves alone, a bad one, on the same running
// stack.
//
//	go test -run '^$' -bench DetectionDelay -benchtime 7x ./e2e
func BenchmarkDetectionDelay(b *testing.B) {
	for _, mode := range modes {
		b.Run(string(mode), func(b *testing.B) { benchDetectionDelay(b, mode, stackOpts{watch: time.Hour}) })
	}
}

// BenchmarkDetectionDelaySequential is BenchmarkDetectionDelay with the
// sequential test on counts since the deploy (alpha 0.001, min_effect 1.5x,
// above: 0.05, no for) as the error-rate trigger.
//
//	go test -run '^$' -bench DetectionDelaySequential -benchtime 15x ./e2e
func BenchmarkDetectionDelaySequential(b *testing.B) {
	for _, mode := range modes {
		b.Run(string(mode), func(b *testing.B) { benchDetectionDelay(b, mode, stackOpts{watch: time.Hour, sequential: true}) })
	}
}

// benchDetectionDelay ships b.N healthy then bad versions on a stack with
// options o and reports the delays from each bad deploy to its trigger
// firing: median, 90th percentile, worst and best, in seconds. Each bad
// version ships once the healthy one is the only version serving (the
// previous bad one has left the version query's 10s rate), so that the
// healthy one is its baseline. It logs, per run, when the deploy was seen
// and the verdict that fired.
func benchDetectionDelay(b *testing.B, mode Mode, o stackOpts) {
	s := startStack(b, mode, o)
	var delays []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		good, bad := fmt.Sprintf("g%d", i), fmt.Sprintf("b%d", i)
		s.shipHealthy(good)
		testenv.Eventually(b, 60*time.Second, func() error {
			if serving := s.app.Status()[0].Serving; !slices.Equal(serving, []string{good}) {
				return fmt.Errorf("serving %v", serving)
			}
			return nil
		}, "the healthy version to serve alone")
		fault := time.Now()
		s.deploy(bad, 0.20)
		var fired seen
		testenv.Eventually(b, 90*time.Second, func() error {
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, v := range s.verdicts {
				if v.deploy.Version == bad && v.verdict.State == trigger.Firing {
					fired = v
					return nil
				}
			}
			return fmt.Errorf("%s not fired", bad)
		}, "the bad deploy to fire")
		delays = append(delays, fired.verdict.At.Sub(fault))
		b.Logf("%s run %d: deploy seen after %v, fired after %v: %s", mode, i,
			fired.deploy.At.Sub(fault).Round(time.Millisecond), fired.verdict.At.Sub(fault).Round(time.Millisecond), fired.verdict.Summary())
	}
	b.StopTimer()
	slices.Sort(delays)
	b.ReportMetric(median(delays).Seconds(), "s-median")
	b.ReportMetric(quantile(delays, 0.9).Seconds(), "s-p90")
	b.ReportMetric(delays[len(delays)-1].Seconds(), "s-max")
	b.ReportMetric(delays[0].Seconds(), "s-min")
	b.Logf("%s: fault→fired over %d runs: %v", mode, len(delays), delays)
}

// BenchmarkIncidentTimings measures the whole procedure on the end-to-end
// stack with automatic approval and the command executor: from a bad deploy
// (0.5% → 20% errors) to the trigger firing, to the rollback executed, and
// to recovery confirmed (a full 10s window after the rollback, then
// stable_for 3s). Each iteration ships a healthy version, then a bad one,
// which is rolled back to the healthy one.
//
//	go test -run '^$' -bench IncidentTimings -benchtime 5x ./e2e
func BenchmarkIncidentTimings(b *testing.B) {
	for _, mode := range modes {
		b.Run(string(mode), func(b *testing.B) {
			rcv := newReceiver(b)
			s := startStack(b, mode, stackOpts{watch: time.Hour, receiverURL: rcv.url, rollback: "placeholder", approval: "auto"})
			script := rollbackScript(b, s.dir, s.demoURL, 0)
			cfg, err := os.ReadFile(s.cfgPath)
			if err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(s.cfgPath, []byte(strings.Replace(string(cfg), `"placeholder"`, fmt.Sprintf("%q", script), 1)), 0o600); err != nil {
				b.Fatal(err)
			}
			if err := <-s.app.Reload(); err != nil {
				b.Fatal(err)
			}
			var fired, rolled, recovered []time.Duration
			for i := 0; i < b.N; i++ {
				good, bad := fmt.Sprintf("g%d", i), fmt.Sprintf("b%d", i)
				s.shipHealthy(good)
				fault := time.Now()
				s.deploy(bad, 0.20)
				var rec incident.Record
				testenv.Eventually(b, 3*time.Minute, func() error {
					recs, err := s.app.List(context.Background())
					if err != nil || len(recs) == 0 || recs[0].Version != bad || recs[0].State != incident.Resolved {
						return fmt.Errorf("no resolved incident for %s yet", bad)
					}
					rec = recs[0]
					return nil
				}, "the incident to be resolved")
				at := func(typ string) time.Duration {
					for _, e := range rec.Timeline {
						if string(e.Type) == typ {
							return e.At.Sub(fault)
						}
					}
					b.Fatalf("no %s on the timeline", typ)
					return 0
				}
				fired = append(fired, at("incident.declared"))
				rolled = append(rolled, at("rollback.succeeded"))
				recovered = append(recovered, at("recovery.confirmed"))
			}
			for _, m := range []struct {
				name string
				d    []time.Duration
			}{{"fired", fired}, {"rolledback", rolled}, {"recovered", recovered}} {
				slices.Sort(m.d)
				b.ReportMetric(median(m.d).Seconds(), "s-"+m.name+"-median")
				b.ReportMetric(m.d[len(m.d)-1].Seconds(), "s-"+m.name+"-max")
			}
			b.Logf("%s: fault→fired %v; →rolled back %v; →recovered %v", mode, fired, rolled, recovered)
		})
	}
}

// quantile returns the q-quantile of the sorted d by the nearest-rank
// method: the smallest delay with at least a share q of d at or below it.
func quantile(d []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func median(d []time.Duration) time.Duration {
	if len(d)%2 == 1 {
		return d[len(d)/2]
	}
	return (d[len(d)/2-1] + d[len(d)/2]) / 2
}

// shipHealthy deploys a healthy version and waits until Guardian watches it.
func (s *stack) shipHealthy(version string) {
	s.t.Helper()
	s.deploy(version, 0.005)
	testenv.Eventually(s.t, 60*time.Second, func() error {
		if w := s.watch(); w == nil || w.Version != version {
			return fmt.Errorf("watch %+v", w)
		}
		return nil
	}, "the healthy deploy to be seen")
}
