// Package incident is the incident stage: the record and its timeline, the
// state machine as a pure transition function (Next: record, event, now →
// record, effects), and the Manager, the driver that persists each
// transition before it runs the effects (go/no-go requests, rollback steps,
// recovery probes, the report) and feeds their outcomes back as events.
package incident

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/trigger"
)

// State is where an incident stands.
type State string

// Incident states.
const (
	Detected State = "detected"
	// Shadow is an incident of a service in shadow mode once Guardian
	// recorded what it would have done: it asks nobody and runs nothing,
	// and observes until the watch ends or the service's version changes.
	Shadow             State = "shadow"
	AwaitingApproval   State = "awaiting_approval"
	RollingBack        State = "rolling_back"
	Verifying          State = "verifying"
	Resolved           State = "resolved"
	Held               State = "held"
	DBAwaitingApproval State = "db_awaiting_approval"
	DBRollingBack      State = "db_rolling_back"
	Escalated          State = "escalated"
	Failed             State = "failed"
	// Closed ends an incident without resolution: a person closed it, or a
	// newer deploy of the service superseded it.
	Closed State = "closed"
)

// States lists every state, in the usual order of an incident.
func States() []State {
	return []State{Detected, Shadow, AwaitingApproval, Held, RollingBack, Verifying, DBAwaitingApproval, DBRollingBack,
		Resolved, Escalated, Failed, Closed}
}

// String returns the state's name.
func (s State) String() string { return string(s) }

// Open reports whether the incident still needs Guardian or a human.
// Held, escalated and failed incidents are open until a person closes them
// or a newer deploy of the service supersedes them.
func (s State) Open() bool { return s != Resolved && s != Closed && s != "" }

// acting reports whether a rollback step's executor may be running.
func (s State) acting() bool { return s == RollingBack || s == DBRollingBack }

// Mode is whether Guardian acts on an incident (enforce) or only records
// what it would have done (shadow). An incident keeps the mode it was
// declared with, whatever its service's configuration says later.
type Mode string

// Incident modes.
const (
	ModeEnforce Mode = "enforce"
	ModeShadow  Mode = "shadow"
)

// String returns the mode's name.
func (m Mode) String() string { return string(m) }

// Record is one incident as persisted.
type Record struct {
	// ID numbers incidents from 1, across services.
	ID       int64  `json:"id"`
	Service  string `json:"service"`
	Severity string `json:"severity"`
	State    State  `json:"state"`
	// Mode is enforce or shadow; a record saved without it is enforce
	// (see Shadowed).
	Mode Mode `json:"mode,omitempty"`
	// Version is the bad version; Baseline the version to roll back to,
	// and BaselineWhy why it was chosen (what served most before the
	// deploy, say).
	Version     string `json:"version"`
	Baseline    string `json:"baseline"`
	BaselineWhy string `json:"baseline_why,omitempty"`
	// Changes are what Guardian knew, when the incident was declared, of
	// what the bad version and the baseline deployed (images, chart,
	// commit, author, change URL): the bad version's first. Empty when it
	// was told nothing.
	Changes []rollout.Change `json:"changes,omitempty"`
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
	ClosedAt          *time.Time `json:"closed_at,omitempty"`

	// ApprovalRequestedAt is when the current go/no-go was asked (the
	// auto_after deadline counts from it); VerifyStartedAt when the current
	// verification began (its timeout counts from it).
	ApprovalRequestedAt *time.Time `json:"approval_requested_at,omitempty"`
	VerifyStartedAt     *time.Time `json:"verify_started_at,omitempty"`
	// RecoveredSince is when the probes began to find the service
	// recovered without a break (the stable period counts from it);
	// Recovering is the last probe's verdict.
	RecoveredSince *time.Time `json:"recovered_since,omitempty"`
	Recovering     bool       `json:"recovering,omitempty"`
	// VerifyStatus is what the last probe was at, without figures (a new
	// one is a progress entry); Running the version verification found
	// serving after the rollback.
	VerifyStatus string `json:"verify_status,omitempty"`
	Running      string `json:"running,omitempty"`
	// Step is the rollback step in progress: "application", then "database".
	Step string `json:"step"`
	// References are the baseline's values by trigger, taken when the
	// deploy was seen: recovery is judged against them.
	References map[string]float64 `json:"references,omitempty"`
	// Published counts the timeline entries handed to the notification
	// outbox (entries of unpublished types included); entries after it are
	// handed over after a restart.
	Published int `json:"published"`

	// Team are the service's responders by role when the incident was
	// declared: the people notifications mention and the post-mortem invites.
	Team []Responder `json:"team,omitempty"`
	// RequestedBy is set when a person declared the incident to roll the
	// service back (no trigger fired): who, through which channel, and why.
	RequestedBy *Requester `json:"requested_by,omitempty"`
	// Decisions are the go/no-go answers, in order.
	Decisions []Decision `json:"decisions,omitempty"`
	// Actions are the side effects, by idempotency key.
	Actions map[string]*Action `json:"actions,omitempty"`
	// Impact is measured when the report is written.
	Impact Impact `json:"impact"`
	// Report records the report (and invite) once written, under its
	// idempotency key; until then a restart writes it.
	Report *ReportFiles `json:"report,omitempty"`
	// Timeline is every step, in order.
	Timeline []Entry `json:"timeline"`
}

