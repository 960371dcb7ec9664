package report

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/trigger"
)

// Writer writes an incident's report (Markdown, JSON and HTML) and its post-mortem
// invite into Dir. Its Report method is what the incident driver runs for
// its WriteReport effect: writing again replaces the files, so a restart
// that writes the report again leaves exactly one of each.
type Writer struct {
	Dir string
	// Postmortem schedules the invite; nil means no organizer or attendees
	// are configured, and no invite is written.
	Postmortem *PostmortemConfig
	// Impact measures what the incident cost; nil keeps the record's.
	Impact func(ctx context.Context, rec incident.Record) incident.Impact
	// Charts draws the HTML report's charts (see Charts); nil leaves the
	// report without charts.
	Charts func(ctx context.Context, rec incident.Record, now time.Time) []IncidentChart
	Now    func() time.Time
	Logger *zap.Logger
}

var _ incident.Reporter = Writer{}

// Report implements incident.Reporter.
func (w Writer) Report(ctx context.Context, rec incident.Record, postmortem bool) (incident.ReportResult, error) {
	log := w.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.Int64("incident", rec.ID), zap.String("service", rec.Service))
	now := time.Now()
	if w.Now != nil {
		now = w.Now()
	}
	if w.Impact != nil {
		rec.Impact = w.Impact(ctx, rec)
	}
	base := filepath.Join(w.Dir, fmt.Sprintf("incident-%d", rec.ID))
	res := incident.ReportResult{Impact: rec.Impact, Markdown: base + ".md", JSON: base + ".json"}
	opts := Options{Now: func() time.Time { return now }}
	if w.Charts != nil {
		opts.Charts = w.Charts(ctx, rec, now)
		if len(opts.Charts) == 0 {
			opts.ChartsNote = "No chart: the service has no trigger query to chart, or the incident has no deploy or detection time."
		}
	}
	var ics []byte
	switch {
	case !postmortem:
	case w.Postmortem == nil:
		log.Warn("post-mortem not scheduled: set global.postmortem.organizer and attendees")
	default:
		var err error
		if ics, err = w.invite(rec, &res, &opts, now); err != nil {
			log.Error("scheduling the post-mortem", zap.Error(err))
		}
	}
	// The report shows the entries that will record it.
	shown := rec
	shown.Timeline = append(append([]incident.Entry(nil), rec.Timeline...), incident.ReportEntries(rec, res, now)...)
	paths, err := Write(w.Dir, shown, opts, ics)
	if err != nil {
		return incident.ReportResult{}, err
	}
	res.Markdown, res.JSON, res.HTML, res.Invite = paths.Markdown, paths.JSON, paths.HTML, paths.Invite
	return res, nil
}

// invite schedules the post-mortem after the incident ended and returns
// the iCalendar invite, filling res and opts.
func (w Writer) invite(rec incident.Record, res *incident.ReportResult, opts *Options, now time.Time) ([]byte, error) {
	ended := rec.ResolvedAt
	if ended == nil {
		ended = rec.ClosedAt
	}
	if ended == nil {
		ended = &now
	}
	pc := *w.Postmortem
	start, err := Schedule(*ended, pc)
	if err != nil {
		return nil, err
	}
	inv, err := NewInvite(rec, start, pc)
	if err != nil {
		return nil, err
	}
	ics, err := ICS(rec, start, pc, now)
	if err != nil {
		return nil, err
	}
	opts.Postmortem = &inv
	res.Invite = filepath.Join(w.Dir, fmt.Sprintf("incident-%d-postmortem.ics", rec.ID))
	res.PostmortemAt, res.PostmortemZone = start, pc.TimeZone
	if res.PostmortemZone == "" {
		res.PostmortemZone = "UTC"
	}
	return ics, nil
}

// What a trigger judges, and so what its incident's estimate counts
// (incident.Impact's Kind).
const (
	// KindErrors: failed requests (Impact.FailedRequests).
	KindErrors = "errors"
	// KindLatency: requests slower than the trigger's slower_than
	// (Impact.SlowRequests).
	KindLatency = "latency"
)

// TriggerKind tells an error trigger from a latency one. A trigger with
// SlowerThan set is a latency trigger, as is one with a latency test and a
// threshold trigger whose query takes a quantile (histogram_quantile): its
// value is a duration, not a share of the requests. Any other trigger is an error trigger.
func TriggerKind(def trigger.Definition) string {
	switch {
	case def.SlowerThan > 0, def.Latency != nil:
		return KindLatency
	case def.Sequential == nil && def.Query != nil && strings.Contains(def.Query.Text(), "histogram_quantile"):
		return KindLatency
	}
	return KindErrors
}

