// Command backtest measures how fast `guardian backtest` replays history
// against a local Prometheus: it generates the backtest scenario's request
// history (-repeat copies of 150 minutes at 15 s resolution: deploys that
// are healthy, bad, a slow burn and low traffic), imports it with promtool,
// starts Prometheus on it, and backtests it at the given concurrency and
// rate, printing deploys and ticks replayed per second and queries per
// deploy. It needs prometheus and promtool on PATH.
//
//	go run ./bench/backtest -repeat 8 -concurrency 2 -rate 0
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rollback-guardian/guardian/backtest"
	"github.com/rollback-guardian/guardian/backtest/scenario"
	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/source/prometheus"
)

func main() {
	repeat := flag.Int("repeat", 8, "copies of the 150-minute scenario")
	interval := flag.Duration("interval", 15*time.Second, "evaluation interval")
	concurrency := flag.Int("concurrency", 2, "queries in flight")
	rate := flag.Float64("rate", 0, "queries a second (0: no limit)")
	runs := flag.Int("runs", 3, "backtests to time")
	flag.Parse()
	if err := run(*repeat, *interval, *concurrency, *rate, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "backtest bench:", err)
		os.Exit(1)
	}
}

func run(repeat int, interval time.Duration, concurrency int, rate float64, runs int) error {
	dir, err := os.MkdirTemp("", "guardian-backtest-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	h := scenario.Repeat(time.Now().UTC().Truncate(time.Hour).Add(-time.Duration(repeat)*3*time.Hour), repeat)
	src := filepath.Join(dir, "history.om")
	if err := os.WriteFile(src, h.OpenMetrics(), 0o600); err != nil {
		return err
	}
	data := filepath.Join(dir, "data")
	t0 := time.Now()
	if out, err := exec.Command("promtool", "tsdb", "create-blocks-from", "openmetrics", src, data).CombinedOutput(); err != nil {
		return fmt.Errorf("promtool: %v\n%s", err, out)
	}
	fmt.Printf("history: %s, %d series; imported in %s\n", h.Length, len(h.Series()), time.Since(t0).Round(time.Millisecond))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte("global:\n  scrape_interval: 15s\n"), 0o600); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	_ = l.Close()
	cmd := exec.Command("prometheus", "--config.file="+cfgPath, "--web.listen-address="+addr,
		"--storage.tsdb.path="+data, "--storage.tsdb.retention.time=10y", "--log.level=warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	url := "http://" + addr
	if err := waitReady(url, time.Minute); err != nil {
		return err
	}

	cfg, err := config.Parse([]byte(scenario.Config(url, interval)))
	if err != nil {
		return err
	}
	q, err := prometheus.New(*cfg.Sources[0].Prometheus, nil)
	if err != nil {
		return err
	}
	defer q.Close()
	fmt.Printf("interval %s, concurrency %d, rate %g/s (0: none)\n\n", interval, concurrency, rate)
	fmt.Println("| run | deploys | ticks | queries | queries/deploy | time | deploys/s | ticks/s | queries/s |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for i := range runs {
		rep, err := backtest.Run(context.Background(), backtest.Options{
			Service: cfg.Services[0], Interval: interval, From: h.Start.Add(time.Minute), To: h.End(), Querier: q,
			Concurrency: concurrency, Rate: rate,
		})
		if err != nil {
			return err
		}
		s := rep.Elapsed.Seconds()
		n := len(rep.Deploys)
		fmt.Printf("| %d | %d | %d | %d | %.1f | %.2f s | %.1f | %.0f | %.0f |\n", i+1, n, rep.Ticks, rep.Queries,
			float64(rep.Queries)/float64(n), s, float64(n)/s, float64(rep.Ticks)/s, float64(rep.Queries)/s)
	}
	return nil
}

func waitReady(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url + "/-/ready"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("prometheus did not get ready")
}
