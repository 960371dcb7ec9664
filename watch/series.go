package watch

import (
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The watch stage's series are plain values kept by service in a
// seriesStore and turned into metrics only when scraped, rather than one
// client_golang child per label set: with thousands of services and
// triggers, the children (their label pairs, their counters, their
// entries in the vectors' maps) weigh several kilobytes per service, a
// cell here about sixty bytes. What a series is, when it appears and when
// it goes are those of a client_golang vector: a series exists once set,
// incremented or observed, until deleted.

// seriesStore holds the series of every service.
type seriesStore struct {
	mu       sync.RWMutex
	services map[string]*serviceSeries
}

// serviceSeries are the series of one service: the tick-duration
// histogram and a cell for each other series.
type serviceSeries struct {
	mu       sync.Mutex
	cells    []cell
	duration *histogram
}

// cell is one series other than a histogram: its family, the labels after
// the service's, its value and, for a counter, when it was created (the
// created timestamp client_golang exports).
type cell struct {
	fam     uint8
	trigger string // the trigger label, of a family by trigger
	extra   string // the last label (outcome, reason, source), of a family with one
	value   float64
	created int64 // Unix nanoseconds
}

// durationBuckets are the upper bounds of guardian_evaluation_duration_seconds.
var durationBuckets = prometheus.ExponentialBuckets(0.0005, 4, durationBucketCount)

const durationBucketCount = 10

// histogram is a classic histogram over durationBuckets.
type histogram struct {
	counts  [durationBucketCount]uint64 // by bucket, not cumulative
	count   uint64
	sum     float64
	created int64
}

func (h *histogram) observe(v float64) {
	// As client_golang does: the first bucket whose bound is ≥ v; none
	// (only +Inf) for a larger v or NaN.
	for i, bound := range durationBuckets {
		if v <= bound {
			h.counts[i]++
			break
		}
	}
	h.count++
	h.sum += v
}

// service returns the series of service, created if need be.
func (st *seriesStore) service(service string) *serviceSeries {
	st.mu.RLock()
	sv := st.services[service]
	st.mu.RUnlock()
	if sv != nil {
		return sv
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if sv = st.services[service]; sv == nil {
		sv = &serviceSeries{}
		st.services[service] = sv
	}
	return sv
}

// existing returns the series of service, nil when it has none.
func (st *seriesStore) existing(service string) *serviceSeries {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.services[service]
}

// forgetService drops every series of service.
func (st *seriesStore) forgetService(service string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.services, service)
}

// snapshot returns the services and their series at this moment.
func (st *seriesStore) snapshot() ([]string, []*serviceSeries) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	names := make([]string, 0, len(st.services))
	series := make([]*serviceSeries, 0, len(st.services))
	for name, sv := range st.services {
		names = append(names, name)
		series = append(series, sv)
	}
	return names, series
}

// kind is a family's metric type.
type kind uint8

const (
	counterKind kind = iota
	gaugeKind
	histogramKind
)

// family is one metric family of the store: a prometheus.Collector whose
// label values are the service, then the trigger when byTrigger, then one
// more label when extra.
type family struct {
	st        *seriesStore
	id        uint8
	desc      *prometheus.Desc
	kind      kind
	byTrigger bool
	extra     bool
}

var _ prometheus.Collector = (*family)(nil)

// newFamily describes a family of st; labels are its label names, the
// service's first.
func newFamily(st *seriesStore, id uint8, k kind, name, help string, labels ...string) *family {
	f := &family{st: st, id: id, kind: k, desc: prometheus.NewDesc(name, help, labels, nil)}
	switch {
	case len(labels) == 3:
		f.byTrigger, f.extra = true, true
	case len(labels) == 2 && labels[1] == "trigger":
		f.byTrigger = true
	case len(labels) == 2:
		f.extra = true
	}
	return f
}

