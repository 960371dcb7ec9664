package report

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

// OpenTelemetry-style count templates, as an adopter with
// http_server_requests_total{app_version, http_response_status_code} and a
// duration histogram writes them.
const (
	otelErrors   = `sum(increase(http_server_requests_total{app_version="{{.Version}}",http_response_status_code=~"5.."}[{{.SinceDeploy}}])) or vector(0)`
	otelRequests = `sum(increase(http_server_requests_total{app_version="{{.Version}}"}[{{.SinceDeploy}}]))`
	// Requests slower than 0.5 s: all of them minus those within the
	// le="0.5" bucket.
	otelSlow = `sum(increase(http_server_request_duration_seconds_count{app_version="{{.Version}}"}[{{.SinceDeploy}}])) - sum(increase(http_server_request_duration_seconds_bucket{app_version="{{.Version}}",le="0.5"}[{{.SinceDeploy}}]))`
	otelP99  = `histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{app_version="{{.Version}}"}[{{.Window}}])))`
	otelVol  = `sum(increase(http_server_requests_total{app_version="{{.Version}}"}[{{.Window}}]))`
)

func definition(t *testing.T, s trigger.Spec) *trigger.Definition {
	t.Helper()
	d, err := trigger.FromSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return &d
}

func sequentialSpec(name, errors string, slower time.Duration) trigger.Spec {
	return trigger.Spec{Name: name, SlowerThan: slower, Sequential: &trigger.SequentialSpec{
		Errors: errors, Requests: otelRequests, Alpha: 0.001,
		MinEffect: trigger.BaselineLimit{Ratio: 1.5, Text: "1.5x"}, BaselineWindow: 30 * time.Minute,
	}}
}

// seqResolved is the resolved fixture judged by a sequential trigger whose
// baseline's ratio was 1%.
func seqResolved(name string) incident.Record {
	r := resolved()
	r.Trigger = name
	r.Impact = incident.Impact{PeakValue: f64(0.05), BaselineValue: f64(0.01)}
	return r
}

func TestMeasureImpactSequential(t *testing.T) {
	// Deployed at t0, rolled back at +9m26s: the counts cover 9m27s.
	const (
		errorsQ = `sum(increase(http_server_requests_total{app_version="v2.4.1",http_response_status_code=~"5.."}[9m27s])) or vector(0)`
		reqQ    = `sum(increase(http_server_requests_total{app_version="v2.4.1"}[9m27s]))`
	)
	def := definition(t, sequentialSpec("errors", otelErrors, 0))
	for _, tc := range []struct {
		name   string
		values map[string]float64
		rec    func() incident.Record
		want   *float64
		note   string
	}{
		// 800 errors in 30,000 requests, where the baseline's 1% would
		// have failed 300: 500 failed because of the deploy.
		{"errors beyond the baseline's ratio", map[string]float64{errorsQ: 800.4, reqQ: 30000}, func() incident.Record { return seqResolved("errors") }, f64(500), ""},
		// The evidence's baseline ratio serves when the impact has none.
		{"the evidence's baseline ratio", map[string]float64{errorsQ: 800, reqQ: 30000}, func() incident.Record {
			r := seqResolved("errors")
			r.Impact.BaselineValue, r.Evidence.BaselineValue = nil, f64(0.02)
			return r
		}, f64(200), ""},
		{"never negative", map[string]float64{errorsQ: 100, reqQ: 30000}, func() incident.Record { return seqResolved("errors") }, f64(0), ""},
		{"no error series: no errors", map[string]float64{reqQ: 30000}, func() incident.Record { return seqResolved("errors") }, f64(0), ""},
		{"no requests", map[string]float64{errorsQ: 800}, func() incident.Record { return seqResolved("errors") }, nil, "found no requests of v2.4.1"},
		{"no baseline", map[string]float64{errorsQ: 800, reqQ: 30000}, func() incident.Record {
			r := seqResolved("errors")
			r.Impact.BaselineValue, r.Evidence.BaselineValue = nil, nil
			return r
		}, nil, "the baseline's share of errors is unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &answers{values: tc.values}
			rec := tc.rec()
			imp := MeasureImpact(context.Background(), rec, def, a.query, 5*time.Second)
			if imp.Kind != KindErrors || imp.SlowRequests != nil || imp.SlowerThanSeconds != nil {
				t.Fatalf("kind %q, slow %v (%v s): an error trigger counts failed requests", imp.Kind, imp.SlowRequests, imp.SlowerThanSeconds)
			}
			if (tc.want == nil) != (imp.FailedRequests == nil) || tc.want != nil && *imp.FailedRequests != *tc.want {
				t.Fatalf("failed requests %v, want %v (asked %q)", numText(imp.FailedRequests), numText(tc.want), a.asked)
			}
			if !strings.Contains(imp.Note, tc.note) || (tc.note == "") != (imp.Note == "") {
				t.Errorf("note %q, want %q", imp.Note, tc.note)
			}
			for _, ts := range a.at {
				if !ts.Equal(*rec.RollbackDoneAt) {
					t.Errorf("queried at %v, want the rollback's end %v", ts, rec.RollbackDoneAt)
				}
			}
			if imp.MeasuredAt == nil || !imp.MeasuredAt.Equal(*rec.RollbackDoneAt) {
				t.Errorf("measured at %v", imp.MeasuredAt)
			}
			if tc.want == nil {
				return
			}
			for _, q := range []string{reqQ, errorsQ} {
				if !contains(imp.Queries, q) {
					t.Errorf("impact queries %q lack %s", imp.Queries, q)
				}
			}
			rec.Impact = imp
			md := markdown(t, rec)
			if want := "- **Estimated failed requests:** " + fmtNum(*tc.want) + "\n"; !strings.Contains(md, want) {
				t.Errorf("report lacks %q:\n%s", want, section(md, "## Impact"))
			}
			if !strings.Contains(md, "```promql\n"+errorsQ+"\n```") {
				t.Errorf("report does not show the errors query it was measured with:\n%s", section(md, "## Impact"))
			}
		})
	}
}

