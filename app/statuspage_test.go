package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/rollback-guardian/guardian/testenv"
)

const statusConfig = `global:
  evaluation_interval: 1s
  state_dir: %[1]s/data
  auth: {tokens_file: %[1]s/tokens}
services:
  - name: checkout
    scrape: {url: "http://127.0.0.1:1/metrics", interval: 1s}
    triggers: [{name: errors, query: 'sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))', above: 1}]
    rollback: {application: {command: {command: ["true"]}}}
  - name: search
    scrape: {url: "http://127.0.0.1:1/metrics", interval: 1s}
    triggers: [{name: errors, query: 'sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))', above: 1}]
  - name: internal-batch
    scrape: {url: "http://127.0.0.1:1/metrics", interval: 1s}
    triggers: [{name: errors, query: 'sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))', above: 1}]
status_page:
  title: Acme status
  services:
    checkout: {name: Checkout}
    internal-batch: {hidden: true}
  maintenance:
    - services: [search]
      start: %[2]s
      end: %[3]s
      message: Index rebuild
`

// guardian run serves the status page with live data on its listener and,
// alone, on the status listener.
func TestStatusPageServed(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UTC()
	cfg := fmt.Sprintf(statusConfig, dir, now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	if err := os.WriteFile(filepath.Join(dir, "guardian.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "approver-token-0123456789"
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte("alice:"+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{ConfigFile: filepath.Join(dir, "guardian.yml"), Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(),
		Listener: l, StatusListener: sl, NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	base, statusBase := "http://"+l.Addr().String(), "http://"+sl.Addr().String()
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testenv.EventuallyTrue(t, 10*time.Second, a.Ready, "Guardian to be ready")

	for _, b := range []string{base, statusBase} {
		code, page := get(b + "/status")
		if code != 200 {
			t.Fatalf("GET %s/status: %d", b, code)
		}
		for _, want := range []string{
			"<title>Acme status</title>",
			`data-service="checkout" data-state="operational"`,
			`data-service="search" data-state="under_maintenance"`,
			"Index rebuild",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("%s/status lacks %q", b, want)
			}
		}
		if strings.Contains(page, "internal-batch") {
			t.Errorf("%s/status shows a hidden service", b)
		}
	}
	if code, _ := get(statusBase + "/api/v1/status"); code != http.StatusNotFound {
		t.Errorf("the status listener serves /api/v1/status: %d", code)
	}

	// CI announces v2; a person asks to roll it back: checkout has an
	// open SEV-1 incident.
	post := func(path, body string, want int) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
	}
	post("/api/v1/deployments", `{"service": "checkout", "version": "v2", "baseline": "v1"}`, http.StatusAccepted)
	post("/api/v1/services/checkout/rollback", `{"reason": "customers report failed payments"}`, http.StatusCreated)
	testenv.Eventually(t, 10*time.Second, func() error {
		_, page := get(statusBase + "/status")
		if !strings.Contains(page, `data-service="checkout" data-state="major_outage"`) {
			return fmt.Errorf("checkout is not in a major outage")
		}
		if strings.Contains(page, "customers report failed payments") || strings.Contains(page, "alice") {
			return fmt.Errorf("the page shows the request's reason or its author")
		}
		return nil
	}, "the incident on the status page")
	_, feed := get(statusBase + "/status/feed.atom")
	if !strings.Contains(feed, "<title>Major outage of Checkout</title>") {
		t.Errorf("the feed lacks the incident:\n%s", feed)
	}
}
