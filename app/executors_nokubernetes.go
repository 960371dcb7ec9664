//go:build nokubernetes

package app

import (
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
)

// kubernetesExecutor is left out of this build; config rejects the
// kubernetes executor before it gets here.
func kubernetesExecutor(config.KubernetesExecutor, *zap.Logger) (executor.Executor, error) {
	return nil, errLeftOut("the kubernetes executor", "nokubernetes")
}

// argoRolloutsExecutor is left out of this build; config rejects the
// argo_rollouts executor before it gets here.
func argoRolloutsExecutor(config.ArgoRolloutsExecutor, *zap.Logger) (executor.Executor, error) {
	return nil, errLeftOut("the argo_rollouts executor", "nokubernetes")
}