// MeasureImpact queries the firing trigger over the incident, from the
// deploy to the end of the rollback (else of the incident), at that end:
// the peak of its value for the bad version, and an estimate of the
// requests that failed (an error trigger) or were slow (a latency trigger,
// see TriggerKind) because of the deploy, never negative, rounded:
//
//   - a sequential trigger: the bad version's errors over that span, minus
//     the baseline's error ratio (the incident's baseline value) times the
//     bad version's requests over that span; its errors query counts slow
//     requests for a latency trigger;
//   - a threshold error trigger with a volume query: requests × (mean
//     ratio − baseline ratio), when its value is a share of the requests
//     (within [0, 1]);
//   - a threshold latency trigger: nothing, since a quantile or a mean
//     duration counts no requests (Impact.Note says so).
//
// step is the resolution of the peak's subquery. What cannot be measured
// keeps rec's value; Impact.Queries lists the queries as sent.
func MeasureImpact(ctx context.Context, rec incident.Record, def *trigger.Definition, q trigger.QueryFunc, step time.Duration) incident.Impact {
	imp := rec.Impact
	if def == nil {
		return imp
	}
	imp.Kind = TriggerKind(*def)
	imp.SlowerThanSeconds = nil
	if def.SlowerThan > 0 {
		s := def.SlowerThan.Seconds()
		imp.SlowerThanSeconds = &s
	}
	if imp.Kind == KindLatency {
		imp.FailedRequests = nil // a slow request did not fail
	}
	end := rec.RollbackDoneAt
	if end == nil {
		end = rec.ResolvedAt
	}
	if end == nil {
		end = rec.ClosedAt
	}
	if end == nil || rec.DeployedAt.IsZero() {
		imp.Note = "the deploy time or the end of the rollback was not recorded"
		return imp
	}
	m := &measurer{ctx: ctx, q: q, at: *end, vars: query.Vars{Service: rec.Service, Version: rec.Version, Baseline: rec.Baseline}}
	span := end.Sub(rec.DeployedAt).Round(time.Second) + time.Second
	step = max(step, time.Second)
	peakWrap := "max_over_time((%s)[" + model.Duration(span).String() + ":" + model.Duration(step).String() + "])"
	if peak, ok, _ := m.value(def.Query, query.Vars{Window: def.Window}, peakWrap); ok && !math.IsNaN(peak) && (imp.PeakValue == nil || peak > *imp.PeakValue) {
		imp.PeakValue = &peak
	}
	base, hasBase := finite(imp.BaselineValue)
	if !hasBase {
		base, hasBase = finite(rec.Evidence.BaselineValue)
	}
	var est *float64
	var note string
	switch {
	case def.Sequential != nil:
		est, note = m.sequential(def, span, base, hasBase, imp.Kind)
	case imp.Kind == KindLatency:
		note = "the trigger judges a latency, which counts no requests; a sequential trigger whose errors query counts the requests slower than slower_than measures them"
	default:
		est, note = m.ratio(def, span, base, hasBase)
	}
	imp.Queries, imp.MeasuredAt = m.asked, end
	switch {
	case est == nil:
		if imp.FailedRequests == nil && imp.SlowRequests == nil {
			imp.Note = note
		}
	case imp.Kind == KindLatency:
		imp.SlowRequests, imp.Note = est, ""
	default:
		imp.FailedRequests, imp.Note = est, ""
	}
	return imp
}

// measurer runs the impact's queries at one time and records them.
type measurer struct {
	ctx   context.Context
	q     trigger.QueryFunc
	at    time.Time
	vars  query.Vars // the incident's service and versions
	asked []string
}

// value renders t with the incident's service and versions and the range
// of r, wraps it in wrap (a format with one %s) unless empty, and queries
// it: ok is false for an empty result.
func (m *measurer) value(t *query.Template, r query.Vars, wrap string) (float64, bool, error) {
	if t == nil {
		return 0, false, errors.New("no query")
	}
	v := m.vars
	v.Window, v.SinceDeploy = r.Window, r.SinceDeploy
	qs, err := t.Render(v)
	if err != nil {
		return 0, false, err
	}
	if wrap != "" {
		qs = fmt.Sprintf(wrap, qs)
	}
	m.asked = append(m.asked, qs)
	res, err := m.q(m.ctx, qs, m.at)
	if err != nil {
		return 0, false, err
	}
	return res.Single()
}

// sequential estimates from a sequential trigger's counts over span: the
// errors beyond the baseline's ratio.
func (m *measurer) sequential(def *trigger.Definition, span time.Duration, base float64, hasBase bool, kind string) (*float64, string) {
	what := "errors"
	if kind == KindLatency {
		what = "slow requests"
	}
	if !hasBase {
		return nil, "the baseline's share of " + what + " is unknown (the test compared with no baseline)"
	}
	r := query.Vars{Window: def.Window, SinceDeploy: span}
	n, ok, err := m.value(def.Sequential.Requests, r, "")
	switch {
	case err != nil:
		return nil, "the requests query failed: " + err.Error()
	case !ok || math.IsNaN(n):
		return nil, "the requests query found no requests of " + m.vars.Version
	}
	x, ok, err := m.value(def.Sequential.Errors, r, "")
	switch {
	case err != nil:
		return nil, "the errors query failed: " + err.Error()
	case !ok || math.IsNaN(x):
		x = 0 // a version without errors often has no error series at all
	}
	est := math.Max(0, math.Round(x-base*n))
	return &est, ""
}

// ratio estimates from a threshold trigger whose value is a share of the
// requests: requests × (mean share − baseline share) over span.
func (m *measurer) ratio(def *trigger.Definition, span time.Duration, base float64, hasBase bool) (*float64, string) {
	switch {
	case def.VolumeQuery == nil:
		return nil, "the trigger has no volume_query to count the requests"
	case !hasBase:
		return nil, "the baseline's value is unknown"
	}
	r := query.Vars{Window: span}
	n, okN, errN := m.value(def.VolumeQuery, r, "")
	mean, okM, errM := m.value(def.Query, r, "")
	switch {
	case errN != nil || errM != nil:
		return nil, "a query failed: " + errors.Join(errN, errM).Error()
	case !okN || !okM || math.IsNaN(n) || math.IsNaN(mean):
		return nil, "the queries found no data over the incident"
	case mean < 0 || mean > 1 || base < 0 || base > 1:
		return nil, "the trigger's value is not a share of the requests (it lies outside [0, 1])"
	}
	est := math.Max(0, math.Round(n*(mean-base)))
	return &est, ""
}
