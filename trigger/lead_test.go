package trigger

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// scraped is a service's http_requests_total as a scraper stores it:
// samples every second, at a phase of 0.3s, from 10 minutes before the
// deploy on. Evaluated with Prometheus's own engine, so that increase()
// extrapolates as it does in Prometheus.
type scraped struct {
	db  *tsdb.DB
	eng *promql.Engine
}

// served is one version's traffic: requests per second from start (and
// not after end, when set), a share p of them failing; resetAt, when set,
// is a restart that sets its counters back to zero.
type served struct {
	version    string
	start, end time.Time
	resetAt    time.Time
	rate, p    float64
}

// counts returns the version's cumulative requests and errors at t as its
// counters show them (since start, or since resetAt once past it).
func (s served) counts(t time.Time) (n, e float64) {
	from := s.start
	if !s.resetAt.IsZero() && !t.Before(s.resetAt) {
		from = s.resetAt
	}
	if !s.end.IsZero() && t.After(s.end) {
		t = s.end
	}
	n = math.Floor(s.rate * t.Sub(from).Seconds())
	return n, math.Floor(s.p * n)
}

func newScraped(t *testing.T, until time.Time, versions ...served) *scraped {
	t.Helper()
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = 0
	db, err := tsdb.Open(t.TempDir(), slog.New(slog.DiscardHandler), nil, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	app := db.Appender(context.Background())
	for ts := deployAt.Add(-10*time.Minute + 300*time.Millisecond); !ts.After(until); ts = ts.Add(time.Second) {
		for _, v := range versions {
			if ts.Before(v.start) || (!v.end.IsZero() && ts.After(v.end.Add(time.Second))) {
				continue
			}
			n, e := v.counts(ts)
			for code, val := range map[string]float64{"200": n - e, "500": e} {
				if val == 0 && code == "500" {
					continue // a counter appears at its first increment
				}
				ls := labels.FromStrings("__name__", "http_requests_total", "service", "checkout", "version", v.version, "code", code)
				if _, err := app.Append(0, ls, ts.UnixMilli(), val); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	eng := promql.NewEngine(promql.EngineOpts{Logger: slog.New(slog.DiscardHandler), MaxSamples: 10_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	return &scraped{db: db, eng: eng}
}

func (s *scraped) query(ctx context.Context, qs string, ts time.Time) (source.Result, error) {
	qry, err := s.eng.NewInstantQuery(ctx, s.db, nil, qs, ts)
	if err != nil {
		return source.Result{}, fmt.Errorf("%w: %w", source.ErrBadQuery, err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return source.Result{}, res.Err
	}
	vec, ok := res.Value.(promql.Vector)
	if !ok {
		return source.Result{}, fmt.Errorf("%w: %s", source.ErrBadQuery, res.Value.Type())
	}
	out := make(model.Vector, 0, len(vec))
	for _, smpl := range vec {
		out = append(out, &model.Sample{Metric: model.Metric{}, Value: model.SampleValue(smpl.F)})
	}
	return source.Result{Vector: out}, nil
}

// value runs q at ts and returns its single value.
func (s *scraped) value(t *testing.T, q string, ts time.Time) float64 {
	t.Helper()
	res, err := s.query(context.Background(), q, ts)
	if err != nil || len(res.Vector) != 1 {
		t.Fatalf("%s: %v, %v", q, res.Vector, err)
	}
	return float64(res.Vector[0].Value)
}

// lastScrape is the time of the latest scrape at or before ts.
func lastScrape(ts time.Time) time.Time {
	grid := deployAt.Add(-10*time.Minute + 300*time.Millisecond)
	return grid.Add(ts.Sub(grid).Truncate(time.Second))
}

// A deploy seen by the version query is seen after the new version's
// first samples. With a lead, the new version is judged at the deploy
// time already, on the counts its counters show (increase() alone would
// extrapolate beyond them); without one, only later.
func TestSequentialLead(t *testing.T) {
	start := deployAt.Add(-2600 * time.Millisecond) // v2's first samples at -1.7s and -0.7s
	v1 := served{version: "v1", start: deployAt.Add(-20 * time.Minute), end: start, rate: 100, p: 0.005}
	v2 := served{version: "v2", start: start, rate: 100, p: 0.2}
	src := newScraped(t, deployAt.Add(time.Minute), v1, v2)
	def := seqDef(t, above(0.05))
	lead := 11 * time.Second
	dl := d
	dl.Lead = lead

	v := newTrigger(t, def).Eval(context.Background(), deployAt, dl, src.query)
	se := v.Evidence.Sequential
	if v.Outcome != Violated || v.State != Firing {
		t.Fatalf("at the deploy time with a lead: %v, %v (%s), want violated and firing", v.Outcome, v.State, v.Summary())
	}
	n, e := v2.counts(lastScrape(deployAt))
	if se.New != (sequential.Counts{Errors: e, Requests: n}) {
		t.Errorf("counts %v, want the counters' %v/%v", se.New, e, n)
	}
	if inc := src.value(t, v.Evidence.VolumeQuery, deployAt); !(inc > n) {
		t.Errorf("increase() counts %g requests, want more than the %g scraped (the extrapolation the test avoids)", inc, n)
	}
	if se.NewRange != lead || !strings.Contains(v.Evidence.Query, "[11s]") || !strings.Contains(se.RequestsValueQuery, "last_over_time(") {
		t.Errorf("range %s, query %s, value query %s", se.NewRange, v.Evidence.Query, se.RequestsValueQuery)
	}
	if v.Evidence.BaselineQuery != "" || se.Live != (sequential.Counts{}) || se.PreDeploy.Requests == 0 {
		t.Errorf("at the deploy time the baseline has pre-deploy counts only: live query %q, live %v, pre %v", v.Evidence.BaselineQuery, se.Live, se.PreDeploy)
	}
	if !strings.Contains(v.Summary(), "counted from 11s before the deploy") {
		t.Errorf("summary %q", v.Summary())
	}

	// Later the baseline's live range starts at the deploy and the new
	// version's a lead before it. Each count is the smaller reading: here
	// increase(), which extrapolates its start only half a scrape interval
	// back while the first sample counts nine tenths of one.
	at := deployAt.Add(2500 * time.Millisecond)
	v = newTrigger(t, def).Eval(context.Background(), at, dl, src.query)
	se = v.Evidence.Sequential
	n, e = v2.counts(lastScrape(at))
	incN, incE := src.value(t, v.Evidence.VolumeQuery, at), src.value(t, v.Evidence.Query, at)
	if se.New != (sequential.Counts{Errors: min(e, incE), Requests: min(n, incN)}) || !(incN < n) ||
		se.SinceDeploy != 3*time.Second || se.NewRange != 14*time.Second ||
		!strings.Contains(v.Evidence.BaselineQuery, "[3s]") {
		t.Errorf("at +2.5s: counts %v (counters %v/%v, increase() %v/%v), ranges %s and %s, baseline query %s", se.New, e, n, incE, incN, se.SinceDeploy, se.NewRange, v.Evidence.BaselineQuery)
	}

	// Without a lead nothing is judged at the deploy time, and a second
	// later the range holds one sample of v2: no data yet.
	tr := newTrigger(t, def)
	for _, tk := range []struct {
		at      time.Duration
		outcome Outcome
	}{{0, NotEnoughEvidence}, {time.Second, NoData}} {
		if v := tr.Eval(context.Background(), deployAt.Add(tk.at), d, src.query); v.Outcome != tk.outcome || len(v.Evidence.Sequential.RequestsValueQuery) != 0 {
			t.Fatalf("without a lead at +%s: %v (%s), want %v and no value queries", tk.at, v.Outcome, v.Summary(), tk.outcome)
		}
	}
}

// The smaller reading is never above what the counters scraped: after a
// restart the counter values are (fewer requests, never more); for a
// version whose series began before the range (a redeploy), increase()'s.
func TestSequentialLeadCounts(t *testing.T) {
	start := deployAt.Add(-2600 * time.Millisecond)
	at := deployAt.Add(20 * time.Second)
	def := seqDef(t, above(0.05))
	dl := d
	dl.Lead = 11 * time.Second
	t.Run("restart", func(t *testing.T) {
		v2 := served{version: "v2", start: start, resetAt: deployAt.Add(10 * time.Second), rate: 100, p: 0.01}
		src := newScraped(t, at, v2)
		v := newTrigger(t, def).Eval(context.Background(), at, dl, src.query)
		se := v.Evidence.Sequential
		if n, _ := v2.counts(lastScrape(at)); se.New.Requests != n {
			t.Fatalf("requests %v, want the counter's %v since the restart", se.New.Requests, n)
		}
	})
	t.Run("served before the range", func(t *testing.T) {
		// v2 served (unnoticed, or before a redeploy that kept its
		// counters) since long before the range.
		v2 := served{version: "v2", start: deployAt.Add(-10 * time.Minute), rate: 100, p: 0.01}
		src := newScraped(t, at, v2)
		v := newTrigger(t, def).Eval(context.Background(), at, dl, src.query)
		se := v.Evidence.Sequential
		inc := src.value(t, v.Evidence.VolumeQuery, at)
		if n, _ := v2.counts(lastScrape(at)); se.New.Requests != math.Floor(inc+0.5) || !(inc < n) {
			t.Fatalf("requests %v, want increase()'s %v (the counter shows %v)", se.New.Requests, inc, n)
		}
	})
}
