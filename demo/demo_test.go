package demo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newService returns a seeded Service and its registry.
func newService(t *testing.T, seed uint64) (*Service, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return New(Options{Registry: reg, Seed: seed}), reg
}

// hit sends one app request to h and returns the status code and serving version.
func hit(h http.Handler) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	return rec.Code, rec.Header().Get("X-Version")
}

// counter reads http_requests_total{version,code} from reg; 0 if absent.
func counter(t *testing.T, reg prometheus.Gatherer, version, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["version"] == version && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// within fails unless got is within k standard deviations of a binomial(n, p) count.
func withinBinomial(t *testing.T, what string, got, n int, p, k float64) {
	t.Helper()
	mean := float64(n) * p
	tol := k * math.Sqrt(float64(n)*p*(1-p))
	if math.Abs(float64(got)-mean) > tol {
		t.Errorf("%s: got %d of %d, want %.0f ± %.0f", what, got, n, mean, tol)
	}
}

func TestErrorRate(t *testing.T) {
	const n = 2000
	for _, rate := range []float64{0, 0.2, 1} {
		t.Run(strconv.FormatFloat(rate, 'g', -1, 64), func(t *testing.T) {
			s, reg := newService(t, 42)
			if err := s.Deploy(Version{Version: "v1", ErrorRate: rate}); err != nil {
				t.Fatal(err)
			}
			failures := 0
			for range n {
				code, _ := hit(s)
				switch code {
				case http.StatusInternalServerError:
					failures++
				case http.StatusOK:
				default:
					t.Fatalf("unexpected status %d", code)
				}
			}
			withinBinomial(t, "failures", failures, n, rate, 4)
			if got := counter(t, reg, "v1", "500"); got != float64(failures) {
				t.Errorf(`http_requests_total{code="500"} = %v, want %d`, got, failures)
			}
			if got := counter(t, reg, "v1", "200"); got != float64(n-failures) {
				t.Errorf(`http_requests_total{code="200"} = %v, want %d`, got, n-failures)
			}
		})
	}
}

func TestSeedIsDeterministic(t *testing.T) {
	outcomes := func(seed uint64) string {
		s, _ := newService(t, seed)
		if err := s.SetVersions([]Version{
			{Version: "v1", Weight: 1, ErrorRate: 0.5},
			{Version: "v2", Weight: 1, ErrorRate: 0.5},
		}); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for range 200 {
			code, v := hit(s)
			b.WriteString(v + ":" + strconv.Itoa(code) + " ")
		}
		return b.String()
	}
	if first, second := outcomes(7), outcomes(7); first != second {
		t.Error("the same seed gave different outcomes")
	}
	if outcomes(7) == outcomes(8) {
		t.Error("different seeds gave the same 200 outcomes")
	}
}

func TestWeightsSplitTraffic(t *testing.T) {
	const n = 2000
	tests := []struct {
		name   string
		w1, w2 float64
	}{
		{"even", 1, 1},
		{"canary 10%", 9, 1},
		{"3 to 1", 3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, reg := newService(t, 1)
			if err := s.SetVersions([]Version{
				{Version: "v1", Weight: tc.w1},
				{Version: "v2", Weight: tc.w2},
			}); err != nil {
				t.Fatal(err)
			}
			v2 := 0
			for range n {
				if _, v := hit(s); v == "v2" {
					v2++
				}
			}
			withinBinomial(t, "requests served by v2", v2, n, tc.w2/(tc.w1+tc.w2), 4)
			if got := counter(t, reg, "v2", "200"); got != float64(v2) {
				t.Errorf(`http_requests_total{version="v2"} = %v, want %d`, got, v2)
			}
		})
	}
}

// sample finds the value of the series name{labels} in a text or OpenMetrics exposition.
func sample(t *testing.T, body, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		lbls, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		got := map[string]string{}
		for pair := range strings.SplitSeq(lbls, ",") {
			k, v, _ := strings.Cut(pair, "=")
			got[k] = strings.Trim(v, `"`)
		}
		if len(got) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		if !match {
			continue
		}
		f, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			t.Fatalf("parsing value of %q: %v", line, err)
		}
		return f, true
	}
	return 0, false
}

