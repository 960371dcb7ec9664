// Package e2e runs Guardian end to end: the demo service under load, a real
// Prometheus (or the embedded source), and the daemon watching deploys.
//
// Every test calls t.Parallel: each starts its own processes (Prometheus,
// Alertmanager, Guardian, a Kubernetes control plane) on ports the kernel
// chooses, with state in its own temporary directory, and none sets
// environment variables. A test keeps to that, and its bounds are on
// conditions and generous enough for a busy machine: it runs beside the
// others (scripts/test.sh sets how many at once with -parallel).
package e2e

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
)

// A deploy from v1 (0.5% errors) to v2 (20% errors) fires the error-rate
// trigger for v2, with evidence naming v1 as the baseline.
func TestBadDeployFires(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			s := startStack(t, mode, stackOpts{})
			s.deploy("v2", 0.20)
			f := s.waitFiring(90 * time.Second)
			v := f.verdict
			if f.deploy.Version != "v2" || f.deploy.Baseline != "v1" {
				t.Fatalf("fired for %s (baseline %s), want v2 (baseline v1)", f.deploy.Version, f.deploy.Baseline)
			}
			if v.Evidence.Value == nil || *v.Evidence.Value < 0.1 || *v.Evidence.Value > 0.3 {
				t.Fatalf("error rate evidence %v, want about 0.2", v.Evidence.Value)
			}
			if !strings.Contains(v.Evidence.BaselineQuery, `version="v1"`) || v.Evidence.BaselineValue == nil || *v.Evidence.BaselineValue > 0.05 {
				t.Fatalf("baseline evidence: query %q value %v", v.Evidence.BaselineQuery, v.Evidence.BaselineValue)
			}
			if v.Evidence.SampleSize == nil || *v.Evidence.SampleSize < 20 {
				t.Fatalf("sample size %v", v.Evidence.SampleSize)
			}
			if !strings.Contains(v.Summary(), "baseline v1") {
				t.Errorf("summary %q does not name the baseline", v.Summary())
			}
			if got := s.metric("guardian_triggers_fired_total", "service", "checkout", "trigger", "error-rate"); got != 1 {
				t.Errorf("guardian_triggers_fired_total = %v, want 1", got)
			}
			if got := s.metric("guardian_deploys_total", "service", "checkout", "source", "version_query"); got != 1 {
				t.Errorf("guardian_deploys_total = %v, want 1", got)
			}
			if got := s.metric("guardian_trigger_state", "trigger", "error-rate"); got != float64(trigger.Firing) {
				t.Errorf("guardian_trigger_state = %v, want firing", got)
			}
		})
	}
}

// With the sequential test, a bad deploy (v1 at 0.5% → v2 at 20% errors)
// fires at the evaluation that sees the deploy: the new version's samples
// from before the deploy was seen are counted, and counted as scraped.
func TestSequentialFiresWhenTheDeployIsSeen(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			s := startStack(t, mode, stackOpts{sequential: true})
			s.deploy("v2", 0.20)
			f := s.waitFiring(90 * time.Second)
			v, se := f.verdict, f.verdict.Evidence.Sequential
			if f.deploy.Version != "v2" || f.deploy.Baseline != "v1" || se == nil {
				t.Fatalf("fired for %s (baseline %s): %s", f.deploy.Version, f.deploy.Baseline, v.Summary())
			}
			if !v.At.Equal(f.deploy.At) || se.Lead != 11*time.Second || se.New.Requests < 50 {
				t.Fatalf("fired at %v, deploy seen at %v, lead %s, %v counted; want at once, 11s (10s of the version query, 1s evaluations), 50+ requests: %s",
					v.At, f.deploy.At, se.Lead, se.New, v.Summary())
			}
			if !strings.Contains(se.RequestsValueQuery, "last_over_time(") {
				t.Errorf("value query %q", se.RequestsValueQuery)
			}
		})
	}
}

// A deploy of a healthy v3 fires nothing during the whole watch window,
// while the trigger is demonstrably evaluated.
func TestHealthyDeployStaysQuiet(t *testing.T) {
	t.Parallel()
	const window = 25 * time.Second
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			s := startStack(t, mode, stackOpts{watch: window})
			s.deploy("v3", 0.005)
			testenv.Eventually(t, 30*time.Second, func() error {
				if s.watch() == nil {
					return fmt.Errorf("no watch open; status %s", s.status())
				}
				return nil
			}, "the deploy of v3 to be seen")
			w := s.watch()
			if w.Version != "v3" || w.Baseline != "v1" {
				t.Fatalf("watching %s (baseline %s)", w.Version, w.Baseline)
			}
			testenv.Eventually(t, window+30*time.Second, func() error {
				if s.watch() != nil {
					return fmt.Errorf("still watching")
				}
				return nil
			}, "the watch window to end")
			if f, ok := s.firing(); ok {
				t.Fatalf("a healthy deploy fired: %s", f.verdict.Summary())
			}
			// Not vacuous: the trigger judged v3 healthy, many times.
			if n := s.count("v3", trigger.OK); n < 10 {
				t.Fatalf("only %d OK verdicts for v3 during the window", n)
			}
		})
	}
}

// With the metric source down mid-watch (Prometheus stopped, or the service's
// /metrics failing for the embedded source), a bad deploy fires nothing and
// the failures are counted; once the source is back, the trigger fires.
func TestSourceOutageNeverFires(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			s := startStack(t, mode, stackOpts{})
			// The source goes down, then the bad version ships and is
			// announced by CI (the version query cannot see it).
			if mode == modePrometheus {
				s.prom.Stop()
			} else {
				s.metricsUp.Store(false)
			}
			s.deploy("v2", 0.20)
			s.announce("v2", "v1")
			if w := s.watch(); w == nil || w.Version != "v2" {
				t.Fatalf("announcement did not open a watch: %s", s.status())
			}
			// Ten evaluations with the source down: nothing fires.
			testenv.Eventually(t, 60*time.Second, func() error {
				n := s.count("v2", trigger.QueryError) + s.count("v2", trigger.NoData) + s.count("v2", trigger.NotEnoughEvidence)
				if n < 10 {
					return fmt.Errorf("%d evaluations without data so far", n)
				}
				return nil
			}, "ten evaluations during the outage")
			if f, ok := s.firing(); ok {
				t.Fatalf("fired while the source was down: %s", f.verdict.Summary())
			}
			if mode == modePrometheus {
				if got := s.metric("guardian_query_errors_total", "service", "checkout", "reason", "unavailable"); got < 10 {
					t.Fatalf("guardian_query_errors_total{reason=unavailable} = %v, want >= 10", got)
				}
				if got := s.metric("guardian_evaluations_total", "outcome", "query_error"); got < 10 {
					t.Fatalf("guardian_evaluations_total{outcome=query_error} = %v", got)
				}
			} else {
				if got := s.metric("guardian_scrape_failures_total"); got < 5 {
					t.Fatalf("guardian_scrape_failures_total = %v, want >= 5", got)
				}
			}
			// The source comes back: the same bad deploy is now caught.
			if mode == modePrometheus {
				s.prom.Restart()
			} else {
				s.metricsUp.Store(true)
			}
			f := s.waitFiring(90 * time.Second)
			if f.deploy.Version != "v2" || math.IsNaN(*f.verdict.Evidence.Value) {
				t.Fatalf("fired %+v", f)
			}
		})
	}
}
