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
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/demo"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/watch"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const appConfig = `global:
  evaluation_interval: 1s
  state_dir: %[1]s/data
services:
  - name: checkout
    scrape: {url: "%[2]s/metrics", interval: 1s}
    deploy: {version_query: 'sum by (version) (rate(http_requests_total[10s]))'}
    watch_window: 10m
    triggers:
      - name: error-rate
        query: '(sum(rate(http_requests_total{version="{{.Version}}",code="500"}[{{.Window}}])) or vector(0)) / sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))'
        window: 10s
        above: 0.05
        for: 1h
      - name: traffic
        query: 'sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))'
        window: 10s
        below: %[3]s
`

type fixture struct {
	t       *testing.T
	dir     string
	cfgPath string
	demo    *demo.Service
	demoURL string
	app     *App
	reg     *prometheus.Registry
	base    string
	stopApp func()
	// config is the configuration's format (appConfig by default).
	config string
}

func start(t *testing.T) *fixture {
	t.Helper()
	return startWith(t, appConfig)
}

// startWith starts Guardian with config, a format like appConfig's.
func startWith(t *testing.T, config string) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), config: config}
	f.demo = demo.New(demo.Options{Seed: 7})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f.demo, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	f.demoURL = "http://" + l.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		_, _ = demo.Load{Target: f.demoURL + "/", RPS: 50, Concurrency: 8}.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-loadDone })

	f.cfgPath = filepath.Join(f.dir, "guardian.yml")
	f.write("1")
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.base = "http://" + gl.Addr().String()
	f.run(gl)
	testenv.Eventually(t, 30*time.Second, func() error {
		if c := f.app.Status()[0].Current; c != "v1" {
			return fmt.Errorf("current %q", c)
		}
		return nil
	}, "v1 to be learnt")
	return f
}

