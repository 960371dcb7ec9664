//go:build !nokubernetes

package main

import (
	"os"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/kube"
)

// newPodEvents records Events on the pod named by POD_NAMESPACE, POD_NAME
// and POD_UID (the downward API; the chart sets them), through the pod's
// service account or $KUBECONFIG. Outside a pod it records nothing.
func newPodEvents(log *zap.Logger) podEvents {
	ns, name := os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")
	if ns == "" || name == "" {
		log.Debug("no Kubernetes Events: POD_NAMESPACE and POD_NAME are not set")
		return noEvents{}
	}
	client, err := kube.Client(os.Getenv("KUBECONFIG"))
	if err != nil {
		log.Warn("no Kubernetes Events on the pod", zap.Error(err))
		return noEvents{}
	}
	return kube.NewPodEvents(client, ns, name, os.Getenv("POD_UID"))
}
