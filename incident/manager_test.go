package incident

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/verify"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeExec records rollbacks; it is the stand-in for a deploy system in
// these unit tests (the end-to-end tests run the real command executor).
type fakeExec struct {
	mu    sync.Mutex
	calls []executor.Target
	err   error
	onRun func()
}

func (f *fakeExec) Rollback(_ context.Context, t executor.Target) (executor.Result, error) {
	f.mu.Lock()
	f.calls = append(f.calls, t)
	err, on := f.err, f.onRun
	f.mu.Unlock()
	if on != nil {
		on()
	}
	return executor.Result{Output: "rolled back " + t.Service}, err
}

func (f *fakeExec) n() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.calls) }

type env struct{ svc Service }

func (e env) Service(name string) (Service, bool) { return e.svc, name == "checkout" }

// published collects events in order.
type published struct {
	mu     sync.Mutex
	events []string
}

func (p *published) Publish(_ context.Context, rec Record, i int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, fmt.Sprintf("%s#%d", rec.Timeline[i].Type, i))
	return nil
}

func (p *published) types() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.events))
	for i, e := range p.events {
		out[i] = e[:strings.Index(e, "#")]
	}
	return out
}

type harness struct {
	t       *testing.T
	m       *Manager
	st      store.Store
	app, db *fakeExec
	healthy atomic.Bool
	pub     *published
	cancel  context.CancelFunc
	done    chan struct{}
}

