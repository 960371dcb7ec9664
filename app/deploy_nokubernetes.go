//go:build nokubernetes

package app

import (
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/watch"
)

// kubernetesDeploys is left out of this build; config rejects
// deploy.kubernetes before it gets here.
func kubernetesDeploys(string, *config.KubernetesDeploy, *zap.Logger) (watch.Feed, trigger.StallFunc, error) {
	return nil, nil, errLeftOut("deploy detection from Kubernetes (deploy.kubernetes)", "nokubernetes")
}
