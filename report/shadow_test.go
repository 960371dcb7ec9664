package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/incident"
)

// shadowClosed is an incident of a service in shadow mode, driven by the
// state machine to its end: the watch ended.
func shadowClosed(t *testing.T) incident.Record {
	t.Helper()
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	rules := incident.Rules{Approval: approval.Policy{Mode: approval.Auto}, ProbeInterval: 5 * time.Second, Application: "command rollback.sh"}
	r := incident.Record{}
	for i, ev := range []incident.Event{
		incident.Declare{ID: 9, Service: "checkout", Severity: "SEV-2", Version: "v2", Baseline: "v1", Trigger: "error-rate",
			Evidence: incident.Evidence{Summary: "error-rate 0.2 > 0.05"}, DeployedAt: t0.Add(-time.Minute), Mode: incident.ModeShadow},
		incident.Tick{},
		incident.Observed{},
	} {
		var err error
		if r, _, err = incident.Next(r, ev, rules, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if r.State != incident.Closed || !r.Shadowed() {
		t.Fatalf("%s %s", r.State, r.Mode)
	}
	return r
}

func TestShadowReports(t *testing.T) {
	r := shadowClosed(t)
	opts := Options{Now: func() time.Time { return time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC) }}
	const would = "It would have rolled back checkout v2 → v1 at 2026-03-04 10:01:00 UTC"
	md, err := Markdown(r, opts)
	if err != nil {
		t.Fatal(err)
	}
	head := strings.SplitN(string(md), "\n- **Severity", 2)[0]
	if !strings.Contains(head, "> **Shadow mode: Guardian did not act.** "+would) {
		t.Errorf("Markdown does not open with the shadow note:\n%s", head)
	}
	if !strings.HasPrefix(string(md), "# Incident #9 — checkout v2 detected as bad, shadow mode: Guardian did not act\n") {
		t.Errorf("Markdown title: %.100s", md)
	}
	if !strings.Contains(string(md), "- **Mode:** shadow") {
		t.Error("Markdown facts lack the mode")
	}
	js, err := JSON(r, opts)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Summary string `json:"summary"`
		Shadow  *struct {
			Mode, Note string
		} `json:"shadow"`
		Incident struct{ Mode string } `json:"incident"`
	}
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatal(err)
	}
	if got.Shadow == nil || got.Shadow.Mode != "shadow" || !strings.Contains(got.Shadow.Note, would) || got.Incident.Mode != "shadow" ||
		!strings.HasPrefix(got.Summary, "Shadow mode: Guardian did not act.") {
		t.Errorf("JSON report: %+v %q", got.Shadow, got.Summary)
	}
	html, err := HTML(r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), `<p class="shadow"><strong>Shadow mode: Guardian did not act.</strong> `+would) {
		t.Error("HTML report lacks the shadow note")
	}

	// An enforced incident's reports say nothing of it.
	r.Mode = incident.ModeEnforce
	md, _ = Markdown(r, opts)
	js, _ = JSON(r, opts)
	html, _ = HTML(r, opts)
	for _, b := range [][]byte{md, js, html} {
		if strings.Contains(string(b), ShadowHeading) || strings.Contains(string(b), `"shadow":`) {
			t.Errorf("enforced report mentions shadow mode:\n%.400s", b)
		}
	}
}
