package embedded

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/source"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start is the synthetic time of the first scrape.
var start = time.Unix(1_700_000_000, 0).UTC()

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// target is a service exposing a real client_golang registry over HTTP.
type target struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	srv      *httptest.Server

	status      atomic.Int32 // non-zero: answer with this status instead
	contentType atomic.Value // of the latest metrics response
}

func newTarget(t *testing.T, openMetrics bool) *target {
	t.Helper()
	tg := &target{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "Requests served.",
		}, []string{"version", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Request latency.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"version"}),
	}
	// client_golang's Go collector, whose OpenMetrics output has a gauge and
	// a counter sharing the family name go_memstats_alloc_bytes.
	tg.reg.MustRegister(tg.requests, tg.latency, collectors.NewGoCollector())
	// With openMetrics the target offers OpenMetrics, with _created series,
	// besides the text format, and Guardian's Accept header prefers it;
	// without, it speaks the text format only.
	h := promhttp.HandlerFor(tg.reg, promhttp.HandlerOpts{
		EnableOpenMetrics:                   openMetrics,
		EnableOpenMetricsTextCreatedSamples: openMetrics,
	})
	tg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code := tg.status.Load(); code != 0 {
			http.Error(w, "failing on purpose", int(code))
			return
		}
		h.ServeHTTP(w, r)
		tg.contentType.Store(w.Header().Get("Content-Type"))
	}))
	t.Cleanup(tg.srv.Close)
	return tg
}

// serve simulates one second of traffic: v2 fails 10% of its requests and
// is slow for 10% of them; v1 is healthy.
func (tg *target) serve() {
	tg.requests.WithLabelValues("v2", "200").Add(9)
	tg.requests.WithLabelValues("v2", "500").Add(1)
	tg.requests.WithLabelValues("v1", "200").Add(10)
	for i := 0; i < 9; i++ {
		tg.latency.WithLabelValues("v2").Observe(0.04)
	}
	tg.latency.WithLabelValues("v2").Observe(0.8)
	for i := 0; i < 10; i++ {
		tg.latency.WithLabelValues("v1").Observe(0.04)
	}
}

