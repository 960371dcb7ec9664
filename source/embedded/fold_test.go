package embedded

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
)

// foldService reads its request counter only through sums of rates and
// increases, by version and by a fixed class of code, and its latency
// histogram by le: the method label, and which 5xx, are never told apart.
var foldService = config.Service{
	Name:   "checkout",
	Deploy: config.Deploy{VersionQuery: `sum by (version) (rate(http_requests_total{service="{{.Service}}"}[1m]))`},
	Triggers: []config.Trigger{
		{Name: "errors", Query: `(sum(rate(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.Window}}])) or vector(0)) / sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))`,
			VolumeQuery: `sum(increase(http_requests_total{version="{{.Version}}"}[{{.Window}}]))`},
		{Name: "latency", Query: `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{version="{{.Version}}"}[{{.Window}}])))`},
		{Name: "seq", Sequential: &config.Sequential{
			Errors:   `sum(increase(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.SinceDeploy}}]))`,
			Requests: `sum(increase(http_requests_total{version="{{.Version}}"}[{{.SinceDeploy}}]))`,
		}},
	},
}

func TestFilterForFolds(t *testing.T) {
	f, err := FilterFor(foldService)
	if err != nil {
		t.Fatal(err)
	}
	req := f.foldOf("http_requests_total")
	if req == nil {
		t.Fatal("http_requests_total not folded")
	}
	if got := slices.Sorted(mapKeys(req.keep)); !slices.Equal(got, []string{"version"}) {
		t.Errorf("http_requests_total keeps %v, want [version] (grouped by, and matched with the deploy's value)", got)
	}
	if got := slices.Sorted(mapKeys(req.classes)); !slices.Equal(got, []string{"code", "service"}) {
		t.Errorf("http_requests_total classes %v, want [code service] (fixed matchers)", got)
	}
	lat := f.foldOf("http_request_duration_seconds_bucket")
	if lat == nil {
		t.Fatal("latency buckets not folded")
	}
	if got := slices.Sorted(mapKeys(lat.keep)); !slices.Equal(got, []string{"le", "version"}) {
		t.Errorf("latency buckets keep %v, want [le version]", got)
	}

	for _, tc := range []struct{ name, query string }{
		{"read raw", `max(http_requests_total{version="{{.Version}}"})`},
		{"summed without", `sum without (method) (rate(http_requests_total[1m]))`},
		{"counted", `count(rate(http_requests_total[1m]))`},
		{"a subquery", `sum(rate(http_requests_total[1m:10s]))`},
		{"a rate not summed", `rate(http_requests_total{code="500"}[1m]) > 0`},
		{"a binary operation under the sum", `sum(rate(http_requests_total[1m]) * 2)`},
		{"irate", `sum(irate(http_requests_total[1m]))`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := foldService
			sc.Triggers = append(slices.Clone(sc.Triggers), config.Trigger{Name: "other", Query: tc.query})
			f, err := FilterFor(sc)
			if err != nil {
				t.Fatal(err)
			}
			if fd := f.foldOf("http_requests_total"); fd != nil {
				t.Errorf("http_requests_total folded (%v) although %s reads it otherwise", fd, tc.query)
			}
			if f.foldOf("http_request_duration_seconds_bucket") == nil {
				t.Error("latency buckets no longer folded: only the counter is read otherwise")
			}
		})
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// foldTarget serves, at scrape k (1 s apart), a request counter by
// version, method and code, and a latency histogram by version and
// method, at different rates; one counter resets at scrape 40, a 503
// appears at scrape 3.
type foldTarget struct{ k atomic.Int64 }

func (ft *foldTarget) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	k := float64(ft.k.Load())
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# TYPE http_requests_total counter")
	for vi, v := range []string{"v1", "v2"} {
		for mi, m := range []string{"GET", "POST", "PUT"} {
			for ci, c := range []string{"200", "404", "500", "503"} {
				if c == "503" && k < 3 {
					continue
				}
				n := math.Floor(k * float64(1+vi) * float64(3-mi) * float64(7-ci*2) / 3)
				if v == "v2" && m == "PUT" && c == "500" && k >= 40 {
					n = math.Floor((k - 40) * 2) // restarted
				}
				fmt.Fprintf(w, "http_requests_total{service=\"checkout\",version=%q,method=%q,code=%q} %g\n", v, m, c, n)
			}
		}
	}
	fmt.Fprintln(w, "# TYPE http_request_duration_seconds histogram")
	for vi, v := range []string{"v1", "v2"} {
		for mi, m := range []string{"GET", "POST"} {
			total := k * float64(10+mi)
			for _, le := range []float64{0.1, 0.5, 1} {
				share := 1 - math.Exp(-le/(0.1*float64(1+vi+mi)))
				fmt.Fprintf(w, "http_request_duration_seconds_bucket{version=%q,method=%q,le=\"%g\"} %g\n", v, m, le, math.Floor(total*share))
			}
			fmt.Fprintf(w, "http_request_duration_seconds_bucket{version=%q,method=%q,le=\"+Inf\"} %g\n", v, m, total)
		}
	}
	_, _ = io.WriteString(w, "process_cpu_seconds_total 12\n")
}

