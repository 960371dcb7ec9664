package app

import (
	"context"
	"fmt"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/watch"
)

// Verdict returns Guardian's judgement of version of service now: the
// open watch's (watch.Service.Judge), made regressed by an incident
// declared for the version. While the version is watched only incidents of
// this watch count; once it is not, the latest incident for it does. An
// incident closed without resolution (a false alarm) does not count.
func (a *App) Verdict(ctx context.Context, service, version, baseline string) (watch.VersionVerdict, error) {
	s, ok := a.state.Load().services[service]
	if !ok {
		return watch.VersionVerdict{}, fmt.Errorf("%w %q", rollout.ErrUnknownService, service)
	}
	if !a.owns(service) {
		return watch.VersionVerdict{}, errNotOwner(service)
	}
	vv := s.watch.Judge(version, baseline, a.now())
	if a.incidents == nil {
		return vv, nil
	}
	recs, err := a.incidents.List(ctx)
	if err != nil {
		return vv, fmt.Errorf("listing the incidents of %s: %w", service, err)
	}
	var latest *incident.Record
	for i := range recs {
		r := &recs[i]
		if r.Service != service || r.Version != version || r.State == incident.Closed {
			continue
		}
		if vv.WatchStarted != nil && r.DetectedAt.Before(*vv.WatchStarted) {
			continue
		}
		if latest == nil || r.ID > latest.ID {
			latest = r
		}
	}
	if latest == nil {
		return vv, nil
	}
	vv.Incident = latest.ID
	if vv.Verdict != watch.Regressed {
		vv.Verdict = watch.Regressed
		vv.Reason = fmt.Sprintf("incident %d was declared for version %q (%s, trigger %s)", latest.ID, version, latest.State, latest.Trigger)
	}
	return vv, nil
}
