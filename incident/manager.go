package incident

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/verify"
)

// bucket holds the incident records.
const bucket = "incidents"

// Errors of the Manager callers branch on (besides Next's).
var (
	ErrNotFound = errors.New("no such incident")
	// ErrNoService: the incident's service is not configured now; the
	// incident waits for it.
	ErrNoService = errors.New("service not configured")
	// ErrNotOwner: another replica drives the incident's service (see
	// Options.Owns); the request goes to that replica.
	ErrNotOwner = errors.New("another replica drives this service")
)

// FaultBeforeReport is the fault point reached after a transition whose
// effects write the report has been saved, and before the report is
// written. Tests crash Guardian there.
const FaultBeforeReport = "incident.before-report"

// retryDelay spaces retries of a step that failed for a passing reason (the
// store, a service missing after a reload).
const retryDelay = 5 * time.Second

// Service is what the driver needs of a service's configuration now; it is
// looked up at each transition, so a reload takes effect on open incidents.
type Service struct {
	Rules Rules
	// Application and Database are the executors Rules name; nil when none.
	Application, Database executor.Executor
	Verifier              *verify.Verifier
	Query                 trigger.QueryFunc
	// Gate asks the go/no-go channels that must be asked; nil when none.
	Gate approval.Gate
	// Serving returns the versions serving now, most traffic first; nil
	// when deploy detection cannot tell (verification then judges the
	// baseline).
	Serving func() []string
	// Team are the service's responders, named on the incident when it is
	// declared.
	Team []Responder
	// Mode is the service's mode, given to the incidents declared now
	// (empty: enforce).
	Mode Mode
	// Watching returns the deploy the service's watch judges now (ok false
	// when no watch is open); a shadow incident closes once it is not its
	// own. Nil when unknown: the incident then stays open.
	Watching func() (version string, deployedAt time.Time, ok bool)
}

// Env looks services up.
type Env interface {
	Service(name string) (Service, bool)
}

// Publisher hands the timeline entry rec.Timeline[i] (of a published type)
// to the notification outbox. It must persist it before returning nil.
type Publisher interface {
	Publish(ctx context.Context, rec Record, i int) error
}

// Reporter measures an incident's impact and writes its report and, when
// postmortem is set, the post-mortem invite. Writing again must replace,
// not add: the driver runs it again when Guardian stopped before it
// recorded the result.
type Reporter interface {
	Report(ctx context.Context, rec Record, postmortem bool) (ReportResult, error)
}

// Options configure a Manager.
type Options struct {
	Store     store.Store
	Env       Env
	Publisher Publisher
	Reporter  Reporter
	Logger    *zap.Logger
	Registry  prometheus.Registerer
	// Now is the clock of the incidents' times and deadlines (default
	// SteadyClock).
	Now func() time.Time
	// Fault, when set, is called at the driver's fault points (such as
	// FaultBeforeReport); tests use it to crash Guardian there.
	Fault func(point string)
	// Owns, when set, says whether this replica drives a service's
	// incidents now (replicas sharing the services out): the Manager
	// declares, drives and resumes only those, and Reconcile follows the
	// changes. Nil drives every service.
	Owns func(service string) bool
}

// SteadyClock returns a clock that reads the wall clock once and then
// advances with the monotonic clock. A step of the system clock while
// Guardian runs (NTP correcting a wrong clock, a date -s) then moves no
// deadline of an open incident: an approval's auto_after, the recovery's
// stable period and timeout all last what they say. The times on the
// timeline follow a corrected wall clock from the next start.
func SteadyClock() func() time.Time {
	return steady(time.Now(), time.Since)
}

func steady(start time.Time, since func(time.Time) time.Duration) func() time.Time {
	return func() time.Time { return start.Add(since(start)) }
}

// Manager is the driver of the incident state machine: it declares
// incidents, applies events through Next, saves every transition before it
// runs the transition's effects, and feeds the effects' outcomes back as
// events. A restart resumes every incident where it stopped and never runs
// a rollback step twice.
type Manager struct {
	st    store.Store
	env   Env
	pub   Publisher
	rep   Reporter
	log   *zap.Logger
	now   func() time.Time
	fault func(string)
	owns  func(string) bool
	m     *managerMetrics
	// spareID is a number taken for an incident that could not be saved,
	// for the next one.
	spareID uint64

	mu  sync.Mutex // serialises transitions and the maps below
	ctx context.Context
	// open is, by service, its open incident.
	open map[string]int64
	// last is, by service, the deploy of its latest incident: a trigger
	// still firing for that deploy after the incident closed (or was held)
	// does not open another.
	last map[string]lastIncident
	// timers are the pending delayed effects, by effect key; running the
	// effects under way, by key.
	timers  map[string]*pendingTimer
	running map[string]bool
	wg      sync.WaitGroup
	// driven are the services whose incidents this Manager drives, each
	// with the context and the wait group of its incidents' effects;
	// serviceOf is the service of each incident it has seen.
	driven    map[string]*drivenService
	serviceOf map[int64]string
	// started is closed once Run drives incidents.
	started     chan struct{}
	startedOnce sync.Once
}

