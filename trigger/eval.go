package trigger

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/rollback-guardian/guardian/query"
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
// A sequential trigger is judged by its test instead (see Sequential).
// Otherwise one evaluation, in order (the first that applies decides the
// outcome):
//  1. The value query (Query rendered for d.Version) fails or returns more
//     than one series: QueryError.
//  2. The volume query fails or returns several series: QueryError; its
//     value is below MinRequests, or it has no data: NotEnoughEvidence.
//  3. The value query returned no sample: NoData; a NaN: NaN.
//  4. The conditions are judged and ANDed: Violated when every judged one is
//     breached, OK otherwise. above_baseline needs the baseline value: Query
//     rendered for d.Baseline at ts ("live"), else its value at d.At
//     ("pre_deploy", queried once per deploy). A failure of those queries is
//     a QueryError; without any baseline value the condition is skipped, and
//     when it was the only condition the outcome is NotEnoughEvidence.
//  5. A Violated outcome whose queries answered with warnings (the source
//     says its answer may be partial) is NotEnoughEvidence, Incomplete.
func (t *Trigger) Eval(ctx context.Context, ts time.Time, d Deploy, q QueryFunc) Verdict {
	t.mu.Lock()
	if !t.bound || !t.deploy.Equal(d) {
		t.resetLocked()
		if t.snap != nil && !t.snap.deploy.Equal(d) {
			t.snap = nil
		}
		if t.seqSnap != nil && !t.seqSnap.deploy.Equal(d) {
			t.seqSnap = nil
		}
		t.deploy, t.bound = d, true
	}
	r := t.renderLocked(d)
	t.mu.Unlock()

	v := Verdict{Trigger: t.def.Name, At: ts, Deploy: d}
	v.Evidence.MinRequests = t.def.MinRequests
	v.Outcome, v.Err = t.judge(ctx, ts, d, q, r, &v.Evidence)
	if v.Outcome == Violated && len(v.Evidence.Warnings) > 0 && v.Evidence.Sequential == nil {
		// A partial answer (series missing from it) can make any ratio look
		// breached: never act on one.
		v.Outcome, v.Evidence.Incomplete = NotEnoughEvidence, true
	}
	v.Breach = t.def.breach(v.Outcome)

	t.mu.Lock()
	defer t.mu.Unlock()
	v.Previous = t.state
	t.transition(v.Outcome, v.Breach, ts)
	v.State = t.state
	v.Changed = v.State != v.Previous
	v.Evidence.ActiveSince = t.activeAt
	last := v
	t.last = &last
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
	if t.def.Sequential != nil {
		var ev Evidence
		c, err := t.seqSnapshotFor(ctx, d, q, &ev)
		if err != nil || c.Requests <= 0 {
			return 0, false, err
		}
		return c.Errors / c.Requests, true, nil
	}
	if t.def.AboveBaseline == nil || d.Baseline == "" {
		return 0, false, nil
	}
	qs, err := t.def.Query.Render(baselineVars(d, t.def.Window))
	if err != nil {
		return 0, false, fmt.Errorf("trigger %q: rendering the baseline query for %s: %w", t.def.Name, d.Baseline, err)
	}
	var ev Evidence
	v, err := t.snapshotFor(ctx, d, q, qs, &ev)
	if err != nil || v == nil {
		return 0, false, err
	}
	return *v, true, nil
}

func newVars(d Deploy, window time.Duration) query.Vars {
	return query.Vars{Service: d.Service, Version: d.Version, Baseline: d.Baseline, Window: window}
}

func baselineVars(d Deploy, window time.Duration) query.Vars {
	return query.Vars{Service: d.Service, Version: d.Baseline, Baseline: d.Baseline, Window: window}
}

// renderLocked returns the queries for d, rendering them once per deploy.
func (t *Trigger) renderLocked(d Deploy) *rendered {
	if t.rendered != nil && t.rendered.deploy.Equal(d) {
		return t.rendered
	}
	r := &rendered{deploy: d}
	var err error
	what := "value"
	r.value, err = t.def.Query.Render(newVars(d, t.def.Window))
	if err == nil && t.def.VolumeQuery != nil {
		what = "volume"
		r.volume, err = t.def.VolumeQuery.Render(newVars(d, t.def.Window))
	}
	if err == nil && t.def.AboveBaseline != nil && d.Baseline != "" {
		what = "baseline"
		r.baseline, err = t.def.Query.Render(baselineVars(d, t.def.Window))
	}
	if err != nil {
		r.err = fmt.Errorf("trigger %q: rendering the %s query for %s: %w", t.def.Name, what, d.Version, err)
	}
	t.rendered = r
	return r
}

