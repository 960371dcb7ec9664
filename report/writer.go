package report

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/trigger"
)

// Writer writes an incident's report (Markdown and JSON) and its post-mortem
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
	res.Markdown, res.JSON, res.Invite = paths.Markdown, paths.JSON, paths.Invite
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

// MeasureImpact queries the firing trigger over the incident: its peak for
// the bad version and, for a ratio trigger with a volume query, an estimate
// of the requests that failed because of the deploy:
// requests × (mean ratio − baseline ratio). step is the resolution of the
// peak's subquery. What cannot be measured keeps rec's value.
func MeasureImpact(ctx context.Context, rec incident.Record, def *trigger.Definition, q trigger.QueryFunc, step time.Duration) incident.Impact {
	imp := rec.Impact
	end := rec.RollbackDoneAt
	if end == nil {
		end = rec.ResolvedAt
	}
	if end == nil {
		end = rec.ClosedAt
	}
	if def == nil || end == nil || rec.DeployedAt.IsZero() {
		return imp
	}
	span := end.Sub(rec.DeployedAt).Round(time.Second) + time.Second
	step = max(step, time.Second)
	val := func(t *query.Template, window time.Duration, wrap string) (float64, bool) {
		if t == nil {
			return 0, false
		}
		qs, err := t.Render(query.Vars{Service: rec.Service, Version: rec.Version, Baseline: rec.Baseline, Window: window})
		if err != nil {
			return 0, false
		}
		if wrap != "" {
			qs = fmt.Sprintf(wrap, qs)
		}
		res, err := q(ctx, qs, *end)
		if err != nil {
			return 0, false
		}
		v, ok, err := res.Single()
		if err != nil || !ok || math.IsNaN(v) {
			return 0, false
		}
		return v, true
	}
	peakWrap := "max_over_time((%s)[" + model.Duration(span).String() + ":" + model.Duration(step).String() + "])"
	if peak, ok := val(def.Query, def.Window, peakWrap); ok && (imp.PeakValue == nil || peak > *imp.PeakValue) {
		imp.PeakValue = &peak
	}
	if def.VolumeQuery != nil && imp.BaselineValue != nil {
		n, okN := val(def.VolumeQuery, span, "")
		mean, okM := val(def.Query, span, "")
		if okN && okM && mean >= *imp.BaselineValue {
			failed := math.Round(n * (mean - *imp.BaselineValue))
			imp.FailedRequests = &failed
		}
	}
	return imp
}
