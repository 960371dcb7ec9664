package report

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

// A latency trigger's verdict shows in the Markdown, HTML and JSON
// reports with its decision, its evidence against 1/alpha, its p-value and
// the buckets queries it sent.
func TestReportShowsLatencyEvidence(t *testing.T) {
	deploy := trigger.Deploy{Service: "checkout", Version: "v2.4.1", Baseline: "v2.4.0", At: t0}
	evalAt := at(sec(3, 5))
	def := definition(t, trigger.Spec{Name: "latency", Latency: &trigger.LatencySpec{
		Buckets: `sum by (le) (increase(http_request_duration_seconds_bucket{app_version="{{.Version}}"}[{{.SinceDeploy}}]))`,
		Alpha:   0.001, MinEffect: trigger.BaselineLimit{Ratio: 1.5, Text: "1.5x"}, BaselineWindow: 30 * time.Minute,
	}})
	tr, err := trigger.New(*def)
	if err != nil {
		t.Fatal(err)
	}
	// The new version is slow: a third of its requests over 0.5 s, against
	// 1% of the baseline's.
	var sent []string
	q := func(_ context.Context, q string, ts time.Time) (source.Result, error) {
		sent = append(sent, q)
		n, slow := 1000.0, 0.01
		switch {
		case strings.Contains(q, `"v2.4.1"`):
			n, slow = 500, 0.33
		case strings.Contains(q, "[30m]"):
			n = 18000
		}
		var v model.Vector
		for _, b := range []struct {
			le    string
			share float64
		}{{"0.1", 0.6 * (1 - slow)}, {"0.5", 1 - slow}, {"2.5", 1 - slow/10}, {"+Inf", 1}} {
			v = append(v, &model.Sample{Metric: model.Metric{"le": model.LabelValue(b.le)}, Value: model.SampleValue(n * b.share)})
		}
		return source.Result{Vector: v}, nil
	}
	v := tr.Eval(context.Background(), evalAt, deploy, q)
	if v.Outcome != trigger.Violated {
		t.Fatalf("outcome %v: %s", v.Outcome, v.Summary())
	}
	rec := resolved()
	rec.Trigger, rec.Evidence = "latency", incident.EvidenceFrom(v)

	const (
		newQ  = `sum by (le) (increase(http_request_duration_seconds_bucket{app_version="v2.4.1"}[3m5s]))`
		preQ  = `sum by (le) (increase(http_request_duration_seconds_bucket{app_version="v2.4.0"}[30m]))`
		liveQ = `sum by (le) (increase(http_request_duration_seconds_bucket{app_version="v2.4.0"}[3m5s]))`
	)
	for _, s := range sent {
		if s != newQ && s != preQ && s != liveQ {
			t.Errorf("the trigger sent %s, which the report would not show", s)
		}
	}
	md := markdown(t, rec)
	ev := section(md, "## Trigger evidence")
	for _, want := range []string{
		"- **p99 since the deploy (histogram's unit):** ",
		"- **Latency test:** regressed: e ",
		" ≥ 1000 (1/alpha), p ",
		"bound 0.5 (baseline p90): 33% (165/500) slower vs 1% (190/19000), inconclusive",
		"Latency buckets of v2.4.1 since the deploy (3m5s), evaluated at 2025-03-28 14:03:05 UTC:\n\n```promql\n" + newQ + "\n```",
		"Latency buckets of v2.4.0 over the 30m0s before the deploy (baseline\\_window), evaluated at the deploy time 2025-03-28 14:00:00 UTC:\n\n```promql\n" + preQ + "\n```",
		"Latency buckets of v2.4.0 since the deploy (3m5s, live), evaluated at 2025-03-28 14:03:05 UTC:\n\n```promql\n" + liveQ + "\n```",
	} {
		if !strings.Contains(ev, want) {
			t.Errorf("the Markdown evidence lacks %q:\n%s", want, ev)
		}
	}
	checkJSONQueries(t, rec, []EvidenceQuery{
		{Name: "buckets", Version: "v2.4.1", RangeSeconds: f64(185), EvaluatedAt: &evalAt, Query: newQ},
		{Name: "pre_deploy_buckets", Version: "v2.4.0", RangeSeconds: f64(1800), EvaluatedAt: &t0, Query: preQ},
		{Name: "baseline_buckets", Version: "v2.4.0", RangeSeconds: f64(185), EvaluatedAt: &evalAt, Query: liveQ},
	})
	js := jsonText(t, rec)
	for _, want := range []string{`"latency": {`, `"decision": "regressed"`, `"threshold": 1000`, `"pre_deploy_query": "` + strings.ReplaceAll(preQ, `"`, `\"`) + `"`} {
		if !strings.Contains(js, want) {
			t.Errorf("the JSON report lacks %s", want)
		}
	}
	h, err := HTML(rec, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Latency test", "regressed: e ", "(1/alpha), p ", "Latency buckets of v2.4.1 since the deploy"} {
		if !strings.Contains(string(h), want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
}
