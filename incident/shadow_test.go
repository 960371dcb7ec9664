package incident

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/testenv"
)

// shadowDeclared is incident 7 declared for a service in shadow mode.
func shadowDeclared(t *testing.T) Record {
	t.Helper()
	r, effs, err := Next(Record{}, Declare{ID: 7, Service: "checkout", Severity: "SEV-1", Version: "v2", Baseline: "v1",
		Trigger: "error-rate", Evidence: Evidence{Summary: "error-rate 0.2 > 0.05", Value: fptr(0.2)},
		DeployedAt: t0.Add(-time.Minute), Mode: ModeShadow}, rules(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != Detected || r.Mode != ModeShadow || effectNames(effs) != "Publish,WakeAt" {
		t.Fatalf("declare: %s %s [%s]", r.State, r.Mode, effectNames(effs))
	}
	if !strings.Contains(r.Timeline[0].Message, "shadow mode") {
		t.Errorf("declared entry does not say shadow mode: %q", r.Timeline[0].Message)
	}
	return r
}

func TestShadowRecordsTheDecisionAndActsNot(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy approval.Policy
		how    string
	}{
		{"manual", approval.Policy{Mode: approval.Manual}, "after a go/no-go (approval policy: manual)"},
		{"auto", approval.Policy{Mode: approval.Auto}, "at once (approval policy: auto)"},
		{"skip above", approval.Policy{Mode: approval.Manual, SkipAbove: fptr(0.1)}, "at once (approval policy: manual)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rl := rules()
			rl.Approval = tc.policy
			r, effs := step(t, shadowDeclared(t), Tick{}, rl, t0)
			if r.State != Shadow || !r.State.Open() {
				t.Fatalf("state %s, want shadow (open)", r.State)
			}
			if got := effectNames(effs); got != "Publish,Observe" {
				t.Fatalf("effects [%s], want Publish,Observe: nobody asked, nothing run", got)
			}
			if o := effs[1].(Observe); !o.At.Equal(t0.Add(5 * time.Second)) {
				t.Errorf("first observation at %s, want one probe interval later", o.At)
			}
			wantTypes(t, types(r), event.IncidentDeclared, event.ShadowDecision)
			e := last(r)
			want := "would have rolled back checkout v2 → v1 at 2026-03-04T10:00:00Z, " + tc.how + ", with command rollback.sh"
			if !strings.Contains(e.Message, want) {
				t.Errorf("decision %q\nwant it to contain %q", e.Message, want)
			}
			if e.Data["decision"] != "rollback" || e.Data["executor"] != "command rollback.sh" {
				t.Errorf("decision data %v", e.Data)
			}
			if len(r.Decisions) != 0 || len(r.Actions) != 0 || r.ApprovalRequestedAt != nil || r.ApprovedAt != nil {
				t.Errorf("shadow incident recorded a go/no-go or an action: %+v %+v", r.Decisions, r.Actions)
			}
			// A late tick (an auto_after deadline) changes nothing.
			if _, _, err := Next(r, Tick{}, rl, t0.Add(time.Hour)); !errors.Is(err, ErrIgnored) {
				t.Errorf("tick in shadow: %v, want ErrIgnored", err)
			}
		})
	}
}

func TestShadowWithoutExecutorSaysItWouldFail(t *testing.T) {
	rl := rules()
	rl.Application = ""
	r, _ := step(t, shadowDeclared(t), Tick{}, rl, t0)
	if r.State != Shadow || !strings.Contains(last(r).Message, "no rollback.application is configured") {
		t.Fatalf("%s: %q", r.State, last(r).Message)
	}
}

