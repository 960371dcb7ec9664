package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/oklog/run"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/web"
)

// WaitOptions configure WaitValid.
type WaitOptions struct {
	// Retry is how often a configuration that does not load is tried
	// again although its file did not change (config.DefaultWaitRetry
	// when zero): the secret files it names are not watched.
	Retry time.Duration
	// OnFailure, when set, is told of each failed attempt, after it is
	// logged (the command records a Kubernetes Event on its pod).
	OnFailure func(error)
	// OnLoaded, when set, is called once the configuration has loaded
	// after failing.
	OnLoaded func()
}

// WaitValid is Load for a Guardian that must not stop on a bad
// configuration: a sidecar, whose exit would take its pod's readiness
// with it. When the configuration loads, it returns at once. Otherwise it
// serves, until it does, /-/healthy (200), /-/ready (503), /metrics
// (guardian_config_last_reload_successful 0) and /-/reload on
// global.listen_address as far as the file says it
// (config.PeekListenAddress; the default address when it cannot be
// read), logs each failed attempt at error level and tries again when the
// file changes, on Reload (SIGHUP, POST /-/reload) and every w.Retry. It
// returns nil once a configuration is applied, and the HTTP server is
// closed then: Run serves on the configuration's address. It returns
// ctx's error if ctx ends first, or the error that stops it serving.
// Options.Listener is not used while waiting.
func (a *App) WaitValid(ctx context.Context, w WaitOptions) error {
	err := a.Load()
	if err == nil {
		return nil
	}
	a.log.Error("configuration not loaded: waiting for a valid one (serving /-/healthy and /metrics, not /-/ready); "+
		"fix the file, `guardian check` lists every error", zap.String("file", a.opts.ConfigFile), zap.Error(err))
	if w.OnFailure != nil {
		w.OnFailure(err)
	}
	addr, perr := config.PeekListenAddress(a.opts.ConfigFile)
	if perr != nil {
		a.log.Warn("serving on the default address until the configuration loads", zap.String("listen", addr), zap.Error(perr))
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s while waiting for a valid configuration: %w", addr, err)
	}
	srv := web.NewUnconfigured(web.Options{
		Gatherer: a.opts.Registry,
		Logger:   a.log.Named("web"),
		Reload:   a.Reload,
		Flags:    a.opts.Web,
	})
	a.log.Info("serving while waiting for a valid configuration", zap.String("listen", l.Addr().String()))

	var g run.Group
	actor(ctx, &g, func(ctx context.Context) error { return srv.Serve(ctx, l) })
	if !a.opts.NoWatch {
		actor(ctx, &g, a.reloader.Watch)
	}
	actor(ctx, &g, func(ctx context.Context) error {
		_, err := a.reloader.WaitValid(ctx, w.Retry, w.OnFailure)
		return err
	})
	err = g.Run()
	if a.reloader.Current() == nil {
		if err == nil {
			// Serve or Watch returned first without an error: ctx ended.
			err = ctx.Err()
		}
		if err == nil {
			err = errors.New("stopped waiting for a valid configuration")
		}
		return err
	}
	if w.OnLoaded != nil {
		w.OnLoaded()
	}
	return nil
}
