package outage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/store"
)

var (
	errRefused = fmt.Errorf("dial tcp: connection refused: %w", source.ErrUnavailable)
	errBad     = fmt.Errorf("parse error: %w", source.ErrBadQuery)
)

// rig is a Monitor over a memory store, with a settable clock and the
// events it queued, by receiver.
type rig struct {
	m   *Monitor
	reg *prometheus.Registry
	st  store.Store

	mu     sync.Mutex
	now    time.Time
	queued []string // "receiver id type"
}

func newRig(t *testing.T, st store.Store) *rig {
	t.Helper()
	if st == nil {
		st = store.NewMemory()
	}
	r := &rig{reg: prometheus.NewRegistry(), st: st, now: t0}
	r.m = NewMonitor(Options{
		Registerer: r.reg,
		Now:        func() time.Time { r.mu.Lock(); defer r.mu.Unlock(); return r.now },
		Store:      func() store.Store { return r.st },
		Enqueue: func(_ context.Context, receiver string, e notify.Event) error {
			if e.Incident != 0 || e.Sequence == 0 {
				t.Errorf("event %+v", e)
			}
			// Whoever hears of it sees it in the metrics already.
			if up := testutil.ToFloat64(r.m.up.WithLabelValues(e.Data["source"].(string))); up != map[event.Type]float64{event.SourceRecovered: 1}[e.Type] {
				t.Errorf("%s queued while guardian_source_up is %v", e.Type, up)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			r.queued = append(r.queued, receiver+" "+e.ID+" "+string(e.Type))
			return nil
		},
	})
	return r
}

// at sets the clock to sec seconds after t0.
func (r *rig) at(sec int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = at(sec)
}

// take returns the events queued since the last take.
func (r *rig) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queued
	r.queued = nil
	return q
}

func (r *rig) up(id string) float64      { return testutil.ToFloat64(r.m.up.WithLabelValues(id)) }
func (r *rig) outages(id string) float64 { return testutil.ToFloat64(r.m.outages.WithLabelValues(id)) }

func shared() []Source {
	return []Source{{ID: "prom", Kind: KindPrometheus, URL: "http://prom:9090",
		Services: []string{"checkout", "payments"}, Receivers: []string{"oncall", "payments-team"}}}
}

// Two services share one source: their failures make one outage, told once
// to each receiver of either, and one recovery.
func TestMonitorSharedSource(t *testing.T) {
	r := newRig(t, nil)
	r.m.Configure(time.Minute, shared())
	checkout, payments := r.m.Observer("prom"), r.m.Observer("prom")
	ctx := context.Background()

	for sec := 0; sec < 60; sec += 5 {
		r.at(sec)
		checkout(ctx, errRefused)
		payments(ctx, errRefused)
	}
	if q := r.take(); len(q) != 0 || r.up("prom") != 1 {
		t.Fatalf("before a minute: queued %v, up %v", q, r.up("prom"))
	}
	r.at(60)
	checkout(ctx, errRefused)
	payments(ctx, errRefused)
	r.at(65)
	payments(ctx, errBad)
	checkout(ctx, errRefused)
	want := []string{"oncall src_prom_1 source.unreachable", "payments-team src_prom_1 source.unreachable"}
	if q := r.take(); !slices.Equal(q, want) {
		t.Fatalf("queued %v, want %v", q, want)
	}
	if r.up("prom") != 0 || r.outages("prom") != 1 {
		t.Errorf("up %v, outages %v; want 0, 1", r.up("prom"), r.outages("prom"))
	}

	r.at(70)
	payments(ctx, nil)
	checkout(ctx, nil)
	want = []string{"oncall src_prom_2 source.recovered", "payments-team src_prom_2 source.recovered"}
	if q := r.take(); !slices.Equal(q, want) {
		t.Fatalf("queued %v, want %v", q, want)
	}
	if r.up("prom") != 1 || r.outages("prom") != 1 {
		t.Errorf("up %v, outages %v; want 1, 1", r.up("prom"), r.outages("prom"))
	}

	// The next outage has the next IDs.
	for sec := 100; sec <= 160; sec += 30 {
		r.at(sec)
		checkout(ctx, context.DeadlineExceeded)
	}
	r.at(170)
	checkout(ctx, nil)
	want = []string{"oncall src_prom_3 source.unreachable", "payments-team src_prom_3 source.unreachable",
		"oncall src_prom_4 source.recovered", "payments-team src_prom_4 source.recovered"}
	if q := r.take(); !slices.Equal(q, want) {
		t.Fatalf("queued %v, want %v", q, want)
	}
	if r.outages("prom") != 2 {
		t.Errorf("outages %v, want 2", r.outages("prom"))
	}
}