// Shadowed reports whether the incident is in shadow mode: Guardian asks
// for no go/no-go and runs no executor for it.
func (r Record) Shadowed() bool { return r.Mode == ModeShadow }

// Responder is one of the people an incident calls on.
type Responder struct {
	// Role is incident_commander, dba, on_call or the configuration's own word.
	Role  string `json:"role"`
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	// Slack is a Slack user (U...) or user group (S...) ID.
	Slack string `json:"slack,omitempty"`
}

// Requester is the person who asked for a rollback.
type Requester struct {
	// By names who, as the channel authenticated them ("token:alice").
	By string `json:"by"`
	// Channel is how the request came: "api", "cli", "slack", ...
	Channel string `json:"channel,omitempty"`
	// Reason says why: what the metrics do not show.
	Reason string `json:"reason"`
}

func (h *Requester) validate() error {
	switch {
	case strings.TrimSpace(h.By) == "":
		return fmt.Errorf("%w: who asks for the rollback is unknown", ErrInvalidVote)
	case strings.TrimSpace(h.Reason) == "":
		return fmt.Errorf("%w: a rollback needs a reason", ErrInvalidVote)
	case len(h.Reason) > approval.MaxReason:
		return fmt.Errorf("%w: the reason is longer than %d characters", ErrInvalidVote, approval.MaxReason)
	}
	return nil
}

// Entry is one step on the timeline: who or what did what, and why.
type Entry struct {
	At time.Time `json:"at"`
	// Type is the event type, e.g. "incident.declared": the same names as
	// the notifications'.
	Type event.Type `json:"type"`
	// Actor is "guardian", "policy:auto_after", "token:alice", ...
	Actor   string            `json:"actor"`
	Message string            `json:"message"`
	Data    map[string]string `json:"data,omitempty"`
	// Count, when above 1, is how many times the same entry happened in a
	// row; LastAt is the last time. Repeats are counted, not appended.
	Count  int        `json:"count,omitempty"`
	LastAt *time.Time `json:"last_at,omitempty"`
}

