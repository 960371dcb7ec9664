package backtest_test

import (
	"context"
	"testing"

	"github.com/rollback-guardian/guardian/backtest"
	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/source/prometheus"
	"github.com/rollback-guardian/guardian/testenv"
)

// TestBacktestOnPrometheus imports the generated history into a real
// Prometheus with promtool, backtests it through Prometheus's HTTP API,
// and checks every deploy's verdict and firing time: against what the
// scenario is built to produce, and against the daemon's watch loop run
// over the same samples in Prometheus's engine in process.
func TestBacktestOnPrometheus(t *testing.T) {
	h := history()
	prom := testenv.StartPrometheusWithHistory(t, h.OpenMetrics())
	svc := service(t, prom.URL)
	q, err := prometheus.New(config.PrometheusSource{URL: prom.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	from, to := span(h)
	rep, err := backtest.Run(context.Background(), backtest.Options{
		Service: svc, Interval: interval, From: from, To: to, Querier: q, Concurrency: 2, Rate: 0,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkScenario(t, h, rep)
	sameAsLive(t, rep, live(t, svc, newEngineQuerier(t, h), from, to))
	t.Logf("%d deploys, %d ticks, %d queries in %s", len(rep.Deploys), rep.Ticks, rep.Queries, rep.Elapsed)
}
