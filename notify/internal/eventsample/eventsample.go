// Package eventsample holds one realistic notification of every event type,
// for the receivers' golden tests.
package eventsample

import (
	"fmt"
	"time"

	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
)

// Time is when the sample incident was declared.
var Time = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// Responders are the sample service's people.
var Responders = []notify.Responder{
	{Role: "incident_commander", Name: "Alice Martin", Email: "alice@example.com", Slack: "U0ALICE"},
	{Role: "dba", Name: "Bob Chen", Email: "bob@example.com"},
}

// Links are the sample incident's links.
var Links = notify.LinksFor("https://guardian.example.com/", 42)

// texts are the messages, as package incident and source/outage write them.
var texts = map[event.Type]string{
	event.IncidentDeclared:    "SEV-1 declared for checkout: checkout v2.4.1 is bad (5xx ratio 7.9% > 5% (baseline 0.4%)); baseline v2.4.0: served most before the deploy",
	event.TriggerFired:        "p99-latency also firing: p99 latency 1.8s > 1s (baseline 240ms)",
	event.ApprovalRequested:   "go/no-go: roll back checkout v2.4.1 → v2.4.0? 5xx ratio 7.9% > 5% (baseline 0.4%). Approve: guardian approve 42; deny: guardian deny 42 --reason ...",
	event.ApprovalGranted:     "go: roll back checkout v2.4.1 → v2.4.0 (customers see errors)",
	event.ApprovalDenied:      "no-go: checkout stays on v2.4.1, watching goes on (a fix is going out)",
	event.RollbackStarted:     "rolling back checkout (application) v2.4.1 → v2.4.0 with command ./rollback.sh",
	event.RollbackResumed:     "Guardian restarted while the application rollback of checkout ran: waiting for it to end",
	event.RollbackSucceeded:   "application rollback of checkout done in 42s; verifying recovery",
	event.RollbackFailed:      "the application rollback of checkout failed: exit status 1",
	event.RollbackUnknown:     "the application rollback of checkout ended while Guardian was not watching it; its outcome is unknown (no exit status): verifying whether it took effect",
	event.RecoveryProgress:    "5xx ratio 0.5% is within tolerance of the baseline 0.4%",
	event.RecoveryConfirmed:   "checkout recovered: 5xx ratio 0.4% for 1m, smoke checks passing",
	event.RecoveryFailed:      "checkout not recovered within 15m0s: 5xx ratio 6.1% > 5%",
	event.IncidentEscalated:   "checkout did not recover after the rollback: a human must take over",
	event.IncidentResolved:    "incident #42 resolved: checkout rolled back v2.4.1 → v2.4.0 and stable",
	event.IncidentClosed:      "closed by alice: superseded by v2.4.2",
	event.ReportWritten:       "report written: /var/lib/guardian/reports/incident-42.md",
	event.PostmortemScheduled: "post-mortem scheduled for 2025-03-06T14:00:00Z: /var/lib/guardian/reports/incident-42-postmortem.ics",
	event.SourceUnreachable:   `metric source "prom" (http://prometheus:9090) is unreachable: its queries have failed since 2025-03-04T05:04:07Z (2m0s; unavailable: connection refused). Guardian is blind for checkout meanwhile: no trigger can judge; no rollback happens for lack of data.`,
	event.ShadowDecision:      "[shadow] Guardian would have rolled back checkout v2.4.1 → v2.4.0 at 2025-03-04T05:06:07Z, after a go/no-go (approval policy: manual), with command ./rollback.sh; in shadow mode it did nothing and observes until the watch ends or the version changes",
	event.SourceRecovered:     `metric source "prom" (http://prometheus:9090) answers again: it was unreachable for 3m0s, since 2025-03-04T05:04:07Z. Guardian judges checkout again.`,
}

// states are the incident's state after each event.
var states = map[event.Type]string{
	event.IncidentDeclared:    "detected",
	event.TriggerFired:        "awaiting_approval",
	event.ApprovalRequested:   "awaiting_approval",
	event.ApprovalGranted:     "rolling_back",
	event.ApprovalDenied:      "held",
	event.RollbackStarted:     "rolling_back",
	event.RollbackResumed:     "rolling_back",
	event.RollbackSucceeded:   "verifying",
	event.RollbackFailed:      "escalated",
	event.RollbackUnknown:     "verifying",
	event.RecoveryProgress:    "verifying",
	event.RecoveryConfirmed:   "resolved",
	event.RecoveryFailed:      "escalated",
	event.IncidentEscalated:   "escalated",
	event.IncidentResolved:    "resolved",
	event.IncidentClosed:      "closed",
	event.ReportWritten:       "resolved",
	event.PostmortemScheduled: "resolved",
	event.SourceUnreachable:   "unreachable",
	event.SourceRecovered:     "reachable",
	event.ShadowDecision:      "shadow",
}

// actors decide the go/no-go: a person.
var actors = map[event.Type]string{
	event.ApprovalGranted: "token:alice",
	event.ApprovalDenied:  "token:alice",
	event.IncidentClosed:  "token:alice",
}

// Event returns the sample notification of type t: the sequence-th of
// incident 42 of service checkout, or of metric source "prom".
func Event(t event.Type, sequence int) notify.Event {
	at := Time.Add(time.Duration(sequence) * 30 * time.Second)
	if t == event.SourceUnreachable || t == event.SourceRecovered {
		data := map[string]any{
			"source": "prom", "kind": "prometheus", "url": "http://prometheus:9090",
			"services": []string{"checkout"}, "since": Time.Add(-2 * time.Minute),
		}
		if t == event.SourceUnreachable {
			data["reason"], data["error"] = "unavailable", "connection refused"
		} else {
			data["duration_seconds"] = 180.0
		}
		return notify.Event{
			ID: fmt.Sprintf("src_prom_%d", sequence), Type: t, Sequence: sequence, Time: at,
			State: states[t], Text: texts[t], Data: data, Links: notify.LinksFor("https://guardian.example.com/", 0),
		}
	}
	actor := actors[t]
	if actor == "" {
		actor = "guardian"
	}
	data := map[string]any{
		"version": "v2.4.1", "baseline": "v2.4.0", "trigger": "error-rate", "actor": actor,
		"evidence": "5xx ratio 7.9% > 5% (baseline 0.4%)",
	}
	switch t {
	case event.ApprovalRequested:
		data["step"], data["mode"] = "application", "manual"
	case event.ApprovalGranted, event.ApprovalDenied:
		data["step"], data["reason"] = "application", "customers see errors"
	case event.IncidentDeclared:
		data["baseline_why"] = "served most before the deploy"
	case event.ReportWritten:
		data["markdown"] = "/var/lib/guardian/reports/incident-42.md"
	case event.ShadowDecision:
		data["decision"], data["approval"], data["executor"] = "rollback", "manual", "command ./rollback.sh"
	}
	mode := ""
	if t == event.ShadowDecision {
		mode = "shadow"
	}
	return notify.Event{Mode: mode,
		ID: fmt.Sprintf("evt_42_%d", sequence), Type: t, Sequence: sequence, Time: at, Incident: 42,
		Service: "checkout", Severity: "SEV-1", State: states[t], Text: texts[t], Data: data,
		Links: Links, Responders: Responders,
	}
}

// All returns the sample of every event type receivers get (the
// published ones), in event.All's order.
func All() []notify.Event {
	var out []notify.Event
	for i, t := range event.All() {
		if t.Published() || t == event.RecoveryProgress {
			out = append(out, Event(t, i+1))
		}
	}
	return out
}
