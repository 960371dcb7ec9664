package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// StartPrometheusWithHistory imports openMetrics (OpenMetrics text ending in
// "# EOF") into TSDB blocks with `promtool tsdb create-blocks-from
// openmetrics`, then starts a Prometheus that scrapes nothing on that
// storage, with a retention long enough to keep the history, and waits
// until it is ready. It is stopped at cleanup.
func StartPrometheusWithHistory(t testing.TB, openMetrics []byte) *Prometheus {
	t.Helper()
	bin := Require(t, "prometheus")
	promtool := Require(t, "promtool")
	dir := t.TempDir()
	src := filepath.Join(dir, "history.om")
	if err := os.WriteFile(src, openMetrics, 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	out, err := exec.Command(promtool, "tsdb", "create-blocks-from", "openmetrics", src, data).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool tsdb create-blocks-from openmetrics: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte("global:\n  scrape_interval: 15s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := FreePort(t)
	p := &Prometheus{
		URL: "http://" + addr, Addr: addr, t: t, bin: bin,
		args: []string{
			"--config.file=" + cfgPath,
			"--web.listen-address=" + addr,
			"--storage.tsdb.path=" + data,
			"--storage.tsdb.retention.time=10y",
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
