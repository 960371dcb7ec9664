package embedded

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the embedded sources' own metrics, labelled by target. Create
// them once per registry with NewMetrics and share them between Sources
// through Options.Metrics.
type Metrics struct {
	scrapes  *prometheus.CounterVec
	failures *prometheus.CounterVec
	duration *prometheus.HistogramVec
	series   *prometheus.GaugeVec
	dropped  *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered). Calling it again with the same registry returns metrics
// backed by the collectors already registered, instead of panicking.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		scrapes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "guardian_scrapes_total",
			Help: "Scrapes of a service's metrics endpoint by the embedded source.",
		}, []string{"target"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "guardian_scrape_failures_total",
			Help: "Failed scrapes of a service's metrics endpoint by the embedded source.",
		}, []string{"target"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "guardian_scrape_duration_seconds",
			Help:    "Duration of the embedded source's scrapes, fetching and ingesting.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"target"}),
		series: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "guardian_embedded_series",
			Help: "Series the embedded source's latest scrape appended to (a folded series counted once), Guardian's own up, scrape_duration_seconds and scrape_samples_scraped included.",
		}, []string{"target"}),
		dropped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "guardian_embedded_series_dropped",
			Help: "Series of the latest scrape the embedded source dropped because no query of the service selects their metric name.",
		}, []string{"target"}),
	}
	if reg != nil {
		m.scrapes = register(reg, m.scrapes)
		m.failures = register(reg, m.failures)
		m.duration = register(reg, m.duration)
		m.series = register(reg, m.series)
		m.dropped = register(reg, m.dropped)
	}
	return m
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