func TestMetricsExposition(t *testing.T) {
	s, _ := newService(t, 3)
	srv := httptest.NewServer(s)
	defer srv.Close()

	get := func(t *testing.T, path string) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for range 5 {
		get(t, "/")
	}
	if err := s.Deploy(Version{Version: "v2", ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		get(t, "/some/other/path")
	}

	tests := []struct {
		name, accept, wantType string
	}{
		{"text", "", "text/plain"},
		{"openmetrics", "application/openmetrics-text", "application/openmetrics-text"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			body := string(b)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.wantType) {
				t.Errorf("Content-Type = %q, want %s", ct, tc.wantType)
			}
			for _, want := range []struct {
				version, code string
				value         float64
			}{
				{"v1", "200", 5}, // kept after v1 stopped serving
				{"v2", "500", 3},
			} {
				got, ok := sample(t, body, "http_requests_total", map[string]string{"version": want.version, "code": want.code})
				if !ok || got != want.value {
					t.Errorf("http_requests_total{version=%q,code=%q} = %v (found %v), want %v\n%s",
						want.version, want.code, got, ok, want.value, body)
				}
			}
			if got, ok := sample(t, body, "http_request_duration_seconds_count", map[string]string{"version": "v1"}); !ok || got != 5 {
				t.Errorf("http_request_duration_seconds_count{version=v1} = %v (found %v), want 5", got, ok)
			}
			if _, ok := sample(t, body, "app_build_info", map[string]string{"version": "v1"}); ok {
				t.Error("app_build_info{version=v1} still exported after deploying v2")
			}
			if tc.name == "openmetrics" && !strings.HasSuffix(body, "# EOF\n") {
				t.Error("OpenMetrics exposition does not end with # EOF")
			}
		})
	}
}

func TestBuildInfoFollowsLiveVersions(t *testing.T) {
	s, reg := newService(t, 1)
	steps := []struct {
		name   string
		change func() error
		want   []string
	}{
		{"initial", func() error { return nil }, []string{"v1"}},
		{"canary", func() error {
			return s.SetVersions([]Version{{Version: "v1", Weight: 9}, {Version: "v2", Weight: 1}})
		}, []string{"v1", "v2"}},
		{"deploy", func() error { return s.Deploy(Version{Version: "v3"}) }, []string{"v3"}},
		{"rejected change keeps state", func() error {
			if err := s.Deploy(Version{Version: "v4", ErrorRate: 2}); err == nil {
				return errors.New("invalid deploy accepted")
			}
			return nil
		}, []string{"v3"}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			if err := step.change(); err != nil {
				t.Fatal(err)
			}
			var want strings.Builder
			want.WriteString("# HELP app_build_info Always 1 for each version of the application that is live.\n# TYPE app_build_info gauge\n")
			for _, v := range step.want {
				want.WriteString(`app_build_info{version="` + v + `"} 1` + "\n")
			}
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want.String()), "app_build_info"); err != nil {
				t.Error(err)
			}
			var live []string
			for _, v := range s.Versions() {
				live = append(live, v.Version)
			}
			if strings.Join(live, ",") != strings.Join(step.want, ",") {
				t.Errorf("Versions() = %v, want %v", live, step.want)
			}
		})
	}
}

// do sends a request with an optional body to h and returns the recorder.
func do(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec
}

