package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	commonversion "github.com/prometheus/common/version"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rollback-guardian/guardian/app"
	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/web"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// errSilent marks an error already reported to the user.
var errSilent = errors.New("")

type logFlags struct {
	level  string
	format string
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(stderr, "guardian:", err)
		}
		return 1
	}
	return 0
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	lf := &logFlags{}
	root := &cobra.Command{
		Use:           "guardian",
		Short:         "Guardian stops bad deploys",
		Long:          "Guardian watches a service after each deploy, judges the new version against the previous one,\nand declares an incident when a trigger fires.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(flagError)
	root.PersistentPreRunE = func(*cobra.Command, []string) error { return checkLogFlags(lf) }
	root.PersistentFlags().StringVar(&lf.level, "log.level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&lf.format, "log.format", "console", "log format: console or json")
	root.AddCommand(newRunCmd(lf, stderr), newCheckCmd(stdout, stderr), newDemoCmd(lf, stdout, stderr),
		newDecisionCmd(stdout, true), newDecisionCmd(stdout, false), newCloseCmd(stdout), newRollbackCmd(stdout), newIncidentsCmd(stdout), newReportCmd(stdout),
		newStateCmd(stdout, stderr), newVersionCmd(stdout), newBacktestCmd(stdout, stderr))
	return root
}

func newLogger(lf *logFlags, w io.Writer) (*zap.Logger, error) {
	if err := checkLogFlags(lf); err != nil {
		return nil, err
	}
	lvl, err := zapcore.ParseLevel(lf.level)
	if err != nil {
		return nil, err
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch lf.format {
	case "console":
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default: // json
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)), nil
}

func newRunCmd(lf *logFlags, stderr io.Writer) *cobra.Command {
	var (
		configFile string
		watch      bool
		waitValid  bool
		wf         web.Flags
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the Guardian daemon",
		Long: "Run the Guardian daemon. SIGHUP, POST /-/reload and edits of the config file reload the\n" +
			"configuration; an invalid file is logged and the old configuration keeps running.\nSIGTERM or SIGINT stop it gracefully. " +
			"A configuration that does not load at start-up stops it, unless --config.wait-valid\n(a sidecar) keeps it waiting for a valid one.",
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(lf, stderr)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			if wf.ConfigFile != "" {
				if err := web.ValidateConfigFile(wf.ConfigFile); err != nil {
					return fmt.Errorf("--web.config.file: %w", err)
				}
			}
			if wf.Console.SessionTTL <= 0 || wf.Console.Refresh < 0 {
				return fmt.Errorf("--web.console.session-ttl must be positive and --web.console.refresh not negative")
			}
			if wf.ExternalURL != "" {
				if err := web.ValidateExternalURL(wf.ExternalURL); err != nil {
					return fmt.Errorf("--web.external-url: %w", err)
				}
			}
			if wf.StatusListenAddress != "" {
				if _, _, err := net.SplitHostPort(wf.StatusListenAddress); err != nil {
					return fmt.Errorf("--web.status-listen-address: invalid address %q: want host:port", wf.StatusListenAddress)
				}
			}
			// guardian_build_info's version label.
			commonversion.Version = buildVersion()
			log.Debug("garbage collector target", zap.Int("gogc_percent", app.SetGCDefault()))
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a := app.NewUnloaded(app.Options{ConfigFile: configFile, Logger: log, NoWatch: !watch, Fault: faultHook(log), Web: wf})
			go reloadOnSIGHUP(ctx, a, log)
			if waitValid {
				ev := newPodEvents(log)
				defer ev.Stop()
				onFailure, onLoaded := configEvents(ev)
				err = a.WaitValid(ctx, app.WaitOptions{OnFailure: onFailure, OnLoaded: onLoaded})
				if ctx.Err() != nil {
					log.Info("stopped while waiting for a valid configuration")
					return nil
				}
			} else {
				err = a.Load()
			}
			if errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("%w: give its path with --config.file", err)
			}
			if err != nil {
				log.Error("cannot start", zap.Error(err))
				return errSilent
			}
			if err := a.Run(ctx); err != nil {
				log.Error("stopped with an error", zap.Error(err))
				return errSilent
			}
			return nil
		},
	}
	configFlag(cmd, &configFile, "path to the configuration file")
	cmd.Flags().BoolVar(&watch, "config.watch", true, "reload when the config file changes (its directory is watched, so ConfigMap symlink swaps work)")
	cmd.Flags().BoolVar(&waitValid, "config.wait-valid", false,
		"when the configuration does not load at start-up, keep running instead of exiting (for a sidecar, whose exit would\n"+
			"take its pod's readiness with it): serve /-/healthy (200), /-/ready (503) and /metrics\n"+
			"(guardian_config_last_reload_successful 0) on the file's global.listen_address, log each attempt as an error,\n"+
			"record a Warning Event on the pod (POD_NAMESPACE, POD_NAME, POD_UID set), and start once the file is fixed")
	registerWebFlags(cmd, &wf)
	return cmd
}

