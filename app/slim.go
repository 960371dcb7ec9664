//go:build nohelm || nokubernetes

package app

import "fmt"

// errLeftOut is the error of building a feature that this slim build left out
// (executors_*.go, kube_*.go, cluster_*.go). Config validation rejects such
// a configuration first, with its field path and line; this only guards.
func errLeftOut(what, tags string) error {
	return fmt.Errorf("this Guardian is a slim build without %s (built with -tags %s); use the full build", what, tags)
}
