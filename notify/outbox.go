package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/store"
)

// OutboxBucket is the store bucket holding pending deliveries, keyed by
// store.Key of the bucket's NextID, so that key order is enqueue order.
const OutboxBucket = "outbox"

// Outbox defaults.
const (
	DefaultMinBackoff     = time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	DefaultMaxAge         = 24 * time.Hour
	DefaultOrphanGrace    = time.Hour
	DefaultAttemptTimeout = time.Minute
)

// Errors of Enqueue.
var (
	// ErrUnknownReceiver means Enqueue named a receiver that is not
	// configured.
	ErrUnknownReceiver = errors.New("unknown receiver")
	// ErrInvalidEvent means the event lacks an ID or a type.
	ErrInvalidEvent = errors.New("invalid event")
)

// Result is the outcome of one step of a delivery, as counted by
// guardian_notifications_total.
type Result string

// Results.
const (
	// ResultSuccess: the receiver accepted the event.
	ResultSuccess Result = "success"
	// ResultRetry: an attempt failed with a retryable error; it will be
	// tried again after a backoff.
	ResultRetry Result = "retry"
	// ResultFailed: the delivery was given up, on a permanent error or
	// because it was older than MaxAge.
	ResultFailed Result = "failed"
	// ResultDropped: the delivery was discarded because its receiver was no
	// longer configured after OrphanGrace.
	ResultDropped Result = "dropped"
)

// String returns the result's label value.
func (r Result) String() string { return string(r) }

var results = []Result{ResultSuccess, ResultRetry, ResultFailed, ResultDropped}

// OutboxOptions tune an Outbox. Zero values take the defaults.
type OutboxOptions struct {
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts of one delivery (doubling from MinBackoff, with jitter).
	MinBackoff, MaxBackoff time.Duration
	// MaxAge is how long after enqueueing a delivery is given up.
	MaxAge time.Duration
	// OrphanGrace is how long deliveries for a receiver that is no longer
	// configured are kept (a reload may bring it back) before being dropped.
	OrphanGrace time.Duration
	// AttemptTimeout bounds one Notify call, whatever the notifier does.
	AttemptTimeout time.Duration
	// Now and After are the clock (default time.Now and time.After).
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
	// Registerer, if not nil, registers the outbox's metrics.
	Registerer prometheus.Registerer
	// OnGiveUp, when set, is told of every notification given up (the
	// receiver rejected it, or it outlived MaxAge) and why, so that the
	// incident's timeline records it. It must not call the Outbox.
	OnGiveUp func(receiver string, e Event, reason string)
	// Owns, when set, says whether this replica delivers the events of a
	// service now (replicas sharing the services out): the others' stay
	// in the store for their owner. Call Resync when it changes. Nil
	// delivers every event.
	Owns func(service string) bool
}

// Outbox is the persisted retry stage between the incident manager and the
// notifiers. Enqueue writes a delivery to the store before returning; Run
// delivers them. Per receiver, deliveries go strictly in enqueue order: the
// head blocks the ones behind it until it succeeds or is given up
// (permanent error, MaxAge). Receivers are independent of each other. After
// a restart, a new Outbox over the same store resumes where the old one
// stopped.
//
// Delivery is at least once: a crash (or a store error) between a
// successful Notify and the removal of the delivery sends the event again
// after the restart, with the same ID. Receivers dedupe on the event ID
// (the webhook-id header).
//
// A delivery whose receiver disappears from the configuration (see
// SetReceivers) is kept for OrphanGrace, counted from when the running
// Outbox first saw the receiver missing, in case a reload brings it back;
// then it is dropped with a warning. MaxAge still applies meanwhile.
type Outbox struct {
	st    store.Store
	opts  OutboxOptions
	log   *zap.Logger
	count *prometheus.CounterVec
	queue *prometheus.GaugeVec
	took  *prometheus.HistogramVec

	// enqMu serialises Enqueue and the initial load, so that the in-memory
	// queues are in key order.
	enqMu  sync.Mutex
	loaded bool

	mu        sync.Mutex
	receivers map[string]Notifier
	queues    map[string][]*delivery
	orphaned  map[string]time.Time
	workers   map[string]chan struct{} // wake-up channel of each running worker
	runCtx    context.Context          // nil unless Run is accepting work
	running   bool                     // from Run's start to its return
	wg        sync.WaitGroup
}

// delivery is one event for one receiver, as persisted.
type delivery struct {
	Receiver    string    `json:"receiver"`
	Event       Event     `json:"event"`
	EnqueuedAt  time.Time `json:"enqueued_at"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`

	key string
	rev uint64
}

