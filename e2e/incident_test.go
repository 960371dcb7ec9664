package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/sign"
	"github.com/rollback-guardian/guardian/testenv"
)

// receiver is on-call's webhook endpoint (a stand-in for a chat or paging
// service): it verifies every Standard Webhooks signature and records the
// events in the order received, once per webhook-id.
type receiver struct {
	t   testing.TB
	url string

	mu     sync.Mutex
	seen   map[string]bool
	events []receivedEvent
	bad    []string
}

type receivedEvent struct {
	ID   string         `json:"id"`
	Type string         `json:"type"`
	Text string         `json:"text"`
	Data map[string]any `json:"data"`
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{t: t, seen: map[string]bool{}}
	key, err := sign.Key(webhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	r.url = serve(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := sign.Verify(req.Header, key, body, time.Now(), 5*time.Minute); err != nil {
			r.bad = append(r.bad, err.Error())
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var e receivedEvent
		if err := json.Unmarshal(body, &e); err != nil {
			r.bad = append(r.bad, err.Error())
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if e.ID != req.Header.Get(sign.HeaderID) {
			r.bad = append(r.bad, "id differs from webhook-id")
		}
		if !r.seen[e.ID] {
			r.seen[e.ID] = true
			r.events = append(r.events, e)
		}
	}))
	return r
}

func (r *receiver) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Type)
	}
	return out
}

// rollbackScript counts its runs in dir/rollbacks, waits delay, then asks
// the demo service to go back to $GUARDIAN_BASELINE, as a deploy system would.
func rollbackScript(t testing.TB, dir, demoURL string, delay time.Duration) string {
	_, demoBin := bins(t)
	return fmt.Sprintf(`echo "$GUARDIAN_IDEMPOTENCY_KEY" >> %s/rollbacks && sleep %g && exec %s rollback --admin %s`,
		dir, delay.Seconds(), demoBin, demoURL)
}

func (s *stack) rollbacks() []string {
	b, err := os.ReadFile(filepath.Join(s.dir, "rollbacks"))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

func (s *stack) incident(id int64) incident.Record {
	s.t.Helper()
	var r incident.Record
	if err := s.getJSON(fmt.Sprintf("/api/v1/incidents/%d", id), &r); err != nil {
		s.t.Fatal(err)
	}
	return r
}

func (s *stack) waitIncident(id int64, state incident.State, timeout time.Duration) incident.Record {
	s.t.Helper()
	var r incident.Record
	testenv.Eventually(s.t, timeout, func() error {
		if err := s.getJSON(fmt.Sprintf("/api/v1/incidents/%d", id), &r); err != nil {
			return err
		}
		if r.State != state {
			return fmt.Errorf("incident %d is %s", id, r.State)
		}
		return nil
	}, "incident state "+string(state))
	return r
}

func (s *stack) decide(id int64, verb, token, body string) int {
	s.t.Helper()
	req, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/v1/incidents/%d/%s", s.apiURL, id, verb), strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func timelineTypes(r incident.Record) []string {
	var out []string
	for _, e := range r.Timeline {
		out = append(out, e.Type)
	}
	return out
}

// inOrder reports whether want appears in got in this order (others may be between).
func inOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// The whole procedure on a real Prometheus: bad deploy → incident → go
// through the API with a token → command executor rolls back → recovery
// confirmed → report and invite written, every step on the timeline and
// every event delivered, signed, in order.
func TestIncidentLifecycle(t *testing.T) {
	rcv := newReceiver(t)
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder"})
	// The rollback script needs the stack's demo URL: set it now.
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))

	s.deploy("v2", 0.20)
	rec := s.waitIncident(1, incident.AwaitingApproval, 90*time.Second)
	if rec.Version != "v2" || rec.Baseline != "v1" || rec.Severity != "SEV-1" {
		t.Fatalf("incident %+v", rec)
	}
	// No token, a wrong token: refused, nothing on the timeline.
	before := len(rec.Timeline)
	if code := s.decide(1, "approve", "", `{}`); code != 401 {
		t.Fatalf("approve without a token: %d", code)
	}
	if code := s.decide(1, "approve", "wrong-token-0000000000000", `{}`); code != 401 {
		t.Fatalf("approve with a wrong token: %d", code)
	}
	if n := len(s.incident(1).Timeline); n != before {
		t.Fatalf("rejected approvals reached the timeline (%d → %d entries)", before, n)
	}
	if !strings.Contains(s.proc.logs.String(), "rejected API request") {
		t.Fatal("rejected approvals not logged")
	}
	if len(s.rollbacks()) != 0 {
		t.Fatal("rolled back before the go")
	}
	if code := s.decide(1, "approve", apiToken, `{"reason":"error rate confirmed"}`); code != 200 {
		t.Fatalf("approve: %d", code)
	}
	rec = s.waitIncident(1, incident.Resolved, 120*time.Second)

	steps := []string{"incident.declared", "approval.requested", "approval.granted", "rollback.started",
		"rollback.succeeded", "recovery.confirmed", "incident.resolved", "report.written", "postmortem.scheduled"}
	testenv.Eventually(t, 10*time.Second, func() error {
		rec = s.incident(1)
		if !inOrder(timelineTypes(rec), steps) {
			return fmt.Errorf("timeline %v", timelineTypes(rec))
		}
		return nil
	}, "the report and invite to be recorded")
	if rec.Decisions[0].By != "token:ci" || rec.Decisions[0].Reason != "error rate confirmed" {
		t.Fatalf("decision %+v", rec.Decisions[0])
	}
	if got := s.rollbacks(); len(got) != 1 || got[0] != "incident-1/rollback.application" {
		t.Fatalf("rollback runs %v, want exactly one", got)
	}
	// The report files exist, with every timeline step in order.
	reports := filepath.Join(s.dir, "data", "reports")
	md, err := os.ReadFile(filepath.Join(reports, "incident-1.md"))
	if err != nil {
		t.Fatal(err)
	}
	pos := 0
	for _, step := range steps[:len(steps)-1] { // postmortem.scheduled is announced after the report is written
		i := strings.Index(string(md[pos:]), "| "+step+" |")
		if i < 0 {
			t.Fatalf("report timeline lacks %s after byte %d:\n%s", step, pos, md)
		}
		pos += i
	}
	var js struct {
		Incident incident.Record `json:"incident"`
	}
	b, err := os.ReadFile(filepath.Join(reports, "incident-1.json"))
	if err != nil || json.Unmarshal(b, &js) != nil || js.Incident.ID != 1 {
		t.Fatalf("JSON report: %v", err)
	}
	if ics, err := os.ReadFile(filepath.Join(reports, "incident-1-postmortem.ics")); err != nil || !strings.Contains(string(ics), "BEGIN:VEVENT") {
		t.Fatalf("invite: %v", err)
	}
	// The report is served too.
	var served []byte
	if resp, err := http.Get(s.apiURL + "/api/v1/incidents/1/report"); err == nil {
		served, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if !strings.Contains(string(served), "# Incident #1") {
		t.Fatalf("served report: %.200s", served)
	}
	// Every event, signed, in order.
	events := []string{"incident.declared", "approval.requested", "approval.granted", "rollback.started",
		"rollback.succeeded", "recovery.confirmed", "incident.resolved", "postmortem.scheduled"}
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := rcv.types(); strings.Join(got, ",") != strings.Join(events, ",") {
			return fmt.Errorf("events %v", got)
		}
		return nil
	}, "every event at the receiver")
	if len(rcv.bad) != 0 {
		t.Fatalf("bad deliveries: %v", rcv.bad)
	}
}

