package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/app"
	"github.com/rollback-guardian/guardian/demo"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/trigger"
)

// demoConfig is the configuration `guardian demo` runs with: the embedded
// source scraping the in-process demo service.
const demoConfig = `global:
  evaluation_interval: 1s
  state_dir: %[1]s/data
services:
  - name: checkout
    scrape: {url: "%[2]s/metrics", interval: 1s}
    deploy:
      version_query: 'sum by (version) (rate(http_requests_total[10s]))'
    watch_window: 5m
    triggers:
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
      - name: p99-latency
        query: 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{version="{{.Version}}"}[{{.Window}}])))'
        window: 10s
        above: 0.25
        above_baseline: 2x
        for: 3s
`

func newDemoCmd(lf *logFlags, stdout, stderr io.Writer) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Watch Guardian catch a bad deploy (no other service needed)",
		Long: "Starts a demo service (v1: 0.5% errors) under load, Guardian on the embedded source, then\n" +
			"deploys a bad v2 (20% errors) and shows Guardian detecting it with its evidence.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lf := *lf
			if !cmd.Flags().Changed("log.level") && !cmd.Root().PersistentFlags().Changed("log.level") {
				lf.level = "warn" // the story goes to stdout; logs only when something is wrong
			}
			log, err := newLogger(&lf, stderr)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return runDemo(ctx, stdout, log)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, log *zap.Logger) error {
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	// 1. The demo service, v1, healthy, under load.
	svc := demo.New(demo.Options{})
	if err := svc.Deploy(demo.Version{Version: "v1", ErrorRate: 0.005, Latency: 20 * time.Millisecond}); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for the demo service: %w", err)
	}
	srv := &http.Server{Handler: svc, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	demoURL := "http://" + l.Addr().String()
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = demo.Load{Target: demoURL + "/", RPS: 100, Concurrency: 16}.Run(loadCtx)
	}()
	defer wg.Wait()
	defer stopLoad()
	say("demo service checkout v1 (0.5%% errors, 20ms) at %s, 100 req/s of load", demoURL)

	// 2. Guardian on the embedded source.
	dir, err := os.MkdirTemp("", "guardian-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(demoConfig, dir, demoURL)), 0o600); err != nil {
		return err
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for guardian: %w", err)
	}
	fired := make(chan trigger.Verdict, 1)
	var mu sync.Mutex
	a, err := app.New(app.Options{
		ConfigFile: cfgPath, Logger: log, Listener: gl, NoWatch: true,
		OnVerdict: func(_ context.Context, d rollout.Event, v trigger.Verdict) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case v.Changed && v.State == trigger.Pending:
				say("trigger %s pending: %s", v.Trigger, v.Summary())
			case v.Changed && v.State == trigger.Firing:
				say("trigger %s FIRING: %s", v.Trigger, v.Summary())
				select {
				case fired <- v:
				default:
				}
			}
		},
	})
	if err != nil {
		return err
	}
	appCtx, stopApp := context.WithCancel(ctx)
	appDone := make(chan error, 1)
	go func() { appDone <- a.Run(appCtx) }()
	defer func() { stopApp(); <-appDone }()
	say("guardian watching checkout (embedded source, config %s), API at http://%s", cfgPath, gl.Addr())

	if err := waitFor(ctx, func() bool { return a.Status()[0].Current == "v1" }); err != nil {
		return fmt.Errorf("guardian did not learn the running version: %w", err)
	}
	say("guardian learnt the running version: v1")

	// 3. A bad deploy.
	if err := svc.Deploy(demo.Version{Version: "v2", ErrorRate: 0.20, Latency: 20 * time.Millisecond}); err != nil {
		return err
	}
	deployedAt := time.Now()
	say("deployed checkout v2 (20%% errors)")
	if err := waitFor(ctx, func() bool { w := a.Status()[0].Watch; return w != nil && w.Version == "v2" }); err != nil {
		return fmt.Errorf("guardian did not see the deploy: %w", err)
	}
	w := a.Status()[0].Watch
	say("guardian saw the deploy: v2 (baseline %s); watching until %s", w.Baseline, w.Until.Format(time.TimeOnly))

	select {
	case v := <-fired:
		say("detected %s after the deploy: roll back checkout %s → %s is what Guardian proposes",
			v.At.Sub(deployedAt).Round(100*time.Millisecond), v.Deploy.Version, v.Deploy.Baseline)
		return nil
	case <-ctx.Done():
		return errors.New("the trigger did not fire in time")
	}
}

func waitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
