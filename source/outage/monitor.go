package outage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/store"
)

// Bucket is the store bucket holding each source's saved state: its event
// count and its ongoing outage.
const Bucket = "sources"

// ioTimeout bounds saving a source's state and queueing its events.
const ioTimeout = 10 * time.Second

// Options configure a Monitor.
type Options struct {
	// Registerer registers guardian_source_up and
	// guardian_source_outages_total.
	Registerer prometheus.Registerer
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Store returns the state store; nil while it is not open yet.
	Store func() store.Store
	// Enqueue queues an event for a receiver, persisted (notify.Outbox's
	// Enqueue).
	Enqueue func(ctx context.Context, receiver string, e notify.Event) error
	// Tracks, when set, says whether this Guardian tracks and announces a
	// source now: replicas that share the services out leave a source to
	// one of them (the one that drives its first service), which alone
	// saves its state and announces its outages. Nil tracks every source.
	Tracks func(s Source) bool
}

// Monitor keeps a Tracker per metric source of the configuration in force.
// Observers (Observer, ScrapeObserver) feed it the outcomes of queries and
// scrapes; when a source becomes unreachable, and when it answers again, the
// Monitor queues an event for every notifier of the services using it (each
// once), counts the outage and sets guardian_source_up. A source's event
// count and ongoing outage are saved in the store, so that event IDs are
// never reused and an outage that outlives a restart ends with one
// source.recovered. Safe for concurrent use.
type Monitor struct {
	opts    Options
	log     *zap.Logger
	up      *prometheus.GaugeVec
	outages *prometheus.CounterVec

	mu      sync.Mutex
	sources map[string]*tracked
}

// tracked is one source's Tracker and what its events need.
type tracked struct {
	mu         sync.Mutex
	src        Source
	tr         Tracker
	seq        int    // events sent so far
	lastErr    string // latest failure's message
	loaded     bool   // the saved state was read
	loadFailed bool   // reading it failed (logged once)
	gone       bool   // no longer configured
}

// saved is a source's state in the store.
type saved struct {
	Seq    int       `json:"seq"`
	Down   bool      `json:"down,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	Reason string    `json:"reason,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// NewMonitor returns a Monitor watching no source until Configure.
func NewMonitor(o Options) *Monitor {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Monitor{
		opts: o,
		log:  o.Logger,
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "guardian_source_up",
			Help: "0 while a metric source is unreachable (queries or scrapes failing as unavailable or timeout for longer than global.source_alert_after), 1 otherwise.",
		}, []string{"source"}),
		outages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "guardian_source_outages_total",
			Help: "Times a metric source became unreachable.",
		}, []string{"source"}),
		sources: map[string]*tracked{},
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(m.up, m.outages)
	}
	return m
}

// Apply configures the Monitor for cfg: every source its services use,
// alerting after global.source_alert_after (see Configure).
func (m *Monitor) Apply(cfg *config.Config) {
	m.Configure(time.Duration(cfg.Global.SourceAlertAfter), Sources(cfg))
}

// Configure makes sources the ones watched, with failures lasting after
// making an outage; after 0 watches none. A source kept by ID keeps its
// state, an ongoing outage included, with its new settings; a source no
// longer configured is forgotten (its series too).
func (m *Monitor) Configure(after time.Duration, sources []Source) {
	if after <= 0 {
		sources = nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]*tracked, len(sources))
	for _, s := range sources {
		t, ok := m.sources[s.ID]
		if !ok {
			t = &tracked{}
			m.up.WithLabelValues(s.ID).Set(1)
			m.outages.WithLabelValues(s.ID)
		}
		t.mu.Lock()
		t.src, t.tr.After = s, after
		t.mu.Unlock()
		next[s.ID] = t
	}
	for id, t := range m.sources {
		if _, kept := next[id]; kept {
			continue
		}
		t.mu.Lock()
		t.gone = true
		if since, down := t.tr.Down(); down {
			m.log.Info("no longer watching an unreachable metric source", zap.String("source", id), zap.Time("since", since))
		}
		t.mu.Unlock()
		m.up.DeleteLabelValues(id)
		m.outages.DeleteLabelValues(id)
	}
	m.sources = next
}

// Observer returns the function to tell the outcome of each query of the
// named source name (watch.ObserveWith): a nil error for a success; nil
// when name is empty.
func (m *Monitor) Observer(name string) func(ctx context.Context, err error) {
	if name == "" {
		return nil
	}
	return func(ctx context.Context, err error) { m.observe(ctx, name, err) }
}

// ScrapeObserver returns the function to tell the outcome of each scrape of
// service's embedded source (embedded.Options.OnScrape).
func (m *Monitor) ScrapeObserver(service string) func(ctx context.Context, err error) {
	return m.Observer(ScrapeID(service))
}

