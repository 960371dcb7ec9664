package embedded

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
)

func TestFilterFor(t *testing.T) {
	for _, tc := range []struct {
		name string
		sc   config.Service
		want []string // nil: keep everything
	}{
		{
			name: "every query of the service",
			sc: config.Service{
				Name:   "checkout",
				Deploy: config.Deploy{VersionQuery: `sum by (version) (rate(build_requests_total{service="{{.Service}}"}[1m]))`},
				Triggers: []config.Trigger{
					{Name: "errors", Query: `sum(rate(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.Window}}])) / sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))`,
						VolumeQuery: `sum(increase(http_served_total{version="{{.Version}}"}[{{.Window}}]))`},
					{Name: "latency", Query: `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{version="{{.Version}}"}[{{.Window}}])))`},
					{Name: "seq", Sequential: &config.Sequential{
						Errors:   `sum(increase({__name__="grpc_errors_total",version="{{.Version}}"}[{{.SinceDeploy}}])) or vector(0)`,
						Requests: `sum(increase(grpc_requests_total{version="{{.Version}}"}[{{.SinceDeploy}}]))`,
					}},
					{Name: "lat", Latency: &config.Latency{
						Buckets: `sum by (le) (increase(grpc_duration_seconds_bucket{version="{{.Version}}"}[{{.SinceDeploy}}]))`,
					}},
				},
			},
			want: []string{"build_requests_total", "grpc_duration_seconds_bucket", "grpc_errors_total", "grpc_requests_total", "http_request_duration_seconds_bucket", "http_requests_total", "http_served_total"},
		},
		{
			name: "a selector by labels only keeps everything",
			sc: config.Service{Name: "a", Triggers: []config.Trigger{
				{Name: "t", Query: `sum(rate(http_requests_total[1m])) / count({job="a"})`},
			}},
		},
		{
			name: "a regular expression on the name keeps everything",
			sc: config.Service{Name: "a", Triggers: []config.Trigger{
				{Name: "t", Query: `sum(rate({__name__=~"http_.*"}[1m]))`},
			}},
		},
		{
			name: "no query keeps only Guardian's own series",
			sc:   config.Service{Name: "a"},
			want: []string{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := FilterFor(tc.sc)
			if err != nil {
				t.Fatalf("FilterFor: %v", err)
			}
			if tc.want == nil {
				if f != nil {
					t.Fatalf("FilterFor = %v, want nil (keep everything)", f.Names())
				}
				return
			}
			if f == nil {
				t.Fatalf("FilterFor = nil (keep everything), want %v", tc.want)
			}
			if got := f.Names(); !slices.Equal(got, tc.want) {
				t.Errorf("FilterFor = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFilterForRejectsBadQuery(t *testing.T) {
	sc := config.Service{Name: "a", Triggers: []config.Trigger{{Name: "t", Query: `sum(rate(x[1m]`}}}
	if f, err := FilterFor(sc); err == nil {
		t.Fatalf("FilterFor = %v, want an error", f.Names())
	}
}

func TestMetricNameOf(t *testing.T) {
	for _, tc := range []struct {
		series string
		name   string // "": must parse the labels
	}{
		{`http_requests_total{code="200"}`, "http_requests_total"},
		{`up`, "up"},
		{`go_goroutines `, "go_goroutines"},
		{"rpc_total\xffcode\xff200", "rpc_total"},
		{"\xffA\xffx\xffrpc_total", ""},
		{`{"my.metric",code="200"}`, ""},
		{`my.metric{code="200"}`, ""},
		{`9lives`, ""},
	} {
		name, ok := metricNameOf([]byte(tc.series))
		if got := string(name); ok != (tc.name != "") || got != tc.name {
			t.Errorf("metricNameOf(%q) = %q, %v; want %q", tc.series, got, ok, tc.name)
		}
	}
}

// TestFilterDropsUnusedNames scrapes a real client_golang target exposing
// requests, latencies and the Go collector's runtime series with a filter
// keeping the requests only.
func TestFilterDropsUnusedNames(t *testing.T) {
	for _, openMetrics := range []bool{false, true} {
		tg := newTarget(t, openMetrics)
		tg.serve()
		reg := prometheus.NewRegistry()
		clk := &clock{t: start}
		s := newSource(t, tg.srv.URL, clk, Options{Metrics: NewMetrics(reg), Target: "a", Filter: NewFilter("http_requests_total")}, zap.NewNop())
		if err := s.ScrapeOnce(context.Background()); err != nil {
			t.Fatalf("scrape: %v", err)
		}
		if n := len(query(t, s, `http_requests_total`, start)); n != 3 {
			t.Errorf("openmetrics %v: http_requests_total has %d series, want 3", openMetrics, n)
		}
		for _, q := range []string{`http_request_duration_seconds_bucket`, `go_goroutines`, `{__name__=~"go_.*|http_request_duration.*"}`} {
			if v := query(t, s, q, start); len(v) != 0 {
				t.Errorf("openmetrics %v: %s = %v, want nothing (dropped)", openMetrics, q, v)
			}
		}
		// Guardian's own series are kept.
		if up := single(t, s, `up`, start); up != 1 {
			t.Errorf("up = %v, want 1", up)
		}
		scraped := single(t, s, `scrape_samples_scraped`, start)
		dropped := float64(s.stats.dropped.Load())
		if dropped < 20 || dropped != scraped-3 {
			t.Errorf("openmetrics %v: guardian_embedded_series_dropped = %v, want every series but the 3 requests (%v scraped)", openMetrics, dropped, scraped)
		}

		// Widening the filter keeps the latencies from the next scrape on.
		s.SetFilter(NewFilter("http_requests_total", "http_request_duration_seconds_bucket"))
		next := start.Add(time.Second)
		clk.Set(next)
		if err := s.ScrapeOnce(context.Background()); err != nil {
			t.Fatalf("scrape: %v", err)
		}
		if n := len(query(t, s, `http_request_duration_seconds_bucket`, next)); n != 2*13 {
			t.Errorf("openmetrics %v: after widening, %d bucket series, want 26", openMetrics, n)
		}
		// Narrowing it ends the requests at once (stale markers).
		s.SetFilter(NewFilter("http_request_duration_seconds_bucket"))
		last := next.Add(time.Second)
		clk.Set(last)
		if err := s.ScrapeOnce(context.Background()); err != nil {
			t.Fatalf("scrape: %v", err)
		}
		if v := query(t, s, `http_requests_total`, last); len(v) != 0 {
			t.Errorf("openmetrics %v: after narrowing, http_requests_total = %v, want nothing", openMetrics, v)
		}
	}
}