func newSource(t *testing.T, url string, clk *clock, opts Options, logger *zap.Logger) *Source {
	t.Helper()
	if clk != nil {
		opts.Now = clk.Now
	}
	if logger == nil {
		logger = zaptest.NewLogger(t)
	}
	s, err := New(config.Scrape{URL: url, Interval: config.Duration(time.Second)}, opts, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func query(t *testing.T, s *Source, q string, ts time.Time) model.Vector {
	t.Helper()
	res, err := s.Query(context.Background(), q, ts)
	if err != nil {
		t.Fatalf("Query(%s): %v", q, err)
	}
	return res.Vector
}

// single asserts that q returns one sample and returns its value.
func single(t *testing.T, s *Source, q string, ts time.Time) float64 {
	t.Helper()
	v := query(t, s, q, ts)
	if len(v) != 1 {
		t.Fatalf("Query(%s) = %v, want one sample", q, v)
	}
	return float64(v[0].Value)
}

func TestQueriesOverScrapedSeries(t *testing.T) {
	for _, format := range []struct {
		name        string
		openMetrics bool
		contentType string
	}{
		{"prometheus text", false, "text/plain"},
		{"openmetrics", true, "application/openmetrics-text"},
	} {
		t.Run(format.name, func(t *testing.T) {
			tg := newTarget(t, format.openMetrics)
			clk := &clock{}
			s := newSource(t, tg.srv.URL, clk, Options{}, nil)

			var last time.Time
			for i := 0; i < 15; i++ {
				tg.serve()
				last = start.Add(time.Duration(i) * time.Second)
				clk.Set(last)
				if err := s.ScrapeOnce(context.Background()); err != nil {
					t.Fatalf("scrape %d: %v", i, err)
				}
			}
			if ct, _ := tg.contentType.Load().(string); !strings.HasPrefix(ct, format.contentType) {
				t.Fatalf("target answered with Content-Type %q, want %s", ct, format.contentType)
			}

			at := fmt.Sprintf("%.3f", float64(start.Add(4*time.Second).UnixMilli())/1000)
			for _, tc := range []struct {
				name     string
				query    string
				low, top float64 // the value must be in [low, top]
			}{
				{"error ratio", `sum(rate(http_requests_total{version="v2",code=~"5.."}[10s])) / sum(rate(http_requests_total{version="v2"}[10s]))`, 0.1, 0.1},
				{"request rate", `sum(rate(http_requests_total{version="v2"}[10s]))`, 10, 10},
				{"healthy baseline ratio", `sum(rate(http_requests_total{version="v1",code=~"5.."}[10s]) or rate(http_requests_total{version="v1"}[10s]) * 0) / sum(rate(http_requests_total{version="v1"}[10s]))`, 0, 0},
				{"p95 in the slow bucket", `histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{version="v2"}[10s])))`, 0.5 + 1e-9, 1},
				{"p50 in the fast bucket", `histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{version="v2"}[10s])))`, 0.025 + 1e-9, 0.05},
				{"mean latency", `sum(rate(http_request_duration_seconds_sum{version="v2"}[10s])) / sum(rate(http_request_duration_seconds_count{version="v2"}[10s]))`, 0.116 - 1e-9, 0.116 + 1e-9},
				{"le normalised as Prometheus 3", `count(http_request_duration_seconds_bucket{version="v2",le=~"1.0|30.0|\\+Inf"})`, 3, 3},
				{"@ modifier", `sum(http_requests_total{version="v2"} @ ` + at + `)`, 50, 50},
				{"raw counter", `http_requests_total{version="v2",code="500"}`, 15, 15},
				{"up", `up`, 1, 1},
				{"scrape_samples_scraped", `scrape_samples_scraped`, 1, 1e6},
				{"scalar", `scalar(sum(http_requests_total{version="v1"}))`, 150, 150},
				{"go collector counter", `go_memstats_alloc_bytes_total`, 1, math.MaxFloat64},
				{"go collector gauge of the same family name", `go_memstats_alloc_bytes`, 1, math.MaxFloat64},
			} {
				t.Run(tc.name, func(t *testing.T) {
					got := single(t, s, tc.query, last)
					if math.IsNaN(got) || got < tc.low-1e-9 || got > tc.top+1e-9 {
						t.Errorf("Query(%s) = %v, want within [%v, %v]", tc.query, got, tc.low, tc.top)
					}
				})
			}

			t.Run("labels", func(t *testing.T) {
				v := query(t, s, `http_requests_total{version="v2",code="500"}`, last)
				want := model.Metric{"__name__": "http_requests_total", "version": "v2", "code": "500"}
				if len(v) != 1 || !v[0].Metric.Equal(want) || !v[0].Timestamp.Time().Equal(last) {
					t.Errorf("got %v, want one sample %v at %v", v, want, last)
				}
				v = query(t, s, `scalar(up)`, last)
				if len(v) != 1 || len(v[0].Metric) != 0 {
					t.Errorf("scalar result = %v, want one sample with no labels", v)
				}
			})

			for _, q := range []string{
				`sum(rate(http_requests_total{version="v9"}[10s]))`,
				`http_requests_total{version="v2"} offset 1h`,
				`{__name__=~".+_created"}`, // OpenMetrics start timestamps are not series
			} {
				t.Run("empty "+q, func(t *testing.T) {
					if v := query(t, s, q, last); len(v) != 0 {
						t.Errorf("Query(%s) = %v, want empty", q, v)
					}
				})
			}

			for _, tc := range []struct{ name, query string }{
				{"parse error", `sum(rate(http_requests_total[10s])`},
				{"range vector", `http_requests_total[10s]`},
				{"string", `"v2"`},
				{"many-to-one", `http_requests_total * on() vector(1)`},
			} {
				t.Run("bad query "+tc.name, func(t *testing.T) {
					_, err := s.Query(context.Background(), tc.query, last)
					if got := source.Reason(err); got != source.ReasonBadQuery {
						t.Errorf("Reason(%v) = %q, want %q", err, got, source.ReasonBadQuery)
					}
					if !errors.Is(err, source.ErrBadQuery) {
						t.Errorf("error %v does not wrap source.ErrBadQuery", err)
					}
				})
			}

			t.Run("canceled", func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				_, err := s.Query(ctx, `up`, last)
				if got := source.Reason(err); got != source.ReasonCanceled {
					t.Errorf("Reason(%v) = %q, want %q", err, got, source.ReasonCanceled)
				}
			})
		})
	}
}

func TestRetentionAndStaleness(t *testing.T) {
	reg := prometheus.NewRegistry()
	old := prometheus.NewGauge(prometheus.GaugeOpts{Name: "old_metric", Help: "Disappears."})
	kept := prometheus.NewCounter(prometheus.CounterOpts{Name: "kept_total", Help: "Stays."})
	reg.MustRegister(old, kept)
	old.Set(1)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	clk := &clock{}
	s := newSource(t, srv.URL, clk, Options{Retention: 30 * time.Second}, nil)
	series := func() float64 { return float64(s.stats.series.Load()) }
	at := func(sec int) time.Time { return start.Add(time.Duration(sec) * time.Second) }

	var before float64
	for i := 0; i < 100; i++ {
		if i == 5 {
			before = series()
			reg.Unregister(old)
		}
		kept.Inc()
		clk.Set(at(i))
		if err := s.ScrapeOnce(context.Background()); err != nil {
			t.Fatalf("scrape %d: %v", i, err)
		}
		if i == 6 {
			if got := single(t, s, `old_metric`, at(4)); got != 1 {
				t.Errorf("old_metric at 4s = %v, want 1", got)
			}
			if v := query(t, s, `old_metric`, at(6)); len(v) != 0 {
				t.Errorf("old_metric at 6s = %v, want empty: it went stale at 5s", v)
			}
		}
	}

	last := at(99)
	if v := query(t, s, `old_metric`, at(4)); len(v) != 0 {
		t.Errorf("old_metric at 4s after 99s with 30s retention = %v, want empty", v)
	}
	if v := query(t, s, `kept_total`, at(20)); len(v) != 0 {
		t.Errorf("kept_total at 20s after 99s with 30s retention = %v, want empty", v)
	}
	if got := single(t, s, `count_over_time(up[5m])`, last); got != 31 {
		t.Errorf("samples of up within 5m = %v, want 31 (69s..99s)", got)
	}
	if got := single(t, s, `kept_total`, last); got != 100 {
		t.Errorf("kept_total = %v, want 100", got)
	}
	if after := series(); after != before-1 {
		t.Errorf("series = %v after truncation, want %v (old_metric dropped)", after, before-1)
	}
	if stored := s.store.len(); float64(stored) != before-1 {
		t.Errorf("series stored = %v after truncation, want %v (old_metric's samples all older than the retention)", stored, before-1)
	}
}

func TestScrapeFailures(t *testing.T) {
	tg := newTarget(t, false)
	clk := &clock{}
	core, logs := observer.New(zapcore.InfoLevel)
	s := newSource(t, tg.srv.URL, clk, Options{}, zap.New(core))
	ctx := context.Background()
	at := func(sec int) time.Time { return start.Add(time.Duration(sec) * time.Second) }
	scrape := func(sec int) error {
		tg.serve()
		clk.Set(at(sec))
		return s.ScrapeOnce(ctx)
	}
	count := func(msg string) int { return logs.FilterMessage(msg).Len() }

	if err := scrape(0); err != nil {
		t.Fatalf("first scrape: %v", err)
	}

	tg.status.Store(http.StatusInternalServerError)
	for sec := 1; sec <= 2; sec++ {
		err := scrape(sec)
		if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), tg.srv.URL) {
			t.Errorf("scrape at %ds: error %v, want HTTP 500 naming the URL", sec, err)
		}
	}
	if got := single(t, s, `up`, at(2)); got != 0 {
		t.Errorf("up after failed scrape = %v, want 0", got)
	}
	if v := query(t, s, `http_requests_total`, at(2)); len(v) != 0 {
		t.Errorf("series after failed scrape = %v, want none (stale)", v)
	}
	if got := count("scrape failed"); got != 1 {
		t.Errorf("logged %d scrape failures for 2 failed scrapes, want 1", got)
	}

	tg.status.Store(0)
	if err := scrape(3); err != nil {
		t.Fatalf("scrape after recovery: %v", err)
	}
	if got := single(t, s, `up`, at(3)); got != 1 {
		t.Errorf("up after recovery = %v, want 1", got)
	}
	if got := count("scrape recovered"); got != 1 {
		t.Errorf("logged %d recoveries, want 1", got)
	}

	tg.srv.Close()
	if err := scrape(4); err == nil {
		t.Error("scrape of a closed server succeeded")
	}
	if got := single(t, s, `up`, at(4)); got != 0 {
		t.Errorf("up after connection refused = %v, want 0", got)
	}
	if got := count("scrape failed"); got != 2 {
		t.Errorf("logged %d scrape failures, want 2", got)
	}
	if got := float64(s.stats.failures.Load()); got != 3 {
		t.Errorf("guardian_scrape_failures_total = %v, want 3", got)
	}
	if got := float64(s.stats.scrapes.Load()); got != 5 {
		t.Errorf("guardian_scrapes_total = %v, want 5", got)
	}
}

