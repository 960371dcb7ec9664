package kubernetes_test

import (
	"context"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/rollback-guardian/guardian/executor/kubernetes"
	"github.com/rollback-guardian/guardian/rollout"
)

// The executor tells what each version's newest revision runs: its images
// and Helm chart, by the configured version label or by image tag.
func TestDescribe(t *testing.T) {
	d := deploymentOn("v2", "3")
	v2 := replicaSet(d, "3", "v2")
	v2.Spec.Template.Labels["helm.sh/chart"] = "checkout-1.8.0"
	v2.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "migrate:v2"}}
	v2.Spec.Template.Spec.Containers = append(v2.Spec.Template.Spec.Containers, corev1.Container{Name: "proxy", Image: "envoy:1.29"})
	client := fake.NewClientset(d, replicaSet(d, "1", "v1"), v2)
	for _, cfg := range []kubernetes.Config{{Deployment: "checkout", VersionLabel: "version"}, {Deployment: "checkout"}} {
		e := newExecutor(t, cfg, client)
		got, err := e.Describe(context.Background(), "v2", "v1", "v0", "")
		want := []rollout.Change{
			{Version: "v2", Images: []string{"migrate:v2", "checkout:v2", "envoy:1.29"}, Chart: "checkout-1.8.0"},
			{Version: "v1", Images: []string{"checkout:v1"}},
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("version label %q: Describe = %+v, %v; want %+v", cfg.VersionLabel, got, err, want)
		}
	}
	e := newExecutor(t, kubernetes.Config{Deployment: "gone"}, client)
	if _, err := e.Describe(context.Background(), "v1"); err == nil {
		t.Fatal("a missing Deployment described")
	}
}
