package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/demo"
	"github.com/rollback-guardian/guardian/testenv"
)

func TestCheckExample(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"check", "../../config.yaml"}, &out, &errb); code != 0 {
		t.Fatalf("guardian check config.yaml: exit %d\n%s", code, errb.String())
	}
	if !strings.Contains(out.String(), "../../config.yaml: OK (") {
		t.Fatalf("output %q", out.String())
	}
}

func TestCheckBadConfigs(t *testing.T) {
	files, err := filepath.Glob("../../config/testdata/*.bad.yml")
	if err != nil || len(files) < 20 {
		t.Fatalf("want at least 20 bad configs, got %d (%v)", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run([]string{"check", f}, &out, &errb); code != 1 {
				t.Fatalf("exit %d, want 1; stdout %q", code, out.String())
			}
			if !strings.HasPrefix(errb.String(), f+": ") {
				t.Fatalf("errors not prefixed with the file name:\n%s", errb.String())
			}
		})
	}
}

func TestCheckListsEveryError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yml")
	write(t, p, `services:
  - name: a
    scrape: {url: "http://127.0.0.1:1/metrics"}
    watch_window: 3x
    triggers:
      - name: t
        query: up
        above: 1
        for: 5q
  - name: a
    scrape: {url: "ftp://x"}
`)
	var out, errb bytes.Buffer
	if code := run([]string{"check", p}, &out, &errb); code != 1 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	if len(lines) < 3 {
		t.Fatalf("want every error listed, got:\n%s", errb.String())
	}
	for _, want := range []string{"services[0].watch_window", "services[0].triggers[0].for", "services[1].name", "services[1].scrape.url", "(line "} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("missing %q in:\n%s", want, errb.String())
		}
	}
}

func TestVersionAndFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "guardian ") {
		t.Fatalf("version: %d %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"run", "--config", "../../config.yaml", "--log.format", "xml"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--log.format") {
		t.Fatalf("bad --log.format: %d %q", code, errb.String())
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// buildGuardian builds the binary once per test run.
func buildGuardian(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "guardian")
	// -buildvcs=true: stamp the revision even where GOFLAGS turns it off,
	// as it is on this project's CI machines.
	cmd := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

const daemonConfig = `global:
  listen_address: %s
  evaluation_interval: 1s
  state_dir: %s
services:
%s`

func serviceYAML(name, url string) string {
	return fmt.Sprintf(`  - name: %s
    scrape: {url: "%s/metrics", interval: 1s}
    deploy: {version_query: 'sum by (version) (rate(http_requests_total[10s]))'}
    triggers:
      - name: errors
        query: 'sum(rate(http_requests_total{version="{{.Version}}",code="500"}[{{.Window}}])) or vector(0)'
        above: 0.5
`, name, url)
}

// The real binary: SIGHUP reloads (the file watcher is off, so the reload
// can only come from the signal), an invalid file keeps the old config and
// sets the reload metric to 0, and SIGTERM stops it cleanly.
func TestDaemonSIGHUPAndSIGTERM(t *testing.T) {
	bin := buildGuardian(t)
	svc := demo.New(demo.Options{Seed: 1})
	srv := &http.Server{Handler: svc, ReadHeaderTimeout: time.Second}
	l, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	demoURL := "http://" + l.Addr().String()

	dir := t.TempDir()
	addr := testenv.FreePort(t)
	cfg := filepath.Join(dir, "guardian.yml")
	write(t, cfg, fmt.Sprintf(daemonConfig, addr, dir, serviceYAML("one", demoURL)))

	var logs testenv.Buffer
	cmd := exec.Command(bin, "run", "--config", cfg, "--config.watch=false", "--log.format=json")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("guardian output:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	testenv.Eventually(t, 30*time.Second, func() error { return get(base+"/-/ready", nil) }, "guardian ready")

	services := func() int {
		var st []map[string]any
		if err := get(base+"/api/v1/status", &st); err != nil {
			return -1
		}
		return len(st)
	}
	if n := services(); n != 1 {
		t.Fatalf("%d services, want 1", n)
	}

	// A second service, applied by SIGHUP.
	write(t, cfg, fmt.Sprintf(daemonConfig, addr, dir, serviceYAML("one", demoURL)+serviceYAML("two", demoURL)))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := services(); n != 2 {
			return fmt.Errorf("%d services", n)
		}
		return nil
	}, "SIGHUP to apply the new config")
	if v := metric(t, base, "guardian_config_last_reload_successful"); v != "1" {
		t.Fatalf("guardian_config_last_reload_successful %s", v)
	}
	// guardian_build_info names the version that guardian version prints.
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	version := strings.Fields(string(out))[1]
	if info := metricLine(t, base, "guardian_build_info{"); !strings.Contains(info, `version="`+version+`"`) || !strings.HasSuffix(info, "} 1") {
		t.Errorf("guardian_build_info: %q, want version %q and the value 1", info, version)
	}

	// An invalid file: the old config keeps running, the metric says 0.
	write(t, cfg, fmt.Sprintf(daemonConfig, addr, dir, serviceYAML("one", demoURL)+"    bogus: 1\n"))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if v := metric(t, base, "guardian_config_last_reload_successful"); v != "0" {
			return fmt.Errorf("metric %s", v)
		}
		return nil
	}, "the failed reload to be reported")
	if n := services(); n != 2 {
		t.Fatalf("old config not kept: %d services", n)
	}
	if !strings.Contains(logs.String(), "bogus") {
		t.Errorf("the invalid field is not in the logs")
	}

	// SIGTERM: a clean exit.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("guardian did not stop within 15s of SIGTERM")
	}
	if !strings.Contains(logs.String(), "Guardian stopped") {
		t.Errorf("no shutdown log line")
	}
}

func get(url string, into any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	if into != nil {
		return json.NewDecoder(resp.Body).Decode(into)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// metric returns the value of an unlabelled metric from /metrics.
func metric(t *testing.T, base, name string) string {
	t.Helper()
	if f := strings.Fields(metricLine(t, base, name+" ")); len(f) == 2 {
		return f[1]
	}
	return ""
}

// metricLine returns the first line of /metrics that starts with prefix.
func metricLine(t *testing.T, base, prefix string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// check prints a valid configuration's warnings with their field and line,
// counts them, and still succeeds.
func TestCheckPrintsWarnings(t *testing.T) {
	var out, errb bytes.Buffer
	f := "../../config/testdata/shell-template.warn.yml"
	if code := run([]string{"check", f}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	if want := f + ": warning: services[0].rollback.application.command[2]: the shell interprets this template"; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, errb.String())
	}
	if !strings.Contains(errb.String(), "(line 12)") || !strings.Contains(out.String(), "2 warnings)") {
		t.Errorf("stdout %q, stderr %q", out.String(), errb.String())
	}
}
