package report

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/report/chart"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

// How much an incident's charts show around it: ChartLead before the
// deploy, ChartTail after its end (its resolution or closing, else now);
// for an incident shorter than four times that, a quarter of its length,
// at least minChartMargin, so that the incident fills most of the chart.
const (
	ChartLead      = 2 * time.Minute
	ChartTail      = 2 * time.Minute
	minChartMargin = 30 * time.Second
)

// Chart resolution: the step is the incident's span divided by
// chartPoints, rounded up to a second, so a chart has at most about
// chartPoints+1 points and at least one per second.
const chartPoints = 200

// IncidentChart is one trigger's values over an incident: the bad version's
// and the baseline's, its threshold and the incident's markers. Note says
// what is missing from it (a failed query, samples the source no longer
// keeps), as a caption for people; it is empty when nothing is.
type IncidentChart struct {
	chart.Chart
	// Trigger names the trigger charted.
	Trigger string `json:"trigger"`
	// Firing reports whether it is the trigger that fired.
	Firing bool `json:"firing,omitempty"`
	// Queries are the queries charted, as sent (without the time).
	Queries []string `json:"queries"`
	// Step is the time between two points.
	Step time.Duration `json:"step"`
	Note string        `json:"note,omitempty"`
}

// Charts evaluates the triggers of rec's service over the incident, from
// ChartLead before the deploy to ChartTail after the incident's end (now,
// at the latest; less around a short incident), through q: one chart per trigger, the firing trigger's
// first. defs are the service's triggers as configured; the firing trigger
// is charted from the evidence's queries when defs do not define it. Each
// query is evaluated as an instant query at each step, so any source
// answers it; a point whose query fails or finds no sample is a gap in the
// line, and the chart's Note says so. Charts never fails: a chart whose
// queries all failed is still returned, empty, with its note.
func Charts(ctx context.Context, q source.Querier, rec incident.Record, now time.Time, defs ...trigger.Definition) []IncidentChart {
	from, to, step, ok := chartSpan(rec, now)
	if !ok || q == nil {
		return nil
	}
	markers := Markers(rec)
	var specs []chartSpec
	firingDefined := false
	for _, d := range defs {
		s, ok := specFromDefinition(d, rec)
		if !ok {
			continue
		}
		if s.firing {
			firingDefined = true
			specs = append([]chartSpec{s}, specs...)
		} else {
			specs = append(specs, s)
		}
	}
	if !firingDefined && rec.RequestedBy == nil {
		if s, ok := specFromEvidence(rec); ok {
			specs = append([]chartSpec{s}, specs...)
		}
	}
	out := make([]IncidentChart, 0, len(specs))
	for _, s := range specs {
		out = append(out, s.evaluate(ctx, q, rec, from, to, step, markers))
	}
	return out
}

// chartSpan is the time range and step of rec's charts.
func chartSpan(rec incident.Record, now time.Time) (from, to time.Time, step time.Duration, ok bool) {
	start := rec.DeployedAt
	if start.IsZero() {
		start = rec.DetectedAt
	}
	if start.IsZero() {
		return from, to, 0, false
	}
	end := now
	switch {
	case rec.ResolvedAt != nil:
		end = *rec.ResolvedAt
	case rec.ClosedAt != nil:
		end = *rec.ClosedAt
	}
	quarter := max(end.Sub(start)/4, minChartMargin)
	from, to = start.Add(-min(ChartLead, quarter)), end.Add(min(ChartTail, quarter))
	if !now.IsZero() && to.After(now) {
		to = now
	}
	if !to.After(from) {
		return from, to, 0, false
	}
	secs := math.Ceil(to.Sub(from).Seconds() / chartPoints)
	return from, to, max(time.Duration(secs)*time.Second, time.Second), true
}

