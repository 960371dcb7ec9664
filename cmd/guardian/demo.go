package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/rollback-guardian/guardian/app"
	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/demo"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/trigger"
)

// demoConfig is the configuration `guardian demo` runs with: the embedded
// source scraping the in-process demo service, a manual go/no-go, the demo
// service's own rollback endpoint as the deploy system, and a tokens file
// so that a person can approve through the API.
const demoConfig = `global:
  evaluation_interval: 1s
  state_dir: %[1]q
  listen_address: %[3]s
  auth: {tokens_file: %[4]q}
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
      version_query: 'sum by (version) (rate(http_requests_total[5s]))'
    watch_window: 5m
    triggers:
      # A sequential test on the errors and requests since the deploy,
      # against the baseline's before it (alpha 0.001, min_effect 1.5x) and
      # against 5%%, which recovery accepts too (10s of v1 make a rough
      # baseline).
      - name: error-rate
        sequential:
          errors: 'sum(increase(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.SinceDeploy}}])) or vector(0)'
          requests: 'sum(increase(http_requests_total{version="{{.Version}}"}[{{.SinceDeploy}}]))'
          # Also a change detector, for errors that start or grow after
          # the deploy; alpha is split between the two.
          slow_burn: true
        above: 0.05
        window: 10s
      # A guard rail beside it: more than 5%% errors for a minute.
      - name: error-rate-guard
        query: >-
          (sum(rate(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.Window}}])) or vector(0))
          / sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))
        window: 10s
        above: 0.05
        for: 1m
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
	// listen is Guardian's listen address; listenSet says it was given,
	// so that a taken address is an error rather than a reason to pick
	// another port.
	listen    string
	listenSet bool
	// stay keeps Guardian, its web server and the demo service up after
	// the incident ends (or while it is held), until ctx ends.
	stay bool
	// cli is how the printed commands name this program, quoted for a shell.
	cli string
}

func newDemoCmd(lf *logFlags, stdout, stderr io.Writer) *cobra.Command {
	var (
		o          demoOptions
		stay, exit bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Watch Guardian catch a bad deploy and roll it back (no other service needed)",
		Long: "Starts a demo service (v1: 0.5% errors) under load and Guardian on the embedded source, then\n" +
			"deploys a bad v2 (20% errors) and runs the whole procedure: detection with evidence, the\n" +
			"go/no-go (answer at the prompt, or --yes), the rollback, recovery toward the baseline, the\n" +
			"incident report and the post-mortem invite.\n\n" +
			"Run from a terminal, the demo then keeps Guardian and its web server up until Ctrl-C, so that\n" +
			"the console and `guardian incidents`, `guardian report 1`... work against it; a no-go holds the\n" +
			"incident and the demo waits for an approval from another terminal or the console. Without a\n" +
			"terminal (CI, tests) or with --exit, it ends when the incident does; a no-go ends it too.",
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			lf := *lf
			if !cmd.Root().PersistentFlags().Changed("log.level") {
				lf.level = "error" // the story goes to stdout; logs only when something is wrong
			}
			log, err := newLogger(&lf, stderr)
			if err != nil {
				return err
			}
			o.stay = isTerminal(cmd.InOrStdin())
			if cmd.Flags().Changed("stay") {
				o.stay = stay
			}
			if exit {
				o.stay = false
			}
			o.listenSet = cmd.Flags().Changed("listen")
			o.cli = shellQuote(cliName())
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, o, cmd.InOrStdin(), stdout, log)
		},
	}
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "approve the rollback without asking")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up when the demo has not finished after this long (time spent waiting for a person does not count)")
	cmd.Flags().StringVar(&o.dir, "dir", "", "where config, state, report and invite go (default: a new temporary directory, kept)")
	cmd.Flags().StringVar(&o.listen, "listen", config.DefaultListenAddress,
		"Guardian's listen address (API and console); the default is where the CLI looks, and a free port is used when it is taken")
	cmd.Flags().BoolVar(&stay, "stay", false, "keep Guardian up after the incident ends, until Ctrl-C (default when stdin is a terminal)")
	cmd.Flags().BoolVar(&exit, "exit", false, "end when the incident ends or is held (default when stdin is not a terminal)")
	cmd.MarkFlagsMutuallyExclusive("stay", "exit")
	return cmd
}

// isTerminal reports whether r is a terminal, where a person can answer.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// cliName is how to name this program in commands to copy: the path it was
// started as when that is a guardian binary (bin/guardian), else "guardian".
func cliName() string {
	if len(os.Args) > 0 && filepath.Base(os.Args[0]) == "guardian" {
		return os.Args[0]
	}
	return "guardian"
}

// defaultAPIURL is where the CLI's API commands look without --url.
func defaultAPIURL() string {
	if u := os.Getenv("GUARDIAN_URL"); u != "" {
		return u
	}
	return "http://" + config.DefaultListenAddress
}

// listenGuardian listens on addr. When addr is the default (not explicit)
// and cannot be had, say because another Guardian or demo holds it, it
// listens on a free loopback port instead and returns why in fallback.
func listenGuardian(addr string, explicit bool) (l net.Listener, fallback string, err error) {
	l, err = net.Listen("tcp", addr)
	if err == nil {
		return l, "", nil
	}
	if explicit {
		return nil, "", fmt.Errorf("--listen: %w", err)
	}
	fallback = err.Error()
	if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, "", fmt.Errorf("listening for guardian: %w", err)
	}
	return l, fallback, nil
}

// writeDemoTokens writes a fresh API token: the daemon's tokens file and
// the token alone, for --token-file. Both are readable by the owner only.
func writeDemoTokens(dir string) (tokens, token string, err error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	tok := hex.EncodeToString(b)
	tokens, token = filepath.Join(dir, "tokens"), filepath.Join(dir, "token")
	if err := os.WriteFile(tokens, []byte("# the API token of guardian demo, all scopes\ndemo:"+tok+"\n"), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(token, []byte(tok+"\n"), 0o600); err != nil {
		return "", "", err
	}
	return tokens, token, nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-:+=@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// errInterrupted: the demo was stopped (Ctrl-C, SIGTERM) before its end.
var errInterrupted = errors.New("interrupted")

func runDemo(ctx context.Context, o demoOptions, in io.Reader, out io.Writer, log *zap.Logger) error {
	start := time.Now()
	// The demo gives up at deadline; time spent waiting for a person
	// (the prompt, a held incident) moves it on.
	deadline := start.Add(o.timeout)
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	show := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, format, args...)
	}
	wait := func(cond func() bool) error {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for !cond() {
			if time.Now().After(deadline) {
				return fmt.Errorf("not within --timeout %s", o.timeout)
			}
			select {
			case <-ctx.Done():
				return errInterrupted
			case <-t.C:
			}
		}
		return nil
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
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(l) }()
	defer func() { _ = srv.Close(); <-served }()
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

	// 2. Guardian on the embedded source, listening where the CLI looks.
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "guardian-demo-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	tokensFile, tokenFile, err := writeDemoTokens(dir)
	if err != nil {
		return fmt.Errorf("writing the demo's API token: %w", err)
	}
	gl, taken, err := listenGuardian(o.listen, o.listenSet)
	if err != nil {
		return err
	}
	apiURL := "http://" + gl.Addr().String()
	// urlFlag is what the CLI's API commands need to find this Guardian.
	urlFlag := ""
	if strings.TrimRight(defaultAPIURL(), "/") != apiURL {
		urlFlag = " --url " + apiURL
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(demoConfig, dir, demoURL, gl.Addr().String(), tokensFile)), 0o600); err != nil {
		_ = gl.Close()
		return err
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
		_ = gl.Close()
		return err
	}
	appCtx, stopApp := context.WithCancel(context.WithoutCancel(ctx))
	appDone := make(chan error, 1)
	go func() { appDone <- a.Run(appCtx) }()
	defer func() {
		stopApp()
		if err := <-appDone; err != nil {
			log.Error("guardian stopped with an error", zap.Error(err))
		}
	}()
	if taken != "" {
		say("%s is taken (%s), so Guardian listens on %s instead: give the commands below --url %s, or export GUARDIAN_URL=%s",
			o.listen, taken, gl.Addr(), apiURL, apiURL)
	}
	say("guardian watching checkout (embedded source; config %s; console %s/)", cfgPath, apiURL)
	// interrupted tells where things were left when the demo is stopped early.
	interrupted := func(what string) error {
		show("\nstopped %s; config, state and reports stay in %s\n", what, dir)
		return nil
	}

	if err := wait(func() bool { return a.Status()[0].Current == "v1" }); err != nil {
		if errors.Is(err, errInterrupted) {
			return interrupted("before the deploy")
		}
		return fmt.Errorf("guardian did not learn the running version: %w", err)
	}
	say("guardian learnt the running version: v1")
	// A full 10s window of v1's traffic, so its baseline values are solid.
	if err := wait(func() bool { return time.Since(start) >= 10*time.Second }); err != nil {
		if errors.Is(err, errInterrupted) {
			return interrupted("before the deploy")
		}
		return err
	}

	// 3. A bad deploy. Guardian learns of it from the metrics
	// (version_query), as it would from a real service, a moment later.
	switched := time.Now()
	if err := svc.Deploy(demo.Version{Version: "v2", ErrorRate: 0.20, Latency: 20 * time.Millisecond}); err != nil {
		return err
	}
	say("rolling out checkout v2 (20%% errors)")

	// 4. Follow the incident's timeline until it needs nobody.
	var (
		id       int64
		printed  int
		seen     bool // Guardian saw the deploy of v2
		asked    bool // the go/no-go prompt was shown (or --yes answered it)
		held     bool // the hold and how to approve were told
		answers  = make(chan bool, 1)
		pausedAt time.Time // since when the demo waits for a person; zero when it does not
	)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if id == 0 {
				return interrupted("before an incident was declared")
			}
			rec, err := a.Get(context.WithoutCancel(ctx), id)
			if err != nil {
				return err
			}
			return interrupted(fmt.Sprintf("with incident #%d %s", id, rec.State))
		case yes := <-answers:
			if err := decide(ctx, a, id, yes, o.yes); err != nil {
				say("your answer was not recorded: %v", err)
			}
			continue
		case <-t.C:
		}
		if !seen {
			if st := a.Status()[0]; st.Watch != nil && st.Watch.Version == "v2" && !st.Watch.Since.Before(switched) {
				seen = true
				say("guardian saw checkout v2 serving (via %s) as of %.1fs: the deploy time that detection and the report count from",
					st.Watch.Via, st.Watch.Since.Sub(start).Seconds())
			}
		}
		if id == 0 {
			recs, err := a.List(ctx)
			if err != nil {
				return err
			}
			for _, r := range recs {
				if r.Version == "v2" && !r.DetectedAt.Before(switched) { // not one of an earlier demo in --dir
					id = r.ID
				}
			}
			if id == 0 {
				if time.Now().After(deadline) {
					return fmt.Errorf("no incident was declared within --timeout %s", o.timeout)
				}
				continue
			}
		}
		rec, err := a.Get(ctx, id)
		if err != nil {
			return err
		}
		for ; printed < len(rec.Timeline); printed++ {
			e := rec.Timeline[printed]
			say("%-20s %-26s %s", e.Type, e.Actor, e.Message)
			if e.Type == event.IncidentDeclared {
				say("detected %s after the deploy of %s (the report's deploy → detection)", demoDur(rec.DetectedAt.Sub(rec.DeployedAt)), rec.Version)
			}
		}
		// Waiting for a person does not count toward --timeout.
		switch waiting := rec.State == incident.AwaitingApproval && !o.yes || rec.State == incident.Held; {
		case waiting && pausedAt.IsZero():
			pausedAt = time.Now()
		case !waiting && !pausedAt.IsZero():
			deadline = deadline.Add(time.Since(pausedAt))
			pausedAt = time.Time{}
		}
		if pausedAt.IsZero() && time.Now().After(deadline) {
			return fmt.Errorf("the demo did not finish within --timeout %s (incident #%d is %s)", o.timeout, id, rec.State)
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
			show("\n  Roll back %s %s → %s? [y/N] ", rec.Service, rec.Version, rec.Baseline)
			go func() {
				line, _ := bufio.NewReader(in).ReadString('\n')
				answers <- strings.EqualFold(strings.TrimSpace(line), "y") || strings.EqualFold(strings.TrimSpace(line), "yes")
			}()
		case incident.Held:
			if held {
				continue
			}
			held = true
			approve := fmt.Sprintf("%s approve %d%s --token-file %s --reason %s", o.cli, rec.ID, urlFlag, shellQuote(tokenFile), shellQuote("checked the evidence"))
			if !o.stay {
				say("no-go: incident #%d is held and checkout stays on %s. The demo ends here (--exit, or stdin is not a terminal); "+
					"run it with --stay to keep Guardian watching and approve later with `%s approve %d`", rec.ID, rec.Version, o.cli, rec.ID)
				return nil
			}
			say("no-go: incident #%d is held; checkout stays on %s and Guardian keeps watching it", rec.ID, rec.Version)
			show("\n  To roll back later, approve from another terminal:\n      %s\n"+
				"  or press Approve in the console at %s/ (the API token is in %s).\n"+
				"  This terminal follows the incident; Ctrl-C stops Guardian and leaves the incident held.\n\n",
				approve, apiURL, tokenFile)
		case incident.Resolved:
			if !hasEntry(rec, event.ReportWritten) {
				continue // the report is being written
			}
			say("done in %s: checkout is back on %s", time.Since(start).Round(100*time.Millisecond), rec.Baseline)
			for _, e := range rec.Timeline {
				switch e.Type {
				case event.ReportWritten:
					show("  incident report: %s\n                   %s\n", e.Data["markdown"], e.Data["json"])
				case event.PostmortemScheduled:
					show("  post-mortem invite: %s\n", e.Data["invite"])
				}
			}
			if !o.stay {
				return nil
			}
			show("\nGuardian and the demo service keep running; Ctrl-C stops them.\n"+
				"  console:   %[1]s/\n"+
				"  try:       %[2]s incidents%[3]s\n"+
				"             %[2]s incidents show %[4]d%[3]s\n"+
				"             %[2]s report %[4]d%[3]s\n"+
				"  files:     config, state, API token and reports in %[5]s (kept after the demo ends)\n",
				apiURL, o.cli, urlFlag, rec.ID, dir)
			<-ctx.Done()
			return interrupted("Guardian and the demo service")
		case incident.Failed, incident.Escalated:
			return fmt.Errorf("incident #%d ended %s", rec.ID, rec.State)
		}
	}
}

// demoDur formats a duration as the report does.
func demoDur(d time.Duration) string { return d.Round(time.Second).String() }

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
