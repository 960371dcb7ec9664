package app

import (
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/trigger"
)

// A trigger as written in YAML, with config's defaults, becomes the same
// trigger definition: limits, durations, policies, the sequential test's
// defaults and the queries as written.
func TestTriggerSpec(t *testing.T) {
	const (
		errorsT   = `sum(increase(http_requests_total{service="{{.Service}}",version="{{.Version}}",code=~"5.."}[{{.SinceDeploy}}]))`
		requestsT = `sum(increase(http_requests_total{service="{{.Service}}",version="{{.Version}}"}[{{.SinceDeploy}}]))`
		valueT    = `sum(rate(errors{version="{{.Version}}"}[{{.Window}}]))`
		volumeT   = `sum(increase(requests{version="{{.Version}}"}[{{.Window}}]))`
	)
	yml := `
services:
  - name: checkout
    scrape: { url: http://127.0.0.1:8080/metrics }
    deploy: { version_query: 'sum by (v) (up)', version_label: v, min_traffic: 2 }
    triggers:
      - name: error-rate
        query: '` + valueT + `'
        above: 0.05
        above_baseline: 2x
        for: 30s
        min_requests: 50
        volume_query: '` + volumeT + `'
        on_no_data: fire
      - name: latency
        query: '` + valueT + `'
        window: 2m
        below: 0.5
        above_baseline: "+0.02"
        on_query_error: fire
        severity: SEV-2
        slower_than: 500ms
      - name: errors
        above: 0.05
        sequential:
          errors: '` + errorsT + `'
          requests: '` + requestsT + `'
      - name: errors-delta
        window: 2m
        sequential:
          errors: '` + errorsT + `'
          requests: '` + requestsT + `'
          alpha: 0.01
          min_effect: "+0.01"
          baseline_window: 1h
`
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.Services[0]
	if got := detectorConfig(sc.Deploy); got.VersionQuery != "sum by (v) (up)" || got.VersionLabel != "v" || got.MinTraffic != 2 {
		t.Errorf("detector config %+v", got)
	}
	defs := map[string]trigger.Definition{}
	for _, tc := range sc.Triggers {
		d, err := trigger.FromSpec(triggerSpec(tc))
		if err != nil {
			t.Fatalf("%s: %v", tc.Name, err)
		}
		defs[d.Name] = d
	}

	er := defs["error-rate"]
	if er.Window != time.Minute || er.For != 30*time.Second || *er.Above != 0.05 || er.Below != nil ||
		er.AboveBaseline == nil || *er.AboveBaseline != (trigger.BaselineLimit{Ratio: 2, Text: "2x"}) ||
		er.MinRequests != 50 || er.OnNoData != trigger.PolicyFire || er.OnQueryError != trigger.PolicyIgnore ||
		er.Severity != config.DefaultSeverity || er.Sequential != nil {
		t.Errorf("error-rate: %+v", er)
	}
	if er.Query.Text() != valueT || er.VolumeQuery.Text() != volumeT {
		t.Errorf("error-rate: queries %q, %q not kept as written", er.Query.Text(), er.VolumeQuery.Text())
	}

	lat := defs["latency"]
	if lat.Window != 2*time.Minute || *lat.Below != 0.5 || lat.Above != nil ||
		*lat.AboveBaseline != (trigger.BaselineLimit{Delta: 0.02, Text: "+0.02"}) ||
		lat.OnNoData != trigger.PolicyIgnore || lat.OnQueryError != trigger.PolicyFire || lat.Severity != "SEV-2" || lat.VolumeQuery != nil ||
		lat.SlowerThan != 500*time.Millisecond || er.SlowerThan != 0 {
		t.Errorf("latency: %+v", lat)
	}

	for _, tc := range []struct {
		name   string
		alpha  float64
		effect trigger.BaselineLimit
		window time.Duration
		limit  bool
		query  string
	}{
		{"errors", 0.001, trigger.BaselineLimit{Ratio: 1.5, Text: "1.5x"}, 30 * time.Minute, true,
			`((sum(increase(http_requests_total{service="checkout",version="v2",code=~"5.."}[1m]))) or vector(0)) / (sum(increase(http_requests_total{service="checkout",version="v2"}[1m])))`},
		{"errors-delta", 0.01, trigger.BaselineLimit{Delta: 0.01, Text: "+0.01"}, time.Hour, false,
			`((sum(increase(http_requests_total{service="checkout",version="v2",code=~"5.."}[2m]))) or vector(0)) / (sum(increase(http_requests_total{service="checkout",version="v2"}[2m])))`},
	} {
		d := defs[tc.name]
		s := d.Sequential
		if s == nil {
			t.Errorf("%s: no sequential test", tc.name)
			continue
		}
		if s.Alpha != tc.alpha || s.MinEffect != tc.effect || s.BaselineWindow != tc.window || (d.Above != nil) != tc.limit {
			t.Errorf("%s: alpha %g effect %+v window %s limit %v", tc.name, s.Alpha, s.MinEffect, s.BaselineWindow, d.Above)
		}
		if s.Errors.Text() != errorsT || s.Requests.Text() != requestsT {
			t.Errorf("%s: count queries not kept as written", tc.name)
		}
		q, err := d.Query.Render(query.Vars{Service: "checkout", Version: "v2", Window: d.Window})
		if err != nil || q != tc.query {
			t.Errorf("%s: derived query %q (%v), want %q", tc.name, q, err, tc.query)
		}
	}

	// A configured trigger that cannot be judged fails with its name.
	bad := sc.Triggers[0]
	bad.VolumeQuery = ""
	if _, err := trigger.FromSpec(triggerSpec(bad)); err == nil || !strings.Contains(err.Error(), `trigger "error-rate": min_requests needs a volume_query`) {
		t.Errorf("err %v", err)
	}
}