func TestShadowClosesItself(t *testing.T) {
	deployed := t0.Add(-time.Minute)
	for _, tc := range []struct {
		name   string
		obs    Observed
		reason string
		msg    string
	}{
		{"watch ended", Observed{Serving: []string{"v2"}}, "watch_ended", "the watch of checkout v2 ended"},
		{"new deploy", Observed{Watching: true, Version: "v3", DeployedAt: t0.Add(time.Minute), Serving: []string{"v3"}},
			"version_changed", "checkout v3 was deployed at 2026-03-04T10:01:00Z, replacing v2"},
		{"redeploy of the same version", Observed{Watching: true, Version: "v2", DeployedAt: t0.Add(time.Minute)},
			"version_changed", "checkout v2 was deployed at 2026-03-04T10:01:00Z"},
		{"rolled back by hand", Observed{Watching: true, Version: "v2", DeployedAt: deployed, Serving: []string{"v1"}},
			"version_changed", "checkout no longer serves v2 (serving v1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := step(t, shadowDeclared(t), Tick{}, rules(), t0)
			r, effs := step(t, r, tc.obs, rules(), t0.Add(time.Minute))
			if r.State != Closed || r.ClosedAt == nil {
				t.Fatalf("state %s, want closed", r.State)
			}
			if got := effectNames(effs); got != "Publish,WriteReport" {
				t.Fatalf("effects [%s]", got)
			}
			if w := effs[1].(WriteReport); w.Postmortem {
				t.Error("a post-mortem was scheduled though nothing ran")
			}
			e := last(r)
			if e.Type != event.IncidentClosed || e.Data["reason"] != tc.reason || !strings.Contains(e.Message, tc.msg) ||
				!strings.Contains(e.Message, "Guardian did not act") {
				t.Errorf("closing entry %s %v %q", e.Type, e.Data, e.Message)
			}
		})
	}
	t.Run("still watched and serving", func(t *testing.T) {
		r, _ := step(t, shadowDeclared(t), Tick{}, rules(), t0)
		for _, serving := range [][]string{{"v2", "v1"}, nil} {
			n, effs := step(t, r, Observed{Watching: true, Version: "v2", DeployedAt: deployed, Serving: serving}, rules(), t0.Add(time.Minute))
			if n.State != Shadow || effectNames(effs) != "Observe" || len(n.Timeline) != len(r.Timeline) {
				t.Fatalf("serving %v: %s [%s]", serving, n.State, effectNames(effs))
			}
		}
	})
}

// TestShadowModeIsFixedAtDeclare: a service switched to enforce (its rules
// now ask for an automatic rollback) does not roll back an incident
// declared in shadow mode, across a restart too; a go or no-go is refused.
func TestShadowModeIsFixedAtDeclare(t *testing.T) {
	r, _ := step(t, shadowDeclared(t), Tick{}, rules(), t0)
	r.Published = len(r.Timeline)
	enforce := rules()
	enforce.Approval = approval.Policy{Mode: approval.Auto}
	n, effs := step(t, r, Restart{}, enforce, t0.Add(time.Minute))
	if n.State != Shadow || effectNames(effs) != "Observe" {
		t.Fatalf("restart under enforce rules: %s [%s]", n.State, effectNames(effs))
	}
	if _, _, err := Next(n, Tick{}, enforce, t0.Add(time.Minute)); !errors.Is(err, ErrIgnored) {
		t.Fatalf("tick: %v", err)
	}
	for _, approve := range []bool{true, false} {
		_, _, err := Next(n, Voted{Vote: approval.Vote{Incident: 7, Approve: approve, By: "token:alice", Reason: "x"}}, enforce, t0.Add(time.Minute))
		if !errors.Is(err, ErrShadow) || !strings.Contains(err.Error(), "shadow mode") {
			t.Errorf("vote %v: %v, want ErrShadow", approve, err)
		}
	}
	closed, _ := step(t, n, Observed{}, enforce, t0.Add(2*time.Minute))
	if _, _, err := Next(closed, Voted{Vote: approval.Vote{Incident: 7, Approve: true, By: "token:alice"}}, enforce, t0.Add(3*time.Minute)); !errors.Is(err, ErrShadow) {
		t.Errorf("vote on a closed shadow incident: %v, want ErrShadow", err)
	}
}

func TestRequestedRollbackIsEnforcedInShadowMode(t *testing.T) {
	r, _ := step(t, Record{}, Declare{ID: 7, Service: "checkout", Version: "v2", Baseline: "v1", Mode: ModeShadow,
		RequestedBy: &Requester{By: "token:alice", Channel: "cli", Reason: "customers report failures"}}, rules(), t0)
	if r.Mode != ModeEnforce {
		t.Fatalf("mode %s, want enforce: a person asked", r.Mode)
	}
	r, effs := step(t, r, Tick{}, rules(), t0)
	if r.State != RollingBack || effectNames(effs) != "Publish,RunStep" {
		t.Fatalf("%s [%s]", r.State, effectNames(effs))
	}
}

