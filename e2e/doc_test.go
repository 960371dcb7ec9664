// Package e2e holds Guardian's end-to-end suites: the daemon (in process or
// as its own binary) against a real Prometheus and a real Kubernetes
// control plane, the demo service under load, crashes at fault points, the
// Helm chart and the Dockerfile.
package e2e
