package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/rollout"
	kuberollout "github.com/rollback-guardian/guardian/rollout/kubernetes"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/verify"
)

// watch is an open watch window after a deploy.
type watch struct {
	deploy rollout.Event
	until  time.Time
	fired  bool
	// stalled: the built-in progress-deadline trigger is firing.
	stalled bool
}

// service is one guarded service: its deploy detector, triggers and the
// watch window of its latest deploy. mu serialises evaluation ticks with
// deploy announcements.
type service struct {
	name     string
	cfg      config.Service
	interval time.Duration
	querier  source.Querier  // counting wrapper around the service's source
	embedded *embeddedRunner // nil when the service uses a named source
	// onFiring declares an incident for every firing verdict.
	onFiring func(ctx context.Context, s *service, d rollout.Event, v trigger.Verdict)

	// What the incident manager needs, built with the service.
	appExec, dbExec         executor.Executor
	appExecName, dbExecName string
	verifier                *verify.Verifier
	log                     *zap.Logger
	m                       *metrics
	onVerdict               VerdictFunc

	mu       sync.Mutex
	detector *rollout.Detector
	triggers []*trigger.Trigger
	watch    *watch
	// kwatch learns deploys from a Kubernetes Deployment; nil without one.
	kwatch *kuberollout.Watcher
	// persist saves the service's learnt state (versions, open watch) so a
	// restart resumes watching; lastSaved is what it saved last.
	persist   func(ctx context.Context, name string, b []byte) error
	lastSaved string
	// lastOutcome per trigger, to log a run of no-data or errors once.
	lastOutcome map[string]trigger.Outcome
	lastVQErr   string
}

// VerdictFunc observes every verdict of every trigger (the incident manager
// and tests hook in here).
type VerdictFunc func(ctx context.Context, d rollout.Event, v trigger.Verdict)

