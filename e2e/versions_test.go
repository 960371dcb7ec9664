package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/rollback-guardian/guardian/app"
	"github.com/rollback-guardian/guardian/demo"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/watch"
)

// fleet is one service run as instances of the demo service (a stable one
// and a canary, say) under their own loads, one real Prometheus scraping
// them all, and Guardian (in this process) watching the service through
// it, rolling back with a command that puts one instance back on the
// baseline.
type fleet struct {
	t         *testing.T
	dir       string
	instances map[string]*demo.Service
	urls      map[string]string
	app       *app.App
}

type instance struct {
	name    string
	version demo.Version
	rps     float64
}

type fleetOpts struct {
	instances []instance
	// rollbackOn names the instance the rollback command puts back on
	// $GUARDIAN_BASELINE.
	rollbackOn string
	// triggers is the YAML of the service's triggers.
	triggers string
	// recovery is the YAML of the service's recovery settings.
	recovery string
}

var fleetTmpl = template.Must(template.New("cfg").Parse(`
global:
  evaluation_interval: 1s
  state_dir: {{.Dir}}/data
sources:
  - name: prom
    prometheus:
      url: {{.PrometheusURL}}
      timeout: 2s
services:
  - name: checkout
    source: prom
    deploy:
      version_query: 'sum by (version) (rate(http_requests_total[10s]))'
    watch_window: 10m
    approval: {mode: auto}
    triggers:
{{.Triggers}}
    rollback:
      application:
        command:
          command: [sh, -c, {{.Rollback}}]
          timeout: 1m
    recovery:
{{.Recovery}}
`))

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pad + l
	}
	return strings.Join(lines, "\n")
}

