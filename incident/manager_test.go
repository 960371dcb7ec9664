package incident

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/query"
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

func (p *published) types() []event.Type {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]event.Type, len(p.events))
	for i, e := range p.events {
		out[i] = event.Type(e[:strings.Index(e, "#")])
	}
	return out
}

// reporter counts the reports written.
type reporter struct {
	mu   sync.Mutex
	n    int
	fail bool
}

func (r *reporter) Report(_ context.Context, rec Record, postmortem bool) (ReportResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return ReportResult{}, errors.New("disk full")
	}
	r.n++
	res := ReportResult{Markdown: fmt.Sprintf("/r/incident-%d.md", rec.ID), JSON: fmt.Sprintf("/r/incident-%d.json", rec.ID)}
	if postmortem {
		res.Invite, res.PostmortemAt, res.PostmortemZone = fmt.Sprintf("/r/incident-%d-postmortem.ics", rec.ID), time.Now().Add(24*time.Hour), "UTC"
	}
	return res, nil
}

func (r *reporter) count() int { r.mu.Lock(); defer r.mu.Unlock(); return r.n }

type harness struct {
	t       *testing.T
	m       *Manager
	st      store.Store
	app, db *fakeExec
	healthy atomic.Bool
	pub     *published
	rep     *reporter
	cancel  context.CancelFunc
	done    chan struct{}
}

