package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
)

// Faults of the metric source. Each row puts a FaultProxy between Guardian
// and its source (a real Prometheus, or the service's /metrics for the
// embedded source), ships a version while the fault lasts, and checks the
// rule every fault must keep: no rollback the configuration did not ask
// for, never two, and the alert a human would want (source.unreachable
// after global.source_alert_after, source.recovered once it answers).
//
// The rows log what they measured; the parent logs the table that
// docs/reliability.md reproduces.

const (
	// faultFor is how long each fault lasts.
	faultFor = 20 * time.Second
	// faultAlertAfter is global.source_alert_after in these rows.
	faultAlertAfter = 5 * time.Second
	// faultTimeout is the Prometheus source's timeout; Slow holds every
	// answer for twice as long.
	faultTimeout = time.Second
)

// partialWarnings are the warnings of a partial answer.
var partialWarnings = []string{testenv.PartialWarning}

// faultRow is one row of the fault matrix.
type faultRow struct {
	name string
	// expected is what the rule asks of Guardian, for the table.
	expected string
	mode     Mode
	run      func(t *testing.T, f *faultRun)
}

// faultRun is one row's stack and what it measured.
type faultRun struct {
	*stack
	rcv      *receiver
	clock    *eventClock
	began    time.Time // the fault's start
	ended    time.Time // its end
	measured []string
}

func (f *faultRun) note(format string, args ...any) {
	f.measured = append(f.measured, fmt.Sprintf(format, args...))
}

// faultTable collects the rows' measurements.
var faultTable struct {
	mu   sync.Mutex
	rows []string
}