// run starts Guardian on l; stopApp stops it (also at cleanup).
func (f *fixture) run(l net.Listener) {
	t := f.t
	t.Helper()
	f.reg = prometheus.NewRegistry()
	var err error
	f.app, err = New(Options{ConfigFile: f.cfgPath, Logger: zaptest.NewLogger(t), Registry: f.reg, Listener: l, NoWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.app.Run(actx) }()
	var once sync.Once
	f.stopApp = func() {
		once.Do(func() {
			acancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(f.stopApp)
}

func (f *fixture) write(trafficBelow string) {
	f.t.Helper()
	if err := os.WriteFile(f.cfgPath, []byte(fmt.Sprintf(f.config, f.dir, f.demoURL, trafficBelow)), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) reload() (int, string) {
	f.t.Helper()
	resp, err := http.Post(f.base+"/-/reload", "", nil)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *fixture) gauge(name string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	f.t.Fatalf("no metric %s", name)
	return 0
}

// deploys is guardian_deploys_total of checkout's deploys seen by its
// version query.
func (f *fixture) deploys() float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "guardian_deploys_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["service"] == "checkout" && labels["source"] == "version_query" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func (f *fixture) trigger(name string) watch.TriggerStatus {
	w := f.app.Status()[0].Watch
	if w == nil {
		return watch.TriggerStatus{}
	}
	for _, tr := range w.Triggers {
		if tr.Name == name {
			return tr
		}
	}
	return watch.TriggerStatus{}
}

// A reload through POST /-/reload keeps the pending state of a trigger whose
// definition did not change, the open watch window and the embedded
// source's data, and restarts a changed trigger.
func TestReloadKeepsPendingTrigger(t *testing.T) {
	f := start(t)
	if err := f.demo.Deploy(demo.Version{Version: "v2", ErrorRate: 0.5}); err != nil {
		t.Fatal(err)
	}
	var pending watch.TriggerStatus
	testenv.Eventually(t, 30*time.Second, func() error {
		pending = f.trigger("error-rate")
		if pending.State != "pending" || pending.ActiveSince == nil {
			return fmt.Errorf("error-rate is %q", pending.State)
		}
		return nil
	}, "error-rate to be pending")

	// Change only the traffic trigger, then reload through the API.
	f.write("2")
	if code, body := f.reload(); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	// The next evaluation still finds error-rate pending since the same instant.
	testenv.Eventually(t, 10*time.Second, func() error {
		tr := f.trigger("error-rate")
		if tr.State != "pending" || tr.ActiveSince == nil || !tr.ActiveSince.Equal(*pending.ActiveSince) {
			return fmt.Errorf("after reload: %+v (was pending since %v)", tr, pending.ActiveSince)
		}
		if tr.Outcome == "" {
			return fmt.Errorf("not evaluated since the reload")
		}
		return nil
	}, "error-rate to stay pending across the reload")
	w := f.app.Status()[0].Watch
	if w == nil || w.Version != "v2" || w.Baseline != "v1" {
		t.Fatalf("watch lost across reload: %+v", w)
	}
	if got := f.deploys(); got != 1 {
		t.Fatalf("deploys counted %v times: a reload must not report the deploy again", got)
	}
	if got := f.gauge("guardian_config_last_reload_successful"); got != 1 {
		t.Fatalf("last reload successful = %v", got)
	}
}

// An invalid file sent to POST /-/reload is refused with its field path and
// line; the running configuration stays.
func TestReloadInvalidKeepsOldConfig(t *testing.T) {
	f := start(t)
	if err := os.WriteFile(f.cfgPath, []byte("services:\n  - name: checkout\n    watch_window: 3x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := f.reload()
	if code != 500 || !strings.Contains(body, `services[0].watch_window: invalid duration "3x" (line 3)`) {
		t.Fatalf("reload: %d %q", code, body)
	}
	if n := len(f.app.Status()); n != 1 || f.app.Config().Services[0].Triggers[0].Name != "error-rate" {
		t.Fatal("old config replaced")
	}
	if v := f.gauge("guardian_config_last_reload_successful"); v != 0 {
		t.Fatalf("guardian_config_last_reload_successful = %v, want 0", v)
	}
	// Evaluation goes on with the old configuration.
	if err := f.demo.Deploy(demo.Version{Version: "v2"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if w := f.app.Status()[0].Watch; w == nil || w.Version != "v2" {
			return fmt.Errorf("no watch for v2")
		}
		return nil
	}, "the old config to keep detecting deploys")
}

// Announcing a deploy for an unknown service is refused; a known one opens a
// watch with the right baseline.
func TestAnnounce(t *testing.T) {
	f := start(t)
	if _, err := f.app.Announce(context.Background(), "cart", "v2", ""); err == nil {
		t.Fatal("unknown service accepted")
	}
	ev, err := f.app.Announce(context.Background(), "checkout", "v9", "")
	if err != nil || ev.Baseline != "v1" {
		t.Fatalf("%+v %v", ev, err)
	}
	if w := f.app.Status()[0].Watch; w == nil || w.Version != "v9" || w.Via != "api" {
		t.Fatalf("watch %+v", w)
	}
}

// A restart in the middle of a watch window resumes it: the deploy is not
// forgotten (a bad version would otherwise go unjudged) nor reported again.
func TestRestartResumesWatch(t *testing.T) {
	f := start(t)
	if err := f.demo.Deploy(demo.Version{Version: "v2", ErrorRate: 0.5}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if w := f.app.Status()[0].Watch; w == nil || w.Version != "v2" {
			return fmt.Errorf("no watch for v2")
		}
		return nil
	}, "the deploy of v2 to be seen")
	until := f.app.Status()[0].Watch.Until
	f.stopApp()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.run(l)
	testenv.Eventually(t, 10*time.Second, func() error {
		if !f.app.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	}, "the restarted Guardian to be ready")
	st := f.app.Status()[0]
	if st.Watch == nil || st.Watch.Version != "v2" || st.Watch.Baseline != "v1" || !st.Watch.Until.Equal(until) || st.Current != "v2" {
		t.Fatalf("after restart: %+v (watch %+v)", st, st.Watch)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if tr := f.trigger("error-rate"); tr.State != "pending" {
			return fmt.Errorf("error-rate %q", tr.State)
		}
		return nil
	}, "v2 to be judged again after the restart")
	if got := f.deploys(); got != 0 {
		t.Fatalf("the restart reported the deploy again (%v)", got)
	}
}

// A reload builds new configuration values: deploy settings that did not
// change compare equal even where they are pointers, so the service keeps
// the versions it learnt.
func TestEqualDeploy(t *testing.T) {
	a := config.Deploy{VersionLabel: "version", Kubernetes: &config.KubernetesDeploy{Namespace: "shop", Deployment: "checkout"}}
	b := config.Deploy{VersionLabel: "version", Kubernetes: &config.KubernetesDeploy{Namespace: "shop", Deployment: "checkout"}}
	if !equalDeploy(a, b) {
		t.Fatal("equal deploy settings from two loads differ")
	}
	b.Kubernetes.Deployment = "cart"
	if equalDeploy(a, b) {
		t.Fatal("a changed Deployment compares equal")
	}
}
