package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const token = "xoxb-1234-5678-secrettokenvalue"

// apiCall is one Web API request as the fake Slack saw it.
type apiCall struct {
	Method string
	Auth   string
	Form   url.Values
}

// fakeSlack is a local Slack Web API: it checks the request format of the
// methods Guardian calls and answers as Slack does.
type fakeSlack struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	calls  []apiCall
	seq    int
	groups map[string][]string
	// fail, when set, answers a method instead of the default.
	fail func(w http.ResponseWriter, method string) bool
	// responses are the bodies posted to /respond (response_url).
	responses []Reply
}

func newFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{t: t, groups: map[string][]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSlack) apiURL() string { return f.srv.URL + "/api/" }

func (f *fakeSlack) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path == "/respond" {
		var rep Reply
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil || r.Header.Get("Content-Type") != "application/json" {
			f.t.Errorf("response_url: bad request: %v", err)
		}
		f.responses = append(f.responses, rep)
		return
	}
	method, ok := strings.CutPrefix(r.URL.Path, "/api/")
	if !ok || r.Method != http.MethodPost {
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		f.t.Errorf("%s: form: %v", method, err)
	}
	c := apiCall{Method: method, Auth: r.Header.Get("Authorization"), Form: r.PostForm}
	f.calls = append(f.calls, c)
	if c.Auth != "Bearer "+token {
		f.t.Errorf("%s: Authorization = %q, want the bot token as bearer", method, c.Auth)
	}
	if r.PostForm.Has("token") || r.URL.Query().Has("token") {
		f.t.Errorf("%s: the token is sent in the form or query too", method)
	}
	if f.fail != nil && f.fail(w, method) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch method {
	case "chat.postMessage":
		if r.PostForm.Get("channel") == "" || (r.PostForm.Get("blocks") == "" && r.PostForm.Get("text") == "") {
			f.t.Errorf("chat.postMessage without channel or content: %v", r.PostForm)
		}
		f.seq++
		fmt.Fprintf(w, `{"ok":true,"channel":"C0123CHAN","ts":"1700000000.%06d","message":{}}`, f.seq*100)
	case "chat.update":
		if r.PostForm.Get("ts") == "" || r.PostForm.Get("channel") == "" {
			f.t.Errorf("chat.update without channel or ts: %v", r.PostForm)
		}
		fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":%q,"text":""}`, r.PostForm.Get("channel"), r.PostForm.Get("ts"))
	case "usergroups.users.list":
		users, ok := f.groups[r.PostForm.Get("usergroup")]
		if !ok {
			fmt.Fprint(w, `{"ok":false,"error":"no_such_subteam"}`)
			return
		}
		b, _ := json.Marshal(map[string]any{"ok": true, "users": users})
		_, _ = w.Write(b)
	default:
		fmt.Fprint(w, `{"ok":false,"error":"unknown_method"}`)
	}
}

func (f *fakeSlack) take() []apiCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeSlack) replies() []Reply {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.responses
	f.responses = nil
	return r
}

func slackConfig(apiURL string) config.SlackNotifier {
	return config.SlackNotifier{Channel: "#deploys", APIURL: apiURL, Token: commoncfg.Secret(token), SigningSecret: "sign-secret-1"}
}

func declared() notify.Event {
	return notify.Event{
		ID: "evt_7_1", Type: event.IncidentDeclared, Sequence: 1, Time: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
		Incident: 7, Service: "checkout", Severity: "SEV-1", State: "awaiting_approval",
		Text: "checkout v2.4.1: 5xx ratio 7.9% > 5%, baseline v2.4.0 0.4%",
		Data: map[string]any{"version": "v2.4.1", "baseline": "v2.4.0", "trigger": "errors", "actor": "guardian",
			"evidence": "5xx ratio 0.079 > 0.05 (baseline 0.004)"},
		Links: notify.LinksFor("https://guardian.example.com", 7),
		Responders: []notify.Responder{{Role: "incident_commander", Name: "Alice", Slack: "U0ALICE"},
			{Role: "dba", Name: "DBAs", Slack: "S0DBAS"}, {Role: "on_call", Name: "Bob <!channel>"}},
	}
}