// registerWebFlags adds the HTTP server's --web.* flags.
func registerWebFlags(cmd *cobra.Command, wf *web.Flags) {
	cmd.Flags().StringVar(&wf.ConfigFile, "web.config.file", "",
		"web configuration file enabling TLS and basic auth (the Prometheus exporter-toolkit format: tls_server_config,\n"+
			"basic_auth_users, http_server_config); read again for each connection, so certificates rotate without a restart")
	cmd.Flags().Var(&wf.Reload, "web.reload",
		"who may POST /-/reload: loopback (clients on 127.0.0.1 or ::1 need no token, others an admin token), authenticated\n"+
			"(an admin token from everyone; use it behind a proxy or service mesh on the same host, whose clients all look local)\n"+
			"or off (SIGHUP and config file changes still reload)")
	cmd.Flags().StringVar(&wf.ExternalURL, "web.external-url", "",
		"the URL people reach Guardian at, such as https://guardian.example.com/ behind a proxy: messages, alerts, pages and\n"+
			"the post-mortem invite link to incidents and reports under it (default: global.external_url, else http://<listen address>)")
	cmd.Flags().Var(&wf.ReadAuth, "web.read-auth",
		"which reads need a token with the read scope: open (none), api (GET /api/v1/... and the console's pages) or all\n"+
			"(also /metrics and /status); /-/healthy and /-/ready stay open for probes")
	cmd.Flags().StringVar(&wf.StatusListenAddress, "web.status-listen-address", "",
		"also serve the status page, alone (/status, its feed and stylesheet; / redirects to it), on this host:port,\n"+
			"without a token whatever --web.read-auth says, so that it can be public while the console and the API are not")
	cmd.Flags().StringVar(&wf.Console.UserHeader, "web.console.user-header", "",
		"request header in which an authenticating proxy names the person signed in to the console (X-Forwarded-User, say);\n"+
			"it is trusted as it comes, so only that proxy may be able to reach Guardian and set it (default: none)")
	cmd.Flags().DurationVar(&wf.Console.SessionTTL, "web.console.session-ttl", web.DefaultSessionTTL,
		"how long a sign-in to the console with an API token lasts")
	cmd.Flags().DurationVar(&wf.Console.Refresh, "web.console.refresh", 10*time.Second,
		"how often the console's overview reloads itself (0 never)")
}

// reloadOnSIGHUP turns each SIGHUP into a reload request until ctx ends.
func reloadOnSIGHUP(ctx context.Context, a *app.App, log *zap.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: reloading configuration")
			select {
			case err := <-a.Reload():
				if err != nil {
					log.Error("reload after SIGHUP failed", zap.Error(err))
				}
			case <-ctx.Done():
				return
			}
		}
	}
}

