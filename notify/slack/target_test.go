package slack

import (
	"net/url"
	"testing"
)

// Target reads what a Slack request acts on from its body: the incident
// of a decision button, the service of a rollback command, nothing else.
func TestTarget(t *testing.T) {
	e := &env{t: t, api: newFakeSlack(t)}
	command := func(text string) string {
		return url.Values{"command": {"/guardian"}, "text": {text}, "user_id": {"U1"}}.Encode()
	}
	for _, tc := range []struct {
		name    string
		body    string
		id      int64
		service string
	}{
		{"approve button", e.clickPayload("U1", "alice", ActionApprove, 42), 42, ""},
		{"hold database button", e.clickPayload("U1", "alice", ActionHoldDatabase, 7), 7, ""},
		{"link button", e.clickPayload("U1", "alice", "open-report", 42), 0, ""},
		{"rollback command", command(`rollback checkout --reason "p99 doubled"`), 0, "checkout"},
		{"status command", command("status checkout"), 0, ""},
		{"not a form", "%zz", 0, ""},
		{"bad payload", url.Values{"payload": {"{"}}.Encode(), 0, ""},
	} {
		id, service := Target([]byte(tc.body))
		if id != tc.id || service != tc.service {
			t.Errorf("%s: Target = %d %q, want %d %q", tc.name, id, service, tc.id, tc.service)
		}
	}
}