func blocksOf(t *testing.T, c apiCall) string {
	t.Helper()
	var v []map[string]any
	if err := json.Unmarshal([]byte(c.Form.Get("blocks")), &v); err != nil {
		t.Fatalf("%s: blocks are not a JSON array: %v (%q)", c.Method, err, c.Form.Get("blocks"))
	}
	return plainJSON(t, v)
}

// plainJSON encodes v without escaping <, > and &, as a person reads it.
func plainJSON(t *testing.T, v any) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestNotifierPostsThenUpdatesAndReplies(t *testing.T) {
	f := newFakeSlack(t)
	st := store.NewMemory()
	core, logs := observer.New(zap.DebugLevel)
	n, err := New("team-slack", slackConfig(f.apiURL()), zap.New(core), WithStore(func() store.Store { return st }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	e1 := declared()
	if retry, err := n.Notify(ctx, e1); err != nil || retry {
		t.Fatalf("first event: retry=%v err=%v", retry, err)
	}
	calls := f.take()
	if len(calls) != 1 || calls[0].Method != "chat.postMessage" {
		t.Fatalf("first event: calls %+v, want one chat.postMessage", calls)
	}
	c := calls[0]
	if c.Form.Get("channel") != "#deploys" || c.Form.Has("thread_ts") || c.Form.Has("ts") {
		t.Errorf("first post: channel=%q thread_ts=%q ts=%q", c.Form.Get("channel"), c.Form.Get("thread_ts"), c.Form.Get("ts"))
	}
	b := blocksOf(t, c)
	for _, want := range []string{`"type": "header"`, ActionApprove, ActionHold, `"value": "7"`, "<@U0ALICE>", "<!subteam^S0DBAS>",
		"Bob &lt;!channel&gt;", "https://guardian.example.com/api/v1/incidents/7/report", "v2.4.1 → v2.4.0", "*Severity*\\nSEV-1"} {
		if !strings.Contains(b, want) {
			t.Errorf("first post's blocks lack %q: %s", want, b)
		}
	}
	if c.Form.Get("text") == "" {
		t.Error("first post has no fallback text")
	}

	e2 := e1
	e2.ID, e2.Type, e2.Sequence, e2.State = "evt_7_2", event.ApprovalGranted, 2, "rolling_back"
	e2.Text = "approved by slack:U0ALICE (alice)"
	if retry, err := n.Notify(ctx, e2); err != nil || retry {
		t.Fatalf("second event: retry=%v err=%v", retry, err)
	}
	calls = f.take()
	if len(calls) != 2 || calls[0].Method != "chat.update" || calls[1].Method != "chat.postMessage" {
		t.Fatalf("second event: calls %+v, want chat.update then chat.postMessage", calls)
	}
	if calls[0].Form.Get("channel") != "C0123CHAN" || calls[0].Form.Get("ts") != "1700000000.000100" {
		t.Errorf("update: channel=%q ts=%q, want the posted message's", calls[0].Form.Get("channel"), calls[0].Form.Get("ts"))
	}
	if b := blocksOf(t, calls[0]); strings.Contains(b, ActionApprove) || strings.Contains(b, ActionHold) || !strings.Contains(b, "rolling back") {
		t.Errorf("updated message keeps the buttons or lacks the state: %s", b)
	}
	if calls[1].Form.Get("thread_ts") != "1700000000.000100" || !strings.Contains(calls[1].Form.Get("text"), "approved by slack:U0ALICE") {
		t.Errorf("reply: thread_ts=%q text=%q", calls[1].Form.Get("thread_ts"), calls[1].Form.Get("text"))
	}

	// A repeated delivery (the outbox after a crash) changes nothing.
	if _, err := n.Notify(ctx, e2); err != nil {
		t.Fatal(err)
	}
	if calls := f.take(); len(calls) != 0 {
		t.Errorf("repeated delivery made calls %+v", calls)
	}

	// A restarted Guardian (a new notifier over the same store) edits the same message.
	n2, err := New("team-slack", slackConfig(f.apiURL()), nil, WithStore(func() store.Store { return st }))
	if err != nil {
		t.Fatal(err)
	}
	e3 := e1
	e3.ID, e3.Type, e3.Sequence, e3.State, e3.Text = "evt_7_3", event.RollbackStarted, 3, "rolling_back", "rolling back"
	if _, err := n2.Notify(ctx, e3); err != nil {
		t.Fatal(err)
	}
	calls = f.take()
	if len(calls) != 2 || calls[0].Form.Get("ts") != "1700000000.000100" || calls[1].Form.Get("thread_ts") != "1700000000.000100" {
		t.Fatalf("after a restart: calls %+v, want an update and a reply to the first message", calls)
	}
	for _, l := range logs.All() {
		if strings.Contains(fmt.Sprint(l.Message, l.ContextMap()), "xoxb-") {
			t.Errorf("a log line holds the token: %v %v", l.Message, l.ContextMap())
		}
	}
}

func TestNotifierWithoutSigningSecretHasNoButtons(t *testing.T) {
	f := newFakeSlack(t)
	cfg := slackConfig(f.apiURL())
	cfg.SigningSecret = ""
	st := store.NewMemory()
	n, err := New("s", cfg, nil, WithStore(func() store.Store { return st }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), declared()); err != nil {
		t.Fatal(err)
	}
	calls := f.take()
	if len(calls) != 1 {
		t.Fatalf("calls %+v", calls)
	}
	if b := blocksOf(t, calls[0]); strings.Contains(b, ActionApprove) {
		t.Errorf("buttons without a signing secret: %s", b)
	}
}

func TestNotifierErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answer    func(w http.ResponseWriter)
		retry     bool
		wait      time.Duration
		errSubstr string
	}{
		{"rate limited", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"ok":false,"error":"ratelimited"}`)
		}, true, 7 * time.Second, "ratelimited"},
		{"ratelimited in an ok:false answer", func(w http.ResponseWriter) { fmt.Fprint(w, `{"ok":false,"error":"ratelimited"}`) }, true, 0, "ratelimited"},
		{"server error", func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) }, true, 0, "502"},
		{"channel not found", func(w http.ResponseWriter) { fmt.Fprint(w, `{"ok":false,"error":"channel_not_found"}`) }, false, 0, "channel_not_found: the channel does not exist"},
		{"invalid auth", func(w http.ResponseWriter) { fmt.Fprint(w, `{"ok":false,"error":"invalid_auth"}`) }, false, 0, "invalid_auth: the bot token is not valid"},
		{"not in channel", func(w http.ResponseWriter) { fmt.Fprint(w, `{"ok":false,"error":"not_in_channel"}`) }, false, 0, "invite it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSlack(t)
			f.fail = func(w http.ResponseWriter, _ string) bool { tc.answer(w); return true }
			st := store.NewMemory()
			n, err := New("s", slackConfig(f.apiURL()), nil, WithStore(func() store.Store { return st }))
			if err != nil {
				t.Fatal(err)
			}
			retry, err := n.Notify(context.Background(), declared())
			if err == nil || retry != tc.retry || !strings.Contains(err.Error(), tc.errSubstr) {
				t.Fatalf("retry=%v err=%v, want retry=%v and an error with %q", retry, err, tc.retry, tc.errSubstr)
			}
			if strings.Contains(err.Error(), "xoxb-") {
				t.Errorf("the error holds the token: %v", err)
			}
			var ra notify.RetryAfterError
			if tc.wait > 0 && (!errors.As(err, &ra) || ra.RetryAfter() != tc.wait) {
				t.Errorf("error %v does not ask to wait %s", err, tc.wait)
			}
			if kvs, _ := st.List(context.Background(), Bucket); len(kvs) != 0 {
				t.Errorf("a failed post saved a place: %v", kvs)
			}
		})
	}
}

func TestNotifierNetworkErrorIsRetried(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/api/"
	srv.Close()
	st := store.NewMemory()
	n, err := New("s", slackConfig(url), nil, WithStore(func() store.Store { return st }))
	if err != nil {
		t.Fatal(err)
	}
	retry, err := n.Notify(context.Background(), declared())
	if err == nil || !retry {
		t.Fatalf("retry=%v err=%v, want a retried error", retry, err)
	}
}

func TestNotifierUpdateFailureKeepsReplyForRetry(t *testing.T) {
	f := newFakeSlack(t)
	st := store.NewMemory()
	n, err := New("s", slackConfig(f.apiURL()), nil, WithStore(func() store.Store { return st }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := n.Notify(ctx, declared()); err != nil {
		t.Fatal(err)
	}
	f.take()
	e2 := declared()
	e2.ID, e2.Type, e2.Sequence, e2.State = "evt_7_2", event.ApprovalDenied, 2, "held"
	f.fail = func(w http.ResponseWriter, m string) bool {
		if m == "chat.postMessage" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	if retry, err := n.Notify(ctx, e2); err == nil || !retry {
		t.Fatalf("reply failing: retry=%v err=%v", retry, err)
	}
	f.take()
	f.fail = nil
	if _, err := n.Notify(ctx, e2); err != nil {
		t.Fatal(err)
	}
	calls := f.take()
	if len(calls) != 1 || calls[0].Method != "chat.postMessage" || calls[0].Form.Get("thread_ts") == "" {
		t.Fatalf("retry: calls %+v, want only the reply (the update was done)", calls)
	}
}

func TestNotifierSourceEventStandsAlone(t *testing.T) {
	f := newFakeSlack(t)
	st := store.NewMemory()
	n, err := New("s", slackConfig(f.apiURL()), nil, WithStore(func() store.Store { return st }))
	if err != nil {
		t.Fatal(err)
	}
	e := notify.Event{ID: "src_prom_1", Type: event.SourceUnreachable, Sequence: 1, State: "unreachable",
		Text: "metric source prom is unreachable", Data: map[string]any{"source": "prom"}}
	if _, err := n.Notify(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	calls := f.take()
	if len(calls) != 1 || calls[0].Method != "chat.postMessage" || !strings.Contains(blocksOf(t, calls[0]), "prom is unreachable") {
		t.Fatalf("calls %+v", calls)
	}
	if kvs, _ := st.List(context.Background(), Bucket); len(kvs) != 0 {
		t.Errorf("a source event saved a place: %v", kvs)
	}
}

func TestNotifierCustomTemplates(t *testing.T) {
	f := newFakeSlack(t)
	cfg := slackConfig(f.apiURL())
	cfg.Templates = config.Templates{Title: "{{.Service | upper}} #{{.Incident}}", Text: "custom: {{.Data.trigger}}"}
	st := store.NewMemory()
	n, err := New("s", cfg, nil, WithStore(func() store.Store { return st }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), declared()); err != nil {
		t.Fatal(err)
	}
	b := blocksOf(t, f.take()[0])
	if !strings.Contains(b, "CHECKOUT #7") || !strings.Contains(b, "custom: errors") {
		t.Errorf("templates not applied: %s", b)
	}
	if _, err := New("s", config.SlackNotifier{Channel: "C1", Token: token, Templates: config.Templates{Title: "{{"}}, nil); err == nil {
		t.Error("a broken template was accepted")
	}
}

// goldenEvent is a sample event of type t in the state it usually leaves.
func goldenEvent(t event.Type, i int) notify.Event {
	e := declared()
	e.ID, e.Type, e.Sequence = fmt.Sprintf("evt_7_%d", i+1), t, i+1
	states := map[event.Type]string{
		event.IncidentDeclared: "awaiting_approval", event.TriggerFired: "awaiting_approval", event.ApprovalRequested: "awaiting_approval",
		event.ApprovalGranted: "rolling_back", event.ApprovalDenied: "held", event.RollbackStarted: "rolling_back",
		event.RollbackResumed: "rolling_back", event.RollbackSucceeded: "verifying", event.RollbackFailed: "failed",
		event.RollbackUnknown: "verifying", event.RecoveryProgress: "verifying", event.RecoveryConfirmed: "db_awaiting_approval",
		event.RecoveryFailed: "escalated", event.IncidentEscalated: "escalated", event.IncidentResolved: "resolved",
		event.IncidentClosed: "closed", event.ReportWritten: "resolved", event.PostmortemScheduled: "resolved",
	}
	e.State = states[t]
	e.Text = fmt.Sprintf("what happened: %s", t)
	if t == event.SourceUnreachable || t == event.SourceRecovered {
		e = notify.Event{ID: "src_prom_1", Type: t, Sequence: 1, State: "unreachable", Text: "metric source prom: " + string(t),
			Data: map[string]any{"source": "prom"}, Links: notify.LinksFor("https://guardian.example.com", 0)}
	}
	return e
}

// A configured template that fails on an event falls back to the default.
func TestTemplateFailureFallsBack(t *testing.T) {
	def, err := newTemplates(config.Templates{})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := newTemplates(config.Templates{Title: "{{.Text.Nope}}", Text: "{{.Data.version.Nope}}"})
	if err != nil {
		t.Fatal(err)
	}
	e := goldenEvent(event.IncidentDeclared, 1)
	wantTitle, wantText, err := def.render(e)
	if err != nil {
		t.Fatal(err)
	}
	title, text, err := bad.render(e)
	if err != nil || title != wantTitle || text != wantText {
		t.Fatalf("render = %q, %q, %v; want the defaults %q, %q", title, text, err, wantTitle, wantText)
	}
}

func TestGoldenMessages(t *testing.T) {
	tm, err := newTemplates(config.Templates{})
	if err != nil {
		t.Fatal(err)
	}
	for i, typ := range event.All() {
		if !typ.Published() && typ != event.RecoveryProgress {
			continue // never reaches a receiver
		}
		t.Run(string(typ), func(t *testing.T) {
			e := goldenEvent(typ, i)
			msg, err := tm.message(e, true)
			if err != nil {
				t.Fatal(err)
			}
			reply, err := tm.reply(e)
			if err != nil {
				t.Fatal(err)
			}
			got := plainJSON(t, map[string]any{"text": msg.Text, "blocks": msg.Blocks, "reply": reply})
			if strings.Contains(got, "<no value>") {
				t.Errorf("a template printed <no value>: %s", got)
			}
			golden(t, strings.ReplaceAll(string(typ), ".", "_")+".golden", []byte(got))
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test ./notify/slack -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test ./notify/slack -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestShadowIncidentSaysSo: every message of an incident in shadow mode
// says in its header that Guardian does not act; an enforced one does not.
func TestShadowIncidentSaysSo(t *testing.T) {
	tm, err := newTemplates(config.Templates{})
	if err != nil {
		t.Fatal(err)
	}
	e := declared()
	title, _, err := tm.render(e)
	if err != nil || strings.Contains(title, "shadow") {
		t.Fatalf("enforced: %q, %v", title, err)
	}
	e.Mode, e.Text = "shadow", "[shadow] "+e.Text
	title, text, err := tm.render(e)
	if err != nil || !strings.HasPrefix(title, "[shadow] ") || !strings.HasPrefix(text, "[shadow] ") {
		t.Fatalf("shadow declared: %q / %q, %v", title, text, err)
	}
	e.Type = event.ShadowDecision
	e.Data["version"], e.Data["baseline"] = "v2", "v1"
	title, _, err = tm.render(e)
	if want := ":ghost: Incident 7: [shadow] would roll back checkout v2 → v1"; err != nil || title != want {
		t.Fatalf("shadow decision header %q, %v; want %q", title, err, want)
	}
}