// Markers are rec's moments as chart markers: the deploy, the detection,
// the go/no-go decisions on the application step, the rollback's start
// and end, the verified recovery, the resolution or closing.
func Markers(rec incident.Record) []chart.Marker {
	var ms []chart.Marker
	add := func(t *time.Time, kind, label string) {
		if t != nil && !t.IsZero() {
			ms = append(ms, chart.Marker{At: *t, Kind: kind, Label: label})
		}
	}
	deploy := "deploy"
	if rec.Version != "" {
		deploy += " " + rec.Version
	}
	add(&rec.DeployedAt, "deploy", deploy)
	add(&rec.DetectedAt, "detected", "detected")
	approved := false
	for _, d := range rec.Decisions {
		if d.Step != stepApplication {
			continue
		}
		at := d.At
		if d.Approved {
			approved = true
			add(&at, "approved", "go ("+shortBy(d.By)+")")
		} else {
			add(&at, "held", "no-go ("+shortBy(d.By)+")")
		}
	}
	if !approved {
		add(rec.ApprovedAt, "approved", "go")
	}
	add(rec.RollbackStartedAt, "rollback", "rollback")
	add(rec.RollbackDoneAt, "rolled_back", "rolled back")
	add(rec.RecoveredAt, "recovered", "recovered")
	add(rec.ResolvedAt, "resolved", "resolved")
	if rec.ResolvedAt == nil {
		add(rec.ClosedAt, "closed", "closed")
	}
	return ms
}

// shortBy names who decided, briefly, for a marker's label: "alice" for
// "token:alice", "auto_after" for "policy:auto_after".
func shortBy(by string) string {
	if i := strings.IndexByte(by, ':'); i >= 0 && i < len(by)-1 {
		return by[i+1:]
	}
	return orUnknown(by)
}

// chartSpec is what to chart for one trigger.
type chartSpec struct {
	trigger         string
	firing          bool
	value, baseline string // the queries as sent; baseline may be empty
	threshold       *float64
	unit            chart.Unit
}

func specFromDefinition(d trigger.Definition, rec incident.Record) (chartSpec, bool) {
	if d.Query == nil {
		return chartSpec{}, false
	}
	s := chartSpec{trigger: d.Name, firing: d.Name == rec.Trigger && rec.RequestedBy == nil}
	vars := query.Vars{Service: rec.Service, Version: rec.Version, Baseline: rec.Baseline, Window: d.Window}
	var err error
	if s.value, err = d.Query.Render(vars); err != nil {
		return chartSpec{}, false
	}
	if rec.Baseline != "" {
		vars.Version = rec.Baseline
		if s.baseline, err = d.Query.Render(vars); err != nil {
			s.baseline = ""
		}
	}
	switch {
	case d.Above != nil:
		v := *d.Above
		s.threshold = &v
	case d.Below != nil:
		v := *d.Below
		s.threshold = &v
	}
	s.unit = unitOf(TriggerKind(d) == KindLatency, s.threshold)
	return s, true
}

// specFromEvidence charts the firing trigger's own queries: its value
// query, and the baseline's when the evidence has one. A sequential or
// latency test's queries count since the deploy, which a chart over time
// does not show.
func specFromEvidence(rec incident.Record) (chartSpec, bool) {
	ev := rec.Evidence
	if ev.Sequential || ev.Latency != nil || ev.Query == "" {
		return chartSpec{}, false
	}
	s := chartSpec{trigger: orUnknown(rec.Trigger), firing: true, value: ev.Query, baseline: ev.BaselineQuery}
	for _, c := range ev.Conditions {
		var v float64
		if _, err := fmt.Sscanf(c, "> %g", &v); err == nil && !strings.Contains(c, "baseline") {
			s.threshold = &v
			break
		}
		if _, err := fmt.Sscanf(c, "< %g", &v); err == nil && !strings.Contains(c, "baseline") {
			s.threshold = &v
			break
		}
	}
	s.unit = unitOf(rec.Impact.Kind == KindLatency || strings.Contains(ev.Query, "histogram_quantile"), s.threshold)
	return s, true
}

