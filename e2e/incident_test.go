package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/notify"
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
	// deliveries counts every delivery by type, duplicates included.
	deliveries map[string]int
	bad        []string

	// Faults: delay holds each request that long before answering, and a
	// non-zero status answers every request with it; inflight counts the
	// requests being held, attempts every request.
	delay    atomic.Int64
	status   atomic.Int32
	inflight atomic.Int32
	attempts atomic.Int32
}

type receivedEvent struct {
	ID       string         `json:"id"`
	Type     string         `json:"type"`
	Sequence int            `json:"sequence"`
	Incident int64          `json:"incident"`
	Mode     string         `json:"mode"`
	Text     string         `json:"text"`
	Data     map[string]any `json:"data"`
	// Links and Responders lead back to Guardian and name the team.
	Links      notify.Links       `json:"links"`
	Responders []notify.Responder `json:"responders"`
}

// first returns the first event received.
func (r *receiver) first() receivedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return receivedEvent{}
	}
	return r.events[0]
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{t: t, seen: map[string]bool{}, deliveries: map[string]int{}}
	key, err := sign.Key(webhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	r.url = serve(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.attempts.Add(1)
		if d := time.Duration(r.delay.Load()); d > 0 {
			r.inflight.Add(1)
			time.Sleep(d) // the fault: a receiver that answers late
			r.inflight.Add(-1)
		}
		if code := r.status.Load(); code != 0 {
			http.Error(w, "receiver failing", int(code))
			return
		}
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
		r.deliveries[e.Type]++
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

// sequence checks that incident id's events reached the receiver numbered
// 1, 2, 3... without a gap, each with its id evt_<id>_<n>.
func (r *receiver) sequence(id int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Incident != id {
			continue
		}
		n++
		if e.Sequence != n || e.ID != fmt.Sprintf("evt_%d_%d", id, n) {
			return fmt.Errorf("event %d of incident %d is %s number %d", n, id, e.ID, e.Sequence)
		}
	}
	return nil
}

// rollbackScript counts its runs in dir/rollbacks, waits delay, then asks
// the demo service to go back to $GUARDIAN_BASELINE, as a deploy system
// would, and writes when it ended (Unix nanoseconds) to dir/rollback-ended.
func rollbackScript(t testing.TB, dir, demoURL string, delay time.Duration) string {
	_, demoBin := bins(t)
	return fmt.Sprintf(`echo "$GUARDIAN_IDEMPOTENCY_KEY" >> %[1]s/rollbacks && sleep %[2]g && %[3]s rollback --admin %[4]s; rc=$?; date +%%s%%N >> %[1]s/rollback-ended; exit $rc`,
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
		out = append(out, string(e.Type))
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
	t.Parallel()
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
	// The HTML report charts the trigger from Prometheus, with the markers.
	if page, err := os.ReadFile(filepath.Join(reports, "incident-1.html")); err != nil || !strings.Contains(string(page), `data-marker="detected"`) ||
		!strings.Contains(string(page), `<polyline data-series="version"`) {
		t.Fatalf("HTML report: %v", err)
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
		"rollback.succeeded", "recovery.confirmed", "incident.resolved", "report.written", "postmortem.scheduled"}
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := rcv.types(); strings.Join(got, ",") != strings.Join(events, ",") {
			return fmt.Errorf("events %v", got)
		}
		return nil
	}, "every event at the receiver")
	if len(rcv.bad) != 0 {
		t.Fatalf("bad deliveries: %v", rcv.bad)
	}
	if err := rcv.sequence(1); err != nil {
		t.Fatal(err)
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
		resp, err := s.reload()
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

// Guardian is killed with SIGKILL while waiting for the go, and five
// seconds into a twenty-second rollback command; each time it resumes the
// incident after a restart, the rollback runs exactly once, a command that
// outlived the crash is awaited (verification starts only after it ended,
// with its outcome recorded), and every event is delivered once, in order,
// numbered without a gap.
func TestCrashResume(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		delay time.Duration
		crash incident.State
	}{
		{"awaiting_approval", 0, incident.AwaitingApproval},
		{"rolling_back", 20 * time.Second, incident.RollingBack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rcv := newReceiver(t)
			s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder"})
			s.setRollback(rollbackScript(t, s.dir, s.demoURL, tc.delay))
			s.deploy("v2", 0.20)
			s.waitIncident(1, incident.AwaitingApproval, 90*time.Second)
			var started time.Time
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
				started = time.Now()
				if st := s.incident(1).State; st != incident.RollingBack {
					t.Fatalf("state %s when crashing, want rolling_back", st)
				}
				// Five seconds into the twenty-second command.
				time.Sleep(5 * time.Second)
				s.proc.crash()
				if time.Since(started) > tc.delay {
					t.Fatalf("the restart took until after the command's end (%s)", time.Since(started))
				}
			}
			rec := s.waitIncident(1, incident.Resolved, 120*time.Second)
			if got := s.rollbacks(); len(got) != 1 {
				t.Fatalf("rollback ran %d times: %v", len(got), got)
			}
			if tc.crash == incident.RollingBack {
				if !inOrder(timelineTypes(rec), []string{"rollback.started", "rollback.resumed", "rollback.unknown", "recovery.confirmed"}) {
					t.Fatalf("timeline %v", timelineTypes(rec))
				}
				// Verification began only once the command had ended, and
				// the step's outcome is recorded, its output kept.
				ended := commandEnded(t, s.dir)
				for _, e := range rec.Timeline {
					if e.Type == "rollback.unknown" && e.At.Before(ended) {
						t.Fatalf("the step was called ended at %s, before the command ended at %s", e.At, ended)
					}
				}
				if rec.VerifyStartedAt == nil || rec.VerifyStartedAt.Before(ended) {
					t.Fatalf("verification started at %v, before the command ended at %s", rec.VerifyStartedAt, ended)
				}
				a := rec.Actions["incident-1/rollback.application"]
				if a == nil || a.State != incident.ActionUnknown || a.FinishedAt == nil || !strings.Contains(a.Output, "rolled back") {
					t.Fatalf("action %+v", a)
				}
			}
			// Notifications survive the crash too: delivered in order, each once, without a gap.
			want := []string{"incident.declared", "approval.requested", "approval.granted", "rollback.started", "recovery.confirmed", "incident.resolved"}
			if tc.crash == incident.RollingBack {
				want = []string{"incident.declared", "approval.requested", "approval.granted", "rollback.started", "rollback.resumed",
					"rollback.unknown", "recovery.confirmed", "incident.resolved", "report.written"}
			}
			testenv.Eventually(t, 30*time.Second, func() error {
				got := rcv.types()
				if !inOrder(got, want) {
					return fmt.Errorf("events %v", got)
				}
				return rcv.sequence(1)
			}, "the events")
		})
	}
}