// Decision is one go/no-go answer.
type Decision struct {
	// Step is "application" or "database".
	Step     string `json:"step"`
	Approved bool   `json:"approved"`
	By       string `json:"by"`
	// Channel is how the answer came: "api", "cli", "policy", ...
	Channel string    `json:"channel,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// ActionState is the progress of a side effect.
type ActionState string

// Action states.
const (
	ActionStarted   ActionState = "started"
	ActionSucceeded ActionState = "succeeded"
	ActionFailed    ActionState = "failed"
	// ActionUnknown: the step outlived a restart and ended without telling
	// its outcome.
	ActionUnknown ActionState = "unknown"
)

// Action is a rollback step under its idempotency key. It is written as
// started before the executor runs; on restart, a started step is never run
// again, it is awaited.
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
// The queries are as sent, at EvaluatedAt unless said otherwise. For a
// threshold trigger, Query is the value query, VolumeQuery the volume
// query and BaselineQuery the value query of the baseline version (at the
// deploy time when BaselineMode is "pre_deploy"). For a sequential
// trigger, Query and VolumeQuery count the new version's errors and
// requests over SinceDeploySeconds, BaselineQuery and
// BaselineRequestsQuery the baseline's over the same range (live), and
// PreDeployErrorsQuery and PreDeployRequestsQuery the baseline's over
// BaselineWindowSeconds before the deploy, at the deploy time. For a
// latency trigger, see Latency.
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
	// EvaluatedAt is the time of the verdict's evaluation.
	EvaluatedAt *time.Time `json:"evaluated_at,omitempty"`
	// Sequential reports a verdict of the sequential test; the fields
	// below are its own.
	Sequential             bool     `json:"sequential,omitempty"`
	SinceDeploySeconds     *float64 `json:"since_deploy_seconds,omitempty"`
	BaselineRequestsQuery  string   `json:"baseline_requests_query,omitempty"`
	BaselineWindowSeconds  *float64 `json:"baseline_window_seconds,omitempty"`
	PreDeployErrorsQuery   string   `json:"pre_deploy_errors_query,omitempty"`
	PreDeployRequestsQuery string   `json:"pre_deploy_requests_query,omitempty"`
	// Latency is a verdict of the latency test: Query and BaselineQuery
	// are then the new version's and the live baseline's buckets queries
	// over SinceDeploySeconds, Value and BaselineValue their quantile
	// (Latency.Quantile), SampleSize the new version's requests judged,
	// and BaselineWindowSeconds the range of Latency.PreDeployQuery.
	Latency *LatencyEvidence `json:"latency,omitempty"`
}

// LatencyEvidence is the latency test's own evidence (see
// trigger.LatencyEvidence), in a form that encodes to JSON.
type LatencyEvidence struct {
	// Decision is regressed, healthy or inconclusive; DecidedAt when it
	// was reached.
	Decision  string     `json:"decision"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
	// E is the evidence of a regression, regressed once at least
	// Threshold (1/Alpha); P the always-valid p-value over the deploy;
	// EHealthy the smallest evidence of health of the guarded bounds.
	E         *float64 `json:"e,omitempty"`
	Threshold float64  `json:"threshold"`
	P         *float64 `json:"p,omitempty"`
	EHealthy  *float64 `json:"e_healthy,omitempty"`
	Alpha     float64  `json:"alpha"`
	MinEffect string   `json:"min_effect,omitempty"`
	// Quantile is the quantile of the evidence's Value and BaselineValue.
	Quantile float64 `json:"quantile"`
	// The requests judged (and left out), and the baseline's before and
	// since the deploy.
	Judged            float64 `json:"judged"`
	Dropped           float64 `json:"dropped,omitempty"`
	PreDeployRequests float64 `json:"pre_deploy_requests"`
	LiveRequests      float64 `json:"live_requests"`
	// Guards are the guarded bounds of the healthy decision.
	Guards []LatencyGuard `json:"guards,omitempty"`
	// PreDeployQuery is the baseline's buckets query over the baseline
	// window, evaluated at the deploy time; ValueQuery the new version's
	// read as counter values, when run.
	PreDeployQuery string `json:"pre_deploy_query,omitempty"`
	ValueQuery     string `json:"value_query,omitempty"`
	Native         bool   `json:"native,omitempty"`
}

// LatencyGuard is one guarded bound: the requests slower than Bound of
// the new version and of the baseline.
type LatencyGuard struct {
	Quantile         float64 `json:"quantile"`
	Bound            float64 `json:"bound"`
	NewSlower        float64 `json:"new_slower"`
	NewRequests      float64 `json:"new_requests"`
	BaselineSlower   float64 `json:"baseline_slower"`
	BaselineRequests float64 `json:"baseline_requests"`
	Decision         string  `json:"decision"`
}

// Impact is what the incident cost, measured from the trigger queries.
type Impact struct {
	// PeakValue is the highest value of the firing trigger for the bad
	// version; BaselineValue the baseline's value it was judged against.
	PeakValue     *float64 `json:"peak_value,omitempty"`
	BaselineValue *float64 `json:"baseline_value,omitempty"`
	// Kind is what the trigger judges: "errors" (its estimate is
	// FailedRequests) or "latency" (SlowRequests); empty when the impact
	// was not measured.
	Kind string `json:"kind,omitempty"`
	// FailedRequests estimates the requests that failed because of the
	// deploy: the bad version's errors beyond its baseline's error ratio,
	// from the deploy to the end of the rollback.
	FailedRequests *float64 `json:"failed_requests,omitempty"`
	// SlowRequests estimates, for a latency trigger, the requests slower
	// than SlowerThanSeconds because of the deploy, counted the same way;
	// only a count of slow requests (a sequential test's errors query)
	// gives it, a quantile does not.
	SlowRequests      *float64 `json:"slow_requests,omitempty"`
	SlowerThanSeconds *float64 `json:"slower_than_seconds,omitempty"`
	// Note says why the estimate is missing, when it is.
	Note string `json:"note,omitempty"`
	// Queries are the queries the estimate was computed from, as sent at
	// MeasuredAt (the end of the rollback, else of the incident).
	Queries    []string   `json:"queries,omitempty"`
	MeasuredAt *time.Time `json:"measured_at,omitempty"`
}

// ReportFiles are an incident's written report and invite.
type ReportFiles struct {
	Key       string    `json:"key"`
	WrittenAt time.Time `json:"written_at"`
	Markdown  string    `json:"markdown"`
	JSON      string    `json:"json"`
	HTML      string    `json:"html,omitempty"`
	Invite    string    `json:"invite,omitempty"`
}