func TestFaultSource(t *testing.T) {
	t.Parallel()
	rows := []faultRow{
		{
			name:     "prometheus-slow-healthy",
			expected: "no incident; errors counted (timeout); source.unreachable after 5s, source.recovered after",
			mode:     modePrometheus,
			run: func(t *testing.T, f *faultRun) {
				f.fault.Set(testenv.Fault{Mode: testenv.Slow, Delay: 2 * faultTimeout})
				f.ship("v3", 0.005)
				f.faultLasts(t, 8)
				f.wantErrors(t, "timeout", 8)
				f.wantAlert(t)
				f.heal(t)
				f.wantRecovered(t)
				f.judgedOK(t, "v3")
				f.incidents(t, 0)
			},
		},
		{
			name:     "prometheus-garbage",
			expected: "no incident; errors counted (bad_response); source.unreachable after 5s",
			mode:     modePrometheus,
			run: func(t *testing.T, f *faultRun) {
				f.fault.Set(testenv.Fault{Mode: testenv.Garbage})
				f.ship("v3", 0.005)
				f.faultLasts(t, 15)
				f.wantErrors(t, "bad_response", 15)
				f.wantAlert(t)
				f.heal(t)
				f.judgedOK(t, "v3")
				f.incidents(t, 0)
			},
		},
		{
			name:     "prometheus-truncated-json",
			expected: "no incident; errors counted (bad_response); source.unreachable after 5s",
			mode:     modePrometheus,
			run: func(t *testing.T, f *faultRun) {
				f.fault.Set(testenv.Fault{Mode: testenv.Truncated})
				f.ship("v3", 0.005)
				f.faultLasts(t, 15)
				f.wantErrors(t, "bad_response", 15)
				f.wantAlert(t)
				f.heal(t)
				f.judgedOK(t, "v3")
				f.incidents(t, 0)
			},
		},
		{
			name: "prometheus-partial-errors-hidden-bad",
			expected: "bad v2 (20% errors), the 5xx series missing from every answer (with a partial-response warning): " +
				"no incident for lack of data (judged ok on what it sees, warnings counted); caught once full answers return",
			mode: modePrometheus,
			run: func(t *testing.T, f *faultRun) {
				f.fault.Set(testenv.Fault{Mode: testenv.Partial, Hide: `{code=~"5.."}`, Warnings: partialWarnings})
				f.ship("v2", 0.20)
				f.faultLasts(t, 15)
				// An evaluation that timed out on a loaded machine saw no
				// warning: the fault lasts until 15 did.
				for deadline := time.Now().Add(2 * time.Minute); f.metric("guardian_query_warnings_total", "service", "checkout") < 15 && time.Now().Before(deadline); {
					f.during(t, time.Second, f.nothingFires)
				}
				if w := f.metric("guardian_query_warnings_total", "service", "checkout"); w < 15 {
					t.Errorf("guardian_query_warnings_total = %v, want >= 15", w)
				} else {
					f.note("guardian_query_warnings_total %v", w)
				}
				f.heal(t)
				f.caughtOnce(t, "v2")
			},
		},
		{
			name: "prometheus-partial-requests-hidden-bad",
			expected: "bad v2 (20% errors), the request count (volume query) answered empty with a warning: " +
				"not_enough_evidence, no incident; caught once full answers return",
			mode: modePrometheus,
			run: func(t *testing.T, f *faultRun) {
				f.fault.Set(testenv.Fault{Mode: testenv.Partial, EmptyIf: "increase(http_requests_total", Warnings: partialWarnings})
				f.ship("v2", 0.20)
				f.faultLasts(t, 15)
				// An evaluation that timed out on a loaded machine is a
				// query error: the fault lasts until 15 were judged.
				for deadline := time.Now().Add(2 * time.Minute); f.count("v2", trigger.NotEnoughEvidence) < 15 && time.Now().Before(deadline); {
					f.during(t, time.Second, f.nothingFires)
				}
				if n := f.count("v2", trigger.NotEnoughEvidence); n < 15 {
					t.Errorf("%d not_enough_evidence verdicts for v2 during the fault, want >= 15", n)
				}
				f.heal(t)
				f.caughtOnce(t, "v2")
			},
		},
		{
			name: "prometheus-partial-successes-hidden-healthy",
			expected: "healthy v3, the 2xx series missing (the error ratio reads 100%) with a warning: " +
				"no incident (min_requests: the errors alone are too few requests)",
			mode: modePrometheus,
			run: func(t *testing.T, f *faultRun) {
				f.fault.Set(testenv.Fault{Mode: testenv.Partial, Hide: `{code="200"}`, Warnings: partialWarnings})
				f.ship("v3", 0.005)
				f.faultLasts(t, 15)
				f.heal(t)
				f.judgedOK(t, "v3")
				f.incidents(t, 0)
			},
		},
		{
			// A partial answer that keeps the errors and loses the
			// successes reads as a 100% error ratio. Its warning says the
			// answer is partial, and Guardian does not act on it.
			name: "prometheus-partial-successes-hidden-after-deploy",
			expected: "healthy v4 (3% errors, under above: 0.05) judged ok, then the 2xx series missing with a warning: " +
				"no incident (the error ratio is an artefact of the missing data)",
			mode: modePrometheus,
			run: func(t *testing.T, f *faultRun) {
				f.deploy("v4", 0.03)
				testenv.EventuallyTrue(t, 60*time.Second, func() bool { return f.count("v4", trigger.OK) >= 3 }, "v4 judged ok")
				before := f.outcomes("v4")
				f.note("before the fault %v", before)
				f.fault.Set(testenv.Fault{Mode: testenv.Partial, Hide: `{code="200"}`, Warnings: partialWarnings})
				f.began = time.Now()
				for time.Since(f.began) < faultFor {
					if v, ok := f.firing(); ok {
						f.note("fired %s into the fault: %s (%d warnings in its evidence)", v.verdict.At.Sub(f.began).Round(100*time.Millisecond),
							v.verdict.Summary(), len(v.verdict.Evidence.Warnings))
						t.Errorf("a partial answer (warning %q) made healthy v4 fire: %s", testenv.PartialWarning, v.verdict.Summary())
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				f.heal(t)
				during := f.outcomes("v4")
				for o, n := range before {
					during[o] -= n
				}
				f.note("during the fault %v", during)
				if during[trigger.NotEnoughEvidence.String()] < 5 {
					t.Errorf("the partial answers were judged %v, want not_enough_evidence", during)
				}
				recs, err := f.app.List(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) > 0 {
					t.Errorf("incident %d declared for healthy v4 on partial data (%s)", recs[0].ID, recs[0].State)
				}
				f.note("incidents %d", len(recs))
			},
		},
		{
			name:     "prometheus-503-then-500",
			expected: "no incident; errors counted (unavailable); one source.unreachable, one source.recovered; a bad deploy after it is caught once",
			mode:     modePrometheus,
			run: func(t *testing.T, f *faultRun) {
				f.fault.Set(testenv.Fault{Mode: testenv.Status, Code: 503})
				f.ship("v3", 0.005)
				f.during(t, faultFor/2, f.nothingFires)
				f.fault.Set(testenv.Fault{Mode: testenv.Status, Code: 500})
				f.faultLasts(t, 15)
				f.wantErrors(t, "unavailable", 15)
				f.wantAlert(t)
				f.heal(t)
				f.wantRecovered(t)
				f.judgedOK(t, "v3")
				f.incidents(t, 0)
				f.deploy("v4", 0.20)
				f.caughtOnce(t, "v4")
			},
		},
		{
			name:     "scrape-target-flapping-healthy",
			expected: "embedded source, /metrics down and up every 1.5s (each state until a scrape saw it): no incident, scrape failures counted, no source.unreachable (never down for 5s)",
			mode:     modeEmbedded,
			run: func(t *testing.T, f *faultRun) {
				ctx, cancel := context.WithCancel(context.Background())
				flapped := make(chan struct{})
				// Each state lasts 1.5 s and until the target saw a scrape
				// in it: on a loaded machine a late scrape could otherwise
				// miss up windows in a row and find the target down for 5 s,
				// which is an outage, not a flap.
				go func() {
					defer close(flapped)
					down := true
					for {
						mode := testenv.Pass
						if down {
							mode = testenv.Down
						}
						seen := f.fault.Requests(mode)
						f.fault.Set(testenv.Fault{Mode: mode})
						down = !down
						minimum := time.After(1500 * time.Millisecond)
						for waited := false; !waited || f.fault.Requests(mode) == seen; {
							select {
							case <-ctx.Done():
								return
							case <-minimum:
								waited = true
							case <-time.After(20 * time.Millisecond):
							}
						}
					}
				}()
				f.deploy("v3", 0.005)
				f.began = time.Now()
				f.during(t, faultFor, f.nothingFires)
				// On a loaded machine scrapes come slower: flap until five failed.
				for deadline := time.Now().Add(2 * time.Minute); f.metric("guardian_scrape_failures_total") < 5 && time.Now().Before(deadline); {
					f.during(t, time.Second, f.nothingFires)
				}
				cancel()
				<-flapped
				f.heal(t)
				failures := f.metric("guardian_scrape_failures_total")
				if failures < 5 {
					t.Errorf("guardian_scrape_failures_total = %v, want >= 5", failures)
				}
				f.note("scrapes refused %d, guardian_scrape_failures_total %v", f.fault.Requests(testenv.Down), failures)
				f.judgedOK(t, "v3")
				f.note("v3 verdicts %v", f.outcomes("v3"))
				if n := f.rcv.delivered("source.unreachable"); n != 0 {
					t.Errorf("source.unreachable delivered %d times for a flapping target", n)
				}
				f.incidents(t, 0)
			},
		},
		{
			name:     "prometheus-slow-bad",
			expected: "bad v2 while every answer is late: nothing fires during the fault; caught exactly once after it",
			mode:     modePrometheus,
			run: func(t *testing.T, f *faultRun) {
				f.fault.Set(testenv.Fault{Mode: testenv.Slow, Delay: 2 * faultTimeout})
				f.ship("v2", 0.20)
				f.faultLasts(t, 8)
				f.wantErrors(t, "timeout", 8)
				f.wantAlert(t)
				f.heal(t)
				f.caughtOnce(t, "v2")
			},
		},
	}
	t.Cleanup(func() {
		faultTable.mu.Lock()
		defer faultTable.mu.Unlock()
		t.Logf("fault matrix:\n| fault | expected | measured | took |\n|---|---|---|---|\n%s", strings.Join(faultTable.rows, "\n"))
	})
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			rcv := newReceiver(t)
			s := startStack(t, r.mode, stackOpts{rollback: "true", receiverURL: rcv.url, fault: true, sourceTimeout: faultTimeout})
			s.alertAfter(faultAlertAfter.String())
			f := &faultRun{stack: s, rcv: rcv, clock: startEventClock(t, rcv)}
			defer func() {
				took := time.Since(start).Round(time.Second)
				status := ""
				if t.Failed() {
					status = " **FAILED**"
				}
				faultTable.mu.Lock()
				faultTable.rows = append(faultTable.rows, fmt.Sprintf("| %s | %s | %s%s | %s |", r.name, r.expected, strings.Join(f.measured, "; "), status, took))
				faultTable.mu.Unlock()
				t.Logf("%s took %s: %s", r.name, took, strings.Join(f.measured, "; "))
			}()
			r.run(t, f)
			if bad := rcv.badDeliveries(); len(bad) > 0 {
				t.Errorf("bad deliveries: %v", bad)
			}
		})
	}
}

