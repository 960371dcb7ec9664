package app

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/rollout"
	kuberollout "github.com/rollback-guardian/guardian/rollout/kubernetes"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/source/embedded"
	promsource "github.com/rollback-guardian/guardian/source/prometheus"
	"github.com/rollback-guardian/guardian/trigger"
)

// sourceMetrics are shared by every embedded source of the App.
type sourceMetrics = embedded.Metrics

func newSourceMetrics(reg prometheus.Registerer) *sourceMetrics { return embedded.NewMetrics(reg) }

// buildSources creates a querier per named source.
func (a *App) buildSources(cfg *config.Config) (map[string]source.Querier, error) {
	named := map[string]source.Querier{}
	for _, sc := range cfg.Sources {
		if sc.Prometheus == nil {
			return nil, fmt.Errorf("source %s: no source type", sc.Name)
		}
		q, err := promsource.New(*sc.Prometheus, a.log.Named("source").With(zap.String("source", sc.Name)))
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", sc.Name, err)
		}
		named[sc.Name] = q
	}
	return named, nil
}

// buildService builds one service; it reuses prev's embedded source while
// the scrape settings and retention are unchanged, and returns the embedded
// source it created, if any, so a failed build can release it.
func (a *App) buildService(cfg *config.Config, sc config.Service, named map[string]source.Querier, prev *service) (*service, *embeddedRunner, error) {
	log := a.log.With(zap.String("service", sc.Name))
	s := &service{
		name:        sc.Name,
		cfg:         sc,
		interval:    time.Duration(cfg.Global.EvaluationInterval),
		log:         log,
		m:           a.m,
		onVerdict:   a.opts.OnVerdict,
		onFiring:    a.onFiring,
		persist:     a.persistService,
		lastOutcome: map[string]trigger.Outcome{},
	}
	var (
		err  error
		defs []trigger.Definition
	)
	if s.detector, err = rollout.NewDetector(sc.Name, detectorConfig(sc.Deploy)); err != nil {
		return nil, nil, err
	}
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
	if s.appExec, s.appExecName, err = buildExecutor(sc.Rollback.Application, log, runDir(cfg)); err != nil {
		return nil, nil, fmt.Errorf("rollback.application: %w", err)
	}
	if s.dbExec, s.dbExecName, err = buildExecutor(sc.Rollback.Database, log, runDir(cfg)); err != nil {
		return nil, nil, fmt.Errorf("rollback.database: %w", err)
	}

	if k := sc.Deploy.Kubernetes; k != nil {
		rc, err := kubeConfig(k.Kubeconfig)
		if err != nil {
			return nil, nil, fmt.Errorf("deploy.kubernetes: %w", err)
		}
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, nil, fmt.Errorf("deploy.kubernetes: %w", err)
		}
		dyn, err := dynamic.NewForConfig(rc)
		if err != nil {
			return nil, nil, fmt.Errorf("deploy.kubernetes: %w", err)
		}
		s.kwatch, err = kuberollout.New(client, dyn, sc.Name,
			kuberollout.Config{Namespace: k.Namespace, Deployment: k.Deployment, Rollout: k.Rollout, VersionLabel: k.VersionLabel},
			nil, log.Named("kubernetes"))
		if err != nil {
			return nil, nil, err
		}
	}

	var fresh *embeddedRunner
	var q source.Querier
	if sc.Source != "" {
		var ok bool
		if q, ok = named[sc.Source]; !ok {
			return nil, nil, fmt.Errorf("undefined source %q", sc.Source)
		}
	} else {
		if sc.Scrape == nil {
			return nil, nil, fmt.Errorf("no source and no scrape settings")
		}
		retention, err := retentionFor(sc)
		if err != nil {
			return nil, nil, err
		}
		if prev != nil && prev.embedded != nil && prev.embedded.same(*sc.Scrape, retention) {
			s.embedded = prev.embedded
		} else {
			dir, err := stateDir(cfg)
			if err != nil {
				return nil, nil, err
			}
			src, err := embedded.New(*sc.Scrape, embedded.Options{
				Retention:    retention,
				Dir:          dir,
				Metrics:      a.srcM,
				Engines:      a.engines,
				Target:       sc.Name,
				QueryTimeout: time.Duration(cfg.Global.QueryTimeout),
			}, log.Named("scrape"), nil)
			if err != nil {
				return nil, nil, err
			}
			fresh = &embeddedRunner{src: src, cfg: *sc.Scrape, retention: retention}
			s.embedded = fresh
		}
		q = s.embedded.src
	}
	s.querier = countingQuerier{q: q, service: sc.Name, m: a.m, timeout: time.Duration(cfg.Global.QueryTimeout)}
	return s, fresh, nil
}

// retentionFor is just longer than the longest range any of the service's
// queries looks back: the embedded source keeps no more history than that.
func retentionFor(sc config.Service) (time.Duration, error) {
	longest := time.Duration(0)
	consider := func(text string, window time.Duration) error {
		if text == "" {
			return nil
		}
		t, err := query.New("q", text)
		if err != nil {
			return err
		}
		// Since-deploy ranges reach back over the whole watch window.
		q, err := t.Render(query.Vars{Service: sc.Name, Version: "v", Baseline: "b", Window: window, SinceDeploy: time.Duration(sc.WatchWindow)})
		if err != nil {
			return err
		}
		r, err := query.MaxRange(q)
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
			w = trigger.DefaultWindow
		}
		if err := consider(tc.Query, w); err != nil {
			return 0, fmt.Errorf("trigger %s: %w", tc.Name, err)
		}
		if err := consider(tc.VolumeQuery, w); err != nil {
			return 0, fmt.Errorf("trigger %s: %w", tc.Name, err)
		}
		if sq := tc.Sequential; sq != nil {
			// The baseline's counts come from the period before the deploy.
			bw := max(time.Duration(sq.BaselineWindow), time.Duration(sc.WatchWindow))
			for _, text := range []string{sq.Errors, sq.Requests} {
				if err := consider(text, bw); err != nil {
					return 0, fmt.Errorf("trigger %s: sequential: %w", tc.Name, err)
				}
			}
			longest = max(longest, time.Duration(sq.BaselineWindow)+time.Duration(sc.WatchWindow))
		}
	}
	// A margin of two scrape intervals and the 5m lookback of instant
	// selectors, so the oldest range still has its first samples.
	interval := time.Duration(sc.Scrape.Interval)
	return longest + 2*interval + 5*time.Minute, nil
}

// embeddedRunner owns an embedded source and its scrape loop.
type embeddedRunner struct {
	src       *embedded.Source
	cfg       config.Scrape
	retention time.Duration

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *embeddedRunner) same(c config.Scrape, retention time.Duration) bool {
	return reflect.DeepEqual(e.cfg, c) && e.retention == retention
}

// start starts the scrape loop once.
func (e *embeddedRunner) start(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cancel != nil {
		return
	}
	ctx, e.cancel = context.WithCancel(ctx)
	e.done = make(chan struct{})
	go func() {
		defer close(e.done)
		_ = e.src.Run(ctx)
	}()
}

// stop ends the scrape loop and releases the source.
func (e *embeddedRunner) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cancel != nil {
		e.cancel()
		<-e.done
	}
	_ = e.src.Close()
}

func (s *service) hasTrigger(name string) bool {
	for _, tr := range s.triggers {
		if tr.Definition().Name == name {
			return true
		}
	}
	return false
}

func equalDeploy(a, b config.Deploy) bool { return a == b }
