package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/source/embedded"
	"github.com/rollback-guardian/guardian/testenv"
)

// filterConfig is appConfig's service with a trigger reading the
// histogram series named http_request_duration_seconds_%[3]s.
const filterConfig = `global:
  evaluation_interval: 1s
  state_dir: %[1]s/data
services:
  - name: checkout
    scrape: {url: "%[2]s/metrics", interval: 1s}
    deploy: {version_query: 'sum by (version) (rate(http_requests_total[10s]))'}
    watch_window: 10m
    triggers:
      - name: latency
        query: 'count(http_request_duration_seconds_%[3]s)'
        above: 1e9
`

// The embedded source stores only the metric names the service's queries
// select; a reload that adds one keeps the source, and its data, and
// stores the new name from then on.
func TestReloadSwapsScrapeFilter(t *testing.T) {
	f := startWith(t, filterConfig) // the latency trigger reads http_request_duration_seconds_1
	src := func() *service { return f.app.state.Load().services["checkout"] }
	before := src().embedded
	const bucket = "http_request_duration_seconds_bucket"
	if before.Source().Filter().Keeps(bucket) || !before.Source().Filter().Keeps("http_requests_total") {
		t.Fatalf("filter keeps %v, want http_requests_total and not %s", before.Source().Filter().Names(), bucket)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := f.gauge("guardian_embedded_series_dropped"); n == 0 {
			return fmt.Errorf("no series dropped")
		}
		return nil
	}, "the buckets, counts and sums of the histogram and app_build_info to be dropped")
	if v := f.query(before, `count(`+bucket+`)`); v != nil {
		t.Fatalf("count(%s) = %v before the reload, want nothing", bucket, v)
	}

	f.write("bucket")
	if code, body := f.reload(); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	after := src().embedded
	if after != before {
		t.Fatal("the reload replaced the embedded source: its data is lost")
	}
	if !after.Source().Filter().Keeps(bucket) {
		t.Fatalf("filter keeps %v after the reload, want %s too", after.Source().Filter().Names(), bucket)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if v := f.query(after, `count(`+bucket+`)`); v == nil || *v == 0 {
			return fmt.Errorf("count(%s) = %v", bucket, v)
		}
		return nil
	}, "the buckets to be stored after the reload")
}

// query returns q's single value on the embedded source of r at now; nil
// for an empty result.
func (f *fixture) query(r *embedded.Runner, q string) *float64 {
	f.t.Helper()
	res, err := r.Source().Query(context.Background(), q, time.Now())
	if err != nil {
		f.t.Fatalf("query %s: %v", q, err)
	}
	v, ok, err := res.Single()
	if err != nil {
		f.t.Fatalf("query %s: %v", q, err)
	}
	if !ok {
		return nil
	}
	return &v
}
