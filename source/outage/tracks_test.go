package outage

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/store"
)

// Two replicas that share the services out both see a shared source fail;
// only the one that tracks it announces the outage. When tracking moves to
// the other, it takes the outage over from the saved state: no second
// announcement, and the recovery numbered after the saved events.
func TestMonitorTracksMoves(t *testing.T) {
	st := store.NewMemory()
	ctx := context.Background()
	var bTracks atomic.Bool
	a, b := newRig(t, st), newRig(t, st)
	a.m.opts.Tracks = func(s Source) bool { return !bTracks.Load() && s.ID == "prom" }
	b.m.opts.Tracks = func(s Source) bool { return bTracks.Load() && s.ID == "prom" }
	for _, r := range []*rig{a, b} {
		r.m.Configure(time.Minute, shared())
	}
	for _, sec := range []int{0, 30, 60} {
		for _, r := range []*rig{a, b} {
			r.at(sec)
			r.m.Observer("prom")(ctx, errRefused)
		}
	}
	if q := a.take(); !slices.Equal(q, []string{"oncall src_prom_1 source.unreachable", "payments-team src_prom_1 source.unreachable"}) {
		t.Fatalf("the tracking replica queued %v", q)
	}
	if q := b.take(); len(q) != 0 || b.up("prom") != 1 || b.outages("prom") != 0 {
		t.Fatalf("the other replica queued %v (up %v, outages %v)", q, b.up("prom"), b.outages("prom"))
	}

	bTracks.Store(true)
	for _, sec := range []int{90, 120} {
		for _, r := range []*rig{a, b} {
			r.at(sec)
			r.m.Observer("prom")(ctx, errRefused)
		}
	}
	if q := append(a.take(), b.take()...); len(q) != 0 {
		t.Fatalf("the outage was announced again when tracking moved: %v", q)
	}
	if b.up("prom") != 0 || a.up("prom") != 1 {
		t.Errorf("up: tracking %v, no longer tracking %v; want 0, 1", b.up("prom"), a.up("prom"))
	}
	for _, r := range []*rig{a, b} {
		r.at(150)
		r.m.Observer("prom")(ctx, nil)
	}
	if q := b.take(); !slices.Equal(q, []string{"oncall src_prom_2 source.recovered", "payments-team src_prom_2 source.recovered"}) {
		t.Fatalf("the new tracker queued %v", q)
	}
	if q := a.take(); len(q) != 0 {
		t.Fatalf("the old tracker queued %v", q)
	}
}
