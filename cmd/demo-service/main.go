// Command demo-service runs Guardian's demo application: an HTTP service with a
// version label, an adjustable error rate and latency, Prometheus metrics and an
// admin API to "deploy" new versions, optionally loading itself with traffic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	oklogrun "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rollback-guardian/guardian/demo"
)

// shutdownTimeout bounds how long in-flight requests may take to finish on exit.
const shutdownTimeout = 5 * time.Second

func main() { os.Exit(run()) }

// errUsage reports bad flags that the flag package has already described.
var errUsage = errors.New("usage error")

// options are the command-line settings.
type options struct {
	listen  string
	version demo.Version
	loadRPS float64
	seed    uint64
}

// parseFlags parses args into options, reporting problems on stderr.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("demo-service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: demo-service [flags]

Serves a demo application for Guardian on --listen:
  GET  /               app traffic (any path other than those below)
  GET  /metrics        Prometheus metrics (http_requests_total, http_request_duration_seconds, app_build_info)
  GET  /healthz        200 "ok", or 503 when set unhealthy
  GET  /admin/state    live versions and health as JSON
  PUT  /admin/state    {"versions":[{"version":"v2","weight":1,"error_rate":0.2,"latency_ms":20}],"healthy":true}
  POST /admin/deploy   {"version":"v2","error_rate":0.2,"latency_ms":20} replaces all live versions
  POST /admin/rollback {"baseline":"v1"} goes back to an earlier version (Guardian's webhook executor payload)

  demo-service rollback [--admin URL] [--to VERSION]
                       asks a running demo-service to roll back: a rollback command for
                       Guardian's command executor (--to defaults to $GUARDIAN_BASELINE)

Flags:
`)
		fs.PrintDefaults()
	}
	var o options
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "`address` to listen on (host:port)")
	fs.StringVar(&o.version.Version, "version", "v1", "initial version `name`")
	fs.Float64Var(&o.version.ErrorRate, "error-rate", 0.005, "probability in [0, 1] that a request fails with HTTP 500")
	fs.DurationVar(&o.version.Latency, "latency", 20*time.Millisecond, "`duration` of a successful request")
	fs.Float64Var(&o.loadRPS, "load-rps", 0, "requests per second to send to itself (0 = no built-in load)")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed for reproducible runs (0 = random)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return options{}, err
		}
		return options{}, errUsage
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q; all settings are flags, see -help", fs.Args())
	}
	o.version.Weight = 1
	if err := o.version.Validate(); err != nil {
		return options{}, fmt.Errorf("--version/--error-rate/--latency: %w", err)
	}
	if !(o.loadRPS >= 0 && o.loadRPS <= demo.MaxRPS) {
		return options{}, fmt.Errorf("--load-rps must be within [0, %d], got %g", demo.MaxRPS, o.loadRPS)
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return options{}, fmt.Errorf("--listen %q: %w", o.listen, err)
	}
	return o, nil
}

func newLogger() (*zap.Logger, error) {
	cfg := zap.NewProductionConfig()
	cfg.Encoding = "console"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	cfg.EncoderConfig.EncodeDuration = zapcore.StringDurationEncoder
	return cfg.Build()
}

// run starts the service and returns the process exit code: 0 after a clean
// shutdown, 1 on a runtime failure, 2 on bad flags.
func run() int {
	if len(os.Args) > 1 && os.Args[1] == "rollback" {
		return rollback(os.Args[2:], os.Stdout, os.Stderr)
	}
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo-service: %v\n", err)
		return 2
	}
	logger, err := newLogger()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo-service: creating logger: %v\n", err)
		return 1
	}
	defer func() { _ = logger.Sync() }()
	if err := serve(opts, logger); err != nil {
		logger.Error("demo-service failed", zap.Error(err))
		return 1
	}
	return 0
}

// serve runs the HTTP server, the optional load and the signal handler until one stops.
func serve(opts options, logger *zap.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc := demo.New(demo.Options{Registry: reg, Seed: opts.seed, Logger: logger})
	if err := svc.Deploy(opts.version); err != nil {
		return fmt.Errorf("setting initial version: %w", err)
	}

	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", opts.listen, err)
	}
	srv := &http.Server{
		Handler:           svc,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(logger.Named("http")),
	}

	var g oklogrun.Group
	g.Add(oklogrun.SignalHandler(context.Background(), os.Interrupt, syscall.SIGTERM))
	g.Add(func() error {
		logger.Info("serving demo application",
			zap.String("address", ln.Addr().String()),
			zap.String("version", opts.version.Version),
			zap.Float64("error_rate", opts.version.ErrorRate),
			zap.Duration("latency", opts.version.Latency))
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
		}
		return nil
	}, func(error) {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			logger.Warn("graceful shutdown timed out; closing connections", zap.Error(err))
			_ = srv.Close()
		}
	})
	if opts.loadRPS > 0 {
		target := "http://" + selfAddress(ln.Addr()) + "/"
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			logger.Info("sending built-in load", zap.String("target", target), zap.Float64("rps", opts.loadRPS))
			st, err := demo.Load{Target: target, RPS: opts.loadRPS}.Run(ctx)
			if err != nil {
				return fmt.Errorf("built-in load: %w", err)
			}
			logger.Info("built-in load stopped", zap.Int64("sent", st.Sent), zap.Int64("ok", st.OK),
				zap.Int64("errors", st.Errors), zap.Int64("dropped", st.Dropped))
			return nil
		}, func(error) { cancel() })
	}

	err = g.Run()
	if errors.Is(err, oklogrun.ErrSignal) {
		logger.Info("shut down", zap.String("reason", err.Error()))
		return nil
	}
	return err
}

// selfAddress is a loopback host:port reaching a listener bound to addr.
func selfAddress(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip := tcp.IP
	if ip.IsUnspecified() {
		// Go listens dual-stack on an unspecified address, so IPv4 loopback reaches it.
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}

// rollback is the client mode: POST /admin/rollback to a running service.
func rollback(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo-service rollback", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "http://127.0.0.1:8080", "base `URL` of the running demo-service")
	to := fs.String("to", os.Getenv("GUARDIAN_BASELINE"), "`version` to go back to (default $GUARDIAN_BASELINE, set by Guardian)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *to == "" {
		fmt.Fprintln(stderr, "demo-service rollback: --to (or GUARDIAN_BASELINE) is required")
		return 2
	}
	body := fmt.Sprintf(`{"baseline":%s}`, strconv.Quote(*to))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, *admin+"/admin/rollback", strings.NewReader(body))
	if err != nil {
		fmt.Fprintf(stderr, "demo-service rollback: %v\n", err)
		return 2
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "demo-service rollback: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "demo-service rollback: %s: %s\n", resp.Status, out)
		return 1
	}
	fmt.Fprintf(stdout, "rolled back to %s: %s\n", *to, out)
	return 0
}