func TestMeasureImpactLatency(t *testing.T) {
	const (
		slowQ = `sum(increase(http_server_request_duration_seconds_count{app_version="v2.4.1"}[9m27s])) - sum(increase(http_server_request_duration_seconds_bucket{app_version="v2.4.1",le="0.5"}[9m27s]))`
		reqQ  = `sum(increase(http_server_requests_total{app_version="v2.4.1"}[9m27s]))`
	)
	t.Run("sequential counting slow requests", func(t *testing.T) {
		def := definition(t, sequentialSpec("slow", otelSlow, 500*time.Millisecond))
		a := &answers{values: map[string]float64{slowQ: 4028, reqQ: 30000}}
		rec := seqResolved("slow")
		imp := MeasureImpact(context.Background(), rec, def, a.query, 5*time.Second)
		// 4028 slow requests, where the baseline's 1% would have been 300.
		if imp.Kind != KindLatency || imp.SlowRequests == nil || *imp.SlowRequests != 3728 || imp.FailedRequests != nil {
			t.Fatalf("kind %q slow %v failed %v (asked %q)", imp.Kind, numText(imp.SlowRequests), numText(imp.FailedRequests), a.asked)
		}
		if imp.SlowerThanSeconds == nil || *imp.SlowerThanSeconds != 0.5 {
			t.Fatalf("slower than %v", imp.SlowerThanSeconds)
		}
		rec.Impact = imp
		md, js := markdown(t, rec), jsonText(t, rec)
		if want := "- **Estimated slow requests (slower than 0.5 s):** 3728\n"; !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, section(md, "## Impact"))
		}
		if strings.Contains(strings.ToLower(md), "failed") || strings.Contains(js, "failed") {
			t.Errorf("a latency incident's report speaks of failed requests:\n%s", md)
		}
		var got struct {
			Incident struct{ Impact incident.Impact } `json:"incident"`
		}
		if err := json.Unmarshal([]byte(js), &got); err != nil {
			t.Fatal(err)
		}
		if i := got.Incident.Impact; i.Kind != "latency" || i.SlowRequests == nil || *i.SlowRequests != 3728 || *i.SlowerThanSeconds != 0.5 {
			t.Errorf("JSON impact %+v", i)
		}
	})
	// A p99 threshold with a volume query once reported n × (p99 −
	// baseline p99) as failed requests. A quantile counts no requests: no
	// estimate, slower_than or not.
	for _, slower := range []time.Duration{0, 500 * time.Millisecond} {
		t.Run("p99 threshold, slower_than "+slower.String(), func(t *testing.T) {
			def := definition(t, trigger.Spec{Name: "p99", Query: otelP99, VolumeQuery: otelVol, Above: f64(0.5), SlowerThan: slower})
			rec := resolved()
			rec.Trigger = "p99"
			rec.Impact = incident.Impact{PeakValue: f64(0.9), BaselineValue: f64(0.2), FailedRequests: f64(3728)}
			a := &answers{values: map[string]float64{
				`sum(increase(http_server_requests_total{app_version="v2.4.1"}[9m27s]))`:                                                 30000,
				`histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{app_version="v2.4.1"}[9m27s])))`: 0.32,
			}}
			imp := MeasureImpact(context.Background(), rec, def, a.query, 5*time.Second)
			if imp.Kind != KindLatency || imp.FailedRequests != nil || imp.SlowRequests != nil || !strings.Contains(imp.Note, "counts no requests") {
				t.Fatalf("kind %q failed %v slow %v note %q", imp.Kind, numText(imp.FailedRequests), numText(imp.SlowRequests), imp.Note)
			}
			rec.Impact = imp
			md := markdown(t, rec)
			label := "Estimated slow requests"
			if slower > 0 {
				label += " (slower than 0.5 s)"
			}
			if want := "- **" + label + ":** unknown: the trigger judges a latency"; !strings.Contains(md, want) {
				t.Errorf("report lacks %q:\n%s", want, section(md, "## Impact"))
			}
			if strings.Contains(strings.ToLower(md), "failed") {
				t.Errorf("a latency incident's report speaks of failed requests:\n%s", section(md, "## Impact"))
			}
		})
	}
}

