package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rollback-guardian/guardian/app"
	"github.com/rollback-guardian/guardian/config"
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
	root.PersistentFlags().StringVar(&lf.level, "log.level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&lf.format, "log.format", "console", "log format: console or json")
	root.AddCommand(newRunCmd(lf, stderr), newCheckCmd(stdout, stderr), newDemoCmd(lf, stdout, stderr),
		newDecisionCmd(stdout, true), newDecisionCmd(stdout, false), newCloseCmd(stdout), newIncidentsCmd(stdout), newReportCmd(stdout),
		newVersionCmd(stdout))
	return root
}

func newLogger(lf *logFlags, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(lf.level)
	if err != nil {
		return nil, fmt.Errorf("--log.level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch lf.format {
	case "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, fmt.Errorf("--log.format: want console or json, got %q", lf.format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)), nil
}

func newRunCmd(lf *logFlags, stderr io.Writer) *cobra.Command {
	var (
		configFile string
		watch      bool
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the Guardian daemon",
		Long: "Run the Guardian daemon. SIGHUP, POST /-/reload and edits of the config file reload the\n" +
			"configuration; an invalid file is logged and the old configuration keeps running.\nSIGTERM or SIGINT stop it gracefully.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(lf, stderr)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			a, err := app.New(app.Options{ConfigFile: configFile, Logger: log, NoWatch: !watch, Fault: faultHook(log)})
			if err != nil {
				log.Error("cannot start", zap.Error(err))
				return errSilent
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go reloadOnSIGHUP(ctx, a, log)
			if err := a.Run(ctx); err != nil {
				log.Error("stopped with an error", zap.Error(err))
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "config.yaml", "path to the configuration file")
	cmd.Flags().BoolVar(&watch, "config.watch", true, "reload when the config file changes (its directory is watched, so ConfigMap symlink swaps work)")
	return cmd
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
	return &cobra.Command{
		Use:   "check FILE...",
		Short: "Validate configuration files, listing every error",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, files []string) error {
			failed := false
			for _, f := range files {
				cfg, _, err := config.LoadFile(f)
				if err != nil {
					failed = true
					var errs config.Errors
					if errors.As(err, &errs) {
						for _, e := range errs {
							fmt.Fprintf(stderr, "%s: %s\n", f, e)
						}
					} else {
						fmt.Fprintf(stderr, "%s: %v\n", f, err)
					}
					continue
				}
				triggers := 0
				for _, s := range cfg.Services {
					triggers += len(s.Triggers)
				}
				fmt.Fprintf(stdout, "%s: OK (%s, %s)\n", f, plural(len(cfg.Services), "service"), plural(triggers, "trigger"))
			}
			if failed {
				return errSilent
			}
			return nil
		},
	}
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			if tags := config.SlimTags(); tags != "" {
				// After the version line.
				defer fmt.Fprintf(stdout, "slim build (-tags %s), without: %s\n", tags, strings.Join(config.LeftOut(), ", "))
			}
			v, rev := version, ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				if v == "" {
					v = bi.Main.Version
				}
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						rev = s.Value
					}
				}
				fmt.Fprintf(stdout, "guardian %s (revision %s, %s)\n", v, orUnknown(rev), bi.GoVersion)
				return
			}
			fmt.Fprintf(stdout, "guardian %s\n", orUnknown(v))
		},
	}
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
