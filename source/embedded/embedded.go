// Package embedded is Guardian's default metric source, needing nothing but
// the guarded service: it scrapes the service's /metrics endpoint itself,
// keeps the samples for a bounded retention in memory, in Prometheus's own
// chunk encodings, and answers PromQL with Prometheus's own engine.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/source"
)

// Defaults applied by New.
const (
	// DefaultRetention is how long samples are kept without Options.Retention.
	DefaultRetention = 10 * time.Minute
	// DefaultInterval is the scrape interval without config.Scrape.Interval.
	DefaultInterval = 5 * time.Second
	// MaxScrapeTimeout caps the default scrape timeout (the interval).
	MaxScrapeTimeout = 10 * time.Second
	// DefaultMaxSamples bounds the samples one query may load.
	DefaultMaxSamples = 5_000_000
	// DefaultQueryTimeout bounds one query's evaluation.
	DefaultQueryTimeout = 30 * time.Second
	// DefaultBodySizeLimit bounds a scraped body.
	DefaultBodySizeLimit = 64 << 20
	// LookbackDelta is how far back an instant selector looks for a sample,
	// as in Prometheus.
	LookbackDelta = 5 * time.Minute
)

// ErrClosed is returned by a Source used after Close. It wraps
// source.ErrUnavailable.
var ErrClosed = fmt.Errorf("embedded source closed: %w", source.ErrUnavailable)

// Options tune a Source. The zero value is usable.
type Options struct {
	// Retention is how long samples are kept; queries see nothing older than
	// the latest scrape minus Retention. Set it to the longest range the
	// service's queries use plus a margin (see query.MaxRange). Default 10m.
	Retention time.Duration
	// Client performs the scrapes. Default: a client of its own, whose idle
	// connections Close releases.
	Client *http.Client
	// Now returns the scrape timestamp; it is called once per scrape.
	// Default time.Now.
	Now func() time.Time
	// Metrics are shared by the Sources of one registry; default
	// NewMetrics(reg) with the registry passed to New.
	Metrics *Metrics
	// Target is the value of the target label of the metrics; default the
	// scrape URL without its credentials.
	Target string
	// MaxSamples bounds the samples one query may load; default 5,000,000.
	MaxSamples int
	// QueryTimeout bounds one query's evaluation; default 30s.
	QueryTimeout time.Duration
	// BodySizeLimit bounds a scraped body in bytes; default 64 MiB.
	BodySizeLimit int64
	// Engines, when set, lends the Source a PromQL engine shared with the
	// other Sources of the same settings; default an engine of its own.
	Engines *Engines
	// Filter keeps only the series of the metric names the service's
	// queries select (see FilterFor); nil keeps every series. SetFilter
	// replaces it.
	Filter *Filter
	// OnScrape, when set, is told the outcome of every scrape that ran to
	// its end, after the scrape: a nil error on success, otherwise the
	// scrape's error (an unreachable target or a 5xx answer wraps
	// source.ErrUnavailable, a timeout is a net.Error, see source.Reason).
	OnScrape func(ctx context.Context, err error)
}

// Engines shares PromQL engines between Sources. An engine keeps no state
// between queries and answers concurrent ones, but each costs about
// 280 KiB (its metric vectors): a Guardian watching a thousand services
// spent a quarter of a GiB on them. Sources with the same sample limit,
// query timeout and scrape interval (the default step of subqueries) share
// one. Safe for concurrent use.
//
// The Sources sharing Engines also share a bound on the queries evaluated
// at once (QuerySlots). A query's working set (the series it selected,
// their samples, the intermediate vectors) is live while it runs: a
// thousand services whose evaluations fall on the same tick would
// otherwise hold a thousand working sets at once, for no more throughput
// than a few CPUs give.
type Engines struct {
	mu      sync.Mutex
	engines map[engineKey]*promql.Engine
	// slots holds a token per query being evaluated.
	slots chan struct{}
}

type engineKey struct {
	maxSamples        int
	timeout, interval time.Duration
}

// NewEngines returns an empty set of shared engines whose Sources evaluate
// at most QuerySlots() queries at once.
func NewEngines() *Engines {
	return &Engines{engines: map[engineKey]*promql.Engine{}, slots: make(chan struct{}, QuerySlots())}
}

// QuerySlots is how many queries the Sources sharing Engines evaluate at
// once: twice GOMAXPROCS (a query is CPU work on in-memory samples; the
// wait for a scrape under way comes before a query takes its slot), at
// least 4.
func QuerySlots() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// Len is the number of engines made so far.
func (e *Engines) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.engines)
}

