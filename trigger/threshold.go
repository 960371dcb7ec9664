package trigger

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/rollback-guardian/guardian/query"
)

// thresholds is the method of a trigger without a sequential test: its
// value query against the conditions above, below and above_baseline.
// One evaluation, in order (the first that applies decides the outcome):
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
type thresholds struct {
	def *Definition // the Trigger's

	mu       sync.Mutex
	rendered *rendered // the queries of the deploy judged
	snap     *snapshot // the baseline's value at the deploy time
}

var _ method = (*thresholds)(nil)

// rendered holds the queries rendered for one deploy.
type rendered struct {
	deploy                  Deploy
	value, volume, baseline string
	err                     error
}

// snapshot is the baseline's value at the deploy time, taken once per deploy.
type snapshot struct {
	deploy Deploy
	value  *float64 // nil: no data at the deploy time
}

func newVars(d Deploy, window time.Duration) query.Vars {
	return query.Vars{Service: d.Service, Version: d.Version, Baseline: d.Baseline, Window: window}
}

func baselineVars(d Deploy, window time.Duration) query.Vars {
	return query.Vars{Service: d.Service, Version: d.Baseline, Baseline: d.Baseline, Window: window}
}

func (m *thresholds) begin(d Deploy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rendered = nil
	if m.snap != nil && !m.snap.deploy.Equal(d) {
		m.snap = nil
	}
}

func (m *thresholds) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rendered, m.snap = nil, nil
}

func (m *thresholds) copyFrom(old method) {
	o, ok := old.(*thresholds)
	if !ok {
		return
	}
	o.mu.Lock()
	snap := o.snap
	o.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snap, m.rendered = snap, nil // rendered again by the next judge
}

// queries returns the queries for d, rendering them once per deploy.
func (m *thresholds) queries(d Deploy) *rendered {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rendered != nil && m.rendered.deploy.Equal(d) {
		return m.rendered
	}
	r := &rendered{deploy: d}
	var err error
	what := "value"
	r.value, err = m.def.Query.Render(newVars(d, m.def.Window))
	if err == nil && m.def.VolumeQuery != nil {
		what = "volume"
		r.volume, err = m.def.VolumeQuery.Render(newVars(d, m.def.Window))
	}
	if err == nil && m.def.AboveBaseline != nil && d.Baseline != "" {
		what = "baseline"
		r.baseline, err = m.def.Query.Render(baselineVars(d, m.def.Window))
	}
	if err != nil {
		r.err = fmt.Errorf("trigger %q: rendering the %s query for %s: %w", m.def.Name, what, d.Version, err)
	}
	m.rendered = r
	return r
}

func (m *thresholds) judge(ctx context.Context, ec *evalContext, ev *Evidence) (Outcome, error) {
	ev.MinRequests = m.def.MinRequests
	o, err := m.conditions(ctx, ec, ev)
	if o == Violated && len(ev.Warnings) > 0 {
		// A partial answer (series missing from it) can make any ratio look
		// breached: never act on one.
		o, ev.Incomplete = NotEnoughEvidence, true
	}
	return o, err
}

// conditions runs the queries and judges the conditions (steps 1 to 4).
func (m *thresholds) conditions(ctx context.Context, ec *evalContext, ev *Evidence) (Outcome, error) {
	r := m.queries(ec.deploy)
	if r.err != nil {
		return QueryError, r.err
	}
	ev.Query = r.value
	val, ok, err := ec.sample(ctx, "value", r.value, ev)
	if err != nil {
		return QueryError, err
	}
	if ok {
		ev.Value = &val
	}
	if m.def.VolumeQuery != nil {
		ev.VolumeQuery = r.volume
		n, nok, err := ec.sample(ctx, "volume", r.volume, ev)
		if err != nil {
			return QueryError, err
		}
		if nok && !math.IsNaN(n) {
			ev.SampleSize = &n
		}
		if m.def.MinRequests > 0 && (ev.SampleSize == nil || n < m.def.MinRequests) {
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
	if m.def.Above != nil {
		a := *m.def.Above
		checks = append(checks, Check{Name: "above", Threshold: a, Text: "> " + fmtLimit(a), Breached: val > a})
	}
	if m.def.Below != nil {
		b := *m.def.Below
		checks = append(checks, Check{Name: "below", Threshold: b, Text: "< " + fmtLimit(b), Breached: val < b})
	}
	if m.def.AboveBaseline != nil {
		c, err := m.baselineCheck(ctx, ec, r, val, ev)
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
func (m *thresholds) baselineCheck(ctx context.Context, ec *evalContext, r *rendered, val float64, ev *Evidence) (Check, error) {
	d := ec.deploy
	c := Check{Name: "above_baseline"}
	mode := BaselineUnavailable
	var base *float64
	if d.Baseline != "" {
		ev.BaselineQuery = r.baseline
		b, ok, err := ec.sample(ctx, "baseline", r.baseline, ev)
		if err != nil {
			return c, err
		}
		if ok && !math.IsNaN(b) {
			base, mode = &b, BaselineLive
		} else {
			s, err := m.snapshotFor(ctx, ec.atDeploy(), r.baseline, ev)
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
	lim := m.def.AboveBaseline
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

// snapshot takes the baseline's value at the deploy time, when the trigger
// has an above_baseline condition and the baseline is known.
func (m *thresholds) snapshot(ctx context.Context, ec *evalContext) (float64, bool, error) {
	d := ec.deploy
	if m.def.AboveBaseline == nil || d.Baseline == "" {
		return 0, false, nil
	}
	qs, err := m.def.Query.Render(baselineVars(d, m.def.Window))
	if err != nil {
		return 0, false, fmt.Errorf("trigger %q: rendering the baseline query for %s: %w", m.def.Name, d.Baseline, err)
	}
	var ev Evidence
	v, err := m.snapshotFor(ctx, ec, qs, &ev)
	if err != nil || v == nil {
		return 0, false, err
	}
	return *v, true, nil
}

// snapshotFor returns the baseline's value at the deploy time (nil when it
// had no data), running qs at ec.at (the deploy time) only when no snapshot
// was taken for the deploy yet.
func (m *thresholds) snapshotFor(ctx context.Context, ec *evalContext, qs string, ev *Evidence) (*float64, error) {
	d := ec.deploy
	m.mu.Lock()
	s := m.snap
	m.mu.Unlock()
	if s != nil && s.deploy.Equal(d) {
		return s.value, nil
	}
	if d.At.IsZero() {
		return nil, nil
	}
	b, ok, err := ec.sample(ctx, "baseline snapshot", qs, ev)
	if err != nil {
		return nil, err
	}
	var v *float64
	if ok && !math.IsNaN(b) {
		v = &b
	}
	m.mu.Lock()
	m.snap = &snapshot{deploy: d, value: v}
	m.mu.Unlock()
	return v, nil
}
