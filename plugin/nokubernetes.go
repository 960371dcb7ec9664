//go:build nokubernetes

package plugin

import (
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/watch"
)

// kubernetesExecutor is left out of this build.
func kubernetesExecutor(config.KubernetesExecutor, *zap.Logger) (executor.Executor, error) {
	return nil, config.LeftOutError("the kubernetes executor")
}

// argoRolloutsExecutor is left out of this build.
func argoRolloutsExecutor(config.ArgoRolloutsExecutor, *zap.Logger) (executor.Executor, error) {
	return nil, config.LeftOutError("the argo_rollouts executor")
}

// DeployFeed is left out of this build.
func DeployFeed(string, *config.KubernetesDeploy, *zap.Logger) (watch.Feed, trigger.StallFunc, error) {
	return nil, nil, config.LeftOutError("deploy detection from Kubernetes (deploy.kubernetes)")
}
