package app

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/notify"
	notifywebhook "github.com/rollback-guardian/guardian/notify/webhook"
	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/report"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/verify"
)

// buildNotifiers builds every receiver of the configuration.
func buildNotifiers(cfg *config.Config, log *zap.Logger) (map[string]notify.Notifier, error) {
	out := map[string]notify.Notifier{}
	for _, n := range cfg.Notifiers {
		if n.Webhook == nil {
			return nil, fmt.Errorf("notifier %s: no receiver", n.Name)
		}
		w, err := notifywebhook.New(*n.Webhook, log.Named("notify").With(zap.String("receiver", n.Name)))
		if err != nil {
			return nil, fmt.Errorf("notifier %s: %w", n.Name, err)
		}
		out[n.Name] = w
	}
	return out, nil
}

// verifierFor builds the recovery check of a service.
func verifierFor(sc config.Service, defs []trigger.Definition) *verify.Verifier {
	var smoke []verify.Smoke
	for _, s := range sc.Recovery.Smoke {
		smoke = append(smoke, verify.Smoke{Name: s.Name, Method: s.Method, URL: s.URL, ExpectStatus: s.ExpectStatus,
			BodyContains: s.BodyContains, Timeout: time.Duration(s.Timeout)})
	}
	return verify.New(defs, verify.Options{Tolerance: sc.Recovery.Tolerance, StableFor: time.Duration(sc.Recovery.StableFor), Smoke: smoke})
}

// Service implements incident.Env: the service as configured now.
func (a *App) Service(name string) (incident.Service, bool) {
	s, ok := a.state.Load().services[name]
	if !ok {
		return incident.Service{}, false
	}
	return incident.Service{
		Approval: s.cfg.Approval, Recovery: s.cfg.Recovery, Interval: s.interval,
		Application: s.appExec, ApplicationName: s.appExecName,
		Database: s.dbExec, DatabaseName: s.dbExecName,
		Verifier: s.verifier, Query: s.querier.Query,
	}, true
}

// publishable are the timeline entries sent as notifications.
var publishable = map[string]bool{}

func init() {
	for _, t := range []notify.EventType{notify.IncidentDeclared, notify.ApprovalRequested, notify.ApprovalGranted,
		notify.ApprovalDenied, notify.RollbackStarted, notify.RollbackSucceeded, notify.RollbackFailed,
		notify.RecoveryConfirmed, notify.RecoveryFailed, notify.IncidentEscalated, notify.IncidentResolved,
		notify.PostmortemScheduled} {
		publishable[string(t)] = true
	}
}

// Publish implements incident.Publisher: timeline entry i of rec goes to
// the outbox of every receiver of the service, persisted before it returns.
func (a *App) Publish(ctx context.Context, rec incident.Record, i int) error {
	e := rec.Timeline[i]
	if !publishable[e.Type] {
		return nil
	}
	s, ok := a.state.Load().services[rec.Service]
	if !ok {
		return nil
	}
	data := map[string]any{
		"version": rec.Version, "baseline": rec.Baseline, "trigger": rec.Trigger,
		"actor": e.Actor, "evidence": rec.Evidence.Summary,
	}
	for k, v := range e.Data {
		data[k] = v
	}
	ev := notify.Event{
		ID: incident.EventID(rec.ID, i), Type: notify.EventType(e.Type), Time: e.At, Incident: rec.ID,
		Service: rec.Service, Severity: rec.Severity, State: rec.State.String(), Text: e.Message, Data: data,
	}
	for _, name := range s.cfg.Notify {
		if err := a.outbox.Enqueue(ctx, name, ev); err != nil {
			return fmt.Errorf("queueing %s for %s: %w", ev.Type, name, err)
		}
	}
	return nil
}

// onFiring declares an incident for a firing trigger (or adds to the open one).
func (a *App) onFiring(ctx context.Context, s *service, d rollout.Event, v trigger.Verdict) {
	refs := map[string]float64{}
	severity := config.DefaultSeverity
	for _, tr := range s.triggers {
		def := tr.Definition()
		if def.Name == v.Trigger && def.Severity != "" {
			severity = def.Severity
		}
		if last, ok := tr.Last(); ok && last.Evidence.BaselineValue != nil && !math.IsNaN(*last.Evidence.BaselineValue) {
			refs[def.Name] = *last.Evidence.BaselineValue
		}
	}
	if _, _, err := a.incidents.Declare(ctx, d, v, refs, severity); err != nil {
		s.log.Error("declaring the incident failed", zap.Error(err))
	}
}

