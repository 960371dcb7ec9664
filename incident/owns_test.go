package incident

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/store"
)

// Two Managers over one store, as two replicas that share the services
// out: only the owner of a service declares and drives its incidents; when
// the service changes hands, the old owner lets the incident go and the new
// one resumes it from the store, and the rollback runs once.
func TestOwnershipMovesAnIncident(t *testing.T) {
	st := store.NewMemory()
	var ownerIsB atomic.Bool
	a := newHarness(t, st, approval.Policy{Mode: approval.Manual}, false,
		func(o *Options) { o.Owns = func(string) bool { return !ownerIsB.Load() } })
	b := newHarness(t, st, approval.Policy{Mode: approval.Manual}, false,
		func(o *Options) { o.Owns = func(string) bool { return ownerIsB.Load() } })
	ctx := context.Background()

	d, v := firing()
	if _, _, err := b.m.Declare(ctx, d, v, nil, "SEV-1"); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("a replica that does not own the service declared: %v", err)
	}
	rec := a.declare()
	a.waitState(rec.ID, AwaitingApproval)
	if _, ok := a.m.OpenFor("checkout"); !ok {
		t.Fatal("the owner does not know its open incident")
	}
	if _, err := b.vote(rec.ID, true, "token:alice", ""); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("a vote at a replica that does not own the service: %v", err)
	}

	// The service changes hands: each side follows.
	ownerIsB.Store(true)
	if err := a.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.m.OpenFor("checkout"); ok {
		t.Fatal("the old owner still holds the open incident")
	}
	a.m.mu.Lock()
	pending := len(a.m.timers) + len(a.m.driven) + len(a.m.running)
	a.m.mu.Unlock()
	if pending != 0 {
		t.Fatalf("the old owner keeps %d timers, effects or driven services", pending)
	}
	if err := b.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if id, ok := b.m.OpenFor("checkout"); !ok || id != rec.ID {
		t.Fatalf("the new owner's open incident: %d %v", id, ok)
	}
	if _, err := a.vote(rec.ID, true, "token:alice", ""); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("a vote at the old owner: %v", err)
	}
	if _, err := b.vote(rec.ID, true, "token:alice", ""); err != nil {
		t.Fatal(err)
	}
	b.waitState(rec.ID, Resolved)
	b.settled(rec.ID)
	if na, nb := a.app.n(), b.app.n(); na != 0 || nb != 1 {
		t.Fatalf("the rollback ran %d times at the old owner, %d at the new one", na, nb)
	}
}
