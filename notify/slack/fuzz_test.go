package slack

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzInteraction sends properly signed requests with arbitrary bodies,
// payloads and slash-command texts to the Slack endpoint. Properties: it
// never panics, answers 200, 400 or 401, and records a go/no-go or starts
// a rollback only for a user on the service's slack_approvers (U0ALICE,
// or U0CAROL through the user group S0SRE), as that user.
func FuzzInteraction(f *testing.F) {
	f.Add("payload", `{"type":"block_actions","user":{"id":"U0ALICE","name":"alice"},"actions":[{"action_id":"guardian_approve","block_id":"guardian_decision","value":"1"}]}`, "U0ALICE")
	f.Add("payload", `{"type":"block_actions","user":{"id":"U0MALLORY","name":"m"},"actions":[{"action_id":"guardian_hold","block_id":"guardian_decision","value":"3"}]}`, "U0MALLORY")
	f.Add("payload", `{"type":"block_actions","user":{"id":"U0CAROL"},"actions":[{"action_id":"guardian_approve","value":"-1"},{"action_id":"x"}]}`, "U0CAROL")
	f.Add("payload", `{"type":"view_submission"}`, "")
	f.Add("payload", `not json`, "")
	f.Add("text", `rollback checkout --reason “orders written twice”`, "U0ALICE")
	f.Add("text", `rollback checkout --to "v1 --reason x`, "U0MALLORY")
	f.Add("text", `status`, "")
	f.Add("", "%%%", "")
	f.Fuzz(func(t *testing.T, field, value, user string) {
		inc := &fakeRollbacker{fakeIncidents: awaiting()}
		e := newEnv(t, inc)
		form := url.Values{field: {value}}
		if field == "text" {
			form.Set("command", "/guardian")
			form.Set("user_id", user)
			form.Set("user_name", "someone")
			form.Set("response_url", e.api.srv.URL+"/respond")
		}
		body := form.Encode()
		if field == "" {
			body = value // not even a form
		}
		w := e.send(body, secret1, e.now.Add(time.Second))
		if c := w.Code; c != 200 && c != 400 && c != 401 {
			t.Fatalf("status %d for %q", c, body)
		}
		allowed := func(by string) bool {
			return strings.HasPrefix(by, "slack:U0ALICE ") || strings.HasPrefix(by, "slack:U0CAROL ") || by == "slack:U0ALICE" || by == "slack:U0CAROL"
		}
		for _, v := range inc.votes {
			if !allowed(v.By) || v.Channel != "slack" {
				t.Fatalf("vote %+v recorded for %q", v, body)
			}
		}
		for _, c := range inc.calls {
			if !allowed(c[3]) || strings.TrimSpace(c[0]) == "" || strings.TrimSpace(c[2]) == "" {
				t.Fatalf("rollback %q started for %q", c, body)
			}
		}
	})
}

// FuzzParseCommand: any text parses or is refused without a panic, and a
// rollback always names a service and a reason.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{`rollback checkout --reason "x"`, `rollback checkout --to v1 --reason “a b”`, `status checkout`,
		`rollback --reason`, `"`, `rollback a b c`, `help`, "rollback checkout --reason &lt;x&gt;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCommand(text)
		if err == nil && c.Verb == "rollback" && (strings.TrimSpace(c.Service) == "" || strings.TrimSpace(c.Reason) == "") {
			t.Fatalf("%q parsed as %+v", text, c)
		}
	})
}
