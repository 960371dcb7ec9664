package web

import (
	"math"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/watch"
)

func TestThin(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := make([]watch.Sample, 10)
	for i := range h {
		h[i] = watch.Sample{At: t0.Add(time.Duration(i) * time.Second), Value: float64(i % 3)}
	}
	h[4].Value = 9 // a spike
	h[6].Value = math.NaN()
	got := thin(h, 4)
	var vals []string
	for _, x := range got {
		vals = append(vals, strconv.FormatFloat(x.Value, 'g', -1, 64))
	}
	// Runs of 2, 3, 2, 3 samples: [0 1] [2 0 9] [2 NaN] [1 2 0].
	if len(got) != 4 || vals[0] != "1" || vals[1] != "9" || vals[2] != "2" || vals[3] != "2" || !got[1].At.Equal(h[4].At) {
		t.Errorf("thin = %v", vals)
	}
	if got := thin(h, 20); len(got) != 10 {
		t.Errorf("thinning to more than there is: %d samples", len(got))
	}
}

// BenchmarkConsole renders the overview of 100 services, each with two
// triggers and a full history (15 minutes at a 1s interval).
func BenchmarkConsole(b *testing.B) {
	views := make([]ServiceView, 100)
	for i := range views {
		v := checkoutView(watch.MaxHistoryPoints)
		v.Name = "service-" + strconv.Itoa(i)
		v.History["latency"] = append([]watch.Sample(nil), v.History["error-rate"]...)
		for j := range v.History["latency"] {
			v.History["latency"][j].Outcome, v.History["latency"][j].State = trigger.OK, trigger.Inactive
		}
		views[i] = v
	}
	s := New(Options{Gatherer: prometheus.NewRegistry(), Services: func() []ServiceView { return views }})
	h := s.Handler()
	var size int
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if w.Code != 200 {
			b.Fatalf("GET /: %d", w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
}