func (m *Monitor) observe(ctx context.Context, id string, err error) {
	now := m.opts.Now()
	m.mu.Lock()
	t := m.sources[id]
	m.mu.Unlock()
	if t == nil {
		return
	}
	reason := source.Reason(err)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone {
		return
	}
	if m.opts.Tracks != nil && !m.opts.Tracks(t.src) {
		if t.loaded {
			// Another replica's to track now: start afresh from the
			// saved state if it comes back here.
			t.tr = Tracker{After: t.tr.After}
			t.loaded, t.loadFailed, t.lastErr = false, false, ""
			m.up.WithLabelValues(id).Set(1)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ioTimeout)
	defer cancel()
	if !m.load(ctx, t) {
		return
	}
	if err != nil && Counts(reason) {
		t.lastErr = err.Error()
	}
	tr := t.tr.Observe(err == nil, reason, now)
	switch tr.Change {
	case Unreachable:
		// The metrics first: whoever hears of the outage sees it there.
		m.up.WithLabelValues(id).Set(0)
		m.outages.WithLabelValues(id).Inc()
		t.seq++
		m.publish(ctx, t, UnreachableEvent(t.src, t.seq, tr, t.lastErr))
		m.save(ctx, t, saved{Seq: t.seq, Down: true, Since: tr.Since, Reason: tr.Reason, Error: t.lastErr})
		m.log.Warn("metric source unreachable: no trigger can judge its services, none rolls back for lack of data",
			zap.String("source", id), zap.Time("since", tr.Since), zap.String("reason", tr.Reason),
			zap.String("error", t.lastErr), zap.Strings("services", t.src.Services))
	case Recovered:
		m.up.WithLabelValues(id).Set(1)
		t.seq++
		t.lastErr = ""
		m.publish(ctx, t, RecoveredEvent(t.src, t.seq, tr))
		m.save(ctx, t, saved{Seq: t.seq})
		m.log.Info("metric source answers again", zap.String("source", id), zap.Time("since", tr.Since),
			zap.Duration("unreachable_for", tr.At.Sub(tr.Since)))
	}
}

// load reads t's saved state once, before its first observation; it
// reports whether t may be observed: not while the saved state, which
// holds the count that keeps event IDs unique, cannot be read.
func (m *Monitor) load(ctx context.Context, t *tracked) bool {
	if t.loaded {
		return true
	}
	st := m.store()
	if st == nil {
		return false
	}
	var s saved
	kv, err := st.Get(ctx, Bucket, storeKey(t.src))
	if err == nil {
		err = json.Unmarshal(kv.Value, &s)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		if !t.loadFailed {
			m.log.Error("reading a metric source's state failed; its outages go unannounced until it can be read",
				zap.String("source", t.src.ID), zap.Error(err))
		}
		t.loadFailed = true
		return false
	}
	t.loaded, t.seq = true, s.Seq
	if s.Down {
		t.tr.Resume(s.Since, s.Reason)
		t.lastErr = s.Error
		m.up.WithLabelValues(t.src.ID).Set(0)
		m.log.Info("metric source unreachable before the restart", zap.String("source", t.src.ID), zap.Time("since", s.Since))
	}
	return true
}

func (m *Monitor) store() store.Store {
	if m.opts.Store == nil {
		return nil
	}
	return m.opts.Store()
}

// publish queues e for every receiver of t's source.
func (m *Monitor) publish(ctx context.Context, t *tracked, e notify.Event) {
	if m.opts.Enqueue == nil {
		return
	}
	for _, r := range t.src.Receivers {
		if err := m.opts.Enqueue(ctx, r, e); err != nil {
			m.log.Error("queueing a metric source's event failed", zap.String("source", t.src.ID),
				zap.String("event", e.ID), zap.String("receiver", r), zap.Error(err))
		}
	}
}

// save writes t's state, after its events were queued: a crash in between
// queues them again after the restart with the same IDs, which receivers
// dedupe.
func (m *Monitor) save(ctx context.Context, t *tracked, s saved) {
	st := m.store()
	if st == nil {
		return
	}
	err := putJSON(ctx, st, storeKey(t.src), s)
	if err != nil {
		m.log.Error("saving a metric source's state failed", zap.String("source", t.src.ID), zap.Error(err))
	}
}

// putJSON writes v at key whatever its revision.
func putJSON(ctx context.Context, st store.Store, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	for range 3 {
		var rev uint64
		kv, err := st.Get(ctx, Bucket, key)
		switch {
		case err == nil:
			rev = kv.Revision
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("reading %s/%s: %w", Bucket, key, err)
		}
		if _, err = st.Put(ctx, Bucket, key, b, rev); !errors.Is(err, store.ErrConflict) {
			if err != nil {
				return fmt.Errorf("writing %s/%s: %w", Bucket, key, err)
			}
			return nil
		}
	}
	return fmt.Errorf("writing %s/%s: %w", Bucket, key, store.ErrConflict)
}

// storeKey is the key of s's state: store keys allow no ':', and the
// prefixes keep a named source apart from a service's scrape.
func storeKey(s Source) string {
	if s.Kind == KindScrape {
		return "scrape." + s.Services[0]
	}
	return "source." + s.ID
}

// Sources lists the metric sources cfg's services use: each named source
// once, with all the services using it, and each service's own scrape.
func Sources(cfg *config.Config) []Source {
	urls := map[string]string{}
	for _, s := range cfg.Sources {
		if s.Prometheus != nil {
			urls[s.Name] = Redact(s.Prometheus.URL)
		}
	}
	var out []Source
	at := map[string]int{}
	for _, sc := range cfg.Services {
		var s Source
		switch {
		case sc.Source != "":
			s = Source{ID: sc.Source, Kind: KindPrometheus, URL: urls[sc.Source]}
		case sc.Scrape != nil:
			s = Source{ID: ScrapeID(sc.Name), Kind: KindScrape, URL: Redact(sc.Scrape.URL)}
		default:
			continue
		}
		i, ok := at[s.ID]
		if !ok {
			i = len(out)
			at[s.ID] = i
			out = append(out, s)
		}
		out[i].Services = append(out[i].Services, sc.Name)
		for _, r := range sc.Notify {
			if !slices.Contains(out[i].Receivers, r) {
				out[i].Receivers = append(out[i].Receivers, r)
			}
		}
	}
	for i := range out {
		slices.Sort(out[i].Receivers)
	}
	return out
}