// labels splits label values as the family's: service, trigger, extra.
// Like a client_golang vector, it panics on a wrong number of them or on
// one that is not UTF-8.
func (f *family) labels(lvs []string) (service, trigger, extra string) {
	want := 1
	if f.byTrigger {
		want++
	}
	if f.extra {
		want++
	}
	if len(lvs) != want {
		panic(fmt.Sprintf("%s: %d label values, want %d", f.desc, len(lvs), want))
	}
	for _, v := range lvs {
		if !utf8.ValidString(v) {
			panic(fmt.Sprintf("%s: label value %q is not valid UTF-8", f.desc, v))
		}
	}
	if f.byTrigger {
		trigger = lvs[1]
	}
	if f.extra {
		extra = lvs[len(lvs)-1]
	}
	return lvs[0], trigger, extra
}

// locate returns the cell of the series lvs, created if need be, with its
// service's series locked: the caller unlocks sv.mu.
func (f *family) locate(lvs []string) (sv *serviceSeries, c *cell) {
	service, trigger, extra := f.labels(lvs)
	sv = f.st.service(service)
	sv.mu.Lock()
	if i := sv.find(f.id, trigger, extra); i >= 0 {
		return sv, &sv.cells[i]
	}
	sv.cells = append(sv.cells, cell{fam: f.id, trigger: trigger, extra: extra, created: time.Now().UnixNano()})
	return sv, &sv.cells[len(sv.cells)-1]
}

func (sv *serviceSeries) find(fam uint8, trigger, extra string) int {
	for i := range sv.cells {
		if c := &sv.cells[i]; c.fam == fam && c.trigger == trigger && c.extra == extra {
			return i
		}
	}
	return -1
}

// inc adds 1 to the counter lvs.
func (f *family) inc(lvs ...string) {
	sv, c := f.locate(lvs)
	c.value++
	sv.mu.Unlock()
}

// set sets the gauge lvs to v.
func (f *family) set(v float64, lvs ...string) {
	sv, c := f.locate(lvs)
	c.value = v
	sv.mu.Unlock()
}

// observe adds v to the histogram of service.
func (f *family) observe(v float64, service string) {
	sv := f.st.service(service)
	sv.mu.Lock()
	sv.histogram().observe(v)
	sv.mu.Unlock()
}

// histogram returns the service's histogram, created if need be. Callers
// hold sv.mu.
func (sv *serviceSeries) histogram() *histogram {
	if sv.duration == nil {
		sv.duration = &histogram{created: time.Now().UnixNano()}
	}
	return sv.duration
}

