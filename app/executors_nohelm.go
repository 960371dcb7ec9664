//go:build nohelm || nokubernetes

package app

import (
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
)

// helmExecutor is left out of this build; config rejects the helm
// executor before it gets here.
func helmExecutor(config.HelmExecutor, *zap.Logger) (executor.Executor, error) {
	return nil, errLeftOut("the helm executor", config.SlimTags())
}
