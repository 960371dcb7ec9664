package app

import (
	"fmt"
	"path/filepath"
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/plugin"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/source/embedded"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/verify"
	"github.com/rollback-guardian/guardian/watch"
)

// sourceMetrics are shared by every embedded source of the App.
type sourceMetrics = embedded.Metrics

func newSourceMetrics(reg prometheus.Registerer) *sourceMetrics { return embedded.NewMetrics(reg) }

// service is one guarded service as built from its configuration: its
// watch stage, and what the incident manager needs.
type service struct {
	name     string
	cfg      config.Service
	interval time.Duration
	querier  source.Querier   // counting wrapper around the service's source
	embedded *embedded.Runner // nil when the service uses a named source
	// filter is the embedded source's scrape filter for this
	// configuration's queries (nil: keep every series), set on a kept
	// source once the configuration is swapped in.
	filter *embedded.Filter
	watch  *watch.Service
	// triggers are the configured triggers (the watch also runs the
	// built-in ones).
	triggers []*trigger.Trigger
	// kwatch learns deploys from a Kubernetes workload; nil without one.
	kwatch watch.Feed

	appExec, dbExec         executor.Executor
	appExecName, dbExecName string
	verifier                *verify.Verifier
	log                     *zap.Logger
}

// buildService builds one service; it reuses prev's embedded source while
// the scrape settings and retention are unchanged, and returns the embedded
// source it created, if any, so a failed build can release it.
func (a *App) buildService(cfg *config.Config, sc config.Service, named map[string]source.Querier, prev *service) (*service, *embedded.Runner, error) {
	log := a.log.With(zap.String("service", sc.Name))
	s := &service{
		name:     sc.Name,
		cfg:      sc,
		interval: time.Duration(cfg.Global.EvaluationInterval),
		log:      log,
	}
	detector, err := rollout.NewDetector(sc.Name, detectorConfig(sc.Deploy))
	if err != nil {
		return nil, nil, err
	}
	var defs []trigger.Definition
	for _, tc := range sc.Triggers {
		def, err := trigger.FromSpec(triggerSpec(tc))
		if err != nil {
			return nil, nil, err
		}
		tr, err := trigger.New(def)
		if err != nil {
			return nil, nil, err
		}
		s.triggers = append(s.triggers, tr)
		defs = append(defs, def)
	}
	s.verifier = verifierFor(sc, defs)
	if s.appExec, s.appExecName, err = plugin.Executor(sc.Rollback.Application, log, runDir(cfg)); err != nil {
		return nil, nil, fmt.Errorf("rollback.application: %w", err)
	}
	if s.dbExec, s.dbExecName, err = plugin.Executor(sc.Rollback.Database, log, runDir(cfg)); err != nil {
		return nil, nil, fmt.Errorf("rollback.database: %w", err)
	}

	var stalled trigger.StallFunc
	if k := sc.Deploy.Kubernetes; k != nil {
		if s.kwatch, stalled, err = plugin.DeployFeed(sc.Name, k, log.Named("kubernetes")); err != nil {
			return nil, nil, fmt.Errorf("deploy.kubernetes: %w", err)
		}
	}

	var fresh *embedded.Runner
	var q source.Querier
	if sc.Source != "" {
		var ok bool
		if q, ok = named[sc.Source]; !ok {
			return nil, nil, fmt.Errorf("undefined source %q", sc.Source)
		}
	} else {
		var prevRunner *embedded.Runner
		if prev != nil {
			prevRunner = prev.embedded
		}
		if s.filter, err = embedded.FilterFor(sc); err != nil {
			return nil, nil, err
		}
		var isNew bool
		s.embedded, isNew, err = embedded.RunnerFor(prevRunner, sc, trigger.DefaultWindow, s.interval, embedded.Options{
			Filter: s.filter, Metrics: a.srcM, Engines: a.engines, Target: sc.Name, QueryTimeout: time.Duration(cfg.Global.QueryTimeout), OnScrape: a.outages.ScrapeObserver(sc.Name),
		}, log.Named("scrape"))
		if err != nil {
			return nil, nil, err
		}
		if isNew {
			fresh = s.embedded
		}
		q = s.embedded.Source()
	}
	s.querier = a.m.Querier(sc.Name, q, time.Duration(cfg.Global.QueryTimeout), watch.ObserveWith(a.outages.Observer(sc.Source)))

	evaluators := make([]trigger.Evaluator, 0, len(s.triggers)+1)
	if p := progressDeadline(sc.Deploy.Kubernetes, stalled); p != nil {
		evaluators = append(evaluators, p)
	}
	for _, tr := range s.triggers {
		evaluators = append(evaluators, tr)
	}
	var align func() time.Duration
	if r := s.embedded; r != nil {
		align = afterScrapes(r.Source())
	}
	s.watch, err = watch.New(watch.Options{
		Name: sc.Name, Detector: detector, Triggers: evaluators, Querier: s.querier, Align: align,
		Window: time.Duration(sc.WatchWindow), Interval: s.interval, Scheduler: a.sched, Metrics: a.m, Logger: log,
		OnVerdict: a.opts.OnVerdict, OnFiring: a.onFiring, Persist: a.saved().Persist,
	})
	if err != nil {
		if fresh != nil {
			fresh.Stop()
		}
		return nil, nil, err
	}
	return s, fresh, nil
}

// progressDeadline is the built-in progress-deadline trigger of a service
// whose deploys are learnt from a Kubernetes workload, judged from the
// stalls its watcher sees; nil without one, or when
// deploy.kubernetes.on_progress_deadline is "ignore" (the watcher only logs
// a stall then).
func progressDeadline(k *config.KubernetesDeploy, stalled trigger.StallFunc) *trigger.ProgressDeadline {
	if k == nil || stalled == nil || k.OnProgressDeadline == config.OnProgressDeadlineIgnore {
		return nil
	}
	return trigger.NewProgressDeadline(config.ProgressDeadlineTrigger, config.DefaultSeverity, stalled)
}

// equalDeploy reports whether a reload kept the deploy settings, so the
// service keeps the versions it learnt.
func equalDeploy(a, b config.Deploy) bool { return reflect.DeepEqual(a, b) }

// runDir is where executors keep their runs: state_dir/runs.
func runDir(cfg *config.Config) string {
	d, err := filepath.Abs(cfg.Global.StateDir)
	if err != nil {
		d = cfg.Global.StateDir
	}
	return filepath.Join(d, "runs")
}

// afterScrapes times a service's evaluations just after the scrapes of its
// embedded source src (watch.Options.Align): the wait until its next scrape
// plus a tenth of the scrape interval (at most 100ms), a margin for the
// two loops' timer jitter; a scrape still under way then is waited for by
// the query (see embedded.Source.Query). Left to chance, a loop ticking at
// the scrape interval may tick just before each scrape and read every one
// an interval late.
func afterScrapes(src *embedded.Source) func() time.Duration {
	margin := min(src.Interval()/10, 100*time.Millisecond)
	return func() time.Duration {
		next := src.NextScrape(time.Now())
		if next.IsZero() {
			return 0
		}
		return time.Until(next) + margin
	}
}
