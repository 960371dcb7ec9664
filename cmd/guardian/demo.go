package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/app"
	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/demo"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/trigger"
)

// demoConfig is the configuration `guardian demo` runs with: the embedded
// source scraping the in-process demo service, a manual go/no-go, and the
// demo service's own rollback endpoint as the deploy system.
const demoConfig = `global:
  evaluation_interval: 1s
  state_dir: %[1]s
  postmortem:
    delay: 12h
    at: "10:00"
    time_zone: UTC
    organizer: "Release Manager <release-manager@example.com>"
    attendees: ["On-call <oncall@example.com>", "DBA <dba@example.com>"]
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
        severity: SEV-2
    approval: {mode: manual}
    rollback:
      application:
        webhook: {url: "%[2]s/admin/rollback", idempotent: true, timeout: 10s}
    recovery:
      tolerance: 0.5
      stable_for: 5s
      timeout: 1m
      smoke:
        - {name: healthz, url: "%[2]s/healthz", body_contains: ok}
`

type demoOptions struct {
	yes     bool
	timeout time.Duration
	dir     string
}

func newDemoCmd(lf *logFlags, stdout, stderr io.Writer) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Watch Guardian catch a bad deploy and roll it back (no other service needed)",
		Long: "Starts a demo service (v1: 0.5% errors) under load and Guardian on the embedded source, then\n" +
			"deploys a bad v2 (20% errors) and runs the whole procedure: detection with evidence, the\n" +
			"go/no-go (answer at the prompt, or --yes), the rollback, recovery toward the baseline, the\n" +
			"incident report and the post-mortem invite.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lf := *lf
			if !cmd.Root().PersistentFlags().Changed("log.level") {
				lf.level = "error" // the story goes to stdout; logs only when something is wrong
			}
			log, err := newLogger(&lf, stderr)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			return runDemo(ctx, o, cmd.InOrStdin(), stdout, log)
		},
	}
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "approve the rollback without asking")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up after this long")
	cmd.Flags().StringVar(&o.dir, "dir", "", "where state, report and invite go (default: a new temporary directory, kept)")
	return cmd
}

func runDemo(ctx context.Context, o demoOptions, in io.Reader, out io.Writer, log *zap.Logger) error {
	start := time.Now()
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
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
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "guardian-demo-"); err != nil {
			return err
		}
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(demoConfig, dir, demoURL)), 0o600); err != nil {
		return err
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for guardian: %w", err)
	}
	a, err := app.New(app.Options{
		ConfigFile: cfgPath, Logger: log, Listener: gl, NoWatch: true,
		OnVerdict: func(_ context.Context, _ rollout.Event, v trigger.Verdict) {
			if v.Changed && v.State != trigger.Inactive {
				say("trigger %s %s: %s", v.Trigger, strings.ToUpper(v.State.String()), v.Summary())
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
	say("guardian watching checkout (embedded source; config %s; API http://%s)", cfgPath, gl.Addr())

	if err := waitFor(ctx, func() bool { return a.Status()[0].Current == "v1" }); err != nil {
		return fmt.Errorf("guardian did not learn the running version: %w", err)
	}
	say("guardian learnt the running version: v1")
	// A full 10s window of v1's traffic, so its baseline values are solid.
	if err := waitFor(ctx, func() bool { return time.Since(start) >= 10*time.Second }); err != nil {
		return err
	}

	// 3. A bad deploy.
	if err := svc.Deploy(demo.Version{Version: "v2", ErrorRate: 0.20, Latency: 20 * time.Millisecond}); err != nil {
		return err
	}
	deployedAt := time.Now()
	say("deployed checkout v2 (20%% errors)")

	// 4. Follow the incident's timeline until it needs nobody.
	var (
		id      int64
		printed int
		asked   bool
		answers = make(chan bool, 1)
	)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the demo did not finish in time (incident #%d): %w", id, ctx.Err())
		case yes := <-answers:
			if err := decide(ctx, a, id, yes, o.yes); err != nil {
				return err
			}
			continue
		case <-t.C:
		}
		if id == 0 {
			recs, err := a.List(ctx)
			if err != nil || len(recs) == 0 {
				continue
			}
			id = recs[0].ID
		}
		rec, err := a.Get(ctx, id)
		if err != nil {
			return err
		}
		for ; printed < len(rec.Timeline); printed++ {
			e := rec.Timeline[printed]
			say("%-20s %-26s %s", e.Type, e.Actor, e.Message)
			if e.Type == event.IncidentDeclared {
				// Two clocks: the demo's own deploy, and the deploy as
				// Guardian first saw it (the report's "deploy → detection").
				say("detected %s after the deploy (%s after Guardian first saw %s serving, as the report counts)",
					e.At.Sub(deployedAt).Round(100*time.Millisecond), e.At.Sub(rec.DeployedAt).Round(100*time.Millisecond), rec.Version)
			}
		}
		switch rec.State {
		case incident.AwaitingApproval:
			if asked {
				continue
			}
			asked = true
			if o.yes {
				say("--yes: approving the rollback")
				answers <- true
				continue
			}
			outMu.Lock()
			fmt.Fprintf(out, "\n  Roll back %s %s → %s? [y/N] ", rec.Service, rec.Version, rec.Baseline)
			outMu.Unlock()
			go func() {
				line, _ := bufio.NewReader(in).ReadString('\n')
				answers <- strings.EqualFold(strings.TrimSpace(line), "y") || strings.EqualFold(strings.TrimSpace(line), "yes")
			}()
		case incident.Resolved:
			if !hasEntry(rec, event.ReportWritten) {
				continue // the report is being written
			}
			say("done in %s: checkout is back on %s", time.Since(start).Round(100*time.Millisecond), rec.Baseline)
			for _, e := range rec.Timeline {
				switch e.Type {
				case event.ReportWritten:
					fmt.Fprintf(out, "  incident report: %s\n                   %s\n", e.Data["markdown"], e.Data["json"])
				case event.PostmortemScheduled:
					fmt.Fprintf(out, "  post-mortem invite: %s\n", e.Data["invite"])
				}
			}
			return nil
		case incident.Held:
			say("no-go: incident #%d is held and checkout stays on %s. The demo ends here; a running Guardian would keep watching, and `guardian approve %d` would still roll back", rec.ID, rec.Version, rec.ID)
			return nil
		case incident.Failed, incident.Escalated:
			return fmt.Errorf("incident #%d ended %s", rec.ID, rec.State)
		}
	}
}

func decide(ctx context.Context, a *app.App, id int64, yes, flag bool) error {
	by := "terminal"
	if u := os.Getenv("USER"); u != "" {
		by += ":" + u
	}
	v := approval.Vote{Incident: id, Approve: true, By: by, Channel: "terminal", Reason: "approved at the demo prompt"}
	switch {
	case flag:
		v.Reason = "--yes given to guardian demo"
	case !yes:
		v.Approve, v.Reason = false, "declined at the demo prompt"
	}
	_, err := a.Vote(ctx, v)
	return err
}

func hasEntry(r incident.Record, typ event.Type) bool {
	for _, e := range r.Timeline {
		if e.Type == typ {
			return true
		}
	}
	return false
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