// get returns the engine of k, making it on first use.
func (e *Engines) get(k engineKey) *promql.Engine {
	e.mu.Lock()
	defer e.mu.Unlock()
	if eng, ok := e.engines[k]; ok {
		return eng
	}
	eng := newEngine(k)
	e.engines[k] = eng
	return eng
}

// newEngine makes the engine every Source uses: Prometheus's defaults for
// lookback, @ and negative offsets, the scrape interval as subquery step,
// and a parser that keeps the expressions of the queries asked for again
// (exprCache).
func newEngine(k engineKey) *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{
		Parser:               newExprCache(),
		Logger:               slog.New(slog.DiscardHandler),
		MaxSamples:           k.maxSamples,
		Timeout:              k.timeout,
		LookbackDelta:        LookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		NoStepSubqueryIntervalFn: func(int64) int64 {
			return k.interval.Milliseconds()
		},
	})
}

// Source scrapes one metrics endpoint and answers PromQL over what it has
// scraped. Query is safe for concurrent use, also while a scrape runs.
type Source struct {
	url           string
	shown         string // url without credentials, for logs and errors (see redact)
	interval      time.Duration
	timeout       time.Duration
	retention     time.Duration
	bodySizeLimit int64
	client        *http.Client
	ownClient     bool
	now           func() time.Time
	logger        *zap.Logger

	// store holds the samples.
	store *memStore
	// The series Guardian records about each scrape, as Prometheus does.
	upSeries, durSeries, samplesSeries *memSeries

	engine    *promql.Engine
	ownEngine bool // not shared through Options.Engines: Close closes it
	// slots bounds the queries evaluated at once by the Sources sharing
	// Options.Engines (Engines.slots); nil, no bound.
	slots     chan struct{}
	queryable storage.Queryable
	// floor is the oldest timestamp (ms) queries may see: latest scrape
	// minus retention.
	floor atomic.Int64

	// stats are the target's metrics (Options.Metrics).
	stats *targetStats
	// filter is the scrape filter (nil: keep everything).
	filter   atomic.Pointer[Filter]
	target   string
	onScrape func(ctx context.Context, err error)

	// mu guards closed; queries hold it shared.
	mu     sync.RWMutex
	closed bool

	// schedule is the scrape loop's (nil before it started).
	schedule atomic.Pointer[schedule]
	// inflightMu guards inflight, the scrape under way (nil when none).
	inflightMu sync.Mutex
	inflight   *inflightScrape
	// waiting, when set (tests), is called when a query starts waiting for
	// the scrape under way.
	waiting func()

	// scrapeMu serialises scrapes and guards the fields below.
	scrapeMu sync.Mutex
	scrapeState
}

// inflightScrape is a scrape under way: its timestamp, and a channel
// closed once its samples are in the store or it failed.
type inflightScrape struct {
	at   time.Time
	done chan struct{}
}

var _ source.Querier = (*Source)(nil)

