package argorollouts_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/argorollouts"
	"github.com/rollback-guardian/guardian/executor/kubernetes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ns = "shop"

var target = executor.Target{
	Incident: 7, Service: "checkout", Version: "v2", Baseline: "v1",
	Step: executor.StepApplication, IdempotencyKey: "incident-7/rollback.application",
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{name: "abort", yaml: "rollout: checkout"},
		{name: "undo to a revision", yaml: "namespace: shop\nrollout: checkout\nundo: true\nto_revision: 3\ntimeout: 5m"},
		{name: "no rollout", yaml: "namespace: shop", want: []string{"rollout: missing"}},
		{name: "bad names", yaml: "namespace: Shop\nrollout: Check_out", want: []string{"namespace: a lowercase RFC 1123 label", "rollout: a lowercase RFC 1123 subdomain"}},
		{name: "revision without undo", yaml: "rollout: checkout\nto_revision: 2", want: []string{"to_revision: only used with undo: true"}},
		{name: "negative revision", yaml: "rollout: checkout\nundo: true\nto_revision: -2", want: []string{"to_revision: must be positive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c argorollouts.Config
			dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
			dec.KnownFields(true)
			if err := dec.Decode(&c); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if c.Timeout == 0 {
					t.Error("no default timeout")
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tc.want) {
				t.Errorf("%d problems, want %d: %v", n, len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

func podTemplate(version string) map[string]any {
	return map[string]any{
		"metadata": map[string]any{"labels": map[string]any{"app": "checkout", "version": version}},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": "checkout:" + version}}},
	}
}

// rollout is the checkout Rollout on version's template with the status.
func rollout(version string, status map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Rollout",
		"metadata": map[string]any{
			"name": "checkout", "namespace": ns, "uid": "uid-ro", "resourceVersion": "10", "generation": int64(4),
			"annotations": map[string]any{"team": "a"},
		},
		"spec": map[string]any{
			"replicas": int64(3),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "checkout"}},
			"template": podTemplate(version),
		},
		"status": status,
	}}
}

// replicaSet is the Rollout's ReplicaSet of a revision.
func replicaSet(rev, version string, available int32) *appsv1.ReplicaSet {
	hash := "h" + version
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: "checkout-" + hash, Namespace: ns,
			Labels:      map[string]string{"app": "checkout", argorollouts.PodHashLabel: hash},
			Annotations: map[string]string{argorollouts.RevisionAnnotation: rev},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "checkout", UID: types.UID("uid-ro"), Controller: new(true),
			}},
		},
		Spec: appsv1.ReplicaSetSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "checkout", "version": version, argorollouts.PodHashLabel: hash}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "checkout:" + version}}},
		}},
		Status: appsv1.ReplicaSetStatus{Replicas: available, AvailableReplicas: available},
	}
}

type clients struct {
	dyn  *dynamicfake.FakeDynamicClient
	kube *fake.Clientset
}

func newClients(ro *unstructured.Unstructured, rs ...runtime.Object) clients {
	return clients{
		dyn: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
			map[schema.GroupVersionResource]string{argorollouts.RolloutResource: "RolloutList"}, ro),
		kube: fake.NewClientset(rs...),
	}
}

func newExecutor(t *testing.T, cfg argorollouts.Config, c clients) *argorollouts.Executor {
	t.Helper()
	cfg.Connection.Namespace, cfg.Rollout = ns, "checkout"
	e, err := argorollouts.New(cfg, zaptest.NewLogger(t), argorollouts.WithClients(c.dyn, c.kube), argorollouts.WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// patches lists the Rollout patches as "subresource:type".
func patches(c clients) []string {
	var out []string
	for _, a := range c.dyn.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			out = append(out, p.GetSubresource()+":"+string(p.GetPatchType()))
		}
	}
	return out
}

