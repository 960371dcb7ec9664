// Package plugin builds the plugins a configuration names — rollback
// executors, notification receivers, metric sources and the deploy feed of
// a Kubernetes workload — and is where a
// slim build leaves out those that link heavy SDKs, as Prometheus leaves out
// service-discovery plugins: -tags nohelm drops the helm executor (the Helm
// SDK), -tags nokubernetes everything that talks to the Kubernetes API
// (client-go). Config rejects a configuration naming a left-out plugin with
// its field path and line; the stand-ins here only fail (config.LeftOutError).
package plugin

import (
	"errors"
	"fmt"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/command"
	"github.com/rollback-guardian/guardian/executor/webhook"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/alertmanager"
	"github.com/rollback-guardian/guardian/notify/pagerduty"
	notifyslack "github.com/rollback-guardian/guardian/notify/slack"
	"github.com/rollback-guardian/guardian/notify/statuspage"
	"github.com/rollback-guardian/guardian/notify/teams"
	notifywebhook "github.com/rollback-guardian/guardian/notify/webhook"
	"github.com/rollback-guardian/guardian/source"
	promsource "github.com/rollback-guardian/guardian/source/prometheus"
	"github.com/rollback-guardian/guardian/store"
)

// Executor builds a rollback executor from its configuration, and its name
// for logs and the timeline; nil configuration, nil executor. runDir keeps
// what an executor needs to find a rollback that outlived a restart (a
// command's run records and output).
func Executor(e *config.Executor, log *zap.Logger, runDir string) (executor.Executor, string, error) {
	log = log.Named("executor")
	var (
		x   executor.Executor
		err error
	)
	switch {
	case e == nil:
		return nil, "", nil
	case e.Command != nil:
		x, err = nonNil(command.New(*e.Command, log, command.WithRunDir(filepath.Join(runDir, "command"))))
	case e.Webhook != nil:
		x, err = nonNil(webhook.New(*e.Webhook, log))
	case e.Kubernetes != nil:
		x, err = kubernetesExecutor(*e.Kubernetes, log)
	case e.ArgoRollouts != nil:
		x, err = argoRolloutsExecutor(*e.ArgoRollouts, log)
	case e.Helm != nil:
		x, err = helmExecutor(*e.Helm, log)
	default:
		return nil, "", errors.New("no executor type")
	}
	if err != nil {
		return nil, "", err
	}
	return x, e.Name(), nil
}

// nonNil keeps a constructor's typed nil pointer out of the interface.
func nonNil[T executor.Executor](x T, err error) (executor.Executor, error) {
	if err != nil {
		return nil, err
	}
	return x, nil
}

// NotifierEnv is what some receivers need of the daemon.
type NotifierEnv struct {
	// Store returns the state store (nil until it is open): the Slack
	// receiver keeps where each incident's message is, the Statuspage
	// receiver each incident's id.
	Store func() store.Store
}

// Notifiers builds every receiver of the configuration, by name.
func Notifiers(cfg *config.Config, log *zap.Logger, env ...NotifierEnv) (map[string]notify.Notifier, error) {
	var e NotifierEnv
	if len(env) > 0 {
		e = env[0]
	}
	out := map[string]notify.Notifier{}
	for _, n := range cfg.Notifiers {
		nlog := log.Named("notify").With(zap.String("receiver", n.Name))
		var (
			r   notify.Notifier
			err error
		)
		switch {
		case n.Webhook != nil:
			r, err = notifyNonNil(notifywebhook.New(*n.Webhook, nlog))
		case n.Alertmanager != nil:
			r, err = notifyNonNil(alertmanager.New(*n.Alertmanager, nlog))
		case n.Slack != nil:
			r, err = notifyNonNil(notifyslack.New(n.Name, *n.Slack, nlog, notifyslack.WithStore(e.Store)))
		case n.PagerDuty != nil:
			r, err = notifyNonNil(pagerduty.New(*n.PagerDuty, nlog))
		case n.Teams != nil:
			r, err = notifyNonNil(teams.New(*n.Teams, nlog))
		case n.Statuspage != nil:
			r, err = notifyNonNil(statuspage.New(n.Name, *n.Statuspage, nlog, statuspage.WithStore(e.Store),
				statuspage.WithServiceNames(publicNames(cfg))))
		default:
			return nil, fmt.Errorf("notifier %s: no receiver", n.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("notifier %s: %w", n.Name, err)
		}
		out[n.Name] = r
	}
	return out, nil
}

// publicNames are the services' names on the status page, by service.
func publicNames(cfg *config.Config) map[string]string {
	names := map[string]string{}
	for svc, p := range cfg.StatusPage.Services {
		names[svc] = p.Name
	}
	return names
}

// notifyNonNil keeps a constructor's typed nil pointer out of the interface.
func notifyNonNil[T notify.Notifier](x T, err error) (notify.Notifier, error) {
	if err != nil {
		return nil, err
	}
	return x, nil
}

// Sources builds a querier per named source of the configuration.
func Sources(cfg *config.Config, log *zap.Logger) (map[string]source.Querier, error) {
	named := map[string]source.Querier{}
	for _, sc := range cfg.Sources {
		if sc.Prometheus == nil {
			return nil, fmt.Errorf("source %s: no source type", sc.Name)
		}
		q, err := promsource.New(*sc.Prometheus, log.Named("source").With(zap.String("source", sc.Name)))
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", sc.Name, err)
		}
		named[sc.Name] = q
	}
	return named, nil
}
