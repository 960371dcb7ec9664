package report

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/report/chart"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

// seriesQuerier answers each query with a function of the time: a known
// series per query, an error, or nothing (an empty result).
type seriesQuerier struct {
	mu     sync.Mutex
	series map[string]func(t time.Time) (float64, bool, error)
	asked  map[string]int
}

func (q *seriesQuerier) Query(_ context.Context, qs string, ts time.Time) (source.Result, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.asked == nil {
		q.asked = map[string]int{}
	}
	q.asked[qs]++
	f, ok := q.series[qs]
	if !ok {
		return source.Result{}, fmt.Errorf("unexpected query %s", qs)
	}
	v, ok, err := f(ts)
	if err != nil || !ok {
		return source.Result{}, err
	}
	return source.Result{Vector: model.Vector{{Value: model.SampleValue(v), Timestamp: model.TimeFromUnixNano(ts.UnixNano())}}}, nil
}

// badThenBack is the bad version's error ratio: 0.4% until the deploy's
// effect (1m after it), 8% until the rollback is done, 0.4% again.
func badThenBack(rec incident.Record) func(time.Time) (float64, bool, error) {
	return func(t time.Time) (float64, bool, error) {
		switch {
		case t.Before(rec.DeployedAt):
			return 0, false, nil // the bad version did not serve yet
		case t.Before(rec.DeployedAt.Add(time.Minute)) || !t.Before(*rec.RollbackDoneAt):
			return 0.004, true, nil
		}
		return 0.08, true, nil
	}
}

func steady(v float64) func(time.Time) (float64, bool, error) {
	return func(time.Time) (float64, bool, error) { return v, true, nil }
}

