package prometheus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/testenv"
)

// TestQueryRangeOnHistory checks QueryRange on history imported into a
// real Prometheus, and that its value at each step is what an instant
// query at that time returns (the backtest relies on it).
func TestQueryRangeOnHistory(t *testing.T) {
	start := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	var om strings.Builder
	om.WriteString("# TYPE jobs counter\n")
	// 2 jobs a second, a sample every 10 s, 7 s past the steps.
	for i := 0; i < 60; i++ {
		ts := start.Add(7*time.Second + time.Duration(i)*10*time.Second)
		fmt.Fprintf(&om, "jobs_total{queue=\"a\"} %d %d\n", 20*i, ts.Unix())
	}
	om.WriteString("# EOF\n")
	p := testenv.StartPrometheusWithHistory(t, []byte(om.String()))
	q := newQuerier(t, config.PrometheusSource{URL: p.URL})
	ctx := context.Background()

	from, to, step := start.Add(2*time.Minute), start.Add(8*time.Minute), 15*time.Second
	m, err := q.QueryRange(ctx, `rate(jobs_total[1m])`, from, to, step)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].Values) != 25 || string(m[0].Metric["queue"]) != "a" {
		t.Fatalf("range result: %v", m)
	}
	for _, pt := range m[0].Values {
		if v := float64(pt.Value); v < 1.99 || v > 2.01 {
			t.Errorf("rate at %s = %g, want 2", pt.Timestamp.Time(), v)
		}
		res, err := q.Query(ctx, `rate(jobs_total[1m])`, pt.Timestamp.Time())
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Vector) != 1 || res.Vector[0].Value != pt.Value {
			t.Errorf("instant query at %s = %v, range query %v", pt.Timestamp.Time(), res.Vector, pt.Value)
		}
	}

	if _, err := q.QueryRange(ctx, `rate(jobs_total[1m]`, from, to, step); !errors.Is(err, source.ErrBadQuery) {
		t.Errorf("a bad query: %v, want ErrBadQuery", err)
	}
	down := newQuerier(t, config.PrometheusSource{URL: "http://" + testenv.FreePort(t)})
	if _, err := down.QueryRange(ctx, `up`, from, to, step); source.Reason(err) != source.ReasonUnavailable {
		t.Errorf("an unreachable server: %v, want unavailable", err)
	}
}