func startFleet(t *testing.T, o fleetOpts) *fleet {
	t.Helper()
	f := &fleet{t: t, dir: t.TempDir(), instances: map[string]*demo.Service{}, urls: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	var targets []string
	var loads []chan struct{}
	for i, in := range o.instances {
		svc := demo.New(demo.Options{Seed: uint64(i + 1)})
		if err := svc.Deploy(in.version); err != nil {
			t.Fatal(err)
		}
		url := serve(t, svc)
		f.instances[in.name], f.urls[in.name] = svc, url
		targets = append(targets, url+"/metrics")
		done := make(chan struct{})
		loads = append(loads, done)
		go func(url string, rps float64) {
			defer close(done)
			_, _ = demo.Load{Target: url + "/", RPS: rps, Concurrency: 4}.Run(ctx)
		}(url, in.rps)
	}
	t.Cleanup(func() {
		cancel()
		for _, d := range loads {
			<-d
		}
	})
	prom := testenv.StartPrometheus(t, time.Second, targets...)
	var cfg bytes.Buffer
	if err := fleetTmpl.Execute(&cfg, map[string]any{
		"Dir": f.dir, "PrometheusURL": prom.URL, "Triggers": indent(o.triggers, 6), "Recovery": indent(o.recovery, 6),
		"Rollback": strconv.Quote(rollbackScript(t, f.dir, f.urls[o.rollbackOn], 0)),
	}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.dir, "guardian.yml")
	if err := os.WriteFile(path, cfg.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.app, err = app.New(app.Options{ConfigFile: path, Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(), Listener: l})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- f.app.Run(actx) }()
	t.Cleanup(func() {
		acancel()
		if err := <-stopped; err != nil {
			t.Errorf("guardian stopped with %v", err)
		}
	})
	want := o.instances[0].version.Version
	testenv.Eventually(t, 60*time.Second, func() error {
		if c := f.status().Current; c != want {
			return fmt.Errorf("current version %q", c)
		}
		return nil
	}, "guardian to learn the running version")
	return f
}

func (f *fleet) status() watch.ServiceStatus { return f.app.Status()[0] }

func (f *fleet) deploy(instance, version string, errorRate float64) {
	f.t.Helper()
	if err := f.instances[instance].Deploy(demo.Version{Version: version, ErrorRate: errorRate}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fleet) incidents() []incident.Record {
	f.t.Helper()
	recs, err := f.app.List(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return recs
}

// waitIncident waits until incident id is in state and returns it.
func (f *fleet) waitIncident(id int64, state incident.State, timeout time.Duration) incident.Record {
	f.t.Helper()
	var rec incident.Record
	testenv.Eventually(f.t, timeout, func() error {
		var err error
		if rec, err = f.app.Get(context.Background(), id); err != nil {
			return err
		}
		if rec.State != state {
			return fmt.Errorf("incident %d is %s: %v", id, rec.State, timelineTypes(rec))
		}
		return nil
	}, fmt.Sprintf("incident %d to be %s", id, state))
	return rec
}

// waitWatch waits for an open watch of version opened after after, and
// returns it.
func (f *fleet) waitWatch(version string, after time.Time, timeout time.Duration) *watch.WatchStatus {
	f.t.Helper()
	var w *watch.WatchStatus
	testenv.Eventually(f.t, timeout, func() error {
		if w = f.status().Watch; w == nil || w.Version != version || !w.Since.After(after) {
			return fmt.Errorf("watch %+v", w)
		}
		return nil
	}, "the watch of "+version)
	return w
}

// waitServing waits until exactly versions serve.
func (f *fleet) waitServing(timeout time.Duration, versions ...string) {
	f.t.Helper()
	testenv.Eventually(f.t, timeout, func() error {
		if got := strings.Join(f.status().Serving, ","); got != strings.Join(versions, ",") {
			return fmt.Errorf("serving %s", got)
		}
		return nil
	}, "serving "+strings.Join(versions, ","))
}

const errorRateTrigger = `
- name: error-rate
  query: >-
    (sum(rate(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.Window}}])) or vector(0))
    / sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))
  window: 10s
  above: 0.05
  above_baseline: 2x
  for: 3s
  min_requests: 20
  volume_query: 'sum(increase(http_requests_total{version="{{.Version}}"}[{{.Window}}]))'
`

const quickRecovery = `
tolerance: 0.5
stable_for: 3s
timeout: 2m
`

// A version rolled back is caught again when it is deployed again — while
// its first watch is still open —, and the rollback itself opens nothing.
func TestRedeployOfARolledBackVersion(t *testing.T) {
	t.Parallel()
	f := startFleet(t, fleetOpts{
		instances:  []instance{{name: "app", version: demo.Version{Version: "v1", ErrorRate: 0.005}, rps: 50}},
		rollbackOn: "app", triggers: errorRateTrigger, recovery: quickRecovery,
	})
	f.deploy("app", "v2", 0.2)
	first := f.waitIncident(1, incident.Resolved, 120*time.Second)
	if first.Version != "v2" || first.Baseline != "v1" {
		t.Fatalf("first incident %+v", first)
	}
	f.waitServing(30*time.Second, "v1")
	if w := f.status().Watch; w == nil || w.Version != "v2" {
		t.Fatalf("v2's watch closed before the redeploy: %+v", w)
	}
	f.deploy("app", "v2", 0.2)
	if w := f.waitWatch("v2", first.DeployedAt, 30*time.Second); !w.Redeploy || w.Baseline != "v1" {
		t.Fatalf("the redeploy's watch %+v", w)
	}
	second := f.waitIncident(2, incident.Resolved, 120*time.Second)
	if second.Version != "v2" || second.Baseline != "v1" || !second.DeployedAt.After(first.DeployedAt) {
		t.Fatalf("second incident %+v", second)
	}
	f.waitServing(30*time.Second, "v1")
	// The two rollbacks to v1 opened nothing.
	if recs := f.incidents(); len(recs) != 2 {
		t.Fatalf("%d incidents", len(recs))
	}
	b, _ := os.ReadFile(filepath.Join(f.dir, "rollbacks"))
	if got := strings.Fields(string(b)); strings.Join(got, ",") != "incident-1/rollback.application,incident-2/rollback.application" {
		t.Fatalf("rollbacks %v", got)
	}
}

// A canary beside a stable version is judged against the stable version,
// not against the version it ran before: v1 → v3 → v1 → v4 on the canary
// gives v4 the baseline v1, saying why; a bad canary is rolled back and the
// incident resolved when the stable version serves alone.
func TestCanaryIsJudgedAgainstTheStableVersion(t *testing.T) {
	t.Parallel()
	f := startFleet(t, fleetOpts{
		instances: []instance{
			{name: "stable", version: demo.Version{Version: "v1", ErrorRate: 0.005}, rps: 95},
			{name: "canary", version: demo.Version{Version: "v1", ErrorRate: 0.005}, rps: 5},
		},
		rollbackOn: "canary", triggers: errorRateTrigger, recovery: quickRecovery,
	})
	start := time.Now()
	f.deploy("canary", "v3", 0.005)
	if w := f.waitWatch("v3", start, 30*time.Second); w.Baseline != "v1" {
		t.Fatalf("v3's watch %+v", w)
	}
	f.deploy("canary", "v1", 0.005)
	f.waitServing(30*time.Second, "v1")
	f.deploy("canary", "v4", 0.005)
	// Both instances ran v1 just before: it is the only candidate (v3, which
	// the canary ran before it, no longer serves).
	w := f.waitWatch("v4", start, 30*time.Second)
	if w.Baseline != "v1" || w.BaselineWhy != "the only version serving just before the deploy" {
		t.Fatalf("v4's watch %+v", w)
	}
	// Healthy v4 stays quiet; a bad v5 replacing it on the canary is judged
	// against v1, which served 95% beside v4, not against v4.
	f.deploy("canary", "v5", 0.5)
	rec := f.waitIncident(1, incident.Resolved, 120*time.Second)
	if rec.Version != "v5" || rec.Baseline != "v1" || !strings.Contains(rec.BaselineWhy, "% of the traffic") || rec.Running != "v1" {
		t.Fatalf("incident %+v", rec)
	}
	if !strings.Contains(rec.Timeline[0].Message, "baseline v1: served") {
		t.Fatalf("declared %q", rec.Timeline[0].Message)
	}
	if got := f.instances["canary"].Versions(); len(got) != 1 || got[0].Version != "v1" {
		t.Fatalf("canary runs %+v", got)
	}
	if recs := f.incidents(); len(recs) != 1 {
		t.Fatalf("%d incidents, want only v5's", len(recs))
	}
}

// At 1 request a second a bad deploy is caught by the sequential test,
// rolled back and resolved — not escalated for want of traffic —, and the
// timeline says what verification waits for meanwhile.
func TestLowTrafficRecovery(t *testing.T) {
	t.Parallel()
	f := startFleet(t, fleetOpts{
		instances:  []instance{{name: "app", version: demo.Version{Version: "v1", ErrorRate: 0.005}, rps: 1}},
		rollbackOn: "app",
		triggers: `
- name: errors
  sequential:
    errors: 'sum(increase(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.SinceDeploy}}])) or vector(0)'
    requests: 'sum(increase(http_requests_total{version="{{.Version}}"}[{{.SinceDeploy}}]))'
    baseline_window: 5m
  above: 0.05
- name: error-rate
  query: >-
    (sum(rate(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.Window}}])) or vector(0))
    / sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))
  window: 20s
  above: 0.05
  for: 1m
  min_requests: 40
  volume_query: 'sum(increase(http_requests_total{version="{{.Version}}"}[{{.Window}}]))'
`,
		recovery: `
tolerance: 0.5
stable_for: 5s
timeout: 4m
`,
	})
	f.deploy("app", "v2", 0.5)
	rec := f.waitIncident(1, incident.Resolved, 5*time.Minute)
	if rec.Trigger != "errors" {
		t.Fatalf("declared by %s", rec.Trigger)
	}
	var waited, judged bool
	for _, e := range rec.Timeline {
		if e.Type == "recovery.progress" && strings.Contains(e.Message, "waiting for traffic") {
			waited = true
		}
		if e.Type == "recovery.confirmed" && strings.Contains(e.Message, "since the rollback") {
			judged = true
		}
	}
	if !waited || !judged {
		t.Fatalf("timeline:\n%s", strings.Join(timelineMessages(rec), "\n"))
	}
}

func timelineMessages(r incident.Record) []string {
	var out []string
	for _, e := range r.Timeline {
		out = append(out, string(e.Type)+": "+e.Message)
	}
	return out
}