// OnScrape hears every scrape's outcome, classified the way source.Reason
// reads query errors: a 5xx and a refused connection are the target being
// unavailable, a 404 is not; a scrape cut short or a closed source is not
// an outcome.
func TestOnScrape(t *testing.T) {
	tg := newTarget(t, false)
	var got []string
	s := newSource(t, tg.srv.URL, &clock{t: start}, Options{OnScrape: func(_ context.Context, err error) {
		got = append(got, cmp.Or(source.Reason(err), "ok"))
	}}, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		status int
		want   string
	}{
		{"success", 0, "ok"},
		{"server error", http.StatusServiceUnavailable, source.ReasonUnavailable},
		{"not found", http.StatusNotFound, source.ReasonOther},
		{"success again", 0, "ok"},
	} {
		tg.status.Store(int32(tc.status))
		got = nil
		_ = s.ScrapeOnce(ctx)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: OnScrape heard %v, want [%s]", tc.name, got, tc.want)
		}
	}

	got = nil
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_ = s.ScrapeOnce(canceled)
	if len(got) != 0 {
		t.Errorf("a scrape cut short: OnScrape heard %v, want nothing", got)
	}

	tg.srv.Close()
	_ = s.ScrapeOnce(ctx)
	if len(got) != 1 || got[0] != source.ReasonUnavailable {
		t.Errorf("connection refused: OnScrape heard %v, want [%s]", got, source.ReasonUnavailable)
	}

	got = nil
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.ScrapeOnce(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("scrape after Close: %v, want ErrClosed", err)
	}
	if len(got) != 0 {
		t.Errorf("a closed source: OnScrape heard %v, want nothing", got)
	}
}

func TestScrapeRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		opts    Options
		timeout time.Duration
		want    string
	}{
		{
			name: "unparsable body",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				_, _ = w.Write([]byte("metric{unterminated 1\n"))
			},
			want: "decoding body",
		},
		{
			name: "openmetrics without # EOF",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/openmetrics-text; version=1.0.0")
				_, _ = w.Write([]byte("# TYPE a_metric gauge\na_metric 1\n"))
			},
			want: "decoding body",
		},
		{
			name: "invalid UTF-8 in a metric name",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=1.0.0")
				_, _ = w.Write([]byte("{\"a_\xff\"} 1\n"))
			},
			want: "invalid metric name",
		},
		{
			name: "body over the limit",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				_, _ = w.Write([]byte(strings.Repeat("a_metric 1\n", 100)))
			},
			opts: Options{BodySizeLimit: 100},
			want: "exceeds the limit",
		},
		{
			name: "slow target",
			handler: func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			},
			timeout: 100 * time.Millisecond,
			want:    "deadline exceeded",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			opts := tc.opts
			clk := &clock{t: start}
			opts.Now = clk.Now
			s, err := New(config.Scrape{URL: srv.URL, Interval: config.Duration(time.Second), Timeout: config.Duration(tc.timeout)},
				opts, zaptest.NewLogger(t), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			err = s.ScrapeOnce(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ScrapeOnce error = %v, want it to contain %q", err, tc.want)
			}
			if got := single(t, s, `up`, start); got != 0 {
				t.Errorf("up = %v, want 0", got)
			}
		})
	}
}