// New creates a Source scraping cfg.URL every cfg.Interval; call Close to
// release it. reg registers the source's metrics unless opts.Metrics is
// set.
func New(cfg config.Scrape, opts Options, logger *zap.Logger, reg prometheus.Registerer) (*Source, error) {
	if cfg.URL == "" {
		return nil, errors.New("embedded source: scrape url is required")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	interval := time.Duration(cfg.Interval)
	if interval <= 0 {
		interval = DefaultInterval
	}
	timeout := time.Duration(cfg.Timeout)
	if timeout <= 0 {
		timeout = min(interval, MaxScrapeTimeout)
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(reg)
	}
	shown := redact(cfg.URL)
	if opts.Target == "" {
		opts.Target = shown
	}
	if opts.MaxSamples <= 0 {
		opts.MaxSamples = DefaultMaxSamples
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	if opts.BodySizeLimit <= 0 {
		opts.BodySizeLimit = DefaultBodySizeLimit
	}
	ownClient := opts.Client == nil
	if ownClient {
		opts.Client = &http.Client{Transport: newScrapeTransport()}
	}

	st := newMemStore()
	m := opts.Metrics
	s := &Source{
		url:           cfg.URL,
		shown:         shown,
		interval:      interval,
		timeout:       timeout,
		retention:     opts.Retention,
		bodySizeLimit: opts.BodySizeLimit,
		client:        opts.Client,
		ownClient:     ownClient,
		now:           opts.Now,
		logger:        logger.With(zap.String("target", shown)),
		store:         st,
		upSeries:      st.seriesFor(labels.FromStrings(model.MetricNameLabel, "up")),
		durSeries:     st.seriesFor(labels.FromStrings(model.MetricNameLabel, "scrape_duration_seconds")),
		samplesSeries: st.seriesFor(labels.FromStrings(model.MetricNameLabel, "scrape_samples_scraped")),
		stats:         m.forTarget(opts.Target),
		target:        opts.Target,
		onScrape:      opts.OnScrape,
		scrapeState:   newScrapeState(),
	}
	s.floor.Store(math.MinInt64)
	for _, sr := range []*memSeries{s.upSeries, s.durSeries, s.samplesSeries} {
		sr.refs = 1
	}
	s.filter.Store(opts.Filter)
	key := engineKey{maxSamples: opts.MaxSamples, timeout: opts.QueryTimeout, interval: interval}
	if opts.Engines != nil {
		s.engine = opts.Engines.get(key)
		s.slots = opts.Engines.slots
	} else {
		s.engine, s.ownEngine = newEngine(key), true
	}
	s.queryable = storage.QueryableFunc(s.querier)
	return s, nil
}

// querier reads the Source's series between mint and maxt, hiding
// samples older than the retention floor even where truncation has not
// dropped them yet.
func (s *Source) querier(mint, maxt int64) (storage.Querier, error) {
	floor := s.floor.Load()
	mint = max(mint, floor)
	if mint > maxt {
		return storage.NoopQuerier(), nil
	}
	return memQuerier{st: s.store, mint: mint, maxt: maxt, floor: floor}, nil
}

// Query evaluates query at ts over the scraped samples. A scalar result
// becomes one sample with no labels; a range vector or string result is an
// error wrapping source.ErrBadQuery. Errors wrap source sentinels, so
// source.Reason classifies them.
//
// A query sees every scrape whose timestamp is at or before ts: when one is
// under way, it first waits for that scrape's samples (at most the scrape
// timeout). A scrape is timestamped when it starts and its samples land a
// few milliseconds later; an evaluation ticking at the scrape interval
// otherwise tends to fall, tick after tick, in that gap and read every
// scrape one interval late.
func (s *Source) Query(ctx context.Context, query string, ts time.Time) (source.Result, error) {
	if err := s.awaitScrape(ctx, ts); err != nil {
		return source.Result{}, fmt.Errorf("embedded source %s: query %q: waiting for the scrape under way: %w", s.shown, query, classify(ctx, err))
	}
	if s.slots != nil {
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		case <-ctx.Done():
			return source.Result{}, fmt.Errorf("embedded source %s: query %q: waiting for one of the %d queries under way to end: %w", s.shown, query, cap(s.slots), classify(ctx, ctx.Err()))
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return source.Result{}, fmt.Errorf("embedded source %s: %w", s.shown, ErrClosed)
	}
	qry, err := s.engine.NewInstantQuery(ctx, s.queryable, nil, query, ts)
	if err != nil {
		return source.Result{}, fmt.Errorf("embedded source %s: query %q: %w", s.shown, query, classify(ctx, err))
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	var warnings, infos []string
	if len(res.Warnings) > 0 { // AsStrings allocates even for none
		warnings, infos = res.Warnings.AsStrings(query, 10, 10)
	}
	if len(warnings) > 0 || len(infos) > 0 {
		s.logger.Debug("query annotations", zap.String("query", query),
			zap.Strings("warnings", warnings), zap.Strings("infos", infos))
	}
	if res.Err != nil {
		return source.Result{Warnings: warnings}, fmt.Errorf("embedded source %s: query %q: %w", s.shown, query, classify(ctx, res.Err))
	}
	vec, err := toVector(res.Value)
	if err != nil {
		return source.Result{Warnings: warnings}, fmt.Errorf("embedded source %s: query %q: %w", s.shown, query, err)
	}
	return source.Result{Vector: vec, Warnings: warnings}, nil
}

// awaitScrape waits until the scrape under way, if it is timestamped at or
// before ts, has ended; it returns ctx's error if ctx ends first.
func (s *Source) awaitScrape(ctx context.Context, ts time.Time) error {
	s.inflightMu.Lock()
	p := s.inflight
	s.inflightMu.Unlock()
	if p == nil || p.at.After(ts) {
		return nil
	}
	if s.waiting != nil {
		s.waiting()
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// toVector converts an instant query's value to a vector. Native histogram
// samples are skipped: a source.Result holds float samples only (functions
// such as histogram_count and histogram_quantile turn them into floats).
func toVector(v parser.Value) (model.Vector, error) {
	switch v := v.(type) {
	case promql.Vector:
		out := make(model.Vector, 0, len(v))
		for _, smpl := range v {
			if smpl.H != nil {
				continue
			}
			out = append(out, &model.Sample{
				Metric:    toMetric(smpl.Metric),
				Value:     model.SampleValue(smpl.F),
				Timestamp: model.Time(smpl.T),
			})
		}
		return out, nil
	case promql.Scalar:
		return model.Vector{{Metric: model.Metric{}, Value: model.SampleValue(v.V), Timestamp: model.Time(v.T)}}, nil
	default:
		return nil, fmt.Errorf("%w: query must return an instant vector or scalar, got %s", source.ErrBadQuery, v.Type())
	}
}

// toMetric converts a result's labels.
func toMetric(ls labels.Labels) model.Metric {
	m := make(model.Metric, ls.Len())
	ls.Range(func(l labels.Label) { m[model.LabelName(l.Name)] = model.LabelValue(l.Value) })
	return m
}

// classify wraps an engine error with the source sentinel it stands for.
func classify(ctx context.Context, err error) error {
	var (
		timeout  promql.ErrQueryTimeout
		canceled promql.ErrQueryCanceled
		storErr  promql.ErrStorage
	)
	switch {
	case errors.As(err, &timeout):
		return fmt.Errorf("%w: %w", source.ErrTimeout, err)
	case errors.As(err, &canceled), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The engine reports its own timeout as ErrQueryTimeout; a canceled
		// context whose deadline passed is a timeout too.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w: %w", source.ErrTimeout, err)
		}
		return fmt.Errorf("%w: %w", source.ErrCanceled, err)
	case errors.As(err, &storErr):
		return err
	}
	// Parse errors and evaluation errors (many-to-many matching, too many
	// samples, ...) are the query's fault.
	return fmt.Errorf("%w: %w", source.ErrBadQuery, err)
}

// Close releases the samples. Stop Run first;
// Query and ScrapeOnce return ErrClosed afterwards. The target's
// guardian_embedded_series gauge is removed; its counters are kept so that a
// reload building a new Source for the same target continues them.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.store = newMemStore()
	var errs []error
	if s.ownEngine {
		errs = append(errs, s.engine.Close())
	}
	if s.ownClient {
		s.client.CloseIdleConnections()
	}
	s.stats.release()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing embedded source %s: %w", s.shown, err)
	}
	return nil
}

// Run scrapes at once and then every interval, at times of a phase of the
// target's own (see NextScrape), until ctx is done; it then returns nil.
// Failures are logged once per change of state and counted; they do not
// stop the loop.
func (s *Source) Run(ctx context.Context) error {
	sc := s.newSchedule(time.Now())
	s.schedule.Store(sc)
	l := s.startLoop(ctx, sc)
	<-ctx.Done()
	l.stop()
	return nil
}

// SetFilter replaces the scrape filter (nil: keep every series) from the
// next scrape on; a daemon calls it when a reload changed the service's
// queries but kept its source. Series the new filter drops end (stale
// markers) as if the target no longer exposed them.
func (s *Source) SetFilter(f *Filter) { s.filter.Store(f) }

// Filter returns the scrape filter; nil keeps every series.
func (s *Source) Filter() *Filter { return s.filter.Load() }

// Interval returns the scrape interval.
func (s *Source) Interval() time.Duration { return s.interval }

// NextScrape returns when the scrape loop scrapes next at or after t, by
// its schedule (Run, or Runner.Start); zero when it has not started. The
// loop scrapes as it starts, then at the times of a grid of the interval
// whose phase is a hash of the target's URL, the first of them at least half
// an interval after the start. A daemon evaluating queries at the scrape
// interval can time its evaluations just after the scrapes, so that each
// reads the latest scrape as soon as it lands.
func (s *Source) NextScrape(t time.Time) time.Time {
	sc := s.schedule.Load()
	if sc == nil {
		return time.Time{}
	}
	return s.nextScrape(sc, t)
}

// nextScrape is the first of sc's scrape times at or after t.
func (s *Source) nextScrape(sc *schedule, t time.Time) time.Time {
	if !t.After(sc.first) {
		return sc.first
	}
	return sc.gridAt(later(t, sc.first.Add(s.interval/2)), s.interval)
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
