package watch

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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