// TestFoldedSumsAgree scrapes one target with two sources, one folding
// as the service's queries allow, one keeping the series as scraped, and
// checks that the queries of the kind folds are made for agree, through a
// counter reset.
func TestFoldedSumsAgree(t *testing.T) {
	ft := &foldTarget{}
	srv := httptest.NewServer(ft)
	t.Cleanup(srv.Close)
	folding, err := FilterFor(foldService)
	if err != nil {
		t.Fatal(err)
	}
	plain := NewFilter(folding.Names()...)
	clk := &clock{t: start}
	newSrc := func(f *Filter) *Source {
		s, err := New(config.Scrape{URL: srv.URL}, Options{Now: clk.Now, Filter: f}, zap.NewNop(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	folded, asScraped := newSrc(folding), newSrc(plain)

	queries := []string{
		`sum(rate(http_requests_total{version="v2",code=~"5.."}[30s]))`,
		`sum by (version) (rate(http_requests_total[30s]))`,
		`sum(increase(http_requests_total{version="v2"}[30s]))`,
		`sum(increase(http_requests_total{version="v2",code=~"5.."}[45s]))`,
		`histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket{version="v2"}[30s])))`,
		`sum by (le) (increase(http_request_duration_seconds_bucket{version="v1"}[20s]))`,
	}
	compared := 0
	for k := range 70 {
		ft.k.Store(int64(k))
		clk.Set(start.Add(time.Duration(k) * time.Second))
		for _, s := range []*Source{folded, asScraped} {
			if err := s.ScrapeOnce(context.Background()); err != nil {
				t.Fatalf("scrape %d: %v", k, err)
			}
		}
		// Compared while the 503's first sample is out of every window and
		// the reset inside the 30s and 45s ones, not at their start: PromQL
		// does not extrapolate a counter's increase back past zero, which
		// a series starting (or restarting) at a window's first sample is
		// near; its sum is. See fold.
		if k < 50 || k > 67 {
			continue
		}
		for _, q := range queries {
			want, err := asScraped.Query(context.Background(), q, clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			got, err := folded.Query(context.Background(), q, clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Vector) != len(want.Vector) || len(want.Vector) == 0 {
				t.Fatalf("scrape %d: %s folded = %v, as scraped = %v", k, q, got.Vector, want.Vector)
			}
			for i := range want.Vector {
				w, g := float64(want.Vector[i].Value), float64(got.Vector[i].Value)
				if !want.Vector[i].Metric.Equal(got.Vector[i].Metric) || math.Abs(g-w) > 1e-9*math.Max(1, math.Abs(w)) {
					t.Errorf("scrape %d: %s folded = %v, as scraped = %v", k, q, got.Vector[i], want.Vector[i])
				}
			}
			compared++
		}
	}
	if compared == 0 {
		t.Fatal("nothing compared")
	}
	// 2 versions x 2 classes of code, 2 versions x 4 buckets, and
	// Guardian's 3, against 2 x 3 x 4 and 2 x 2 x 4 and 3.
	if got, want := folded.store.len(), 4+8+3; got != want {
		t.Errorf("folded series = %d, want %d", got, want)
	}
	if got, want := asScraped.store.len(), 24+16+3; got != want {
		t.Errorf("series as scraped = %d, want %d", got, want)
	}
}

// TestRefoldOnReload: a reload whose queries group by a label the fold
// dropped (SetFilter) stores the series by that label from the next
// scrape on, and ends the folded ones with stale markers.
func TestRefoldOnReload(t *testing.T) {
	ft := &foldTarget{}
	srv := httptest.NewServer(ft)
	t.Cleanup(srv.Close)
	before, err := FilterFor(foldService)
	if err != nil {
		t.Fatal(err)
	}
	byMethod := foldService
	byMethod.Triggers = append(slices.Clone(byMethod.Triggers), config.Trigger{Name: "by-method",
		Query: `max(sum by (method) (rate(http_requests_total{version="{{.Version}}"}[{{.Window}}])))`})
	after, err := FilterFor(byMethod)
	if err != nil {
		t.Fatal(err)
	}
	if fd := after.foldOf("http_requests_total"); fd == nil || !slices.Contains(slices.Collect(mapKeys(fd.keep)), "method") {
		t.Fatalf("the new filter's fold %v does not keep method", fd)
	}
	clk := &clock{t: start}
	s, err := New(config.Scrape{URL: srv.URL}, Options{Now: clk.Now, Filter: before}, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	scrape := func(k int) {
		t.Helper()
		ft.k.Store(int64(k))
		clk.Set(start.Add(time.Duration(k) * time.Second))
		if err := s.ScrapeOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	count := func(q string) int {
		t.Helper()
		res, err := s.Query(context.Background(), q, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return len(res.Vector)
	}
	for k := range 5 {
		scrape(k)
	}
	if got := count(`http_requests_total`); got != 4 {
		t.Fatalf("series before the reload = %d, want 4 (2 versions x 2 classes of code)", got)
	}
	s.SetFilter(after)
	for k := 5; k < 10; k++ {
		scrape(k)
	}
	// The folded series ended at the reload's scrape; by method: 2
	// versions x 3 methods x 2 classes.
	if got := count(`http_requests_total`); got != 12 {
		t.Errorf("series after the reload = %d, want 12", got)
	}
	if got := count(`sum by (method) (rate(http_requests_total{version="v2"}[3s]))`); got != 3 {
		t.Errorf("rates by method after the reload = %d, want 3", got)
	}
}