// onResolve measures the impact, schedules the post-mortem and writes the
// report of a resolved incident.
func (a *App) onResolve(ctx context.Context, rec incident.Record) (incident.Impact, []incident.Entry) {
	st := a.state.Load()
	log := a.log.With(zap.Int64("incident", rec.ID), zap.String("service", rec.Service))
	if s, ok := st.services[rec.Service]; ok {
		rec.Impact = a.measureImpact(ctx, s, rec)
	}
	now := a.now()
	var entries []incident.Entry
	var invite []byte
	opts := report.Options{Now: a.now}
	pm := st.cfg.Global.Postmortem
	if pm.Organizer != "" && len(pm.Attendees) > 0 {
		pc := report.PostmortemConfig{
			Delay: time.Duration(pm.Delay), BusinessDays: pm.BusinessDays, At: pm.At, TimeZone: pm.TimeZone,
			Duration: time.Duration(pm.Duration), Organizer: pm.Organizer, Attendees: pm.Attendees,
		}
		start, err := report.Schedule(*rec.ResolvedAt, pc)
		if err == nil {
			var inv report.Invite
			if inv, err = report.NewInvite(rec, start, pc); err == nil {
				opts.Postmortem = &inv
				invite, err = report.ICS(rec, start, pc, now)
			}
		}
		if err != nil {
			log.Error("scheduling the post-mortem", zap.Error(err))
		}
	} else {
		log.Warn("post-mortem not scheduled: set global.postmortem.organizer and attendees")
	}
	dir, err := stateDir(st.cfg)
	if err != nil {
		log.Error("report directory", zap.Error(err))
		return rec.Impact, nil
	}
	dir = filepath.Join(dir, "reports")
	// The report includes the entries added here: write it with them.
	paths, err := report.Write(dir, withEntries(rec, reportEntries(now, dir, rec, invite, opts.Postmortem)), opts, invite)
	if err != nil {
		log.Error("writing the incident report", zap.Error(err))
		return rec.Impact, nil
	}
	entries = append(entries, incident.Entry{At: now, Type: "report.written", Actor: "guardian",
		Message: "incident report written to " + paths.Markdown, Data: map[string]string{"markdown": paths.Markdown, "json": paths.JSON}})
	if paths.Invite != "" && opts.Postmortem != nil {
		entries = append(entries, incident.Entry{At: now, Type: string(notify.PostmortemScheduled), Actor: "guardian",
			Message: fmt.Sprintf("post-mortem of incident #%d scheduled for %s (%s), invite %s", rec.ID,
				opts.Postmortem.Start.Format("Mon 2 Jan 2006 15:04 MST"), pm.TimeZone, paths.Invite),
			Data: map[string]string{"start": opts.Postmortem.Start.UTC().Format(time.RFC3339), "invite": paths.Invite, "report": paths.Markdown}})
	}
	log.Info("incident report written", zap.String("markdown", paths.Markdown), zap.String("invite", paths.Invite))
	return rec.Impact, entries
}

// reportEntries are the entries onResolve will add, as the report shows them.
func reportEntries(now time.Time, dir string, rec incident.Record, invite []byte, inv *report.Invite) []incident.Entry {
	md := filepath.Join(dir, fmt.Sprintf("incident-%d.md", rec.ID))
	out := []incident.Entry{{At: now, Type: "report.written", Actor: "guardian", Message: "incident report written to " + md}}
	if invite != nil && inv != nil {
		out = append(out, incident.Entry{At: now, Type: string(notify.PostmortemScheduled), Actor: "guardian",
			Message: fmt.Sprintf("post-mortem scheduled for %s", inv.Start.Format("Mon 2 Jan 2006 15:04 MST"))})
	}
	return out
}

func withEntries(rec incident.Record, es []incident.Entry) incident.Record {
	rec.Timeline = append(append([]incident.Entry(nil), rec.Timeline...), es...)
	return rec
}

// measureImpact queries the firing trigger over the incident: its peak for
// the bad version and, for a ratio trigger with a volume query, an estimate
// of the requests that failed because of the deploy:
// requests × (mean ratio − baseline ratio).
func (a *App) measureImpact(ctx context.Context, s *service, rec incident.Record) incident.Impact {
	imp := rec.Impact
	end := rec.RollbackDoneAt
	if end == nil {
		end = rec.ResolvedAt
	}
	var def *trigger.Definition
	for _, tr := range s.triggers {
		if d := tr.Definition(); d.Name == rec.Trigger {
			def = &d
		}
	}
	if def == nil || end == nil || rec.DeployedAt.IsZero() {
		return imp
	}
	span := end.Sub(rec.DeployedAt).Round(time.Second) + time.Second
	step := max(s.interval, time.Second)
	val := func(t *query.Template, window time.Duration, wrap string) (float64, bool) {
		if t == nil {
			return 0, false
		}
		q, err := t.Render(query.Vars{Service: rec.Service, Version: rec.Version, Baseline: rec.Baseline, Window: window})
		if err != nil {
			return 0, false
		}
		if wrap != "" {
			q = fmt.Sprintf(wrap, q)
		}
		res, err := s.querier.Query(ctx, q, *end)
		if err != nil || len(res.Vector) != 1 || math.IsNaN(float64(res.Vector[0].Value)) {
			return 0, false
		}
		return float64(res.Vector[0].Value), true
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

// List, Get, Decide and Report serve the incident API.

// List returns every incident, newest first.
func (a *App) List(ctx context.Context) ([]incident.Record, error) { return a.incidents.List(ctx) }

// Get returns one incident.
func (a *App) Get(ctx context.Context, id int64) (incident.Record, error) {
	return a.incidents.Get(ctx, id)
}

// Decide records a go or no-go.
func (a *App) Decide(ctx context.Context, id int64, approve bool, by, reason string) (incident.Record, error) {
	return a.incidents.Decide(ctx, id, approve, by, reason)
}

// Report renders an incident's report.
func (a *App) Report(ctx context.Context, id int64, format string) ([]byte, error) {
	rec, err := a.incidents.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if format == "json" {
		return report.JSON(rec, report.Options{Now: a.now})
	}
	return report.Markdown(rec, report.Options{Now: a.now})
}
