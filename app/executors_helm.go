//go:build !nohelm && !nokubernetes

package app

import (
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/helm"
)

// helmExecutor builds a helm executor (the Helm SDK; left out of builds
// with -tags nohelm or nokubernetes).
func helmExecutor(c config.HelmExecutor, log *zap.Logger) (executor.Executor, error) {
	x, err := helm.New(c, log)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return x, nil
}