// drivenService is one service whose incidents a Manager drives: the
// effects of its incidents run under ctx and are counted in wg, so that
// letting the service go (another replica takes it) cancels them and waits
// for them.
type drivenService struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// pendingTimer is a delayed effect of a driven service's incident.
type pendingTimer struct {
	t *time.Timer
	d *drivenService
}

type managerMetrics struct {
	declared  *prometheus.CounterVec
	rollbacks *prometheus.CounterVec
	decisions *prometheus.CounterVec
	shadow    *prometheus.CounterVec
	open      *prometheus.GaugeVec
}

type lastIncident struct {
	id       int64
	version  string
	deployed time.Time
}

// NewManager builds a manager; Run starts it.
func NewManager(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = SteadyClock()
	}
	if o.Fault == nil {
		o.Fault = func(string) {}
	}
	if o.Owns == nil {
		o.Owns = func(string) bool { return true }
	}
	m := &Manager{
		st: o.Store, env: o.Env, pub: o.Publisher, rep: o.Reporter, log: o.Logger, now: o.Now, fault: o.Fault, owns: o.Owns,
		open: map[string]int64{}, last: map[string]lastIncident{}, timers: map[string]*pendingTimer{}, running: map[string]bool{},
		driven: map[string]*drivenService{}, serviceOf: map[int64]string{}, started: make(chan struct{}),
		m: &managerMetrics{
			declared: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "guardian_incidents_declared_total", Help: "Incidents declared.",
			}, []string{"service", "severity"}),
			rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "guardian_rollbacks_total", Help: "Rollbacks run, by step and result (succeeded, failed, unknown).",
			}, []string{"service", "step", "result"}),
			decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "guardian_decisions_total", Help: "Go/no-go decisions, by step, outcome and whether a human or a policy decided.",
			}, []string{"service", "step", "decision", "by"}),
			shadow: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "guardian_shadow_decisions_total", Help: "What Guardian would have done for incidents of services in shadow mode, by decision (rollback).",
			}, []string{"service", "decision"}),
			open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "guardian_incidents_open", Help: "Open incidents by state.",
			}, []string{"service", "state"}),
		},
	}
	if o.Registry != nil {
		o.Registry.MustRegister(m.m.declared, m.m.rollbacks, m.m.decisions, m.m.shadow, m.m.open)
	}
	return m
}

// Run resumes every incident that has work left (open ones, reports not
// yet written, events not yet published) of the services it owns, then
// drives incidents until ctx ends, and waits for the effects under way.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	m.startedOnce.Do(func() { close(m.started) })
	if err := m.TakeUp(ctx); err != nil {
		m.mu.Lock()
		m.ctx = nil
		m.mu.Unlock()
		return err
	}
	<-ctx.Done()
	// No effect starts once ctx is nil (every start checks it under m.mu),
	// so every wg.Add happens before the Wait.
	m.mu.Lock()
	m.ctx = nil
	for k, t := range m.timers {
		if t.t.Stop() {
			t.d.wg.Done()
			m.wg.Done()
		}
		delete(m.timers, k)
	}
	for _, d := range m.driven {
		d.cancel()
	}
	clear(m.driven)
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// Started is closed once Run drives incidents: TakeUp does nothing
// before.
func (m *Manager) Started() <-chan struct{} { return m.started }

// Reconcile follows a change of the services Owns names: LetGo, then
// TakeUp. Run calls TakeUp at the start; call Reconcile (or the two) again
// whenever Owns changes. Before Run it does nothing.
func (m *Manager) Reconcile(ctx context.Context) error {
	m.LetGo()
	return m.TakeUp(ctx)
}

