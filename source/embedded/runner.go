package embedded

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	querytmpl "github.com/rollback-guardian/guardian/query"
)

// Runner owns a Source and its scrape loop for a daemon that swaps its
// configuration: a reload keeps the Runner, and the samples it holds, while
// the scrape settings and the retention stay the same (see Same).
type Runner struct {
	src       *Source
	cfg       config.Scrape
	retention time.Duration

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewRunner builds the Source of cfg with opts (see New) and returns its
// runner, not yet scraping.
func NewRunner(cfg config.Scrape, opts Options, logger *zap.Logger) (*Runner, error) {
	src, err := New(cfg, opts, logger, nil)
	if err != nil {
		return nil, err
	}
	return &Runner{src: src, cfg: cfg, retention: opts.Retention}, nil
}

// Source returns the runner's source.
func (r *Runner) Source() *Source { return r.src }

// Same reports whether the runner was built with these scrape settings and
// retention, so that a reload may keep it.
func (r *Runner) Same(cfg config.Scrape, retention time.Duration) bool {
	return reflect.DeepEqual(r.cfg, cfg) && r.retention == retention
}

// Start starts the scrape loop, once: later calls, also after Stop, do
// nothing. The loop runs until ctx ends or Stop.
func (r *Runner) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return
	}
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		_ = r.src.Run(ctx)
	}()
}

// Stop ends the scrape loop, waiting for it, and closes the source.
func (r *Runner) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	_ = r.src.Close()
}

// Retention is how long the embedded source of service sc must keep
// samples: just longer than the longest range any of its queries looks
// back. Each query is rendered with its trigger's window (defaultWindow
// when it sets none: the trigger package's default), with {{.SinceDeploy}}
// as long as the whole watch window; a sequential test's baseline counts
// reach BaselineWindow before the deploy, which may be queried until the
// watch window ends. A margin of two scrape intervals and the 5m lookback
// of instant selectors keeps the oldest range's first samples.
func Retention(sc config.Service, defaultWindow time.Duration) (time.Duration, error) {
	watch := time.Duration(sc.WatchWindow)
	longest := time.Duration(0)
	consider := func(text string, window time.Duration) error {
		if text == "" {
			return nil
		}
		t, err := querytmpl.New("q", text)
		if err != nil {
			return err
		}
		q, err := t.Render(querytmpl.Vars{Service: sc.Name, Version: "v", Baseline: "b", Window: window, SinceDeploy: watch})
		if err != nil {
			return err
		}
		r, err := querytmpl.MaxRange(q)
		if err != nil {
			return err
		}
		longest = max(longest, r)
		return nil
	}
	if err := consider(sc.Deploy.VersionQuery, time.Minute); err != nil {
		return 0, fmt.Errorf("deploy.version_query: %w", err)
	}
	for _, tc := range sc.Triggers {
		w := time.Duration(tc.Window)
		if w == 0 {
			w = defaultWindow
		}
		if err := consider(tc.Query, w); err != nil {
			return 0, fmt.Errorf("trigger %s: %w", tc.Name, err)
		}
		if err := consider(tc.VolumeQuery, w); err != nil {
			return 0, fmt.Errorf("trigger %s: %w", tc.Name, err)
		}
		if sq := tc.Sequential; sq != nil {
			// The baseline's counts come from the period before the deploy.
			bw := max(time.Duration(sq.BaselineWindow), watch)
			for _, text := range []string{sq.Errors, sq.Requests} {
				if err := consider(text, bw); err != nil {
					return 0, fmt.Errorf("trigger %s: sequential: %w", tc.Name, err)
				}
			}
			longest = max(longest, time.Duration(sq.BaselineWindow)+watch)
		}
	}
	interval := time.Duration(0)
	if sc.Scrape != nil {
		interval = time.Duration(sc.Scrape.Interval)
	}
	return longest + 2*interval + LookbackDelta, nil
}

// RunnerFor returns the runner of service sc's embedded source across a
// reload: prev when it has the same scrape settings and retention (its data
// kept), otherwise a new runner (fresh), which the caller stops if the
// reload fails. opts.Retention is computed here (Retention with
// defaultWindow).
func RunnerFor(prev *Runner, sc config.Service, defaultWindow time.Duration, opts Options, logger *zap.Logger) (r *Runner, fresh bool, err error) {
	if sc.Scrape == nil {
		return nil, false, errors.New("no source and no scrape settings")
	}
	if opts.Retention, err = Retention(sc, defaultWindow); err != nil {
		return nil, false, err
	}
	if prev != nil && prev.Same(*sc.Scrape, opts.Retention) {
		return prev, false, nil
	}
	r, err = NewRunner(*sc.Scrape, opts, logger)
	return r, err == nil, err
}
