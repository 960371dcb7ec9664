package prometheus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newQuerier(t *testing.T, cfg config.PrometheusSource) *Querier {
	t.Helper()
	q, err := New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func TestQueryRealPrometheus(t *testing.T) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guardian_test_requests_total",
		Help: "Requests served by the test target.",
	}, []string{"code"})
	reg.MustRegister(requests)
	requests.WithLabelValues("200").Add(90)
	requests.WithLabelValues("500").Add(10)

	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(target.Close)
	before := time.Now().Add(-time.Hour)
	p := testenv.StartPrometheus(t, time.Second, target.URL+"/metrics")
	// The readiness probe's keep-alive connection would outlive the test.
	http.DefaultClient.CloseIdleConnections()
	q := newQuerier(t, config.PrometheusSource{URL: p.URL, Timeout: config.Duration(5 * time.Second)})
	ctx := context.Background()

	testenv.Eventually(t, 30*time.Second, func() error {
		res, err := q.Query(ctx, `guardian_test_requests_total`, time.Now())
		if err != nil {
			return err
		}
		if len(res.Vector) != 2 {
			return fmt.Errorf("got %d series, want 2", len(res.Vector))
		}
		return nil
	}, "the first scrape")

	for _, tc := range []struct {
		name   string
		query  string
		at     time.Time // zero: now
		want   float64
		labels model.Metric // expected labels of the single sample
		empty  bool
	}{
		{name: "vector", query: `guardian_test_requests_total{code="500"}`, want: 10,
			labels: model.Metric{"__name__": "guardian_test_requests_total", "code": "500", "job": "target0", "instance": model.LabelValue(strings.TrimPrefix(target.URL, "http://"))}},
		{name: "aggregated ratio", query: `sum(guardian_test_requests_total{code=~"5.."}) / sum(guardian_test_requests_total)`, want: 0.1, labels: model.Metric{}},
		{name: "scalar function", query: `scalar(sum(guardian_test_requests_total))`, want: 100, labels: model.Metric{}},
		{name: "vector literal", query: `vector(1)`, want: 1, labels: model.Metric{}},
		{name: "number literal", query: `42`, want: 42, labels: model.Metric{}},
		{name: "empty result", query: `guardian_test_requests_total{code="404"}`, empty: true},
		{name: "evaluated at ts", query: `guardian_test_requests_total`, at: before, empty: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = time.Now()
			}
			res, err := q.Query(ctx, tc.query, at)
			if err != nil {
				t.Fatalf("Query(%s): %v", tc.query, err)
			}
			if tc.empty {
				if len(res.Vector) != 0 {
					t.Fatalf("Query(%s) = %v, want empty", tc.query, res.Vector)
				}
				return
			}
			if len(res.Vector) != 1 {
				t.Fatalf("Query(%s) = %v, want one sample", tc.query, res.Vector)
			}
			s := res.Vector[0]
			if math.Abs(float64(s.Value)-tc.want) > 1e-9 {
				t.Errorf("value = %v, want %v", s.Value, tc.want)
			}
			if !s.Metric.Equal(tc.labels) {
				t.Errorf("labels = %v, want %v", s.Metric, tc.labels)
			}
			if d := s.Timestamp.Time().Sub(at); d > time.Millisecond || d < -time.Millisecond {
				t.Errorf("timestamp = %v, want %v", s.Timestamp.Time(), at)
			}
		})
	}

	for _, tc := range []struct {
		name    string
		query   string
		reason  string
		message string
	}{
		{"parse error", `sum(`, source.ReasonBadQuery, "parse error"},
		{"range vector", `guardian_test_requests_total[1m]`, source.ReasonBadQuery, "instant vector or scalar"},
		{"string", `"hello"`, source.ReasonBadQuery, "instant vector or scalar"},
		{"execution error", `guardian_test_requests_total * on() vector(1)`, source.ReasonBadQuery, "many-to-one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := q.Query(ctx, tc.query, time.Now())
			if err == nil {
				t.Fatalf("Query(%s) succeeded, want error", tc.query)
			}
			if got := source.Reason(err); got != tc.reason {
				t.Errorf("Reason(%v) = %q, want %q", err, got, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.message) || !strings.Contains(err.Error(), p.URL) {
				t.Errorf("error %q should mention %q and the source URL", err, tc.message)
			}
		})
	}

	t.Run("canceled by caller", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := q.Query(cctx, `vector(1)`, time.Now())
		if got := source.Reason(err); got != source.ReasonCanceled {
			t.Errorf("Reason(%v) = %q, want %q", err, got, source.ReasonCanceled)
		}
	})

	t.Run("stopped server", func(t *testing.T) {
		p.Stop()
		_ = q.Close()
		_, err := q.Query(ctx, `vector(1)`, time.Now())
		if got := source.Reason(err); got != source.ReasonUnavailable {
			t.Errorf("Reason(%v) = %q, want %q", err, got, source.ReasonUnavailable)
		}
		if !errors.Is(err, source.ErrUnavailable) {
			t.Errorf("error %v does not wrap source.ErrUnavailable", err)
		}
	})
}

func TestQueryUnreachablePort(t *testing.T) {
	q := newQuerier(t, config.PrometheusSource{URL: "http://" + testenv.FreePort(t)})
	_, err := q.Query(context.Background(), `vector(1)`, time.Now())
	if got := source.Reason(err); got != source.ReasonUnavailable {
		t.Errorf("Reason(%v) = %q, want %q", err, got, source.ReasonUnavailable)
	}
}

// silentListener accepts connections and never answers.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

