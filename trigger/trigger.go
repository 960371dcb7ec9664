// Package trigger judges a freshly deployed version against its conditions
// and its baseline: each Trigger is a pure inactive → pending → firing state
// machine, modelled on Prometheus's AlertingRule.Eval. Time and the query
// function are parameters; nothing here starts goroutines, sleeps or reads
// the clock, so tests feed synthetic series.
//
// One evaluation yields an Outcome and moves the state as follows (a policy
// of "fire" turns NoData and NaN, or QueryError, into a violation; the
// default "ignore" gives the rows below):
//
//	outcome            inactive        pending                 firing
//	-----------------  --------------  ----------------------  ---------------
//	Violated           pending (*)     firing once ts-ActiveAt firing
//	                                   >= For, else pending
//	OK                 inactive        inactive                inactive (resolved)
//	NotEnoughEvidence  inactive        inactive                firing (held)
//	NoData, NaN        inactive        inactive                firing (held)
//	QueryError         inactive        pending (held)          firing (held)
//
//	(*) firing at once when For is 0; ActiveAt is the time of this evaluation.
//
// The reasoning, following Prometheus where it applies:
//   - A failed query (QueryError) says nothing about the deploy, so it keeps
//     the state exactly as it is, ActiveAt included, as Prometheus keeps its
//     active alerts when a rule evaluation fails: a Prometheus blip neither
//     fires a trigger nor throws away the evidence gathered so far.
//   - An empty result, a NaN, too little traffic or a missing baseline is no
//     evidence of a problem, so a pending trigger drops back to inactive, as
//     Prometheus forgets a pending alert whose series disappeared. These
//     outcomes never move a trigger towards firing.
//   - Only a real measurement within the limits (OK) resolves a firing
//     trigger. A firing trigger has opened an incident; a new version that
//     stops reporting, or whose traffic falls under min_requests, has not
//     shown that it recovered (a crashing version typically does both).
//     Prometheus resolves on an empty result; Guardian deliberately does not.
//
// How a deploy is judged is kept apart from the state machine, behind one
// small seam, the unexported method interface (method.go): Eval builds an
// evalContext once (the deploy, the evaluation time, the query function),
// hands it to the definition's method, which runs its queries, fills the
// Evidence and returns an Outcome, and then moves the state machine. There
// are three methods. The threshold conditions (threshold.go) judge a value
// query against above, below and above_baseline. A trigger with a
// Sequential test is judged instead by an anytime-valid sequential test on
// counts (sequential.go, statistics in package sequential), and one with a
// Latency test by an anytime-valid test of latency histograms
// (latencytest.go, statistics in package latency): regressed is Violated,
// healthy is OK and inconclusive is NotEnoughEvidence, so the table above
// applies unchanged; see Sequential and Latency.
//
// To add a method: give Definition its settings (with their validation and
// Equal), implement method in a file of its own — judge, snapshot for what
// it needs from before the deploy (or nothing), and begin, reset and
// copyFrom for the state it keeps per deploy under its own mutex — add its
// evidence struct as a field of Evidence beside Sequential, and pick it in
// Definition.newMethod. Its outcomes must keep the table's meaning: OK only
// for a real measurement within the limits, NotEnoughEvidence while it
// cannot tell.
package trigger

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rollback-guardian/guardian/source"
)

// QueryFunc runs an instant PromQL query evaluated at ts. source.Querier's
// Query method has this signature.
type QueryFunc func(ctx context.Context, q string, ts time.Time) (source.Result, error)

// Deploy is the deploy being judged: the new version of a service and the
// version it replaced.
type Deploy struct {
	Service string
	// Version is the freshly deployed version.
	Version string
	// Baseline is the previous version; empty when unknown.
	Baseline string
	// At is when the deploy happened; the pre-deploy baseline snapshot is
	// taken at this time.
	At time.Time
	// Lead is how long before At the new version may already have served.
	// A deploy seen by the version query is seen only once the version has
	// samples (two of them, for a rate), so At is later than its first
	// requests; a sequential test counts the new version's requests from
	// At-Lead (see Sequential). 0: from At. It is not part of the deploy's
	// identity (Equal).
	Lead time.Duration
}

