package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/report"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/verify"
)

// verifierFor builds the recovery check of a service.
func verifierFor(sc config.Service, defs []trigger.Definition) *verify.Verifier {
	var smoke []verify.Smoke
	for _, s := range sc.Recovery.Smoke {
		smoke = append(smoke, verify.Smoke{Name: s.Name, Method: s.Method, URL: s.URL, ExpectStatus: s.ExpectStatus,
			BodyContains: s.BodyContains, Timeout: time.Duration(s.Timeout)})
	}
	return verify.New(defs, verify.Options{Tolerance: sc.Recovery.Tolerance, Smoke: smoke})
}

// Service implements incident.Env: the service as configured now.
func (a *App) Service(name string) (incident.Service, bool) {
	s, ok := a.state.Load().services[name]
	if !ok {
		return incident.Service{}, false
	}
	ap, rc := s.cfg.Approval, s.cfg.Recovery
	rules := incident.Rules{
		Approval: approval.Policy{Mode: approval.Mode(ap.Mode), Timeout: time.Duration(ap.Timeout),
			OnTimeout: approval.OnTimeout(ap.OnTimeout), SkipAbove: ap.SkipApprovalAbove},
		StableFor: time.Duration(rc.StableFor), RecoveryTimeout: time.Duration(rc.Timeout), ProbeInterval: s.interval,
	}
	if s.appExec != nil {
		rules.Application = s.appExecName
	}
	if s.dbExec != nil {
		rules.Database = s.dbExecName
	}
	var team []incident.Responder
	for _, r := range s.cfg.Responders {
		team = append(team, incident.Responder{Role: r.Role, Name: r.Name, Email: r.Email, Slack: r.Slack})
	}
	w := s.watch
	return incident.Service{Rules: rules, Application: s.appExec, Database: s.dbExec, Verifier: s.verifier, Query: s.querier.Query,
		Serving: w.Serving, Team: team, Mode: incident.Mode(s.cfg.Mode), Watching: func() (string, time.Time, bool) {
			if ws := w.Status().Watch; ws != nil {
				return ws.Version, ws.Since, true
			}
			return "", time.Time{}, false
		}}, true
}

// receivers names the notifiers of a service as configured now.
func (a *App) receivers(service string) []string {
	if s, ok := a.state.Load().services[service]; ok {
		return s.cfg.Notify
	}
	return nil
}