// judge runs the queries and decides the outcome, filling ev.
func (t *Trigger) judge(ctx context.Context, ts time.Time, d Deploy, q QueryFunc, r *rendered, ev *Evidence) (Outcome, error) {
	if t.def.Sequential != nil {
		return t.judgeSequential(ctx, ts, d, q, ev)
	}
	if r.err != nil {
		return QueryError, r.err
	}
	ev.Query = r.value
	val, ok, err := t.sample(ctx, q, "value", r.value, ts, ev)
	if err != nil {
		return QueryError, err
	}
	if ok {
		ev.Value = &val
	}
	if t.def.VolumeQuery != nil {
		ev.VolumeQuery = r.volume
		n, nok, err := t.sample(ctx, q, "volume", r.volume, ts, ev)
		if err != nil {
			return QueryError, err
		}
		if nok && !math.IsNaN(n) {
			ev.SampleSize = &n
		}
		if t.def.MinRequests > 0 && (ev.SampleSize == nil || n < t.def.MinRequests) {
			return NotEnoughEvidence, nil
		}
	}
	switch {
	case !ok:
		return NoData, nil
	case math.IsNaN(val):
		return NaN, nil
	}

	checks := make([]Check, 0, 3)
	if t.def.Above != nil {
		a := *t.def.Above
		checks = append(checks, Check{Name: "above", Threshold: a, Text: "> " + fmtLimit(a), Breached: val > a})
	}
	if t.def.Below != nil {
		b := *t.def.Below
		checks = append(checks, Check{Name: "below", Threshold: b, Text: "< " + fmtLimit(b), Breached: val < b})
	}
	if t.def.AboveBaseline != nil {
		c, err := t.baselineCheck(ctx, ts, d, q, r, val, ev)
		if err != nil {
			return QueryError, err
		}
		checks = append(checks, c)
	}
	ev.Conditions = checks

	judged, breached := 0, 0
	for _, c := range checks {
		if c.Skipped {
			continue
		}
		judged++
		if c.Breached {
			breached++
		}
	}
	switch {
	case judged == 0:
		return NotEnoughEvidence, nil
	case breached == judged:
		return Violated, nil
	}
	return OK, nil
}

// baselineCheck finds the baseline value (live, else the pre-deploy
// snapshot) and judges the above_baseline condition against it.
func (t *Trigger) baselineCheck(ctx context.Context, ts time.Time, d Deploy, q QueryFunc, r *rendered, val float64, ev *Evidence) (Check, error) {
	c := Check{Name: "above_baseline"}
	mode := BaselineUnavailable
	var base *float64
	if d.Baseline != "" {
		ev.BaselineQuery = r.baseline
		b, ok, err := t.sample(ctx, q, "baseline", r.baseline, ts, ev)
		if err != nil {
			return c, err
		}
		if ok && !math.IsNaN(b) {
			base, mode = &b, BaselineLive
		} else {
			s, err := t.snapshotFor(ctx, d, q, r.baseline, ev)
			if err != nil {
				return c, err
			}
			if s != nil {
				b := *s
				base, mode = &b, BaselinePreDeploy
			}
		}
	}
	ev.BaselineMode, ev.BaselineValue = mode, base
	lim := t.def.AboveBaseline
	c.Text = baselineText(lim.Ratio, lim.Delta, d.Baseline, base, mode)
	if base == nil {
		c.Skipped = true
		return c, nil
	}
	if lim.Ratio > 0 {
		c.Threshold = *base * lim.Ratio
	} else {
		c.Threshold = *base + lim.Delta
	}
	c.Breached = val > c.Threshold
	return c, nil
}

// snapshotFor returns the baseline's value at d.At (nil when it had no
// data), querying it only when no snapshot was taken for d yet.
func (t *Trigger) snapshotFor(ctx context.Context, d Deploy, q QueryFunc, qs string, ev *Evidence) (*float64, error) {
	t.mu.Lock()
	s := t.snap
	t.mu.Unlock()
	if s != nil && s.deploy.Equal(d) {
		return s.value, nil
	}
	if d.At.IsZero() {
		return nil, nil
	}
	b, ok, err := t.sample(ctx, q, "baseline snapshot", qs, d.At, ev)
	if err != nil {
		return nil, err
	}
	var v *float64
	if ok && !math.IsNaN(b) {
		v = &b
	}
	t.mu.Lock()
	t.snap = &snapshot{deploy: d, value: v}
	t.mu.Unlock()
	return v, nil
}

// sample runs one instant query and returns its single sample; ok is false
// for an empty vector. More than one series is an error wrapping
// ErrSeriesCount (see source.Result.Single). The engine's warnings go to ev.
func (t *Trigger) sample(ctx context.Context, q QueryFunc, what, qs string, ts time.Time, ev *Evidence) (float64, bool, error) {
	res, err := q(ctx, qs, ts)
	ev.Warnings = append(ev.Warnings, res.Warnings...)
	if err != nil {
		return 0, false, fmt.Errorf("trigger %q: %s query at %s: %w", t.def.Name, what, ts.UTC().Format(time.RFC3339), err)
	}
	v, ok, err := res.Single()
	if err != nil {
		return 0, false, fmt.Errorf("trigger %q: %s %w", t.def.Name, what, err)
	}
	return v, ok, nil
}