// LetGo stops driving the incidents of the services Owns no longer names:
// their pending timers are stopped and their effects under way (a rollback
// step, a probe) cancelled and waited for; another replica resumes them
// from the store. It reads nothing from the store: a replica calls it
// before it releases the services' Leases.
func (m *Manager) LetGo() {
	m.mu.Lock()
	var released []*drivenService
	for service, d := range m.driven {
		if !m.owns(service) {
			released = append(released, d)
			m.releaseLocked(service, d)
		}
	}
	m.mu.Unlock()
	for _, d := range released {
		d.wg.Wait()
	}
}

// TakeUp resumes the incidents that have work left (open ones, reports
// not yet written, events not yet published) of the services Owns names
// that this Manager does not drive yet, reading them with one List.
func (m *Manager) TakeUp(ctx context.Context) error {
	// Holding the lock while listing: an incident declared meanwhile is
	// either listed here or driven by Declare, never missed.
	m.mu.Lock()
	if m.ctx == nil {
		m.mu.Unlock()
		return nil
	}
	recs, err := m.List(ctx)
	if err != nil {
		m.mu.Unlock()
		return fmt.Errorf("loading incidents: %w", err)
	}
	var resume []Record
	adopted := map[string]bool{}
	for i := len(recs) - 1; i >= 0; i-- { // oldest first
		r := recs[i]
		if _, ok := m.driven[r.Service]; (ok && !adopted[r.Service]) || !m.owns(r.Service) {
			continue
		}
		if !adopted[r.Service] {
			m.driveLocked(r.Service)
			adopted[r.Service] = true
		}
		m.serviceOf[r.ID] = r.Service
		if l, ok := m.last[r.Service]; !ok || r.ID > l.id {
			m.last[r.Service] = lastIncident{r.ID, r.Version, r.DeployedAt}
		}
		if r.State.Open() {
			m.open[r.Service] = r.ID
			m.m.open.WithLabelValues(r.Service, string(r.State)).Inc()
		}
		if r.State.Open() || r.Published < len(r.Timeline) || !r.reportDone() {
			resume = append(resume, r)
		}
	}
	m.mu.Unlock()
	for _, r := range resume {
		m.log.Info("resuming incident", zap.Int64("incident", r.ID), zap.String("service", r.Service), zap.String("state", r.State.String()))
		m.restart(ctx, r.ID)
	}
	return nil
}

// driveLocked starts driving service's incidents; m.mu is held and m.ctx
// set.
func (m *Manager) driveLocked(service string) *drivenService {
	if d, ok := m.driven[service]; ok {
		return d
	}
	ctx, cancel := context.WithCancel(m.ctx)
	d := &drivenService{ctx: ctx, cancel: cancel}
	m.driven[service] = d
	return d
}

// releaseLocked stops driving service's incidents: their pending timers
// are stopped, their effects under way cancelled (the caller waits for
// d.wg), and what this Manager knew of them forgotten, so that taking the
// service back reads them afresh. m.mu is held.
func (m *Manager) releaseLocked(service string, d *drivenService) {
	m.log.Info("letting another replica drive the service's incidents", zap.String("service", service))
	d.cancel()
	for k, t := range m.timers {
		if t.d == d && t.t.Stop() {
			d.wg.Done()
			m.wg.Done()
			delete(m.timers, k)
		}
	}
	for id, s := range m.serviceOf {
		if s == service {
			delete(m.serviceOf, id)
		}
	}
	delete(m.driven, service)
	delete(m.open, service)
	delete(m.last, service)
	m.m.open.DeletePartialMatch(prometheus.Labels{"service": service})
}

// effectLocked is the context the effects of incident id run under and
// its service's bookkeeping, or nil when this Manager does not drive that
// service (or is stopping). m.mu is held.
func (m *Manager) effectLocked(id int64) (context.Context, *drivenService) {
	if m.ctx == nil {
		return nil, nil
	}
	d, ok := m.driven[m.serviceOf[id]]
	if !ok {
		return nil, nil
	}
	return d.ctx, d
}

// restart applies Restart to id, again later while its service is missing.
func (m *Manager) restart(ctx context.Context, id int64) {
	_, err := m.apply(ctx, id, Restart{})
	switch {
	case err == nil, errors.Is(err, ErrIgnored):
	case errors.Is(err, ErrNoService):
		m.log.Warn("service no longer configured; the incident waits", zap.Int64("incident", id))
		m.mu.Lock()
		m.after(id, prefix(id)+"restart", m.now().Add(retryDelay), func(ctx context.Context) { m.restart(ctx, id) })
		m.mu.Unlock()
	default:
		m.log.Error("resuming incident", zap.Int64("incident", id), zap.Error(err))
	}
}

