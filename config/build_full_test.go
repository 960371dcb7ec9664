//go:build !nohelm && !nokubernetes

package config

import "testing"

// TestSlimBuild: the full build keeps every feature.
func TestSlimBuild(t *testing.T) {
	checkSlim(t, "", nil, nil)
}