// ExternalURL is the URL people reach Guardian at: --web.external-url,
// else global.external_url, else the listen address (https with a web
// configuration, which may turn TLS on).
func (a *App) ExternalURL() string {
	if u := a.opts.Web.ExternalURL; u != "" {
		return strings.TrimRight(u, "/")
	}
	st := a.state.Load()
	if st == nil || st.cfg == nil {
		return ""
	}
	if u := st.cfg.Global.ExternalURL; u != "" {
		return strings.TrimRight(u, "/")
	}
	host, port, err := net.SplitHostPort(st.cfg.Global.ListenAddress)
	if err != nil {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	scheme := "http"
	if a.opts.Web.ConfigFile != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// onFiring declares an incident for a firing trigger (or adds to the open
// one) with the references and severity the watch stage gives.
func (a *App) onFiring(ctx context.Context, d rollout.Event, v trigger.Verdict, refs map[string]float64, severity string) {
	d = a.describeDeploy(ctx, d)
	if _, _, err := a.incidents.Declare(ctx, d, v, refs, cmp.Or(severity, config.DefaultSeverity)); err != nil {
		a.log.Error("declaring the incident failed", zap.String("service", d.Service), zap.Error(err))
	}
}

// reporter writes reports with the configuration in force.
type reporter struct{ a *App }

// Report implements incident.Reporter: it measures the impact with the
// firing trigger's queries and writes the report and the invite.
func (r reporter) Report(ctx context.Context, rec incident.Record, postmortem bool) (incident.ReportResult, error) {
	a := r.a
	st := a.state.Load()
	dir, err := stateDir(st.cfg)
	if err != nil {
		return incident.ReportResult{}, err
	}
	w := report.Writer{Dir: filepath.Join(dir, "reports"), Now: a.now, Logger: a.log, Charts: a.IncidentCharts}
	if pm := st.cfg.Global.Postmortem; pm.Organizer != "" {
		// The incident's team is invited with the configured attendees.
		attendees := slices.Clone(pm.Attendees)
		for _, r := range rec.Team {
			if r.Email != "" && !slices.ContainsFunc(attendees, func(a string) bool { return strings.Contains(a, r.Email) }) {
				attendees = append(attendees, fmt.Sprintf("%s <%s>", r.Name, r.Email))
			}
		}
		if len(attendees) > 0 {
			w.Postmortem = &report.PostmortemConfig{
				Delay: time.Duration(pm.Delay), BusinessDays: pm.BusinessDays, At: pm.At, TimeZone: pm.TimeZone,
				Duration: time.Duration(pm.Duration), Organizer: pm.Organizer, Attendees: attendees,
				ReportURL: notify.LinksFor(a.ExternalURL(), rec.ID).Report,
			}
		}
	}
	if s, ok := st.services[rec.Service]; ok {
		w.Impact = func(ctx context.Context, rec incident.Record) incident.Impact {
			for _, tr := range s.triggers {
				if d := tr.Definition(); d.Name == rec.Trigger {
					return report.MeasureImpact(ctx, rec, &d, s.querier.Query, s.interval)
				}
			}
			return rec.Impact
		}
	}
	return w.Report(ctx, rec, postmortem)
}

// List, Get, Vote, Close and Report serve the incident API.

// List returns every incident, newest first.
func (a *App) List(ctx context.Context) ([]incident.Record, error) { return a.incidents.List(ctx) }

// Get returns one incident.
func (a *App) Get(ctx context.Context, id int64) (incident.Record, error) {
	return a.incidents.Get(ctx, id)
}

// Vote records a go or no-go.
func (a *App) Vote(ctx context.Context, v approval.Vote) (incident.Record, error) {
	return a.incidents.Vote(ctx, v)
}

// Close closes an incident without resolution.
func (a *App) Close(ctx context.Context, id int64, by, channel, reason string) (incident.Record, error) {
	return a.incidents.Close(ctx, id, by, channel, reason)
}

// Report renders an incident's report.
func (a *App) Report(ctx context.Context, id int64, format string) ([]byte, error) {
	rec, err := a.incidents.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	switch format {
	case "json":
		return report.JSON(rec, report.Options{Now: a.now})
	case "html":
		now := a.now()
		opts := report.Options{Now: func() time.Time { return now }, Charts: a.IncidentCharts(ctx, rec, now)}
		if len(opts.Charts) == 0 {
			opts.ChartsNote = "No chart: the service is not configured any more, has no trigger query, or the incident has no deploy or detection time."
		}
		return report.HTML(rec, opts)
	}
	return report.Markdown(rec, report.Options{Now: a.now})
}

// Rollback declares an incident because a person asked to roll service
// back (to version to, or to the open watch's baseline) for reason: the
// request is the go, and the rollback, verification and report follow.
func (a *App) Rollback(ctx context.Context, service, to, reason, by, channel string) (incident.Record, error) {
	st := a.state.Load()
	s, ok := st.services[service]
	if !ok {
		return incident.Record{}, fmt.Errorf("%w %q", rollout.ErrUnknownService, service)
	}
	if !a.owns(service) {
		return incident.Record{}, errNotOwner(service)
	}
	if a.incidents == nil {
		return incident.Record{}, errors.New("incidents are not enabled")
	}
	d, refs, err := s.watch.RollbackTarget(to, a.now())
	if err != nil {
		return incident.Record{}, err
	}
	if s.cfg.Rollback.Application == nil {
		return incident.Record{}, fmt.Errorf("%w: %s has no rollback.application executor configured", rollout.ErrNoTarget, service)
	}
	d = a.describeDeploy(ctx, d)
	return a.incidents.RequestRollback(ctx, d, refs, config.DefaultSeverity, incident.Requester{By: by, Channel: channel, Reason: reason})
}

// notificationGivenUp records on the incident's timeline that one of its
// notifications was given up. It runs apart from the outbox's worker, which
// must not wait for the incident manager (the manager waits for the outbox
// when it publishes).
func (a *App) notificationGivenUp(receiver string, e notify.Event, reason string) {
	if e.Incident <= 0 || a.incidents == nil {
		return
	}
	m := a.incidents
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.DeliveryFailed(ctx, e.Incident, receiver, string(e.Type), reason); err != nil {
			a.log.Warn("recording a given-up notification on the incident failed", zap.Int64("incident", e.Incident), zap.Error(err))
		}
	}()
}
