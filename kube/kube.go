// Package kube connects Guardian's own parts (deploy detection from a
// workload, several replicas sharing state) to the Kubernetes API: the
// client configuration of a kubeconfig file or, without one, of the pod's
// service account. Builds with -tags nokubernetes never link it.
package kube

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config is the client configuration of a kubeconfig file, or the
// in-cluster one when the path is empty.
func Config(kubeconfig string) (*rest.Config, error) {
	var (
		rc  *rest.Config
		err error
	)
	if kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	rc.UserAgent = "guardian"
	return rc, nil
}

// Client builds a client from a kubeconfig file, or from the pod's service
// account when the path is empty.
func Client(kubeconfig string) (kubernetes.Interface, error) {
	rc, err := Config(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}