// ReportKey is the idempotency key of an incident's report (and invite).
func ReportKey(id int64) string { return "incident-" + strconv.FormatInt(id, 10) + "/report" }

// EventID is the notification id of the incident's published event number
// seq (1, 2, ...): stable across restarts, so receivers can drop duplicates,
// and without gaps, so they can tell one is missing.
func EventID(id int64, seq int) string {
	return "evt_" + strconv.FormatInt(id, 10) + "_" + strconv.Itoa(seq)
}

// Sequence is the number of timeline entry i among the published events
// (1 for the first), or 0 when entry i is not published.
func (r Record) Sequence(i int) int {
	if i < 0 || i >= len(r.Timeline) || !r.Timeline[i].Type.Published() {
		return 0
	}
	n := 0
	for _, e := range r.Timeline[:i+1] {
		if e.Type.Published() {
			n++
		}
	}
	return n
}

// add appends a timeline entry, or counts it when it repeats the last one.
func (r *Record) add(at time.Time, typ event.Type, actor, msg string, data map[string]string) {
	if n := len(r.Timeline); n > 0 {
		last := &r.Timeline[n-1]
		if last.Type == typ && last.Actor == actor && last.Message == msg {
			last.Count = max(last.Count, 1) + 1
			last.LastAt = &at
			return
		}
	}
	r.Timeline = append(r.Timeline, Entry{At: at, Type: typ, Actor: actor, Message: msg, Data: data})
}

// ChangesOf lists what d says the deploy changed: the new version's, then
// the baseline's, leaving out what is unknown.
func ChangesOf(d rollout.Event) []rollout.Change {
	var out []rollout.Change
	for _, c := range []*rollout.Change{d.Change, d.BaselineChange} {
		if c != nil && !c.Empty() {
			out = append(out, *c)
		}
	}
	return out
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
	if !v.At.IsZero() {
		at := v.At
		ev.EvaluatedAt = &at
	}
	for _, c := range e.Conditions {
		ev.Conditions = append(ev.Conditions, c.Text)
	}
	if se := e.Sequential; se != nil {
		ev.Sequential = true
		ev.BaselineRequestsQuery = se.BaselineRequestsQuery
		ev.PreDeployErrorsQuery, ev.PreDeployRequestsQuery = se.PreDeployErrorsQuery, se.PreDeployRequestsQuery
		if se.SinceDeploy > 0 {
			s := se.SinceDeploy.Seconds()
			ev.SinceDeploySeconds = &s
		}
		if se.BaselineWindow > 0 {
			s := se.BaselineWindow.Seconds()
			ev.BaselineWindowSeconds = &s
		}
	}
	if le := e.Latency; le != nil {
		ev.Latency = latencyEvidence(le)
		if le.SinceDeploy > 0 {
			s := le.SinceDeploy.Seconds()
			ev.SinceDeploySeconds = &s
		}
		if le.BaselineWindow > 0 {
			s := le.BaselineWindow.Seconds()
			ev.BaselineWindowSeconds = &s
		}
	}
	return ev
}

func latencyEvidence(le *trigger.LatencyEvidence) *LatencyEvidence {
	out := &LatencyEvidence{
		Decision: le.Decision.String(), E: finite(&le.E), P: finite(&le.P), EHealthy: finite(&le.EHealthy),
		Alpha: le.Alpha, MinEffect: le.MinEffect, Quantile: le.Quantile,
		Judged: le.Judged, Dropped: le.Dropped, PreDeployRequests: le.PreDeployRequests, LiveRequests: le.LiveRequests,
		PreDeployQuery: le.PreDeployQuery, ValueQuery: le.ValueQuery, Native: le.Native,
	}
	if le.Alpha > 0 {
		out.Threshold = 1 / le.Alpha
	}
	if !le.DecidedAt.IsZero() {
		at := le.DecidedAt
		out.DecidedAt = &at
	}
	for _, g := range le.Guards {
		out.Guards = append(out.Guards, LatencyGuard{
			Quantile: g.Quantile, Bound: g.Bound, NewSlower: g.New.Errors, NewRequests: g.New.Requests,
			BaselineSlower: g.Baseline.Errors, BaselineRequests: g.Baseline.Requests, Decision: g.Decision.String(),
		})
	}
	return out
}

func finite(f *float64) *float64 {
	if f == nil || math.IsNaN(*f) || math.IsInf(*f, 0) {
		return nil
	}
	v := *f
	return &v
}
