package embedded

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the embedded sources' own metrics, labelled by target. Create
// them once per registry with NewMetrics and share them between Sources
// through Options.Metrics.
//
// They are plain values written out when the registry is gathered rather
// than client_golang's vectors: five children by target, a histogram among
// them, held about 3.5 KiB for each; a thousand targets' 3.5 MB of live
// heap cost twice that in resident memory.
type Metrics struct {
	scrapes, failures, duration, series, dropped *prometheus.Desc

	mu      sync.Mutex
	targets map[string]*targetStats
}

// scrapeBuckets are the upper bounds of guardian_scrape_duration_seconds.
var scrapeBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// targetStats are one target's metrics. The counters and the histogram
// live as long as the Metrics (a reload that replaces a Source goes on
// counting for its target); the gauges only while a Source of the target
// is open (open > 0).
type targetStats struct {
	scrapes, failures atomic.Uint64
	series, dropped   atomic.Int64
	open              atomic.Int32

	mu sync.Mutex
	// counts holds the observations by bucket (not cumulative), the last
	// one above every bound.
	counts [14]uint64
	sum    float64
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered). Calling it again with the same registry returns the metrics
// already registered, instead of panicking.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	target := []string{"target"}
	m := &Metrics{
		scrapes: prometheus.NewDesc("guardian_scrapes_total",
			"Scrapes of a service's metrics endpoint by the embedded source.", target, nil),
		failures: prometheus.NewDesc("guardian_scrape_failures_total",
			"Failed scrapes of a service's metrics endpoint by the embedded source.", target, nil),
		duration: prometheus.NewDesc("guardian_scrape_duration_seconds",
			"Duration of the embedded source's scrapes, fetching and ingesting.", target, nil),
		series: prometheus.NewDesc("guardian_embedded_series",
			"Series the embedded source's latest scrape appended to (a folded series counted once), Guardian's own up, scrape_duration_seconds and scrape_samples_scraped included.", target, nil),
		dropped: prometheus.NewDesc("guardian_embedded_series_dropped",
			"Series of the latest scrape the embedded source dropped because no query of the service selects their metric name.", target, nil),
		targets: map[string]*targetStats{},
	}
	if reg != nil {
		m = register(reg, m)
	}
	return m
}

// forTarget returns target's metrics, created when first asked for, and
// counts one more open Source of it (release when it closes).
func (m *Metrics) forTarget(target string) *targetStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := m.targets[target]
	if ts == nil {
		ts = &targetStats{}
		m.targets[target] = ts
	}
	ts.open.Add(1)
	return ts
}

// release counts one open Source of the target less: without any, its
// gauges are no longer exposed.
func (ts *targetStats) release() { ts.open.Add(-1) }

// observe records a scrape's duration in seconds.
func (ts *targetStats) observe(d float64) {
	i, _ := slices.BinarySearch(scrapeBuckets, d)
	ts.mu.Lock()
	ts.counts[i]++
	ts.sum += d
	ts.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.scrapes, m.failures, m.duration, m.series, m.dropped} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	targets := make([]string, 0, len(m.targets))
	stats := make([]*targetStats, 0, len(m.targets))
	for t, ts := range m.targets {
		targets, stats = append(targets, t), append(stats, ts)
	}
	m.mu.Unlock()
	for i, ts := range stats {
		t := targets[i]
		ch <- prometheus.MustNewConstMetric(m.scrapes, prometheus.CounterValue, float64(ts.scrapes.Load()), t)
		ch <- prometheus.MustNewConstMetric(m.failures, prometheus.CounterValue, float64(ts.failures.Load()), t)
		buckets := make(map[float64]uint64, len(scrapeBuckets)) // kept by the metric
		ts.mu.Lock()
		var n uint64
		for j, ub := range scrapeBuckets {
			n += ts.counts[j]
			buckets[ub] = n
		}
		n += ts.counts[len(scrapeBuckets)]
		sum := ts.sum
		ts.mu.Unlock()
		ch <- prometheus.MustNewConstHistogram(m.duration, n, sum, buckets, t)
		if ts.open.Load() > 0 {
			ch <- prometheus.MustNewConstMetric(m.series, prometheus.GaugeValue, float64(ts.series.Load()), t)
			ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.GaugeValue, float64(ts.dropped.Load()), t)
		}
	}
}

// register registers c, or returns the equal collector already registered.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	// A collector with the same name but another shape: a programming error,
	// as with MustRegister.
	panic(err)
}