// Equal reports whether d and o are the same deploy (Lead aside).
func (d Deploy) Equal(o Deploy) bool {
	return d.Service == o.Service && d.Version == o.Version && d.Baseline == o.Baseline && d.At.Equal(o.At)
}

// State is a trigger's alerting state.
type State int

// Trigger states.
const (
	Inactive State = iota
	Pending
	Firing
)

var stateNames = [...]string{Inactive: "inactive", Pending: "pending", Firing: "firing"}

// String returns "inactive", "pending" or "firing".
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return "unknown"
	}
	return stateNames[s]
}

// MarshalText encodes the state as its name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Outcome is the result of one evaluation.
type Outcome int

// Evaluation outcomes.
const (
	// OK: every condition could be judged and at least one is not breached.
	OK Outcome = iota
	// Violated: every judged condition is breached.
	Violated
	// NotEnoughEvidence: traffic below min_requests (or no volume data), or
	// only a baseline condition is configured and the baseline is unavailable.
	NotEnoughEvidence
	// NoData: the value query returned an empty vector.
	NoData
	// NaN: the value query returned NaN (for example 0/0 with no traffic).
	// ±Inf is a value and is judged like any other.
	NaN
	// QueryError: a query failed, could not be rendered, or returned more
	// than one series.
	QueryError
)

var outcomeNames = [...]string{
	OK: "ok", Violated: "violated", NotEnoughEvidence: "not_enough_evidence",
	NoData: "no_data", NaN: "nan", QueryError: "query_error",
}

// String returns the outcome's snake_case name, e.g. "not_enough_evidence".
func (o Outcome) String() string {
	if o < 0 || int(o) >= len(outcomeNames) {
		return "unknown"
	}
	return outcomeNames[o]
}

// MarshalText encodes the outcome as its name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// BaselineMode says where the baseline value came from.
type BaselineMode int

// Baseline modes.
const (
	// BaselineNone: the baseline was not consulted, because the trigger has no
	// above_baseline condition or the evaluation ended before judging it.
	BaselineNone BaselineMode = iota
	// BaselineLive: the baseline version is still serving (canary,
	// blue-green) and was queried at the evaluation time.
	BaselineLive
	// BaselinePreDeploy: the baseline no longer serves (rolling update); its
	// value at the deploy time, taken once per deploy, is used.
	BaselinePreDeploy
	// BaselineUnavailable: the baseline is unknown or has no data, live or
	// at the deploy time.
	BaselineUnavailable
)

var baselineModeNames = [...]string{
	BaselineNone: "none", BaselineLive: "live", BaselinePreDeploy: "pre_deploy", BaselineUnavailable: "unavailable",
}

// String returns "none", "live", "pre_deploy" or "unavailable".
func (m BaselineMode) String() string {
	if m < 0 || int(m) >= len(baselineModeNames) {
		return "unknown"
	}
	return baselineModeNames[m]
}

