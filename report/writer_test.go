package report

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

func impactDefinition(t *testing.T) *trigger.Definition {
	t.Helper()
	q, err := query.New("query", `errors{version="{{.Version}}"}[{{.Window}}]`)
	if err != nil {
		t.Fatal(err)
	}
	v, err := query.New("volume", `requests{version="{{.Version}}"}[{{.Window}}]`)
	if err != nil {
		t.Fatal(err)
	}
	return &trigger.Definition{Name: "error-rate", Query: q, VolumeQuery: v, Window: time.Minute}
}

// answers serves canned values by query text and records what was asked.
type answers struct {
	values map[string]float64
	asked  []string
	at     []time.Time
}

func (a *answers) query(_ context.Context, q string, ts time.Time) (source.Result, error) {
	a.asked, a.at = append(a.asked, q), append(a.at, ts)
	if q == "fail" {
		return source.Result{}, errors.New("unavailable")
	}
	v, ok := a.values[q]
	if !ok {
		return source.Result{}, nil
	}
	return source.Result{Vector: model.Vector{{Value: model.SampleValue(v)}}}, nil
}

func TestMeasureImpact(t *testing.T) {
	rec := resolved() // deployed at t0, rolled back at +6m (see the fixture)
	rec.Impact = incident.Impact{PeakValue: f64(0.1), BaselineValue: f64(0.004)}
	span := rec.RollbackDoneAt.Sub(rec.DeployedAt).Round(time.Second) + time.Second
	spanText := model.Duration(span).String()
	a := &answers{values: map[string]float64{
		`max_over_time((errors{version="v2.4.1"}[1m])[` + spanText + `:5s])`: 0.25,
		`requests{version="v2.4.1"}[` + spanText + `]`:                       10000,
		`errors{version="v2.4.1"}[` + spanText + `]`:                         0.054,
	}}
	imp := MeasureImpact(context.Background(), rec, impactDefinition(t), a.query, 5*time.Second)
	if imp.PeakValue == nil || *imp.PeakValue != 0.25 {
		t.Fatalf("peak %v (asked %q)", imp.PeakValue, a.asked)
	}
	// 10,000 requests × (5.4 % − 0.4 %) = 500 failed because of the deploy.
	if imp.FailedRequests == nil || *imp.FailedRequests != 500 {
		t.Fatalf("failed requests %v", imp.FailedRequests)
	}
	for _, ts := range a.at {
		if !ts.Equal(*rec.RollbackDoneAt) {
			t.Fatalf("queried at %v, want the rollback's end %v", ts, rec.RollbackDoneAt)
		}
	}
	// What cannot be measured keeps the record's values.
	none := MeasureImpact(context.Background(), rec, impactDefinition(t), (&answers{}).query, 5*time.Second)
	if *none.PeakValue != 0.1 || none.FailedRequests != nil {
		t.Fatalf("without data: %+v", none)
	}
	if got := MeasureImpact(context.Background(), rec, nil, a.query, 0); *got.PeakValue != 0.1 {
		t.Fatalf("without a definition: %+v", got)
	}
}

func TestWriterReport(t *testing.T) {
	dir := t.TempDir()
	pm := postmortem()
	now := at(time.Hour)
	w := Writer{Dir: dir, Postmortem: &pm, Now: func() time.Time { return now },
		Impact: func(_ context.Context, r incident.Record) incident.Impact {
			r.Impact.FailedRequests = f64(42)
			return r.Impact
		}}
	rec := resolved()
	res, err := w.Report(context.Background(), rec, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Markdown != filepath.Join(dir, "incident-12.md") || res.HTML != filepath.Join(dir, "incident-12.html") || res.Invite != filepath.Join(dir, "incident-12-postmortem.ics") ||
		res.PostmortemAt.IsZero() || res.PostmortemZone != pm.TimeZone || *res.Impact.FailedRequests != 42 {
		t.Fatalf("result %+v", res)
	}
	md, err := os.ReadFile(res.Markdown)
	if err != nil {
		t.Fatal(err)
	}
	// The report shows the entries that record it.
	for _, want := range []string{"| " + string(event.ReportWritten) + " |", "| " + string(event.PostmortemScheduled) + " |", "42"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// Written again (a restart before the result was recorded): the same
	// four files, replaced, nothing else.
	if _, err := w.Report(context.Background(), rec, true); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"incident-12-postmortem.ics", "incident-12.html", "incident-12.json", "incident-12.md"}) {
		t.Fatalf("files %v", names)
	}
	// No post-mortem asked for, or none configured: no invite.
	for _, tc := range []struct {
		w  Writer
		pm bool
	}{{Writer{Dir: t.TempDir(), Postmortem: &pm}, false}, {Writer{Dir: t.TempDir()}, true}} {
		res, err := tc.w.Report(context.Background(), rec, tc.pm)
		if err != nil || res.Invite != "" {
			t.Fatalf("invite %q, %v", res.Invite, err)
		}
		if _, err := os.Stat(filepath.Join(tc.w.Dir, "incident-12-postmortem.ics")); !os.IsNotExist(err) {
			t.Fatalf("an invite was written: %v", err)
		}
	}
}