func (r Record) reportDone() bool { return r.State.Open() || r.Report != nil }

// Declare opens an incident for a firing trigger. When the service has an
// open incident for the same deploy, the firing is added to its timeline
// instead (once per trigger); an open incident for an older deploy is
// closed as superseded first, unless a rollback step of it is running
// (then nothing is declared: the trigger fires again at the next tick).
func (m *Manager) Declare(ctx context.Context, d rollout.Event, v trigger.Verdict, references map[string]float64, severity string) (Record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.open[d.Service]; ok {
		rec, _, err := m.load(ctx, id)
		if err != nil {
			return Record{}, false, err
		}
		if !d.At.After(rec.DeployedAt) || rec.Version == d.Version && rec.DeployedAt.Equal(d.At) {
			next, err := m.applyLocked(ctx, id, AlsoFired{Trigger: v.Trigger, Summary: v.Summary()})
			if err != nil && !rejected(err) {
				return rec, false, err
			}
			if err != nil {
				next = rec
			}
			return next, false, nil
		}
		if _, err := m.applyLocked(ctx, id, Superseded{Version: d.Version, DeployedAt: d.At}); err != nil {
			if errors.Is(err, ErrBusy) {
				return rec, false, nil
			}
			if !errors.Is(err, ErrFinished) {
				return rec, false, err
			}
		}
	}
	if l, ok := m.last[d.Service]; ok && l.version == d.Version && l.deployed.Equal(d.At) {
		rec, _, err := m.load(ctx, l.id)
		return rec, false, err
	}
	rec, effs0, err := m.createLocked(ctx, Declare{
		Service: d.Service, Severity: severity, Version: d.Version, Baseline: d.Baseline, BaselineWhy: d.BaselineWhy,
		Trigger: v.Trigger, Evidence: EvidenceFrom(v), Changes: ChangesOf(d), DeployedAt: d.At, References: references,
	})
	if err != nil {
		return Record{}, false, err
	}
	m.log.Warn("incident declared", zap.Int64("incident", rec.ID), zap.String("service", d.Service),
		zap.String("version", d.Version), zap.String("baseline", d.Baseline), zap.String("evidence", v.Summary()))
	svc, _ := m.env.Service(rec.Service)
	rec = m.runLocked(ctx, rec, effs0, svc)
	return rec, true, nil
}

// ErrOpenIncident is returned by RequestRollback when the service already
// has an open incident: that one is approved or closed instead.
var ErrOpenIncident = errors.New("an incident is open")

