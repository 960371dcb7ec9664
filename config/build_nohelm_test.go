//go:build nohelm && !nokubernetes

package config

import "testing"

// TestSlimBuild: a build with -tags nohelm rejects the helm executor only.
func TestSlimBuild(t *testing.T) {
	checkSlim(t, "nohelm", []string{"rollback executor helm"}, []string{
		"services[1].rollback.application.helm: this Guardian is a slim build without the helm executor (built with -tags nohelm); use the full build (line 27)",
	})
}