// MarshalText encodes the mode as its name.
func (m BaselineMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// Check is one condition as judged in one evaluation.
type Check struct {
	// Name is "above", "below" or "above_baseline".
	Name string
	// Threshold is the effective limit, e.g. baseline*2 for "2x baseline".
	Threshold float64
	// Text describes the condition for humans, e.g. "> 0.05" or
	// "> 2x baseline v1 (0.005, live)".
	Text string
	// Breached reports whether the value breaches the condition.
	Breached bool
	// Skipped reports that the condition could not be judged (baseline
	// unavailable) and was left out of the verdict.
	Skipped bool
}

// Evidence is what a verdict is based on: resolved queries, values,
// thresholds and sample size.
type Evidence struct {
	// Query is the value query as sent.
	Query string
	// Value is the judged value; nil when the query failed or returned no
	// data. It may be NaN (outcome NaN) or ±Inf.
	Value *float64
	// BaselineQuery is the baseline query as sent (empty when not consulted).
	BaselineQuery string
	// BaselineValue is the baseline's value; nil when unavailable or not consulted.
	BaselineValue *float64
	// BaselineMode says where BaselineValue came from.
	BaselineMode BaselineMode
	// Conditions are the configured conditions, judged; empty when the
	// evaluation ended before judging (no data, NaN, query error, too little
	// traffic).
	Conditions []Check
	// VolumeQuery is the volume query as sent (empty when none is configured).
	VolumeQuery string
	// SampleSize is the volume query's value; nil without a volume query or
	// when it returned no data.
	SampleSize *float64
	// MinRequests is the configured minimum sample size.
	MinRequests float64
	// ActiveSince is when the trigger became pending; zero when inactive.
	ActiveSince time.Time
	// Detail describes what a verdict that is not drawn from a query saw
	// (the built-in progress-deadline trigger's stalled rollout); Summary
	// shows it instead of the value and conditions.
	Detail string
	// Sequential is the evidence of a sequential trigger's test; nil for
	// other triggers. Query, VolumeQuery and BaselineQuery are then the
	// errors, requests and baseline errors queries as sent, Value the new
	// version's error ratio since the deploy, SampleSize its requests and
	// BaselineValue the baseline's error ratio.
	Sequential *SequentialEvidence
	// Latency is the evidence of a latency trigger's test; nil for other
	// triggers. Query and BaselineQuery are then the new version's and the
	// live baseline's buckets queries as sent, Value the new version's
	// quantile (the highest of Latency.Quantiles, in the histogram's unit)
	// since the deploy, BaselineValue the baseline's, and SampleSize the
	// new version's requests judged.
	Latency *LatencyEvidence
	// Warnings are the query engine's warnings, from every query.
	Warnings []string
	// Incomplete is set when the conditions were breached but a query
	// answered with warnings (a Thanos or Mimir store that did not answer, a
	// partial response): the breach is not trusted and the outcome is
	// NotEnoughEvidence.
	Incomplete bool
}

// Verdict is the result of one evaluation and the state it led to.
type Verdict struct {
	// Trigger is the trigger's name.
	Trigger string
	// At is the evaluation time.
	At time.Time
	// Deploy is the deploy judged.
	Deploy Deploy
	// Outcome is what this evaluation found.
	Outcome Outcome
	// Breach reports whether the outcome counted as a violation: Violated,
	// or NoData/NaN/QueryError under a "fire" policy.
	Breach bool
	// State is the state after this evaluation; Previous the state before.
	State, Previous State
	// Changed reports State != Previous.
	Changed bool
	// Evidence is what the outcome is based on.
	Evidence Evidence
	// Err is the query failure when Outcome is QueryError; it names the
	// trigger and wraps the query function's error or ErrSeriesCount.
	Err error
}

// Resolved reports whether this evaluation took the trigger from firing back
// to inactive.
func (v Verdict) Resolved() bool { return v.Previous == Firing && v.State == Inactive }

// Trigger is the state machine of one Definition. Eval must not be called
// concurrently with itself, Reset or CopyStateFrom on the same Trigger (one
// evaluation loop owns it); State, Last and Snapshot are safe to call from
// other goroutines at any time.
type Trigger struct {
	def Definition
	m   method // how def judges; keeps its own per-deploy state

	mu       sync.Mutex
	state    State
	activeAt time.Time
	deploy   Deploy
	bound    bool // deploy is set
	// last is the latest verdict, overwritten in place by each Eval: read
	// it only under mu, and copy it.
	last *Verdict
}

// New returns an inactive trigger for def, or an error wrapping
// ErrInvalidDefinition when def fails Validate.
func New(def Definition) (*Trigger, error) {
	if err := def.Validate(); err != nil {
		return nil, err
	}
	t := &Trigger{def: def}
	if def.Sequential != nil && def.Query == nil {
		var err error
		if t.def.Query, err = def.Sequential.derivedQuery(def.Name); err != nil {
			return nil, fmt.Errorf("trigger %q: deriving the query: %w: %w", def.Name, err, ErrInvalidDefinition)
		}
	}
	if def.Latency != nil && def.Query == nil {
		var err error
		if t.def.Query, err = def.Latency.derivedQuery(def.Name); err != nil {
			return nil, fmt.Errorf("trigger %q: deriving the query: %w: %w", def.Name, err, ErrInvalidDefinition)
		}
	}
	var err error
	if t.m, err = t.def.newMethod(); err != nil {
		return nil, err
	}
	return t, nil
}

// Definition returns the trigger's definition.
func (t *Trigger) Definition() Definition { return t.def }

// Name returns the definition's name.
func (t *Trigger) Name() string { return t.def.Name }

// Severity returns the severity the definition asks for when it fires.
func (t *Trigger) Severity() string { return t.def.Severity }

// State returns the current state.
func (t *Trigger) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

// Last returns the latest verdict, if any since New or Reset.
func (t *Trigger) Last() (Verdict, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == nil {
		return Verdict{}, false
	}
	return *t.last, true
}

// Reset returns the trigger to inactive and forgets the deploy, its baseline
// snapshot and the last verdict. Call it when a new deploy starts, before
// Snapshot. (Eval also resets by itself when it sees a different deploy, but
// keeps a snapshot already taken for that deploy.)
func (t *Trigger) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resetLocked()
	t.m.reset()
}