// ship deploys version with the source already faulty, and announces it as
// CI would (the version query may not see it).
func (f *faultRun) ship(version string, errorRate float64) {
	f.t.Helper()
	f.deploy(version, errorRate)
	f.began = time.Now()
	f.announce(version, "v1")
	if w := f.watch(); w == nil || w.Version != version {
		f.t.Fatalf("the announcement did not open a watch: %s", f.status())
	}
}

// faultLasts keeps the fault for faultFor, failing as soon as anything
// fires, and checks that the shipped version was evaluated at least min
// times meanwhile.
func (f *faultRun) faultLasts(t *testing.T, min int) {
	t.Helper()
	f.during(t, time.Until(f.began.Add(faultFor)), f.nothingFires)
	// On a loaded machine evaluations come slower than once a second: the
	// fault lasts until min of them saw it (nothing firing meanwhile).
	version := f.watch().Version
	evaluated := func() (int, map[string]int) {
		o := f.outcomes(version)
		n := 0
		for _, c := range o {
			n += c
		}
		return n, o
	}
	deadline := time.Now().Add(2 * time.Minute)
	for n, _ := evaluated(); n < min && time.Now().Before(deadline); n, _ = evaluated() {
		f.during(t, time.Second, f.nothingFires)
	}
	n, o := evaluated()
	f.note("%d evaluations of %s during %s of fault %v", n, version, time.Since(f.began).Round(time.Second), o)
	if n < min {
		t.Errorf("%d evaluations of %s during the fault, want >= %d", n, version, min)
	}
}