// commandEnded is when the rollback script ended.
func commandEnded(t *testing.T, dir string) time.Time {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "rollback-ended"))
	if err != nil {
		t.Fatalf("the rollback command did not record its end: %v", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(0, ns)
}

// Guardian is killed (SIGKILL, at a fault point) after "resolved" is saved
// and before the report is written. After the restart the report, the JSON
// report and the invite exist exactly once, and report.written and
// postmortem.scheduled are on the timeline and delivered exactly once.
func TestCrashBeforeReport(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder", approval: "auto"})
	s.proc.env = []string{"GUARDIAN_FAULT=" + incident.FaultBeforeReport}
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))
	// Restart Guardian armed with the fault point.
	s.proc.stop(syscall.SIGTERM)
	s.proc.start()
	s.deploy("v2", 0.20)
	s.proc.exited(150 * time.Second)
	if !strings.Contains(s.proc.logs.String(), "fault point reached") {
		t.Fatalf("Guardian exited, but not at the fault point:\n%s", s.proc.logs.String())
	}
	reports := filepath.Join(s.dir, "data", "reports")
	if _, err := os.Stat(filepath.Join(reports, "incident-1.md")); !os.IsNotExist(err) {
		t.Fatalf("the report exists before the restart: %v", err)
	}
	s.proc.env = nil
	s.proc.start()
	var rec incident.Record
	testenv.Eventually(t, 60*time.Second, func() error {
		rec = s.incident(1)
		if rec.Report == nil || rec.Published < len(rec.Timeline) {
			return fmt.Errorf("%s, report %v", rec.State, rec.Report)
		}
		return nil
	}, "the report after the restart")
	if rec.State != incident.Resolved {
		t.Fatalf("state %s", rec.State)
	}
	counts := map[string]int{}
	for _, e := range rec.Timeline {
		counts[string(e.Type)]++
	}
	if counts["report.written"] != 1 || counts["postmortem.scheduled"] != 1 || counts["incident.resolved"] != 1 {
		t.Fatalf("timeline %v", timelineTypes(rec))
	}
	entries, err := os.ReadDir(reports)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "incident-1-postmortem.ics,incident-1.html,incident-1.json,incident-1.md" {
		t.Fatalf("report directory: %v", names)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if !inOrder(rcv.types(), []string{"incident.resolved", "report.written", "postmortem.scheduled"}) {
			return fmt.Errorf("events %v", rcv.types())
		}
		return rcv.sequence(1)
	}, "the report's events")
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.deliveries["report.written"] != 1 || rcv.deliveries["postmortem.scheduled"] != 1 {
		t.Fatalf("deliveries %v", rcv.deliveries)
	}
}

// A rollback that fails leaves its incident open (failed) until a person
// closes it; a newer deploy that fires meanwhile is not left unprotected:
// it closes the old incident as superseded and gets its own, which rolls
// back.
func TestNewerDeployAfterAFailedRollback(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, rollback: "placeholder", approval: "auto"})
	// The deploy system cannot roll v2 back, but v3 it can.
	s.setRollback(`if [ "$GUARDIAN_VERSION" = v2 ]; then echo "v2 is pinned" >&2; exit 3; fi; ` + rollbackScript(t, s.dir, s.demoURL, 0))
	s.deploy("v2", 0.20)
	first := s.waitIncident(1, incident.Failed, 90*time.Second)
	if first.Actions["incident-1/rollback.application"].State != incident.ActionFailed {
		t.Fatalf("action %+v", first.Actions)
	}
	s.deploy("v3", 0.60) // worse than twice the 20 % of v2, its baseline
	second := s.waitIncident(2, incident.Resolved, 120*time.Second)
	if second.Version != "v3" {
		t.Fatalf("second incident %+v", second)
	}
	old := s.incident(1)
	if old.State != incident.Closed || !inOrder(timelineTypes(old), []string{"rollback.failed", "incident.escalated", "incident.closed"}) {
		t.Fatalf("first incident %s %v", old.State, timelineTypes(old))
	}
	if got := s.rollbacks(); len(got) != 1 || got[0] != "incident-2/rollback.application" {
		t.Fatalf("rollbacks %v", got)
	}
	// The failed incident's timeline did not grow tick after tick while v3 was judged.
	if n := len(old.Timeline); n > 12 {
		t.Fatalf("the first incident has %d entries: %v", n, timelineTypes(old))
	}
}
