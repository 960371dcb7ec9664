package watch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

// Metrics are the watch stage's guardian_* metrics, shared by every
// service of a daemon: register them once with NewMetrics.
type Metrics struct {
	evaluations  *prometheus.CounterVec
	evalDuration *prometheus.HistogramVec
	queryErrors  *prometheus.CounterVec
	triggerState *prometheus.GaugeVec
	// triggerValue, triggerThreshold and triggerBaseline are a trigger's
	// latest evaluation while a watch is open.
	triggerValue, triggerThreshold, triggerBaseline *prometheus.GaugeVec
	triggersFired                                   *prometheus.CounterVec
	deploys                                         *prometheus.CounterVec
	watching                                        *prometheus.GaugeVec
	warnings                                        *prometheus.CounterVec
	versionQueryErr                                 *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
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
			Help: "Failed metric queries by reason (timeout, unavailable, bad_response, bad_query, canceled, other).",
		}, []string{"service", "reason"}),
		triggerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "guardian_trigger_state",
			Help: "State of each trigger: 0 inactive, 1 pending, 2 firing.",
		}, []string{"service", "trigger"}),
		triggerValue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "guardian_trigger_value",
			Help: "The new version's value at a trigger's latest evaluation, while the service's watch window is open (absent without data).",
		}, []string{"service", "trigger"}),
		triggerThreshold: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "guardian_trigger_threshold",
			Help: "The limit of a trigger's first judged condition at its latest evaluation (baseline × factor for above_baseline), while the watch window is open.",
		}, []string{"service", "trigger"}),
		triggerBaseline: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "guardian_trigger_baseline",
			Help: "The baseline version's value at a trigger's latest evaluation, while the watch window is open (absent without a baseline).",
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
		m.deploys, m.watching, m.warnings, m.versionQueryErr, m.triggerValue, m.triggerThreshold, m.triggerBaseline)
	return m
}

// Forget drops the series of a service that is gone after a reload, or,
// with a trigger name, those of one of its triggers.
func (m *Metrics) Forget(service, trigger string) {
	if trigger == "" {
		for _, v := range []interface {
			DeletePartialMatch(prometheus.Labels) int
		}{m.evaluations, m.evalDuration, m.queryErrors, m.triggerState, m.triggersFired, m.deploys, m.watching, m.warnings, m.versionQueryErr,
			m.triggerValue, m.triggerThreshold, m.triggerBaseline} {
			v.DeletePartialMatch(prometheus.Labels{"service": service})
		}
		return
	}
	l := prometheus.Labels{"service": service, "trigger": trigger}
	m.evaluations.DeletePartialMatch(l)
	m.triggerState.DeletePartialMatch(l)
	m.triggersFired.DeletePartialMatch(l)
	m.clearValues(service, trigger)
}

// setValues exports the value, threshold and baseline of verdict v of
// service's trigger; those v lacks are removed rather than left stale.
func (m *Metrics) setValues(service string, v trigger.Verdict) {
	for _, g := range []struct {
		vec *prometheus.GaugeVec
		v   float64
	}{
		{m.triggerValue, nan(v.Evidence.Value)},
		{m.triggerThreshold, threshold(v)},
		{m.triggerBaseline, nan(v.Evidence.BaselineValue)},
	} {
		if math.IsNaN(g.v) {
			g.vec.DeleteLabelValues(service, v.Trigger)
			continue
		}
		g.vec.WithLabelValues(service, v.Trigger).Set(g.v)
	}
}

// clearValues removes the value, threshold and baseline of service's
// trigger: its watch window closed.
func (m *Metrics) clearValues(service, trigger string) {
	for _, vec := range []*prometheus.GaugeVec{m.triggerValue, m.triggerThreshold, m.triggerBaseline} {
		vec.DeleteLabelValues(service, trigger)
	}
}

// Retire forgets the series of old that next, its replacement after a
// reload, no longer has: all of them when next is nil (the service is
// gone), otherwise those of the triggers it dropped.
func (m *Metrics) Retire(old, next *Service) {
	if next == nil {
		m.Forget(old.Name(), "")
		return
	}
	for _, tr := range old.TriggerNames() {
		if !slices.Contains(next.TriggerNames(), tr) {
			m.Forget(old.Name(), tr)
		}
	}
}

// Querier wraps a service's source: every query is bounded by timeout
// (none when 0), and a failure other than a cancellation is counted in
// guardian_query_errors_total by its source.Reason and wrapped with the
// service's name. Options add to what the wrapper does (ObserveWith).
func (m *Metrics) Querier(service string, q source.Querier, timeout time.Duration, opts ...QuerierOption) source.Querier {
	c := countingQuerier{q: q, service: service, m: m, timeout: timeout}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// QuerierOption adds to what the wrapper Querier returns does.
type QuerierOption func(*countingQuerier)

// ObserveWith has the wrapper tell observe the outcome of every query but a
// canceled one: a nil error on success, otherwise the source's error as the
// source returned it (classify it with source.Reason). A nil observe does
// nothing. ctx is the query's context, without the wrapper's timeout.
func ObserveWith(observe func(ctx context.Context, err error)) QuerierOption {
	return func(c *countingQuerier) { c.observe = observe }
}

type countingQuerier struct {
	q       source.Querier
	service string
	m       *Metrics
	timeout time.Duration
	observe func(ctx context.Context, err error)
}

func (c countingQuerier) Query(ctx context.Context, q string, ts time.Time) (source.Result, error) {
	qctx := ctx
	if c.timeout > 0 {
		var cancel context.CancelFunc
		qctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	res, err := c.q.Query(qctx, q, ts)
	canceled := errors.Is(err, context.Canceled)
	if c.observe != nil && !canceled {
		c.observe(ctx, err)
	}
	if err != nil && !canceled {
		c.m.queryErrors.WithLabelValues(c.service, source.Reason(err)).Inc()
		return res, fmt.Errorf("querying %s: %w", c.service, err)
	}
	return res, err
}
