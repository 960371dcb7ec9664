//go:build !nohelm && !nokubernetes

package plugin

import (
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/helm"
)

// helmExecutor builds a helm executor (the Helm SDK).
func helmExecutor(c config.HelmExecutor, log *zap.Logger) (executor.Executor, error) {
	return nonNil(helm.New(c, log))
}