func newCheckCmd(stdout, stderr io.Writer) *cobra.Command {
	var webConfig string
	cmd := &cobra.Command{
		Use:   "check FILE...",
		Short: "Validate configuration files, listing every error",
		Long: "Validate configuration files, listing every error, and the tokens file each one names (as the daemon\n" +
			"reads it: a token shorter than 16 characters or an unknown scope is an error). Warnings (a template\n" +
			"in a shell script, a threshold that always fires, ...) are printed but do not fail the check.",
		Args: args(1, -1),
		RunE: func(_ *cobra.Command, files []string) error {
			failed := false
			if webConfig != "" {
				if err := web.ValidateConfigFile(webConfig); err != nil {
					fmt.Fprintf(stderr, "--web.config.file: %v\n", err)
					failed = true
				}
			}
			for _, f := range files {
				cfg, _, err := config.LoadFile(f)
				if err != nil {
					failed = true
					var errs config.Errors
					var ferr *config.FileError
					switch {
					case errors.As(err, &errs):
						for _, e := range errs {
							fmt.Fprintf(stderr, "%s: %s\n", f, e)
						}
					case errors.As(err, &ferr):
						fmt.Fprintf(stderr, "guardian check: %v\n", err)
					default:
						fmt.Fprintf(stderr, "%s: %v\n", f, err)
					}
					continue
				}
				if p := cfg.Global.Auth.TokensFile; p != "" {
					if _, err := web.ReadTokensFile(p); err != nil {
						failed = true
						for _, e := range splitJoined(err) {
							fmt.Fprintf(stderr, "%s: global.auth.tokens_file: %s\n", f, e)
						}
						continue
					}
				}
				triggers := 0
				for _, s := range cfg.Services {
					triggers += len(s.Triggers)
				}
				for _, w := range cfg.Warnings {
					fmt.Fprintf(stderr, "%s: warning: %s\n", f, w)
				}
				summary := plural(len(cfg.Services), "service") + ", " + plural(triggers, "trigger")
				if len(cfg.Warnings) > 0 {
					summary += ", " + plural(len(cfg.Warnings), "warning")
				}
				fmt.Fprintf(stdout, "%s: OK (%s)\n", f, summary)
			}
			if failed {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&webConfig, "web.config.file", "", "also validate this web configuration file (TLS, basic auth), as guardian run would")
	return cmd
}

// splitJoined lists the errors of a tokens file one by one: "tokens file
// PATH: line N: ..." for each line in error.
func splitJoined(err error) []string {
	lines := strings.Split(err.Error(), "\n")
	if len(lines) == 1 {
		return lines
	}
	prefix, _, _ := strings.Cut(lines[0], ": line ")
	out := []string{lines[0]}
	for _, l := range lines[1:] {
		out = append(out, prefix+": "+l)
	}
	return out
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  args(0, 0),
		Run: func(*cobra.Command, []string) {
			if tags := config.SlimTags(); tags != "" {
				// After the version line.
				defer fmt.Fprintf(stdout, "slim build (-tags %s), without: %s\n", tags, strings.Join(config.LeftOut(), ", "))
			}
			fmt.Fprintln(stdout, versionLine())
		},
	}
}

// versionLine is what guardian version prints: the version set at build
// time with -ldflags, else the module version the go command stamps
// (v1.2.3 for a tagged commit, a pseudo-version otherwise), with the VCS
// revision and the Go version.
func versionLine() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "guardian " + orUnknown(version)
	}
	v := buildVersion()
	var rev, at string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	hint := ""
	switch {
	case rev == "":
		rev = "unknown"
		hint = "\nbuilt without version control information: build with make, or with go build -buildvcs=true in a clone, to see it"
	case dirty:
		rev += ", modified"
	}
	if at != "" {
		rev += ", committed " + at
	}
	return fmt.Sprintf("guardian %s (revision %s, %s)%s", v, rev, bi.GoVersion, hint)
}

// buildVersion is Guardian's version: the one set with -ldflags, else the
// module version the go command stamped, else "devel" (built without
// version control information: go run, -buildvcs=false, a copy of the
// sources without .git).
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
