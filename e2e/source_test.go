package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
)

// The Prometheus Guardian queries goes away: after global.source_alert_after
// on-call hears source.unreachable, once, and Guardian declares no incident
// (no data is not a bad deploy); Prometheus comes back: on-call hears
// source.recovered, once, and Guardian judges the next deploy again.
func TestSourceUnreachable(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := startStack(t, modePrometheus, stackOpts{rollback: "true", receiverURL: rcv.url})
	s.alertAfter("3s")
	if got := s.metric("guardian_source_up", "source", "prom"); got != 1 {
		t.Fatalf("guardian_source_up{source=prom} = %v before the outage, want 1", got)
	}

	s.prom.Stop()
	stopped := time.Now()
	down := rcv.wait(t, "source.unreachable", 60*time.Second)
	if waited := time.Since(stopped); waited < 3*time.Second {
		t.Errorf("told after %s, before source_alert_after (3s)", waited)
	}
	if down.ID != "src_prom_1" || down.Sequence != 1 || down.Incident != 0 {
		t.Errorf("event %s number %d of incident %d, want src_prom_1 number 1 of none", down.ID, down.Sequence, down.Incident)
	}
	for _, want := range []string{`metric source "prom" (` + s.prom.URL + `) is unreachable`,
		"its queries have failed since", "Guardian is blind for checkout meanwhile",
		"no trigger can judge; no rollback happens for lack of data"} {
		if !strings.Contains(down.Text, want) {
			t.Errorf("text %q lacks %q", down.Text, want)
		}
	}
	if down.Data["source"] != "prom" || down.Data["reason"] != "unavailable" {
		t.Errorf("data %v", down.Data)
	}
	if got := s.metric("guardian_source_up", "source", "prom"); got != 0 {
		t.Errorf("guardian_source_up{source=prom} = %v during the outage, want 0", got)
	}

	// Three more ticks fail: still one event, and no incident.
	failed := s.metric("guardian_query_errors_total", "service", "checkout", "reason", "unavailable")
	testenv.EventuallyTrue(t, 30*time.Second, func() bool {
		return s.metric("guardian_query_errors_total", "service", "checkout", "reason", "unavailable") >= failed+3
	}, "three more failed queries")
	if n := rcv.delivered("source.unreachable"); n != 1 {
		t.Errorf("source.unreachable delivered %d times, want 1", n)
	}
	s.noIncident()

	s.prom.Restart()
	back := rcv.wait(t, "source.recovered", 60*time.Second)
	if back.ID != "src_prom_2" || back.Sequence != 2 || back.Incident != 0 {
		t.Errorf("event %s number %d of incident %d, want src_prom_2 number 2 of none", back.ID, back.Sequence, back.Incident)
	}
	if d, _ := back.Data["duration_seconds"].(float64); d < 3 || !strings.Contains(back.Text, "answers again: it was unreachable for ") {
		t.Errorf("recovery after %vs: %q", back.Data["duration_seconds"], back.Text)
	}
	if got := s.metric("guardian_source_up", "source", "prom"); got != 1 {
		t.Errorf("guardian_source_up{source=prom} = %v after the outage, want 1", got)
	}
	if got := s.metric("guardian_source_outages_total", "source", "prom"); got != 1 {
		t.Errorf("guardian_source_outages_total{source=prom} = %v, want 1", got)
	}

	// Guardian judges again: a healthy deploy is seen and judged ok.
	s.deploy("v2", 0.005)
	testenv.EventuallyTrue(t, 90*time.Second, func() bool { return s.count("v2", trigger.OK) > 0 }, "v2 judged ok")
	for typ, want := range map[string]int{"source.unreachable": 1, "source.recovered": 1} {
		if n := rcv.delivered(typ); n != want {
			t.Errorf("%s delivered %d times, want %d", typ, n, want)
		}
	}
	s.noIncident()
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.bad) > 0 {
		t.Errorf("bad deliveries: %v", rcv.bad)
	}
}

// The embedded source's scrape fails (the metrics endpoint answers 503):
// on-call hears that the service's metrics endpoint is unreachable, then
// that it answers again.
func TestScrapeUnreachable(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := startStack(t, modeEmbedded, stackOpts{rollback: "true", receiverURL: rcv.url})
	s.alertAfter("3s")

	s.metricsUp.Store(false)
	down := rcv.wait(t, "source.unreachable", 60*time.Second)
	if down.ID != "src_scrape:checkout_1" || down.Data["source"] != "scrape:checkout" ||
		!strings.Contains(down.Text, "the metrics endpoint of checkout ("+s.demoURL+"/metrics, scraped by Guardian) is unreachable") {
		t.Errorf("event %s: %q, data %v", down.ID, down.Text, down.Data)
	}
	s.noIncident()

	s.metricsUp.Store(true)
	back := rcv.wait(t, "source.recovered", 60*time.Second)
	if back.ID != "src_scrape:checkout_2" {
		t.Errorf("event %s, want src_scrape:checkout_2", back.ID)
	}
	for typ, want := range map[string]int{"source.unreachable": 1, "source.recovered": 1} {
		if n := rcv.delivered(typ); n != want {
			t.Errorf("%s delivered %d times, want %d", typ, n, want)
		}
	}
}

// alertAfter sets global.source_alert_after in the configuration file and
// reloads it.
func (s *stack) alertAfter(d string) {
	s.t.Helper()
	b, err := os.ReadFile(s.cfgPath)
	if err != nil {
		s.t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "\nglobal:\n", "\nglobal:\n  source_alert_after: "+d+"\n", 1))
	if err := os.WriteFile(s.cfgPath, b, 0o600); err != nil {
		s.t.Fatal(err)
	}
	if err := <-s.app.Reload(); err != nil {
		s.t.Fatal(err)
	}
	if got := s.app.Config().Global.SourceAlertAfter.String(); got != d {
		s.t.Fatalf("source_alert_after = %s after the reload, want %s", got, d)
	}
}

// noIncident fails the test if Guardian declared an incident.
func (s *stack) noIncident() {
	s.t.Helper()
	recs, err := s.app.List(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	if len(recs) != 0 {
		s.t.Errorf("%d incidents declared, the first %s: %s", len(recs), recs[0].State, recs[0].Trigger)
	}
}

// wait waits for the receiver's first event of type typ.
func (r *receiver) wait(t testing.TB, typ string, timeout time.Duration) receivedEvent {
	t.Helper()
	var got receivedEvent
	testenv.Eventually(t, timeout, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.events {
			if e.Type == typ {
				got = e
				return nil
			}
		}
		return fmt.Errorf("received %v", r.typesLocked())
	}, typ)
	return got
}

// delivered counts the deliveries of type typ, duplicates included.
func (r *receiver) delivered(typ string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.deliveries[typ]
}

func (r *receiver) typesLocked() []string {
	var out []string
	for _, e := range r.events {
		out = append(out, e.Type)
	}
	return out
}
