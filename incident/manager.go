package incident

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/verify"
)

// bucket holds the incident records.
const bucket = "incidents"

// Errors callers branch on.
var (
	ErrNotFound    = errors.New("no such incident")
	ErrNoDecision  = errors.New("incident is not waiting for a decision")
	ErrInvalidVote = errors.New("invalid decision")
)

// Service is what the manager needs of a service's configuration now; it is
// looked up at each step, so a reload takes effect on open incidents.
type Service struct {
	Approval config.Approval
	Recovery config.Recovery
	// Interval is the probe interval during verification.
	Interval time.Duration
	// Application rolls the application back; nil means none is configured
	// and an approved rollback escalates at once.
	Application     executor.Executor
	ApplicationName string
	// Database is the optional database step, never run without its own approval.
	Database     executor.Executor
	DatabaseName string
	Verifier     *verify.Verifier
	Query        trigger.QueryFunc
}

// Env looks services up.
type Env interface {
	Service(name string) (Service, bool)
}

// Publisher hands the timeline entry rec.Timeline[i] to the notification
// outbox. It must persist it before returning nil.
type Publisher interface {
	Publish(ctx context.Context, rec Record, i int) error
}

// ResolveHook runs when an incident is resolved (report, post-mortem); it
// returns the measured impact and entries to add to the timeline.
type ResolveHook func(ctx context.Context, rec Record) (Impact, []Entry)

// Options configure a Manager.
type Options struct {
	Store     store.Store
	Env       Env
	Publisher Publisher
	OnResolve ResolveHook
	Logger    *zap.Logger
	Registry  prometheus.Registerer
	Now       func() time.Time
}

// Manager opens incidents and drives each through its state machine. Every
// transition is saved before its side effect, so that a restart resumes
// every open incident where it stopped and never runs a rollback twice.
type Manager struct {
	st   store.Store
	env  Env
	pub  Publisher
	hook ResolveHook
	log  *zap.Logger
	now  func() time.Time
	m    *managerMetrics

	mu   sync.Mutex // serialises updates of records and the maps below
	ctx  context.Context
	open map[string]int64 // service → open incident
	// last is, by service, the deploy of its latest incident: a trigger
	// still firing for that deploy after the incident closed (or was
	// held) does not open another.
	last    map[string]lastIncident
	wake    map[int64]chan struct{}
	driving map[int64]bool
	wg      sync.WaitGroup
}

type managerMetrics struct {
	declared  *prometheus.CounterVec
	rollbacks *prometheus.CounterVec
	decisions *prometheus.CounterVec
	open      *prometheus.GaugeVec
}

// NewManager builds a manager; Run starts it.
func NewManager(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Manager{
		st: o.Store, env: o.Env, pub: o.Publisher, hook: o.OnResolve, log: o.Logger, now: o.Now,
		open: map[string]int64{}, last: map[string]lastIncident{}, wake: map[int64]chan struct{}{}, driving: map[int64]bool{},
		m: &managerMetrics{
			declared: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "guardian_incidents_declared_total", Help: "Incidents declared.",
			}, []string{"service", "severity"}),
			rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "guardian_rollbacks_total", Help: "Rollbacks run, by step and result.",
			}, []string{"service", "step", "result"}),
			decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "guardian_decisions_total", Help: "Go/no-go decisions, by step, outcome and whether a human or a policy decided.",
			}, []string{"service", "step", "decision", "by"}),
			open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "guardian_incidents_open", Help: "Open incidents by state.",
			}, []string{"service", "state"}),
		},
	}
	if o.Registry != nil {
		o.Registry.MustRegister(m.m.declared, m.m.rollbacks, m.m.decisions, m.m.open)
	}
	return m
}

type lastIncident struct {
	id       int64
	version  string
	deployed time.Time
}

// Run resumes every open incident, then drives incidents until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	// Holding the lock while listing: an incident declared meanwhile is
	// either listed here or started by Declare, never missed.
	m.mu.Lock()
	recs, err := m.List(ctx)
	if err != nil {
		m.mu.Unlock()
		return fmt.Errorf("loading incidents: %w", err)
	}
	m.ctx = ctx
	for _, r := range recs {
		if l, ok := m.last[r.Service]; !ok || r.ID > l.id {
			m.last[r.Service] = lastIncident{r.ID, r.Version, r.DeployedAt}
		}
	}
	for _, r := range recs {
		if r.State.Open() {
			m.open[r.Service] = r.ID
			m.m.open.WithLabelValues(r.Service, string(r.State)).Inc()
			m.log.Info("resuming incident", zap.Int64("incident", r.ID), zap.String("service", r.Service), zap.String("state", r.State.String()))
			m.startLocked(r.ID)
		}
	}
	m.mu.Unlock()
	<-ctx.Done()
	// No driver starts once this is set (startLocked checks it under m.mu),
	// so every wg.Add happens before the Wait: a Declare racing the
	// shutdown leaves its incident to the next Run.
	m.mu.Lock()
	m.ctx = nil
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// startLocked starts the driver of id unless it runs. Callers hold m.mu.
func (m *Manager) startLocked(id int64) {
	if m.ctx == nil || m.driving[id] {
		return
	}
	m.driving[id] = true
	if m.wake[id] == nil {
		m.wake[id] = make(chan struct{}, 1)
	}
	m.wg.Add(1)
	ctx := m.ctx
	go func() {
		defer m.wg.Done()
		m.drive(ctx, id)
	}()
}

