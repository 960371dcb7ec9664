//go:build !nokubernetes

package plugin

import (
	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/argorollouts"
	kubeexec "github.com/rollback-guardian/guardian/executor/kubernetes"
	"github.com/rollback-guardian/guardian/kube"
	kuberollout "github.com/rollback-guardian/guardian/rollout/kubernetes"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/watch"
)

// kubernetesExecutor builds a kubernetes executor (client-go).
func kubernetesExecutor(c config.KubernetesExecutor, log *zap.Logger) (executor.Executor, error) {
	return nonNil(kubeexec.New(c, log))
}

// argoRolloutsExecutor builds an argo-rollouts executor (client-go).
func argoRolloutsExecutor(c config.ArgoRolloutsExecutor, log *zap.Logger) (executor.Executor, error) {
	return nonNil(argorollouts.New(c, log))
}

// DeployFeed builds the feed of deploy.kubernetes's Deployment or Rollout
// and the stall function of its progress-deadline trigger.
func DeployFeed(service string, k *config.KubernetesDeploy, log *zap.Logger) (watch.Feed, trigger.StallFunc, error) {
	rc, err := kube.Config(k.Kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	kw, err := kuberollout.New(client, dyn, service,
		kuberollout.Config{Namespace: k.Namespace, Deployment: k.Deployment, Rollout: k.Rollout, VersionLabel: k.VersionLabel},
		nil, log)
	if err != nil {
		return nil, nil, err
	}
	return kw, StallFunc(kw), nil
}

// StallFunc reports a workload feed's stall as the progress-deadline
// trigger reads it.
func StallFunc(kw *kuberollout.Watcher) trigger.StallFunc {
	return func() (trigger.Stall, bool) {
		st, ok := kw.Stalled()
		return trigger.Stall{Version: st.Version, Deadline: st.Deadline, Description: st.String()}, ok
	}
}