func TestQueryTimeout(t *testing.T) {
	q := newQuerier(t, config.PrometheusSource{
		URL:     "http://" + silentListener(t),
		Timeout: config.Duration(200 * time.Millisecond),
	})
	start := time.Now()
	_, err := q.Query(context.Background(), `vector(1)`, time.Now())
	if got := source.Reason(err); got != source.ReasonTimeout {
		t.Errorf("Reason(%v) = %q, want %q", err, got, source.ReasonTimeout)
	}
	if !errors.Is(err, source.ErrTimeout) {
		t.Errorf("error %v does not wrap source.ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("query took %s, want about the 200ms timeout", d)
	}
}

// recordedRequest is what the fake API server saw.
type recordedRequest struct {
	header http.Header
	form   map[string][]string
}

// fakeAPI answers every request with status and body and records the
// requests. It stands in for Prometheus only where the real server cannot
// show what is checked: request headers and canned error bodies.
func fakeAPI(t *testing.T, status int, body string) (string, func() []recordedRequest) {
	t.Helper()
	var (
		mu   sync.Mutex
		reqs []recordedRequest
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		reqs = append(reqs, recordedRequest{header: r.Header.Clone(), form: r.Form})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []recordedRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]recordedRequest(nil), reqs...)
	}
}

const okBody = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"version":"v2"},"value":[1700000000,"0.25"]}]},"warnings":["PromQL warning: something odd"]}`

func TestRequestHeadersAndAuth(t *testing.T) {
	for _, tc := range []struct {
		name  string
		http  commoncfg.HTTPClientConfig
		check func(t *testing.T, r recordedRequest)
	}{
		{
			name: "tenant header and basic auth",
			http: commoncfg.HTTPClientConfig{
				BasicAuth: &commoncfg.BasicAuth{Username: "guardian", Password: "s3cret"},
				HTTPHeaders: &commoncfg.Headers{Headers: map[string]commoncfg.Header{
					"X-Scope-OrgID": {Values: []string{"tenant-1"}},
				}},
			},
			check: func(t *testing.T, r recordedRequest) {
				if got := r.header.Get("X-Scope-OrgID"); got != "tenant-1" {
					t.Errorf("X-Scope-OrgID = %q, want tenant-1", got)
				}
				req := http.Request{Header: r.header}
				user, pass, ok := req.BasicAuth()
				if !ok || user != "guardian" || pass != "s3cret" {
					t.Errorf("basic auth = %q/%q (%v), want guardian/s3cret", user, pass, ok)
				}
			},
		},
		{
			name: "bearer token",
			http: commoncfg.HTTPClientConfig{
				Authorization: &commoncfg.Authorization{Credentials: "tok"},
			},
			check: func(t *testing.T, r recordedRequest) {
				if got := r.header.Get("Authorization"); got != "Bearer tok" {
					t.Errorf("Authorization = %q, want %q", got, "Bearer tok")
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, requests := fakeAPI(t, http.StatusOK, okBody)
			q := newQuerier(t, config.PrometheusSource{URL: url, Timeout: config.Duration(3 * time.Second), HTTPClientConfig: tc.http})
			at := time.Unix(1700000000, 0)
			res, err := q.Query(context.Background(), `up`, at)
			if err != nil {
				t.Fatalf("Query: %v", err)
			}
			if len(res.Vector) != 1 || res.Vector[0].Value != 0.25 || res.Vector[0].Metric["version"] != "v2" {
				t.Errorf("vector = %v, want one sample {version=v2} 0.25", res.Vector)
			}
			if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "something odd") {
				t.Errorf("warnings = %q, want the server's warning", res.Warnings)
			}
			reqs := requests()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			tc.check(t, r)
			if got := r.form["query"]; len(got) != 1 || got[0] != "up" {
				t.Errorf("query parameter = %q, want up", got)
			}
			if got := r.form["time"]; len(got) != 1 || got[0] != "1700000000" {
				t.Errorf("time parameter = %q, want 1700000000", got)
			}
			if got := r.form["timeout"]; len(got) != 1 || got[0] != "3s" {
				t.Errorf("timeout parameter = %q, want 3s", got)
			}
		})
	}
}

func TestServerErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		reason string
	}{
		{"server-side timeout", http.StatusServiceUnavailable, `{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`, source.ReasonTimeout},
		{"not ready", http.StatusServiceUnavailable, `{"status":"error","errorType":"unavailable","error":"TSDB not ready"}`, source.ReasonUnavailable},
		{"proxy 502", http.StatusBadGateway, `<html>bad gateway</html>`, source.ReasonUnavailable},
		{"bad_data", http.StatusBadRequest, `{"status":"error","errorType":"bad_data","error":"1:5: parse error"}`, source.ReasonBadQuery},
		{"unauthorized", http.StatusUnauthorized, `unauthorized`, source.ReasonOther},
		{"matrix result", http.StatusOK, `{"status":"success","data":{"resultType":"matrix","result":[]}}`, source.ReasonBadQuery},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := fakeAPI(t, tc.status, tc.body)
			q := newQuerier(t, config.PrometheusSource{URL: url})
			_, err := q.Query(context.Background(), `up`, time.Now())
			if err == nil {
				t.Fatal("Query succeeded, want error")
			}
			if got := source.Reason(err); got != tc.reason {
				t.Errorf("Reason(%v) = %q, want %q", err, got, tc.reason)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  config.PrometheusSource
		want string
	}{
		{"no url", config.PrometheusSource{}, "url is required"},
		{"two auth methods", config.PrometheusSource{URL: "http://127.0.0.1:9090", HTTPClientConfig: commoncfg.HTTPClientConfig{
			BasicAuth:   &commoncfg.BasicAuth{Username: "u"},
			BearerToken: "t",
		}}, "at most one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
