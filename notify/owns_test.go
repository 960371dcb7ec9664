package notify_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/store"
)

// Two outboxes over one store, as two replicas that share the services
// out: each delivers the events of the services it owns; when a service
// changes hands, the old owner stops delivering its pending events and the
// new one takes them up from the store, in order.
func TestOwnershipMovesPendingDeliveries(t *testing.T) {
	st := store.NewMemory()
	var ownerIsB atomic.Bool
	down := &fake{fail: func(int, notify.Event) (bool, error) { return true, errDown }}
	a, regA := newOutbox(t, st, map[string]notify.Notifier{"oncall": down}, notify.OutboxOptions{Logger: zaptest.NewLogger(t),
		Owns: func(string) bool { return !ownerIsB.Load() }})
	up := &fake{}
	b, regB := newOutbox(t, st, map[string]notify.Notifier{"oncall": up}, notify.OutboxOptions{
		Owns: func(string) bool { return ownerIsB.Load() }})
	// Both have read the store (as Run does first) before anything is
	// enqueued.
	for _, o := range []*notify.Outbox{a, b} {
		if err := o.Resync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ra, rb := start(t, a), start(t, b)
	all := events(1, 4)
	// An event of no service (a metric source's outage) stays with the
	// replica that enqueued it.
	outage := notify.Event{ID: "evt_source_prom_1", Type: all[0].Type, Time: all[0].Time, Text: "prometheus unreachable"}
	if err := b.Enqueue(context.Background(), "oncall", outage); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the outage delivered by the replica that enqueued it", func() bool { return len(up.got()) == 1 })
	up.mu.Lock()
	up.delivered, up.attempts = nil, 0
	up.mu.Unlock()
	for _, e := range all[:3] {
		if err := a.Enqueue(context.Background(), "oncall", e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the owner to try and fail", func() bool { return down.tries() >= 2 })
	if err := b.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if q := queueLen(t, regB, "oncall"); q != 0 || up.tries() != 0 {
		t.Fatalf("a replica that does not own the service took up %v deliveries (%d tries)", q, up.tries())
	}

	ownerIsB.Store(true)
	if err := a.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The new owner's own event goes behind the ones it took up.
	if err := b.Enqueue(context.Background(), "oncall", all[3]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new owner to deliver everything", func() bool { return len(up.got()) == 4 })
	if got := up.got(); !slices.Equal(got, ids(all)) {
		t.Fatalf("the new owner delivered %v, want %v", got, ids(all))
	}
	waitFor(t, "the old owner to let its queue go", func() bool { return queueLen(t, regA, "oncall") == 0 })
	ra.stop()
	rb.stop()
	if n := pending(t, st); n != 0 {
		t.Fatalf("%d deliveries left in the store", n)
	}
	if len(down.got()) != 0 {
		t.Fatalf("the old owner delivered %v", down.got())
	}
}
