package trigger

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/source"
)

// footprintSpecs are the triggers of bench/footprint's services: an error
// ratio with above, above_baseline, for and min_requests; a p99 latency
// with above_baseline; and a sequential test on errors and requests.
func footprintSpecs() []Spec {
	return []Spec{
		{
			Name: "error-rate",
			Query: `(sum(rate(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.Window}}])) or vector(0))` +
				` / sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))`,
			Above:         f64(0.05),
			AboveBaseline: &BaselineLimit{Ratio: 2, Text: "2x"},
			For:           30 * time.Second,
			MinRequests:   50,
			VolumeQuery:   `sum(increase(http_requests_total{version="{{.Version}}"}[{{.Window}}]))`,
		},
		{
			Name:          "p99-latency",
			Query:         `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{version="{{.Version}}"}[{{.Window}}])))`,
			Window:        2 * time.Minute,
			Above:         f64(0.5),
			AboveBaseline: &BaselineLimit{Delta: 0.1, Text: "+0.1"},
		},
		{
			Name: "errors-sequential",
			Sequential: &SequentialSpec{
				Errors:   `sum(increase(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.SinceDeploy}}]))`,
				Requests: `sum(increase(http_requests_total{version="{{.Version}}"}[{{.SinceDeploy}}]))`,
				Alpha:    0.001, MinEffect: BaselineLimit{Ratio: 1.5, Text: "1.5x"},
			},
		},
	}
}

// countingQuerier answers every query with one sample chosen by the
// query's shape, and counts the queries.
type countingQuerier struct{ n atomic.Int64 }

var (
	ratioRes    = source.Result{Vector: model.Vector{{Value: 0.01}}}
	latencyRes  = source.Result{Vector: model.Vector{{Value: 0.2}}}
	requestsRes = source.Result{Vector: model.Vector{{Value: 1500}}}
	errorsRes   = source.Result{Vector: model.Vector{{Value: 15}}}
)

func (c *countingQuerier) query(_ context.Context, q string, _ time.Time) (source.Result, error) {
	c.n.Add(1)
	switch {
	case strings.HasPrefix(q, "histogram_quantile"):
		return latencyRes, nil
	case strings.HasPrefix(q, "(sum(rate"):
		return ratioRes, nil
	case strings.Contains(q, `code=~"5.."`):
		return errorsRes, nil
	}
	return requestsRes, nil
}

// BenchmarkEvalFootprint measures one tick of bench/footprint's triggers
// for one service (one evaluation of each of the three) against a querier
// that answers at once, so what it measures is the trigger code's own work;
// it reports the queries run per tick.
func BenchmarkEvalFootprint(b *testing.B) {
	var trs []*Trigger
	for _, s := range footprintSpecs() {
		dd, err := FromSpec(s)
		if err != nil {
			b.Fatal(err)
		}
		trs = append(trs, newTrigger(b, dd))
	}
	dep := Deploy{Service: "svc1", Version: "v2", Baseline: "v1", At: t0.Add(-time.Minute), Lead: 20 * time.Second}
	var q countingQuerier
	ctx := context.Background()
	for _, tr := range trs {
		if _, _, err := tr.Snapshot(ctx, dep, q.query); err != nil {
			b.Fatal(err)
		}
		if v := tr.Eval(ctx, t0, dep, q.query); v.Outcome == QueryError {
			b.Fatalf("%s: %v", tr.Name(), v.Err)
		}
	}
	q.n.Store(0)
	b.ReportAllocs()
	ts, ticks := t0, 0
	for b.Loop() {
		ts = ts.Add(5 * time.Second)
		ticks++
		for _, tr := range trs {
			tr.Eval(ctx, ts, dep, q.query)
		}
	}
	b.ReportMetric(float64(q.n.Load())/float64(ticks), "queries/op")
}

// cloneSpec returns s with fresh copies of its strings, as each service's
// triggers have when decoded from a config file.
func cloneSpec(s Spec) Spec {
	s.Name, s.Query, s.VolumeQuery = strings.Clone(s.Name), strings.Clone(s.Query), strings.Clone(s.VolumeQuery)
	if q := s.Sequential; q != nil {
		c := *q
		c.Errors, c.Requests = strings.Clone(q.Errors), strings.Clone(q.Requests)
		s.Sequential = &c
	}
	return s
}

// BenchmarkTriggerRetained reports the heap that bench/footprint's three
// triggers keep per service, for 1,000 services each built from its own
// copy of the config, after a baseline snapshot and 20 evaluations of a
// deploy (the last verdicts, the rendered queries, the tests' state).
//
//	go test -run '^$' -bench TriggerRetained -benchtime 3x ./trigger/
func BenchmarkTriggerRetained(b *testing.B) {
	const services, ticks = 1000, 20
	specs := footprintSpecs()
	var q countingQuerier
	ctx := context.Background()
	var perService float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		trs := make([][]*Trigger, services)
		for i := range trs {
			dep := Deploy{Service: fmt.Sprintf("service-%04d", i), Version: "v2", Baseline: "v1", At: t0.Add(-time.Minute), Lead: 20 * time.Second}
			for _, s := range specs {
				dd, err := FromSpec(cloneSpec(s))
				if err != nil {
					b.Fatal(err)
				}
				tr := newTrigger(b, dd)
				if _, _, err := tr.Snapshot(ctx, dep, q.query); err != nil {
					b.Fatal(err)
				}
				trs[i] = append(trs[i], tr)
			}
			for k := range ticks {
				for _, tr := range trs[i] {
					if v := tr.Eval(ctx, t0.Add(time.Duration(k)*5*time.Second), dep, q.query); v.Outcome == QueryError {
						b.Fatalf("%s: %v", tr.Name(), v.Err)
					}
				}
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perService = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / services
		runtime.KeepAlive(trs)
	}
	b.ReportMetric(perService, "heap-B/service")
}