func TestTriggerKind(t *testing.T) {
	for _, tc := range []struct {
		name string
		def  *trigger.Definition
		want string
	}{
		{"error ratio", definition(t, trigger.Spec{Name: "e", Query: `errors{version="{{.Version}}"}`, Above: f64(0.05)}), KindErrors},
		{"quantile", definition(t, trigger.Spec{Name: "p99", Query: otelP99, Above: f64(0.5)}), KindLatency},
		{"slower_than", definition(t, trigger.Spec{Name: "slow", Query: `slow_ratio{version="{{.Version}}"}`, Above: f64(0.05), SlowerThan: time.Second}), KindLatency},
		{"sequential errors", definition(t, sequentialSpec("e", otelErrors, 0)), KindErrors},
		{"sequential slow requests", definition(t, sequentialSpec("s", otelSlow, 500*time.Millisecond)), KindLatency},
		{"latency test with its own query", definition(t, trigger.Spec{Name: "l", Query: `mean_latency{version="{{.Version}}"}`, Latency: &trigger.LatencySpec{
			Buckets: `sum by (le) (increase(d_bucket{version="{{.Version}}"}[{{.SinceDeploy}}]))`, Alpha: 0.001, MinEffect: trigger.BaselineLimit{Ratio: 1.5}}}), KindLatency},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := TriggerKind(*tc.def); got != tc.want {
				t.Errorf("TriggerKind = %q, want %q", got, tc.want)
			}
		})
	}
}

// asked records the queries a trigger evaluates, answering them by what
// they count.
type asked struct {
	queries []string
	at      []time.Time
}

func (a *asked) query(_ context.Context, q string, ts time.Time) (source.Result, error) {
	a.queries, a.at = append(a.queries, q), append(a.at, ts)
	var v float64
	switch {
	case strings.Contains(q, `[30m]`) && strings.Contains(q, `"5.."`):
		v = 180
	case strings.Contains(q, `[30m]`):
		v = 18000
	case strings.Contains(q, `"5.."`) && strings.Contains(q, `"v2.4.1"`):
		v = 925
	case strings.Contains(q, `"v2.4.1"`):
		v = 18500
	case strings.Contains(q, `"5.."`):
		v = 10
	default:
		v = 1000
	}
	return source.Result{Vector: model.Vector{{Value: model.SampleValue(v)}}}, nil
}

