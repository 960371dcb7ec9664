package embedded

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/config"
)

// TestScrapeURLCredentialsNeverShown scrapes a target whose URL carries
// credentials in its user info and query: no log line, error or metric
// label shows them, the host and path do.
func TestScrapeURLCredentialsNeverShown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	u := strings.Replace(srv.URL, "://", "://USERSECRET:PASSWORDSECRET@", 1) + "/metrics?token=QUERYSECRET"
	core, logs := observer.New(zap.DebugLevel)
	reg := prometheus.NewRegistry()
	s, err := New(config.Scrape{URL: u, Timeout: config.Duration(2 * time.Second)}, Options{}, zap.New(core), reg)
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	errs = append(errs, s.ScrapeOnce(context.Background())) // 500
	srv.Close()
	errs = append(errs, s.ScrapeOnce(context.Background())) // refused
	_, qerr := s.Query(context.Background(), "up{", time.Now())
	errs = append(errs, qerr)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, qerr = s.Query(context.Background(), "up", time.Now())
	errs = append(errs, qerr)

	var texts []string
	for _, err := range errs {
		if err == nil {
			t.Fatalf("want every call to fail, got %v", errs)
		}
		texts = append(texts, err.Error())
	}
	for _, l := range logs.All() {
		enc, _ := json.Marshal(l.ContextMap())
		texts = append(texts, l.Message+" "+string(enc))
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				texts = append(texts, mf.GetName()+" "+lp.GetValue())
			}
		}
	}
	if len(logs.FilterMessageSnippet("scrape failed").All()) == 0 {
		t.Fatalf("no log line of the failed scrape: %v", logs.All())
	}
	for _, text := range texts {
		for _, secret := range []string{"USERSECRET", "PASSWORDSECRET", "QUERYSECRET"} {
			if strings.Contains(text, secret) {
				t.Errorf("%q leaks %s", text, secret)
			}
		}
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	if !strings.Contains(errs[1].Error(), host+"/metrics") {
		t.Errorf("error %q does not name the target %s/metrics", errs[1], host)
	}
}

func TestRedact(t *testing.T) {
	for raw, want := range map[string]string{
		"http://10.0.0.1:8080/metrics":                     "http://10.0.0.1:8080/metrics",
		"https://user:pass@host/metrics":                   "https://<secret>@host/metrics",
		"https://host/metrics?token=abc&x=1":               "https://host/metrics?<secret>",
		"https://user@host:9/a%2Fb/metrics?token=abc#frag": "https://<secret>@host:9/a%2Fb/metrics?<secret>",
		"http://host/%zz":                                  "<unparsable URL>",
	} {
		if got := redact(raw); got != want {
			t.Errorf("redact(%q) = %q, want %q", raw, got, want)
		}
	}
}