// NewOutbox returns an outbox over st delivering to receivers (by name). It
// does no I/O: the pending deliveries are loaded by the first Enqueue or Run.
func NewOutbox(st store.Store, receivers map[string]Notifier, opts OutboxOptions) (*Outbox, error) {
	if st == nil {
		return nil, errors.New("outbox: nil store")
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		return nil, fmt.Errorf("outbox: max backoff %s is below min backoff %s", opts.MaxBackoff, opts.MinBackoff)
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.OrphanGrace <= 0 {
		opts.OrphanGrace = DefaultOrphanGrace
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = DefaultAttemptTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	o := &Outbox{
		st:   st,
		opts: opts,
		log:  opts.Logger,
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "guardian_notifications_total",
			Help: "Notification delivery steps by receiver and result (success, retry, failed: given up, dropped: receiver removed).",
		}, []string{"receiver", "result"}),
		queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "guardian_notification_queue_length",
			Help: "Notifications waiting in the outbox, by receiver.",
		}, []string{"receiver"}),
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "guardian_notification_duration_seconds",
			Help:    "Time of each notification attempt (successful or not), by receiver.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"receiver"}),
		queues:   map[string][]*delivery{},
		orphaned: map[string]time.Time{},
		workers:  map[string]chan struct{}{},
	}
	if r := opts.Registerer; r != nil {
		for _, c := range []prometheus.Collector{o.count, o.queue, o.took} {
			if err := r.Register(c); err != nil {
				return nil, fmt.Errorf("outbox: registering metrics: %w", err)
			}
		}
	}
	o.setReceiversLocked(receivers)
	return o, nil
}

// SetReceivers replaces the receivers, on a configuration reload. A
// receiver's pending deliveries go to its new Notifier; those of a removed
// receiver wait OrphanGrace for it to come back.
func (o *Outbox) SetReceivers(receivers map[string]Notifier) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.setReceiversLocked(receivers)
	for name := range o.queues {
		o.kickLocked(name)
	}
}

func (o *Outbox) setReceiversLocked(receivers map[string]Notifier) {
	old := o.receivers
	o.receivers = make(map[string]Notifier, len(receivers))
	for name, n := range receivers {
		o.receivers[name] = n
		delete(o.orphaned, name)
		for _, r := range results {
			o.count.WithLabelValues(name, r.String())
		}
		o.queue.WithLabelValues(name).Set(float64(len(o.queues[name])))
	}
	for name := range old {
		if _, ok := o.receivers[name]; !ok && len(o.queues[name]) == 0 {
			o.queue.DeleteLabelValues(name)
		}
	}
}

// Enqueue persists the delivery of e to receiver, then wakes the delivery
// loop. When it returns nil, the event will be delivered even across a
// restart (or given up, and logged). Enqueueing an event ID that is already
// pending for the receiver is a no-op, so a caller resuming after a crash
// may enqueue again.
func (o *Outbox) Enqueue(ctx context.Context, receiver string, e Event) error {
	if e.ID == "" || e.Type == "" {
		return fmt.Errorf("enqueueing event %q of type %q: %w", e.ID, e.Type, ErrInvalidEvent)
	}
	o.mu.Lock()
	_, ok := o.receivers[receiver]
	o.mu.Unlock()
	if !ok {
		return fmt.Errorf("enqueueing event %s for %q: %w", e.ID, receiver, ErrUnknownReceiver)
	}

	o.enqMu.Lock()
	defer o.enqMu.Unlock()
	if err := o.loadLocked(ctx); err != nil {
		return err
	}
	o.mu.Lock()
	for _, d := range o.queues[receiver] {
		if d.Event.ID == e.ID {
			o.mu.Unlock()
			return nil
		}
	}
	o.mu.Unlock()

	d := &delivery{Receiver: receiver, Event: e, EnqueuedAt: o.opts.Now()}
	value, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("enqueueing event %s for %s: encoding: %w", e.ID, receiver, err)
	}
	id, err := o.st.NextID(ctx, OutboxBucket)
	if err != nil {
		return fmt.Errorf("enqueueing event %s for %s: %w", e.ID, receiver, err)
	}
	d.key = store.Key(id)
	if d.rev, err = o.st.Put(ctx, OutboxBucket, d.key, value, 0); err != nil {
		return fmt.Errorf("enqueueing event %s for %s: %w", e.ID, receiver, err)
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	o.queues[receiver] = append(o.queues[receiver], d)
	o.queue.WithLabelValues(receiver).Set(float64(len(o.queues[receiver])))
	o.kickLocked(receiver)
	return nil
}