// TestBodies checks how exposition bodies are read, as Prometheus's scrape
// loop reads them with honor_timestamps off.
func TestBodies(t *testing.T) {
	for _, tc := range []struct {
		name        string
		contentType string // "none": no Content-Type header
		body        string
		query       string
		want        model.Vector // at the scrape time
		samples     float64      // scrape_samples_scraped
	}{
		{
			name:        "timestamps in the body are ignored",
			contentType: "text/plain; version=0.0.4",
			body:        "a_metric 7 1000\n",
			query:       `a_metric`,
			want:        model.Vector{{Metric: model.Metric{"__name__": "a_metric"}, Value: 7}},
			samples:     1,
		},
		{
			name:        "empty label values are absent labels",
			contentType: "text/plain; version=0.0.4",
			body:        `a_metric{x="",y="1"} 2` + "\n",
			query:       `a_metric`,
			want:        model.Vector{{Metric: model.Metric{"__name__": "a_metric", "y": "1"}, Value: 2}},
			samples:     1,
		},
		{
			name:        "a repeated series keeps its first sample",
			contentType: "text/plain; version=0.0.4",
			body:        "a_metric 1\na_metric 2\nb_metric 3\n",
			query:       `a_metric`,
			want:        model.Vector{{Metric: model.Metric{"__name__": "a_metric"}, Value: 1}},
			samples:     3,
		},
		{
			name:        "quantiles normalised as Prometheus 3",
			contentType: "text/plain; version=0.0.4",
			body:        "# TYPE s summary\ns{quantile=\"1\"} 4\ns_sum 2\ns_count 3\n",
			query:       `s{quantile="1.0"}`,
			want:        model.Vector{{Metric: model.Metric{"__name__": "s", "quantile": "1.0"}, Value: 4}},
			samples:     3,
		},
		{
			name:        "UTF-8 names",
			contentType: "text/plain; version=1.0.0; escaping=allow-utf-8",
			body:        `{"http.requests","service.name"="checkout"} 5` + "\n",
			query:       `{"http.requests"}`,
			want:        model.Vector{{Metric: model.Metric{"__name__": "http.requests", "service.name": "checkout"}, Value: 5}},
			samples:     1,
		},
		{
			name:        "no Content-Type is read as text",
			contentType: "none",
			body:        "a_metric 1\n",
			query:       `a_metric`,
			want:        model.Vector{{Metric: model.Metric{"__name__": "a_metric"}, Value: 1}},
			samples:     1,
		},
		{
			name:        "an unknown Content-Type is read as text",
			contentType: "text/html",
			body:        "a_metric 1\n",
			query:       `a_metric`,
			want:        model.Vector{{Metric: model.Metric{"__name__": "a_metric"}, Value: 1}},
			samples:     1,
		},
		{
			name:        "openmetrics _created of a counter is skipped",
			contentType: "application/openmetrics-text; version=1.0.0",
			body:        "# TYPE a counter\na_total 3\na_created 1.7e9\n# EOF\n",
			query:       `{__name__=~"a.*"}`,
			want:        model.Vector{{Metric: model.Metric{"__name__": "a_total"}, Value: 3}},
			samples:     1,
		},
		{
			name:        "openmetrics gauge named _created is kept",
			contentType: "application/openmetrics-text; version=1.0.0",
			body:        "# TYPE b_created gauge\nb_created 5\n# EOF\n",
			query:       `b_created`,
			want:        model.Vector{{Metric: model.Metric{"__name__": "b_created"}, Value: 5}},
			samples:     1,
		},
		{
			name:        "openmetrics metadata of a family after its samples",
			contentType: "application/openmetrics-text; version=1.0.0",
			body: "# TYPE m_bytes gauge\nm_bytes 1.0\n" +
				"# TYPE m_bytes counter\nm_bytes_total 2.0\n# EOF\n",
			query:   `{__name__=~"m_bytes.*"}`,
			want:    model.Vector{{Metric: model.Metric{"__name__": "m_bytes"}, Value: 1}, {Metric: model.Metric{"__name__": "m_bytes_total"}, Value: 2}},
			samples: 2,
		},
		{
			name:        "empty body",
			contentType: "text/plain; version=0.0.4",
			body:        "",
			query:       `{__name__=~"a.*"}`,
			want:        model.Vector{},
			samples:     0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if tc.contentType == "none" {
					w.Header()["Content-Type"] = nil // no sniffing either
				} else {
					w.Header().Set("Content-Type", tc.contentType)
				}
				_, _ = w.Write([]byte(tc.body))
			}))
			t.Cleanup(srv.Close)
			s := newSource(t, srv.URL, &clock{t: start}, Options{}, nil)
			if err := s.ScrapeOnce(context.Background()); err != nil {
				t.Fatalf("ScrapeOnce: %v", err)
			}
			got := query(t, s, tc.query, start)
			sort.Slice(got, func(i, j int) bool { return got[i].Metric.Before(got[j].Metric) })
			for _, smpl := range tc.want {
				smpl.Timestamp = model.TimeFromUnixNano(start.UnixNano())
			}
			if !got.Equal(tc.want) && (len(got) != 0 || len(tc.want) != 0) {
				t.Errorf("Query(%s) = %v, want %v", tc.query, got, tc.want)
			}
			if got := single(t, s, `scrape_samples_scraped`, start); got != tc.samples {
				t.Errorf("scrape_samples_scraped = %v, want %v", got, tc.samples)
			}
			if got := single(t, s, `up`, start); got != 1 {
				t.Errorf("up = %v, want 1", got)
			}
		})
	}
}

