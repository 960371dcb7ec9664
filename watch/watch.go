// Package watch runs the per-service watch stage: it learns each fresh
// deploy (from the version query, an API announcement or Kubernetes), opens
// the deploy's watch window, evaluates every trigger at each tick of it and
// hands the verdicts on; it saves what it learnt, so that a restart resumes
// an open watch.
package watch

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

// VerdictFunc observes every verdict of every trigger.
type VerdictFunc func(ctx context.Context, d rollout.Event, v trigger.Verdict)

// FiringFunc is called with every firing verdict, at each tick while the
// trigger fires, after the VerdictFunc. references are the baseline values
// of the service's triggers in their last verdicts, by trigger name
// (triggers without one are left out); severity is the firing trigger's,
// empty when it sets none.
type FiringFunc func(ctx context.Context, d rollout.Event, v trigger.Verdict, references map[string]float64, severity string)

// PersistFunc saves a service's state (see Service.Restore) under the
// service's name.
type PersistFunc func(ctx context.Context, service string, state []byte) error

// Options configure a Service.
type Options struct {
	// Name is the service's name, the service label of its metrics.
	Name string
	// Detector learns the service's versions and deploys.
	Detector *rollout.Detector
	// Triggers are evaluated in order at each tick of an open watch.
	Triggers []trigger.Evaluator
	// Querier runs every query: deploy detection, triggers and baseline
	// snapshots (Metrics.Querier counts its failures).
	Querier source.Querier
	// Window is how long a watch stays open after its deploy.
	Window time.Duration
	// Interval is how often the service ticks once started (Start).
	Interval time.Duration
	// Align, when set, times the first tick: Start asks it how long to
	// wait before the first tick, which otherwise comes at once. The
	// embedded source has it wait until just after its next scrape, so
	// that each tick reads the latest scrape at once rather than, every
	// time, the one before it.
	Align func() time.Duration
	// Scheduler runs the ticks, shared by the services of a daemon
	// (default: one of its own, with one worker).
	Scheduler *Scheduler
	// HistorySpan is how far back each trigger's evaluations are kept for
	// History (default DefaultHistorySpan; at most MaxHistoryPoints).
	HistorySpan time.Duration
	// Metrics are the daemon's watch metrics.
	Metrics *Metrics
	// Logger is the service's logger (default: none).
	Logger *zap.Logger
	// OnVerdict, OnFiring and Persist are optional.
	OnVerdict VerdictFunc
	OnFiring  FiringFunc
	Persist   PersistFunc
}

// Service is one service's watch stage: its deploy detector, its triggers
// and the watch window of its latest deploy. Its ticks run one at a time
// (Start, or Tick in tests); Announce, Deployed, Learn and Status may be
// called from other goroutines.
type Service struct {
	name      string
	querier   source.Querier
	window    time.Duration
	interval  time.Duration
	align     func() time.Duration
	sched     *Scheduler
	m         *Metrics
	log       *zap.Logger
	onVerdict VerdictFunc
	onFiring  FiringFunc
	persist   PersistFunc

	// mu serialises ticks with deploy announcements.
	mu       sync.Mutex
	detector *rollout.Detector
	triggers []trigger.Evaluator
	// history holds each trigger's latest evaluations, by index.
	history []*history
	watch   *window
	// lastOutcome per trigger, to log a run of no-data or errors once.
	lastOutcome map[string]trigger.Outcome
	lastVQErr   string
	// lastSaved is the SHA-256 of what persist saved last; lastKey that
	// of the same without what changes at every tick (see save), and
	// savedAt when. Sums rather than the JSON itself: compared at every
	// tick, they need not keep a service's whole state twice.
	lastSaved, lastKey [sha256.Size]byte
	savedAt            time.Time
}

// window is an open watch window after a deploy.
type window struct {
	deploy rollout.Event
	until  time.Time
	fired  bool
}

