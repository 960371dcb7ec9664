package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.uber.org/zap"
)

// ErrReloaderStopped is the result of a reload requested after Run returned.
var ErrReloaderStopped = errors.New("config reloader stopped")

// DefaultDebounce is how long Watch lets file events settle before it
// requests a reload.
const DefaultDebounce = 100 * time.Millisecond

// Reload results, the values of guardian_config_reloads_total's result label.
const (
	resultSuccess   = "success"
	resultFailure   = "failure"
	resultUnchanged = "unchanged"
)

// Reloader loads the configuration file and hands each new valid version to
// an apply function. File events (Watch), SIGHUP and POST /-/reload all
// feed one coalescing channel served by Run, so reloads never overlap.
// A reload whose file (and secret files) are unchanged is skipped; an
// invalid file or a failed apply keeps the old configuration running and
// sets guardian_config_last_reload_successful to 0.
type Reloader struct {
	// Debounce is how long Watch waits after an event in the config
	// directory before requesting a reload, gathering the events of one
	// update (write a temporary file, rename it) into one reload (default
	// DefaultDebounce). Set it before calling Watch.
	Debounce time.Duration
	// Now returns the current time; it stamps
	// guardian_config_last_reload_success_timestamp_seconds (default
	// time.Now). Set it before calling LoadInitial or Run.
	Now func() time.Time

	path   string
	apply  func(*Config) error
	logger *zap.Logger
	kick   chan struct{} // capacity 1: pending reloads coalesce

	mu      sync.Mutex
	waiters []chan error // requests waiting for the next run
	stopped bool

	onWatching func() // called once Watch watches the directory; for tests
	onAttempt  func() // called after each attempt of WaitValid; for tests

	loadMu  sync.Mutex // serialises loads: LoadInitial and Run
	lastSum string     // checksum of the applied configuration
	// failedSum is the SHA-256 of the file whose load failed last, until
	// a load succeeds: events that leave the file so are not retried.
	failedSum string
	current   atomic.Pointer[Config]
	reloads   *prometheus.CounterVec
	success   prometheus.Gauge
	lastTime  prometheus.Gauge
}

// NewReloader returns a Reloader for the file at path. apply builds the
// state for a new configuration and swaps it in; if it fails, the old
// configuration must keep running. Metrics are registered with reg.
func NewReloader(path string, apply func(*Config) error, logger *zap.Logger, reg prometheus.Registerer) *Reloader {
	f := promauto.With(reg)
	r := &Reloader{
		Debounce: DefaultDebounce,
		Now:      time.Now,
		path:     path,
		apply:    apply,
		logger:   logger.With(zap.String("file", path)),
		kick:     make(chan struct{}, 1),
		reloads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "guardian_config_reloads_total",
			Help: "Configuration loads by result: success, failure, or unchanged (skipped by checksum).",
		}, []string{"result"}),
		success: f.NewGauge(prometheus.GaugeOpts{
			Name: "guardian_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful (1) or failed (0).",
		}),
		lastTime: f.NewGauge(prometheus.GaugeOpts{
			Name: "guardian_config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload.",
		}),
	}
	for _, res := range []string{resultSuccess, resultFailure, resultUnchanged} {
		r.reloads.WithLabelValues(res)
	}
	return r
}

// Current returns the configuration applied last, or nil before the first
// successful load.
func (r *Reloader) Current() *Config { return r.current.Load() }

// LoadInitial loads the file and applies it, for startup: unlike a reload,
// its error should stop the daemon. Call it before Run.
func (r *Reloader) LoadInitial() (*Config, error) {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	if err := r.load(true); err != nil {
		return nil, err
	}
	return r.current.Load(), nil
}

// Request asks Run for a reload and returns a channel that receives the
// result of a reload that starts after the call: nil when the new
// configuration was applied or the file is unchanged, an error (wrapping
// Errors for an invalid file) otherwise. Requests made while a reload is
// pending share it. After Run has returned, the result is ErrReloaderStopped.
func (r *Reloader) Request() <-chan error {
	ch := make(chan error, 1)
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		ch <- ErrReloaderStopped
		return ch
	}
	r.waiters = append(r.waiters, ch)
	r.mu.Unlock()
	r.trigger()
	return ch
}

// trigger asks for a reload without waiting for its result.
func (r *Reloader) trigger() {
	select {
	case r.kick <- struct{}{}:
	default: // a reload is already pending; it will read the file afresh
	}
}

// Run serves reload requests until ctx is done. It returns nil then.
func (r *Reloader) Run(ctx context.Context) error {
	defer func() {
		r.mu.Lock()
		r.stopped = true
		ws := r.waiters
		r.waiters = nil
		r.mu.Unlock()
		for _, w := range ws {
			w <- ErrReloaderStopped
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		}
		// Take the waiters before reading the file, so that every waiter's
		// reload starts after its request.
		r.mu.Lock()
		ws := r.waiters
		r.waiters = nil
		r.mu.Unlock()

		// A request (SIGHUP, POST /-/reload) always reads the file again:
		// its user may have fixed a secret file it names. A file event
		// does not retry a file that failed as it is.
		r.loadMu.Lock()
		err := r.load(len(ws) > 0)
		r.loadMu.Unlock()
		for _, w := range ws {
			w <- err
		}
	}
}

