package watch

import (
	"time"

	"github.com/rollback-guardian/guardian/trigger"
)

// ServiceStatus is what Guardian knows of one service right now.
type ServiceStatus struct {
	Name    string       `json:"name"`
	Current string       `json:"current_version"`
	Serving []string     `json:"serving_versions"`
	Watch   *WatchStatus `json:"watch,omitempty"`
	// Owner, when replicas share the services out, is the replica that
	// drives the service (name|URL, "" while its shard changes hands), and
	// Shard its shard. Only the owner knows the service's versions and
	// watch: the other replicas show none.
	Owner string `json:"owner,omitempty"`
	Shard *int   `json:"shard,omitempty"`
}

// WatchStatus is an open watch window after a deploy.
type WatchStatus struct {
	Version  string `json:"version"`
	Baseline string `json:"baseline"`
	// BaselineWhy says why Baseline was chosen.
	BaselineWhy string `json:"baseline_why,omitempty"`
	// Redeploy: Version served before and came back.
	Redeploy bool            `json:"redeploy,omitempty"`
	Via      string          `json:"via"`
	Since    time.Time       `json:"since"`
	Until    time.Time       `json:"until"`
	Triggers []TriggerStatus `json:"triggers"`
}

// TriggerStatus is one trigger's state and its last evidence.
type TriggerStatus struct {
	Name        string     `json:"name"`
	State       string     `json:"state"`
	ActiveSince *time.Time `json:"active_since,omitempty"`
	Outcome     string     `json:"last_outcome,omitempty"`
	Evidence    string     `json:"last_evidence,omitempty"`
}

// Status returns the service's versions and its open watch, if any, with
// every trigger's state and last verdict.
func (s *Service) Status() ServiceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := ServiceStatus{Name: s.name, Current: s.detector.Current(), Serving: s.detector.Serving()}
	if s.watch == nil {
		return ss
	}
	w := &WatchStatus{
		Version: s.watch.deploy.Version, Baseline: s.watch.deploy.Baseline, BaselineWhy: s.watch.deploy.BaselineWhy,
		Redeploy: s.watch.deploy.Redeploy, Via: s.watch.deploy.Origin.String(), Since: s.watch.deploy.At, Until: s.watch.until,
	}
	for _, tr := range s.triggers {
		ts := TriggerStatus{Name: tr.Name(), State: trigger.Inactive.String()}
		if v, ok := tr.Last(); ok {
			ts.State, ts.Outcome, ts.Evidence = v.State.String(), v.Outcome.String(), v.Summary()
			if v.State != trigger.Inactive && !v.Evidence.ActiveSince.IsZero() {
				at := v.Evidence.ActiveSince
				ts.ActiveSince = &at
			}
		}
		w.Triggers = append(w.Triggers, ts)
	}
	ss.Watch = w
	return ss
}

// Serving returns the versions serving at the last observation of deploy
// detection, most traffic first; nil when it watches no version query.
func (s *Service) Serving() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.detector.HasQuery() {
		return nil
	}
	return s.detector.ServingByTraffic()
}
