package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// AlertmanagerBinaries are the names the Alertmanager binary goes by: the
// Debian package's, then upstream's.
var AlertmanagerBinaries = []string{"prometheus-alertmanager", "alertmanager"}

// AlertmanagerOptions configure a test Alertmanager's single route.
type AlertmanagerOptions struct {
	// WebhookURL receives every notification (webhook_configs,
	// send_resolved: true).
	WebhookURL string
	// GroupBy are the route's group_by labels (default alertname,
	// service, incident: one group per incident).
	GroupBy []string
	// GroupWait, GroupInterval and RepeatInterval are the route's timers
	// (defaults 1s, 1s, 1h).
	GroupWait, GroupInterval, RepeatInterval time.Duration
}

// Alertmanager is a real Alertmanager on a loopback port, clustering off,
// with its own storage directory.
type Alertmanager struct {
	URL  string
	Addr string
	// Options are the route's settings, defaults filled in.
	Options AlertmanagerOptions

	t       testing.TB
	bin     string
	args    []string
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	logs    *Buffer
	stopped bool
}

// StartAlertmanager starts Alertmanager routing every alert to
// o.WebhookURL, and waits until it is ready. It is stopped at cleanup. A
// missing binary skips the test, or fails it when CI is set.
func StartAlertmanager(t testing.TB, o AlertmanagerOptions) *Alertmanager {
	t.Helper()
	bin := requireAny(t, AlertmanagerBinaries...)
	if len(o.GroupBy) == 0 {
		o.GroupBy = []string{"alertname", "service", "incident"}
	}
	if o.GroupWait == 0 {
		o.GroupWait = time.Second
	}
	if o.GroupInterval == 0 {
		o.GroupInterval = time.Second
	}
	if o.RepeatInterval == 0 {
		o.RepeatInterval = time.Hour
	}
	dir := t.TempDir()
	groupBy, _ := json.Marshal(o.GroupBy)
	cfg := fmt.Sprintf(`route:
  receiver: webhook
  group_by: %s
  group_wait: %s
  group_interval: %s
  repeat_interval: %s
receivers:
  - name: webhook
    webhook_configs:
      - url: %q
        send_resolved: true
`, groupBy, o.GroupWait, o.GroupInterval, o.RepeatInterval, o.WebhookURL)
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := FreePort(t)
	a := &Alertmanager{
		URL: "http://" + addr, Addr: addr, Options: o, t: t, bin: bin,
		args: []string{
			"--config.file=" + cfgPath,
			"--storage.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + addr,
			"--cluster.listen-address=",
			"--log.level=warn",
		},
	}
	a.start()
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", a.Logs())
		}
	})
	a.WaitReady(60 * time.Second)
	return a
}

// requireAny is Require for the first of names installed.
func requireAny(t testing.TB, names ...string) string {
	t.Helper()
	for _, n := range names[1:] {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return Require(t, names[0])
}

func (a *Alertmanager) start() {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logs = &Buffer{}
	cmd := exec.Command(a.bin, a.args...)
	cmd.Stdout, cmd.Stderr = a.logs, a.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		a.t.Fatalf("starting alertmanager: %v", err)
	}
	a.cmd, a.done, a.stopped = cmd, make(chan struct{}), false
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(a.done)
}

// WaitReady waits until /-/ready answers 200.
func (a *Alertmanager) WaitReady(timeout time.Duration) {
	a.t.Helper()
	WaitHTTP(a.t, a.URL+"/-/ready", timeout)
}

// Stop stops Alertmanager (SIGTERM, then SIGKILL after 10 s) and waits
// for it. Alertmanager keeps silences and its notification log in the
// storage directory, not the alerts.
func (a *Alertmanager) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped || a.cmd == nil {
		return
	}
	a.stopped = true
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// Restart starts a stopped Alertmanager again on the same address and
// storage, and waits until it is ready.
func (a *Alertmanager) Restart() {
	a.t.Helper()
	a.Stop()
	a.start()
	a.WaitReady(60 * time.Second)
}

// Logs returns what Alertmanager printed.
func (a *Alertmanager) Logs() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.logs == nil {
		return ""
	}
	return a.logs.String()
}

// AMAlert is an alert as Alertmanager shows it (GET /api/v2/alerts) or
// notifies it (a webhook payload's alerts).
type AMAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	// Status is the webhook's "firing" or "resolved"; State the API's
	// status.state ("active", "suppressed", "unprocessed").
	Status string `json:"-"`
	State  string `json:"-"`
}

// Alerts returns the alerts Alertmanager holds now (GET /api/v2/alerts).
func (a *Alertmanager) Alerts() ([]AMAlert, error) {
	resp, err := http.Get(a.URL + "/api/v2/alerts")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v2/alerts: %d %s", resp.StatusCode, body)
	}
	var raw []struct {
		AMAlert
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, err
	}
	out := make([]AMAlert, len(raw))
	for i, r := range raw {
		out[i] = r.AMAlert
		out[i].State = r.Status.State
	}
	return out, nil
}

// AMNotification is one webhook notification from Alertmanager, with when
// it arrived.
type AMNotification struct {
	Status   string    `json:"status"`
	Receiver string    `json:"receiver"`
	Alerts   []AMAlert `json:"-"`
	Arrived  time.Time `json:"-"`
}

// AlertReceiver is a webhook endpoint recording Alertmanager's
// notifications.
type AlertReceiver struct {
	URL string

	mu  sync.Mutex
	got []AMNotification
	bad []string
}

// NewAlertReceiver starts an AlertReceiver, closed at cleanup.
func NewAlertReceiver(t testing.TB) *AlertReceiver {
	r := &AlertReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		arrived := time.Now()
		body, _ := io.ReadAll(req.Body)
		var p struct {
			AMNotification
			Alerts []struct {
				AMAlert
				Status string `json:"status"`
			} `json:"alerts"`
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := json.Unmarshal(body, &p); err != nil {
			r.bad = append(r.bad, err.Error())
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n := p.AMNotification
		n.Arrived = arrived
		for _, a := range p.Alerts {
			al := a.AMAlert
			al.Status = a.Status
			n.Alerts = append(n.Alerts, al)
		}
		r.got = append(r.got, n)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Notifications returns what arrived, in order.
func (r *AlertReceiver) Notifications() []AMNotification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// Find returns the first alert that arrived with status ("firing" or
// "resolved") and every label of labels, and when it arrived.
func (r *AlertReceiver) Find(status string, labels map[string]string) (AMAlert, time.Time, bool) {
	for _, n := range r.Notifications() {
		for _, a := range n.Alerts {
			if a.Status == status && hasLabels(a.Labels, labels) {
				return a, n.Arrived, true
			}
		}
	}
	return AMAlert{}, time.Time{}, false
}

// Bad returns the payloads that could not be decoded.
func (r *AlertReceiver) Bad() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.bad)
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
