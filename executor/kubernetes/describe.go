package kubernetes

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/rollback-guardian/guardian/rollout"
)

// chartLabel is the label Helm charts put on what they render.
const chartLabel = "helm.sh/chart"

// Describe returns what the workload's revisions run for the versions
// asked, as far as its history still holds them: the images of the newest
// revision of each version (its containers', init containers first) and
// its helm.sh/chart label. A revision's version is its configured version
// label or annotation, else its first container's image tag. A version no
// revision has is left out; a blue-green target describes nothing.
func (e *Executor) Describe(ctx context.Context, versions ...string) ([]rollout.Change, error) {
	if e.kind == KindBlueGreen {
		return nil, nil
	}
	s, err := e.workload().load(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: reading its revisions: %w", e, err)
	}
	key, kind := e.versionKey()
	var out []rollout.Change
	for _, v := range versions {
		if v == "" {
			continue
		}
		for i := len(s.history) - 1; i >= 0; i-- {
			t := &s.history[i].template
			if revisionVersion(t, key, kind) != v {
				continue
			}
			c := rollout.Change{Version: v, Chart: t.Labels[chartLabel]}
			for _, cs := range [][]corev1.Container{t.Spec.InitContainers, t.Spec.Containers} {
				for _, ct := range cs {
					if ct.Image != "" && !slices.Contains(c.Images, ct.Image) {
						c.Images = append(c.Images, ct.Image)
					}
				}
			}
			if !c.Empty() {
				out = append(out, c)
			}
			break
		}
	}
	return out, nil
}

// revisionVersion is a template's version: its version label or
// annotation when one is configured, else its first container's image tag
// (or digest), as the Kubernetes deploy watcher names versions.
func revisionVersion(t *corev1.PodTemplateSpec, key, kind string) string {
	if key != "" {
		return version(t, key, kind)
	}
	if len(t.Spec.Containers) == 0 {
		return ""
	}
	img := t.Spec.Containers[0].Image
	if i := strings.LastIndex(img, "@"); i >= 0 {
		return img[i+1:]
	}
	if i := strings.LastIndex(img, ":"); i >= 0 && !strings.Contains(img[i:], "/") {
		return img[i+1:]
	}
	return "latest"
}
