package app

import (
	"errors"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/command"
	"github.com/rollback-guardian/guardian/executor/webhook"
)

// buildExecutor builds a rollback backend from its configuration. The
// executors that link heavy SDKs are built in their own files, which slim
// builds leave out (executors_*.go; config rejects what they leave out,
// the stand-ins only fail). runDir
// keeps what an executor needs to find a rollback that outlived a restart
// (a command's run records and output).
func buildExecutor(e *config.Executor, log *zap.Logger, runDir string) (executor.Executor, string, error) {
	switch {
	case e == nil:
		return nil, "", nil
	case e.Command != nil:
		x, err := command.New(*e.Command, log.Named("executor"), command.WithRunDir(filepath.Join(runDir, "command")))
		return x, e.Name(), err
	case e.Webhook != nil:
		x, err := webhook.New(*e.Webhook, log.Named("executor"))
		return x, e.Name(), err
	case e.Kubernetes != nil:
		x, err := kubernetesExecutor(*e.Kubernetes, log.Named("executor"))
		return x, e.Name(), err
	case e.ArgoRollouts != nil:
		x, err := argoRolloutsExecutor(*e.ArgoRollouts, log.Named("executor"))
		return x, e.Name(), err
	case e.Helm != nil:
		x, err := helmExecutor(*e.Helm, log.Named("executor"))
		return x, e.Name(), err
	}
	return nil, "", errors.New("no executor type")
}

// runDir is where executors keep their runs: state_dir/runs.
func runDir(cfg *config.Config) string {
	d, err := filepath.Abs(cfg.Global.StateDir)
	if err != nil {
		d = cfg.Global.StateDir
	}
	return filepath.Join(d, "runs")
}