// Declare opens an incident for a firing trigger, unless the service has an
// open one already; then the firing is added to that incident's timeline.
func (m *Manager) Declare(ctx context.Context, d rollout.Event, v trigger.Verdict, references map[string]float64, severity string) (Record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if id, ok := m.open[d.Service]; ok {
		rec, err := m.updateLocked(ctx, id, func(r *Record) error {
			if r.Trigger == v.Trigger && r.Version == d.Version {
				if val := EvidenceFrom(v).Value; val != nil && (r.Impact.PeakValue == nil || *val > *r.Impact.PeakValue) {
					r.Impact.PeakValue = val
				}
				return errUnchanged
			}
			r.add(now, "trigger.fired", "guardian", fmt.Sprintf("%s also firing: %s", v.Trigger, v.Summary()), nil)
			return nil
		})
		return rec, false, err
	}
	if l, ok := m.last[d.Service]; ok && l.version == d.Version && l.deployed.Equal(d.At) {
		rec, err := m.Get(ctx, l.id)
		return rec, false, err
	}
	idn, err := m.st.NextID(ctx, bucket)
	if err != nil {
		return Record{}, false, fmt.Errorf("numbering incident: %w", err)
	}
	ev := EvidenceFrom(v)
	rec := Record{
		ID: int64(idn), Service: d.Service, Severity: severity, State: Detected,
		Version: d.Version, Baseline: d.Baseline, Trigger: v.Trigger, Evidence: ev,
		DeployedAt: d.At, DetectedAt: now, Step: executor.StepApplication, References: references,
	}
	rec.Impact.PeakValue = ev.Value
	rec.Impact.BaselineValue = ev.BaselineValue
	msg := fmt.Sprintf("%s declared for %s: %s %s is bad (%s)", severity, d.Service, d.Service, d.Version, v.Summary())
	rec.add(now, "incident.declared", "guardian", msg, map[string]string{"trigger": v.Trigger, "baseline": d.Baseline})
	if err := m.create(ctx, &rec); err != nil {
		return Record{}, false, err
	}
	m.open[d.Service] = rec.ID
	m.last[d.Service] = lastIncident{rec.ID, d.Version, d.At}
	m.m.declared.WithLabelValues(d.Service, severity).Inc()
	m.log.Warn("incident declared", zap.Int64("incident", rec.ID), zap.String("service", d.Service),
		zap.String("version", d.Version), zap.String("baseline", d.Baseline), zap.String("evidence", v.Summary()))
	m.publishLocked(ctx, rec.ID)
	m.startLocked(rec.ID)
	return rec, true, nil
}