// TestNativeHistograms scrapes a target that answers in protobuf, the one
// exposition format with native histograms, although Guardian does not ask
// for it: native histograms are appended as such, next to their classic
// buckets, and go stale like other series.
func TestNativeHistograms(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:                        "rpc_duration_seconds",
		Help:                        "RPC latency.",
		Buckets:                     []float64{.1, 1},
		NativeHistogramBucketFactor: 1.1,
	})
	reg.MustRegister(h)
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	clk := &clock{}
	s := newSource(t, srv.URL, clk, Options{}, nil)
	at := func(sec int) time.Time { return start.Add(time.Duration(sec) * time.Second) }
	for sec := 0; sec < 15; sec++ {
		for i := 0; i < 10; i++ {
			h.Observe(0.05)
		}
		clk.Set(at(sec))
		if err := s.ScrapeOnce(context.Background()); err != nil {
			t.Fatalf("scrape %d: %v", sec, err)
		}
	}
	for _, tc := range []struct {
		name  string
		query string
		want  float64
	}{
		{"native count", `histogram_count(rpc_duration_seconds)`, 150},
		{"native rate", `histogram_count(rate(rpc_duration_seconds[10s]))`, 10},
		{"classic buckets kept", `count(rpc_duration_seconds_bucket)`, 3},
		{"classic count", `rpc_duration_seconds_count`, 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := single(t, s, tc.query, at(14)); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("Query(%s) = %v, want %v", tc.query, got, tc.want)
			}
		})
	}
	t.Run("histogram samples are not in results", func(t *testing.T) {
		if v := query(t, s, `rpc_duration_seconds`, at(14)); len(v) != 0 {
			t.Errorf("Query(rpc_duration_seconds) = %v, want empty", v)
		}
	})
	t.Run("stale", func(t *testing.T) {
		reg.Unregister(h)
		clk.Set(at(15))
		if err := s.ScrapeOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if v := query(t, s, `histogram_count(rpc_duration_seconds)`, at(15)); len(v) != 0 {
			t.Errorf("native histogram after it went away = %v, want empty", v)
		}
	})
}

