//go:build !nokubernetes

package config

// kubernetesLeftOut is "nokubernetes" in builds without anything that
// talks to the Kubernetes API.
const kubernetesLeftOut = ""
