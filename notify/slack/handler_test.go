package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	commoncfg "github.com/prometheus/common/config"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/incident"
)

var clock = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// fakeIncidents mimics the incident manager's go/no-go rules.
type fakeIncidents struct {
	mu    sync.Mutex
	recs  map[int64]incident.Record
	votes []approval.Vote
}

func (f *fakeIncidents) List(context.Context) ([]incident.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []incident.Record
	for _, r := range f.recs {
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeIncidents) Get(_ context.Context, id int64) (incident.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.recs[id]
	if !ok {
		return incident.Record{}, incident.ErrNotFound
	}
	return r, nil
}

func (f *fakeIncidents) Vote(_ context.Context, v approval.Vote) (incident.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := v.Validate(); err != nil {
		return incident.Record{}, err
	}
	r, ok := f.recs[v.Incident]
	if !ok {
		return incident.Record{}, incident.ErrNotFound
	}
	step := "application"
	switch r.State {
	case incident.AwaitingApproval:
		r.State = incident.Held
		if v.Approve {
			r.State = incident.RollingBack
		}
	case incident.DBAwaitingApproval:
		step = "database"
		r.State = incident.Escalated
		if v.Approve {
			r.State = incident.DBRollingBack
		}
	default:
		return incident.Record{}, incident.ErrNoDecision
	}
	f.votes = append(f.votes, v)
	r.Decisions = append(r.Decisions, incident.Decision{Step: step, Approved: v.Approve, By: v.By, Channel: v.Channel, Reason: v.Reason, At: clock})
	f.recs[v.Incident] = r
	return r, nil
}

func (f *fakeIncidents) record(id int64) incident.Record {
	r, _ := f.Get(context.Background(), id)
	return r
}

// fakeRollbacker adds the rollback a slash command asks for.
type fakeRollbacker struct {
	*fakeIncidents
	calls [][]string
}

func (f *fakeRollbacker) Rollback(_ context.Context, service, to, reason, by, channel string) (incident.Record, error) {
	f.calls = append(f.calls, []string{service, to, reason, by, channel})
	return incident.Record{ID: 9, Service: service, Baseline: "v2.4.0", State: incident.RollingBack}, nil
}

type env struct {
	t     *testing.T
	api   *fakeSlack
	inc   *fakeIncidents
	cfg   *config.Config
	h     *Handler
	reg   *prometheus.Registry
	now   time.Time
	nowMu sync.Mutex
}

const (
	secret1 = "sign-secret-1"
	secret2 = "sign-secret-2"
)

func newEnv(t *testing.T, inc Incidents) *env {
	e := &env{t: t, api: newFakeSlack(t), reg: prometheus.NewRegistry(), now: clock}
	switch v := inc.(type) {
	case *fakeIncidents:
		e.inc = v
	case *fakeRollbacker:
		e.inc = v.fakeIncidents
	}
	e.cfg = &config.Config{
		Notifiers: []config.Notifier{
			{Name: "other-slack", Slack: &config.SlackNotifier{Channel: "C2", Token: token, SigningSecret: secret2, APIURL: e.api.apiURL()}},
			{Name: "team-slack", Slack: &config.SlackNotifier{Channel: "C1", Token: token, SigningSecret: secret1, APIURL: e.api.apiURL()}},
			{Name: "hook", Webhook: &config.Webhook{URL: "http://127.0.0.1:1/"}},
		},
		Services: []config.Service{
			{Name: "checkout", Notify: []string{"team-slack"}, Approval: config.Approval{SlackApprovers: []string{"U0ALICE", "S0SRE"}}},
			{Name: "billing", Notify: []string{"hook"}, Approval: config.Approval{SlackApprovers: []string{"U0ALICE"}}},
		},
	}
	e.api.groups["S0SRE"] = []string{"U0CAROL"}
	h, err := NewHandler(HandlerOptions{Config: func() *config.Config { return e.cfg }, Incidents: inc, Registerer: e.reg,
		Now: func() time.Time { e.nowMu.Lock(); defer e.nowMu.Unlock(); return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	return e
}

func awaiting() *fakeIncidents {
	return &fakeIncidents{recs: map[int64]incident.Record{
		1: {ID: 1, Service: "checkout", Version: "v2.4.1", Baseline: "v2.4.0", State: incident.AwaitingApproval},
		2: {ID: 2, Service: "billing", Version: "v9", Baseline: "v8", State: incident.AwaitingApproval},
		3: {ID: 3, Service: "checkout", Version: "v2.4.1", Baseline: "v2.4.0", State: incident.DBAwaitingApproval},
	}}
}

// clickPayload is a block_actions payload as Slack sends it.
func (e *env) clickPayload(user, name, action string, id int64) string {
	p := map[string]any{
		"type":         "block_actions",
		"user":         map[string]any{"id": user, "username": name, "name": name, "team_id": "T0TEAM"},
		"api_app_id":   "A0APP",
		"token":        "legacy-verification-token",
		"container":    map[string]any{"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0123CHAN"},
		"trigger_id":   "123.456.abc",
		"team":         map[string]any{"id": "T0TEAM", "domain": "example"},
		"channel":      map[string]any{"id": "C0123CHAN", "name": "deploys"},
		"response_url": e.api.srv.URL + "/respond",
		"actions": []map[string]any{{
			"action_id": action, "block_id": blockDecision, "value": strconv.FormatInt(id, 10), "type": "button",
			"text": map[string]any{"type": "plain_text", "text": "Approve rollback"}, "action_ts": "1700000001.000200",
		}},
	}
	b, _ := json.Marshal(p)
	return url.Values{"payload": {string(b)}}.Encode()
}

// send posts body signed with secret at ts, as Slack does.
func (e *env) send(body, secret string, ts time.Time) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/api/v1/slack/interactions", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts.Unix(), 10))
	r.Header.Set("X-Slack-Signature", Sign(secret, ts.Unix(), []byte(body)))
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func (e *env) results(result string) float64 {
	return testutil.ToFloat64(e.h.total.WithLabelValues(result))
}

func TestClickApproves(t *testing.T) {
	inc := awaiting()
	e := newEnv(t, inc)
	w := e.send(e.clickPayload("U0ALICE", "alice", ActionApprove, 1), secret1, clock.Add(-time.Minute))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	rec := inc.record(1)
	if rec.State != incident.RollingBack || len(rec.Decisions) != 1 {
		t.Fatalf("record %+v: want rolling back with one decision", rec)
	}
	d := rec.Decisions[0]
	if d.By != "slack:U0ALICE (alice)" || d.Channel != "slack" || !d.Approved || d.Reason != "approved in Slack" {
		t.Errorf("decision %+v", d)
	}
	if r := e.api.replies(); len(r) != 1 || r[0].ResponseType != "ephemeral" || !strings.Contains(r[0].Text, "You approved") {
		t.Errorf("response_url got %+v", r)
	}
	if e.results(ResultApproved) != 1 {
		t.Errorf("approved count %v", e.results(ResultApproved))
	}
	// A second click (a fresh request) finds it decided and changes nothing.
	w = e.send(e.clickPayload("U0ALICE", "alice", ActionHold, 1), secret1, clock)
	if w.Code != http.StatusOK {
		t.Fatalf("second click: status %d", w.Code)
	}
	if !reflect.DeepEqual(inc.record(1), rec) || len(inc.votes) != 1 {
		t.Errorf("second click changed the incident: %+v", inc.record(1))
	}
	if r := e.api.replies(); len(r) != 1 || !strings.Contains(r[0].Text, "already decided: approved by slack:U0ALICE (alice)") {
		t.Errorf("second click's answer %+v", r)
	}
	if e.results(ResultAlreadyDecided) != 1 {
		t.Errorf("already_decided count %v", e.results(ResultAlreadyDecided))
	}
}

func TestClickHoldAndDatabaseStep(t *testing.T) {
	inc := awaiting()
	e := newEnv(t, inc)
	// A user group member (resolved through usergroups.users.list) holds.
	if w := e.send(e.clickPayload("U0CAROL", "carol", ActionHold, 1), secret1, clock); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	rec := inc.record(1)
	if rec.State != incident.Held || rec.Decisions[0].Reason != "held in Slack by carol" || rec.Decisions[0].Approved {
		t.Fatalf("record %+v", rec)
	}
	calls := e.api.take()
	if len(calls) != 1 || calls[0].Method != "usergroups.users.list" || calls[0].Form.Get("usergroup") != "S0SRE" {
		t.Fatalf("API calls %+v, want one usergroups.users.list", calls)
	}
	// The application button does not decide the database step...
	if w := e.send(e.clickPayload("U0CAROL", "carol", ActionApprove, 3), secret1, clock.Add(time.Second)); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if inc.record(3).State != incident.DBAwaitingApproval {
		t.Fatalf("application button decided the database step: %+v", inc.record(3))
	}
	// ...its own does; the group's members are cached.
	if w := e.send(e.clickPayload("U0CAROL", "carol", ActionApproveDatabase, 3), secret1, clock.Add(2*time.Second)); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if rec := inc.record(3); rec.State != incident.DBRollingBack || rec.Decisions[0].Step != "database" {
		t.Fatalf("record %+v", rec)
	}
	if calls := e.api.take(); len(calls) != 0 {
		t.Errorf("user group read again within its TTL: %+v", calls)
	}
}

func TestRefusalsLeaveTheIncident(t *testing.T) {
	inc := awaiting()
	e := newEnv(t, inc)
	before := inc.record(1)
	click := e.clickPayload("U0ALICE", "alice", ActionApprove, 1)
	for _, tc := range []struct {
		name   string
		body   string
		secret string
		at     time.Time
		tamper func(r *http.Request)
		code   int
		result string
	}{
		{"bad signature", click, "not-the-secret", clock, nil, http.StatusUnauthorized, ResultBadSignature},
		{"old timestamp", click, secret1, clock.Add(-5*time.Minute - time.Second), nil, http.StatusUnauthorized, ResultStale},
		{"future timestamp", click, secret1, clock.Add(6 * time.Minute), nil, http.StatusUnauthorized, ResultStale},
		{"no signature", click, secret1, clock, func(r *http.Request) { r.Header.Del("X-Slack-Signature") }, http.StatusUnauthorized, ResultBadSignature},
		{"body changed", click, secret1, clock, func(r *http.Request) {
			r.Body = http.NoBody
		}, http.StatusUnauthorized, ResultBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/api/v1/slack/interactions", strings.NewReader(tc.body))
			r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(tc.at.Unix(), 10))
			r.Header.Set("X-Slack-Signature", Sign(tc.secret, tc.at.Unix(), []byte(tc.body)))
			if tc.tamper != nil {
				tc.tamper(r)
			}
			n := e.results(tc.result)
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, r)
			if w.Code != tc.code || e.results(tc.result) != n+1 {
				t.Errorf("status %d, %s count %v→%v", w.Code, tc.result, n, e.results(tc.result))
			}
			if !reflect.DeepEqual(inc.record(1), before) {
				t.Errorf("incident changed: %+v", inc.record(1))
			}
		})
	}

	// Off the allow-list: 200 with an ephemeral refusal.
	if w := e.send(e.clickPayload("U0MALLORY", "mallory", ActionApprove, 1), secret1, clock); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if r := e.api.replies(); len(r) != 1 || r[0].ResponseType != "ephemeral" || !strings.Contains(r[0].Text, "not allowed") {
		t.Errorf("answer %+v", r)
	}
	// Signed by an app that does not notify the service (billing notifies a webhook only).
	if w := e.send(e.clickPayload("U0ALICE", "alice", ActionApprove, 2), secret1, clock); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if r := e.api.replies(); len(r) != 1 || !strings.Contains(r[0].Text, "does not notify the service") {
		t.Errorf("answer %+v", r)
	}
	if e.results(ResultNotAllowed) != 2 || !reflect.DeepEqual(inc.record(1), before) || inc.record(2).State != incident.AwaitingApproval {
		t.Errorf("not_allowed %v, incidents %+v %+v", e.results(ResultNotAllowed), inc.record(1), inc.record(2))
	}

	// A replay of an accepted request is refused, whatever it asks.
	hold := e.clickPayload("U0ALICE", "alice", ActionHoldDatabase, 3)
	if w := e.send(hold, secret1, clock); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	db := inc.record(3)
	if w := e.send(hold, secret1, clock); w.Code != http.StatusUnauthorized || e.results(ResultReplay) != 1 {
		t.Errorf("replay: status %d, replay count %v", w.Code, e.results(ResultReplay))
	}
	if !reflect.DeepEqual(inc.record(3), db) || len(inc.votes) != 1 {
		t.Errorf("replay changed the incident: %+v", inc.record(3))
	}
}

func TestSecondSigningSecretAndReload(t *testing.T) {
	inc := awaiting()
	e := newEnv(t, inc)
	// Checkout moves to the other app's notifier: its secret verifies.
	e.cfg.Services[0].Notify = []string{"other-slack"}
	if w := e.send(e.clickPayload("U0ALICE", "alice", ActionApprove, 1), secret2, clock); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if inc.record(1).State != incident.RollingBack {
		t.Fatalf("record %+v", inc.record(1))
	}
	// A reload drops the secret: requests signed with it are refused.
	next := *e.cfg
	next.Notifiers = []config.Notifier{{Name: "team-slack", Slack: &config.SlackNotifier{Channel: "C1", Token: commoncfg.Secret(token), SigningSecret: "rotated"}}}
	e.cfg = &next
	if w := e.send(e.clickPayload("U0ALICE", "alice", ActionApproveDatabase, 3), secret2, clock); w.Code != http.StatusUnauthorized {
		t.Fatalf("old secret after reload: status %d", w.Code)
	}
}

func TestLinkClickIsAcknowledged(t *testing.T) {
	inc := awaiting()
	e := newEnv(t, inc)
	if w := e.send(e.clickPayload("U0MALLORY", "m", actionLink+"report", 1), secret1, clock); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if e.results(ResultIgnored) != 1 || len(e.api.replies()) != 0 || len(inc.votes) != 0 {
		t.Error("a link click did more than acknowledge")
	}
}

func TestReplayMemoryIsBounded(t *testing.T) {
	var s seen
	for i := range maxSeen {
		if err := s.add(fmt.Sprint(i), clock); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.add("one more", clock); err != errBusy {
		t.Fatalf("over the bound: %v", err)
	}
	if err := s.add("one more", clock.Add(2*MaxSkew)); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if len(s.until) != 1 {
		t.Errorf("%d kept after expiry", len(s.until))
	}
}

func (e *env) command(text, user string) *httptest.ResponseRecorder {
	body := url.Values{"token": {"legacy"}, "team_id": {"T0TEAM"}, "team_domain": {"example"}, "channel_id": {"C0123CHAN"},
		"channel_name": {"deploys"}, "user_id": {user}, "user_name": {strings.ToLower(user)}, "command": {"/guardian"},
		"text": {text}, "api_app_id": {"A0APP"}, "response_url": {e.api.srv.URL + "/respond"}, "trigger_id": {"1.2.3"}}.Encode()
	e.nowMu.Lock()
	e.now = e.now.Add(time.Second) // every command a fresh request
	at := e.now
	e.nowMu.Unlock()
	return e.send(body, secret1, at)
}

func decodeReply(t *testing.T, w *httptest.ResponseRecorder) Reply {
	t.Helper()
	var r Reply
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
		t.Fatalf("reply %q: %v", w.Body, err)
	}
	return r
}

func TestSlashCommands(t *testing.T) {
	rb := &fakeRollbacker{fakeIncidents: awaiting()}
	e := newEnv(t, rb)
	r := decodeReply(t, e.command(`rollback checkout --to v2.3.9 --reason “customers see 500s & worse”`, "U0ALICE"))
	if r.ResponseType != "in_channel" || !strings.Contains(r.Text, "incident 9") {
		t.Errorf("reply %+v", r)
	}
	want := [][]string{{"checkout", "v2.3.9", "customers see 500s & worse", "slack:U0ALICE (u0alice)", "slack"}}
	if !reflect.DeepEqual(rb.calls, want) {
		t.Errorf("rollback calls %q, want %q", rb.calls, want)
	}
	r = decodeReply(t, e.command(`rollback checkout --reason "no"`, "U0MALLORY"))
	if r.ResponseType != "ephemeral" || !strings.Contains(r.Text, "not allowed") || len(rb.calls) != 1 {
		t.Errorf("unauthorised rollback: reply %+v, calls %d", r, len(rb.calls))
	}
	r = decodeReply(t, e.command(`rollback checkout`, "U0ALICE"))
	if !strings.Contains(r.Text, "needs a reason") || len(rb.calls) != 1 {
		t.Errorf("rollback without a reason: %+v", r)
	}
	r = decodeReply(t, e.command(`status checkout`, "U0ANYONE"))
	if !strings.Contains(r.Text, "incident 1: checkout v2.4.1 → v2.4.0, awaiting approval") || strings.Contains(r.Text, "billing") {
		t.Errorf("status: %+v", r)
	}

	// Without a Rollback in the core, the command says so.
	e2 := newEnv(t, awaiting())
	r = decodeReply(t, e2.command(`rollback checkout --reason "x"`, "U0ALICE"))
	if !strings.Contains(r.Text, "not available") {
		t.Errorf("reply %+v", r)
	}
}

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Command
		err  string
	}{
		{"", Command{Verb: "help"}, ""},
		{`rollback checkout --reason "bad deploy"`, Command{Verb: "rollback", Service: "checkout", Reason: "bad deploy"}, ""},
		{`rollback checkout --to=v1 --reason='a b'`, Command{Verb: "rollback", Service: "checkout", To: "v1", Reason: "a b"}, ""},
		{`ROLLBACK checkout —reason “x &lt;y&gt;”`, Command{Verb: "rollback", Service: "checkout", Reason: "x <y>"}, ""},
		{`status`, Command{Verb: "status"}, ""},
		{`rollback checkout --reason bad deploy`, Command{}, "quote the reason"},
		{`rollback --reason x`, Command{}, "needs a service"},
		{`rollback checkout --to`, Command{}, "needs a value"},
		{`rollback checkout --reason "x`, Command{}, "unclosed quote"},
		{`rollback checkout --force --reason x`, Command{}, "unknown option"},
		{`deploy checkout`, Command{}, "unknown command"},
	} {
		got, err := ParseCommand(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