// unitOf guesses how to print a trigger's values: a duration for a latency
// trigger, a percentage for a threshold within (0, 1].
func unitOf(latency bool, threshold *float64) chart.Unit {
	switch {
	case latency:
		return chart.UnitSeconds
	case threshold != nil && *threshold > 0 && *threshold <= 1:
		return chart.UnitRatio
	}
	return chart.UnitNone
}

// evaluate queries the spec at each step.
func (s chartSpec) evaluate(ctx context.Context, q source.Querier, rec incident.Record, from, to time.Time, step time.Duration, markers []chart.Marker) IncidentChart {
	c := IncidentChart{
		Chart:   chart.Chart{Title: s.trigger, Unit: s.unit, Threshold: s.threshold, Markers: markers, From: from, To: to},
		Trigger: s.trigger, Firing: s.firing, Step: step,
	}
	var notes []string
	series := func(name, role, version, qs string, serves time.Time) {
		pts, note := sample(ctx, q, qs, from, to, step, serves)
		c.Queries = append(c.Queries, qs)
		c.Series = append(c.Series, chart.Series{Name: name, Role: role, Points: pts})
		if note != "" {
			notes = append(notes, orUnknown(version)+": "+note)
		}
	}
	// The bad version is not expected to serve before its deploy.
	series(orUnknown(rec.Version), chart.RoleVersion, rec.Version, s.value, rec.DeployedAt)
	if s.baseline != "" {
		series("baseline "+rec.Baseline, chart.RoleBaseline, "baseline "+rec.Baseline, s.baseline, time.Time{})
	} else if rec.Baseline == "" {
		notes = append(notes, "no baseline version is known")
	}
	c.Note = strings.Join(notes, "; ")
	return c
}

// sample evaluates qs at each step from from to to: a point whose query
// failed, found nothing or found NaN is NaN, a gap. note says how many
// points are missing and why; points found empty before serves, when the
// series was not expected to have data, are not counted.
func sample(ctx context.Context, q source.Querier, qs string, from, to time.Time, step time.Duration, serves time.Time) ([]chart.Point, string) {
	var pts []chart.Point
	var failed, empty int
	var firstErr error
	leading := 0 // points missing before the first value
	for t := from; !t.After(to); t = t.Add(step) {
		v := math.NaN()
		if err := ctx.Err(); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			pts = append(pts, chart.Point{T: t, V: v})
			continue
		}
		res, err := q.Query(ctx, qs, t)
		var f float64
		var ok bool
		if err == nil {
			f, ok, err = res.Single()
		}
		switch {
		case err != nil:
			failed++
			if firstErr == nil {
				firstErr = err
			}
		case !ok || math.IsNaN(f) || math.IsInf(f, 0):
			if !t.Before(serves) {
				empty++
				if empty+failed == len(pts)+1 {
					leading++
				}
			}
		default:
			v = f
		}
		pts = append(pts, chart.Point{T: t, V: v})
	}
	var parts []string
	if failed > 0 {
		msg := "unknown error"
		if firstErr != nil {
			msg = firstLine(firstErr.Error())
			if errors.Is(firstErr, context.Canceled) || errors.Is(firstErr, context.DeadlineExceeded) {
				msg = "the charts ran out of time"
			}
		}
		parts = append(parts, fmt.Sprintf("the query failed at %d of %d points (%s)", failed, len(pts), msg))
	}
	if empty > 0 {
		s := fmt.Sprintf("no data at %d of %d points", empty, len(pts))
		switch {
		case empty+failed == len(pts):
			s = "no data at all (the source keeps no samples of that time, or the version did not serve)"
		case leading == empty:
			s += ", the earliest ones (the source may no longer keep samples of that time)"
		default:
			s += " (the version did not serve then, or the source kept no samples)"
		}
		parts = append(parts, s)
	}
	return pts, strings.Join(parts, "; ")
}
