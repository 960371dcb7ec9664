package argorollouts_test

// End-to-end test against a real API server (testenv.StartKubernetes) with
// the Rollout CRD installed. The Argo Rollouts controller is not available
// here, so the test plays its part for the status fields the executor
// reads (stableRS, currentPodHash, observedGeneration, phase, replica
// counts); the ReplicaSets, their pods (kwok) and their availability are
// real.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/zap/zaptest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/rollback-guardian/guardian/executor/argorollouts"
	"github.com/rollback-guardian/guardian/executor/kubernetes"
	"github.com/rollback-guardian/guardian/testenv"
)

// RBACRules are the rules the executor needs, as the Helm chart grants
// them; the end-to-end test runs with exactly these.
var RBACRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"argoproj.io"}, Resources: []string{"rollouts"}, Verbs: []string{"get", "patch"}},
	{APIGroups: []string{"argoproj.io"}, Resources: []string{"rollouts/status"}, Verbs: []string{"patch"}},
	{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"list"}},
}

func TestE2E(t *testing.T) {
	k := testenv.StartKubernetes(t)
	ctx := context.Background()
	dyn := k.InstallRolloutCRD(t)
	var err error

	const ns = "shop"
	if _, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The Rollout, mid-update: stable v1 (2 pods), canary v2 (1 pod).
	ro := rollout("v2", nil)
	ro.SetNamespace(ns)
	ro.SetResourceVersion("")
	ro.SetUID("")
	ro.SetGeneration(0)
	_ = unstructured.SetNestedField(ro.Object, int64(2), "spec", "replicas")
	ro, err = dyn.Resource(argorollouts.RolloutResource).Namespace(ns).Create(ctx, ro, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range []*appsv1.ReplicaSet{e2eReplicaSet(ro, "1", "v1", 2), e2eReplicaSet(ro, "2", "v2", 1)} {
		if _, err := k.Client.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setStatus(t, dyn, ns, map[string]any{
		"stableRS": "hv1", "currentPodHash": "hv2", "observedGeneration": fmt.Sprint(ro.GetGeneration()), "phase": "Paused",
	})

	ctl := startController(t, k, dyn, ns)
	kubeconfig := grant(t, k, ns)

	t.Run("abort", func(t *testing.T) {
		e, err := argorollouts.New(argorollouts.Config{
			Connection: kubernetes.Connection{Kubeconfig: kubeconfig, Namespace: ns}, Rollout: "checkout", Timeout: model.Duration(90 * time.Second),
		}, zaptest.NewLogger(t), argorollouts.WithPollInterval(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.Rollback(ctx, target)
		if err != nil {
			t.Fatalf("%v\n%s", err, res.Output)
		}
		t.Logf("output: %s", res.Output)
		if !strings.Contains(res.Output, "aborted the update to hv2, back to stable hv1; stable ReplicaSet checkout-hv1 serves 2/2") {
			t.Errorf("Output = %q", res.Output)
		}
		got, err := dyn.Resource(argorollouts.RolloutResource).Namespace(ns).Get(ctx, "checkout", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if abort, _, _ := unstructured.NestedBool(got.Object, "status", "abort"); !abort {
			t.Errorf("status.abort not set: %v", got.Object["status"])
		}
		testenv.Eventually(t, 30*time.Second, func() error {
			if !ctl.sawAbort() {
				return errors.New("not yet")
			}
			return nil
		}, "the controller seeing the abort")
	})

	t.Run("undo", func(t *testing.T) {
		e, err := argorollouts.New(argorollouts.Config{
			Connection: kubernetes.Connection{Kubeconfig: kubeconfig, Namespace: ns}, Rollout: "checkout", Undo: true,
			Timeout: model.Duration(90 * time.Second),
		}, zaptest.NewLogger(t), argorollouts.WithPollInterval(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.Rollback(ctx, target)
		if err != nil {
			t.Fatalf("%v\n%s", err, res.Output)
		}
		t.Logf("output: %s", res.Output)
		got, err := dyn.Resource(argorollouts.RolloutResource).Namespace(ns).Get(ctx, "checkout", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v, _, _ := unstructured.NestedString(got.Object, "spec", "template", "metadata", "labels", "version"); v != "v1" {
			t.Errorf("template version %q after undo, want v1", v)
		}
		if got.GetAnnotations()[kubernetes.AnnotationIdempotencyKey] != target.IdempotencyKey {
			t.Errorf("annotations %v", got.GetAnnotations())
		}
		if res.Details["to_revision"] != "1" || res.Details["patched"] != "true" {
			t.Errorf("details %v", res.Details)
		}
		gen := got.GetGeneration()
		res, err = e.Rollback(ctx, target)
		if err != nil || res.Details["patched"] != "false" {
			t.Fatalf("second run: %v, details %v", err, res.Details)
		}
		got, err = dyn.Resource(argorollouts.RolloutResource).Namespace(ns).Get(ctx, "checkout", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetGeneration() != gen {
			t.Errorf("second run changed the rollout: generation %d, was %d", got.GetGeneration(), gen)
		}
	})

	t.Run("rbac", func(t *testing.T) {
		sa, err := dynamic.NewForConfig(k.ServiceAccountConfig(t, ns, "guardian"))
		if err != nil {
			t.Fatal(err)
		}
		err = sa.Resource(argorollouts.RolloutResource).Namespace(ns).Delete(ctx, "checkout", metav1.DeleteOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("deleting the rollout with the chart's rules: %v, want Forbidden", err)
		}
	})
}

// e2eReplicaSet is ro's ReplicaSet of a revision, owned by it as the Argo
// Rollouts controller makes them.
func e2eReplicaSet(ro *unstructured.Unstructured, rev, version string, replicas int32) *appsv1.ReplicaSet {
	rs := replicaSet(rev, version, 0)
	rs.Status = appsv1.ReplicaSetStatus{}
	rs.Namespace = ro.GetNamespace()
	rs.OwnerReferences[0].UID = ro.GetUID()
	rs.Spec.Replicas = &replicas
	rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout", argorollouts.PodHashLabel: "h" + version}}
	return rs
}

func setStatus(t *testing.T, dyn dynamic.Interface, ns string, status map[string]any) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := dyn.Resource(argorollouts.RolloutResource).Namespace(ns).Get(context.Background(), "checkout", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for k, v := range status {
			if err := unstructured.SetNestedField(u.Object, v, "status", k); err != nil {
				return err
			}
		}
		_, err = dyn.Resource(argorollouts.RolloutResource).Namespace(ns).UpdateStatus(context.Background(), u, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("setting the rollout's status: %v", err)
	}
}

// grant makes ServiceAccount ns/guardian with exactly RBACRules and returns
// a kubeconfig that acts as it.
func grant(t *testing.T, k *testenv.Kubernetes, ns string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := k.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "guardian", Namespace: ns}, Rules: RBACRules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "guardian", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "guardian"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "guardian", Namespace: ns}},
	}
	if _, err := k.Client.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return k.ServiceAccountKubeconfig(t, ns, "guardian")
}

// controller plays the Argo Rollouts controller's part in the status: on
// abort it scales the canary ReplicaSet down; when the template is a
// ReplicaSet's (after an undo) it makes that one stable and current and
// reports the Rollout healthy once its pods are available.
type controller struct {
	mu      sync.Mutex
	aborted bool
}

func (c *controller) sawAbort() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.aborted
}

func startController(t *testing.T, k *testenv.Kubernetes, dyn dynamic.Interface, ns string) *controller {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	c := &controller{}
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := c.sync(ctx, k, dyn, ns); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
				t.Logf("test controller: %v", err)
			}
		}
	})
	return c
}