// Decide records a go (approve) or no-go for the step the incident waits on.
// by names who decided (a token's name); reason is required for a no-go.
func (m *Manager) Decide(ctx context.Context, id int64, approve bool, by, reason string) (Record, error) {
	if by == "" || (!approve && reason == "") {
		return Record{}, fmt.Errorf("%w: a no-go needs a reason", ErrInvalidVote)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, err := m.updateLocked(ctx, id, func(r *Record) error {
		return m.decideLocked(r, approve, by, reason, m.now())
	})
	if err != nil {
		return Record{}, err
	}
	m.publishLocked(ctx, id)
	m.startLocked(id)
	m.kick(id)
	return rec, nil
}

// decideLocked applies a decision to r.
func (m *Manager) decideLocked(r *Record, approve bool, by, reason string, now time.Time) error {
	var step string
	switch {
	case r.State == AwaitingApproval || (r.State == Held && approve):
		step = executor.StepApplication
	case r.State == DBAwaitingApproval:
		step = executor.StepDatabase
	default:
		return fmt.Errorf("%w: incident %d is %s", ErrNoDecision, r.ID, r.State)
	}
	r.Decisions = append(r.Decisions, Decision{Step: step, Approved: approve, By: by, Reason: reason, At: now})
	verdict := "denied"
	if approve {
		verdict = "approved"
	}
	m.m.decisions.WithLabelValues(r.Service, step, verdict, actorKind(by)).Inc()
	data := map[string]string{"step": step}
	if reason != "" {
		data["reason"] = reason
	}
	switch {
	case approve && step == executor.StepApplication:
		r.ApprovedAt = &now
		r.setState(RollingBack)
		r.add(now, "approval.granted", by, fmt.Sprintf("go: roll back %s %s → %s%s", r.Service, r.Version, r.Baseline, because(reason)), data)
	case approve:
		r.setState(DBRollingBack)
		r.add(now, "approval.granted", by, fmt.Sprintf("go for the database step of %s%s", r.Service, because(reason)), data)
	case step == executor.StepApplication:
		r.setState(Held)
		r.add(now, "approval.denied", by, fmt.Sprintf("no-go: %s stays on %s, watching goes on%s", r.Service, r.Version, because(reason)), data)
	default:
		r.setState(Escalated)
		r.add(now, "approval.denied", by, fmt.Sprintf("no-go for the database step%s", because(reason)), data)
		r.add(now, "incident.escalated", "guardian", fmt.Sprintf("%s not recovered and the database step was refused: a human must take over", r.Service), nil)
	}
	return nil
}

func because(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

func actorKind(by string) string {
	if len(by) > 7 && by[:7] == "policy:" {
		return "policy"
	}
	return "human"
}

// Get returns incident id.
func (m *Manager) Get(ctx context.Context, id int64) (Record, error) {
	kv, err := m.st.Get(ctx, bucket, store.Key(uint64(id)))
	if errors.Is(err, store.ErrNotFound) {
		return Record{}, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return Record{}, fmt.Errorf("decoding incident %d: %w", id, err)
	}
	return r, nil
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

// errUnchanged tells updateLocked there is nothing to save.
var errUnchanged = errors.New("unchanged")

// updateLocked loads id, applies f and saves it under its revision.
func (m *Manager) updateLocked(ctx context.Context, id int64, f func(*Record) error) (Record, error) {
	key := store.Key(uint64(id))
	kv, err := m.st.Get(ctx, bucket, key)
	if errors.Is(err, store.ErrNotFound) {
		return Record{}, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return Record{}, fmt.Errorf("decoding incident %d: %w", id, err)
	}
	before := r.State
	if err := f(&r); err != nil {
		if errors.Is(err, errUnchanged) {
			return r, nil
		}
		return Record{}, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return Record{}, err
	}
	if _, err := m.st.Put(ctx, bucket, key, b, kv.Revision); err != nil {
		return Record{}, fmt.Errorf("saving incident %d: %w", id, err)
	}
	if !r.State.Open() {
		delete(m.open, r.Service)
	}
	if before != r.State {
		m.m.open.WithLabelValues(r.Service, string(before)).Dec()
		if r.State.Open() {
			m.m.open.WithLabelValues(r.Service, string(r.State)).Inc()
		}
		m.log.Info("incident state", zap.Int64("incident", r.ID), zap.String("service", r.Service),
			zap.String("from", string(before)), zap.String("to", string(r.State)))
	}
	return r, nil
}

func (m *Manager) create(ctx context.Context, r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := m.st.Put(ctx, bucket, store.Key(uint64(r.ID)), b, 0); err != nil {
		return fmt.Errorf("saving incident %d: %w", r.ID, err)
	}
	m.m.open.WithLabelValues(r.Service, string(r.State)).Inc()
	return nil
}

// publishLocked hands unpublished timeline entries to the outbox, in order,
// and records how far it got.
func (m *Manager) publishLocked(ctx context.Context, id int64) {
	if m.pub == nil {
		return
	}
	_, err := m.updateLocked(ctx, id, func(r *Record) error {
		start := r.Published
		for r.Published < len(r.Timeline) {
			if err := m.pub.Publish(ctx, *r, r.Published); err != nil {
				m.log.Warn("notification not queued; will retry", zap.Int64("incident", id), zap.Error(err))
				break
			}
			r.Published++
		}
		if r.Published == start {
			return errUnchanged
		}
		return nil
	})
	if err != nil {
		m.log.Warn("recording published notifications", zap.Int64("incident", id), zap.Error(err))
	}
}

func (m *Manager) kick(id int64) {
	if c := m.wake[id]; c != nil {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// add appends a timeline entry.
func (r *Record) add(at time.Time, typ, actor, msg string, data map[string]string) {
	r.Timeline = append(r.Timeline, Entry{At: at, Type: typ, Actor: actor, Message: msg, Data: data})
}

func (r *Record) setState(s State) { r.State = s }

// EventID is the notification id of timeline entry i: stable, so receivers
// can drop duplicates after a restart.
func EventID(id int64, i int) string {
	return "evt_" + strconv.FormatInt(id, 10) + "_" + strconv.Itoa(i)
}
