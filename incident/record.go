// Package incident holds the incident record and its state machine: a firing
// trigger declares an incident, which goes through the go/no-go, the
// application rollback, verification and, only if needed and separately
// approved, the database step, to resolution. Every transition is persisted
// before its side effect runs.
package incident

import (
	"math"
	"time"

	"github.com/rollback-guardian/guardian/trigger"
)

// State is where an incident stands.
type State string

// Incident states.
const (
	Detected           State = "detected"
	AwaitingApproval   State = "awaiting_approval"
	RollingBack        State = "rolling_back"
	Verifying          State = "verifying"
	Resolved           State = "resolved"
	Held               State = "held"
	DBAwaitingApproval State = "db_awaiting_approval"
	DBRollingBack      State = "db_rolling_back"
	Escalated          State = "escalated"
	Failed             State = "failed"
)

// String returns the state's name.
func (s State) String() string { return string(s) }

// Open reports whether the incident still needs Guardian or a human.
// Held, escalated and failed incidents are open: a human must close them.
func (s State) Open() bool { return s != Resolved }

// Record is one incident as persisted.
type Record struct {
	// ID numbers incidents from 1, across services.
	ID       int64  `json:"id"`
	Service  string `json:"service"`
	Severity string `json:"severity"`
	State    State  `json:"state"`
	// Version is the bad version; Baseline the version to roll back to.
	Version  string `json:"version"`
	Baseline string `json:"baseline"`
	// Trigger names the trigger that fired; Evidence is its verdict then.
	Trigger  string   `json:"trigger"`
	Evidence Evidence `json:"evidence"`

	DeployedAt        time.Time  `json:"deployed_at"`
	DetectedAt        time.Time  `json:"detected_at"`
	ApprovedAt        *time.Time `json:"approved_at,omitempty"`
	RollbackStartedAt *time.Time `json:"rollback_started_at,omitempty"`
	RollbackDoneAt    *time.Time `json:"rollback_done_at,omitempty"`
	RecoveredAt       *time.Time `json:"recovered_at,omitempty"`
	ResolvedAt        *time.Time `json:"resolved_at,omitempty"`

	// ApprovalRequestedAt is when the current go/no-go was asked (the
	// auto_after deadline counts from it); VerifyStartedAt when the current
	// verification began (its timeout counts from it).
	ApprovalRequestedAt *time.Time `json:"approval_requested_at,omitempty"`
	VerifyStartedAt     *time.Time `json:"verify_started_at,omitempty"`
	// Step is the rollback step in progress: "application", then "database".
	Step string `json:"step"`
	// References are the baseline's values by trigger, taken when the
	// deploy was seen: recovery is judged against them.
	References map[string]float64 `json:"references,omitempty"`
	// Published counts the timeline entries handed to the notification
	// outbox; entries after it are published again after a restart.
	Published int `json:"published"`

	// Decisions are the go/no-go answers, in order.
	Decisions []Decision `json:"decisions,omitempty"`
	// Actions are the side effects, by idempotency key.
	Actions map[string]*Action `json:"actions,omitempty"`
	// Impact is measured while the incident runs.
	Impact Impact `json:"impact"`
	// Timeline is every step, in order.
	Timeline []Entry `json:"timeline"`
}

// Entry is one step on the timeline: who or what did what, and why.
type Entry struct {
	At time.Time `json:"at"`
	// Type is the event type, e.g. "incident.declared", "approval.granted",
	// "rollback.started" (the same names as the notification events).
	Type string `json:"type"`
	// Actor is "guardian", "policy:auto_after", "token:alice", ...
	Actor   string            `json:"actor"`
	Message string            `json:"message"`
	Data    map[string]string `json:"data,omitempty"`
}

// Decision is one go/no-go answer.
type Decision struct {
	// Step is "application" or "database".
	Step     string    `json:"step"`
	Approved bool      `json:"approved"`
	By       string    `json:"by"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

// ActionState is the progress of a side effect.
type ActionState string

// Action states.
const (
	ActionStarted   ActionState = "started"
	ActionSucceeded ActionState = "succeeded"
	ActionFailed    ActionState = "failed"
)

// Action is a side effect (a rollback) under its idempotency key. It is
// written as started before the executor runs; on restart, a started action
// is never run again blindly.
type Action struct {
	Key        string      `json:"key"`
	Kind       string      `json:"kind"` // "rollback.application" or "rollback.database"
	Executor   string      `json:"executor"`
	State      ActionState `json:"state"`
	StartedAt  time.Time   `json:"started_at"`
	FinishedAt *time.Time  `json:"finished_at,omitempty"`
	Output     string      `json:"output,omitempty"`
	Error      string      `json:"error,omitempty"`
}

// Evidence is a firing verdict, in a form that encodes to JSON (no NaN).
type Evidence struct {
	Summary       string   `json:"summary"`
	Query         string   `json:"query"`
	Value         *float64 `json:"value,omitempty"`
	BaselineQuery string   `json:"baseline_query,omitempty"`
	BaselineValue *float64 `json:"baseline_value,omitempty"`
	BaselineMode  string   `json:"baseline_mode,omitempty"`
	Conditions    []string `json:"conditions,omitempty"`
	VolumeQuery   string   `json:"volume_query,omitempty"`
	SampleSize    *float64 `json:"sample_size,omitempty"`
}

// Impact is what the incident cost, measured from the trigger queries.
type Impact struct {
	// PeakValue is the highest value of the firing trigger for the bad
	// version; BaselineValue the baseline's value it was judged against.
	PeakValue     *float64 `json:"peak_value,omitempty"`
	BaselineValue *float64 `json:"baseline_value,omitempty"`
	// FailedRequests estimates the requests that failed because of the
	// deploy, when the trigger is a ratio with a volume query.
	FailedRequests *float64 `json:"failed_requests,omitempty"`
}

// EvidenceFrom converts a verdict's evidence, dropping NaN and infinities.
func EvidenceFrom(v trigger.Verdict) Evidence {
	e := v.Evidence
	ev := Evidence{
		Summary:       v.Summary(),
		Query:         e.Query,
		Value:         finite(e.Value),
		BaselineQuery: e.BaselineQuery,
		BaselineValue: finite(e.BaselineValue),
		BaselineMode:  e.BaselineMode.String(),
		VolumeQuery:   e.VolumeQuery,
		SampleSize:    finite(e.SampleSize),
	}
	for _, c := range e.Conditions {
		ev.Conditions = append(ev.Conditions, c.Text)
	}
	return ev
}

func finite(f *float64) *float64 {
	if f == nil || math.IsNaN(*f) || math.IsInf(*f, 0) {
		return nil
	}
	v := *f
	return &v
}