func (c *controller) sync(ctx context.Context, k *testenv.Kubernetes, dyn dynamic.Interface, ns string) error {
	ri := dyn.Resource(argorollouts.RolloutResource).Namespace(ns)
	u, err := ri.Get(ctx, "checkout", metav1.GetOptions{})
	if err != nil {
		return err
	}
	before, _, _ := unstructured.NestedMap(u.Object, "status")
	status := runtime.DeepCopyJSON(before)
	if status == nil {
		status = map[string]any{}
	}
	abort, _, _ := unstructured.NestedBool(u.Object, "status", "abort")
	current, _, _ := unstructured.NestedString(u.Object, "status", "currentPodHash")
	var tmpl corev1.PodTemplateSpec
	raw, _, _ := unstructured.NestedMap(u.Object, "spec", "template")
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &tmpl); err != nil {
		return err
	}
	list, err := k.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=checkout"})
	if err != nil {
		return err
	}
	for i := range list.Items {
		rs := &list.Items[i]
		hash := rs.Labels[argorollouts.PodHashLabel]
		rsTmpl := rs.Spec.Template.DeepCopy()
		delete(rsTmpl.Labels, argorollouts.PodHashLabel)
		matches := apiequality.Semantic.DeepDerivative(&tmpl, rsTmpl)
		switch {
		case abort && hash == current && *rs.Spec.Replicas != 0:
			c.mu.Lock()
			c.aborted = true
			c.mu.Unlock()
			rs.Spec.Replicas = new(int32(0))
			if _, err := k.Client.AppsV1().ReplicaSets(ns).Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
				return err
			}
			status["phase"], status["message"] = "Degraded", "RolloutAborted: Rollout aborted update to revision 2"
		case matches && hash != current:
			// A new template: the undo. It is the stable ReplicaSet's.
			status["currentPodHash"], status["stableRS"], status["abort"] = hash, hash, false
			status["phase"], status["message"] = "Progressing", "more replicas need to be updated"
		case matches && hash == current && !abort:
			n := rs.Status.AvailableReplicas
			status["replicas"], status["updatedReplicas"], status["availableReplicas"] = int64(n), int64(n), int64(n)
			if n >= *rs.Spec.Replicas {
				status["phase"], status["message"] = "Healthy", ""
			}
		}
	}
	status["observedGeneration"] = fmt.Sprint(u.GetGeneration())
	if apiequality.Semantic.DeepEqual(before, status) {
		return nil
	}
	if err := unstructured.SetNestedMap(u.Object, status, "status"); err != nil {
		return err
	}
	_, err = ri.UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
