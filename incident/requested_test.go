package incident

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/rollout"
)

// A person asks for a rollback no trigger shows: the incident is declared
// with the person as its source and reason, the request is the go (even
// under a manual policy), and the same rollback, verification and report
// follow.
func TestRequestRollback(t *testing.T) {
	h := newHarness(t, nil, approval.Policy{Mode: approval.Manual}, false)
	d := rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1", At: deployedAt}
	rec, err := h.m.RequestRollback(context.Background(), d, nil, "SEV-1",
		Requester{By: "token:alice", Channel: approval.ChannelCLI, Reason: "orders are written twice"})
	if err != nil {
		t.Fatal(err)
	}
	rec = h.waitState(rec.ID, Resolved)
	rec = h.settled(rec.ID)
	wantTypes(t, types(rec)[:4], "incident.declared", "approval.granted", "rollback.started", "rollback.succeeded")
	if e := rec.Timeline[0]; e.Actor != "token:alice" || !strings.Contains(e.Message, "orders are written twice") || e.Data["requested_by"] != "token:alice" {
		t.Fatalf("declared entry %+v", e)
	}
	if rec.RequestedBy == nil || rec.RequestedBy.Reason != "orders are written twice" || rec.Trigger != "" {
		t.Fatalf("record: requested by %+v, trigger %q", rec.RequestedBy, rec.Trigger)
	}
	if len(rec.Decisions) != 1 || !rec.Decisions[0].Approved || rec.Decisions[0].By != "token:alice" || rec.Decisions[0].Channel != approval.ChannelCLI {
		t.Fatalf("decisions %+v", rec.Decisions)
	}
	if h.app.n() != 1 || h.app.calls[0].Baseline != "v1" || h.app.calls[0].Version != "v2" {
		t.Fatalf("executor calls %+v", h.app.calls)
	}
	if h.rep.count() != 1 {
		t.Fatalf("%d reports", h.rep.count())
	}
}

// A request without a reason or a person is refused and numbers nothing;
// one while an incident is open names that incident.
func TestRequestRollbackRefused(t *testing.T) {
	h := newHarness(t, nil, approval.Policy{Mode: approval.Manual}, false)
	d := rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1", At: deployedAt}
	for _, r := range []Requester{{By: "token:alice"}, {Reason: "why not"}, {By: "token:alice", Reason: strings.Repeat("x", approval.MaxReason+1)}} {
		if _, err := h.m.RequestRollback(context.Background(), d, nil, "SEV-1", r); !errors.Is(err, ErrInvalidVote) {
			t.Errorf("%+v: err = %v, want ErrInvalidVote", r, err)
		}
	}
	open := h.declare()
	if open.ID != 1 {
		t.Fatalf("the refused requests took incident numbers: the next is %d", open.ID)
	}
	h.waitState(open.ID, AwaitingApproval)
	_, err := h.m.RequestRollback(context.Background(), d, nil, "SEV-1", Requester{By: "token:alice", Reason: "r"})
	if !errors.Is(err, ErrOpenIncident) || !strings.Contains(err.Error(), "incident 1") {
		t.Fatalf("err = %v, want ErrOpenIncident naming incident 1", err)
	}
	if h.app.n() != 0 {
		t.Fatal("rolled back")
	}
}