func TestAdminValidation(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		wantCode                 int
		wantErr                  string
	}{
		{"error rate above 1", "PUT", "/admin/state", `{"versions":[{"version":"v2","error_rate":1.5}]}`, 400, "error_rate must be within [0, 1], got 1.5"},
		{"negative error rate on deploy", "POST", "/admin/deploy", `{"version":"v2","error_rate":-0.1}`, 400, "error_rate must be within [0, 1]"},
		{"zero weight", "PUT", "/admin/state", `{"versions":[{"version":"v1","weight":1},{"version":"v2","weight":0}]}`, 400, `versions[1]: invalid version: version "v2": weight must be > 0`},
		{"negative weight", "PUT", "/admin/state", `{"versions":[{"version":"v2","weight":-1}]}`, 400, "weight must be > 0"},
		{"empty version", "POST", "/admin/deploy", `{"error_rate":0.1}`, 400, "version name must not be empty"},
		{"long version", "POST", "/admin/deploy", `{"version":"` + strings.Repeat("x", MaxVersionLen+1) + `"}`, 400, "the maximum is 128"},
		{"control character", "POST", "/admin/deploy", `{"version":"v\n2"}`, 400, "without control characters"},
		{"negative latency", "POST", "/admin/deploy", `{"version":"v2","latency_ms":-5}`, 400, "latency_ms must be within [0, 60000]"},
		{"huge latency", "POST", "/admin/deploy", `{"version":"v2","latency_ms":1e300}`, 400, "latency_ms must be within"},
		{"no versions", "PUT", "/admin/state", `{"versions":[]}`, 400, "at least one version"},
		{"duplicate", "PUT", "/admin/state", `{"versions":[{"version":"v1"},{"version":"v1"}]}`, 400, `version "v1" is listed twice`},
		{"too many", "PUT", "/admin/state", `{"versions":[` + strings.Repeat(`{"version":"v"},`, MaxVersions) + `{"version":"v"}]}`, 400, "at most 16 may be live"},
		{"unknown field", "POST", "/admin/deploy", `{"version":"v2","errorrate":0.5}`, 400, `unknown field "errorrate"`},
		{"malformed", "PUT", "/admin/state", `{"versions":`, 400, "decoding request body"},
		{"empty body", "POST", "/admin/deploy", ``, 400, "got nothing"},
		{"trailing data", "POST", "/admin/deploy", `{"version":"v2"} {}`, 400, "unexpected data after the JSON object"},
		{"wrong type", "POST", "/admin/deploy", `{"version":"v2","error_rate":"high"}`, 400, "decoding request body"},
		{"body too large", "POST", "/admin/deploy", `{"version":"` + strings.Repeat("x", maxAdminBody) + `"}`, 413, "exceeds 65536 bytes"},
		{"wrong method", "DELETE", "/admin/state", ``, 405, "method DELETE not allowed on /admin/state"},
		{"deploy by GET", "GET", "/admin/deploy", ``, 405, "allowed: POST"},
		{"unknown admin path", "GET", "/admin/nope", ``, 404, "no admin endpoint /admin/nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newService(t, 1)
			rec := do(s, tc.method, tc.path, tc.body)
			if rec.Code != tc.wantCode {
				t.Errorf("status = %d, want %d; body %s", rec.Code, tc.wantCode, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var e errorJSON
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("error body %q is not JSON: %v", rec.Body, err)
			}
			if !strings.Contains(e.Error, tc.wantErr) {
				t.Errorf("error = %q, want it to contain %q", e.Error, tc.wantErr)
			}
			if vs := s.Versions(); len(vs) != 1 || vs[0] != (Version{Version: "v1", Weight: 1}) {
				t.Errorf("state changed by a rejected request: %+v", vs)
			}
		})
	}
}