func TestRecordWithoutModeIsEnforced(t *testing.T) {
	old := `{"id":3,"service":"checkout","state":"detected","version":"v2","baseline":"v1","step":"application","timeline":[]}`
	var r Record
	if err := json.Unmarshal([]byte(old), &r); err != nil {
		t.Fatal(err)
	}
	if r.Shadowed() {
		t.Fatal("a record without mode reads as shadow")
	}
	n, effs := step(t, r, Tick{}, rules(), t0)
	if n.State != AwaitingApproval || effectNames(effs) != "Publish,AskApproval" {
		t.Fatalf("%s [%s]", n.State, effectNames(effs))
	}
	b, _ := json.Marshal(shadowDeclared(t))
	if !strings.Contains(string(b), `"mode":"shadow"`) {
		t.Errorf("mode not persisted: %s", b)
	}
}

// TestManagerShadow drives a shadow incident through the Manager under an
// automatic policy: the decision is counted, no executor runs, a go is
// refused, and the incident closes once the watch of its deploy ends.
func TestManagerShadow(t *testing.T) {
	var watching atomic.Bool
	watching.Store(true)
	reg := prometheus.NewRegistry()
	h := newHarness(t, nil, approval.Policy{Mode: approval.Auto}, false,
		func(s *Service) {
			s.Mode = ModeShadow
			s.Watching = func() (string, time.Time, bool) { return "v2", deployedAt, watching.Load() }
		},
		func(o *Options) { o.Registry = reg })
	id := h.declare().ID
	rec := h.waitState(id, Shadow)
	if rec.Mode != ModeShadow || entryOf(rec, event.ShadowDecision) == nil {
		t.Fatalf("mode %s, timeline %v", rec.Mode, types(rec))
	}
	// Counted once the transition is saved, after the record is readable.
	testenv.Eventually(t, 5*time.Second, func() error {
		if got := testutil.ToFloat64(h.m.m.shadow.WithLabelValues("checkout", "rollback")); got != 1 {
			return fmt.Errorf("guardian_shadow_decisions_total = %g", got)
		}
		return nil
	}, "the shadow decision counted")
	if _, err := h.vote(id, true, "token:alice", "go"); !errors.Is(err, ErrShadow) {
		t.Fatalf("vote: %v, want ErrShadow", err)
	}
	watching.Store(false)
	h.waitState(id, Closed)
	rec = h.settled(id)
	if h.app.n() != 0 || len(rec.Actions) != 0 || rec.Report == nil || rec.Report.Invite != "" {
		t.Fatalf("rollbacks %d, actions %v, report %+v", h.app.n(), rec.Actions, rec.Report)
	}
	if !inOrder(h.pub.types(), event.IncidentDeclared, event.ShadowDecision, event.IncidentClosed, event.ReportWritten) {
		t.Fatalf("published %v", h.pub.types())
	}
	if n, _ := testutil.GatherAndCount(reg, "guardian_shadow_decisions_total"); n != 1 {
		t.Fatalf("%d series of guardian_shadow_decisions_total registered", n)
	}
}

// TestManagerRequestedRollbackOnShadowService: a person's rollback of a
// service in shadow mode is enforced, once its open shadow incident is
// closed (the request says so while it is open).
func TestManagerRequestedRollbackOnShadowService(t *testing.T) {
	h := newHarness(t, nil, approval.Policy{Mode: approval.Manual}, false, func(s *Service) {
		s.Mode = ModeShadow
		s.Watching = func() (string, time.Time, bool) { return "v2", deployedAt, true }
	})
	id := h.declare().ID
	h.waitState(id, Shadow)
	d, _ := firing()
	who := Requester{By: "token:alice", Channel: "cli", Reason: "orders written twice"}
	if _, err := h.m.RequestRollback(context.Background(), d, nil, "SEV-1", who); !errors.Is(err, ErrOpenIncident) ||
		!strings.Contains(err.Error(), "shadow mode; close it first") {
		t.Fatalf("request with a shadow incident open: %v", err)
	}
	if _, err := h.m.Close(context.Background(), id, "token:alice", "cli", "rolling back by hand"); err != nil {
		t.Fatal(err)
	}
	rec, err := h.m.RequestRollback(context.Background(), d, nil, "SEV-1", who)
	if err != nil {
		t.Fatal(err)
	}
	rec = h.waitState(rec.ID, Resolved)
	if rec.Mode != ModeEnforce || h.app.n() != 1 {
		t.Fatalf("mode %s, rollbacks %d", rec.Mode, h.app.n())
	}
}