// New returns the watch stage of a service, with no watch open.
func New(o Options) (*Service, error) {
	switch {
	case o.Detector == nil:
		return nil, fmt.Errorf("watching service %s: no deploy detector", o.Name)
	case o.Querier == nil:
		return nil, fmt.Errorf("watching service %s: no querier", o.Name)
	case o.Metrics == nil:
		return nil, fmt.Errorf("watching service %s: no metrics", o.Name)
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	hist := make([]*history, len(o.Triggers))
	for i := range hist {
		hist[i] = newHistory(o.HistorySpan, o.Interval)
	}
	return &Service{
		name: o.Name, querier: o.Querier, window: o.Window, interval: o.Interval, align: o.Align, sched: o.Scheduler, m: o.Metrics, log: o.Logger,
		onVerdict: o.OnVerdict, onFiring: o.OnFiring, persist: o.Persist,
		detector: o.Detector, triggers: o.Triggers, history: hist, lastOutcome: map[string]trigger.Outcome{},
	}, nil
}

// Name returns the service's name.
func (s *Service) Name() string { return s.name }

// TriggerNames returns the names of the service's triggers, in order.
func (s *Service) TriggerNames() []string {
	names := make([]string, 0, len(s.triggers))
	for _, tr := range s.triggers {
		names = append(names, tr.Name())
	}
	return names
}

// Feed learns deploys from outside the metrics, such as a Kubernetes
// workload's revisions (rollout/kubernetes).
type Feed interface {
	// SetEmit sets the functions told of each fresh deploy and of the
	// version running when the feed starts; it is called before Run.
	SetEmit(emit func(rollout.Event), learn func(version string))
	// Run feeds until ctx ends.
	Run(ctx context.Context) error
}

// Start ticks the service every Interval on its Scheduler, the first
// time at once or after Align's wait, at the time now tells, and, when
// feed is not nil, runs the feed, whose deploys open watches (Deployed,
// Learn), until ctx ends or stop is called; stop returns once a tick under
// way and the feed ended.
func (s *Service) Start(ctx context.Context, now func() time.Time, feed Feed) (stop func()) {
	cancel := func() {} // without a feed, the scheduler's stop cancels the ticks
	var wg sync.WaitGroup
	if feed != nil {
		ctx, cancel = context.WithCancel(ctx)
		feed.SetEmit(func(ev rollout.Event) { s.Deployed(ctx, ev) }, func(v string) { s.Learn(ctx, v, now()) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := feed.Run(ctx); err != nil {
				s.log.Error("watching the workload", zap.Error(err))
			}
		}()
	}
	var delay time.Duration
	if s.align != nil {
		delay = s.align()
	}
	sched := s.sched
	if sched == nil {
		sched = NewScheduler(1, nil)
	}
	unschedule := sched.Schedule(ctx, s.interval, delay, func(ctx context.Context) { s.Tick(ctx, now()) })
	return func() {
		cancel()
		unschedule()
		wg.Wait()
	}
}

// Tick runs deploy detection at ts, then, while a watch window is open,
// every trigger, and returns the verdicts (each also counted, logged and
// handed to OnVerdict and, when firing, OnFiring). The window closes at
// its end. A tick cut short by ctx returns the verdicts so far.
func (s *Service) Tick(ctx context.Context, ts time.Time) []trigger.Verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	defer func() { s.m.evalDuration.observe(time.Since(start).Seconds(), s.name) }()
	defer s.save(ctx)

	if s.detector.HasQuery() {
		ev, err := s.detector.Observe(ctx, ts, s.querier)
		switch {
		case err != nil && ctx.Err() == nil:
			s.m.versionQueryErr.inc(s.name)
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
		return nil
	}
	if !ts.Before(s.watch.until) {
		s.endWatch("watch window ended")
		return nil
	}
	d := s.deployFor()
	verdicts := make([]trigger.Verdict, 0, len(s.triggers))
	for i, tr := range s.triggers {
		v := tr.Eval(ctx, ts, d, s.querier.Query)
		if ctx.Err() != nil {
			return verdicts // shutting down or reloading: this verdict is not evidence
		}
		s.history[i].add(v)
		s.record(ctx, v)
		verdicts = append(verdicts, v)
	}
	return verdicts
}

func (s *Service) deployFor() trigger.Deploy {
	d := s.watch.deploy
	return trigger.Deploy{Service: s.name, Version: d.Version, Baseline: d.Baseline, At: d.At, Lead: s.lead()}
}

// lead is how long before a deploy's time its version may already have
// served (trigger.Deploy.Lead): the version query's longest range plus one
// evaluation interval. The query sees a version once a rate over its range
// has two of its samples, at the first tick after the second one, so the
// version's first sample is at most that long before the deploy time as
// long as the range spans a scrape and an evaluation interval. A deploy
// announced or learnt from Kubernetes gets the same lead: its time is when
// Guardian heard of it, which may be after the version's first requests.
func (s *Service) lead() time.Duration {
	return s.detector.Range() + s.interval
}

// startWatch arms the triggers for a fresh deploy. Callers hold s.mu.
func (s *Service) startWatch(ctx context.Context, ev rollout.Event) {
	if s.watch != nil {
		s.log.Info("new deploy replaces the open watch", zap.String("previous", s.watch.deploy.Version))
	}
	s.watch = &window{deploy: ev, until: ev.At.Add(s.window)}
	s.m.deploys.inc(s.name, ev.Origin.String())
	s.m.watching.set(1, s.name)
	s.log.Info("deploy seen: watching",
		zap.String("version", ev.Version), zap.String("baseline", ev.Baseline), zap.String("baseline_why", ev.BaselineWhy),
		zap.Bool("redeploy", ev.Redeploy), zap.String("via", ev.Origin.String()), zap.Time("until", s.watch.until))
	d := s.deployFor()
	for i, tr := range s.triggers {
		s.history[i].reset()
		tr.Reset()
		s.m.triggerState.set(0, s.name, tr.Name())
		s.m.clearValues(s.name, tr.Name())
		// The baseline's value before the deploy, taken now while the
		// source still has it (the embedded source keeps a short history).
		if d.Baseline == "" {
			continue
		}
		v, ok, err := tr.Snapshot(ctx, d, s.querier.Query)
		switch {
		case err != nil:
			s.log.Warn("baseline snapshot failed; will retry at evaluation", zap.String("trigger", tr.Name()), zap.Error(err))
		case ok:
			s.log.Debug("baseline snapshot", zap.String("trigger", tr.Name()), zap.String("baseline", d.Baseline), zap.Float64("value", v))
		}
	}
}

// endWatch closes the watch window. Callers hold s.mu.
func (s *Service) endWatch(why string) {
	s.log.Info(why, zap.String("version", s.watch.deploy.Version), zap.Bool("fired", s.watch.fired))
	s.watch = nil
	s.m.watching.set(0, s.name)
	for _, tr := range s.triggers {
		tr.Reset()
		s.m.triggerState.set(0, s.name, tr.Name())
		s.m.clearValues(s.name, tr.Name())
	}
}

// record counts, logs and publishes a verdict. Callers hold s.mu.
func (s *Service) record(ctx context.Context, v trigger.Verdict) {
	s.m.evaluations.inc(s.name, v.Trigger, v.Outcome.String())
	s.m.triggerState.set(float64(v.State), s.name, v.Trigger)
	s.m.setValues(s.name, v)
	if len(v.Evidence.Warnings) > 0 {
		s.m.warnings.inc(s.name)
	}
	// The fields (the evidence's summary above all) are built only for
	// an entry that is written: most ticks log at debug level.
	fields := func(more ...zap.Field) []zap.Field {
		return append([]zap.Field{
			zap.String("trigger", v.Trigger), zap.String("version", s.watch.deploy.Version),
			zap.String("outcome", v.Outcome.String()), zap.String("state", v.State.String()),
			zap.String("evidence", v.Summary()),
		}, more...)
	}
	prev, seen := s.lastOutcome[v.Trigger]
	s.lastOutcome[v.Trigger] = v.Outcome
	switch {
	case v.Changed && v.State == trigger.Firing:
		s.watch.fired = true
		s.m.triggersFired.inc(s.name, v.Trigger)
		s.log.Warn("trigger firing", fields(zap.String("baseline", s.watch.deploy.Baseline))...)
	case v.Changed:
		s.log.Info("trigger state changed", fields(zap.String("from", v.Previous.String()))...)
	case isTrouble(v.Outcome) && (!seen || prev != v.Outcome):
		s.log.Warn("trigger cannot judge", fields(zap.Error(v.Err))...)
	default:
		if ce := s.log.Check(zap.DebugLevel, "trigger evaluated"); ce != nil {
			ce.Write(fields()...)
		}
	}
	if s.onVerdict != nil {
		s.onVerdict(ctx, s.watch.deploy, v)
	}
	// After the verdict is told: the incident follows the firing trigger.
	if v.State == trigger.Firing && s.onFiring != nil {
		refs, severity := s.references(v.Trigger)
		s.onFiring(ctx, s.watch.deploy, v, refs, severity)
	}
}

// references returns every trigger's last baseline value and the severity
// of the trigger named firing.
func (s *Service) references(firing string) (map[string]float64, string) {
	refs := map[string]float64{}
	severity := ""
	for _, tr := range s.triggers {
		if tr.Name() == firing {
			severity = tr.Severity()
		}
		if last, ok := tr.Last(); ok && last.Evidence.BaselineValue != nil && !math.IsNaN(*last.Evidence.BaselineValue) {
			refs[tr.Name()] = *last.Evidence.BaselineValue
		}
	}
	return refs, severity
}

func isTrouble(o trigger.Outcome) bool {
	return o == trigger.NoData || o == trigger.NaN || o == trigger.QueryError
}

// Announce records a deploy announced through the API at ts and opens its
// watch. The baseline defaults to the version current until now.
func (s *Service) Announce(ctx context.Context, version, baseline string, ts time.Time) (rollout.Event, error) {
	return s.AnnounceChange(ctx, version, baseline, rollout.Change{}, ts)
}

// AnnounceChange is Announce with what the deploy changed (commit,
// author, change URL), remembered with the version.
func (s *Service) AnnounceChange(ctx context.Context, version, baseline string, c rollout.Change, ts time.Time) (rollout.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev, err := s.detector.AnnounceChange(version, baseline, c, ts)
	if err != nil {
		return rollout.Event{}, err
	}
	s.startWatch(ctx, ev)
	s.save(ctx)
	return ev, nil
}

// Deployed records a deploy seen by a workload watcher (a new Kubernetes
// revision) and opens its watch; a version seen before is a rollback to
// it, learnt without a watch.
func (s *Service) Deployed(ctx context.Context, ev rollout.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.detector.Returns(ev.Version) {
		// The version the latest deploy replaced is back: a rollback, not
		// a fresh deploy. Any other version, even one seen before, is a
		// deploy to judge.
		s.log.Info("deployment went back to the version before the latest deploy", zap.String("version", ev.Version))
		s.detector.Learn(ev.Version, ev.At)
		s.save(ctx)
		return
	}
	var c rollout.Change
	if ev.Change != nil {
		c = *ev.Change
	}
	if _, err := s.detector.AnnounceChange(ev.Version, ev.Baseline, c, ev.At); err != nil {
		s.log.Warn("deploy from Kubernetes not usable", zap.String("version", ev.Version), zap.Error(err))
		return
	}
	if ev.BaselineChange != nil {
		s.detector.Describe(*ev.BaselineChange)
	}
	ev.Change, ev.BaselineChange = s.detector.ChangeOf(ev.Version), s.detector.ChangeOf(ev.Baseline)
	s.startWatch(ctx, ev)
	s.save(ctx)
}

// Learn records the version a workload runs when watching it starts.
func (s *Service) Learn(ctx context.Context, version string, ts time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detector.Learn(version, ts)
	s.save(ctx)
}

// TakeOver moves what old learnt into s across a config reload: the
// versions seen (when keepDetector, that is the deploy settings did not
// change), the open watch (its end recomputed with s's window), the state
// of every trigger whose namesake in old judges the same way, and the
// outcomes logged last. Neither may be running.
func (s *Service) TakeOver(old *Service, keepDetector bool) {
	old.mu.Lock()
	defer old.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if keepDetector {
		s.detector.CopyStateFrom(old.detector)
	}
	if old.watch != nil {
		w := *old.watch
		w.until = w.deploy.At.Add(s.window)
		s.watch = &w
	}
	prev := map[string]int{}
	for i, tr := range old.triggers {
		prev[tr.Name()] = i
	}
	for i, tr := range s.triggers {
		if j, ok := prev[tr.Name()]; ok {
			tr.CopyStateFrom(old.triggers[j])
			s.history[i].copyFrom(old.history[j])
		}
	}
	for k, v := range old.lastOutcome {
		s.lastOutcome[k] = v
	}
}

// RollbackTarget returns the deploy a person's rollback undoes, and the
// baseline's last values by trigger: the open watch's deploy (to its
// baseline, or to the version to), else the version serving now, which
// needs to. It changes nothing.
func (s *Service) RollbackTarget(to string, now time.Time) (rollout.Event, map[string]float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.watch; w != nil {
		d := w.deploy
		if to == "" || to == d.Baseline {
			refs, _ := s.references("")
			return d, refs, nil
		}
		if to == d.Version {
			return rollout.Event{}, nil, fmt.Errorf("%w: %s %s is the version being rolled back", rollout.ErrNoTarget, s.name, to)
		}
		d.Baseline, d.BaselineWhy = to, "chosen by the person who asked for the rollback"
		d.BaselineChange = s.detector.ChangeOf(to)
		return d, nil, nil
	}
	cur := s.detector.Current()
	switch {
	case cur == "":
		return rollout.Event{}, nil, fmt.Errorf("%w: no version of %s has been seen yet", rollout.ErrNoTarget, s.name)
	case to == "":
		return rollout.Event{}, nil, fmt.Errorf("%w: %s %s has no open watch, so its previous version is not known here: say which version to roll back to", rollout.ErrNoTarget, s.name, cur)
	case to == cur:
		return rollout.Event{}, nil, fmt.Errorf("%w: %s already runs %s", rollout.ErrNoTarget, s.name, to)
	}
	return rollout.Event{Service: s.name, Version: cur, Baseline: to, BaselineWhy: "chosen by the person who asked for the rollback", At: now,
		Change: s.detector.ChangeOf(cur), BaselineChange: s.detector.ChangeOf(to)}, nil, nil
}