// RequestRollback declares an incident because a person asked to roll the
// service back from d.Version to d.Baseline, for a reason no trigger shows:
// the request counts as the go for the application step, which then runs
// the same executor, verification and report as a detected incident.
func (m *Manager) RequestRollback(ctx context.Context, d rollout.Event, references map[string]float64, severity string, h Requester) (Record, error) {
	if err := h.validate(); err != nil {
		return Record{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.open[d.Service]; ok {
		rec, _, err := m.load(ctx, id)
		if err != nil {
			return Record{}, err
		}
		if rec.Shadowed() {
			return rec, fmt.Errorf("%w for %s: incident %d, in shadow mode; close it first (guardian close %d --reason ...)", ErrOpenIncident, d.Service, id, id)
		}
		return rec, fmt.Errorf("%w for %s: incident %d (%s); approve it (guardian approve %d) or close it first", ErrOpenIncident, d.Service, id, rec.State, id)
	}
	rec, effs0, err := m.createLocked(ctx, Declare{
		Service: d.Service, Severity: severity, Version: d.Version, Baseline: d.Baseline, BaselineWhy: d.BaselineWhy,
		Changes: ChangesOf(d), DeployedAt: d.At, References: references, RequestedBy: &h,
	})
	if err != nil {
		return Record{}, err
	}
	m.log.Warn("incident declared by a person", zap.Int64("incident", rec.ID), zap.String("service", d.Service),
		zap.String("version", d.Version), zap.String("baseline", d.Baseline), zap.String("by", h.By), zap.String("reason", h.Reason))
	svc, _ := m.env.Service(rec.Service)
	return m.runLocked(ctx, rec, effs0, svc), nil
}

// createLocked numbers, applies and saves the declaration d.
func (m *Manager) createLocked(ctx context.Context, d Declare) (Record, []Effect, error) {
	if !m.owns(d.Service) {
		return Record{}, nil, fmt.Errorf("declaring an incident of %s: %w", d.Service, ErrNotOwner)
	}
	idn := m.spareID
	if idn == 0 {
		var err error
		if idn, err = m.st.NextID(ctx, bucket); err != nil {
			return Record{}, nil, fmt.Errorf("numbering incident: %w", err)
		}
	}
	d.ID = int64(idn)
	if svc, ok := m.env.Service(d.Service); ok {
		d.Team, d.Mode = svc.Team, svc.Mode
	}
	rec, effs, err := Next(Record{}, d, Rules{}, m.now())
	if err != nil {
		m.spareID = idn
		return Record{}, nil, err
	}
	if err := m.create(ctx, rec); err != nil {
		// The next declaration (the trigger fires again at the next tick)
		// takes the same number, so a store that fails for a while (a
		// full disk) leaves no gap in the incidents' numbers.
		if !errors.Is(err, store.ErrConflict) {
			m.spareID = idn
		}
		return Record{}, nil, err
	}
	m.spareID = 0
	m.serviceOf[rec.ID] = d.Service
	if m.ctx != nil {
		m.driveLocked(d.Service)
	}
	m.open[d.Service] = rec.ID
	m.last[d.Service] = lastIncident{rec.ID, d.Version, d.DeployedAt}
	m.m.declared.WithLabelValues(d.Service, d.Severity).Inc()
	m.m.open.WithLabelValues(rec.Service, string(rec.State)).Inc()
	return rec, effs, nil
}

// rejected reports whether err is Next refusing an event.
func rejected(err error) bool {
	for _, e := range []error{ErrIgnored, ErrNoDecision, ErrInvalidVote, ErrShadow, ErrBusy, ErrFinished} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Vote records a person's go or no-go for the step the incident waits on.
func (m *Manager) Vote(ctx context.Context, v approval.Vote) (Record, error) {
	if err := v.Validate(); err != nil {
		return Record{}, err
	}
	return m.apply(ctx, v.Incident, Voted{Vote: v})
}

// Close closes an open incident without resolution: by names who, channel
// how, reason why. An incident whose rollback step runs cannot be closed
// until the step ends (ErrBusy).
func (m *Manager) Close(ctx context.Context, id int64, by, channel, reason string) (Record, error) {
	return m.apply(ctx, id, CloseRequested{By: by, Channel: channel, Reason: reason})
}

// DeliveryFailed records on incident id's timeline that its notification
// of type typ to receiver was given up, and why.
func (m *Manager) DeliveryFailed(ctx context.Context, id int64, receiver, typ, reason string) error {
	_, err := m.apply(ctx, id, DeliveryFailed{Receiver: receiver, Type: typ, Err: reason})
	return err
}

// Get returns incident id.
func (m *Manager) Get(ctx context.Context, id int64) (Record, error) {
	r, _, err := m.load(ctx, id)
	return r, err
}

// List returns every incident, newest first.
func (m *Manager) List(ctx context.Context) ([]Record, error) {
	kvs, err := m.st.List(ctx, bucket)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(kvs))
	for _, kv := range kvs {
		var r Record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("decoding incident %s: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out, nil
}

// OpenFor returns the open incident of service, if any.
func (m *Manager) OpenFor(service string) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.open[service]
	return id, ok
}

// apply is one transition: load, Next, save, then run the effects.
func (m *Manager) apply(ctx context.Context, id int64, ev Event) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applyLocked(ctx, id, ev)
}

// needsService reports whether ev cannot be judged without the service's
// rules (an approval, a probe, a restart that may start a step).
func needsService(ev Event) bool {
	switch ev.(type) {
	case Restart, Tick, Voted, Probed:
		return true
	}
	return false
}

func (m *Manager) applyLocked(ctx context.Context, id int64, ev Event) (Record, error) {
	for attempt := 0; ; attempt++ {
		rec, rev, err := m.load(ctx, id)
		if err != nil {
			return Record{}, err
		}
		if !m.owns(rec.Service) {
			return rec, fmt.Errorf("incident %d of %s: %w", id, rec.Service, ErrNotOwner)
		}
		m.serviceOf[id] = rec.Service
		if m.ctx != nil {
			m.driveLocked(rec.Service)
		}
		svc, ok := m.env.Service(rec.Service)
		if !ok && needsService(ev) && rec.State.Open() {
			return rec, fmt.Errorf("incident %d: %w: %s", id, ErrNoService, rec.Service)
		}
		next, effs, err := Next(rec, ev, svc.Rules, m.now())
		if err != nil {
			return rec, err
		}
		if changed(rec, next) {
			if err := m.save(ctx, next, rev); err != nil {
				if errors.Is(err, store.ErrConflict) && attempt < 3 {
					continue // another replica wrote it: judge again on the new record
				}
				return rec, err
			}
			m.observeLocked(rec, next)
		}
		return m.runLocked(ctx, next, effs, svc), nil
	}
}

func changed(a, b Record) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return !bytes.Equal(x, y)
}

// observeLocked logs and counts what a transition did.
func (m *Manager) observeLocked(before, after Record) {
	log := m.log.With(zap.Int64("incident", after.ID), zap.String("service", after.Service))
	if before.State != after.State {
		m.m.open.WithLabelValues(after.Service, string(before.State)).Dec()
		if after.State.Open() {
			m.m.open.WithLabelValues(after.Service, string(after.State)).Inc()
		} else if m.open[after.Service] == after.ID {
			delete(m.open, after.Service)
		}
		log.Info("incident state", zap.String("from", string(before.State)), zap.String("to", string(after.State)))
	}
	for _, d := range after.Decisions[len(before.Decisions):] {
		verdict := "denied"
		if d.Approved {
			verdict = "approved"
		}
		by := "human"
		if strings.HasPrefix(d.By, "policy:") {
			by = "policy"
		}
		m.m.decisions.WithLabelValues(after.Service, d.Step, verdict, by).Inc()
		log.Info("go/no-go", zap.String("step", d.Step), zap.String("decision", verdict), zap.String("by", d.By), zap.String("channel", d.Channel))
	}
	for _, e := range after.Timeline[min(len(before.Timeline), len(after.Timeline)):] {
		if e.Type == event.ShadowDecision {
			m.m.shadow.WithLabelValues(after.Service, e.Data["decision"]).Inc()
			log.Warn("shadow mode: would have acted", zap.String("decision", e.Data["decision"]),
				zap.String("version", after.Version), zap.String("baseline", after.Baseline))
		}
	}
	for k, a := range after.Actions {
		if b, ok := before.Actions[k]; ok && b.State == ActionStarted && a.State != ActionStarted {
			m.m.rollbacks.WithLabelValues(after.Service, strings.TrimPrefix(a.Kind, "rollback."), string(a.State)).Inc()
		}
	}
}

// runLocked runs the effects of a saved transition: Publish at once, the
// others in the background (none once Run is stopping: the next Run's
// Restart brings them back). It returns the record as saved last.
func (m *Manager) runLocked(ctx context.Context, rec Record, effs []Effect, svc Service) Record {
	for _, e := range effs {
		if p, ok := e.(Publish); ok {
			if r, ok := m.publishLocked(ctx, p.Incident); ok {
				rec = r
			}
		}
	}
	if m.ctx == nil {
		return rec
	}
	id := rec.ID
	for _, e := range effs {
		switch e := e.(type) {
		case WakeAt:
			m.after(id, e.Key(), e.At, func(ctx context.Context) { m.tick(ctx, id) })
		case Probe:
			m.after(id, e.Key(), e.At, func(ctx context.Context) { m.probe(ctx, id) })
		case Observe:
			m.after(id, e.Key(), e.At, func(ctx context.Context) { m.observe(ctx, id) })
		case WriteReport:
			m.fault(FaultBeforeReport)
			m.after(id, e.Key(), e.At, func(ctx context.Context) { m.report(ctx, id, e.Postmortem) })
		case AskApproval:
			if svc.Gate != nil {
				req := e.Request
				m.spawn(id, e.Key(), func(ctx context.Context) {
					if err := svc.Gate.Request(ctx, req); err != nil {
						m.log.Warn("asking for the go/no-go", zap.Int64("incident", id), zap.Error(err))
					}
				})
			}
		case RunStep:
			m.spawn(id, e.Key(), func(ctx context.Context) { m.runStep(ctx, rec, e.Step, e.StepKey, svc, false) })
		case AwaitStep:
			m.spawn(id, e.Key(), func(ctx context.Context) { m.runStep(ctx, rec, e.Step, e.StepKey, svc, true) })
		}
	}
	return rec
}

// after runs f, an effect of incident id, at time at (replacing a pending
// one of the same key), in the background. Callers hold m.mu.
func (m *Manager) after(id int64, key string, at time.Time, f func(ctx context.Context)) {
	ctx, d := m.effectLocked(id)
	if d == nil {
		return
	}
	if t, ok := m.timers[key]; ok && t.t.Stop() {
		t.d.wg.Done()
		m.wg.Done()
	}
	m.wg.Add(1)
	d.wg.Add(1)
	t := &pendingTimer{d: d}
	t.t = time.AfterFunc(max(at.Sub(m.now()), 0), func() {
		defer m.wg.Done()
		defer d.wg.Done()
		m.mu.Lock()
		mine := m.timers[key] == t
		if mine {
			delete(m.timers, key)
		}
		m.mu.Unlock()
		if mine && ctx.Err() == nil {
			f(ctx)
		}
	})
	m.timers[key] = t
}

// spawn runs f, an effect of incident id, in the background unless an
// effect of the same key runs. Callers hold m.mu.
func (m *Manager) spawn(id int64, key string, f func(ctx context.Context)) {
	ctx, d := m.effectLocked(id)
	if d == nil || m.running[key] {
		return
	}
	m.running[key] = true
	m.wg.Add(1)
	d.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer d.wg.Done()
		defer func() {
			m.mu.Lock()
			delete(m.running, key)
			m.mu.Unlock()
		}()
		f(ctx)
	}()
}

