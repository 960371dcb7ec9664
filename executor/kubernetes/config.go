package kubernetes

import "github.com/rollback-guardian/guardian/config"

// The configuration types are package config's, which holds them (with
// their YAML keys, defaults and validation) so that loading a configuration
// links neither this executor nor client-go; the aliases keep this
// package's code and tests in its own terms.
type (
	// Config is a kubernetes executor's configuration: exactly one target,
	// a Deployment, a StatefulSet, a DaemonSet or a blue-green Service.
	Config = config.KubernetesExecutor
	// Connection says how to reach the API server: the keys kubeconfig,
	// context and namespace, shared by the Kubernetes-based executors.
	Connection = config.KubernetesConnection
	// BlueGreen is a blue-green target: a Service whose selector chooses
	// between two sets of pods by the value of one label.
	BlueGreen = config.BlueGreen
	// Kind is the kind of workload a Config targets.
	Kind = config.KubernetesKind
)

// Kinds of target.
const (
	KindNone        = config.KubernetesNone
	KindDeployment  = config.KubernetesDeployment
	KindStatefulSet = config.KubernetesStatefulSet
	KindDaemonSet   = config.KubernetesDaemonSet
	KindBlueGreen   = config.KubernetesBlueGreen
)

// Defaults of Config.
const (
	// DefaultTimeout bounds the wait for the rolled-back workload.
	DefaultTimeout = config.DefaultKubernetesTimeout
	// DefaultSelectorLabel is the Service selector label a blue-green switch
	// changes.
	DefaultSelectorLabel = config.DefaultSelectorLabel
)