func (t *Trigger) resetLocked() {
	t.state = Inactive
	t.activeAt = time.Time{}
	t.deploy = Deploy{}
	t.bound = false
	t.last = nil
}

// CopyStateFrom carries old's state over a config reload: the state,
// ActiveAt, deploy, baseline snapshots, the sequential test's progress and
// last verdict, so that a pending trigger fires at the same time it would
// have without the reload. It copies only when old is a *Trigger whose
// definition is Equal and reports whether it did; otherwise t keeps its
// fresh, inactive state.
func (t *Trigger) CopyStateFrom(e Evaluator) bool {
	old, ok := e.(*Trigger)
	if !ok || old == nil || old == t || !t.def.Equal(old.def) {
		return false
	}
	old.mu.Lock()
	state, activeAt, deploy, bound := old.state, old.activeAt, old.deploy, old.bound
	var last *Verdict
	if old.last != nil {
		// Copied under old.mu: Eval overwrites old.last in place.
		l := *old.last
		l.Trigger = t.def.Name
		last = &l
	}
	old.mu.Unlock()

	t.m.copyFrom(old.m)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.state, t.activeAt, t.deploy, t.bound = state, activeAt, deploy, bound
	if last != nil {
		t.last = last
	}
	return true
}

// transition applies one outcome to the state at time ts. breach is whether
// the outcome counts as a violation (after policies).
func (t *Trigger) transition(o Outcome, breach bool, ts time.Time) {
	switch {
	case breach:
		switch t.state {
		case Inactive:
			t.activeAt = ts
			t.state = Pending
			if t.def.For <= 0 {
				t.state = Firing
			}
		case Pending:
			if ts.Sub(t.activeAt) >= t.def.For {
				t.state = Firing
			}
		}
	case o == OK:
		t.state, t.activeAt = Inactive, time.Time{}
	case o == QueryError:
		// Held: neither advances nor resets.
	default: // NotEnoughEvidence, NoData, NaN
		if t.state == Pending {
			t.state, t.activeAt = Inactive, time.Time{}
		}
	}
}

// breach reports whether outcome o counts as a violation under def's policies.
func (d Definition) breach(o Outcome) bool {
	switch o {
	case Violated:
		return true
	case NoData, NaN:
		return d.OnNoData == PolicyFire
	case QueryError:
		return d.OnQueryError == PolicyFire
	}
	return false
}
