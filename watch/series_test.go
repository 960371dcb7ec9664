package watch

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Series set from many goroutines while scraped are all counted.
func TestMetricsConcurrent(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	const writers, incs = 4, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc := []string{"checkout", "cart"}[w%2]
			for i := range incs {
				m.evaluations.inc(svc, "error-rate", "ok")
				m.triggerState.set(float64(i%3), svc, "error-rate")
				m.evalDuration.observe(0.001, svc)
				if i%50 == 0 {
					m.Forget(svc, "latency")
				}
			}
		}()
	}
	for range 20 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for _, svc := range []string{"checkout", "cart"} {
		if got := testutil.ToFloat64(m.evaluations.WithLabelValues(svc, "error-rate", "ok")); got != writers/2*incs {
			t.Errorf("%s: %v evaluations, want %d", svc, got, writers/2*incs)
		}
	}
	if n := testutil.CollectAndCount(m.evalDuration); n != 2 {
		t.Errorf("%d duration series, want 2", n)
	}
}