// run evaluates the service every interval until ctx ends.
func (s *service) run(ctx context.Context, now func() time.Time) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.tick(ctx, now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tick runs deploy detection, then, while a watch window is open, every trigger.
func (s *service) tick(ctx context.Context, ts time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	defer func() { s.m.evalDuration.WithLabelValues(s.name).Observe(time.Since(start).Seconds()) }()
	defer s.save(ctx)

	if s.detector.HasQuery() {
		ev, err := s.detector.Observe(ctx, ts, s.querier)
		switch {
		case err != nil && ctx.Err() == nil:
			s.m.versionQueryErr.WithLabelValues(s.name).Inc()
			if msg := err.Error(); msg != s.lastVQErr {
				s.log.Warn("deploy detection failed", zap.Error(err))
				s.lastVQErr = msg
			}
		case err == nil:
			if s.lastVQErr != "" {
				s.log.Info("deploy detection recovered")
				s.lastVQErr = ""
			}
		}
		if ev != nil {
			s.startWatch(ctx, *ev)
		}
	}
	if s.watch == nil {
		return
	}
	if !ts.Before(s.watch.until) {
		s.endWatch("watch window ended")
		return
	}
	s.checkStall(ctx, ts)
	for _, tr := range s.triggers {
		v := tr.Eval(ctx, ts, s.deployFor(), s.querier.Query)
		if ctx.Err() != nil {
			return // shutting down or reloading: this verdict is not evidence
		}
		s.record(ctx, v)
	}
}

// checkStall judges the built-in progress-deadline trigger: it fires while
// the Deployment controller reports that the watched deploy's rollout
// exceeded its progress deadline (pods that never get ready take no
// traffic, so no metric trigger sees the bad version), unless
// deploy.kubernetes.on_progress_deadline is "ignore". Callers hold s.mu.
func (s *service) checkStall(ctx context.Context, ts time.Time) {
	k := s.cfg.Deploy.Kubernetes
	if s.kwatch == nil || k == nil || k.OnProgressDeadline == config.OnProgressDeadlineIgnore {
		return
	}
	st, stalled := s.kwatch.Stalled()
	stalled = stalled && st.Version == s.watch.deploy.Version
	prev := trigger.Inactive
	if s.watch.stalled {
		prev = trigger.Firing
	}
	if !stalled && !s.watch.stalled {
		return
	}
	v := trigger.Verdict{
		Trigger: config.ProgressDeadlineTrigger, At: ts, Deploy: s.deployFor(),
		Outcome: trigger.OK, State: trigger.Inactive, Previous: prev, Changed: s.watch.stalled,
		Evidence: trigger.Evidence{Detail: "the rollout is progressing again"},
	}
	if stalled {
		v.Outcome, v.Breach, v.State, v.Changed = trigger.Violated, true, trigger.Firing, !s.watch.stalled
		v.Evidence = trigger.Evidence{
			Detail: st.String(),
			Conditions: []trigger.Check{{
				Name: "progress_deadline", Threshold: st.Deadline.Seconds(), Breached: true,
				Text: fmt.Sprintf("no rollout progress within %s", st.Deadline),
			}},
		}
	}
	s.watch.stalled = stalled
	s.record(ctx, v)
}

func (s *service) deployFor() trigger.Deploy {
	d := s.watch.deploy
	return trigger.Deploy{Service: s.name, Version: d.Version, Baseline: d.Baseline, At: d.At}
}

// startWatch arms the triggers for a fresh deploy. Callers hold s.mu.
func (s *service) startWatch(ctx context.Context, ev rollout.Event) {
	if s.watch != nil {
		s.log.Info("new deploy replaces the open watch", zap.String("previous", s.watch.deploy.Version))
	}
	s.watch = &watch{deploy: ev, until: ev.At.Add(time.Duration(s.cfg.WatchWindow))}
	s.m.deploys.WithLabelValues(s.name, ev.Origin.String()).Inc()
	s.m.watching.WithLabelValues(s.name).Set(1)
	s.log.Info("deploy seen: watching",
		zap.String("version", ev.Version), zap.String("baseline", ev.Baseline),
		zap.String("via", ev.Origin.String()), zap.Time("until", s.watch.until))
	d := s.deployFor()
	for _, tr := range s.triggers {
		tr.Reset()
		s.m.triggerState.WithLabelValues(s.name, tr.Definition().Name).Set(0)
		// The baseline's value before the deploy, taken now while the
		// source still has it (the embedded source keeps a short history).
		if d.Baseline == "" {
			continue
		}
		v, ok, err := tr.Snapshot(ctx, d, s.querier.Query)
		switch {
		case err != nil:
			s.log.Warn("baseline snapshot failed; will retry at evaluation", zap.String("trigger", tr.Definition().Name), zap.Error(err))
		case ok:
			s.log.Debug("baseline snapshot", zap.String("trigger", tr.Definition().Name), zap.String("baseline", d.Baseline), zap.Float64("value", v))
		}
	}
}

// endWatch closes the watch window. Callers hold s.mu.
func (s *service) endWatch(why string) {
	s.log.Info(why, zap.String("version", s.watch.deploy.Version), zap.Bool("fired", s.watch.fired))
	s.watch = nil
	s.m.watching.WithLabelValues(s.name).Set(0)
	for _, tr := range s.triggers {
		tr.Reset()
		s.m.triggerState.WithLabelValues(s.name, tr.Definition().Name).Set(0)
	}
}

// record counts, logs and publishes a verdict.
func (s *service) record(ctx context.Context, v trigger.Verdict) {
	s.m.evaluations.WithLabelValues(s.name, v.Trigger, v.Outcome.String()).Inc()
	s.m.triggerState.WithLabelValues(s.name, v.Trigger).Set(float64(v.State))
	if len(v.Evidence.Warnings) > 0 {
		s.m.warnings.WithLabelValues(s.name).Inc()
	}
	fields := []zap.Field{
		zap.String("trigger", v.Trigger), zap.String("version", s.watch.deploy.Version),
		zap.String("outcome", v.Outcome.String()), zap.String("state", v.State.String()),
		zap.String("evidence", v.Summary()),
	}
	prev, seen := s.lastOutcome[v.Trigger]
	s.lastOutcome[v.Trigger] = v.Outcome
	switch {
	case v.Changed && v.State == trigger.Firing:
		s.watch.fired = true
		s.m.triggersFired.WithLabelValues(s.name, v.Trigger).Inc()
		s.log.Warn("trigger firing", append(fields, zap.String("baseline", s.watch.deploy.Baseline))...)
	case v.Changed:
		s.log.Info("trigger state changed", append(fields, zap.String("from", v.Previous.String()))...)
	case isTrouble(v.Outcome) && (!seen || prev != v.Outcome):
		s.log.Warn("trigger cannot judge", append(fields, zap.Error(v.Err))...)
	default:
		s.log.Debug("trigger evaluated", fields...)
	}
	if s.onVerdict != nil {
		s.onVerdict(ctx, s.watch.deploy, v)
	}
	// After the verdict is told: the incident follows the firing trigger.
	if v.State == trigger.Firing && s.onFiring != nil {
		s.onFiring(ctx, s, s.watch.deploy, v)
	}
}

func isTrouble(o trigger.Outcome) bool {
	return o == trigger.NoData || o == trigger.NaN || o == trigger.QueryError
}

// announce records a deploy announced through the API and opens its watch.
func (s *service) announce(ctx context.Context, version, baseline string, ts time.Time) (rollout.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev, err := s.detector.Announce(version, baseline, ts)
	if err != nil {
		return rollout.Event{}, err
	}
	s.startWatch(ctx, ev)
	s.save(ctx)
	return ev, nil
}

// fromKubernetes records a deploy seen in a Deployment's revisions and
// opens its watch.
func (s *service) fromKubernetes(ctx context.Context, ev rollout.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.detector.Known(ev.Version) {
		// An earlier version back: a rollback, not a fresh deploy.
		s.log.Info("deployment went back to a known version", zap.String("version", ev.Version))
		s.detector.Learn(ev.Version, ev.At)
		s.save(ctx)
		return
	}
	if _, err := s.detector.Announce(ev.Version, ev.Baseline, ev.At); err != nil {
		s.log.Warn("deploy from Kubernetes not usable", zap.String("version", ev.Version), zap.Error(err))
		return
	}
	s.startWatch(ctx, ev)
	s.save(ctx)
}

// learnVersion records the version a Deployment runs when watching starts.
func (s *service) learnVersion(ctx context.Context, version string, ts time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detector.Learn(version, ts)
	s.save(ctx)
}

// takeOver moves what old learnt into s: versions seen, the open watch, and
// the state of every trigger whose definition did not change. Both are
// stopped while this runs.
func (s *service) takeOver(old *service, keepDetector bool) {
	old.mu.Lock()
	defer old.mu.Unlock()
	if keepDetector {
		s.detector.CopyStateFrom(old.detector)
	}
	if old.watch != nil {
		w := *old.watch
		w.until = w.deploy.At.Add(time.Duration(s.cfg.WatchWindow))
		s.watch = &w
	}
	prev := map[string]*trigger.Trigger{}
	for _, tr := range old.triggers {
		prev[tr.Definition().Name] = tr
	}
	for _, tr := range s.triggers {
		if o, ok := prev[tr.Definition().Name]; ok && o.Definition().Equal(tr.Definition()) {
			tr.CopyStateFrom(o)
		}
	}
	for k, v := range old.lastOutcome {
		s.lastOutcome[k] = v
	}
}

// countingQuerier counts failed queries by reason.
// It bounds every query by the global query timeout.
type countingQuerier struct {
	q       source.Querier
	service string
	m       *metrics
	timeout time.Duration
}

func (c countingQuerier) Query(ctx context.Context, q string, ts time.Time) (source.Result, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	res, err := c.q.Query(ctx, q, ts)
	if err != nil && !errors.Is(err, context.Canceled) {
		c.m.queryErrors.WithLabelValues(c.service, source.Reason(err)).Inc()
		return res, fmt.Errorf("querying %s: %w", c.service, err)
	}
	return res, err
}

// savedState is what a service keeps across restarts: the versions it has
// learnt and its open watch window, so that a restart in the middle of a
// watch neither misses the bad deploy nor reports it twice.
type savedState struct {
	Detector rollout.State `json:"detector"`
	Watch    *savedWatch   `json:"watch,omitempty"`
}

type savedWatch struct {
	Deploy rollout.Event `json:"deploy"`
	Until  time.Time     `json:"until"`
	Fired  bool          `json:"fired"`
}

// save persists the learnt state when it changed. Callers hold s.mu.
func (s *service) save(ctx context.Context) {
	if s.persist == nil || ctx.Err() != nil {
		return
	}
	st := savedState{Detector: s.detector.State()}
	if s.watch != nil {
		st.Watch = &savedWatch{Deploy: s.watch.deploy, Until: s.watch.until, Fired: s.watch.fired}
	}
	b, err := json.Marshal(st)
	if err != nil || string(b) == s.lastSaved {
		return
	}
	if err := s.persist(ctx, s.name, b); err != nil {
		s.log.Warn("saving the deploy state", zap.Error(err))
		return
	}
	s.lastSaved = string(b)
}

// restore takes over the state saved before a restart; a watch whose
// window has passed is dropped.
func (s *service) restore(b []byte, now time.Time) error {
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detector.Restore(st.Detector)
	if w := st.Watch; w != nil && now.Before(w.Until) {
		s.watch = &watch{deploy: w.Deploy, until: w.Until, fired: w.Fired}
		s.m.watching.WithLabelValues(s.name).Set(1)
		s.log.Info("resuming the watch of a deploy after a restart", zap.String("version", w.Deploy.Version),
			zap.String("baseline", w.Deploy.Baseline), zap.Time("until", w.Until))
	}
	s.lastSaved = string(b)
	return nil
}
