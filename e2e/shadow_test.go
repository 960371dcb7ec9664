package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/testenv"
)

// shadowStack is the stack with incidents on, an automatic go (so that an
// enforced incident would roll back at once), the counting rollback
// script, and checkout switched to shadow mode by a reload.
func shadowStack(t *testing.T, rcv *receiver, watch time.Duration) *stack {
	t.Helper()
	s := startStack(t, modeEmbedded, stackOpts{receiverURL: rcv.url, rollback: "placeholder", approval: "auto", watch: watch})
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))
	s.editConfig("    watch_window:", "    mode: shadow\n    watch_window:")
	return s
}

// vote posts a go or no-go and returns the status and the body.
func (s *stack) vote(id int64, verb string) (int, string) {
	s.t.Helper()
	req, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/v1/incidents/%d/%s", s.apiURL, id, verb), strings.NewReader(`{"reason":"shadow"}`))
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// receivedFor returns the events of incident id the receiver got.
func (r *receiver) receivedFor(id int64) []receivedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []receivedEvent
	for _, e := range r.events {
		if e.Incident == id {
			out = append(out, e)
		}
	}
	return out
}

// A bad deploy of a service in shadow mode: the incident is declared and
// notified, records that Guardian would have rolled back, refuses a go or
// no-go, and closes itself when the watch ends; the report says Guardian
// did not act, the service stays on the bad version and the rollback
// command never runs.
func TestShadowBadDeploy(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := shadowStack(t, rcv, 30*time.Second)

	s.deploy("v2", 0.20)
	rec := s.waitIncident(1, incident.Shadow, 90*time.Second)
	if rec.Mode != incident.ModeShadow || rec.Version != "v2" || rec.Baseline != "v1" {
		t.Fatalf("incident %s %s %s → %s", rec.State, rec.Mode, rec.Version, rec.Baseline)
	}
	if !inOrder(timelineTypes(rec), []string{"incident.declared", "shadow.decision"}) {
		t.Fatalf("timeline %v", timelineTypes(rec))
	}
	for _, verb := range []string{"approve", "deny"} {
		if code, body := s.vote(1, verb); code != http.StatusConflict || !strings.Contains(body, "shadow mode") {
			t.Fatalf("%s a shadow incident: %d %s", verb, code, body)
		}
	}
	if got := s.metric("guardian_shadow_decisions_total", "service", "checkout", "decision", "rollback"); got != 1 {
		t.Fatalf("guardian_shadow_decisions_total = %g, want 1", got)
	}

	// The watch ends: the incident closes itself and the report is written.
	rec = s.waitIncident(1, incident.Closed, 90*time.Second)
	closing := rec.Timeline[len(rec.Timeline)-1]
	for _, e := range rec.Timeline {
		if e.Type == "incident.closed" {
			closing = e
		}
	}
	if closing.Data["reason"] != "watch_ended" || !strings.Contains(closing.Message, "Guardian did not act") {
		t.Fatalf("closing entry %v %q", closing.Data, closing.Message)
	}
	var md []byte
	testenv.Eventually(t, 30*time.Second, func() error {
		var err error
		md, err = os.ReadFile(filepath.Join(s.dir, "data", "reports", "incident-1.md"))
		return err
	}, "the report to be written")
	if !strings.Contains(string(md), "**Shadow mode: Guardian did not act.** It would have rolled back checkout v2 → v1 at") {
		t.Fatalf("report does not say shadow mode:\n%.600s", md)
	}

	want := []string{"incident.declared", "shadow.decision", "incident.closed", "report.written"}
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := rcv.types(); strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("events %v", got)
		}
		return nil
	}, "every event at the receiver")
	for _, e := range rcv.receivedFor(1) {
		if e.Mode != "shadow" || !strings.HasPrefix(e.Text, "[shadow] ") {
			t.Errorf("%s event: mode %q, text %q", e.Type, e.Mode, e.Text)
		}
		if e.Type == "shadow.decision" && (e.Data["decision"] != "rollback" || !strings.Contains(e.Text, "would have rolled back checkout v2 → v1")) {
			t.Errorf("shadow.decision event %v %q", e.Data, e.Text)
		}
	}
	if err := rcv.sequence(1); err != nil {
		t.Fatal(err)
	}
	if len(rcv.bad) != 0 {
		t.Fatalf("bad deliveries: %v", rcv.bad)
	}

	// Nothing was run: the service is still on v2.
	if got := s.rollbacks(); len(got) != 0 {
		t.Fatalf("the rollback command ran: %v", got)
	}
	if vs := s.demo.Versions(); len(vs) != 1 || vs[0].Version != "v2" {
		t.Fatalf("demo serves %+v, want v2 alone", vs)
	}
	if rec = s.incident(1); len(rec.Actions) != 0 || len(rec.Decisions) != 0 {
		t.Fatalf("actions %v, decisions %v", rec.Actions, rec.Decisions)
	}
}

// Switching the service to enforce while a shadow incident is open does not
// roll that incident back; the next bad deploy is enforced and is the only
// one whose rollback runs.
func TestShadowReloadToEnforce(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := shadowStack(t, rcv, 2*time.Minute)

	s.deploy("v2", 0.20)
	s.waitIncident(1, incident.Shadow, 90*time.Second)
	s.editConfig("    mode: shadow\n", "")
	if rec := s.incident(1); rec.State != incident.Shadow || rec.Mode != incident.ModeShadow {
		t.Fatalf("after the switch incident 1 is %s, mode %s", rec.State, rec.Mode)
	}

	// A new bad deploy: incident 1 closes without acting, incident 2 is
	// enforced with the automatic go and rolls back.
	s.deploy("v3", 0.60)
	testenv.Eventually(t, 90*time.Second, func() error {
		if got := s.rollbacks(); len(got) == 0 {
			return fmt.Errorf("no rollback yet")
		}
		return nil
	}, "the enforced incident's rollback to run")
	if got := s.rollbacks(); len(got) != 1 || got[0] != "incident-2/rollback.application" {
		t.Fatalf("rollback runs %v, want incident 2's alone", got)
	}
	one := s.waitIncident(1, incident.Closed, 30*time.Second)
	if len(one.Actions) != 0 || len(one.Decisions) != 0 {
		t.Fatalf("shadow incident acted: %v %v", one.Actions, one.Decisions)
	}
	if two := s.incident(2); two.Mode != incident.ModeEnforce || two.Version != "v3" {
		t.Fatalf("incident 2: mode %s, version %s", two.Mode, two.Version)
	}
	if got := s.metric("guardian_shadow_decisions_total", "service", "checkout"); got != 1 {
		t.Fatalf("guardian_shadow_decisions_total = %g, want 1", got)
	}
}
