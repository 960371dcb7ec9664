// Package event is Guardian's vocabulary of what happens to an incident: one
// typed name per step of the procedure, shared by the incident timeline, the
// notifications receivers get and the incident report; and of what happens
// to a metric source that Guardian cannot judge without (source.unreachable,
// source.recovered).
package event

// Type names one step of an incident, such as "incident.declared". The names
// are the wire format of notifications and the timeline's entry types: they
// are stable.
type Type string

// Event types, roughly in the order an incident emits them.
const (
	// IncidentDeclared opens an incident: a trigger fired for a fresh deploy.
	IncidentDeclared Type = "incident.declared"
	// TriggerFired: another trigger fired for the deploy of an open incident.
	TriggerFired Type = "trigger.fired"
	// ShadowDecision: the incident's service is in shadow mode; Guardian
	// records what it would have done (roll the service back) and does
	// nothing.
	ShadowDecision Type = "shadow.decision"
	// ApprovalRequested asks for a go/no-go (the application step, or the
	// database step, which is never automatic).
	ApprovalRequested Type = "approval.requested"
	// ApprovalGranted is a go, from a person or a policy.
	ApprovalGranted Type = "approval.granted"
	// ApprovalDenied is a no-go: the incident is held (or, for the database
	// step, escalated).
	ApprovalDenied Type = "approval.denied"
	// RollbackStarted: a rollback step was saved as started and its executor runs.
	RollbackStarted Type = "rollback.started"
	// RollbackResumed: Guardian restarted while a rollback step ran; the step
	// is not run again, Guardian waits for it to end.
	RollbackResumed Type = "rollback.resumed"
	// RollbackSucceeded: the executor reported success.
	RollbackSucceeded Type = "rollback.succeeded"
	// RollbackFailed: the executor reported failure or timed out.
	RollbackFailed Type = "rollback.failed"
	// RollbackUnknown: a step that outlived a restart ended, but its outcome
	// could not be learnt; verification decides whether it took effect.
	RollbackUnknown Type = "rollback.unknown"
	// RecoveryProgress: verification saw the values come back, or go away again.
	RecoveryProgress Type = "recovery.progress"
	// RecoveryConfirmed: back to baseline for the stable period, smoke checks passing.
	RecoveryConfirmed Type = "recovery.confirmed"
	// RecoveryFailed: not recovered within the recovery timeout.
	RecoveryFailed Type = "recovery.failed"
	// IncidentEscalated: Guardian can do no more; a human must take over.
	IncidentEscalated Type = "incident.escalated"
	// IncidentResolved: rolled back and recovered.
	IncidentResolved Type = "incident.resolved"
	// IncidentClosed: closed without resolution, by a person or because a
	// newer deploy of the service superseded it.
	IncidentClosed Type = "incident.closed"
	// ReportWritten: the incident report (Markdown and JSON) was written.
	ReportWritten Type = "report.written"
	// PostmortemScheduled: the post-mortem invite was written.
	PostmortemScheduled Type = "postmortem.scheduled"

	// NotificationFailed: a notification of the incident was given up (its
	// receiver rejected it, or kept failing past the outbox's maximum age).
	// It stays on the timeline: telling the receivers would loop.
	NotificationFailed Type = "notification.failed"

	// SourceUnreachable is bound to no incident: a metric source (a named
	// Prometheus source, or a service's own scrape) has failed for a
	// transport reason for longer than global.source_alert_after. No trigger
	// can judge the services that use it meanwhile, and none rolls back for
	// lack of data.
	SourceUnreachable Type = "source.unreachable"
	// SourceRecovered is bound to no incident: an unreachable metric source
	// answered again.
	SourceRecovered Type = "source.recovered"
)

// types lists every Type with whether receivers are told of it.
var types = []struct {
	t         Type
	published bool
}{
	{IncidentDeclared, true},
	{TriggerFired, true},
	{ApprovalRequested, true},
	{ApprovalGranted, true},
	{ApprovalDenied, true},
	{RollbackStarted, true},
	{RollbackResumed, true},
	{RollbackSucceeded, true},
	{RollbackFailed, true},
	{RollbackUnknown, true},
	{RecoveryProgress, false},
	{RecoveryConfirmed, true},
	{RecoveryFailed, true},
	{IncidentEscalated, true},
	{IncidentResolved, true},
	{IncidentClosed, true},
	{ReportWritten, true},
	{PostmortemScheduled, true},
	{NotificationFailed, false},
	{SourceUnreachable, true},
	{SourceRecovered, true},
	// Last, so that the numbering of the others stays as it was.
	{ShadowDecision, true},
}

// All returns every event type, in the order an incident usually emits them,
// then the metric-source types, then shadow.decision.
func All() []Type {
	out := make([]Type, len(types))
	for i, e := range types {
		out[i] = e.t
	}
	return out
}

// String returns the type's name.
func (t Type) String() string { return string(t) }

// Known reports whether t is part of the vocabulary.
func (t Type) Known() bool {
	for _, e := range types {
		if e.t == t {
			return true
		}
	}
	return false
}

// Published reports whether receivers are told of events of type t. Only
// recovery.progress, verification's running commentary, and
// notification.failed stay on the timeline alone.
func (t Type) Published() bool {
	for _, e := range types {
		if e.t == t {
			return e.published
		}
	}
	return false
}