// setRollback rewrites the rollback command in the config file, restarting
// the external Guardian on it.
func (s *stack) setRollback(script string) {
	s.t.Helper()
	b, err := os.ReadFile(s.cfgPath)
	if err != nil {
		s.t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), `"placeholder"`, fmt.Sprintf("%q", script), 1))
	if err := os.WriteFile(s.cfgPath, b, 0o600); err != nil {
		s.t.Fatal(err)
	}
	testenv.Eventually(s.t, 20*time.Second, func() error {
		resp, err := http.Post(s.apiURL+"/-/reload", "", nil)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("reload: %d %s", resp.StatusCode, body)
		}
		return nil
	}, "the rollback command to be configured")
}

// Guardian is killed with SIGKILL while waiting for the go, and while the
// rollback runs; each time it resumes the incident after a restart and the
// rollback runs exactly once.
func TestCrashResume(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
		crash incident.State
	}{
		{"awaiting_approval", 0, incident.AwaitingApproval},
		{"rolling_back", 4 * time.Second, incident.RollingBack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newReceiver(t)
			s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder"})
			s.setRollback(rollbackScript(t, s.dir, s.demoURL, tc.delay))
			s.deploy("v2", 0.20)
			s.waitIncident(1, incident.AwaitingApproval, 90*time.Second)
			if tc.crash == incident.AwaitingApproval {
				s.proc.crash()
				s.waitIncident(1, incident.AwaitingApproval, 10*time.Second)
				if code := s.decide(1, "approve", apiToken, `{}`); code != 200 {
					t.Fatalf("approve after restart: %d", code)
				}
			} else {
				if code := s.decide(1, "approve", apiToken, `{}`); code != 200 {
					t.Fatalf("approve: %d", code)
				}
				// The rollback command has started (it counts itself first).
				testenv.Eventually(t, 30*time.Second, func() error {
					if len(s.rollbacks()) == 0 {
						return fmt.Errorf("not started")
					}
					return nil
				}, "the rollback to start")
				if st := s.incident(1).State; st != incident.RollingBack {
					t.Fatalf("state %s when crashing, want rolling_back", st)
				}
				s.proc.crash()
			}
			rec := s.waitIncident(1, incident.Resolved, 120*time.Second)
			if got := s.rollbacks(); len(got) != 1 {
				t.Fatalf("rollback ran %d times: %v", len(got), got)
			}
			if tc.crash == incident.RollingBack && !inOrder(timelineTypes(rec), []string{"rollback.started", "rollback.resumed", "recovery.confirmed"}) {
				t.Fatalf("timeline %v", timelineTypes(rec))
			}
			// Notifications survive the crash too: delivered in order, each once.
			testenv.Eventually(t, 30*time.Second, func() error {
				got := rcv.types()
				if !inOrder(got, []string{"incident.declared", "approval.requested", "approval.granted", "rollback.started", "recovery.confirmed", "incident.resolved"}) {
					return fmt.Errorf("events %v", got)
				}
				return nil
			}, "the events")
		})
	}
}