// An outage outlives a restart: the new Monitor does not announce it again
// and ends it with one recovery, numbered after the saved events.
func TestMonitorRestart(t *testing.T) {
	st := store.NewMemory()
	ctx := context.Background()
	first := newRig(t, st)
	first.m.Configure(time.Minute, shared())
	for _, sec := range []int{0, 60} {
		first.at(sec)
		first.m.Observer("prom")(ctx, errRefused)
	}
	if q := first.take(); len(q) != 2 {
		t.Fatalf("queued %v", q)
	}

	second := newRig(t, st)
	second.m.Configure(time.Minute, shared())
	second.at(300)
	second.m.Observer("prom")(ctx, errRefused)
	if q := second.take(); len(q) != 0 {
		t.Fatalf("the outage was announced again: %v", q)
	}
	if second.up("prom") != 0 || second.outages("prom") != 0 {
		t.Errorf("up %v, outages %v after the restart; want 0, 0", second.up("prom"), second.outages("prom"))
	}
	var rec notify.Event
	second.m.opts.Enqueue = func(_ context.Context, _ string, e notify.Event) error { rec = e; return nil }
	second.at(400)
	second.m.Observer("prom")(ctx, nil)
	if rec.ID != "src_prom_2" || rec.Type != event.SourceRecovered || !strings.Contains(rec.Text, "unreachable for 6m40s, since 2026-03-01T12:00:00Z") {
		t.Errorf("recovery after the restart: %+v", rec)
	}

	// A third start sees no outage, and keeps counting.
	third := newRig(t, st)
	third.m.Configure(time.Minute, shared())
	for _, sec := range []int{500, 560} {
		third.at(sec)
		third.m.Observer("prom")(ctx, errRefused)
	}
	if q := third.take(); !slices.Equal(q, []string{"oncall src_prom_3 source.unreachable", "payments-team src_prom_3 source.unreachable"}) {
		t.Errorf("queued %v", q)
	}
}

// A reload keeps an ongoing outage of a source it keeps, telling the
// recovery to the receivers configured now; a source it drops is forgotten,
// its series too; 0 turns everything off.
func TestMonitorConfigure(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	scr := Source{ID: ScrapeID("cart"), Kind: KindScrape, URL: "http://cart/metrics", Services: []string{"cart"}, Receivers: []string{"cart-team"}}
	r.m.Configure(time.Minute, append(shared(), scr))
	obs := r.m.Observer("prom")
	for _, sec := range []int{0, 60} {
		r.at(sec)
		obs(ctx, errRefused)
		r.m.ScrapeObserver("cart")(ctx, errRefused)
	}
	if q := r.take(); len(q) != 3 {
		t.Fatalf("queued %v", q)
	}

	moved := shared()
	moved[0].Receivers = []string{"sre"}
	r.m.Configure(2*time.Minute, moved)
	if n := testutil.CollectAndCount(r.m.up); n != 1 {
		t.Errorf("guardian_source_up has %d series after the scrape was dropped, want 1", n)
	}
	r.at(70)
	r.m.ScrapeObserver("cart")(ctx, nil)
	obs(ctx, nil)
	if q := r.take(); !slices.Equal(q, []string{"sre src_prom_2 source.recovered"}) {
		t.Errorf("queued %v", q)
	}

	r.m.Configure(0, moved)
	for _, sec := range []int{100, 1000} {
		r.at(sec)
		obs(ctx, errRefused)
	}
	if q := r.take(); len(q) != 0 {
		t.Errorf("queued %v with the alert off", q)
	}
	if n := testutil.CollectAndCount(r.m.up); n != 0 {
		t.Errorf("guardian_source_up has %d series with the alert off", n)
	}
}