func getRollout(t *testing.T, c clients) *unstructured.Unstructured {
	t.Helper()
	u, err := c.dyn.Resource(argorollouts.RolloutResource).Namespace(ns).Get(context.Background(), "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// controllerReacts makes every spec patch of the Rollout look as if the
// controller had rolled it to hash and marked it healthy (the fake has no
// controller).
func controllerReacts(t *testing.T, c clients, status map[string]any) {
	c.dyn.PrependReactor("patch", "rollouts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "" {
			return false, nil, nil
		}
		obj, err := c.dyn.Tracker().Get(argorollouts.RolloutResource, ns, "checkout")
		if err != nil {
			return true, nil, err
		}
		u := obj.(*unstructured.Unstructured)
		if err := unstructured.SetNestedField(u.Object, status, "status"); err != nil {
			t.Error(err)
		}
		return false, nil, c.dyn.Tracker().Update(argorollouts.RolloutResource, u, ns)
	})
}

func TestAbort(t *testing.T) {
	c := newClients(rollout("v2", map[string]any{"stableRS": "hv1", "currentPodHash": "hv2", "observedGeneration": "4"}),
		replicaSet("1", "v1", 3), replicaSet("2", "v2", 1))
	e := newExecutor(t, argorollouts.Config{}, c)
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	if got := patches(c); len(got) != 1 || got[0] != "status:application/merge-patch+json" {
		t.Errorf("patches %v, want one merge patch of the status", got)
	}
	if abort, _, _ := unstructured.NestedBool(getRollout(t, c).Object, "status", "abort"); !abort {
		t.Error("status.abort not set")
	}
	want := "rollout shop/checkout: aborted the update to hv2, back to stable hv1; stable ReplicaSet checkout-hv1 serves 3/3 in "
	if !strings.HasPrefix(res.Output, want) {
		t.Errorf("Output = %q, want prefix %q", res.Output, want)
	}
	// Again: already aborted, nothing patched.
	if _, err := e.Rollback(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	if got := patches(c); len(got) != 1 {
		t.Errorf("patches after two runs %v, want 1", got)
	}
}

func TestAbortWaitsForStable(t *testing.T) {
	c := newClients(rollout("v2", map[string]any{"stableRS": "hv1", "currentPodHash": "hv2"}),
		replicaSet("1", "v1", 2), replicaSet("2", "v2", 1))
	cfg := argorollouts.Config{Timeout: model.Duration(200 * time.Millisecond)}
	e := newExecutor(t, cfg, c)
	_, err := e.Rollback(context.Background(), target)
	if !errors.Is(err, executor.ErrTimeout) || !strings.Contains(err.Error(), "stable ReplicaSet checkout-hv1: 2 of 3 replicas available") {
		t.Fatalf("Rollback() = %v, want ErrTimeout waiting for the stable ReplicaSet", err)
	}
}

func TestFullyPromotedWithoutUndo(t *testing.T) {
	c := newClients(rollout("v2", map[string]any{"stableRS": "hv2", "currentPodHash": "hv2"}), replicaSet("1", "v1", 0), replicaSet("2", "v2", 3))
	e := newExecutor(t, argorollouts.Config{}, c)
	_, err := e.Rollback(context.Background(), target)
	if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), "fully promoted to hv2, so aborting changes nothing; configure undo: true") {
		t.Fatalf("Rollback() = %v", err)
	}
	if got := patches(c); len(got) != 0 {
		t.Errorf("patches %v, want none", got)
	}
}

