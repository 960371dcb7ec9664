package trigger

import (
	"context"
	"time"

	"github.com/rollback-guardian/guardian/source"
)

// ErrSeriesCount is wrapped by the error of a query that returned more than
// one series: trigger queries must aggregate to a single value. It is
// source.ErrSeriesCount.
var ErrSeriesCount = source.ErrSeriesCount

// Eval evaluates the trigger once at ts for deploy d, running queries through
// q, and moves the state machine (see the package documentation for the
// transition table). Seeing a deploy other than the previous call's resets
// the trigger first, keeping a baseline snapshot already taken for d.
//
// The definition's method decides the outcome: its threshold conditions
// (see thresholds for the order in which they are judged) or its
// sequential test (see Sequential).
func (t *Trigger) Eval(ctx context.Context, ts time.Time, d Deploy, q QueryFunc) Verdict {
	t.mu.Lock()
	if !t.bound || !t.deploy.Equal(d) {
		t.resetLocked()
		t.m.begin(d)
		t.deploy, t.bound = d, true
	}
	t.mu.Unlock()

	ec := newEvalContext(t.def.Name, d, ts, q)
	v := Verdict{Trigger: t.def.Name, At: ts, Deploy: d}
	v.Outcome, v.Err = t.m.judge(ctx, ec, &v.Evidence)
	v.Breach = t.def.breach(v.Outcome)

	t.mu.Lock()
	defer t.mu.Unlock()
	v.Previous = t.state
	t.transition(v.Outcome, v.Breach, ts)
	v.State = t.state
	v.Changed = v.State != v.Previous
	v.Evidence.ActiveSince = t.activeAt
	if t.last == nil {
		t.last = new(Verdict)
	}
	*t.last = v
	return v
}

// Snapshot takes the baseline's value at the deploy time d.At (the window
// before the deploy) and keeps it for d, unless it was already taken. Call it
// when the deploy is first seen: the embedded source keeps only a short
// history, so later the data may be gone. ok is false when the trigger has
// no above_baseline condition, the baseline is unknown, or it had no data at
// d.At. A failed query is returned and not remembered.
//
// For a sequential trigger it takes the baseline's errors and requests over
// the baseline window before d.At; value is their ratio.
func (t *Trigger) Snapshot(ctx context.Context, d Deploy, q QueryFunc) (value float64, ok bool, err error) {
	return t.m.snapshot(ctx, newEvalContext(t.def.Name, d, d.At, q))
}
