package trigger

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Evaluator is one trigger as a service's watch loop runs it, whatever its
// kind: a metric Trigger or the built-in ProgressDeadline. The loop calls
// Reset and then Snapshot when a deploy is seen, Eval at every tick of its
// watch window, and, on a config reload, CopyStateFrom on the new evaluator
// with the old one of the same name.
type Evaluator interface {
	// Name identifies the trigger within its service.
	Name() string
	// Severity is the incident severity the trigger asks for when it
	// fires; empty for the default.
	Severity() string
	// Eval judges deploy d at ts, running queries through q, and moves the
	// state machine.
	Eval(ctx context.Context, ts time.Time, d Deploy, q QueryFunc) Verdict
	// Snapshot takes, once per deploy, what the trigger needs from before
	// it (the baseline's value); ok is false when there is nothing to take.
	Snapshot(ctx context.Context, d Deploy, q QueryFunc) (value float64, ok bool, err error)
	// Last returns the latest verdict since the last Reset, if any.
	Last() (Verdict, bool)
	// Reset returns the trigger to inactive and forgets the deploy.
	Reset()
	// CopyStateFrom carries old's state over a reload when old is the same
	// kind of trigger and judges the same way; it reports whether it did.
	CopyStateFrom(old Evaluator) bool
}

var (
	_ Evaluator = (*Trigger)(nil)
	_ Evaluator = (*ProgressDeadline)(nil)
)

// Stall is a rollout its controller gave up on: it made no progress within
// its progress deadline (Kubernetes's ProgressDeadlineExceeded).
type Stall struct {
	// Version is the stalled rollout's version.
	Version string
	// Deadline is the progress deadline it exceeded.
	Deadline time.Duration
	// Description says what the controller reported; it is the verdict's
	// evidence.
	Description string
}

// StallFunc reports the stall of the service's latest rollout, if any.
type StallFunc func() (Stall, bool)

// ProgressDeadline is the built-in trigger that fires while the judged
// deploy's rollout is stalled: pods that never become ready take no
// traffic, so no metric trigger sees the bad version. It runs no query; it
// reads the stall that a StallFunc reports (a stall of another version is
// not this deploy's). Its outcomes follow the metric triggers' table with
// For 0: a stall is Violated and fires at once, a rollout that is not
// stalled is OK and resolves it.
type ProgressDeadline struct {
	name, severity string
	stalled        StallFunc

	mu     sync.Mutex
	deploy Deploy
	bound  bool
	state  State
	last   *Verdict
}

// NewProgressDeadline returns an inactive progress-deadline trigger named
// name that asks for severity and reads stalls from stalled (nil: never
// stalled).
func NewProgressDeadline(name, severity string, stalled StallFunc) *ProgressDeadline {
	return &ProgressDeadline{name: name, severity: severity, stalled: stalled}
}

// Name returns the trigger's name.
func (p *ProgressDeadline) Name() string { return p.name }

// Severity returns the severity the trigger asks for when it fires.
func (p *ProgressDeadline) Severity() string { return p.severity }

// Eval judges deploy d at ts: Violated (firing) while d's rollout is
// stalled, with the stall as evidence; OK (inactive) otherwise. Seeing a
// deploy other than the previous call's resets the trigger first.
func (p *ProgressDeadline) Eval(_ context.Context, ts time.Time, d Deploy, _ QueryFunc) Verdict {
	var (
		st      Stall
		stalled bool
	)
	if p.stalled != nil {
		st, stalled = p.stalled()
		stalled = stalled && st.Version == d.Version
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.bound || !p.deploy.Equal(d) {
		p.state, p.last = Inactive, nil
		p.deploy, p.bound = d, true
	}
	v := Verdict{Trigger: p.name, At: ts, Deploy: d, Outcome: OK, State: Inactive, Previous: p.state}
	switch {
	case stalled:
		v.Outcome, v.Breach, v.State = Violated, true, Firing
		v.Evidence = Evidence{
			Detail: st.Description,
			Conditions: []Check{{
				Name: "progress_deadline", Threshold: st.Deadline.Seconds(), Breached: true,
				Text: fmt.Sprintf("no rollout progress within %s", st.Deadline),
			}},
		}
	case v.Previous == Firing:
		v.Evidence.Detail = "the rollout is progressing again"
	default:
		v.Evidence.Detail = "the rollout is not stalled"
	}
	v.Changed = v.State != v.Previous
	p.state = v.State
	last := v
	p.last = &last
	return v
}

// Snapshot takes nothing: a stall needs no baseline.
func (p *ProgressDeadline) Snapshot(context.Context, Deploy, QueryFunc) (float64, bool, error) {
	return 0, false, nil
}

// State returns the current state: Firing or Inactive.
func (p *ProgressDeadline) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// Last returns the latest verdict, if any since creation or Reset.
func (p *ProgressDeadline) Last() (Verdict, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		return Verdict{}, false
	}
	return *p.last, true
}

// Reset returns the trigger to inactive and forgets the deploy and the
// last verdict.
func (p *ProgressDeadline) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state, p.last, p.deploy, p.bound = Inactive, nil, Deploy{}, false
}

// CopyStateFrom carries the state, deploy and last verdict of old, a
// ProgressDeadline of the same name, over a reload, so a firing trigger
// does not fire again; it reports whether it copied.
func (p *ProgressDeadline) CopyStateFrom(e Evaluator) bool {
	old, ok := e.(*ProgressDeadline)
	if !ok || old == nil || old == p || old.name != p.name {
		return false
	}
	old.mu.Lock()
	state, deploy, bound, last := old.state, old.deploy, old.bound, old.last
	old.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state, p.deploy, p.bound = state, deploy, bound
	p.last = nil
	if last != nil {
		l := *last
		p.last = &l
	}
	return true
}
