package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fakeAPI answers /api/v1/query like Prometheus: a vector of two series
// (code 200 and 500), and echoes the query it evaluated in a header.
func fakeAPI(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		w.Header().Set("X-Query", r.Form.Get("query"))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[`+
			`{"metric":{"code":"200"},"value":[1700000000,"95"]},`+
			`{"metric":{"code":"500"},"value":[1700000000,"5"]}]}}`)
	})
	return serveTest(t, mux)
}

func serveTest(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
	l := listen(t)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

type answer struct {
	code    int
	query   string
	body    string
	err     error
	elapsed time.Duration
}

func get(ctx context.Context, base string, post bool) answer {
	q := `sum by (code) (rate(http_requests_total{version="v2"}[1m]))`
	var req *http.Request
	if post {
		req, _ = http.NewRequestWithContext(ctx, "POST", base+"/api/v1/query",
			strings.NewReader(url.Values{"query": {q}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req, _ = http.NewRequestWithContext(ctx, "GET", base+"/api/v1/query?"+url.Values{"query": {q}}.Encode(), nil)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, query: resp.Header.Get("X-Query"), body: string(b), err: err, elapsed: time.Since(start)}
}

func TestFaultProxy(t *testing.T) {
	p := StartFaultProxy(t, fakeAPI(t))
	ctx := context.Background()

	t.Run("pass", func(t *testing.T) {
		p.Set(Fault{})
		a := get(ctx, p.URL, true)
		if a.err != nil || a.code != 200 || !strings.Contains(a.body, `"code":"500"`) ||
			a.query != `sum by (code) (rate(http_requests_total{version="v2"}[1m]))` {
			t.Fatalf("%+v", a)
		}
	})
	t.Run("down", func(t *testing.T) {
		p.Set(Fault{Mode: Down})
		if a := get(ctx, p.URL, false); a.err == nil {
			t.Fatalf("answered while down: %+v", a)
		}
	})
	t.Run("slow", func(t *testing.T) {
		p.Set(Fault{Mode: Slow, Delay: 300 * time.Millisecond})
		a := get(ctx, p.URL, false)
		if a.err != nil || a.code != 200 || a.elapsed < 300*time.Millisecond {
			t.Fatalf("%+v", a)
		}
		// A client that gives up first gets its deadline.
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if a := get(cctx, p.URL, false); !errors.Is(a.err, context.DeadlineExceeded) {
			t.Fatalf("want a deadline error, got %+v", a)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		p.Set(Fault{Mode: Garbage})
		a := get(ctx, p.URL, false)
		if a.code != 200 || json.Valid([]byte(a.body)) {
			t.Fatalf("%+v", a)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		p.Set(Fault{Mode: Truncated})
		a := get(ctx, p.URL, true)
		if a.code != 200 || json.Valid([]byte(a.body)) || !strings.HasPrefix(a.body, `{"status":"success"`) {
			t.Fatalf("%+v", a)
		}
	})
	t.Run("status", func(t *testing.T) {
		p.Set(Fault{Mode: Status, Code: 500})
		if a := get(ctx, p.URL, false); a.code != 500 {
			t.Fatalf("%+v", a)
		}
		p.Set(Fault{Mode: Status})
		if a := get(ctx, p.URL, false); a.code != 503 {
			t.Fatalf("%+v", a)
		}
	})
	t.Run("partial", func(t *testing.T) {
		p.Set(Fault{Mode: Partial, Hide: `{code=~"5.."}`, Warnings: []string{PartialWarning}})
		for _, post := range []bool{false, true} {
			a := get(ctx, p.URL, post)
			if a.query != `sum by (code) (rate(http_requests_total{code!~"5..",version="v2"}[1m]))` {
				t.Errorf("post %v: upstream evaluated %q", post, a.query)
			}
			var ans struct {
				Status string `json:"status"`
				Data   struct {
					ResultType string `json:"resultType"`
					Result     []struct {
						Metric map[string]string `json:"metric"`
					} `json:"result"`
				} `json:"data"`
				Warnings []string `json:"warnings"`
			}
			if err := json.Unmarshal([]byte(a.body), &ans); err != nil {
				t.Fatalf("post %v: %v in %s", post, err, a.body)
			}
			if ans.Status != "success" || ans.Data.ResultType != "vector" || len(ans.Data.Result) != 1 ||
				ans.Data.Result[0].Metric["code"] != "200" || len(ans.Warnings) != 1 || ans.Warnings[0] != PartialWarning {
				t.Errorf("post %v: answer %s", post, a.body)
			}
		}
	})

	// Down's count is at least 1: the client retries a GET once when a
	// reused connection is closed.
	if got := p.Requests(Down); got < 1 || got > 2 {
		t.Errorf("down: %d requests, want 1 or 2", got)
	}
	t.Run("partial empty", func(t *testing.T) {
		p.Set(Fault{Mode: Partial, EmptyIf: "rate(http_requests_total"})
		a := get(ctx, p.URL, true)
		if a.query != `sum by (code) (rate(http_requests_total{version="v2"}[1m]))` ||
			!strings.Contains(a.body, `"result":[]`) || strings.Contains(a.body, "warnings") {
			t.Errorf("upstream evaluated %q; answer %s", a.query, a.body)
		}
	})

	for m, want := range map[FaultMode]int{Pass: 1, Slow: 2, Garbage: 1, Truncated: 1, Status: 2, Partial: 3} {
		if got := p.Requests(m); got != want {
			t.Errorf("%s: %d requests, want %d", m, got, want)
		}
	}
}

func TestFaultProxySetRejectsBadHide(t *testing.T) {
	p := StartFaultProxy(t, "http://127.0.0.1:1")
	defer func() {
		if recover() == nil {
			t.Fatal("Set accepted two matchers")
		}
	}()
	p.Set(Fault{Mode: Partial, Hide: `{code="500",version="v2"}`})
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}
