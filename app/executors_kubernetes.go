//go:build !nokubernetes

package app

import (
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/argorollouts"
	kubeexec "github.com/rollback-guardian/guardian/executor/kubernetes"
)

// kubernetesExecutor builds a kubernetes executor (client-go; left out of
// builds with -tags nokubernetes).
func kubernetesExecutor(c config.KubernetesExecutor, log *zap.Logger) (executor.Executor, error) {
	x, err := kubeexec.New(c, log)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return x, nil
}

// argoRolloutsExecutor builds an argo-rollouts executor (client-go; left
// out of builds with -tags nokubernetes).
func argoRolloutsExecutor(c config.ArgoRolloutsExecutor, log *zap.Logger) (executor.Executor, error) {
	x, err := argorollouts.New(c, log)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return x, nil
}
