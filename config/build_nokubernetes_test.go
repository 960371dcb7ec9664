//go:build nokubernetes

package config

import "testing"

// TestSlimBuild: a build with -tags nokubernetes rejects everything that
// talks to the Kubernetes API, each where it is written.
func TestSlimBuild(t *testing.T) {
	tags := "nokubernetes"
	if helmLeftOut != "" {
		tags = "nohelm,nokubernetes"
	}
	checkSlim(t, tags, []string{
		"rollback executor kubernetes", "rollback executor argo_rollouts", "rollback executor helm", "deploy.kubernetes", "global.cluster",
	}, []string{
		"global.cluster: this Guardian is a slim build without Kubernetes clustering (built with -tags nokubernetes); use the full build (line 4)",
		"services[0].deploy.kubernetes: this Guardian is a slim build without Kubernetes deploy detection (built with -tags nokubernetes); use the full build (line 9)",
		"services[0].rollback.application.kubernetes: this Guardian is a slim build without the kubernetes executor (built with -tags nokubernetes); use the full build (line 16)",
		"services[1].rollback.application.helm: this Guardian is a slim build without the helm executor (built with -tags nokubernetes); use the full build (line 27)",
		"services[2].rollback.application.argo_rollouts: this Guardian is a slim build without the argo_rollouts executor (built with -tags nokubernetes); use the full build (line 36)",
	})
}