// feed applies the outcome of an effect, retrying while the store or the
// service's configuration is not there, until ctx ends.
func (m *Manager) feed(ctx context.Context, id int64, ev Event) {
	for ctx.Err() == nil {
		_, err := m.apply(ctx, id, ev)
		if err == nil || rejected(err) {
			return
		}
		m.log.Error("recording an incident's step failed; retrying", zap.Int64("incident", id), zap.Error(err))
		sleep(ctx, retryDelay)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (m *Manager) tick(ctx context.Context, id int64) {
	_, err := m.apply(ctx, id, Tick{})
	if errors.Is(err, ErrNoService) || err != nil && !rejected(err) {
		m.log.Warn("incident waits", zap.Int64("incident", id), zap.Error(err))
		m.mu.Lock()
		m.after(id, prefix(id)+"wake", m.now().Add(retryDelay), func(ctx context.Context) { m.tick(ctx, id) })
		m.mu.Unlock()
	}
}

// runStep runs (or, after a restart, awaits) a rollback step and feeds its
// outcome back. When ctx ends first the step stays started: the next Run
// awaits it and never runs it again.
func (m *Manager) runStep(ctx context.Context, rec Record, step, key string, svc Service, await bool) {
	exe := svc.Application
	if step == executor.StepDatabase {
		exe = svc.Database
	}
	t := executor.Target{Incident: rec.ID, Service: rec.Service, Version: rec.Version, Baseline: rec.Baseline,
		Step: step, IdempotencyKey: key, Reason: rec.Evidence.Summary}
	var (
		res executor.Result
		err error
	)
	switch a, ok := exe.(executor.Attacher); {
	case exe == nil:
		err = fmt.Errorf("%w: no %s executor is configured now", executor.ErrFailed, step)
	case await && ok:
		res, err = a.Attach(ctx, t)
	case await:
		err = fmt.Errorf("%w: this executor cannot be followed across a restart", executor.ErrUnknown)
	default:
		res, err = exe.Rollback(ctx, t)
	}
	if ctx.Err() != nil && err != nil {
		return
	}
	out := StepEnded{Key: key, Outcome: ActionSucceeded, Output: res.Output}
	switch {
	case errors.Is(err, executor.ErrUnknown):
		out.Outcome, out.Err = ActionUnknown, err.Error()
	case err != nil:
		out.Outcome, out.Err = ActionFailed, err.Error()
	}
	m.feed(ctx, rec.ID, out)
}

// probe probes recovery once and feeds the result back.
func (m *Manager) probe(ctx context.Context, id int64) {
	rec, err := m.Get(ctx, id)
	if err != nil {
		m.log.Error("loading incident", zap.Int64("incident", id), zap.Error(err))
		m.retry(id, "probe", func(ctx context.Context) { m.probe(ctx, id) })
		return
	}
	if rec.State != Verifying {
		return
	}
	svc, ok := m.env.Service(rec.Service)
	if !ok || svc.Verifier == nil {
		m.log.Warn("service no longer configured; verification waits", zap.Int64("incident", id), zap.String("service", rec.Service))
		m.retry(id, "probe", func(ctx context.Context) { m.probe(ctx, id) })
		return
	}
	since := m.now()
	if rec.VerifyStartedAt != nil {
		since = *rec.VerifyStartedAt
	}
	var serving []string
	if svc.Serving != nil {
		serving = svc.Serving()
	}
	res := svc.Verifier.Probe(ctx, m.now(), verify.Target{Service: rec.Service, Bad: rec.Version, Baseline: rec.Baseline,
		Serving: serving, References: rec.References, Since: since}, svc.Query)
	if ctx.Err() != nil {
		return
	}
	m.feed(ctx, id, Probed{Result: res})
}

// observe looks at a shadow incident's service once and feeds what it
// found back.
func (m *Manager) observe(ctx context.Context, id int64) {
	rec, err := m.Get(ctx, id)
	if err != nil {
		m.log.Error("loading incident", zap.Int64("incident", id), zap.Error(err))
		m.retry(id, "observe", func(ctx context.Context) { m.observe(ctx, id) })
		return
	}
	if rec.State != Shadow {
		return
	}
	svc, ok := m.env.Service(rec.Service)
	if !ok || svc.Watching == nil {
		m.log.Warn("service no longer configured; the shadow incident waits", zap.Int64("incident", id), zap.String("service", rec.Service))
		m.retry(id, "observe", func(ctx context.Context) { m.observe(ctx, id) })
		return
	}
	var o Observed
	o.Version, o.DeployedAt, o.Watching = svc.Watching()
	if svc.Serving != nil {
		o.Serving = svc.Serving()
	}
	m.feed(ctx, id, o)
}

// retry runs f again after retryDelay.
func (m *Manager) retry(id int64, what string, f func(ctx context.Context)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.after(id, prefix(id)+what, m.now().Add(retryDelay), f)
}

// report writes the report and feeds the outcome back.
func (m *Manager) report(ctx context.Context, id int64, postmortem bool) {
	rec, err := m.Get(ctx, id)
	if err != nil {
		m.log.Error("loading incident", zap.Int64("incident", id), zap.Error(err))
		m.retry(id, "report", func(ctx context.Context) { m.report(ctx, id, postmortem) })
		return
	}
	if m.rep == nil {
		return
	}
	res, err := m.rep.Report(ctx, rec, postmortem)
	if ctx.Err() != nil {
		return
	}
	ev := Reported{Result: res}
	if err != nil {
		m.log.Error("writing the incident report; will try again", zap.Int64("incident", id), zap.Error(err))
		ev.Err = err.Error()
	} else {
		m.log.Info("incident report written", zap.Int64("incident", id), zap.String("markdown", res.Markdown), zap.String("invite", res.Invite))
	}
	m.feed(ctx, id, ev)
}

// load reads incident id and its revision.
func (m *Manager) load(ctx context.Context, id int64) (Record, uint64, error) {
	kv, err := m.st.Get(ctx, bucket, store.Key(uint64(id)))
	if errors.Is(err, store.ErrNotFound) {
		return Record{}, 0, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return Record{}, 0, err
	}
	var r Record
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return Record{}, 0, fmt.Errorf("decoding incident %d: %w", id, err)
	}
	return r, kv.Revision, nil
}

// save writes r over revision rev.
func (m *Manager) save(ctx context.Context, r Record, rev uint64) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := m.st.Put(ctx, bucket, store.Key(uint64(r.ID)), b, rev); err != nil {
		return fmt.Errorf("saving incident %d: %w", r.ID, err)
	}
	return nil
}