func newHarness(t *testing.T, st store.Store, policy approval.Policy, withDB bool, opts ...any) *harness {
	t.Helper()
	h := &harness{t: t, st: st, app: &fakeExec{}, pub: &published{}, rep: &reporter{}}
	if st == nil {
		h.st = store.NewMemory()
	}
	def := testDefinition(t)
	q := func(_ context.Context, qs string, _ time.Time) (source.Result, error) {
		v := 0.2
		if h.healthy.Load() {
			v = 0.001
		}
		return source.Result{Vector: model.Vector{{Value: model.SampleValue(v)}}}, nil
	}
	svc := Service{
		Rules: Rules{Approval: policy, StableFor: 50 * time.Millisecond, RecoveryTimeout: 400 * time.Millisecond,
			ProbeInterval: 10 * time.Millisecond, Application: "fake"},
		Application: h.app,
		Verifier:    verify.New([]trigger.Definition{def}, verify.Options{Tolerance: 0.1}), Query: q,
	}
	if withDB {
		h.db = &fakeExec{}
		svc.Database, svc.Rules.Database = h.db, "migrate-down"
	}
	h.app.onRun = func() { h.healthy.Store(true) }
	mo := Options{Store: h.st, Publisher: h.pub, Reporter: h.rep, Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()}
	for _, o := range opts {
		switch o := o.(type) {
		case func(*Service):
			o(&svc)
		case func(*Options):
			o(&mo)
		}
	}
	mo.Env = env{svc}
	h.m = NewManager(mo)
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

func testDefinition(t *testing.T) trigger.Definition {
	t.Helper()
	q, err := query.New("query", `errors{version="{{.Version}}"}`)
	if err != nil {
		t.Fatal(err)
	}
	return trigger.Definition{Name: "error-rate", Query: q, Above: ptr(0.05), Window: 20 * time.Millisecond}
}

// deployedAt is when the v2 of every test was deployed.
var deployedAt = time.Now().Add(-time.Minute)

func firing() (rollout.Event, trigger.Verdict) {
	d := rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1", At: deployedAt}
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

// settled waits until incident id has its report recorded and every event published.
func (h *harness) settled(id int64) Record {
	h.t.Helper()
	var rec Record
	testenv.Eventually(h.t, 5*time.Second, func() error {
		var err error
		if rec, err = h.m.Get(context.Background(), id); err != nil {
			return err
		}
		if !rec.reportDone() || rec.Published < len(rec.Timeline) {
			return fmt.Errorf("%s, report done %v, published %d of %d", rec.State, rec.reportDone(), rec.Published, len(rec.Timeline))
		}
		return nil
	}, "the incident to settle")
	return rec
}

func (h *harness) vote(id int64, approve bool, by, reason string) (Record, error) {
	return h.m.Vote(context.Background(), approval.Vote{Incident: id, Approve: approve, By: by, Channel: approval.ChannelAPI, Reason: reason})
}

func TestApproveRollbackResolve(t *testing.T) {
	h := newHarness(t, nil, approval.Policy{Mode: approval.Manual}, false)
	rec := h.declare()
	h.waitState(rec.ID, AwaitingApproval)
	if h.app.n() != 0 {
		t.Fatal("rolled back before the go")
	}
	if _, err := h.vote(rec.ID, true, "token:alice", ""); err != nil {
		t.Fatal(err)
	}
	rec = h.waitState(rec.ID, Resolved)
	// Verification waits for a whole window after the rollback, then sees
	// the values back: a progress entry while it waits (none when a loaded
	// machine checks first only after the window), then the last values.
	all := types(rec)
	resolved := slices.Index(all, event.Type("incident.resolved"))
	if resolved < 0 {
		t.Fatalf("resolved without incident.resolved: %v", all)
	}
	progress := 0
	for _, ty := range all[:resolved] {
		if ty == "recovery.progress" {
			progress++
		}
	}
	if progress < 1 || progress > 2 {
		t.Fatalf("%d recovery.progress entries, want 1 or 2: %v", progress, all)
	}
	if progress == 2 {
		if m := rec.Timeline[5].Message; !strings.Contains(m, "waiting") {
			t.Fatalf("first progress %q", m)
		}
	}
	wantTypes(t, slices.DeleteFunc(slices.Clone(all[:resolved+1]), func(ty event.Type) bool { return ty == "recovery.progress" }),
		"incident.declared", "approval.requested", "approval.granted", "rollback.started",
		"rollback.succeeded", "recovery.confirmed", "incident.resolved")
	if all[resolved-2] != "recovery.progress" {
		t.Fatalf("no recovery.progress before recovery.confirmed: %v", all)
	}
	// The report is written once, and every published event went out once, in order.
	rec = h.settled(rec.ID)
	wantTypes(t, types(rec)[resolved+1:], event.ReportWritten, event.PostmortemScheduled)
	wantPublished(t, h.pub, rec)
	if h.rep.count() != 1 {
		t.Fatalf("%d reports", h.rep.count())
	}
	if h.app.n() != 1 || h.app.calls[0].IdempotencyKey != "incident-1/rollback.application" || h.app.calls[0].Baseline != "v1" {
		t.Fatalf("executor calls %+v", h.app.calls)
	}
	if rec.Timeline[2].Actor != "token:alice" || rec.ApprovedAt == nil || rec.RecoveredAt == nil || rec.ResolvedAt == nil {
		t.Fatalf("record %+v", rec)
	}
	if _, ok := h.m.OpenFor("checkout"); ok {
		t.Fatal("resolved incident still open")
	}
	if _, err := h.vote(rec.ID, true, "token:alice", ""); !errors.Is(err, ErrNoDecision) {
		t.Fatalf("deciding a resolved incident: %v", err)
	}
}

func TestOneOpenIncidentPerService(t *testing.T) {
	h := newHarness(t, nil, approval.Policy{Mode: approval.Manual}, false)
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
	h := newHarness(t, nil, approval.Policy{Mode: approval.Manual}, false)
	rec := h.declare()
	h.waitState(rec.ID, AwaitingApproval)
	if _, err := h.vote(rec.ID, false, "token:bob", ""); !errors.Is(err, ErrInvalidVote) {
		t.Fatalf("deny without reason: %v", err)
	}
	if _, err := h.vote(rec.ID, false, "token:bob", "false positive: load test"); err != nil {
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
	if _, err := h.vote(rec.ID, true, "token:alice", "it is real after all"); err != nil {
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
			h := newHarness(t, nil, approval.Policy{Mode: approval.AutoAfter, Timeout: 100 * time.Millisecond, OnTimeout: approval.OnTimeout(tc.onTimeout)}, false)
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
		name   string
		policy approval.Policy
		actor  string
	}{
		{"auto", approval.Policy{Mode: approval.Auto}, "policy:auto"},
		{"skip above", approval.Policy{Mode: approval.Manual, SkipAbove: ptr(0.1)}, "policy:skip_approval_above"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, tc.policy, false)
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
	h := newHarness(t, nil, approval.Policy{Mode: approval.Auto}, false)
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
	h := newHarness(t, nil, approval.Policy{Mode: approval.Auto}, true)
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
	if _, err := h.vote(rec.ID, true, "token:dba", "restore schema"); err != nil {
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
	h := newHarness(t, nil, approval.Policy{Mode: approval.Auto}, false)
	h.app.onRun = nil
	rec := h.waitState(h.declare().ID, Escalated)
	got := types(rec)
	wantTypes(t, got[len(got)-2:], "recovery.failed", "incident.escalated")
}

// A restart finds the rollback started but not finished: it is not run a
// second time; verification decides.
func TestResumeDoesNotRunRollbackTwice(t *testing.T) {
	_, st, rec := crashedDuringRollback(t)
	h2 := newHarness(t, st, approval.Policy{Mode: approval.Manual}, false)
	h2.healthy.Store(true) // the rollback that was in flight took effect
	rec = h2.waitState(rec.ID, Resolved)
	if h2.app.n() != 0 {
		t.Fatalf("the rollback ran again after the restart (%d calls)", h2.app.n())
	}
	if !inOrder(types(rec), event.RollbackStarted, event.RollbackResumed, event.RollbackUnknown, event.RecoveryConfirmed) {
		t.Fatalf("timeline %v", types(rec))
	}
}

// crashedDuringRollback declares an incident, stops the manager and leaves
// the record as a crash while its rollback ran would: rolling_back, the
// step saved as started.
func crashedDuringRollback(t *testing.T) (*harness, store.Store, Record) {
	t.Helper()
	st := store.NewMemory()
	h := newHarness(t, st, approval.Policy{Mode: approval.Manual}, false)
	rec := h.declare()
	h.waitState(rec.ID, AwaitingApproval)
	h.stop()
	crashed(t, h.m, rec.ID)
	return h, st, rec
}

// crashed rewrites incident id as a crash while its rollback ran leaves it.
func crashed(t *testing.T, m *Manager, id int64) {
	t.Helper()
	r, rev, err := m.load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.State = RollingBack
	r.Actions = map[string]*Action{"incident-1/rollback.application": {Key: "incident-1/rollback.application", Kind: "rollback.application", State: ActionStarted, StartedAt: now}}
	r.add(now, event.RollbackStarted, "guardian", "rolling back", nil)
	if err := m.save(context.Background(), r, rev); err != nil {
		t.Fatal(err)
	}
}

func entryOf(r Record, typ event.Type) *Entry {
	for i := range r.Timeline {
		if r.Timeline[i].Type == typ {
			return &r.Timeline[i]
		}
	}
	return nil
}

func inOrder(got []event.Type, want ...event.Type) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// attachExec is an executor whose step can be followed across a restart.
type attachExec struct {
	fakeExec
	release  chan struct{}
	attached atomic.Int32
}

func (a *attachExec) Attach(ctx context.Context, t executor.Target) (executor.Result, error) {
	a.attached.Add(1)
	select {
	case <-a.release:
		return executor.Result{Output: "rolled back (finished while Guardian was down)"}, nil
	case <-ctx.Done():
		return executor.Result{}, ctx.Err()
	}
}

// The step found running after a restart is awaited: verification starts
// only once it ended, with its outcome recorded.
func TestResumeAwaitsTheRunningStep(t *testing.T) {
	h, st, rec := crashedDuringRollback(t)

	ax := &attachExec{release: make(chan struct{})}
	h2 := newHarness(t, st, approval.Policy{Mode: approval.Manual}, false, func(s *Service) { s.Application = ax })
	testenv.Eventually(t, 5*time.Second, func() error {
		if ax.attached.Load() != 1 {
			return errors.New("not attached")
		}
		return nil
	}, "the restarted driver to await the step")
	if r, _ := h2.m.Get(context.Background(), rec.ID); r.State != RollingBack || last(r).Type != event.RollbackResumed {
		t.Fatalf("before the step ended: %s %v", r.State, types(r))
	}
	h2.healthy.Store(true)
	close(ax.release)
	rec = h2.waitState(rec.ID, Resolved)
	if ax.n() != 0 {
		t.Fatal("the step ran again")
	}
	a := rec.Actions["incident-1/rollback.application"]
	if a.State != ActionSucceeded || !strings.Contains(a.Output, "finished while Guardian was down") {
		t.Fatalf("action %+v", a)
	}
	if !inOrder(types(rec), event.RollbackResumed, event.RollbackSucceeded, event.RecoveryProgress, event.RecoveryConfirmed) {
		t.Fatalf("timeline %v", types(rec))
	}
	wantPublished(t, h.pub, h2.pub, h2.settled(rec.ID))
}

// wantPublished checks that the published events of rec, across the
// harnesses of one store, went out once each and in order.
func wantPublished(t *testing.T, pubs ...any) {
	t.Helper()
	rec := pubs[len(pubs)-1].(Record)
	var got []event.Type
	for _, p := range pubs[:len(pubs)-1] {
		got = append(got, p.(*published).types()...)
	}
	var want []event.Type
	for _, e := range rec.Timeline {
		if e.Type.Published() {
			want = append(want, e.Type)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("published\n got %v\nwant %v", got, want)
	}
}

// A trigger still firing for the same deploy after its incident was
// resolved does not open a second incident.
func TestNoSecondIncidentForTheSameDeploy(t *testing.T) {
	h := newHarness(t, nil, approval.Policy{Mode: approval.Auto}, false)
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
		h := newHarness(t, nil, approval.Policy{Mode: approval.Manual}, false)
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

// An escalated incident does not leave the service unprotected: a newer
// deploy that fires closes it as superseded and gets its own incident,
// which rolls back.
func TestNewerDeploySupersedesAnEscalatedIncident(t *testing.T) {
	h := newHarness(t, nil, approval.Policy{Mode: approval.Auto}, false)
	h.app.onRun = nil // v2's rollback does not help: escalated
	first := h.waitState(h.declare().ID, Escalated)

	d, v := firing()
	// v2 still firing: nothing new, and nothing added to the escalated incident.
	again, created, err := h.m.Declare(context.Background(), d, v, nil, "SEV-1")
	if err != nil || created || again.ID != first.ID || len(again.Timeline) != len(first.Timeline) {
		t.Fatalf("v2 again: id %d created %v err %v, %d → %d entries", again.ID, created, err, len(first.Timeline), len(again.Timeline))
	}
	h.app.onRun = func() { h.healthy.Store(true) }
	d.Version, d.Baseline, d.At = "v3", "v2", deployedAt.Add(30*time.Second)
	third, created, err := h.m.Declare(context.Background(), d, v, nil, "SEV-1")
	if err != nil || !created || third.ID != 2 || third.Version != "v3" {
		t.Fatalf("v3: id %d created %v err %v", third.ID, created, err)
	}
	old := h.settled(first.ID)
	closed := entryOf(old, event.IncidentClosed)
	if old.State != Closed || closed == nil || closed.Data["superseded_by"] != "v3" {
		t.Fatalf("old incident %s %v", old.State, types(old))
	}
	h.waitState(third.ID, Resolved)
	if h.app.n() != 2 || h.app.calls[1].Version != "v3" || h.app.calls[1].IdempotencyKey != "incident-2/rollback.application" {
		t.Fatalf("rollbacks %+v", h.app.calls)
	}
	if id, ok := h.m.OpenFor("checkout"); ok {
		t.Fatalf("incident %d still open", id)
	}
}

func TestCloseByAPerson(t *testing.T) {
	h := newHarness(t, nil, approval.Policy{Mode: approval.Manual}, false)
	rec := h.waitState(h.declare().ID, AwaitingApproval)
	if _, err := h.m.Close(context.Background(), rec.ID, "token:carol", "api", ""); !errors.Is(err, ErrInvalidVote) {
		t.Fatalf("close without a reason: %v", err)
	}
	rec, err := h.m.Close(context.Background(), rec.ID, "token:carol", "api", "known issue, fixed forward")
	if err != nil || rec.State != Closed {
		t.Fatalf("close: %s %v", rec.State, err)
	}
	if _, err := h.m.Close(context.Background(), rec.ID, "token:carol", "api", "again"); !errors.Is(err, ErrFinished) {
		t.Fatalf("closing twice: %v", err)
	}
	if _, err := h.vote(rec.ID, true, "token:alice", ""); !errors.Is(err, ErrNoDecision) {
		t.Fatalf("approving a closed incident: %v", err)
	}
	rec = h.settled(rec.ID)
	if _, ok := h.m.OpenFor("checkout"); ok || h.app.n() != 0 || h.rep.count() != 1 {
		t.Fatalf("open %v rollbacks %d reports %d", ok, h.app.n(), h.rep.count())
	}
	if inOrder(types(rec), event.PostmortemScheduled) {
		t.Fatal("a post-mortem for an incident without rollback")
	}
}

// Guardian stops right after saving "resolved", before the report: the
// next Run writes it, and it and its events exist exactly once.
func TestReportCompletedAfterACrash(t *testing.T) {
	st := store.NewMemory()
	var h *harness
	crashes := 0
	h = newHarness(t, st, approval.Policy{Mode: approval.Auto}, false, nil, func(o *Options) {
		o.Fault = func(point string) {
			if point == FaultBeforeReport && crashes == 0 {
				crashes++
				h.cancel() // the report's timer finds the context ended
			}
		}
	})
	rec := h.waitState(h.declare().ID, Resolved)
	h.stop()
	if r, _ := h.m.Get(context.Background(), rec.ID); r.reportDone() || h.rep.count() != 0 {
		t.Fatalf("the report was written before the crash (%d)", h.rep.count())
	}
	h2 := newHarness(t, st, approval.Policy{Mode: approval.Auto}, false)
	rec = h2.settled(rec.ID)
	if h2.rep.count() != 1 || h2.app.n() != 0 {
		t.Fatalf("%d reports, %d rollbacks after the restart", h2.rep.count(), h2.app.n())
	}
	n := 0
	for _, e := range rec.Timeline {
		if e.Type == event.ReportWritten || e.Type == event.PostmortemScheduled {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("timeline %v", types(rec))
	}
	wantPublished(t, h.pub, h2.pub, rec)
	// A third start finds nothing left to do.
	h3 := newHarness(t, st, approval.Policy{Mode: approval.Auto}, false)
	h3.stop()
	if h3.rep.count() != 0 || len(h3.pub.types()) != 0 {
		t.Fatalf("third start: %d reports, published %v", h3.rep.count(), h3.pub.types())
	}
}

// fullDisk fails every write while full is set.
type fullDisk struct {
	store.Store
	full atomic.Bool
}

func (f *fullDisk) Put(ctx context.Context, bucket, key string, value []byte, rev uint64) (uint64, error) {
	if f.full.Load() {
		return 0, errors.New("write guardian.db: no space left on device")
	}
	return f.Store.Put(ctx, bucket, key, value, rev)
}

// While the store cannot be written nothing runs (the incident is saved
// before anything is done) and every attempt fails; the first declaration
// that can be saved takes number 1, and the rollback runs once.
func TestDeclareWhileTheStoreFails(t *testing.T) {
	st := &fullDisk{Store: store.NewMemory()}
	st.full.Store(true)
	h := newHarness(t, st, approval.Policy{Mode: approval.Auto}, false)
	d, v := firing()
	for range 3 {
		if _, _, err := h.m.Declare(context.Background(), d, v, nil, "SEV-1"); err == nil || !strings.Contains(err.Error(), "no space left") {
			t.Fatalf("declare on a full disk: %v", err)
		}
	}
	if n := h.app.n(); n != 0 {
		t.Fatalf("rolled back %d times with nothing saved", n)
	}
	st.full.Store(false)
	rec := h.declare()
	if rec.ID != 1 {
		t.Fatalf("the first saved incident is #%d", rec.ID)
	}
	h.waitState(1, Resolved)
	if n := h.app.n(); n != 1 {
		t.Fatalf("rolled back %d times", n)
	}
}
