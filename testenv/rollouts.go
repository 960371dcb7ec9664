package testenv

import (
	"context"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// RolloutResource is the Argo Rollouts Rollout resource that
// InstallRolloutCRD serves.
var RolloutResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// rolloutCRD is a minimal Rollout CRD: any spec and status, with the
// status subresource as the real one has.
var rolloutCRD = map[string]any{
	"apiVersion": "apiextensions.k8s.io/v1",
	"kind":       "CustomResourceDefinition",
	"metadata":   map[string]any{"name": "rollouts.argoproj.io"},
	"spec": map[string]any{
		"group": "argoproj.io",
		"names": map[string]any{"kind": "Rollout", "listKind": "RolloutList", "plural": "rollouts", "singular": "rollout"},
		"scope": "Namespaced",
		"versions": []any{map[string]any{
			"name": "v1alpha1", "served": true, "storage": true,
			"subresources": map[string]any{"status": map[string]any{}},
			"schema": map[string]any{"openAPIV3Schema": map[string]any{
				"type": "object",
				"properties": map[string]any{
					"spec":   map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
					"status": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
				},
			}},
		}},
	},
}

// InstallRolloutCRD installs a minimal Argo Rollouts Rollout CRD (any spec
// and status, with the status subresource) and waits until the API server
// serves it. The Argo Rollouts controller is not available here: tests
// play its part. It returns an admin dynamic client.
func (k *Kubernetes) InstallRolloutCRD(t testing.TB) dynamic.Interface {
	t.Helper()
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(k.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(crdResource).Create(ctx, &unstructured.Unstructured{Object: rolloutCRD}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the Rollout CRD: %v", err)
	}
	Eventually(t, 30*time.Second, func() error {
		_, err := dyn.Resource(RolloutResource).Namespace("default").List(ctx, metav1.ListOptions{})
		return err
	}, "the Rollout CRD served")
	return dyn
}

// GrantRole binds the ServiceAccount ns/sa (created if missing) to a Role
// of exactly rules in ns, and returns a client configuration with its
// token: what a test needs to prove that a set of rules suffices.
func (k *Kubernetes) GrantRole(t testing.TB, ns, sa string, rules []rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns}, Rules: rules}
	if _, err := k.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating role %s/%s: %v", ns, sa, err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: sa},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
	}
	if _, err := k.Client.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating role binding %s/%s: %v", ns, sa, err)
	}
	return k.ServiceAccountConfig(t, ns, sa)
}