func TestCloseReleasesEverything(t *testing.T) {
	tg := newTarget(t, false)
	s, err := New(config.Scrape{URL: tg.srv.URL}, Options{}, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ScrapeOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := s.store.len(); n == 0 {
		t.Fatal("no series stored after a scrape")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := s.store.len(); n != 0 {
		t.Errorf("series kept after Close = %d, want 0", n)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_, err = s.Query(context.Background(), `up`, time.Now())
	if !errors.Is(err, ErrClosed) || source.Reason(err) != source.ReasonUnavailable {
		t.Errorf("Query after Close: %v, want ErrClosed (unavailable)", err)
	}
	if err := s.ScrapeOnce(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("ScrapeOnce after Close: %v, want ErrClosed", err)
	}
}

func TestNewRequiresURL(t *testing.T) {
	if _, err := New(config.Scrape{}, Options{}, nil, nil); err == nil || !strings.Contains(err.Error(), "url") {
		t.Errorf("New without url: %v, want an error about the url", err)
	}
}

func TestSourcesShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := newTarget(t, false), newTarget(t, true)
	for _, tg := range []*target{a, b} {
		s, err := New(config.Scrape{URL: tg.srv.URL}, Options{}, zap.NewNop(), reg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		if err := s.ScrapeOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	shared := NewMetrics(reg) // a third registration returns the same collectors
	for _, tg := range []*target{a, b} {
		if got := float64(shared.targets[tg.srv.URL].scrapes.Load()); got != 1 {
			t.Errorf("guardian_scrapes_total{target=%q} = %v, want 1", tg.srv.URL, got)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "guardian_embedded_series"); err != nil || n != 2 {
		t.Errorf("guardian_embedded_series has %d series (%v), want 2", n, err)
	}
}

func TestRun(t *testing.T) {
	tg := newTarget(t, false)
	tg.serve()
	// The timeout is generous: a scrape of the Go collector under the race
	// detector can take longer than the 20ms interval.
	s, err := New(config.Scrape{URL: tg.srv.URL, Interval: config.Duration(20 * time.Millisecond), Timeout: config.Duration(10 * time.Second)},
		Options{}, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	// Queries run concurrently with the scrape loop.
	deadline := time.Now().Add(10 * time.Second)
	for float64(s.stats.scrapes.Load()) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not scrape three times within 10s")
		}
		if _, err := s.Query(context.Background(), `sum(rate(http_requests_total[1m]))`, time.Now()); err != nil {
			t.Fatalf("Query during Run: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := single(t, s, `up`, time.Now()); got != 1 {
		t.Errorf("up = %v, want 1", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v, want nil on cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancellation")
	}
}

// Sources with the same settings share one engine through Engines, each
// still answering from its own scrapes; closing one leaves the engine to
// the others; a different scrape interval gets its own engine.
func TestSharedEngines(t *testing.T) {
	engines := NewEngines()
	clk := &clock{}
	clk.Set(time.Unix(1_700_000_000, 0))
	busy, idle := newTarget(t, false), newTarget(t, false)
	a := newSource(t, busy.srv.URL, clk, Options{Engines: engines}, nil)
	b := newSource(t, idle.srv.URL, clk, Options{Engines: engines}, nil)
	if a.engine != b.engine || engines.Len() != 1 {
		t.Fatalf("two sources of the same settings: %d engines", engines.Len())
	}
	busy.serve()
	for _, s := range []*Source{a, b} {
		if err := s.ScrapeOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	q := `sum(http_requests_total) or vector(0)`
	if got := single(t, a, q, clk.Now()); got != 20 {
		t.Errorf("busy source: %s = %v, want 20", q, got)
	}
	if got := single(t, b, q, clk.Now()); got != 0 {
		t.Errorf("idle source: %s = %v, want 0 (its own scrape, not the other's)", q, got)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := single(t, b, q, clk.Now()); got != 0 {
		t.Errorf("after the other source closed: %s = %v", q, got)
	}
	s, err := New(config.Scrape{URL: idle.srv.URL, Interval: config.Duration(15 * time.Second)}, Options{Engines: engines}, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if engines.Len() != 2 || s.engine == b.engine {
		t.Errorf("another scrape interval: %d engines, want 2", engines.Len())
	}
}

// A query sees every scrape timestamped at or before its time: one under
// way makes it wait for its samples (or for its context), one timestamped
// later does not.
func TestQuerySeesTheScrapeUnderWay(t *testing.T) {
	tg := newTarget(t, false)
	tg.serve()
	entered, release := make(chan struct{}), make(chan struct{})
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		tg.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(gate.Close)
	t.Cleanup(func() { close(release) }) // runs first: a failed test leaves no scrape held
	clk := &clock{t: start}
	s := newSource(t, gate.URL, clk, Options{}, nil)
	waiting := make(chan struct{}, 1)
	s.waiting = func() { waiting <- struct{}{} }

	scraped := make(chan error, 1)
	go func() { scraped <- s.ScrapeOnce(context.Background()) }()
	<-entered
	const q = `sum(http_requests_total{version="v2"})`
	if v := query(t, s, q, start.Add(-time.Millisecond)); len(v) != 0 {
		t.Fatalf("before the scrape's timestamp: %v, want nothing", v)
	}
	type answer struct {
		res source.Result
		err error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := s.Query(context.Background(), q, start)
		got <- answer{res, err}
	}()
	awaitWaiting(t, waiting)
	release <- struct{}{}
	if err := <-scraped; err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil || len(a.res.Vector) != 1 || a.res.Vector[0].Value != 10 {
		t.Fatalf("at the scrape's timestamp: %v, %v; want the scrape's 10 requests", a.res.Vector, a.err)
	}

	clk.Set(start.Add(time.Second))
	go func() { scraped <- s.ScrapeOnce(context.Background()) }()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		res, err := s.Query(ctx, q, start.Add(time.Second))
		got <- answer{res, err}
	}()
	awaitWaiting(t, waiting)
	cancel()
	if a := <-got; !errors.Is(a.err, source.ErrCanceled) {
		t.Fatalf("canceled while waiting: %v, %v; want an error wrapping source.ErrCanceled", a.res.Vector, a.err)
	}
	release <- struct{}{}
	if err := <-scraped; err != nil {
		t.Fatal(err)
	}
}

// awaitWaiting returns once a query waits for the scrape under way; it
// fails the test if none does within 30s (the scrape is held until then).
func awaitWaiting(t *testing.T, waiting <-chan struct{}) {
	t.Helper()
	select {
	case <-waiting:
	case <-time.After(30 * time.Second):
		t.Fatal("the query did not wait for the scrape under way")
	}
}

// The Sources sharing Engines evaluate at most QuerySlots queries at once:
// with every slot taken, a query waits for one (here until its context
// ends), and runs once one is free.
func TestSharedQuerySlots(t *testing.T) {
	engines := NewEngines()
	if cap(engines.slots) != QuerySlots() || QuerySlots() < 4 {
		t.Fatalf("%d slots, want QuerySlots() = %d (at least 4)", cap(engines.slots), QuerySlots())
	}
	clk := &clock{}
	clk.Set(time.Unix(1_700_000_000, 0))
	tg := newTarget(t, false)
	tg.serve()
	s := newSource(t, tg.srv.URL, clk, Options{Engines: engines}, nil)
	if err := s.ScrapeOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range QuerySlots() {
		engines.slots <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	q := `sum(http_requests_total)`
	if _, err := s.Query(ctx, q, clk.Now()); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, source.ErrTimeout) {
		t.Fatalf("query with every slot taken: %v, want its context's deadline", err)
	}
	<-engines.slots
	if got := single(t, s, q, clk.Now()); got != 20 {
		t.Errorf("with a slot free: %s = %v, want 20", q, got)
	}
	if n := len(engines.slots); n != QuerySlots()-1 {
		t.Errorf("after the query: %d slots taken, want %d (its own given back)", n, QuerySlots()-1)
	}
}
