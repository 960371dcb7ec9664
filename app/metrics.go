package app

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the daemon's guardian_* metrics, registered once per App.
type metrics struct {
	evaluations     *prometheus.CounterVec
	evalDuration    *prometheus.HistogramVec
	queryErrors     *prometheus.CounterVec
	triggerState    *prometheus.GaugeVec
	triggersFired   *prometheus.CounterVec
	deploys         *prometheus.CounterVec
	watching        *prometheus.GaugeVec
	warnings        *prometheus.CounterVec
	versionQueryErr *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "guardian_evaluations_total",
			Help: "Trigger evaluations by outcome (ok, violated, not_enough_evidence, no_data, nan, query_error).",
		}, []string{"service", "trigger", "outcome"}),
		evalDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "guardian_evaluation_duration_seconds",
			Help:    "Duration of one evaluation tick of a service: deploy detection and every trigger.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"service"}),
		queryErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "guardian_query_errors_total",
			Help: "Failed metric queries by reason (timeout, unavailable, bad_query, canceled, other).",
		}, []string{"service", "reason"}),
		triggerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "guardian_trigger_state",
			Help: "State of each trigger: 0 inactive, 1 pending, 2 firing.",
		}, []string{"service", "trigger"}),
		triggersFired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "guardian_triggers_fired_total",
			Help: "Times a trigger went to firing.",
		}, []string{"service", "trigger"}),
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "guardian_deploys_total",
			Help: "Fresh deploys seen, by how they were learnt (version_query, api).",
		}, []string{"service", "source"}),
		watching: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "guardian_watch_active",
			Help: "1 while a service's watch window after a deploy is open.",
		}, []string{"service"}),
		warnings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "guardian_query_warnings_total",
			Help: "Queries that returned warnings.",
		}, []string{"service"}),
		versionQueryErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "guardian_version_query_failures_total",
			Help: "Failed deploy-detection (version_query) evaluations.",
		}, []string{"service"}),
	}
	reg.MustRegister(m.evaluations, m.evalDuration, m.queryErrors, m.triggerState, m.triggersFired,
		m.deploys, m.watching, m.warnings, m.versionQueryErr)
	return m
}

// forget drops the series of a service (or of one of its triggers) that is gone after a reload.
func (m *metrics) forget(service string, trigger string) {
	if trigger == "" {
		for _, v := range []interface {
			DeletePartialMatch(prometheus.Labels) int
		}{m.evaluations, m.evalDuration, m.queryErrors, m.triggerState, m.triggersFired, m.deploys, m.watching, m.warnings, m.versionQueryErr} {
			v.DeletePartialMatch(prometheus.Labels{"service": service})
		}
		return
	}
	l := prometheus.Labels{"service": service, "trigger": trigger}
	m.evaluations.DeletePartialMatch(l)
	m.triggerState.DeletePartialMatch(l)
	m.triggersFired.DeletePartialMatch(l)
}
