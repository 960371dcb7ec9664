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

	mu      sync.Mutex
	cancel  context.CancelFunc
	loop    *scrapeLoop
	stopped bool
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

// Start starts the scrape loop unless it runs or the runner is stopped: a
// scrape at once, then on the source's schedule (Source.NextScrape, known
// when Start returns), until ctx ends, Pause or Stop. Between scrapes the
// loop holds a timer, not a goroutine.
func (r *Runner) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil || r.stopped {
		return
	}
	ctx, r.cancel = context.WithCancel(ctx)
	sc := r.src.newSchedule(time.Now())
	r.src.schedule.Store(sc)
	r.loop = r.src.startLoop(ctx, sc)
}

// Pause ends the scrape loop, waiting for a scrape under way, and keeps the
// source and its samples (they age out with the retention): Start scrapes
// again. A replica pauses the sources of the services another replica
// drives now.
func (r *Runner) Pause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.end()
}

// end ends the loop, if it runs; r.mu is held.
func (r *Runner) end() {
	if r.cancel != nil {
		r.cancel()
		r.loop.stop()
		r.cancel, r.loop = nil, nil
	}
}

// Stop ends the scrape loop, waiting for a scrape under way, and closes the
// source; Start does nothing after it.
func (r *Runner) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.end()
	r.stopped = true
	_ = r.src.Close()
}

// Retention is how long the embedded source of service sc must keep, for
// its queries, samples: just longer than the furthest back any of them
// looks. Each query is rendered as the trigger package renders it, with
// its trigger's window (defaultWindow when it sets none: the trigger
// package's default) and every {{.SinceDeploy}} it may be given:
//   - a threshold trigger's queries, and a sequential test's counts since
//     the deploy, with {{.SinceDeploy}} as long as the whole watch window;
//   - a sequential test's counts of the new version, which start a lead
//     before the deploy (trigger.Deploy.Lead: the version query's longest
//     range plus the evaluation interval), so over the watch window plus
//     that lead;
//   - a sequential test's counts over its window (without a deploy
//     {{.SinceDeploy}} is {{.Window}}), as its derived query runs them for
//     recovery checks;
//   - a sequential test's pre-deploy baseline counts, {{.SinceDeploy}}
//     being baseline_window: they are evaluated at the deploy time, which
//     may be a whole watch window ago (they are taken at the first
//     evaluation when the deploy was not seen at once, say after a
//     restart), so they reach watch_window + baseline_window back.
//
// A latency test's buckets query counts as a sequential test's count
// queries do, in each of these roles.
//
// A margin of two scrape intervals and the 5m lookback of instant
// selectors keeps the oldest range's first samples.
func Retention(sc config.Service, defaultWindow, evaluation time.Duration) (time.Duration, error) {
	watch := time.Duration(sc.WatchWindow)
	longest := time.Duration(0)
	versionRange := time.Duration(0)
	// consider notes how far back text reaches rendered with window and
	// since, evaluated ago before now.
	consider := func(text string, window, since, ago time.Duration) error {
		if text == "" {
			return nil
		}
		t, err := querytmpl.New("q", text)
		if err != nil {
			return err
		}
		q, err := t.Render(querytmpl.Vars{Service: sc.Name, Version: "v", Baseline: "b", Window: window, SinceDeploy: since})
		if err != nil {
			return err
		}
		r, err := querytmpl.MaxRange(q)
		if err != nil {
			return err
		}
		longest = max(longest, ago+r)
		return nil
	}
	if err := consider(sc.Deploy.VersionQuery, time.Minute, 0, 0); err != nil {
		return 0, fmt.Errorf("deploy.version_query: %w", err)
	}
	versionRange = longest
	lead := versionRange + evaluation
	for _, tc := range sc.Triggers {
		w := time.Duration(tc.Window)
		if w == 0 {
			w = defaultWindow
		}
		for _, text := range []string{tc.Query, tc.VolumeQuery} {
			if err := consider(text, w, watch, 0); err != nil {
				return 0, fmt.Errorf("trigger %s: %w", tc.Name, err)
			}
		}
		if l := tc.Latency; l != nil {
			err := consider(l.Buckets, w, watch+lead, 0)
			if err == nil {
				err = consider(l.Buckets, w, 0, 0)
			}
			if err == nil && l.BaselineWindow > 0 {
				err = consider(l.Buckets, w, time.Duration(l.BaselineWindow), watch)
			}
			if err != nil {
				return 0, fmt.Errorf("trigger %s: latency: %w", tc.Name, err)
			}
		}
		sq := tc.Sequential
		if sq == nil {
			continue
		}
		for _, text := range []string{sq.Errors, sq.Requests} {
			err := consider(text, w, watch+lead, 0)
			if err == nil {
				err = consider(text, w, 0, 0)
			}
			if err == nil && sq.BaselineWindow > 0 {
				err = consider(text, w, time.Duration(sq.BaselineWindow), watch)
			}
			if err != nil {
				return 0, fmt.Errorf("trigger %s: sequential: %w", tc.Name, err)
			}
		}
	}
	interval := time.Duration(0)
	if sc.Scrape != nil {
		interval = time.Duration(sc.Scrape.Interval)
	}
	return longest + 2*interval + LookbackDelta, nil
}