// nothingFires fails when a trigger fired or an incident was declared.
func (f *faultRun) nothingFires() error {
	if v, ok := f.firing(); ok {
		return fmt.Errorf("fired during the fault: %s", v.verdict.Summary())
	}
	recs, err := f.app.List(context.Background())
	if err != nil {
		return err
	}
	if len(recs) > 0 {
		return fmt.Errorf("incident %d declared during the fault", recs[0].ID)
	}
	return nil
}

// during checks cond every 100 ms for d, failing the test the first time it
// returns an error.
func (f *faultRun) during(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		if err := cond(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(end) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// heal ends the fault.
func (f *faultRun) heal(t *testing.T) {
	t.Helper()
	f.fault.Set(testenv.Fault{})
	f.ended = time.Now()
}

// outcomes counts the verdicts of version by outcome.
func (f *faultRun) outcomes(version string) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, v := range f.verdicts {
		if v.deploy.Version == version {
			out[v.verdict.Outcome.String()]++
		}
	}
	return out
}

// wantErrors checks guardian_query_errors_total: at least min for reason
// (any reason when empty), and notes every reason's count.
func (f *faultRun) wantErrors(t *testing.T, reason string, min int) {
	t.Helper()
	byReason := map[string]float64{}
	for _, r := range []string{"timeout", "unavailable", "bad_response", "bad_query", "canceled", "other"} {
		if n := f.metric("guardian_query_errors_total", "service", "checkout", "reason", r); n > 0 {
			byReason[r] = n
		}
	}
	evals := f.metric("guardian_evaluations_total", "outcome", "query_error")
	f.note("guardian_query_errors_total %v, guardian_evaluations_total{outcome=query_error} %v", byReason, evals)
	got := 0.0
	for r, n := range byReason {
		if reason == "" || r == reason {
			got += n
		}
	}
	if got < float64(min) {
		t.Errorf("guardian_query_errors_total{reason=%q} = %v, want >= %d (all: %v)", reason, got, min, byReason)
	}
	if evals < float64(min) {
		t.Errorf("guardian_evaluations_total{outcome=query_error} = %v, want >= %d", evals, min)
	}
}

// wantAlert checks that on-call was told, once, that the source is
// unreachable, no sooner than source_alert_after after the fault began.
func (f *faultRun) wantAlert(t *testing.T) {
	t.Helper()
	ev, ok := f.clock.first("source.unreachable")
	if !ok {
		t.Errorf("no source.unreachable after %s of fault (source_alert_after %s); guardian_source_up{source=prom} = %v; received %v",
			time.Since(f.began).Round(time.Millisecond), faultAlertAfter, f.metric("guardian_source_up", "source", "prom"), f.rcv.types())
		f.note("no source.unreachable (guardian_source_up %v)", f.metric("guardian_source_up", "source", "prom"))
		return
	}
	f.note("source.unreachable after %s (reason %v)", ev.at.Sub(f.began).Round(100*time.Millisecond), ev.Data["reason"])
	if d := ev.at.Sub(f.began); d < faultAlertAfter {
		t.Errorf("source.unreachable after %s, before source_alert_after", d)
	}
	if n := f.rcv.delivered("source.unreachable"); n != 1 {
		t.Errorf("source.unreachable delivered %d times, want 1", n)
	}
}

// wantRecovered waits for source.recovered, once.
func (f *faultRun) wantRecovered(t *testing.T) {
	t.Helper()
	f.rcv.wait(t, "source.recovered", 30*time.Second)
	ev, _ := f.clock.first("source.recovered")
	f.note("source.recovered %s after the fault ended", ev.at.Sub(f.ended).Round(100*time.Millisecond))
	if n := f.rcv.delivered("source.recovered"); n != 1 {
		t.Errorf("source.recovered delivered %d times, want 1", n)
	}
}

// judgedOK waits, after the fault, for three more ok verdicts of version.
func (f *faultRun) judgedOK(t *testing.T, version string) {
	t.Helper()
	before := f.count(version, trigger.OK)
	testenv.EventuallyTrue(t, 40*time.Second, func() bool { return f.count(version, trigger.OK) >= before+3 },
		version+" judged ok after the fault")
	if v, ok := f.firing(); ok {
		t.Errorf("fired: %s", v.verdict.Summary())
	}
}

// caughtOnce waits for the incident of version after the fault, then checks
// that it stays the only one while the trigger keeps being evaluated.
func (f *faultRun) caughtOnce(t *testing.T, version string) {
	t.Helper()
	from := time.Now()
	rec := f.waitIncident(1, incident.AwaitingApproval, 60*time.Second)
	f.note("%s caught %s after the fault ended", version, time.Since(from).Round(100*time.Millisecond))
	if rec.Version != version {
		t.Errorf("incident 1 is for %s, want %s", rec.Version, version)
	}
	// Five more seconds of evaluations: still one incident, one firing.
	f.during(t, 5*time.Second, func() error {
		recs, err := f.app.List(context.Background())
		if err != nil {
			return err
		}
		if len(recs) != 1 {
			return fmt.Errorf("%d incidents, want 1", len(recs))
		}
		return nil
	})
	if n := f.metric("guardian_triggers_fired_total", "service", "checkout"); n != 1 {
		t.Errorf("guardian_triggers_fired_total = %v, want 1", n)
	}
	if n := f.rcv.delivered("incident.declared"); n != 1 {
		t.Errorf("incident.declared delivered %d times, want 1 (received %v)", n, f.rcv.types())
	}
	f.note("incidents 1, triggers fired 1")
}

// incidents checks the number of incidents declared.
func (f *faultRun) incidents(t *testing.T, want int) {
	t.Helper()
	recs, err := f.app.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != want {
		t.Errorf("%d incidents, want %d", len(recs), want)
	}
	f.note("incidents %d", len(recs))
}

type timedEvent struct {
	receivedEvent
	at time.Time
}

// eventClock notes when each of a receiver's events was first seen, polling
// it every 20 ms.
type eventClock struct {
	rcv *receiver
	mu  sync.Mutex
	at  map[string]time.Time // by event id
}

func startEventClock(t *testing.T, rcv *receiver) *eventClock {
	c := &eventClock{rcv: rcv, at: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			rcv.mu.Lock()
			now := time.Now()
			c.mu.Lock()
			for _, e := range rcv.events {
				if _, ok := c.at[e.ID]; !ok {
					c.at[e.ID] = now
				}
			}
			c.mu.Unlock()
			rcv.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// first returns the receiver's first event of type typ and when it came.
func (c *eventClock) first(typ string) (timedEvent, bool) {
	c.rcv.mu.Lock()
	defer c.rcv.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.rcv.events {
		if e.Type == typ {
			at, ok := c.at[e.ID]
			if !ok {
				at = time.Now()
			}
			return timedEvent{e, at}, true
		}
	}
	return timedEvent{}, false
}

func (r *receiver) badDeliveries() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.bad)
}
