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
// service of a daemon: register them once with NewMetrics. Their series
// are kept by service as plain values (see seriesStore) and survive the
// Services that set them, so that a Service rebuilt by a reload counts on.
type Metrics struct {
	st           *seriesStore
	families     []*family
	evaluations  *family
	evalDuration *family
	queryErrors  *family
	triggerState *family
	// triggerValue, triggerThreshold and triggerBaseline are a trigger's
	// latest evaluation while a watch is open.
	triggerValue, triggerThreshold, triggerBaseline *family
	triggersFired                                   *family
	deploys                                         *family
	watching                                        *family
	warnings                                        *family
	versionQueryErr                                 *family
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{st: &seriesStore{services: map[string]*serviceSeries{}}}
	add := func(k kind, name, help string, labels ...string) *family {
		f := newFamily(m.st, uint8(len(m.families)), k, name, help, labels...)
		m.families = append(m.families, f)
		return f
	}
	m.evaluations = add(counterKind, "guardian_evaluations_total",
		"Trigger evaluations by outcome (ok, violated, not_enough_evidence, no_data, nan, query_error).", "service", "trigger", "outcome")
	m.evalDuration = add(histogramKind, "guardian_evaluation_duration_seconds",
		"Duration of one evaluation tick of a service: deploy detection and every trigger.", "service")
	m.queryErrors = add(counterKind, "guardian_query_errors_total",
		"Failed metric queries by reason (timeout, unavailable, bad_response, bad_query, canceled, other).", "service", "reason")
	m.triggerState = add(gaugeKind, "guardian_trigger_state",
		"State of each trigger: 0 inactive, 1 pending, 2 firing.", "service", "trigger")
	m.triggerValue = add(gaugeKind, "guardian_trigger_value",
		"The new version's value at a trigger's latest evaluation, while the service's watch window is open (absent without data).", "service", "trigger")
	m.triggerThreshold = add(gaugeKind, "guardian_trigger_threshold",
		"The limit of a trigger's first judged condition at its latest evaluation (baseline × factor for above_baseline), while the watch window is open.", "service", "trigger")
	m.triggerBaseline = add(gaugeKind, "guardian_trigger_baseline",
		"The baseline version's value at a trigger's latest evaluation, while the watch window is open (absent without a baseline).", "service", "trigger")
	m.triggersFired = add(counterKind, "guardian_triggers_fired_total",
		"Times a trigger went to firing.", "service", "trigger")
	m.deploys = add(counterKind, "guardian_deploys_total",
		"Fresh deploys seen, by how they were learnt (version_query, api).", "service", "source")
	m.watching = add(gaugeKind, "guardian_watch_active",
		"1 while a service's watch window after a deploy is open.", "service")
	m.warnings = add(counterKind, "guardian_query_warnings_total",
		"Queries that returned warnings.", "service")
	m.versionQueryErr = add(counterKind, "guardian_version_query_failures_total",
		"Failed deploy-detection (version_query) evaluations.", "service")
	for _, f := range m.families {
		reg.MustRegister(f)
	}
	return m
}

// Forget drops the series of a service that is gone after a reload, or,
// with a trigger name, those of one of its triggers.
func (m *Metrics) Forget(service, trigger string) {
	if trigger == "" {
		m.st.forgetService(service)
		return
	}
	m.st.forgetTrigger(service, trigger, func(fam uint8) bool { return m.families[fam].byTrigger })
}

// setValues exports the value, threshold and baseline of verdict v of
// service's trigger; those v lacks are removed rather than left stale.
func (m *Metrics) setValues(service string, v trigger.Verdict) {
	for _, g := range []struct {
		f *family
		v float64
	}{
		{m.triggerValue, nan(v.Evidence.Value)},
		{m.triggerThreshold, threshold(v)},
		{m.triggerBaseline, nan(v.Evidence.BaselineValue)},
	} {
		if math.IsNaN(g.v) {
			g.f.delete(service, v.Trigger)
			continue
		}
		g.f.set(g.v, service, v.Trigger)
	}
}

// clearValues removes the value, threshold and baseline of service's
// trigger: its watch window closed.
func (m *Metrics) clearValues(service, trigger string) {
	for _, f := range []*family{m.triggerValue, m.triggerThreshold, m.triggerBaseline} {
		f.delete(service, trigger)
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
		c.m.queryErrors.inc(c.service, source.Reason(err))
		return res, fmt.Errorf("querying %s: %w", c.service, err)
	}
	return res, err
}
