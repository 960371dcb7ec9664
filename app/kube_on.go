//go:build !nokubernetes

package app

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// What talks to the Kubernetes API (client-go): deploy.kubernetes and
// global.cluster. Builds with -tags nokubernetes leave it out (kube_off.go).

// kubeClient builds a client from a kubeconfig file, or from the pod's
// service account when the path is empty.
func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	rc, err := kubeConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// kubeConfig is the client configuration of a kubeconfig file, or the
// in-cluster one when the path is empty.
func kubeConfig(kubeconfig string) (*rest.Config, error) {
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