func TestChartsFromEvidence(t *testing.T) {
	rec := resolved()
	q := &seriesQuerier{series: map[string]func(time.Time) (float64, bool, error){
		errorQuery: badThenBack(rec),
		// The source no longer keeps the baseline's first minute.
		baselineQuery: func(t time.Time) (float64, bool, error) {
			return 0.004, !t.Before(rec.DeployedAt.Add(-time.Minute)), nil
		},
	}}
	now := rec.ResolvedAt.Add(time.Hour)
	charts := Charts(context.Background(), q, rec, now)
	if len(charts) != 1 {
		t.Fatalf("%d charts, want the firing trigger's only", len(charts))
	}
	c := charts[0]
	from, to := rec.DeployedAt.Add(-ChartLead), rec.ResolvedAt.Add(ChartTail)
	if !c.From.Equal(from) || !c.To.Equal(to) || c.Trigger != "error-rate" || !c.Firing {
		t.Fatalf("chart %s (firing %v) from %s to %s, want error-rate from %s to %s", c.Trigger, c.Firing, c.From, c.To, from, to)
	}
	// ~200 points at a whole-second step: 15m30s / 200 → 5s.
	if c.Step != 5*time.Second || len(c.Series) != 2 {
		t.Fatalf("step %s, %d series", c.Step, len(c.Series))
	}
	for _, s := range c.Series {
		if n := len(s.Points); n < 120 || n > 300 {
			t.Errorf("series %s has %d points, want 120 to 300", s.Name, n)
		}
	}
	if c.Threshold == nil || *c.Threshold != 0.05 || c.Unit != chart.UnitRatio {
		t.Errorf("threshold %v unit %q, want 0.05 from the evidence's condition, as a ratio", c.Threshold, c.Unit)
	}
	// The series hold the querier's values at their times; before the
	// deploy the bad version had no data: a gap, which is expected.
	v := c.Series[0]
	if v.Role != chart.RoleVersion || v.Name != "v2.4.1" || c.Series[1].Role != chart.RoleBaseline {
		t.Fatalf("series %+v", c.Series)
	}
	for _, p := range v.Points {
		want, ok, _ := badThenBack(rec)(p.T)
		if !ok {
			if !math.IsNaN(p.V) {
				t.Fatalf("point at %s is %g, want a gap", p.T, p.V)
			}
			continue
		}
		if p.V != want {
			t.Fatalf("point at %s is %g, want %g", p.T, p.V, want)
		}
	}
	// The baseline's missing first minute (12 points at 5s) is noted.
	if c.Note != "baseline v2.4.0: no data at 12 of 187 points, the earliest ones (the source may no longer keep samples of that time)" {
		t.Errorf("note %q, want the baseline's first 12 points reported missing", c.Note)
	}
	for i, p := range c.Series[1].Points {
		if math.IsNaN(p.V) != (i < 12) {
			t.Fatalf("baseline point %d at %s is %g", i, p.T, p.V)
		}
	}
	if q.asked[errorQuery] != len(v.Points) || q.asked[baselineQuery] != len(v.Points) {
		t.Errorf("asked %v, want one query per point and series", q.asked)
	}

	// Markers: at the record's times, and drawn at their x.
	kinds := map[string]time.Time{}
	for _, m := range c.Markers {
		kinds[m.Kind] = m.At
	}
	want := map[string]time.Time{"deploy": rec.DeployedAt, "detected": rec.DetectedAt, "approved": *rec.ApprovedAt,
		"rollback": *rec.RollbackStartedAt, "rolled_back": *rec.RollbackDoneAt, "recovered": *rec.RecoveredAt, "resolved": *rec.ResolvedAt}
	for k, at := range want {
		if got, ok := kinds[k]; !ok || !got.Equal(at) {
			t.Errorf("marker %s at %s, want %s", k, got, at)
		}
	}
	svg := c.SVG()
	for k, at := range want {
		// The default chart is 640 wide with a 56px left and 12px right margin.
		x := 56 + 572*at.Sub(from).Seconds()/to.Sub(from).Seconds()
		re := regexp.MustCompile(`data-marker="` + k + `"><line x1="([0-9.]+)"`)
		m := re.FindStringSubmatch(svg)
		if m == nil {
			t.Errorf("no %s marker in the SVG", k)
			continue
		}
		got, _ := strconv.ParseFloat(m[1], 64)
		if math.Abs(got-x) > 0.1 {
			t.Errorf("%s marker at x=%g, want %.1f", k, got, x)
		}
	}
	if !strings.Contains(svg, `class="threshold"`) {
		t.Error("the threshold is not drawn")
	}
}

