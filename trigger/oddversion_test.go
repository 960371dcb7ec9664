package trigger_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/source/embedded"
	"github.com/rollback-guardian/guardian/trigger"
)

// exposition serves counters in the Prometheus text format, as the test
// sets them.
type exposition struct {
	mu   sync.Mutex
	body string
}

func (e *exposition) set(body string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.body = body
}

func (e *exposition) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprint(w, e.body)
}

// escapeLabel escapes v for a label value of the text format.
func escapeLabel(v string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(v)
}

// A version label holding U+FFFD (the lexer reads it as invalid UTF-8)
// once made every query of the version fail, so a version failing every
// request raised nothing. Over the embedded source, the deploy is detected
// with the exact version and the trigger judges it violated.
func TestOddVersionLabelIsJudged(t *testing.T) {
	for _, bad := range []string{"v2-\uFFFD", "v2 \"quoted\" \\ \n`x`}[5s])) or vector(0)) * 0 #", "v2'"} {
		t.Run(fmt.Sprintf("%q", bad), func(t *testing.T) {
			ctx := context.Background()
			exp := &exposition{}
			srv := httptest.NewServer(exp)
			defer srv.Close()
			start := time.Unix(1_700_000_000, 0).UTC()
			now := start
			src, err := embedded.New(config.Scrape{URL: srv.URL, Interval: config.Duration(time.Second)},
				embedded.Options{Now: func() time.Time { return now }}, zaptest.NewLogger(t), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := src.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()

			det, err := rollout.NewDetector("checkout", rollout.Config{VersionQuery: `sum by (version) (rate(http_requests_total{service="{{.Service}}"}[5s]))`})
			if err != nil {
				t.Fatal(err)
			}
			var ev *rollout.Event
			for i := 0; i <= 15; i++ {
				now = start.Add(time.Duration(i) * time.Second)
				body := fmt.Sprintf("http_requests_total{service=\"checkout\",version=\"v1\",code=\"200\"} %d\n", 10*i)
				if i >= 6 { // the bad version fails every request
					body += fmt.Sprintf("http_requests_total{service=\"checkout\",version=\"%s\",code=\"500\"} %d\n", escapeLabel(bad), 10*(i-6))
				}
				exp.set(body)
				if err := src.ScrapeOnce(ctx); err != nil {
					t.Fatalf("scrape %d: %v", i, err)
				}
				if i%4 != 0 {
					continue
				}
				e, err := det.Observe(ctx, now, src)
				if err != nil {
					t.Fatalf("observe at %d: %v", i, err)
				}
				if e != nil && ev == nil {
					ev = e
				}
			}
			if ev == nil || ev.Version != bad || ev.Baseline != "v1" {
				t.Fatalf("deploy event %+v, want version %q replacing v1", ev, bad)
			}

			q, err := query.New("errors", `sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}"}[5s]))`)
			if err != nil {
				t.Fatal(err)
			}
			above := 0.05
			tr, err := trigger.New(trigger.Definition{Name: "errors", Query: q, Window: 5 * time.Second, Above: &above})
			if err != nil {
				t.Fatal(err)
			}
			v := tr.Eval(ctx, now, trigger.Deploy{Service: ev.Service, Version: ev.Version, Baseline: ev.Baseline, At: ev.At}, src.Query)
			if v.Outcome != trigger.Violated || v.Evidence.Value == nil || *v.Evidence.Value != 1 {
				t.Fatalf("outcome %s (value %v, error %v), want violated with an error ratio of 1\n%s", v.Outcome, v.Evidence.Value, v.Err, v.Evidence.Query)
			}
		})
	}
}
