package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/incident"
	notifyslack "github.com/rollback-guardian/guardian/notify/slack"
	"github.com/rollback-guardian/guardian/testenv"
)

// slackAPI is a local Slack Web API: it keeps the messages Guardian posts
// and edits, and the answers posted to response_url.
type slackAPI struct {
	t   *testing.T
	url string

	mu        sync.Mutex
	posts     []url.Values // chat.postMessage
	updates   []url.Values // chat.update
	responses []string     // response_url bodies
}

func newSlackAPI(t *testing.T) *slackAPI {
	a := &slackAPI{t: t}
	a.url = serve(t, http.HandlerFunc(a.serve))
	return a
}

func (a *slackAPI) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.URL.Path == "/respond" {
		b, _ := io.ReadAll(r.Body)
		a.responses = append(a.responses, string(b))
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+slackToken {
		a.t.Errorf("%s: Authorization %q", r.URL.Path, r.Header.Get("Authorization"))
	}
	_ = r.ParseForm()
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/api/chat.postMessage":
		a.posts = append(a.posts, r.PostForm)
		fmt.Fprintf(w, `{"ok":true,"channel":"C0E2ECHAN","ts":"1700000000.%06d"}`, len(a.posts))
	case "/api/chat.update":
		a.updates = append(a.updates, r.PostForm)
		fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":%q}`, r.PostForm.Get("channel"), r.PostForm.Get("ts"))
	default:
		a.t.Errorf("unexpected Slack API call %s", r.URL.Path)
		fmt.Fprint(w, `{"ok":false,"error":"unknown_method"}`)
	}
}

// message returns the blocks the incident's message shows now.
func (a *slackAPI) message() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.updates) > 0 {
		return a.updates[len(a.updates)-1].Get("blocks")
	}
	if len(a.posts) > 0 {
		return a.posts[0].Get("blocks")
	}
	return ""
}

// click sends a signed Approve click, as Slack does, to Guardian.
func (s *stack) slackClick(t *testing.T, a *slackAPI, id int64, secret string) int {
	t.Helper()
	payload, _ := json.Marshal(map[string]any{
		"type": "block_actions", "api_app_id": "A0E2E", "trigger_id": "1.2.3",
		"user":         map[string]any{"id": slackApprover, "username": "jane", "name": "jane", "team_id": "T0E2E"},
		"team":         map[string]any{"id": "T0E2E", "domain": "e2e"},
		"channel":      map[string]any{"id": "C0E2ECHAN", "name": "deploys"},
		"container":    map[string]any{"type": "message", "message_ts": "1700000000.000001", "channel_id": "C0E2ECHAN"},
		"response_url": a.url + "/respond",
		"actions": []map[string]any{{"action_id": notifyslack.ActionApprove, "block_id": "guardian_decision",
			"value": strconv.FormatInt(id, 10), "type": "button", "action_ts": "1700000001.000002"}},
	})
	body := url.Values{"payload": {string(payload)}}.Encode()
	now := time.Now().Unix()
	req, _ := http.NewRequest(http.MethodPost, s.apiURL+"/api/v1/slack/interactions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now, 10))
	req.Header.Set("X-Slack-Signature", notifyslack.Sign(secret, now, []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A bad deploy → the Slack message with Approve and Hold → a signed click
// at Guardian's Slack endpoint → the rollback runs → the message loses its
// buttons, the thread tells each step, and the report names the Slack
// approver.
func TestSlackApproval(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	api := newSlackAPI(t)
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, rollback: "placeholder", slackAPI: api.url + "/api/"})
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))

	s.deploy("v2", 0.20)
	rec := s.waitIncident(1, incident.AwaitingApproval, 90*time.Second)
	testenv.Eventually(t, 30*time.Second, func() error {
		if m := api.message(); !strings.Contains(m, notifyslack.ActionApprove) || !strings.Contains(m, notifyslack.ActionHold) {
			return fmt.Errorf("message without buttons: %.300s", m)
		}
		return nil
	}, "the Slack message with Approve and Hold")

	// A click signed with another secret is refused and changes nothing.
	if code := s.slackClick(t, api, 1, "not-the-signing-secret"); code != http.StatusUnauthorized {
		t.Fatalf("forged click: status %d", code)
	}
	if got := s.incident(1); got.State != incident.AwaitingApproval || len(got.Decisions) != 0 || len(got.Timeline) != len(rec.Timeline) {
		t.Fatalf("a forged click changed the incident: %+v", got)
	}
	if len(s.rollbacks()) != 0 {
		t.Fatal("rolled back before the go")
	}

	if code := s.slackClick(t, api, 1, slackSigningSecret); code != http.StatusOK {
		t.Fatalf("click: status %d", code)
	}
	rec = s.waitIncident(1, incident.Resolved, 120*time.Second)
	if len(rec.Decisions) != 1 || rec.Decisions[0].By != "slack:"+slackApprover+" (jane)" || rec.Decisions[0].Channel != "slack" {
		t.Fatalf("decisions %+v", rec.Decisions)
	}
	if got := s.rollbacks(); len(got) != 1 {
		t.Fatalf("rollback runs %v, want one", got)
	}

	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(s.apiURL + "/api/v1/incidents/1/report")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), slackApprover) || !strings.Contains(string(b), "jane") {
			return fmt.Errorf("report does not name the Slack approver: %.400s", b)
		}
		return nil
	}, "the report to name the Slack approver")

	// Each later event edits the message and then replies in its thread:
	// wait for the last event's reply, not only for its edit.
	testenv.Eventually(t, 30*time.Second, func() error {
		m := api.message()
		if strings.Contains(m, notifyslack.ActionApprove) || !strings.Contains(m, "resolved") {
			return fmt.Errorf("message still offers the go/no-go or is not resolved: %.300s", m)
		}
		api.mu.Lock()
		defer api.mu.Unlock()
		if replies := len(api.posts) - 1; replies == 0 || len(api.updates) != replies {
			return fmt.Errorf("%d replies and %d updates, want one of each per later event", replies, len(api.updates))
		}
		return nil
	}, "the Slack message to show the incident resolved, without buttons, with a reply per edit")
	api.mu.Lock()
	defer api.mu.Unlock()
	first := api.posts[0]
	if first.Has("thread_ts") {
		t.Errorf("the first post is a reply: %v", first)
	}
	for _, p := range api.posts[1:] {
		if p.Get("thread_ts") != "1700000000.000001" {
			t.Errorf("a later post is not a reply in the incident's thread: %v", p)
		}
	}
	if len(api.responses) != 1 || !strings.Contains(api.responses[0], "You approved") {
		t.Errorf("answers to the clicker: %q", api.responses)
	}
}
