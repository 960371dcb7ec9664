package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/rollback-guardian/guardian/app"
	"github.com/rollback-guardian/guardian/demo"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/watch"
)

// Mode is the metric source under test.
type Mode string

const (
	modePrometheus Mode = "prometheus"
	modeEmbedded   Mode = "embedded"
)

var modes = []Mode{modePrometheus, modeEmbedded}

const (
	apiToken      = "e2e-token-000000000000001"
	webhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

// configTmpl is the guardian configuration of the end-to-end stack: one
// service, the demo, with an error-rate trigger judged against the baseline:
// thresholds with for: 3s, or (Sequential) the sequential test on counts
// since the deploy; or (Latency) a latency trigger, the latency test on the
// request duration histogram since the deploy.
var configTmpl = template.Must(template.New("cfg").Parse(`
global:
  evaluation_interval: 1s
  state_dir: {{.Dir}}/data
  auth:
    tokens_file: {{.Dir}}/tokens
{{- if .Rollback}}
  postmortem:
    organizer: "Release Manager <rm@example.com>"
    attendees: ["oncall@example.com"]
notifiers:
  - name: oncall
    webhook:
      url: {{.ReceiverURL}}
      secret_file: {{.Dir}}/hmac
{{- if .SlackAPI}}
  - name: slack
    slack:
      channel: C0E2ECHAN
      token_file: {{.Dir}}/slack-token
      signing_secret_file: {{.Dir}}/slack-signing
      api_url: {{.SlackAPI}}
{{- end}}
{{- end}}
{{- if .PrometheusURL}}
sources:
  - name: prom
    prometheus:
      url: {{.PrometheusURL}}
      timeout: {{.Timeout}}
{{- end}}
services:
  - name: checkout
{{- if .PrometheusURL}}
    source: prom
{{- else}}
    scrape:
      url: {{.ScrapeURL}}
      interval: 1s
      timeout: 900ms
{{- end}}
    deploy:
      version_query: 'sum by (version) (rate(http_requests_total[10s]))'
    watch_window: {{.Watch}}
    triggers:
{{- if .Sequential}}
      - name: error-rate
        sequential:
          errors: 'sum(increase(http_requests_total{version="{{"{{.Version}}"}}",code=~"5.."}[{{"{{.SinceDeploy}}"}}])) or vector(0)'
          requests: 'sum(increase(http_requests_total{version="{{"{{.Version}}"}}"}[{{"{{.SinceDeploy}}"}}]))'
          baseline_window: 5m
        above: 0.05
        window: 10s
{{- else if .Latency}}
      - name: latency
        latency:
          buckets: 'sum by (le) (increase(http_request_duration_seconds_bucket{version="{{"{{.Version}}"}}"}[{{"{{.SinceDeploy}}"}}]))'
          baseline_window: 5m
        window: 10s
{{- else}}
      - name: error-rate
        query: >-
          (sum(rate(http_requests_total{version="{{"{{.Version}}"}}",code=~"5.."}[{{"{{.Window}}"}}])) or vector(0))
          / sum(rate(http_requests_total{version="{{"{{.Version}}"}}"}[{{"{{.Window}}"}}]))
        window: 10s
        above: 0.05
        above_baseline: 2x
        for: 3s
        min_requests: 20
        volume_query: 'sum(increase(http_requests_total{version="{{"{{.Version}}"}}"}[{{"{{.Window}}"}}]))'
{{- end}}
{{- if .Rollback}}
    notify: [oncall{{if .SlackAPI}}, slack{{end}}]
    responders:
      - {role: incident_commander, name: Ana Silva, email: ana@example.com}
      - {role: dba, name: Bo Chen, email: bo@example.com}
    approval: {mode: {{.Approval}}{{if .SlackAPI}}, slack_approvers: [{{.SlackApprover}}]{{end}}}
    rollback:
      application:
        command:
          command: [sh, -c, {{.Rollback}}]
          timeout: 1m
    recovery:
      tolerance: 0.5
      stable_for: 3s
      timeout: 1m
      smoke:
        - {name: healthz, url: "{{.DemoURL}}/healthz", body_contains: ok}
{{- end}}
`))

// stack is the demo service under load, optionally a real Prometheus
// scraping it, and Guardian watching it.
type stack struct {
	t         testing.TB
	mode      Mode
	dir       string
	demo      *demo.Service
	demoURL   string
	metricsUp atomic.Bool
	prom      *testenv.Prometheus
	fault     *testenv.FaultProxy
	app       *app.App
	reg       *prometheus.Registry
	apiURL    string
	cfgPath   string
	proc      *guardianProc

	mu       sync.Mutex
	verdicts []seen
}

type seen struct {
	deploy  rollout.Event
	verdict trigger.Verdict
}

type stackOpts struct {
	watch time.Duration
	// rollback, when set, is the shell command of the command executor;
	// it enables incidents: notifications to receiverURL, manual approval,
	// recovery with a smoke check.
	rollback    string
	receiverURL string
	// approval is the approval mode (default manual).
	approval string
	// external runs Guardian as a separate process (the binary), not in
	// this test process.
	external bool
	// fault puts a FaultProxy (s.fault) between Guardian and its metric
	// source: Prometheus, or the service's /metrics for the embedded source.
	fault bool
	// sourceTimeout is the Prometheus source's timeout (default 2s).
	sourceTimeout time.Duration
	// slackAPI, with rollback, adds a Slack notifier calling this Web API
	// URL, signed with slackSigningSecret, whose buttons slackApprover may use.
	slackAPI string
	// sequential makes the error-rate trigger the sequential test (with
	// above: 0.05) instead of thresholds.
	sequential bool
	// latency replaces the error-rate trigger with a latency trigger.
	latency bool
}

// The Slack app of the stack's Slack notifier.
const (
	slackToken         = "xoxb-e2e-0000-token"
	slackSigningSecret = "e2e-slack-signing-secret"
	slackApprover      = "U0E2EAPPROVER"
)

func startStack(t testing.TB, mode Mode, o stackOpts) *stack {
	t.Helper()
	if o.watch == 0 {
		o.watch = 60 * time.Second
	}
	s := &stack{t: t, mode: mode, dir: t.TempDir()}
	s.metricsUp.Store(true)

	// The demo service, v1 healthy (0.5% errors), under 100 req/s.
	s.demo = demo.New(demo.Options{Seed: 1})
	if err := s.demo.Deploy(demo.Version{Version: "v1", ErrorRate: 0.005}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if !s.metricsUp.Load() {
			http.Error(w, "metrics endpoint down", http.StatusServiceUnavailable)
			return
		}
		s.demo.ServeHTTP(w, r)
	})
	mux.Handle("/", s.demo)
	s.demoURL = serve(t, mux)
	ctx, cancel := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		_, _ = demo.Load{Target: s.demoURL + "/", RPS: 100, Concurrency: 16}.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-loadDone })

	promURL := ""
	if mode == modePrometheus {
		s.prom = testenv.StartPrometheus(t, time.Second, s.demoURL+"/metrics")
		promURL = s.prom.URL
	}
	scrapeURL := s.demoURL + "/metrics"
	if o.fault {
		s.fault = testenv.StartFaultProxy(t, cmp.Or(promURL, s.demoURL))
		if promURL != "" {
			promURL = s.fault.URL
		} else {
			scrapeURL = s.fault.URL + "/metrics"
		}
	}
	if err := os.WriteFile(filepath.Join(s.dir, "tokens"), []byte("ci:"+apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "hmac"), []byte(webhookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if o.slackAPI != "" {
		for name, v := range map[string]string{"slack-token": slackToken, "slack-signing": slackSigningSecret} {
			if err := os.WriteFile(filepath.Join(s.dir, name), []byte(v+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	var cfg bytes.Buffer
	rollback := ""
	if o.rollback != "" {
		rollback = strconv.Quote(o.rollback)
	}
	if err := configTmpl.Execute(&cfg, map[string]any{
		"Dir": s.dir, "PrometheusURL": promURL, "DemoURL": s.demoURL, "Watch": o.watch.String(),
		"Rollback": rollback, "ReceiverURL": o.receiverURL, "Approval": cmp.Or(o.approval, "manual"),
		"ScrapeURL": scrapeURL, "Timeout": cmp.Or(o.sourceTimeout, 2*time.Second).String(),
		"SlackAPI": o.slackAPI, "SlackApprover": slackApprover, "Sequential": o.sequential, "Latency": o.latency,
	}); err != nil {
		t.Fatal(err)
	}
	s.cfgPath = filepath.Join(s.dir, "guardian.yml")
	if err := os.WriteFile(s.cfgPath, cfg.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if o.external {
		s.proc = startProc(t, s.cfgPath)
		s.apiURL = s.proc.url
		testenv.Eventually(t, 60*time.Second, func() error {
			var st []watch.ServiceStatus
			if err := s.getJSON("/api/v1/status", &st); err != nil {
				return err
			}
			if st[0].Current != "v1" {
				return fmt.Errorf("current version %q", st[0].Current)
			}
			return nil
		}, "guardian to learn the running version")
		return s
	}
	cfgPath := s.cfgPath

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.apiURL = "http://" + l.Addr().String()
	s.reg = prometheus.NewRegistry()
	s.app, err = app.New(app.Options{
		ConfigFile: cfgPath,
		Logger:     zaptest.NewLogger(t),
		Registry:   s.reg,
		Listener:   l,
		OnVerdict: func(_ context.Context, d rollout.Event, v trigger.Verdict) {
			s.mu.Lock()
			s.verdicts = append(s.verdicts, seen{d, v})
			s.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.app.Run(actx) }()
	t.Cleanup(func() {
		acancel()
		if err := <-done; err != nil {
			t.Errorf("guardian stopped with %v", err)
		}
	})
	// Guardian has learnt that v1 is running.
	testenv.Eventually(t, 60*time.Second, func() error {
		if st := s.app.Status(); st[0].Current != "v1" {
			return fmt.Errorf("current version %q", st[0].Current)
		}
		return nil
	}, "guardian to learn the running version")
	return s
}

func serve(t testing.TB, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + l.Addr().String()
}

// firing returns the first firing verdict seen, if any.
func (s *stack) firing() (seen, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.verdicts {
		if v.verdict.State == trigger.Firing {
			return v, true
		}
	}
	return seen{}, false
}

// count counts verdicts for version with outcome o.
func (s *stack) count(version string, o trigger.Outcome) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.verdicts {
		if v.deploy.Version == version && v.verdict.Outcome == o {
			n++
		}
	}
	return n
}

func (s *stack) waitFiring(timeout time.Duration) seen {
	s.t.Helper()
	var f seen
	testenv.Eventually(s.t, timeout, func() error {
		var ok bool
		if f, ok = s.firing(); !ok {
			return fmt.Errorf("no firing verdict yet; status %+v", s.status())
		}
		return nil
	}, "the trigger to fire")
	return f
}

func (s *stack) status() string {
	b, _ := json.Marshal(s.app.Status())
	return string(b)
}

// watch returns the open watch, or nil.
func (s *stack) watch() *watch.WatchStatus { return s.app.Status()[0].Watch }

func (s *stack) deploy(version string, errorRate float64) {
	s.t.Helper()
	if err := s.demo.Deploy(demo.Version{Version: version, ErrorRate: errorRate}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) announce(version, baseline string) {
	s.t.Helper()
	body := fmt.Sprintf(`{"service":"checkout","version":%q,"baseline":%q}`, version, baseline)
	req, _ := http.NewRequest("POST", s.apiURL+"/api/v1/deployments", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		s.t.Fatalf("announce: status %d", resp.StatusCode)
	}
}

func (s *stack) metric(name string, labels ...string) float64 {
	s.t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						ok = true
					}
				}
				if !ok {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				total += m.GetCounter().GetValue()
			case m.Gauge != nil:
				total += m.GetGauge().GetValue()
			}
		}
	}
	return total
}

var _ = testutil.ToFloat64
