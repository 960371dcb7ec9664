package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"
)

// DefaultWaitRetry is how often WaitValid tries a configuration that does
// not load again although nothing changed: the secret files it names live
// elsewhere (another volume) and are not watched.
const DefaultWaitRetry = 30 * time.Second

// WaitValid is LoadInitial for a daemon that must not stop on a bad
// configuration (a sidecar, whose exit would take its pod's readiness
// with it). Call it instead of LoadInitial, with Watch running and before
// Run. It loads and applies the file; while that fails, it logs each
// failure at error level, tells onFailure (when not nil), keeps
// guardian_config_last_reload_successful at 0 and tries again when Watch
// sees the file change, when a reload is requested (Request) and every
// retry (DefaultWaitRetry when not positive). File events that leave a
// failed file's bytes as they were are skipped without a word. It returns
// the configuration applied, or ctx's error if ctx ends first.
func (r *Reloader) WaitValid(ctx context.Context, retry time.Duration, onFailure func(error)) (*Config, error) {
	if retry <= 0 {
		retry = DefaultWaitRetry
	}
	timer := time.NewTimer(retry)
	defer timer.Stop()
	// The first attempt at once: the file may have changed before Watch
	// watched it.
	force := false
	for {
		r.mu.Lock()
		ws := r.waiters
		r.waiters = nil
		r.mu.Unlock()
		r.loadMu.Lock()
		attempted, err := r.attempt(force || len(ws) > 0)
		r.loadMu.Unlock()
		if r.onAttempt != nil {
			r.onAttempt()
		}
		if cfg := r.current.Load(); cfg != nil {
			answer(ws, err)
			return cfg, nil
		}
		// The failure is logged and reported before the requests that
		// caused it are answered: whoever waited on one sees it reported.
		if attempted && err != nil {
			fields := []zap.Field{zap.Error(err), zap.Duration("retry", retry)}
			if es, ok := errors.AsType[Errors](err); ok {
				fields = append(fields, zap.Int("errors", len(es)))
			}
			r.logger.Error("configuration not loaded: waiting for a valid one (serving /-/healthy and /metrics, not /-/ready); "+
				"fix the file, `guardian check` lists every error", fields...)
			if onFailure != nil {
				onFailure(err)
			}
		}
		answer(ws, err)
		timer.Reset(retry)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			force = true
		case <-r.kick:
			force = false
		}
	}
}

// answer sends err to each waiter of a requested reload.
func answer(ws []chan error, err error) {
	for _, w := range ws {
		w <- err
	}
}

// PeekListenAddress returns global.listen_address as far as the file at
// path says it, reading nothing else and checking nothing else: where a
// daemon whose configuration does not load yet can serve its health. It
// returns DefaultListenAddress and an error saying why when the file
// cannot be read, is not YAML or names no valid address.
func PeekListenAddress(path string) (string, error) {
	data, err := readLimited(path)
	if err != nil {
		return DefaultListenAddress, err
	}
	var f struct {
		Global struct {
			ListenAddress string `yaml:"listen_address"`
		} `yaml:"global"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		return DefaultListenAddress, fmt.Errorf("reading global.listen_address from %s: %w", path, err)
	}
	addr := f.Global.ListenAddress
	if addr == "" {
		return DefaultListenAddress, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return DefaultListenAddress, fmt.Errorf("global.listen_address %q in %s: %w", addr, path, err)
	}
	return addr, nil
}