// TestReportShowsEvaluatedQueries runs real triggers and checks that the
// report shows exactly the queries they evaluated, with what each counted
// and when.
func TestReportShowsEvaluatedQueries(t *testing.T) {
	deploy := trigger.Deploy{Service: "checkout", Version: "v2.4.1", Baseline: "v2.4.0", At: t0}
	evalAt := at(sec(3, 5))
	t.Run("sequential", func(t *testing.T) {
		tr, err := trigger.New(*definition(t, sequentialSpec("errors", otelErrors, 0)))
		if err != nil {
			t.Fatal(err)
		}
		a := &asked{}
		if _, _, err := tr.Snapshot(context.Background(), deploy, a.query); err != nil {
			t.Fatal(err)
		}
		v := tr.Eval(context.Background(), evalAt, deploy, a.query)
		rec := resolved()
		rec.Trigger, rec.Evidence = "errors", incident.EvidenceFrom(v)

		const (
			newErrors   = `sum(increase(http_server_requests_total{app_version="v2.4.1",http_response_status_code=~"5.."}[3m5s])) or vector(0)`
			newRequests = `sum(increase(http_server_requests_total{app_version="v2.4.1"}[3m5s]))`
			preErrors   = `sum(increase(http_server_requests_total{app_version="v2.4.0",http_response_status_code=~"5.."}[30m])) or vector(0)`
			preRequests = `sum(increase(http_server_requests_total{app_version="v2.4.0"}[30m]))`
			liveErrors  = `sum(increase(http_server_requests_total{app_version="v2.4.0",http_response_status_code=~"5.."}[3m5s])) or vector(0)`
			liveReqs    = `sum(increase(http_server_requests_total{app_version="v2.4.0"}[3m5s]))`
		)
		want := []struct{ label, query string }{
			{"Errors of v2.4.1 since the deploy (3m5s), evaluated at 2025-03-28 14:03:05 UTC", newErrors},
			{"Requests of v2.4.1 since the deploy (3m5s), evaluated at 2025-03-28 14:03:05 UTC", newRequests},
			{"Errors of v2.4.0 over the 30m0s before the deploy (baseline\\_window), evaluated at the deploy time 2025-03-28 14:00:00 UTC", preErrors},
			{"Requests of v2.4.0 over the 30m0s before the deploy (baseline\\_window), evaluated at the deploy time 2025-03-28 14:00:00 UTC", preRequests},
			{"Errors of v2.4.0 since the deploy (3m5s, live), evaluated at 2025-03-28 14:03:05 UTC", liveErrors},
			{"Requests of v2.4.0 since the deploy (3m5s, live), evaluated at 2025-03-28 14:03:05 UTC", liveReqs},
		}
		// Every query the trigger sent is shown, and nothing else.
		var sent []string
		for _, w := range want {
			sent = append(sent, w.query)
		}
		for i, q := range a.queries {
			if !contains(sent, q) {
				t.Errorf("the trigger sent %s at %v, which the report would not show", q, a.at[i])
			}
		}
		md := markdown(t, rec)
		ev := section(md, "## Trigger evidence")
		for _, w := range want {
			if block := w.label + ":\n\n```promql\n" + w.query + "\n```\n"; !strings.Contains(ev, block) {
				t.Errorf("evidence lacks\n%s\n%s", block, ev)
			}
		}
		if strings.Contains(ev, "Baseline query") {
			t.Errorf("a sequential trigger's evidence shows a single baseline query:\n%s", ev)
		}
		checkJSONQueries(t, rec, []EvidenceQuery{
			{Name: "errors", Version: "v2.4.1", RangeSeconds: f64(185), EvaluatedAt: &evalAt, Query: newErrors},
			{Name: "requests", Version: "v2.4.1", RangeSeconds: f64(185), EvaluatedAt: &evalAt, Query: newRequests},
			{Name: "pre_deploy_errors", Version: "v2.4.0", RangeSeconds: f64(1800), EvaluatedAt: &t0, Query: preErrors},
			{Name: "pre_deploy_requests", Version: "v2.4.0", RangeSeconds: f64(1800), EvaluatedAt: &t0, Query: preRequests},
			{Name: "baseline_errors", Version: "v2.4.0", RangeSeconds: f64(185), EvaluatedAt: &evalAt, Query: liveErrors},
			{Name: "baseline_requests", Version: "v2.4.0", RangeSeconds: f64(185), EvaluatedAt: &evalAt, Query: liveReqs},
		})
	})
	t.Run("threshold, baseline before the deploy", func(t *testing.T) {
		def := definition(t, trigger.Spec{
			Name: "error-rate", Query: `errors{app_version="{{.Version}}"}[{{.Window}}]`, VolumeQuery: `requests{app_version="{{.Version}}"}[{{.Window}}]`,
			Above: f64(0.05), AboveBaseline: &trigger.BaselineLimit{Ratio: 2, Text: "2x"}, MinRequests: 10,
		})
		tr, err := trigger.New(*def)
		if err != nil {
			t.Fatal(err)
		}
		// The baseline no longer serves: its value at the deploy is used.
		a := &answers{values: map[string]float64{
			`errors{app_version="v2.4.1"}[1m]`:   0.079,
			`requests{app_version="v2.4.1"}[1m]`: 1534,
		}}
		snap := func(ctx context.Context, q string, ts time.Time) (source.Result, error) {
			if q == `errors{app_version="v2.4.0"}[1m]` && ts.Equal(t0) {
				return source.Result{Vector: model.Vector{{Value: 0.004}}}, nil
			}
			return a.query(ctx, q, ts)
		}
		v := tr.Eval(context.Background(), evalAt, deploy, snap)
		if v.Evidence.BaselineMode != trigger.BaselinePreDeploy {
			t.Fatalf("baseline mode %v", v.Evidence.BaselineMode)
		}
		rec := resolved()
		rec.Evidence = incident.EvidenceFrom(v)
		ev := section(markdown(t, rec), "## Trigger evidence")
		for _, block := range []string{
			"Query (v2.4.1), evaluated at 2025-03-28 14:03:05 UTC:\n\n```promql\nerrors{app_version=\"v2.4.1\"}[1m]\n```\n",
			"Baseline query (v2.4.0), evaluated at the deploy time 2025-03-28 14:00:00 UTC:\n\n```promql\nerrors{app_version=\"v2.4.0\"}[1m]\n```\n",
			"Volume query (sample size of v2.4.1), evaluated at 2025-03-28 14:03:05 UTC:\n\n```promql\nrequests{app_version=\"v2.4.1\"}[1m]\n```\n",
		} {
			if !strings.Contains(ev, block) {
				t.Errorf("evidence lacks\n%s\n%s", block, ev)
			}
		}
		checkJSONQueries(t, rec, []EvidenceQuery{
			{Name: "value", Version: "v2.4.1", EvaluatedAt: &evalAt, Query: `errors{app_version="v2.4.1"}[1m]`},
			{Name: "baseline", Version: "v2.4.0", EvaluatedAt: &t0, Query: `errors{app_version="v2.4.0"}[1m]`},
			{Name: "volume", Version: "v2.4.1", EvaluatedAt: &evalAt, Query: `requests{app_version="v2.4.1"}[1m]`},
		})
	})
}

