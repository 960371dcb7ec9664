package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	commoncfg "github.com/prometheus/common/config"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/webhook"
	"github.com/rollback-guardian/guardian/sign"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/store/bolt"
	"github.com/rollback-guardian/guardian/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor waits for cond, up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.EventuallyTrue(t, 10*time.Second, cond, what)
}

func events(from, to int) []notify.Event {
	var es []notify.Event
	for i := from; i <= to; i++ {
		es = append(es, notify.Event{
			ID:       fmt.Sprintf("evt_7_%d", i),
			Type:     event.IncidentDeclared,
			Time:     time.Date(2025, 1, 1, 0, 0, i, 0, time.UTC),
			Incident: 7,
			Service:  "checkout",
			Severity: "SEV-1",
			State:    "detected",
			Text:     fmt.Sprintf("event %d", i),
			Data:     map[string]any{"seq": i},
		})
	}
	return es
}

func ids(es []notify.Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// fake is an in-process receiver. fail decides each attempt's outcome (nil:
// success); block, if set, makes Notify wait for it or for ctx.
type fake struct {
	mu        sync.Mutex
	fail      func(attempt int, e notify.Event) (retry bool, err error)
	block     chan struct{}
	attempts  int
	delivered []string
}

func (f *fake) Notify(ctx context.Context, e notify.Event) (bool, error) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	if f.fail != nil {
		if retry, err := f.fail(f.attempts, e); err != nil {
			return retry, err
		}
	}
	f.delivered = append(f.delivered, e.ID)
	return false, nil
}

func (f *fake) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.delivered)
}

func (f *fake) tries() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts
}

var errDown = errors.New("receiver down")