func TestUndo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  map[string]any
		cfg     argorollouts.Config
		wantOut string
		patches []string
	}{
		{
			name:    "fully promoted: previous revision",
			status:  map[string]any{"stableRS": "hv2", "currentPodHash": "hv2", "observedGeneration": "4"},
			cfg:     argorollouts.Config{Undo: true},
			wantOut: "rollout shop/checkout: revision 2 → template of revision 1 (checkout:v1); healthy on hv1, 3/3 available in ",
			patches: []string{":application/json-patch+json"},
		},
		{
			name:    "in an update: abort, then the stable revision",
			status:  map[string]any{"stableRS": "hv1", "currentPodHash": "hv2", "observedGeneration": "4"},
			cfg:     argorollouts.Config{Undo: true},
			wantOut: "rollout shop/checkout: aborted the update to hv2, back to stable hv1; revision 2 → template of revision 1 (checkout:v1); healthy on hv1",
			patches: []string{"status:application/merge-patch+json", ":application/json-patch+json"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClients(rollout("v2", tc.status), replicaSet("1", "v1", 3), replicaSet("2", "v2", 3))
			controllerReacts(t, c, map[string]any{
				"stableRS": "hv1", "currentPodHash": "hv1", "observedGeneration": "4", "phase": "Healthy",
				"replicas": int64(3), "updatedReplicas": int64(3), "availableReplicas": int64(3),
			})
			e := newExecutor(t, tc.cfg, c)
			res, err := e.Rollback(context.Background(), target)
			if err != nil {
				t.Fatalf("%v\n%s", err, res.Output)
			}
			if !strings.HasPrefix(res.Output, tc.wantOut) {
				t.Errorf("Output = %q, want prefix %q", res.Output, tc.wantOut)
			}
			if got := patches(c); strings.Join(got, " ") != strings.Join(tc.patches, " ") {
				t.Errorf("patches %v, want %v", got, tc.patches)
			}
			ro := getRollout(t, c)
			img, _, _ := unstructured.NestedSlice(ro.Object, "spec", "template", "spec", "containers")
			if len(img) != 1 || img[0].(map[string]any)["image"] != "checkout:v1" {
				t.Errorf("containers after undo %v, want checkout:v1", img)
			}
			if lbl, _, _ := unstructured.NestedStringMap(ro.Object, "spec", "template", "metadata", "labels"); lbl[argorollouts.PodHashLabel] != "" {
				t.Errorf("pod hash label copied into the template: %v", lbl)
			}
			if ann := ro.GetAnnotations(); ann[kubernetes.AnnotationIdempotencyKey] != target.IdempotencyKey || ann["team"] != "a" {
				t.Errorf("annotations %v", ann)
			}
			if res.Details["from_revision"] != "2" || res.Details["to_revision"] != "1" || res.Details["patched"] != "true" {
				t.Errorf("details %v", res.Details)
			}

			// The same step again: nothing patched.
			n := len(patches(c))
			res, err = e.Rollback(context.Background(), target)
			if err != nil {
				t.Fatal(err)
			}
			if got := patches(c); len(got) != n || res.Details["patched"] != "false" {
				t.Errorf("second run patched: %v, details %v", got[n:], res.Details)
			}
		})
	}
}

func TestUndoProgressDeadline(t *testing.T) {
	c := newClients(rollout("v2", map[string]any{"stableRS": "hv2", "currentPodHash": "hv2", "observedGeneration": "4"}),
		replicaSet("1", "v1", 0), replicaSet("2", "v2", 3))
	controllerReacts(t, c, map[string]any{
		"stableRS": "hv2", "currentPodHash": "hv1", "observedGeneration": "4", "phase": "Degraded",
		"message": "ProgressDeadlineExceeded: ReplicaSet \"checkout-hv1\" has timed out progressing.",
	})
	e := newExecutor(t, argorollouts.Config{Undo: true}, c)
	_, err := e.Rollback(context.Background(), target)
	if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), "ProgressDeadlineExceeded") {
		t.Fatalf("Rollback() = %v, want ErrFailed with ProgressDeadlineExceeded", err)
	}
}

func TestNotFound(t *testing.T) {
	c := newClients(rollout("v2", nil))
	e, err := argorollouts.New(argorollouts.Config{Connection: kubernetes.Connection{Namespace: "other"}, Rollout: "checkout"}, nil,
		argorollouts.WithClients(c.dyn, c.kube))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Rollback(context.Background(), target)
	if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), `rollouts.argoproj.io "checkout" not found`) {
		t.Fatalf("Rollback() = %v, want ErrFailed for the missing rollout", err)
	}
}
