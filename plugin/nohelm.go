//go:build nohelm || nokubernetes

package plugin

import (
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
)

// helmExecutor is left out of this build.
func helmExecutor(config.HelmExecutor, *zap.Logger) (executor.Executor, error) {
	return nil, config.LeftOutError("the helm executor")
}