func TestChartsFromDefinitions(t *testing.T) {
	rec := held()
	rec.ClosedAt = atp(sec(20, 0))
	tmpl := func(text string) *query.Template {
		q, err := query.New("q", text)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	above, p99 := 0.05, 0.5
	defs := []trigger.Definition{
		{Name: "latency", Query: tmpl(`histogram_quantile(0.99, sum by (le) (rate(d{version="{{.Version}}"}[{{.Window}}])))`), Window: 2 * time.Minute, Above: &p99},
		{Name: "error-rate", Query: tmpl(`errors{version="{{.Version}}"}[{{.Window}}]`), Window: time.Minute, Above: &above},
	}
	failing := errors.New("prometheus: 503 Service Unavailable")
	q := &seriesQuerier{series: map[string]func(time.Time) (float64, bool, error){
		`errors{version="v2.4.1"}[1m]`: steady(0.08),
		`errors{version="v2.4.0"}[1m]`: steady(0.004),
		`histogram_quantile(0.99, sum by (le) (rate(d{version="v2.4.1"}[2m])))`: func(t time.Time) (float64, bool, error) {
			if t.Before(at(sec(5, 0))) {
				return 0, false, failing
			}
			return 0.3, true, nil
		},
		`histogram_quantile(0.99, sum by (le) (rate(d{version="v2.4.0"}[2m])))`: steady(0.2),
	}}
	now := at(time.Hour)
	charts := Charts(context.Background(), q, rec, now, defs...)
	if len(charts) != 2 || charts[0].Trigger != "error-rate" || !charts[0].Firing || charts[1].Trigger != "latency" || charts[1].Firing {
		t.Fatalf("charts %v, want the firing error-rate first, then latency", names(charts))
	}
	if !charts[0].To.Equal(rec.ClosedAt.Add(ChartTail)) {
		t.Errorf("a closed incident's chart ends at %s, want %s", charts[0].To, rec.ClosedAt.Add(ChartTail))
	}
	if charts[0].Note != "" {
		t.Errorf("error-rate note %q, want none", charts[0].Note)
	}
	lat := charts[1]
	if lat.Unit != chart.UnitSeconds || lat.Threshold == nil || *lat.Threshold != 0.5 {
		t.Errorf("latency unit %q threshold %v", lat.Unit, lat.Threshold)
	}
	if !strings.Contains(lat.Note, "v2.4.1: the query failed at") || !strings.Contains(lat.Note, "503 Service Unavailable") {
		t.Errorf("latency note %q, want the failed query", lat.Note)
	}
	gaps := 0
	for _, p := range lat.Series[0].Points {
		if math.IsNaN(p.V) != p.T.Before(at(sec(5, 0))) {
			t.Fatalf("point at %s is %g", p.T, p.V)
		}
		if math.IsNaN(p.V) {
			gaps++
		}
	}
	if gaps == 0 || !strings.Contains(lat.Note, fmt.Sprintf("at %d of %d points", gaps, len(lat.Series[0].Points))) {
		t.Errorf("%d gaps, note %q", gaps, lat.Note)
	}
	// The held incident's no-go is a marker.
	held := false
	for _, m := range charts[0].Markers {
		held = held || m.Kind == "held"
	}
	if !held {
		t.Error("no held marker for the no-go")
	}
}

func TestChartsWithoutTimes(t *testing.T) {
	rec := resolved()
	rec.DeployedAt, rec.DetectedAt = time.Time{}, time.Time{}
	if c := Charts(context.Background(), &seriesQuerier{}, rec, at(time.Hour)); len(c) != 0 {
		t.Errorf("%d charts for an incident with no deploy or detection time", len(c))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q := &seriesQuerier{series: map[string]func(time.Time) (float64, bool, error){errorQuery: steady(1), baselineQuery: steady(1)}}
	c := Charts(ctx, q, resolved(), at(time.Hour))
	if len(c) != 1 || !strings.Contains(c[0].Note, "ran out of time") || len(q.asked) != 0 {
		t.Errorf("a cancelled context: %d charts, note %q, %d queries", len(c), c[0].Note, len(q.asked))
	}
}

// A short incident fills most of its chart: a quarter of its length
// before and after, at least 30s.
func TestChartsShortIncident(t *testing.T) {
	rec := resolved()
	rec.DetectedAt = at(4 * time.Second)
	rec.ApprovedAt, rec.RollbackStartedAt, rec.RollbackDoneAt = atp(5*time.Second), atp(5*time.Second), atp(6*time.Second)
	rec.RecoveredAt, rec.ResolvedAt = atp(sec(2, 0)), atp(sec(2, 0))
	q := &seriesQuerier{series: map[string]func(time.Time) (float64, bool, error){
		errorQuery: steady(0.2),
		// The baseline did not serve while the bad version did.
		baselineQuery: func(t time.Time) (float64, bool, error) {
			return 0.004, t.Before(rec.DeployedAt) || !t.Before(*rec.RollbackDoneAt), nil
		},
	}}
	c := Charts(context.Background(), q, rec, at(time.Hour))
	if len(c) != 1 || !c[0].From.Equal(at(-30*time.Second)) || !c[0].To.Equal(at(sec(2, 30))) || c[0].Step != time.Second {
		t.Fatalf("charts %+v", c)
	}
	if !strings.HasPrefix(c[0].Note, "baseline v2.4.0: no data at 6 of 181 points (the version did not serve then") {
		t.Errorf("note %q", c[0].Note)
	}
}

func names(cs []IncidentChart) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Trigger)
	}
	return out
}
