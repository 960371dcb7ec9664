package helm_test

// End-to-end test against a real control plane (testenv.StartKubernetes:
// etcd, kube-apiserver, controller manager, scheduler, and kwok for ready
// pods). The releases are installed and upgraded with the real helm CLI;
// Guardian's executor rolls them back as a ServiceAccount bound to exactly
// RBACRules.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/helm"
	"github.com/rollback-guardian/guardian/executor/kubernetes"
	"github.com/rollback-guardian/guardian/testenv"
)

// RBACRules are the rules the executor needs in the release's namespace to
// roll back the test chart (a Deployment, a Service and a ConfigMap), as
// the package comment lists them for the Helm chart's README; the
// end-to-end test runs with exactly these.
var RBACRules = []rbacv1.PolicyRule{
	// Helm's release storage; delete prunes past max_history.
	{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "create", "update", "delete"}},
	// The chart's resources: the rollback patches them, creates what the
	// restored revision has and the current one lacks, and deletes the
	// reverse; the readiness check reads them.
	{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "create", "patch", "delete"}},
	{APIGroups: []string{""}, Resources: []string{"services", "configmaps"}, Verbs: []string{"get", "create", "patch", "delete"}},
	// A Deployment's readiness is its newest ReplicaSet's.
	{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"list"}},
}

const e2eNamespace = "shop"

var e2eTarget = executor.Target{
	Incident: 7, Service: "checkout", Version: "v2", Baseline: "v1",
	Step: executor.StepApplication, IdempotencyKey: executor.IdempotencyKey(7, executor.StepApplication),
}

func TestE2E(t *testing.T) {
	k := testenv.StartKubernetes(t)
	dir := t.TempDir()
	v1 := packageChart(t, k, dir, "0.1.0", "v1")
	v2 := packageChart(t, k, dir, "0.2.0", "v2")
	kubeconfig := grant(t, k, e2eNamespace)

	t.Run("rollback", func(t *testing.T) { e2eRollback(t, k, kubeconfig, v1, v2) })
	t.Run("never ready", func(t *testing.T) { e2eNeverReady(t, k, kubeconfig, v1, v2) })
	t.Run("forbidden", func(t *testing.T) { e2eForbidden(t, k, kubeconfig) })
}

// e2eRollback: v1 installed, v2 (with a ConfigMap more) upgraded to; the
// executor restores v1 as revision 3, and running it again changes
// nothing.
func e2eRollback(t *testing.T, k *testenv.Kubernetes, kubeconfig, v1, v2 string) {
	ctx := context.Background()
	const rel = "checkout"
	k.Helm(t, "install", rel, v1, "-n", e2eNamespace, "--wait", "--timeout", "60s")
	k.Helm(t, "upgrade", rel, v2, "-n", e2eNamespace, "--wait", "--timeout", "60s", "--set", "extraConfig=true")
	if _, err := k.Client.CoreV1().ConfigMaps(e2eNamespace).Get(ctx, rel+"-extra", metav1.GetOptions{}); err != nil {
		t.Fatalf("v2's ConfigMap: %v", err)
	}

	e, err := helm.New(helm.Config{
		Connection: kubernetes.Connection{Kubeconfig: kubeconfig, Namespace: e2eNamespace},
		Release:    rel, Timeout: model.Duration(60 * time.Second),
	}, zaptest.NewLogger(t), helm.WithPollInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.String(); got != "helm release shop/checkout" {
		t.Errorf("String() = %q", got)
	}
	res, err := e.Rollback(ctx, e2eTarget)
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Output)
	}
	t.Logf("output: %s", res.Output)
	want := "helm release shop/checkout: revision 2 (chart demo-0.2.0, app v2) → revision 1 (chart demo-0.1.0, app v1): rolled back as revision 3; 2 resources ready in "
	if !strings.HasPrefix(res.Output, want) {
		t.Errorf("Output = %q, want %q…", res.Output, want)
	}
	for key, v := range map[string]string{"from_revision": "2", "to_revision": "1", "new_revision": "3", "chart": "demo-0.1.0", "app_version": "v1", "rolled_back": "true"} {
		if res.Details[key] != v {
			t.Errorf("Details[%s] = %q, want %q", key, res.Details[key], v)
		}
	}

	// What helm itself says.
	h := history(t, k, rel)
	if len(h) != 3 || h[2].Revision != 3 || h[2].Status != "deployed" || h[2].Description != "Rollback to 1" ||
		h[2].Chart != "demo-0.1.0" || h[2].AppVersion != "v1" || h[1].Status != "superseded" {
		t.Errorf("helm history: %+v", h)
	}
	var values map[string]any
	if err := json.Unmarshal([]byte(k.Helm(t, "get", "values", rel, "-n", e2eNamespace, "-o", "json")), &values); err != nil {
		t.Fatal(err)
	}
	if len(values) != 0 {
		t.Errorf("values of the restored release: %v, want v1's (none)", values)
	}
	// The resources: v1's template rolled out, v2's ConfigMap gone.
	testenv.Eventually(t, 30*time.Second, func() error {
		d, err := k.Client.AppsV1().Deployments(e2eNamespace).Get(ctx, rel, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/demo:v1" {
			return fmt.Errorf("image %s", img)
		}
		st := d.Status
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != 1 || st.Replicas != 1 || st.AvailableReplicas != 1 {
			return fmt.Errorf("not rolled out: %+v", st)
		}
		return nil
	}, "the Deployment rolled out with v1's image")
	if _, err := k.Client.CoreV1().ConfigMaps(e2eNamespace).Get(ctx, rel+"-extra", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("v2's ConfigMap after the rollback: %v, want not found", err)
	}
	// The key is on revision 3's record, and off revision 1's again.
	for rev, want := range map[int]string{1: "", 3: "incident-7_rollback.application"} {
		s, err := k.Client.CoreV1().Secrets(e2eNamespace).Get(ctx, fmt.Sprintf("sh.helm.release.v1.%s.v%d", rel, rev), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Labels[helm.LabelIdempotencyKey]; got != want {
			t.Errorf("revision %d's record has key label %q, want %q (labels %v)", rev, got, want, s.Labels)
		}
	}

	// Again with the same key, as after a crash: still revision 3.
	res, err = e.Rollback(ctx, e2eTarget)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, res.Output)
	}
	t.Logf("second output: %s", res.Output)
	if !strings.Contains(res.Output, "incident-7/rollback.application already rolled it back from revision 2 to revision 1 as revision 3") ||
		res.Details["rolled_back"] != "false" {
		t.Errorf("second run: %q %v", res.Output, res.Details)
	}
	if h := history(t, k, rel); len(h) != 3 || h[2].Status != "deployed" {
		t.Errorf("helm history after the second run: %+v", h)
	}
}

