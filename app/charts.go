package app

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/report"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/web"
)

var _ web.ChangeDeployer = (*App)(nil)

// chartTimeout bounds the queries of one incident's charts: a slow source
// delays a report by at most this, and leaves gaps.
const chartTimeout = 30 * time.Second

// ChartSource returns what an incident's charts of service are drawn from:
// the service's metric source and its triggers as configured now; false
// for a service not configured.
func (a *App) ChartSource(service string) (source.Querier, []trigger.Definition, bool) {
	st := a.state.Load()
	if st == nil {
		return nil, nil, false
	}
	s, ok := st.services[service]
	if !ok || s.querier == nil {
		return nil, nil, false
	}
	defs := make([]trigger.Definition, 0, len(s.triggers))
	for _, tr := range s.triggers {
		defs = append(defs, tr.Definition())
	}
	return s.querier, defs, true
}

// IncidentCharts draws rec's charts (see report.Charts) from its service's
// source at now; none for a service no longer configured.
func (a *App) IncidentCharts(ctx context.Context, rec incident.Record, now time.Time) []report.IncidentChart {
	q, defs, ok := a.ChartSource(rec.Service)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, chartTimeout)
	defer cancel()
	return report.Charts(ctx, q, rec, now, defs...)
}

// AnnounceChange records a deploy announced through the API with what it
// changed (commit, author, change URL).
func (a *App) AnnounceChange(ctx context.Context, service, version, baseline string, c rollout.Change) (rollout.Event, error) {
	s, ok := a.state.Load().services[service]
	if !ok {
		return rollout.Event{}, fmt.Errorf("%w %q", rollout.ErrUnknownService, service)
	}
	if !a.owns(service) {
		return rollout.Event{}, errNotOwner(service)
	}
	return s.watch.AnnounceChange(ctx, version, baseline, c, a.now())
}

// describer is an executor that can tell what versions run (the
// Kubernetes executor reads its workload's revisions).
type describer interface {
	Describe(ctx context.Context, versions ...string) ([]rollout.Change, error)
}

// describeTimeout bounds asking the executor what the versions run.
const describeTimeout = 5 * time.Second

// describeDeploy fills in what d's versions run, when the deploy did not
// say and the service's application executor can tell (its workload's
// revisions): what the incident report shows as what changed. A failure
// is logged and leaves d as it was.
func (a *App) describeDeploy(ctx context.Context, d rollout.Event) rollout.Event {
	if d.Change != nil && (d.BaselineChange != nil || d.Baseline == "") {
		return d
	}
	st := a.state.Load()
	if st == nil {
		return d
	}
	s, ok := st.services[d.Service]
	if !ok {
		return d
	}
	desc, ok := s.appExec.(describer)
	if !ok {
		return d
	}
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	changes, err := desc.Describe(ctx, d.Version, d.Baseline)
	if err != nil {
		a.log.Warn("reading what the versions run from the rollback executor failed", zap.String("service", d.Service), zap.Error(err))
		return d
	}
	for _, c := range changes {
		switch {
		case c.Version == d.Version && d.Change == nil:
			c := c
			d.Change = &c
		case c.Version == d.Baseline && d.BaselineChange == nil:
			c := c
			d.BaselineChange = &c
		}
	}
	return d
}