// fakeClock is a manual clock: After fires when Advance passes its time.
// With auto set, After advances the clock itself and fires at once, so
// backoffs take no real time.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	auto    bool
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newClock(auto bool) *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC), auto: auto}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if c.auto {
		c.now = c.now.Add(d)
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			keep = append(keep, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = keep
}

// Waiting reports how many After channels have not fired yet.
func (c *fakeClock) Waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// running is an Outbox with its Run goroutine.
type running struct {
	*notify.Outbox
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, o *notify.Outbox) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Outbox: o, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- o.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// stop cancels Run and waits for it; it may be called more than once.
func (r *running) stop() {
	r.cancel()
	if err, ok := <-r.done; ok {
		if err != nil {
			panic(fmt.Sprintf("Run returned %v", err))
		}
		close(r.done)
	}
}

func newOutbox(t *testing.T, st store.Store, receivers map[string]notify.Notifier, opts notify.OutboxOptions) (*notify.Outbox, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	o, err := notify.NewOutbox(st, receivers, opts)
	if err != nil {
		t.Fatalf("NewOutbox: %v", err)
	}
	return o, reg
}

func openBolt(t *testing.T, path string) *bolt.Store {
	t.Helper()
	s, err := bolt.OpenTimeout(path, time.Second, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// metric returns the value of a counter or gauge with the given labels, and
// whether it exists.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

func count(t *testing.T, reg *prometheus.Registry, receiver string, result notify.Result) float64 {
	t.Helper()
	v, _ := metric(t, reg, "guardian_notifications_total", map[string]string{"receiver": receiver, "result": result.String()})
	return v
}

func queueLen(t *testing.T, reg *prometheus.Registry, receiver string) float64 {
	t.Helper()
	v, _ := metric(t, reg, "guardian_notification_queue_length", map[string]string{"receiver": receiver})
	return v
}

func pending(t *testing.T, st store.Store) int {
	t.Helper()
	kvs, err := st.List(context.Background(), notify.OutboxBucket)
	if err != nil {
		t.Fatal(err)
	}
	return len(kvs)
}

// TestWebhookFailsThenRecovers sends through the real webhook notifier to a
// receiver that answers 500 to the first requests: every event arrives,
// signed, in enqueue order, exactly once.
func TestWebhookFailsThenRecovers(t *testing.T) {
	const failures = 4
	var (
		mu       sync.Mutex
		requests int
		got      []string
		badSigs  int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		requests++
		if err := sign.Verify(r.Header, []byte("hmac-key"), body, time.Now(), time.Minute); err != nil {
			badSigs++
		}
		if requests <= failures {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var e struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(body, &e)
		got = append(got, e.ID)
	}))
	defer srv.Close()
	wh, err := webhook.New(config.Webhook{URL: srv.URL, SecretFile: "/k", Secret: commoncfg.Secret("hmac-key")}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	st := openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	defer st.Close()
	o, reg := newOutbox(t, st, map[string]notify.Notifier{"oncall": wh}, notify.OutboxOptions{})
	r := start(t, o)

	want := events(1, 10)
	for _, e := range want {
		if err := o.Enqueue(context.Background(), "oncall", e); err != nil {
			t.Fatal(err)
		}
	}
	delivered := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(got) }
	waitFor(t, "10 deliveries", func() bool { return len(delivered()) >= 10 && queueLen(t, reg, "oncall") == 0 })
	r.stop()

	mu.Lock()
	defer mu.Unlock()
	if d := slices.Clone(got); !slices.Equal(d, ids(want)) {
		t.Errorf("receiver got %v, want each event once in enqueue order %v", d, ids(want))
	}
	if badSigs != 0 {
		t.Errorf("%d requests failed signature verification", badSigs)
	}
	if requests != 10+failures {
		t.Errorf("receiver saw %d requests, want %d (10 events + %d failures)", requests, 10+failures, failures)
	}
	if s, rt := count(t, reg, "oncall", notify.ResultSuccess), count(t, reg, "oncall", notify.ResultRetry); s != 10 || rt != failures {
		t.Errorf("counted success=%v retry=%v, want 10 and %d", s, rt, failures)
	}
	if n := pending(t, st); n != 0 {
		t.Errorf("%d deliveries left in the store, want 0", n)
	}
}

func TestEnqueuePersistsBeforeReturning(t *testing.T) {
	st := store.NewMemory()
	o, _ := newOutbox(t, st, map[string]notify.Notifier{"oncall": &fake{}}, notify.OutboxOptions{})
	// Not running: the delivery must be in the store anyway.
	e := events(1, 1)[0]
	if err := o.Enqueue(context.Background(), "oncall", e); err != nil {
		t.Fatal(err)
	}
	kvs, err := st.List(context.Background(), notify.OutboxBucket)
	if err != nil || len(kvs) != 1 {
		t.Fatalf("store holds %d deliveries (%v), want 1", len(kvs), err)
	}
	var d struct {
		Receiver string       `json:"receiver"`
		Event    notify.Event `json:"event"`
	}
	if err := json.Unmarshal(kvs[0].Value, &d); err != nil {
		t.Fatal(err)
	}
	if d.Receiver != "oncall" || d.Event.ID != e.ID || d.Event.Text != e.Text {
		t.Errorf("persisted %+v, want event %s for oncall", d, e.ID)
	}
	if kvs[0].Key != store.Key(1) {
		t.Errorf("key = %q, want %q", kvs[0].Key, store.Key(1))
	}
}

func TestEnqueueRejects(t *testing.T) {
	o, _ := newOutbox(t, store.NewMemory(), map[string]notify.Notifier{"oncall": &fake{}}, notify.OutboxOptions{})
	tests := []struct {
		name     string
		receiver string
		event    notify.Event
		want     error
	}{
		{"unknown receiver", "nobody", events(1, 1)[0], notify.ErrUnknownReceiver},
		{"no id", "oncall", notify.Event{Type: event.IncidentDeclared}, notify.ErrInvalidEvent},
		{"no type", "oncall", notify.Event{ID: "evt_1_1"}, notify.ErrInvalidEvent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := o.Enqueue(context.Background(), tc.receiver, tc.event); !errors.Is(err, tc.want) {
				t.Errorf("Enqueue err = %v, want %v", err, tc.want)
			}
		})
	}
	bad := events(1, 1)[0]
	bad.Data = map[string]any{"ch": make(chan int)}
	if err := o.Enqueue(context.Background(), "oncall", bad); err == nil {
		t.Error("Enqueue of an event that does not encode succeeded")
	}
}

func TestDuplicatePendingEnqueueIsNoop(t *testing.T) {
	st := store.NewMemory()
	f := &fake{}
	o, reg := newOutbox(t, st, map[string]notify.Notifier{"oncall": f}, notify.OutboxOptions{})
	es := events(1, 2)
	for _, e := range []notify.Event{es[0], es[1], es[0]} {
		if err := o.Enqueue(context.Background(), "oncall", e); err != nil {
			t.Fatal(err)
		}
	}
	if n := pending(t, st); n != 2 {
		t.Fatalf("store holds %d deliveries, want 2", n)
	}
	start(t, o)
	waitFor(t, "2 deliveries", func() bool { return len(f.got()) == 2 && queueLen(t, reg, "oncall") == 0 })
	if got := f.got(); !slices.Equal(got, ids(es)) {
		t.Errorf("delivered %v, want %v", got, ids(es))
	}
}

// TestRestartResumesInOrder stops the outbox while its receiver is failing
// and starts a new one over the same bbolt file: the remaining deliveries
// go out in order, none lost, none twice.
func TestRestartResumesInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st := openBolt(t, path)
	// The first receiver takes three events, then is down.
	first := &fake{fail: func(attempt int, _ notify.Event) (bool, error) {
		if attempt > 3 {
			return true, errDown
		}
		return false, nil
	}}
	o1, reg1 := newOutbox(t, st, map[string]notify.Notifier{"oncall": first}, notify.OutboxOptions{})
	r1 := start(t, o1)
	all := events(1, 9)
	for _, e := range all[:8] {
		if err := o1.Enqueue(context.Background(), "oncall", e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "3 deliveries and a failing fourth", func() bool { return first.tries() >= 5 })
	r1.stop()
	if got := first.got(); !slices.Equal(got, ids(all[:3])) {
		t.Fatalf("before the restart delivered %v, want %v", got, ids(all[:3]))
	}
	if q := queueLen(t, reg1, "oncall"); q != 5 {
		t.Errorf("queue length before restart = %v, want 5", q)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = openBolt(t, path)
	defer st.Close()
	if n := pending(t, st); n != 5 {
		t.Fatalf("after reopen the store holds %d deliveries, want 5", n)
	}
	second := &fake{}
	o2, reg2 := newOutbox(t, st, map[string]notify.Notifier{"oncall": second}, notify.OutboxOptions{})
	// Enqueued before Run: it goes after the resumed ones.
	if err := o2.Enqueue(context.Background(), "oncall", all[8]); err != nil {
		t.Fatal(err)
	}
	start(t, o2)
	waitFor(t, "the rest delivered", func() bool { return len(second.got()) >= 6 && queueLen(t, reg2, "oncall") == 0 })
	if got := append(first.got(), second.got()...); !slices.Equal(got, ids(all)) {
		t.Errorf("delivered %v across the restart, want %v", got, ids(all))
	}
	if n := pending(t, st); n != 0 {
		t.Errorf("%d deliveries left in the store", n)
	}
}

// TestReceiversIndependent: a receiver that hangs does not delay another.
func TestReceiversIndependent(t *testing.T) {
	stuck := &fake{block: make(chan struct{})}
	healthy := &fake{}
	o, reg := newOutbox(t, store.NewMemory(), map[string]notify.Notifier{"stuck": stuck, "healthy": healthy}, notify.OutboxOptions{})
	r := start(t, o)
	es := events(1, 5)
	for _, e := range es {
		for _, rcv := range []string{"stuck", "healthy"} {
			if err := o.Enqueue(context.Background(), rcv, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "healthy receiver served", func() bool { return len(healthy.got()) == 5 && queueLen(t, reg, "healthy") == 0 })
	if got := healthy.got(); !slices.Equal(got, ids(es)) {
		t.Errorf("healthy got %v, want %v", got, ids(es))
	}
	if q := queueLen(t, reg, "stuck"); q != 5 {
		t.Errorf("stuck queue length = %v, want 5", q)
	}
	// Shutdown does not wait for the hung receiver.
	r.stop()
	if n := len(stuck.got()); n != 0 {
		t.Errorf("stuck receiver got %d events", n)
	}
}

func TestPermanentErrorGivesUpAndUnblocks(t *testing.T) {
	f := &fake{fail: func(_ int, e notify.Event) (bool, error) {
		if e.ID == "evt_7_1" {
			return false, errors.New("400 bad request")
		}
		return false, nil
	}}
	core, logs := observer.New(zap.InfoLevel)
	st := store.NewMemory()
	var (
		mu     sync.Mutex
		gaveUp []string
	)
	o, reg := newOutbox(t, st, map[string]notify.Notifier{"oncall": f}, notify.OutboxOptions{Logger: zap.New(core),
		OnGiveUp: func(receiver string, e notify.Event, reason string) {
			mu.Lock()
			defer mu.Unlock()
			gaveUp = append(gaveUp, receiver+" "+e.ID+" "+reason)
		}})
	start(t, o)
	for _, e := range events(1, 2) {
		if err := o.Enqueue(context.Background(), "oncall", e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the second event", func() bool { return len(f.got()) == 1 && queueLen(t, reg, "oncall") == 0 })
	if f.tries() != 2 {
		t.Errorf("%d attempts, want 2 (a permanent error is not retried)", f.tries())
	}
	if got := count(t, reg, "oncall", notify.ResultFailed); got != 1 {
		t.Errorf("failed = %v, want 1", got)
	}
	if got := count(t, reg, "oncall", notify.ResultRetry); got != 0 {
		t.Errorf("retry = %v, want 0", got)
	}
	if logs.FilterMessage("Giving up a notification the receiver rejected").FilterField(zap.String("event", "evt_7_1")).Len() != 1 {
		t.Errorf("the give-up is not logged with the event: %v", logs.All())
	}
	if n := pending(t, st); n != 0 {
		t.Errorf("%d deliveries left in the store", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := "oncall evt_7_1 giving up a notification the receiver rejected: 400 bad request"; len(gaveUp) != 1 || gaveUp[0] != want {
		t.Errorf("OnGiveUp told %q, want [%q]", gaveUp, want)
	}
	// Both attempts were timed.
	if got := histCount(t, reg, "guardian_notification_duration_seconds", "oncall"); got != 2 {
		t.Errorf("%d attempts timed, want 2", got)
	}
}

// histCount is the sample count of the histogram name{receiver}.
func histCount(t *testing.T, reg *prometheus.Registry, name, receiver string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "receiver" && l.GetValue() == receiver {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

func TestMaxAgeGivesUp(t *testing.T) {
	clock := newClock(true)
	down := &fake{fail: func(_ int, e notify.Event) (bool, error) {
		if e.ID == "evt_7_1" {
			return true, errDown
		}
		return false, nil
	}}
	st := store.NewMemory()
	o, reg := newOutbox(t, st, map[string]notify.Notifier{"oncall": down}, notify.OutboxOptions{
		MinBackoff: time.Second, MaxBackoff: 5 * time.Minute, MaxAge: time.Hour,
		Now: clock.Now, After: clock.After,
	})
	began := clock.Now()
	for _, e := range events(1, 2) {
		if err := o.Enqueue(context.Background(), "oncall", e); err != nil {
			t.Fatal(err)
		}
	}
	start(t, o)
	waitFor(t, "the expired event given up", func() bool { return count(t, reg, "oncall", notify.ResultFailed) == 1 })
	waitFor(t, "the next event delivered", func() bool { return len(down.got()) == 1 })
	elapsed := clock.Now().Sub(began)
	if elapsed < time.Hour || elapsed > time.Hour+time.Minute {
		t.Errorf("gave up after %s of (fake) time, want about MaxAge (1h)", elapsed)
	}
	// Backoff grows to 5m: about a dozen attempts to climb, then one per
	// 2.5-5m; far fewer than with a fixed 1s backoff.
	retries := count(t, reg, "oncall", notify.ResultRetry)
	if retries < 12 || retries > 40 {
		t.Errorf("%v retries in an hour, want exponential backoff capped at 5m (12..40)", retries)
	}
	if got := down.got(); !slices.Equal(got, []string{"evt_7_2"}) {
		t.Errorf("delivered %v, want only evt_7_2", got)
	}
}

// TestRemovedReceiver: deliveries for a receiver removed by a reload wait
// OrphanGrace; if it comes back they go out, otherwise they are dropped.
func TestRemovedReceiver(t *testing.T) {
	t.Run("comes back within the grace", func(t *testing.T) {
		clock := newClock(false)
		f := &fake{}
		st := store.NewMemory()
		o, reg := newOutbox(t, st, map[string]notify.Notifier{"oncall": f}, notify.OutboxOptions{
			OrphanGrace: time.Hour, Now: clock.Now, After: clock.After,
		})
		for _, e := range events(1, 2) {
			if err := o.Enqueue(context.Background(), "oncall", e); err != nil {
				t.Fatal(err)
			}
		}
		o.SetReceivers(map[string]notify.Notifier{})
		start(t, o)
		waitFor(t, "the worker to wait out the grace", func() bool { return clock.Waiting() == 1 })
		clock.Advance(59 * time.Minute)
		if len(f.got()) != 0 || count(t, reg, "oncall", notify.ResultDropped) != 0 {
			t.Fatal("delivered or dropped while the receiver is not configured")
		}
		o.SetReceivers(map[string]notify.Notifier{"oncall": f})
		waitFor(t, "both delivered", func() bool { return len(f.got()) == 2 })
		if got := f.got(); !slices.Equal(got, ids(events(1, 2))) {
			t.Errorf("delivered %v", got)
		}
	})
	t.Run("dropped after the grace", func(t *testing.T) {
		clock := newClock(false)
		core, logs := observer.New(zap.InfoLevel)
		st := store.NewMemory()
		o, reg := newOutbox(t, st, map[string]notify.Notifier{"old": &fake{}}, notify.OutboxOptions{
			OrphanGrace: time.Hour, Now: clock.Now, After: clock.After, Logger: zap.New(core),
		})
		for _, e := range events(1, 2) {
			if err := o.Enqueue(context.Background(), "old", e); err != nil {
				t.Fatal(err)
			}
		}
		o.SetReceivers(map[string]notify.Notifier{"new": &fake{}})
		start(t, o)
		waitFor(t, "the worker to wait out the grace", func() bool { return clock.Waiting() == 1 })
		if q := queueLen(t, reg, "old"); q != 2 {
			t.Errorf("queue length of the removed receiver = %v, want 2 while kept", q)
		}
		clock.Advance(time.Hour)
		waitFor(t, "both dropped", func() bool { return count(t, reg, "old", notify.ResultDropped) == 2 })
		waitFor(t, "the store emptied", func() bool { return pending(t, st) == 0 })
		if n := logs.FilterMessage("Dropping a notification for a receiver that is no longer configured").Len(); n != 2 {
			t.Errorf("%d drop log lines, want 2", n)
		}
		waitFor(t, "the gauge of the removed receiver deleted", func() bool {
			_, ok := metric(t, reg, "guardian_notification_queue_length", map[string]string{"receiver": "old"})
			return !ok
		})
	})
}

func TestMetricsInitialised(t *testing.T) {
	_, reg := newOutbox(t, store.NewMemory(), map[string]notify.Notifier{"oncall": &fake{}}, notify.OutboxOptions{})
	for _, r := range []notify.Result{notify.ResultSuccess, notify.ResultRetry, notify.ResultFailed, notify.ResultDropped} {
		if _, ok := metric(t, reg, "guardian_notifications_total", map[string]string{"receiver": "oncall", "result": r.String()}); !ok {
			t.Errorf("guardian_notifications_total{receiver=oncall,result=%s} not exported before the first delivery", r)
		}
	}
	if v, ok := metric(t, reg, "guardian_notification_queue_length", map[string]string{"receiver": "oncall"}); !ok || v != 0 {
		t.Errorf("queue length = %v (exists %v), want 0", v, ok)
	}
}

func TestUnreadableRecordDropped(t *testing.T) {
	st := store.NewMemory()
	if _, err := st.Put(context.Background(), notify.OutboxBucket, store.Key(1), []byte("{not json"), 0); err != nil {
		t.Fatal(err)
	}
	f := &fake{}
	o, reg := newOutbox(t, st, map[string]notify.Notifier{"oncall": f}, notify.OutboxOptions{})
	if err := o.Enqueue(context.Background(), "oncall", events(1, 1)[0]); err != nil {
		t.Fatal(err)
	}
	start(t, o)
	waitFor(t, "delivery", func() bool { return len(f.got()) == 1 && queueLen(t, reg, "oncall") == 0 })
	if n := pending(t, st); n != 0 {
		t.Errorf("%d records left, want the unreadable one deleted too", n)
	}
}

func TestRunTwiceRefused(t *testing.T) {
	f := &fake{}
	o, _ := newOutbox(t, store.NewMemory(), map[string]notify.Notifier{"oncall": f}, notify.OutboxOptions{})
	start(t, o)
	if err := o.Enqueue(context.Background(), "oncall", events(1, 1)[0]); err != nil {
		t.Fatal(err)
	}
	// A delivery proves the first Run is running.
	waitFor(t, "a delivery", func() bool { return len(f.got()) == 1 })
	if err := o.Run(context.Background()); err == nil {
		t.Fatal("a second concurrent Run was accepted")
	}
}

// retryAfterErr is a retryable failure whose receiver said when to come
// back.
type retryAfterErr time.Duration

func (e retryAfterErr) Error() string             { return "429 slow down" }
func (e retryAfterErr) RetryAfter() time.Duration { return time.Duration(e) }

// TestRetryAfterHonoured: a receiver's Retry-After sets the next attempt
// when it asks for longer than the backoff, up to MaxBackoff.
func TestRetryAfterHonoured(t *testing.T) {
	for _, tc := range []struct {
		name     string
		after    time.Duration
		min, max time.Duration
	}{
		{name: "longer than the backoff", after: 90 * time.Second, min: 90 * time.Second, max: 90 * time.Second},
		{name: "capped at MaxBackoff", after: time.Hour, min: 5 * time.Minute, max: 5 * time.Minute},
		{name: "shorter than the backoff", after: time.Millisecond, min: 500 * time.Millisecond, max: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newClock(true)
			var at []time.Time
			f := &fake{fail: func(attempt int, _ notify.Event) (bool, error) {
				at = append(at, clock.Now())
				if attempt == 1 {
					return true, fmt.Errorf("posting: %w", retryAfterErr(tc.after))
				}
				return false, nil
			}}
			o, _ := newOutbox(t, store.NewMemory(), map[string]notify.Notifier{"oncall": f}, notify.OutboxOptions{
				MinBackoff: time.Second, MaxBackoff: 5 * time.Minute, MaxAge: 24 * time.Hour,
				Now: clock.Now, After: clock.After,
			})
			if err := o.Enqueue(context.Background(), "oncall", events(1, 1)[0]); err != nil {
				t.Fatal(err)
			}
			start(t, o)
			waitFor(t, "the retry delivered", func() bool { return len(f.got()) == 1 })
			f.mu.Lock()
			defer f.mu.Unlock()
			if gap := at[1].Sub(at[0]); gap < tc.min || gap > tc.max {
				t.Errorf("second attempt %s after the first, want %s..%s", gap, tc.min, tc.max)
			}
		})
	}
}