// checkJSONQueries checks the JSON report's evidence_queries.
func checkJSONQueries(t *testing.T, rec incident.Record, want []EvidenceQuery) {
	t.Helper()
	var got struct {
		EvidenceQueries []EvidenceQuery `json:"evidence_queries"`
	}
	if err := json.Unmarshal([]byte(jsonText(t, rec)), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.EvidenceQueries) != len(want) {
		t.Fatalf("JSON evidence_queries %+v, want %d", got.EvidenceQueries, len(want))
	}
	for i, g := range got.EvidenceQueries {
		w := want[i]
		if g.Name != w.Name || g.Version != w.Version || g.Query != w.Query || numText(g.RangeSeconds) != numText(w.RangeSeconds) ||
			(g.EvaluatedAt == nil) != (w.EvaluatedAt == nil) || g.EvaluatedAt != nil && !g.EvaluatedAt.Equal(*w.EvaluatedAt) {
			t.Errorf("JSON query %d: %+v\nwant %+v", i, g, w)
		}
	}
}

func markdown(t *testing.T, r incident.Record) string {
	t.Helper()
	md, err := Markdown(r, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	return string(md)
}

func jsonText(t *testing.T, r incident.Record) string {
	t.Helper()
	js, err := JSON(r, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

// section is the Markdown from heading to the next "## " heading.
func section(md, heading string) string {
	i := strings.Index(md, heading+"\n")
	if i < 0 {
		return ""
	}
	s := md[i+len(heading)+1:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func numText(f *float64) string {
	if f == nil {
		return "nil"
	}
	return fmtNum(*f)
}
