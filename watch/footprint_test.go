package watch

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

// BenchmarkMetricsFootprint reports the heap the watch metrics of 1,000
// services with 3 triggers each keep, in bytes per service, once each
// service has had a deploy, a tick with every trigger evaluated (ok, with
// a value, a threshold and a baseline) and one trigger fired.
//
//	go test -run '^$' -bench MetricsFootprint -benchtime 3x ./watch/
func BenchmarkMetricsFootprint(b *testing.B) {
	const services, triggers = 1000, 3
	names := make([]string, services)
	for i := range names {
		names[i] = fmt.Sprintf("service-%04d", i)
	}
	trigs := make([]string, triggers)
	for i := range trigs {
		trigs[i] = fmt.Sprintf("trigger-%d", i)
	}
	var perService float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := NewMetrics(prometheus.NewRegistry())
		for _, svc := range names {
			m.deploys.WithLabelValues(svc, "api").Inc()
			m.watching.WithLabelValues(svc).Set(1)
			m.evalDuration.WithLabelValues(svc).Observe(0.001)
			for j, tr := range trigs {
				m.evaluations.WithLabelValues(svc, tr, "ok").Inc()
				m.triggerState.WithLabelValues(svc, tr).Set(0)
				m.triggerValue.WithLabelValues(svc, tr).Set(0.1)
				m.triggerThreshold.WithLabelValues(svc, tr).Set(0.5)
				m.triggerBaseline.WithLabelValues(svc, tr).Set(0.1)
				if j == 0 {
					m.triggersFired.WithLabelValues(svc, tr).Inc()
				}
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perService = float64(after.HeapAlloc-before.HeapAlloc) / services
		runtime.KeepAlive(m)
	}
	b.ReportMetric(perService, "heap-B/service")
}

// BenchmarkMetricsGather is one scrape of the watch metrics of 1,000
// services set up as in BenchmarkMetricsFootprint.
//
//	go test -run '^$' -bench MetricsGather -benchmem ./watch/
func BenchmarkMetricsGather(b *testing.B) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	for i := range 1000 {
		svc := fmt.Sprintf("service-%04d", i)
		m.deploys.WithLabelValues(svc, "api").Inc()
		m.watching.WithLabelValues(svc).Set(1)
		m.evalDuration.WithLabelValues(svc).Observe(0.001)
		for j := range 3 {
			tr := fmt.Sprintf("trigger-%d", j)
			m.evaluations.WithLabelValues(svc, tr, "ok").Inc()
			m.triggerState.WithLabelValues(svc, tr).Set(0)
			m.triggerValue.WithLabelValues(svc, tr).Set(0.1)
		}
	}
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// footprintQuerier answers the version query with v1, and v2 too from
// tick 4 on, and every other query with 0.01.
type footprintQuerier struct{ v2 bool }

func (f *footprintQuerier) Query(_ context.Context, q string, _ time.Time) (source.Result, error) {
	if strings.HasPrefix(q, "sum by (version)") {
		v := model.Vector{{Metric: model.Metric{"version": "v1"}, Value: 10}}
		if f.v2 {
			v = append(v, &model.Sample{Metric: model.Metric{"version": "v2"}, Value: 1})
		}
		return source.Result{Vector: v}, nil
	}
	return source.Result{Vector: model.Vector{{Metric: model.Metric{}, Value: 0.01}}}, nil
}

// BenchmarkServiceRetained reports the heap that 1,000 started services
// keep per service, each with a version query, persisted state and two
// threshold triggers, after 40 ticks 5s apart: a deploy seen at the 4th,
// then a watch with every trigger evaluated at each tick (the histories,
// the series, the saved state, the detector's versions, the contexts and
// scheduling of Start).
//
//	go test -run '^$' -bench ServiceRetained -benchtime 3x ./watch/
func BenchmarkServiceRetained(b *testing.B) {
	const services, ticks = 1000, 40
	names := make([]string, services)
	for i := range names {
		names[i] = fmt.Sprintf("service-%04d", i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var perService float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := NewMetrics(prometheus.NewRegistry())
		sched := NewScheduler(0, nil)
		svcs := make([]*Service, services)
		stops := make([]func(), services)
		for i, name := range names {
			det, trs := footprintParts(b, name)
			q := &footprintQuerier{}
			var err error
			svcs[i], err = New(Options{
				Name: name, Detector: det, Triggers: trs, Querier: q, Window: time.Hour, Interval: 5 * time.Second,
				Align: func() time.Duration { return time.Hour }, Scheduler: sched, Metrics: m,
				Persist: func(context.Context, string, []byte) error { return nil },
			})
			if err != nil {
				b.Fatal(err)
			}
			for k := range ticks {
				q.v2 = k >= 4
				svcs[i].Tick(ctx, t0.Add(time.Duration(k)*5*time.Second))
			}
			if svcs[i].watch == nil {
				b.Fatalf("%s: no watch open", name)
			}
			stops[i] = svcs[i].Start(ctx, time.Now, nil)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perService = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / services
		for _, stop := range stops {
			stop()
		}
		runtime.KeepAlive(svcs)
	}
	b.ReportMetric(perService, "heap-B/service")
}

// BenchmarkTickFootprint is one tick of an open watch of a service with a
// version query, persisted state and two threshold triggers, as in
// BenchmarkServiceRetained: what it allocates is the garbage of a tick.
//
//	go test -run '^$' -bench TickFootprint -benchmem ./watch/
func BenchmarkTickFootprint(b *testing.B) {
	det, trs := footprintParts(b, "checkout")
	q := &footprintQuerier{}
	svc, err := New(Options{
		Name: "checkout", Detector: det, Triggers: trs, Querier: q, Window: 1000 * time.Hour, Interval: 5 * time.Second,
		Metrics: NewMetrics(prometheus.NewRegistry()), Persist: func(context.Context, string, []byte) error { return nil },
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	k := 0
	for ; k < 200; k++ { // a full history
		q.v2 = k >= 4
		svc.Tick(ctx, t0.Add(time.Duration(k)*5*time.Second))
	}
	if svc.watch == nil {
		b.Fatal("no watch open")
	}
	b.ReportAllocs()
	for b.Loop() {
		k++
		svc.Tick(ctx, t0.Add(time.Duration(k)*5*time.Second))
	}
}

// footprintParts returns the detector and the two threshold triggers of
// the footprint benchmarks' service name.
func footprintParts(b *testing.B, name string) (*rollout.Detector, []trigger.Evaluator) {
	b.Helper()
	det, err := rollout.NewDetector(name, rollout.Config{VersionQuery: `sum by (version) (rate(requests{service="{{.Service}}"}[1m]))`})
	if err != nil {
		b.Fatal(err)
	}
	var trs []trigger.Evaluator
	for _, tn := range []string{"error-rate", "latency"} {
		def, err := trigger.FromSpec(trigger.Spec{Name: tn, Query: `err{service="{{.Service}}",version="{{.Version}}"}`, Above: ptr(0.05)})
		if err != nil {
			b.Fatal(err)
		}
		tr, err := trigger.New(def)
		if err != nil {
			b.Fatal(err)
		}
		trs = append(trs, tr)
	}
	return det, trs
}
