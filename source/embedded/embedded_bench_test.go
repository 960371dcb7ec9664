package embedded

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
)

const benchQuery = `sum(rate(http_requests_total{version="v2",code=~"5.."}[1m])) / sum(rate(http_requests_total{version="v2"}[1m]))`

// benchBody renders a realistic /metrics body from a real registry: 3
// versions x 5 codes of request counters, a 12-bucket latency histogram per
// version, Go runtime and process metrics, and unrelated application gauges,
// about 300 series in all.
func benchBody(b *testing.B, format expfmt.Format, goRuntime bool) []byte {
	b.Helper()
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "Requests."}, []string{"version", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "http_request_duration_seconds",
		Help:    "Latency.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"version"})
	cache := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "app_cache_entries", Help: "Unrelated."}, []string{"cache", "shard"})
	reg.MustRegister(requests, latency, cache, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if goRuntime {
		reg.MustRegister(collectors.NewGoCollector())
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		for i, code := range []string{"200", "201", "404", "500", "503"} {
			requests.WithLabelValues(v, code).Add(float64(1000 * (i + 1)))
		}
		for i := 0; i < 100; i++ {
			latency.WithLabelValues(v).Observe(float64(i) / 100)
		}
	}
	for c := 0; c < 4; c++ {
		for sh := 0; sh < 40; sh++ {
			cache.WithLabelValues("cache"+strconv.Itoa(c), strconv.Itoa(sh)).Set(float64(sh))
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			b.Fatal(err)
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
	}
	return buf.Bytes()
}

// benchSource scrapes a static body served over loopback, with a clock that
// advances one second per scrape.
func benchSource(b *testing.B, format expfmt.Format, goRuntime bool) (*Source, func() time.Time) {
	b.Helper()
	body := benchBody(b, format, goRuntime)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", string(format))
		_, _ = w.Write(body)
	}))
	b.Cleanup(srv.Close)
	now := start
	s, err := New(config.Scrape{URL: srv.URL}, Options{
		Now: func() time.Time { now = now.Add(time.Second); return now },
	}, zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s, func() time.Time { return now }
}

func BenchmarkScrapeAndQuery(b *testing.B) {
	for _, f := range []struct {
		name      string
		format    expfmt.Format
		goRuntime bool
	}{
		{"text", expfmt.NewFormat(expfmt.TypeTextPlain), true},
		{"openmetrics", expfmt.NewFormat(expfmt.TypeOpenMetrics), true},
		{"text-without-go-runtime", expfmt.NewFormat(expfmt.TypeTextPlain), false},
		{"openmetrics-without-go-runtime", expfmt.NewFormat(expfmt.TypeOpenMetrics), false},
	} {
		b.Run(f.name, func(b *testing.B) {
			s, now := benchSource(b, f.format, f.goRuntime)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := s.ScrapeOnce(ctx); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Query(ctx, benchQuery, now()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(s.store.len()), "series")
		})
	}
}

func BenchmarkQuery(b *testing.B) {
	for _, f := range []struct {
		name   string
		format expfmt.Format
	}{
		{"text", expfmt.NewFormat(expfmt.TypeTextPlain)},
		{"openmetrics", expfmt.NewFormat(expfmt.TypeOpenMetrics)},
	} {
		b.Run(f.name, func(b *testing.B) {
			s, now := benchSource(b, f.format, true)
			ctx := context.Background()
			for i := 0; i < 120; i++ {
				if err := s.ScrapeOnce(ctx); err != nil {
					b.Fatal(err)
				}
			}
			ts := now()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Query(ctx, benchQuery, ts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSourceMemory measures the Go heap each of 200 Sources holds
// after 30 scrapes of a realistic body: every series, then filtered to
// the request counters and latency buckets a service's triggers read.
func BenchmarkSourceMemory(b *testing.B) {
	const sources, scrapes = 200, 30
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	body := benchBody(b, format, true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", string(format))
		_, _ = w.Write(body)
	}))
	b.Cleanup(srv.Close)
	filter := NewFilter("http_requests_total", "http_request_duration_seconds_bucket")
	for _, filtered := range []bool{false, true} {
		b.Run("filtered="+strconv.FormatBool(filtered), func(b *testing.B) {
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				now := start
				clock := func() time.Time { return now }
				engines := NewEngines()
				srcs := make([]*Source, sources)
				for i := range srcs {
					opts := Options{Now: clock, Engines: engines, Metrics: NewMetrics(nil), Target: strconv.Itoa(i)}
					if filtered {
						opts.Filter = filter
					}
					s, err := New(config.Scrape{URL: srv.URL}, opts, zap.NewNop(), nil)
					if err != nil {
						b.Fatal(err)
					}
					srcs[i] = s
				}
				for range scrapes {
					now = now.Add(5 * time.Second)
					for _, s := range srcs {
						if err := s.ScrapeOnce(context.Background()); err != nil {
							b.Fatal(err)
						}
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/sources/1024, "KiB/source")
				for _, s := range srcs {
					_ = s.Close()
				}
			}
		})
	}
}
