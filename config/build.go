package config

import (
	"cmp"
	"errors"
	"strings"
)

// A slim build leaves out the features that link heavy SDKs, as Prometheus
// leaves out service-discovery plugins with build tags:
//
//   - -tags nohelm leaves out the helm executor (the Helm SDK);
//   - -tags nokubernetes leaves out everything that talks to the Kubernetes
//     API (client-go): the kubernetes, argo_rollouts and helm executors,
//     deploy.kubernetes and global.cluster.
//
// The build_*.go files set one constant per tag. Validation consults them,
// so that a configuration naming a feature this build left out is rejected
// when it is loaded, with its field path and line; packages plugin and
// cluster build the feature only in the builds that have it, and their
// stand-ins fail with LeftOutError.

// helmTag is the build tag that left the helm executor out of this build,
// or "".
func helmTag() string { return cmp.Or(kubernetesLeftOut, helmLeftOut) }

// leftOutFeatures pairs each feature a build can leave out with the tag
// that left it out of this one ("" when the build has it).
func leftOutFeatures() []struct{ key, tag string } {
	return []struct{ key, tag string }{
		{"rollback executor kubernetes", kubernetesLeftOut},
		{"rollback executor argo_rollouts", kubernetesLeftOut},
		{"rollback executor helm", helmTag()},
		{"deploy.kubernetes", kubernetesLeftOut},
		{"global.cluster", kubernetesLeftOut},
	}
}

// SlimTags lists the build tags that left features out of this Guardian,
// comma-separated ("nokubernetes"); empty for the full build.
func SlimTags() string {
	var tags []string
	for _, t := range []string{helmLeftOut, kubernetesLeftOut} {
		if t != "" {
			tags = append(tags, t)
		}
	}
	return strings.Join(tags, ",")
}

// LeftOut lists the features this Guardian was built without, by their
// configuration keys; empty for the full build.
func LeftOut() []string {
	var out []string
	for _, f := range leftOutFeatures() {
		if f.tag != "" {
			out = append(out, f.key)
		}
	}
	return out
}

// slimBuild is the error for a feature this build left out.
func slimBuild(what, tag string) string {
	return "this Guardian is a slim build without " + what + " (built with -tags " + tag + "); use the full build"
}

// LeftOutError is the error of a stand-in asked to build a feature this slim
// build left out. Validation rejects such a configuration first; this only
// guards.
func LeftOutError(what string) error {
	return errors.New(slimBuild(what, SlimTags()))
}
