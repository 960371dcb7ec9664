//go:build !nokubernetes

package app

import (
	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/rollback-guardian/guardian/config"
	kuberollout "github.com/rollback-guardian/guardian/rollout/kubernetes"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/watch"
)

// kubernetesDeploys builds the watcher of deploy.kubernetes's Deployment or
// Rollout and the stall function of its progress-deadline trigger
// (client-go; left out of builds with -tags nokubernetes).
func kubernetesDeploys(service string, k *config.KubernetesDeploy, log *zap.Logger) (watch.Feed, trigger.StallFunc, error) {
	rc, err := kubeConfig(k.Kubeconfig)
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
	return kw, stallFunc(kw), nil
}

// stallFunc reports the watcher's stall as the progress-deadline trigger
// reads it.
func stallFunc(kw *kuberollout.Watcher) trigger.StallFunc {
	return func() (trigger.Stall, bool) {
		st, ok := kw.Stalled()
		return trigger.Stall{Version: st.Version, Deadline: st.Deadline, Description: st.String()}, ok
	}
}
