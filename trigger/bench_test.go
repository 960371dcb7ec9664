package trigger

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger/sequential"
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

// BenchmarkEvalSequential measures one evaluation of a sequential trigger:
// four count queries (the new version and the live baseline) against an
// in-memory map and the test with its confidence intervals. (The ranges,
// hence the queries, are those of one evaluation time.)
func BenchmarkEvalSequential(b *testing.B) {
	src := linear{rate: 100, p: 0.01, pre: sequential.Counts{Errors: 1800, Requests: 180000}, live: 100, liveRatio: 0.01}.source()
	tr := newTrigger(b, seqDef(b))
	ctx := context.Background()
	if v := tr.Eval(ctx, t0, d, src.query); v.Evidence.Sequential == nil || v.Outcome == QueryError {
		b.Fatalf("outcome %v: %s", v.Outcome, v.Summary())
	}
	// Replay the answers of that evaluation from a map.
	answers := map[string]source.Result{}
	for _, q := range []string{`version="v2",code`, `version="v2"}`, `version="v1",code`, `version="v1"}`} {
		for _, c := range src.sent(q) {
			qs, _, _ := strings.Cut(c, "@")
			res, err := src.query(ctx, qs, t0)
			if err != nil {
				b.Fatal(err)
			}
			answers[qs] = res
		}
	}
	q := func(_ context.Context, q string, _ time.Time) (source.Result, error) { return answers[q], nil }
	b.ReportAllocs()
	for b.Loop() {
		tr.Eval(ctx, t0, d, q)
	}
}

// BenchmarkSequentialDecide measures the test alone on changing counts.
func BenchmarkSequentialDecide(b *testing.B) {
	te, err := sequential.New(seqDef(b).testConfig())
	if err != nil {
		b.Fatal(err)
	}
	w := te.Watch(true, sequential.Counts{Errors: 1800, Requests: 180000})
	b.ReportAllocs()
	n := 0.0
	for b.Loop() {
		n += 100
		w.Judge(sequential.Counts{Errors: n / 100, Requests: n}, sequential.Counts{Errors: n / 100, Requests: n})
	}
}