// e2eNeverReady: the revision rolled back to has pods that never become
// ready; the rollback fails within its short timeout, naming the
// Deployment, and the new revision is marked failed. max_history 2 prunes
// the oldest record (RBACRules' delete on secrets).
func e2eNeverReady(t *testing.T, k *testenv.Kubernetes, kubeconfig, v1, v2 string) {
	ctx := context.Background()
	const rel = "broken"
	k.Helm(t, "install", rel, v1, "-n", e2eNamespace, "--set", "neverReady=true")
	k.Helm(t, "upgrade", rel, v2, "-n", e2eNamespace, "--reset-values", "--wait", "--timeout", "60s")

	const timeout = 10 * time.Second
	e, err := helm.New(helm.Config{
		Connection: kubernetes.Connection{Kubeconfig: kubeconfig, Namespace: e2eNamespace},
		Release:    rel, Timeout: model.Duration(timeout), MaxHistory: new(2),
	}, zaptest.NewLogger(t), helm.WithPollInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := e.Rollback(ctx, e2eTarget)
	took := time.Since(start)
	t.Logf("after %s: %v\noutput: %s", took, err, res.Output)
	if !errors.Is(err, executor.ErrFailed) || errors.Is(err, executor.ErrTimeout) {
		t.Fatalf("err = %v, want ErrFailed only", err)
	}
	for _, w := range []string{"resources not ready after 10s: Deployment is not ready: shop/broken. 0 out of 1 expected pods are ready", "revision 3 marked failed"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if took > timeout+5*time.Second {
		t.Errorf("took %s, timeout %s", took, timeout)
	}
	h := history(t, k, rel)
	if len(h) != 2 || h[0].Revision != 2 || h[1].Revision != 3 || h[1].Status != "failed" ||
		!strings.HasPrefix(h[1].Description, "Rollback to 1 failed: resources not ready") {
		t.Errorf("helm history: %+v", h)
	}

	// Again: the failed rollback is not tried a second time.
	_, err = e.Rollback(ctx, e2eTarget)
	if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), "as revision 3, which failed") {
		t.Errorf("second run: %v", err)
	}
	if h := history(t, k, rel); len(h) != 2 || h[1].Revision != 3 {
		t.Errorf("helm history after the second run: %+v", h)
	}
}

// e2eForbidden: in a namespace where the ServiceAccount has no rules, the
// error names the missing permission.
func e2eForbidden(t *testing.T, k *testenv.Kubernetes, kubeconfig string) {
	ctx := context.Background()
	if _, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e, err := helm.New(helm.Config{
		Connection: kubernetes.Connection{Kubeconfig: kubeconfig, Namespace: "other"}, Release: "checkout",
	}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Rollback(ctx, e2eTarget)
	want := `helm release other/checkout: rollback failed: reading the release history: permission denied`
	if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), want) ||
		!strings.Contains(err.Error(), `cannot list resource "secrets" in API group "" in the namespace "other"`) {
		t.Errorf("err = %v, want ErrFailed with %q naming the permission", err, want)
	}
}

// packageChart packages testdata/demo as chart version version with app
// version app and returns the archive's path.
func packageChart(t *testing.T, k *testenv.Kubernetes, dir, version, app string) string {
	t.Helper()
	sub := filepath.Join(dir, version)
	k.Helm(t, "package", filepath.Join("testdata", "demo"), "--version", version, "--app-version", app, "-d", sub)
	return filepath.Join(sub, "demo-"+version+".tgz")
}

// historyEntry is one line of `helm history -o json`.
type historyEntry struct {
	Revision    int    `json:"revision"`
	Status      string `json:"status"`
	Chart       string `json:"chart"`
	AppVersion  string `json:"app_version"`
	Description string `json:"description"`
}

func history(t *testing.T, k *testenv.Kubernetes, rel string) []historyEntry {
	t.Helper()
	var h []historyEntry
	if err := json.Unmarshal([]byte(k.Helm(t, "history", rel, "-n", e2eNamespace, "-o", "json")), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// grant makes ServiceAccount ns/guardian with exactly RBACRules in ns and
// returns a kubeconfig that acts as it.
func grant(t *testing.T, k *testenv.Kubernetes, ns string) string {
	t.Helper()
	ctx := context.Background()
	kubeconfig := k.ServiceAccountKubeconfig(t, ns, "guardian")
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
	return kubeconfig
}