// load reads, checks and applies the file; loadMu must be held. Unless
// retry is set, a file with the bytes of the last one that failed is
// skipped without a word.
func (r *Reloader) load(retry bool) error {
	_, err := r.attempt(retry)
	return err
}

// attempt is load; it also reports whether it tried the file (false: the
// file was skipped, unchanged since it failed).
func (r *Reloader) attempt(retry bool) (bool, error) {
	data, err := readLimited(r.path)
	if err != nil {
		r.failedSum = ""
		return true, r.failed(err)
	}
	sum := sha256.Sum256(data)
	fileSum := hex.EncodeToString(sum[:])
	if !retry && fileSum == r.failedSum {
		return false, nil
	}
	return true, r.loadData(data, fileSum)
}

// loadData parses and applies data, the bytes of the file, whose SHA-256 is
// fileSum.
func (r *Reloader) loadData(data []byte, fileSum string) error {
	cfg, err := parseFile(r.path, data)
	if err != nil {
		r.failedSum = fileSum
		return r.failed(err)
	}
	if r.lastSum != "" && cfg.Checksum() == r.lastSum {
		r.failedSum = ""
		// The running configuration is the file's: nothing to do, and
		// nothing is wrong, even if a different version failed before.
		r.reloads.WithLabelValues(resultUnchanged).Inc()
		r.success.Set(1)
		r.logger.Debug("configuration unchanged, not reloading", zap.String("checksum", cfg.Checksum()))
		return nil
	}
	if err := r.apply(cfg); err != nil {
		r.failedSum = fileSum
		return r.failed(fmt.Errorf("applying: %w", err))
	}
	r.failedSum = ""
	r.lastSum = cfg.Checksum()
	r.current.Store(cfg)
	r.reloads.WithLabelValues(resultSuccess).Inc()
	r.success.Set(1)
	r.lastTime.Set(float64(r.Now().UnixNano()) / 1e9)
	r.logger.Info("configuration loaded",
		zap.String("checksum", cfg.Checksum()),
		zap.Int("services", len(cfg.Services)),
		zap.Int("warnings", len(cfg.Warnings)))
	for _, w := range cfg.Warnings {
		r.logger.Warn("configuration warning",
			zap.String("field", w.Path), zap.Int("line", w.Line), zap.String("warning", w.Msg))
	}
	return nil
}

// failed counts a failed load and returns its error, naming the file. A
// failed reload is logged here; a failed first load is not, since nothing
// runs to be kept: the caller reports it (Guardian does not start).
func (r *Reloader) failed(err error) error {
	if _, ok := errors.AsType[*FileError](err); !ok {
		err = fmt.Errorf("loading config %s: %w", r.path, err)
	}
	r.reloads.WithLabelValues(resultFailure).Inc()
	r.success.Set(0)
	if r.current.Load() == nil {
		return err
	}
	fields := []zap.Field{zap.Error(err)}
	var es Errors
	if errors.As(err, &es) {
		fields = append(fields, zap.Int("errors", len(es)))
	}
	r.logger.Error("configuration not loaded, keeping the running one", fields...)
	return err
}

// Watch requests a reload whenever the configuration file changes, until
// ctx is done; it returns nil then. It watches the file's directory rather
// than the file, so it sees editors that rename a new file over the old
// one and Kubernetes ConfigMap updates, which swap the "..data" symlink
// the file's own symlink points through. Only events for the file and for
// "..data" count: other files in the directory (a log file, a database)
// are ignored without a word, at any log level, so that logging an event
// cannot cause another. Events are gathered for Debounce; the checksum
// skips those that did not change the configuration, and a file that
// failed to load is not tried again until its bytes change.
func (r *Reloader) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching config %s: %w", r.path, err)
	}
	defer w.Close()
	dir := filepath.Dir(r.path)
	file := filepath.Clean(r.path)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watching config directory %s: %w", dir, err)
	}
	if r.onWatching != nil {
		r.onWatching()
	}
	if r.current.Load() == nil {
		// Waiting for a valid file (WaitValid), whose first attempt came
		// before this watch: a fix written in between has no event to come.
		// One more attempt, skipped if the bytes are those that failed.
		r.trigger()
	}
	debounce := r.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	// The first event of a burst arms the timer and later ones do not
	// re-arm it, so a directory that never stops changing (a log or a
	// database next to the config) cannot postpone reloads forever.
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	armed := false
	var first fsnotify.Event // of the burst
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !concerns(ev, file, dir) {
				continue
			}
			if !armed {
				timer.Reset(debounce)
				armed = true
				first = ev
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.logger.Warn("watching config directory", zap.String("dir", dir), zap.Error(err))
		case <-timer.C:
			armed = false
			r.logger.Debug("config file changed", zap.String("event", first.String()))
			r.trigger()
		}
	}
}

// concerns reports whether ev, an event in dir, may change the
// configuration file: an event for the file itself, or for a ConfigMap's
// "..data" symlink.
func concerns(ev fsnotify.Event, file, dir string) bool {
	name := filepath.Clean(ev.Name)
	return name == file || name == filepath.Join(dir, "..data")
}