// loadLocked reads the pending deliveries once; o.enqMu must be held.
func (o *Outbox) loadLocked(ctx context.Context) error {
	if o.loaded {
		return nil
	}
	kvs, err := o.st.List(ctx, OutboxBucket)
	if err != nil {
		return fmt.Errorf("loading the notification outbox: %w", err)
	}
	queues := map[string][]*delivery{}
	loaded := 0
	for _, kv := range kvs {
		d := &delivery{key: kv.Key, rev: kv.Revision}
		err := json.Unmarshal(kv.Value, d)
		if err == nil && d.Receiver != "" && !o.owns(d) {
			continue // another replica's
		}
		loaded++
		if err != nil || d.Receiver == "" {
			// It can never be delivered; keeping it would log this forever.
			o.log.Error("Dropping an unreadable notification from the outbox",
				zap.String("key", kv.Key), zap.Error(err))
			if err := o.st.Delete(ctx, OutboxBucket, kv.Key); err != nil {
				o.log.Error("Deleting an unreadable notification", zap.String("key", kv.Key), zap.Error(err))
			}
			continue
		}
		queues[d.Receiver] = append(queues[d.Receiver], d)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for name, q := range queues {
		o.queues[name] = q
		o.queue.WithLabelValues(name).Set(float64(len(q)))
	}
	o.loaded = true
	if loaded > 0 {
		o.log.Info("Resuming pending notifications", zap.Int("count", loaded))
	}
	return nil
}

// owns reports whether this replica delivers d: every event when Owns is
// nil, else those of the services it owns and those of no service (a
// metric source's outage), which the replica that enqueued them delivers.
func (o *Outbox) owns(d *delivery) bool {
	return o.opts.Owns == nil || d.Event.Service == "" || o.opts.Owns(d.Event.Service)
}

// Resync follows a change of the services Owns names: it takes up the
// pending deliveries of the services this replica now owns that are in
// the store and not in its queues (another replica enqueued them), in
// order behind the ones under way. The deliveries of services it no
// longer owns are forgotten as they come to the head of their queue, and
// left in the store for their owner; one being attempted finishes, and
// receivers dedupe it on the event ID if the new owner sends it too.
func (o *Outbox) Resync(ctx context.Context) error {
	o.enqMu.Lock()
	defer o.enqMu.Unlock()
	if !o.loaded {
		return o.loadLocked(ctx)
	}
	kvs, err := o.st.List(ctx, OutboxBucket)
	if err != nil {
		return fmt.Errorf("reading the notification outbox: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	known := map[string]bool{}
	for _, q := range o.queues {
		for _, d := range q {
			known[d.key] = true
		}
	}
	added := map[string]bool{}
	for _, kv := range kvs {
		if known[kv.Key] {
			continue
		}
		d := &delivery{key: kv.Key, rev: kv.Revision}
		if err := json.Unmarshal(kv.Value, d); err != nil || d.Receiver == "" || d.Event.Service == "" || !o.owns(d) {
			// Unreadable ones are dropped by the replica that loads them
			// first; those of no service belong to the replica that
			// enqueued them.
			continue
		}
		q := o.queues[d.Receiver]
		// Keys sort in enqueue order; the head may be under way: insert behind it.
		i := max(1, sort.Search(len(q), func(i int) bool { return q[i].key > d.key }))
		o.queues[d.Receiver] = slices.Insert(q, min(i, len(q)), d)
		added[d.Receiver] = true
	}
	for name := range added {
		o.queue.WithLabelValues(name).Set(float64(len(o.queues[name])))
	}
	for name := range o.queues {
		o.kickLocked(name) // a worker waiting out a backoff forgets a head it no longer owns
	}
	if len(added) > 0 {
		o.log.Info("Taking up the pending notifications of the services this replica now drives", zap.Int("receivers", len(added)))
	}
	return nil
}

// forget removes the head delivery d of its receiver from the queue
// without touching the store: another replica delivers it.
func (o *Outbox) forget(d *delivery) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.removeHeadLocked(d)
}

// Run delivers pending and newly enqueued deliveries until ctx is done, then
// waits for in-flight attempts to finish and returns nil. It returns an
// error only if the pending deliveries cannot be loaded.
func (o *Outbox) Run(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	o.enqMu.Lock()
	err := o.loadLocked(ctx)
	o.enqMu.Unlock()
	if err != nil {
		return err
	}
	o.mu.Lock()
	if o.running {
		o.mu.Unlock()
		return errors.New("outbox: Run called while already running")
	}
	o.running = true
	o.runCtx = ctx
	for name := range o.queues {
		o.kickLocked(name)
	}
	o.mu.Unlock()

	<-ctx.Done()
	o.mu.Lock()
	o.runCtx = nil
	o.mu.Unlock()
	o.wg.Wait()
	o.mu.Lock()
	o.running = false
	o.mu.Unlock()
	return nil
}

// kickLocked wakes the worker of receiver, starting one if Run is running
// and the receiver has deliveries. o.mu must be held.
func (o *Outbox) kickLocked(receiver string) {
	if ch, ok := o.workers[receiver]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
		return
	}
	if o.runCtx == nil || len(o.queues[receiver]) == 0 {
		return
	}
	ch := make(chan struct{}, 1)
	o.workers[receiver] = ch
	o.wg.Add(1)
	go o.work(o.runCtx, receiver, ch)
}

// step is what a worker does next with the head delivery.
type step int

const (
	stepAttempt step = iota
	stepWait
	stepExpire
	stepDrop
	stepForget
)

// work delivers receiver's queue in order, exiting when it is empty or ctx
// is done.
func (o *Outbox) work(ctx context.Context, receiver string, wake chan struct{}) {
	defer o.wg.Done()
	for {
		o.mu.Lock()
		q := o.queues[receiver]
		if ctx.Err() != nil || len(q) == 0 {
			delete(o.workers, receiver)
			o.mu.Unlock()
			return
		}
		d, n := q[0], o.receivers[receiver]
		next, wait := o.planLocked(receiver, d, n)
		o.mu.Unlock()

		switch next {
		case stepWait:
			select {
			case <-ctx.Done():
			case <-wake:
			case <-o.opts.After(wait):
			}
		case stepExpire:
			o.finish(d, ResultFailed, "Giving up a notification older than the maximum age",
				zap.Duration("max_age", o.opts.MaxAge))
		case stepDrop:
			o.finish(d, ResultDropped, "Dropping a notification for a receiver that is no longer configured",
				zap.Duration("grace", o.opts.OrphanGrace))
		case stepAttempt:
			o.attempt(ctx, n, d)
		case stepForget:
			o.forget(d)
		}
	}
}

// planLocked decides the next step for the head delivery d of receiver,
// whose notifier is n (nil if not configured). o.mu must be held.
func (o *Outbox) planLocked(receiver string, d *delivery, n Notifier) (step, time.Duration) {
	if !o.owns(d) {
		return stepForget, 0
	}
	now := o.opts.Now()
	deadline := d.EnqueuedAt.Add(o.opts.MaxAge)
	if now.After(deadline) {
		return stepExpire, 0
	}
	if n == nil {
		since, ok := o.orphaned[receiver]
		if !ok {
			since = now
			o.orphaned[receiver] = now
			o.log.Warn("Notifications wait for a receiver that is no longer configured",
				zap.String("receiver", receiver), zap.Int("pending", len(o.queues[receiver])),
				zap.Duration("grace", o.opts.OrphanGrace))
		}
		dropAt := since.Add(o.opts.OrphanGrace)
		if !now.Before(dropAt) {
			return stepDrop, 0
		}
		return stepWait, minDuration(dropAt, deadline.Add(time.Nanosecond)).Sub(now)
	}
	if now.Before(d.NextAttempt) {
		return stepWait, d.NextAttempt.Sub(now)
	}
	return stepAttempt, 0
}

func minDuration(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// attempt sends d through n once and records the outcome.
func (o *Outbox) attempt(ctx context.Context, n Notifier, d *delivery) {
	actx, cancel := context.WithTimeout(ctx, o.opts.AttemptTimeout)
	start := time.Now()
	retry, err := n.Notify(actx, d.Event)
	cancel()
	if ctx.Err() == nil {
		o.took.WithLabelValues(d.Receiver).Observe(time.Since(start).Seconds())
	}
	if err == nil {
		o.finish(d, ResultSuccess, "")
		return
	}
	if ctx.Err() != nil {
		// Shutting down: this attempt does not count; the next Run retries.
		return
	}
	now := o.opts.Now()
	deadline := d.EnqueuedAt.Add(o.opts.MaxAge)
	d.LastError = err.Error()
	if !retry {
		o.finish(d, ResultFailed, "Giving up a notification the receiver rejected", zap.Error(err))
		return
	}
	if !now.Before(deadline) {
		o.finish(d, ResultFailed, "Giving up a notification older than the maximum age",
			zap.Duration("max_age", o.opts.MaxAge), zap.Error(err))
		return
	}
	o.count.WithLabelValues(d.Receiver, ResultRetry.String()).Inc()

	// The worker owns its head delivery: updating it needs no lock.
	d.Attempts++
	wait := o.backoff(d.Attempts)
	var ra RetryAfterError
	if errors.As(err, &ra) && ra.RetryAfter() > wait {
		// The receiver asked for more time: honour it, up to MaxBackoff.
		wait = min(ra.RetryAfter(), o.opts.MaxBackoff)
	}
	d.NextAttempt = minDuration(now.Add(wait), deadline)
	o.log.Warn("Notification failed, will retry", o.fields(d,
		zap.Time("next_attempt", d.NextAttempt), zap.Error(err))...)
	if !o.persist(d) {
		// Another replica delivered it (and removed it) or took it over.
		o.log.Info("Another replica delivered or took over a notification", o.fields(d)...)
		o.forget(d)
	}
}

// backoff returns the wait after the given number of failed attempts:
// MinBackoff doubling up to MaxBackoff, of which a random half is jitter.
func (o *Outbox) backoff(attempts int) time.Duration {
	b := o.opts.MinBackoff
	for i := 1; i < attempts && b < o.opts.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, o.opts.MaxBackoff)
	half := b / 2
	return half + rand.N(b-half+1)
}

// persist records d's attempts, so that the backoff and the error survive a
// restart. Failing to do so only loses that bookkeeping; it reports false
// when the delivery changed in the store under it: another replica
// delivered it or recorded an attempt of its own, and keeps it.
func (o *Outbox) persist(d *delivery) bool {
	value, err := json.Marshal(d)
	if err == nil {
		var rev uint64
		rev, err = o.st.Put(context.Background(), OutboxBucket, d.key, value, d.rev)
		if err == nil {
			d.rev = rev
			return true
		}
	}
	if errors.Is(err, store.ErrConflict) {
		return false
	}
	o.log.Error("Recording a notification attempt", o.fields(d, zap.Error(err))...)
	return true
}

// finish removes the head delivery d of its receiver with result, logging
// msg unless it is a success.
func (o *Outbox) finish(d *delivery, result Result, msg string, fields ...zap.Field) {
	// The ack must land even when Run is being stopped.
	if err := o.st.Delete(context.Background(), OutboxBucket, d.key); err != nil {
		// It stays on disk and is sent again after a restart.
		o.log.Error("Removing a finished notification from the outbox", o.fields(d, zap.Error(err))...)
	}
	o.count.WithLabelValues(d.Receiver, result.String()).Inc()
	switch result {
	case ResultSuccess:
		o.log.Debug("Notification delivered", o.fields(d)...)
	case ResultDropped:
		o.log.Warn(msg, o.fields(d, fields...)...)
	default:
		o.log.Error(msg, o.fields(d, fields...)...)
		if o.opts.OnGiveUp != nil {
			reason := strings.ToLower(msg[:1]) + msg[1:]
			if d.LastError != "" {
				reason += ": " + d.LastError
			}
			o.opts.OnGiveUp(d.Receiver, d.Event, reason)
		}
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	o.removeHeadLocked(d)
}

// removeHeadLocked removes the head delivery d of its receiver's queue;
// o.mu is held.
func (o *Outbox) removeHeadLocked(d *delivery) {
	q := o.queues[d.Receiver]
	if len(q) == 0 || q[0] != d {
		return // cannot happen: only this worker removes the head
	}
	q[0] = nil
	q = q[1:]
	if len(q) == 0 {
		delete(o.queues, d.Receiver)
		if _, ok := o.receivers[d.Receiver]; !ok {
			delete(o.orphaned, d.Receiver)
			o.queue.DeleteLabelValues(d.Receiver)
			return
		}
	} else {
		o.queues[d.Receiver] = q
	}
	o.queue.WithLabelValues(d.Receiver).Set(float64(len(q)))
}

func (o *Outbox) fields(d *delivery, extra ...zap.Field) []zap.Field {
	return append([]zap.Field{
		zap.String("receiver", d.Receiver),
		zap.String("event", d.Event.ID),
		zap.String("type", d.Event.Type.String()),
		zap.Int64("incident", d.Event.Incident),
		zap.String("service", d.Event.Service),
		zap.Int("attempts", d.Attempts),
	}, extra...)
}