// delete removes the series lvs, if it exists.
func (f *family) delete(lvs ...string) {
	service, trigger, extra := f.labels(lvs)
	sv := f.st.existing(service)
	if sv == nil {
		return
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if f.kind == histogramKind {
		sv.duration = nil
		return
	}
	if i := sv.find(f.id, trigger, extra); i >= 0 {
		sv.cells = slices.Delete(sv.cells, i, i+1)
	}
}

// forgetTrigger removes every series of service's trigger, in all the
// families by trigger.
func (st *seriesStore) forgetTrigger(service, trigger string, byTrigger func(fam uint8) bool) {
	sv := st.existing(service)
	if sv == nil {
		return
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.cells = slices.DeleteFunc(sv.cells, func(c cell) bool { return c.trigger == trigger && byTrigger(c.fam) })
}

// Describe sends the family's one description.
func (f *family) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }

// Collect sends the family's series as they are now.
func (f *family) Collect(ch chan<- prometheus.Metric) {
	names, series := f.st.snapshot()
	var ms []prometheus.Metric
	for i, sv := range series {
		ms = f.collect(ms[:0], names[i], sv, nil)
		for _, m := range ms {
			ch <- m
		}
	}
}

// collect appends the family's series of service to ms: all of them, or,
// when only is not nil, the one with only's labels.
func (f *family) collect(ms []prometheus.Metric, service string, sv *serviceSeries, only *cell) []prometheus.Metric {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if f.kind == histogramKind {
		if h := sv.duration; h != nil {
			buckets := make(map[float64]uint64, len(durationBuckets))
			var cum uint64
			for i, bound := range durationBuckets {
				cum += h.counts[i]
				buckets[bound] = cum
			}
			ms = append(ms, prometheus.MustNewConstHistogramWithCreatedTimestamp(f.desc, h.count, h.sum, buckets, time.Unix(0, h.created), service))
		}
		return ms
	}
	for i := range sv.cells {
		c := &sv.cells[i]
		if c.fam != f.id || only != nil && (c.trigger != only.trigger || c.extra != only.extra) {
			continue
		}
		if f.kind == gaugeKind {
			ms = append(ms, &gauge{desc: f.desc, service: service, trigger: c.trigger, byTrigger: f.byTrigger, value: c.value})
			continue
		}
		ms = append(ms, prometheus.MustNewConstMetricWithCreatedTimestamp(f.desc, prometheus.CounterValue, c.value, time.Unix(0, c.created), f.values(service, c)...))
	}
	return ms
}

// gauge is one series of a gauge family (labels service and, when
// byTrigger, trigger) as scraped. It writes itself as a const metric would,
// for fewer allocations at each scrape.
type gauge struct {
	desc             *prometheus.Desc
	service, trigger string
	byTrigger        bool
	value            float64
}

var _ prometheus.Metric = (*gauge)(nil)

var serviceLabel, triggerLabel = "service", "trigger"

func (g *gauge) Desc() *prometheus.Desc { return g.desc }

// Write writes the gauge with its labels in the order of their names.
func (g *gauge) Write(out *dto.Metric) error {
	pairs := [2]dto.LabelPair{{Name: &serviceLabel, Value: &g.service}, {Name: &triggerLabel, Value: &g.trigger}}
	out.Label = []*dto.LabelPair{&pairs[0]}
	if g.byTrigger {
		out.Label = append(out.Label, &pairs[1])
	}
	out.Gauge = &dto.Gauge{Value: &g.value}
	return nil
}

// values are the label values of cell c of service, in the family's order.
func (f *family) values(service string, c *cell) []string {
	lvs := []string{service}
	if f.byTrigger {
		lvs = append(lvs, c.trigger)
	}
	if f.extra {
		lvs = append(lvs, c.extra)
	}
	return lvs
}

// WithLabelValues returns the series lvs, created (at zero) if need be,
// as a client_golang vector does; tests read and set series through it.
func (f *family) WithLabelValues(lvs ...string) series {
	if f.kind == histogramKind {
		service, _, _ := f.labels(lvs)
		sv := f.st.service(service)
		sv.mu.Lock()
		sv.histogram()
		sv.mu.Unlock()
	} else {
		sv, _ := f.locate(lvs)
		sv.mu.Unlock()
	}
	return series{f: f, lvs: lvs}
}

// series is one series of a family, as WithLabelValues returns it: a
// prometheus.Collector of that series alone.
type series struct {
	f   *family
	lvs []string
}

// Inc adds 1 to the counter.
func (s series) Inc() { s.f.inc(s.lvs...) }

// Set sets the gauge.
func (s series) Set(v float64) { s.f.set(v, s.lvs...) }

// Observe adds v to the histogram.
func (s series) Observe(v float64) { s.f.observe(v, s.lvs[0]) }

// Describe sends the family's description.
func (s series) Describe(ch chan<- *prometheus.Desc) { s.f.Describe(ch) }

// Collect sends the series, if it still exists.
func (s series) Collect(ch chan<- prometheus.Metric) {
	service, trigger, extra := s.f.labels(s.lvs)
	sv := s.f.st.existing(service)
	if sv == nil {
		return
	}
	for _, m := range s.f.collect(nil, service, sv, &cell{trigger: trigger, extra: extra}) {
		ch <- m
	}
}