// How long an incident's charts need, beyond its watch window and its
// recovery's timeout: a manual go/no-go answered within
// manualApprovalAllowance, and chartMargin for the charts' two minutes
// before the deploy and after the end, and for the rollback itself.
const (
	manualApprovalAllowance = 15 * time.Minute
	chartMargin             = 10 * time.Minute
)

// IncidentSpan is how long an incident of service sc may last from its
// deploy until its report is written, for the report's charts: the watch
// window (the detection may come at its end), the go/no-go (auto_after's
// timeout; a manual answer within 15 minutes; none for auto), the
// recovery's timeout, and 10 minutes for the rollback and the charts'
// margins. The embedded source keeps this much more than its queries
// need (see SourceRetention).
func IncidentSpan(sc config.Service) time.Duration {
	var wait time.Duration
	switch sc.Approval.Mode {
	case "auto":
	case "auto_after":
		wait = time.Duration(sc.Approval.Timeout)
	default:
		wait = manualApprovalAllowance
	}
	return time.Duration(sc.WatchWindow) + wait + time.Duration(sc.Recovery.Timeout) + chartMargin
}

// SourceRetention is how long the embedded source of sc keeps samples:
// what its queries look back (Retention) plus an incident's span
// (IncidentSpan), so that the report's charts of an incident still find
// its deploy; never less than DefaultRetention.
func SourceRetention(sc config.Service, defaultWindow, evaluation time.Duration) (time.Duration, error) {
	q, err := Retention(sc, defaultWindow, evaluation)
	if err != nil {
		return 0, err
	}
	return max(DefaultRetention, q+IncidentSpan(sc)), nil
}

// RunnerFor returns the runner of service sc's embedded source across a
// reload: prev when it has the same scrape settings and retention (its data
// kept), otherwise a new runner (fresh), which the caller stops if the
// reload fails. opts.Retention is computed here (SourceRetention with
// defaultWindow and the evaluation interval).
func RunnerFor(prev *Runner, sc config.Service, defaultWindow, evaluation time.Duration, opts Options, logger *zap.Logger) (r *Runner, fresh bool, err error) {
	if sc.Scrape == nil {
		return nil, false, errors.New("no source and no scrape settings")
	}
	if opts.Retention, err = SourceRetention(sc, defaultWindow, evaluation); err != nil {
		return nil, false, err
	}
	if prev != nil && prev.Same(*sc.Scrape, opts.Retention) {
		return prev, false, nil
	}
	r, err = NewRunner(*sc.Scrape, opts, logger)
	return r, err == nil, err
}
