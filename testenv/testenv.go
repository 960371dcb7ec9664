// Package testenv starts the real components that Guardian's end-to-end
// tests run against (Prometheus, a Kubernetes control plane), as loopback
// processes owned by the test, and the polling helpers the tests share
// (Eventually). A missing component skips the test on a laptop and fails it in CI
// (when the CI environment variable is set).
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Require returns the path of binary name, skipping the test when it is
// missing, or failing it when CI is set.
func Require(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required in CI but not installed (.ci/run installs it): %v", name, err)
	}
	t.Skipf("%s not installed: %v (run `make test`, which installs it)", name, err)
	return ""
}

// FreePort returns a loopback address with a free port.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// Prometheus is a real Prometheus server on a loopback port.
type Prometheus struct {
	URL  string
	Addr string

	t       testing.TB
	bin     string
	args    []string
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	logs    *bytes.Buffer
	stopped bool
}

// StartPrometheus starts Prometheus scraping targets (full /metrics URLs)
// every interval, and waits until it is ready. It is stopped at cleanup.
func StartPrometheus(t testing.TB, interval time.Duration, targets ...string) *Prometheus {
	t.Helper()
	bin := Require(t, "prometheus")
	dir := t.TempDir()
	var sc strings.Builder
	fmt.Fprintf(&sc, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\nscrape_configs:\n", interval, interval)
	for i, target := range targets {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatalf("target %q: %v", target, err)
		}
		fmt.Fprintf(&sc, "  - job_name: target%d\n    metrics_path: %q\n    scheme: %s\n    static_configs:\n      - targets: [%q]\n",
			i, u.Path, u.Scheme, u.Host)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(sc.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := FreePort(t)
	p := &Prometheus{
		URL: "http://" + addr, Addr: addr, t: t, bin: bin,
		args: []string{
			"--config.file=" + cfgPath,
			"--web.listen-address=" + addr,
			"--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--storage.tsdb.retention.time=1h",
			"--web.enable-lifecycle",
			"--log.level=warn",
		},
	}
	p.start()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", p.Logs())
		}
	})
	p.WaitReady(60 * time.Second)
	return p
}

func (p *Prometheus) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logs = &bytes.Buffer{}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting prometheus: %v", err)
	}
	p.cmd, p.done, p.stopped = cmd, make(chan struct{}), false
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
}

// WaitReady waits until /-/ready answers 200.
func (p *Prometheus) WaitReady(timeout time.Duration) {
	p.t.Helper()
	WaitHTTP(p.t, p.URL+"/-/ready", timeout)
}

// Stop stops Prometheus (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (p *Prometheus) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.cmd == nil {
		return
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Restart starts a stopped Prometheus again on the same address and data.
func (p *Prometheus) Restart() {
	p.t.Helper()
	p.Stop()
	p.start()
	p.WaitReady(60 * time.Second)
}

// Logs returns what Prometheus printed.
func (p *Prometheus) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.logs == nil {
		return ""
	}
	return p.logs.String()
}

// Eventually polls f every 50 ms until it returns nil or timeout passes,
// then fails the test with the last error and what it waited for.
func Eventually(t testing.TB, timeout time.Duration, f func() error, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	// Poll soon at first, then every 50ms.
	wait := time.Millisecond
	for {
		if err = f(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// EventuallyTrue is Eventually for a condition without an error to report.
func EventuallyTrue(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	Eventually(t, timeout, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}, what)
}

var errNotYet = errors.New("not yet")

// WaitHTTP waits until a GET of url answers 200.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}, url)
}

// Buffer is a bytes.Buffer safe for a process's output goroutine and the
// test reading it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