func (m *Manager) create(ctx context.Context, r Record) error { return m.save(ctx, r, 0) }

// publishLocked hands unpublished timeline entries to the outbox, in order,
// and records how far it got.
func (m *Manager) publishLocked(ctx context.Context, id int64) (Record, bool) {
	// Queued events must be counted as published even while Guardian
	// stops, or the next start queues them again.
	ctx = context.WithoutCancel(ctx)
	rec, rev, err := m.load(ctx, id)
	if err != nil || rec.Published >= len(rec.Timeline) {
		return rec, false
	}
	start := rec.Published
	for rec.Published < len(rec.Timeline) {
		if m.pub != nil && rec.Timeline[rec.Published].Type.Published() {
			if err := m.pub.Publish(ctx, rec, rec.Published); err != nil {
				m.log.Warn("notification not queued; will retry", zap.Int64("incident", id), zap.Error(err))
				m.after(id, prefix(id)+"publish", m.now().Add(retryDelay), func(ctx context.Context) {
					m.mu.Lock()
					defer m.mu.Unlock()
					m.publishLocked(ctx, id)
				})
				break
			}
		}
		rec.Published++
	}
	if rec.Published == start {
		return rec, false
	}
	if err := m.save(ctx, rec, rev); err != nil {
		m.log.Warn("recording published notifications", zap.Int64("incident", id), zap.Error(err))
		return rec, false
	}
	return rec, true
}