func newHarness(t *testing.T, st store.Store, approval config.Approval, withDB bool) *harness {
	t.Helper()
	h := &harness{t: t, st: st, app: &fakeExec{}, pub: &published{}}
	if st == nil {
		h.st = store.NewMemory()
	}
	def, err := trigger.FromConfig(config.Trigger{Name: "error-rate", Query: `errors{version="{{.Version}}"}`, Above: ptr(0.05), Window: config.Duration(20 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	q := func(_ context.Context, qs string, _ time.Time) (source.Result, error) {
		v := 0.2
		if h.healthy.Load() {
			v = 0.001
		}
		return source.Result{Vector: model.Vector{{Value: model.SampleValue(v)}}}, nil
	}
	svc := Service{
		Approval: approval,
		Recovery: config.Recovery{Tolerance: 0.1, StableFor: config.Duration(50 * time.Millisecond), Timeout: config.Duration(400 * time.Millisecond)},
		Interval: 10 * time.Millisecond, Application: h.app, ApplicationName: "fake",
		Verifier: verify.New([]trigger.Definition{def}, verify.Options{Tolerance: 0.1}), Query: q,
	}
	if withDB {
		h.db = &fakeExec{}
		svc.Database, svc.DatabaseName = h.db, "migrate-down"
	}
	h.app.onRun = func() { h.healthy.Store(true) }
	h.m = NewManager(Options{Store: h.st, Env: env{svc}, Publisher: h.pub, Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() { defer close(h.done); _ = h.m.Run(ctx) }()
	t.Cleanup(h.stop)
	testenv.Eventually(t, 5*time.Second, func() error {
		h.m.mu.Lock()
		defer h.m.mu.Unlock()
		if h.m.ctx == nil {
			return errors.New("not running")
		}
		return nil
	}, "the manager to run")
	return h
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

func ptr(f float64) *float64 { return &f }

func firing() (rollout.Event, trigger.Verdict) {
	d := rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1", At: time.Now().Add(-time.Minute)}
	v := 0.2
	b := 0.004
	return d, trigger.Verdict{Trigger: "error-rate", State: trigger.Firing, Outcome: trigger.Violated,
		Evidence: trigger.Evidence{Query: `errors{version="v2"}`, Value: &v, BaselineValue: &b}}
}

func (h *harness) declare() Record {
	h.t.Helper()
	d, v := firing()
	rec, created, err := h.m.Declare(context.Background(), d, v, map[string]float64{"error-rate": 0.004}, "SEV-1")
	if err != nil || !created {
		h.t.Fatalf("declare: %v created=%v", err, created)
	}
	return rec
}

func (h *harness) waitState(id int64, s State) Record {
	h.t.Helper()
	var rec Record
	testenv.Eventually(h.t, 10*time.Second, func() error {
		var err error
		if rec, err = h.m.Get(context.Background(), id); err != nil {
			return err
		}
		if rec.State != s {
			return fmt.Errorf("state %s", rec.State)
		}
		return nil
	}, "state "+string(s))
	return rec
}

func types(r Record) []string {
	var out []string
	for _, e := range r.Timeline {
		out = append(out, e.Type)
	}
	return out
}

func wantTypes(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("timeline\n got %v\nwant %v", got, want)
	}
}

func TestApproveRollbackResolve(t *testing.T) {
	h := newHarness(t, nil, config.Approval{Mode: config.ApprovalManual}, false)
	rec := h.declare()
	h.waitState(rec.ID, AwaitingApproval)
	if h.app.n() != 0 {
		t.Fatal("rolled back before the go")
	}
	if _, err := h.m.Decide(context.Background(), rec.ID, true, "token:alice", ""); err != nil {
		t.Fatal(err)
	}
	rec = h.waitState(rec.ID, Resolved)
	wantTypes(t, types(rec), "incident.declared", "approval.requested", "approval.granted", "rollback.started",
		"rollback.succeeded", "recovery.progress", "recovery.confirmed", "incident.resolved")
	wantTypes(t, h.pub.types(), types(rec)...)
	if h.app.n() != 1 || h.app.calls[0].IdempotencyKey != "incident-1/rollback.application" || h.app.calls[0].Baseline != "v1" {
		t.Fatalf("executor calls %+v", h.app.calls)
	}
	if rec.Timeline[2].Actor != "token:alice" || rec.ApprovedAt == nil || rec.RecoveredAt == nil || rec.ResolvedAt == nil {
		t.Fatalf("record %+v", rec)
	}
	if _, ok := h.m.OpenFor("checkout"); ok {
		t.Fatal("resolved incident still open")
	}
	if _, err := h.m.Decide(context.Background(), rec.ID, true, "token:alice", ""); !errors.Is(err, ErrNoDecision) {
		t.Fatalf("deciding a resolved incident: %v", err)
	}
}

func TestOneOpenIncidentPerService(t *testing.T) {
	h := newHarness(t, nil, config.Approval{Mode: config.ApprovalManual}, false)
	rec := h.declare()
	d, v := firing()
	v.Trigger = "p99-latency"
	again, created, err := h.m.Declare(context.Background(), d, v, nil, "SEV-2")
	if err != nil || created || again.ID != rec.ID {
		t.Fatalf("second declare: id %d created %v err %v", again.ID, created, err)
	}
	if last := again.Timeline[len(again.Timeline)-1]; last.Type != "trigger.fired" || !strings.Contains(last.Message, "p99-latency") {
		t.Fatalf("last entry %+v", last)
	}
}

func TestDenyHolds(t *testing.T) {
	h := newHarness(t, nil, config.Approval{Mode: config.ApprovalManual}, false)
	rec := h.declare()
	h.waitState(rec.ID, AwaitingApproval)
	if _, err := h.m.Decide(context.Background(), rec.ID, false, "token:bob", ""); !errors.Is(err, ErrInvalidVote) {
		t.Fatalf("deny without reason: %v", err)
	}
	if _, err := h.m.Decide(context.Background(), rec.ID, false, "token:bob", "false positive: load test"); err != nil {
		t.Fatal(err)
	}
	rec = h.waitState(rec.ID, Held)
	if h.app.n() != 0 {
		t.Fatal("rolled back after a no-go")
	}
	last := rec.Timeline[len(rec.Timeline)-1]
	if last.Type != "approval.denied" || last.Actor != "token:bob" || !strings.Contains(last.Message, "load test") {
		t.Fatalf("last entry %+v", last)
	}
	if _, ok := h.m.OpenFor("checkout"); !ok {
		t.Fatal("a held incident must stay open")
	}
	// A later go from the held state rolls back.
	if _, err := h.m.Decide(context.Background(), rec.ID, true, "token:alice", "it is real after all"); err != nil {
		t.Fatal(err)
	}
	h.waitState(rec.ID, Resolved)
	if h.app.n() != 1 {
		t.Fatalf("%d rollbacks", h.app.n())
	}
}

func TestAutoAfter(t *testing.T) {
	for _, tc := range []struct {
		onTimeout string
		want      State
		rollbacks int
		actor     string
	}{
		{"rollback", Resolved, 1, "policy:auto_after"},
		{"hold", Held, 0, "policy:auto_after"},
	} {
		t.Run(tc.onTimeout, func(t *testing.T) {
			h := newHarness(t, nil, config.Approval{Mode: config.ApprovalAutoAfter, Timeout: config.Duration(100 * time.Millisecond), OnTimeout: tc.onTimeout}, false)
			rec := h.declare()
			rec = h.waitState(rec.ID, tc.want)
			if h.app.n() != tc.rollbacks {
				t.Fatalf("%d rollbacks, want %d", h.app.n(), tc.rollbacks)
			}
			if len(rec.Decisions) != 1 || rec.Decisions[0].By != tc.actor {
				t.Fatalf("decisions %+v", rec.Decisions)
			}
			if d := rec.Decisions[0].At.Sub(*rec.ApprovalRequestedAt); d < 100*time.Millisecond {
				t.Fatalf("decided after %v, before the timeout", d)
			}
		})
	}
}

func TestAutoAndSkipApproval(t *testing.T) {
	for _, tc := range []struct {
		name     string
		approval config.Approval
		actor    string
	}{
		{"auto", config.Approval{Mode: config.ApprovalAuto}, "policy:auto"},
		{"skip above", config.Approval{Mode: config.ApprovalManual, SkipApprovalAbove: ptr(0.1)}, "policy:skip_approval_above"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, tc.approval, false)
			rec := h.waitState(h.declare().ID, Resolved)
			if rec.Decisions[0].By != tc.actor || h.app.n() != 1 {
				t.Fatalf("decisions %+v, rollbacks %d", rec.Decisions, h.app.n())
			}
			for _, typ := range types(rec) {
				if typ == "approval.requested" {
					t.Fatal("asked for approval under an automatic policy")
				}
			}
		})
	}
}

func TestExecutorFailureEscalates(t *testing.T) {
	h := newHarness(t, nil, config.Approval{Mode: config.ApprovalAuto}, false)
	h.app.err = fmt.Errorf("%w: exit status 3", executor.ErrFailed)
	rec := h.waitState(h.declare().ID, Failed)
	got := types(rec)
	wantTypes(t, got[len(got)-2:], "rollback.failed", "incident.escalated")
	a := rec.Actions["incident-1/rollback.application"]
	if a == nil || a.State != ActionFailed || !strings.Contains(a.Error, "exit status 3") {
		t.Fatalf("action %+v", a)
	}
	if _, ok := h.m.OpenFor("checkout"); !ok {
		t.Fatal("a failed incident stays open for a human")
	}
	if p := h.pub.types(); p[len(p)-1] != "incident.escalated" {
		t.Fatalf("escalation not published: %v", p)
	}
}

// Not recovered after the application rollback: the database step asks its
// own approval, even under the auto policy, and never runs without it.
func TestDatabaseStepNeedsItsOwnApproval(t *testing.T) {
	h := newHarness(t, nil, config.Approval{Mode: config.ApprovalAuto}, true)
	h.app.onRun = nil // the application rollback does not help
	rec := h.waitState(h.declare().ID, DBAwaitingApproval)
	if h.app.n() != 1 || h.db.n() != 0 {
		t.Fatalf("app %d, db %d", h.app.n(), h.db.n())
	}
	last := rec.Timeline[len(rec.Timeline)-1]
	if last.Type != "approval.requested" || last.Data["step"] != "database" {
		t.Fatalf("last entry %+v", last)
	}
	// Waiting well past every timeout: still not run.
	testenv.Eventually(t, 5*time.Second, func() error {
		r, _ := h.m.Get(context.Background(), rec.ID)
		if time.Since(*r.ApprovalRequestedAt) < 500*time.Millisecond {
			return errors.New("waiting")
		}
		return nil
	}, "time to pass")
	if h.db.n() != 0 {
		t.Fatal("database step ran without approval")
	}
	h.db.onRun = func() { h.healthy.Store(true) }
	if _, err := h.m.Decide(context.Background(), rec.ID, true, "token:dba", "restore schema"); err != nil {
		t.Fatal(err)
	}
	rec = h.waitState(rec.ID, Resolved)
	if h.db.n() != 1 || h.db.calls[0].Step != "database" {
		t.Fatalf("db calls %+v", h.db.calls)
	}
	if _, ok := rec.Actions["incident-1/rollback.database"]; !ok {
		t.Fatal("database action not recorded")
	}
}

func TestNotRecoveredWithoutDatabaseEscalates(t *testing.T) {
	h := newHarness(t, nil, config.Approval{Mode: config.ApprovalAuto}, false)
	h.app.onRun = nil
	rec := h.waitState(h.declare().ID, Escalated)
	got := types(rec)
	wantTypes(t, got[len(got)-2:], "recovery.failed", "incident.escalated")
}

// A restart finds the rollback started but not finished: it is not run a
// second time; verification decides.
func TestResumeDoesNotRunRollbackTwice(t *testing.T) {
	st := store.NewMemory()
	h := newHarness(t, st, config.Approval{Mode: config.ApprovalManual}, false)
	rec := h.declare()
	h.waitState(rec.ID, AwaitingApproval)
	h.stop()
	// Simulate the crash: the record says rolling_back with the action
	// started, as saved just before the executor ran.
	h.m.mu.Lock()
	_, err := h.m.updateLocked(context.Background(), rec.ID, func(r *Record) error {
		now := time.Now()
		r.setState(RollingBack)
		r.Actions = map[string]*Action{"incident-1/rollback.application": {Key: "incident-1/rollback.application", State: ActionStarted, StartedAt: now}}
		r.add(now, "rollback.started", "guardian", "", nil)
		return nil
	})
	h.m.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t, st, config.Approval{Mode: config.ApprovalManual}, false)
	h2.healthy.Store(true) // the rollback that was in flight took effect
	rec = h2.waitState(rec.ID, Resolved)
	if h2.app.n() != 0 {
		t.Fatalf("the rollback ran again after the restart (%d calls)", h2.app.n())
	}
	if !strings.Contains(strings.Join(types(rec), ","), "rollback.resumed") {
		t.Fatalf("timeline %v", types(rec))
	}
}

// A trigger still firing for the same deploy after its incident was
// resolved does not open a second incident.
func TestNoSecondIncidentForTheSameDeploy(t *testing.T) {
	h := newHarness(t, nil, config.Approval{Mode: config.ApprovalAuto}, false)
	d, v := firing()
	rec, _, err := h.m.Declare(context.Background(), d, v, nil, "SEV-1")
	if err != nil {
		t.Fatal(err)
	}
	h.waitState(rec.ID, Resolved)
	again, created, err := h.m.Declare(context.Background(), d, v, nil, "SEV-1")
	if err != nil || created || again.ID != rec.ID {
		t.Fatalf("again: id %d created %v err %v", again.ID, created, err)
	}
	d.Version, d.At = "v3", d.At.Add(time.Hour)
	if third, created, err := h.m.Declare(context.Background(), d, v, nil, "SEV-1"); err != nil || !created || third.ID != 2 {
		t.Fatalf("a new deploy: id %d created %v err %v", third.ID, created, err)
	}
}

// A trigger firing while the manager shuts down (as in CI, where the
// service loop declared the incident just as Guardian stopped) must not
// start a driver the shutdown does not wait for: the race detector flagged
// wg.Add against wg.Wait. The incident is kept and resumed by the next Run.
func TestDeclareDuringShutdown(t *testing.T) {
	for i := range 20 {
		h := newHarness(t, nil, config.Approval{Mode: config.ApprovalManual}, false)
		declared := make(chan Record, 1)
		go func() {
			d, v := firing()
			d.Version = fmt.Sprintf("v%d", i+2)
			rec, _, err := h.m.Declare(context.Background(), d, v, nil, "SEV-1")
			if err != nil {
				t.Errorf("declare: %v", err)
			}
			declared <- rec
		}()
		h.stop()
		rec := <-declared
		got, err := h.m.Get(context.Background(), rec.ID)
		if err != nil || !got.State.Open() {
			t.Fatalf("incident %d after the shutdown: %+v, %v; want it kept open", rec.ID, got.State, err)
		}
	}
}