func TestAdminState(t *testing.T) {
	s, _ := newService(t, 1)

	rec := do(s, "PUT", "/admin/state", `{"versions":[{"version":"v1","weight":3,"error_rate":0.01},{"version":"v2","error_rate":0.2,"latency_ms":20.5}],"healthy":false}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("PUT /admin/state: %d %s", rec.Code, rec.Body)
	}
	want := []Version{
		{Version: "v1", Weight: 3, ErrorRate: 0.01},
		{Version: "v2", Weight: 1, ErrorRate: 0.2, Latency: 20500 * time.Microsecond},
	}
	if got := s.Versions(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Versions() = %+v, want %+v", got, want)
	}
	if s.Healthy() {
		t.Error("still healthy after PUT healthy=false")
	}

	rec = do(s, "GET", "/admin/state", "")
	wantJSON := `{"versions":[{"version":"v1","weight":3,"error_rate":0.01,"latency_ms":0},{"version":"v2","weight":1,"error_rate":0.2,"latency_ms":20.5}],"healthy":false}` + "\n"
	if rec.Code != http.StatusOK || rec.Body.String() != wantJSON {
		t.Errorf("GET /admin/state = %d %s, want 200 %s", rec.Code, rec.Body, wantJSON)
	}

	rec = do(s, "PUT", "/admin/state", `{"healthy":true}`)
	if rec.Code != http.StatusOK || !s.Healthy() || len(s.Versions()) != 2 {
		t.Errorf("PUT healthy only: %d %s, healthy %v, versions %+v", rec.Code, rec.Body, s.Healthy(), s.Versions())
	}

	rec = do(s, "POST", "/admin/deploy", `{"version":"v3","error_rate":0.05,"latency_ms":20}`)
	wantV3 := Version{Version: "v3", Weight: 1, ErrorRate: 0.05, Latency: 20 * time.Millisecond}
	if got := s.Versions(); rec.Code != http.StatusOK || len(got) != 1 || got[0] != wantV3 {
		t.Errorf("POST /admin/deploy: %d %s, versions %+v, want [%+v]", rec.Code, rec.Body, got, wantV3)
	}
}

func TestHealthz(t *testing.T) {
	s, _ := newService(t, 1)
	tests := []struct {
		name     string
		set      func()
		wantCode int
		wantBody string
	}{
		{"default", func() {}, 200, "ok\n"},
		{"unhealthy via admin", func() { do(s, "PUT", "/admin/state", `{"healthy":false}`) }, 503, "unhealthy\n"},
		{"healthy via method", func() { s.SetHealthy(true) }, 200, "ok\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.set()
			rec := do(s, "GET", "/healthz", "")
			if rec.Code != tc.wantCode || rec.Body.String() != tc.wantBody {
				t.Errorf("GET /healthz = %d %q, want %d %q", rec.Code, rec.Body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestLatency(t *testing.T) {
	s, reg := newService(t, 1)
	if err := s.Deploy(Version{Version: "v1", Latency: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, _ := hit(s)
	if elapsed := time.Since(start); elapsed < 50*time.Millisecond {
		t.Errorf("request took %s, want >= 50ms", elapsed)
	}
	if code != http.StatusOK {
		t.Errorf("status = %d, want 200", code)
	}
	var sum float64
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "http_request_duration_seconds" {
			sum = mf.GetMetric()[0].GetHistogram().GetSampleSum()
		}
	}
	if sum < 0.05 {
		t.Errorf("observed duration %v s, want >= 0.05", sum)
	}
}

func TestLatencyRespectsCancellation(t *testing.T) {
	s, reg := newService(t, 1)
	if err := s.Deploy(Version{Version: "v1", Latency: MaxLatency}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx))
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("cancelled request took %s", elapsed)
	}
	if rec.Body.Len() != 0 {
		t.Errorf("cancelled request got a body %q", rec.Body)
	}
	if got := counter(t, reg, "v1", "200"); got != 0 {
		t.Errorf("cancelled request counted: %v", got)
	}
}

func TestConcurrentRequestsAndChanges(t *testing.T) {
	s, reg := newService(t, 1)
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				hit(s)
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			_ = s.SetVersions([]Version{{Version: "v1", Weight: 1, ErrorRate: 0.5}, {Version: "v2", Weight: float64(i + 1)}})
			_ = s.Deploy(Version{Version: "v1"})
			s.SetHealthy(i%2 == 0)
		}
	})
	wg.Wait()
	total := 0.0
	for _, v := range []string{"v1", "v2"} {
		for _, c := range []string{"200", "500"} {
			total += counter(t, reg, v, c)
		}
	}
	if total != workers*each {
		t.Errorf("counted %v requests, want %d", total, workers*each)
	}
}

func TestVersionValidate(t *testing.T) {
	tests := []struct {
		name string
		v    Version
		ok   bool
	}{
		{"valid", Version{Version: "v1", Weight: 1, ErrorRate: 0.5, Latency: time.Second}, true},
		{"bounds", Version{Version: "v1", Weight: MaxWeight, ErrorRate: 1, Latency: MaxLatency}, true},
		{"NaN error rate", Version{Version: "v1", Weight: 1, ErrorRate: math.NaN()}, false},
		{"infinite weight", Version{Version: "v1", Weight: math.Inf(1)}, false},
		{"zero weight", Version{Version: "v1"}, false},
		{"latency too long", Version{Version: "v1", Weight: 1, Latency: MaxLatency + 1}, false},
		{"invalid UTF-8", Version{Version: "v\xff", Weight: 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.v.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidVersion) {
				t.Errorf("error %v does not wrap ErrInvalidVersion", err)
			}
		})
	}
}

func TestRollback(t *testing.T) {
	s := New(Options{Seed: 3})
	if err := s.Deploy(Version{Version: "v1", ErrorRate: 0.01, Latency: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := s.Deploy(Version{Version: "v2", ErrorRate: 0.5}); err != nil {
		t.Fatal(err)
	}
	// Guardian's webhook executor payload, extra fields included.
	body := `{"incident":1,"service":"checkout","version":"v2","baseline":"v1","step":"application","idempotency_key":"incident-1/rollback.application"}`
	for i := range 2 { // a repeated request is harmless
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("POST", "/admin/rollback", strings.NewReader(body)))
		if w.Code != 200 {
			t.Fatalf("attempt %d: %d %s", i, w.Code, w.Body)
		}
	}
	vs := s.Versions()
	if len(vs) != 1 || vs[0].Version != "v1" || vs[0].ErrorRate != 0.01 || vs[0].Latency != 5*time.Millisecond {
		t.Fatalf("after rollback: %+v", vs)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("POST", "/admin/rollback", strings.NewReader(`{"baseline":"v0"}`)))
	if w.Code != 400 || !strings.Contains(w.Body.String(), "never deployed") {
		t.Fatalf("unknown baseline: %d %s", w.Code, w.Body)
	}
}
