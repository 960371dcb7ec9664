package backtest_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/rollback-guardian/guardian/backtest/scenario"
	"github.com/rollback-guardian/guardian/source"
)

// engineQuerier evaluates PromQL in process, with Prometheus's own engine,
// over a TSDB holding a generated history: the same samples a real
// Prometheus is given in the end-to-end test.
type engineQuerier struct {
	db  *tsdb.DB
	eng *promql.Engine
}

func newEngineQuerier(t testing.TB, h scenario.History) *engineQuerier {
	t.Helper()
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = 0
	db, err := tsdb.Open(t.TempDir(), slog.New(slog.DiscardHandler), nil, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	app := db.Appender(context.Background())
	for _, s := range h.Series() {
		ls := labels.FromStrings("__name__", "http_requests_total", "code", s.Labels["code"], "service", s.Labels["service"], "version", s.Labels["version"])
		for i := range s.T {
			if _, err := app.Append(0, ls, s.T[i], s.V[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	eng := promql.NewEngine(promql.EngineOpts{
		Logger: slog.New(slog.DiscardHandler), MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute,
	})
	return &engineQuerier{db: db, eng: eng}
}

func (q *engineQuerier) Query(ctx context.Context, qs string, ts time.Time) (source.Result, error) {
	qry, err := q.eng.NewInstantQuery(ctx, q.db, nil, qs, ts)
	if err != nil {
		return source.Result{}, fmt.Errorf("%w: %w", source.ErrBadQuery, err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return source.Result{}, res.Err
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		out := make(model.Vector, 0, len(v))
		for _, s := range v {
			out = append(out, &model.Sample{Metric: metric(s.Metric), Value: model.SampleValue(s.F), Timestamp: model.Time(s.T)})
		}
		return source.Result{Vector: out}, nil
	case promql.Scalar:
		return source.Result{Vector: model.Vector{{Metric: model.Metric{}, Value: model.SampleValue(v.V), Timestamp: model.Time(v.T)}}}, nil
	}
	return source.Result{}, fmt.Errorf("%w: %s", source.ErrBadQuery, res.Value.Type())
}

func (q *engineQuerier) QueryRange(ctx context.Context, qs string, start, end time.Time, step time.Duration) (model.Matrix, error) {
	qry, err := q.eng.NewRangeQuery(ctx, q.db, nil, qs, start, end, step)
	if err != nil {
		return nil, err
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	m, err := res.Matrix()
	if err != nil {
		return nil, err
	}
	out := make(model.Matrix, 0, len(m))
	for _, s := range m {
		ss := &model.SampleStream{Metric: metric(s.Metric)}
		for _, p := range s.Floats {
			ss.Values = append(ss.Values, model.SamplePair{Timestamp: model.Time(p.T), Value: model.SampleValue(p.F)})
		}
		out = append(out, ss)
	}
	return out, nil
}

func metric(ls labels.Labels) model.Metric {
	m := model.Metric{}
	ls.Range(func(l labels.Label) { m[model.LabelName(l.Name)] = model.LabelValue(l.Value) })
	return m
}
