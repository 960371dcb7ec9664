package trigger

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/source"
)

// BenchmarkEval measures one evaluation with a value query, a live baseline
// query and a volume query against an in-memory source.
func BenchmarkEval(b *testing.B) {
	tr := newTrigger(b, def(b, above(0.05), ratio(2), minRequests(50)))
	results := map[string]source.Result{
		valueQ:    {Vector: model.Vector{{Value: 0.01}}},
		baselineQ: {Vector: model.Vector{{Value: 0.01}}},
		volumeQ:   {Vector: model.Vector{{Value: 1534}}},
	}
	q := func(_ context.Context, q string, _ time.Time) (source.Result, error) { return results[q], nil }
	ctx := context.Background()
	if v := tr.Eval(ctx, t0, d, q); v.Outcome != OK || v.Evidence.BaselineMode != BaselineLive {
		b.Fatalf("outcome %v mode %v", v.Outcome, v.Evidence.BaselineMode)
	}
	b.ReportAllocs()
	ts := t0
	for b.Loop() {
		ts = ts.Add(time.Second)
		tr.Eval(ctx, ts, d, q)
	}
}