// Nothing is observed before the store opens, nor while the saved state
// cannot be read: the count that keeps IDs unique is there.
func TestMonitorNeedsTheStore(t *testing.T) {
	r := newRig(t, nil)
	r.st = nil
	r.m.Configure(time.Minute, shared())
	ctx := context.Background()
	for _, sec := range []int{0, 60, 120} {
		r.at(sec)
		r.m.Observer("prom")(ctx, errRefused)
	}
	if q := r.take(); len(q) != 0 {
		t.Errorf("queued %v without a store", q)
	}

	r.st = failingStore{store.NewMemory()}
	for _, sec := range []int{200, 300} {
		r.at(sec)
		r.m.Observer("prom")(ctx, errRefused)
	}
	if q := r.take(); len(q) != 0 {
		t.Errorf("queued %v with an unreadable store", q)
	}
	r.st = store.NewMemory()
	for _, sec := range []int{400, 460} {
		r.at(sec)
		r.m.Observer("prom")(ctx, errRefused)
	}
	if q := r.take(); len(q) != 2 {
		t.Errorf("queued %v once the store reads", q)
	}
}

type failingStore struct{ store.Store }

func (failingStore) Get(context.Context, string, string) (store.KV, error) {
	return store.KV{}, errors.New("disk on fire")
}

func TestObserverOfNothing(t *testing.T) {
	m := NewMonitor(Options{})
	if m.Observer("") != nil {
		t.Error("Observer(\"\") is not nil")
	}
	m.Observer("unknown")(context.Background(), errRefused) // not configured: ignored
}

func TestSources(t *testing.T) {
	cfg, err := config.Parse([]byte(`
sources:
  - name: prom
    prometheus: { url: "https://guardian:pw@prom.example/prefix?x=1" }
  - name: unused
    prometheus: { url: "http://unused:9090" }
services:
  - name: checkout
    source: prom
    notify: [oncall, checkout-team]
    triggers: [{name: errors, query: 'up{version="{{.Version}}"}', below: 1}]
  - name: cart
    scrape: { url: "http://cart:8080/metrics" }
    notify: [oncall]
    triggers: [{name: errors, query: 'up{version="{{.Version}}"}', below: 1}]
  - name: payments
    source: prom
    notify: [oncall]
    triggers: [{name: errors, query: 'up{version="{{.Version}}"}', below: 1}]
notifiers:
  - {name: oncall, webhook: {url: "http://hooks/oncall"}}
  - {name: checkout-team, webhook: {url: "http://hooks/checkout"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%+v", Sources(cfg))
	want := fmt.Sprintf("%+v", []Source{
		{ID: "prom", Kind: KindPrometheus, URL: "https://prom.example/prefix", Services: []string{"checkout", "payments"}, Receivers: []string{"checkout-team", "oncall"}},
		{ID: "scrape:cart", Kind: KindScrape, URL: "http://cart:8080/metrics", Services: []string{"cart"}, Receivers: []string{"oncall"}},
	})
	if got != want {
		t.Errorf("Sources\n %s\nwant\n %s", got, want)
	}

	m := NewMonitor(Options{Registerer: prometheus.NewRegistry()})
	m.Apply(cfg)
	if n := testutil.CollectAndCount(m.up); n != 2 {
		t.Errorf("guardian_source_up has %d series, want 2 (default source_alert_after)", n)
	}
}
