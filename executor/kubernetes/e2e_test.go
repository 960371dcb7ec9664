package kubernetes_test

// End-to-end tests against a real control plane (testenv.StartKubernetes:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok). They
// skip without the binaries on a laptop and fail without them in CI.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/zap/zaptest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/kubernetes"
	"github.com/rollback-guardian/guardian/testenv"
)

// e2eTimeout bounds each wait of the end-to-end tests.
const e2eTimeout = 90 * time.Second

// RBACRules are the rules the executor needs, as the Helm chart grants
// them; TestE2E/rbac runs every kind of rollback with exactly these.
var RBACRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "daemonsets"}, Verbs: []string{"get", "patch"}},
	{APIGroups: []string{"apps"}, Resources: []string{"replicasets", "controllerrevisions"}, Verbs: []string{"list"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "patch"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list"}},
}

func TestE2E(t *testing.T) {
	k := testenv.StartKubernetes(t)
	t.Run("deployment", func(t *testing.T) { e2eDeployment(t, k) })
	t.Run("deployment after a broken rollout", func(t *testing.T) { e2eBrokenNewVersion(t, k) })
	t.Run("deployment to a template that never gets ready", func(t *testing.T) { e2eNeverReady(t, k) })
	t.Run("deployment changed while rolling back", func(t *testing.T) { e2eConflict(t, k) })
	t.Run("statefulset", func(t *testing.T) { e2eStatefulSet(t, k) })
	t.Run("daemonset", func(t *testing.T) { e2eDaemonSet(t, k) })
	t.Run("blue-green", func(t *testing.T) { e2eBlueGreen(t, k) })
	t.Run("rbac", func(t *testing.T) { e2eRBAC(t, k) })
}

// namespace creates a fresh namespace for one test.
func namespace(t *testing.T, k *testenv.Kubernetes) string {
	t.Helper()
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	name = strings.Trim(name[max(0, len(name)-60):], "-")
	_, err := k.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

// e2eTemplate is app's pod template of version; a never-ready template
// carries testenv.NeverReadyAnnotation.
func e2eTemplate(app, version string, neverReady bool) corev1.PodTemplateSpec {
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app, "version": version}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/" + app + ":" + version,
		}}},
	}
	if neverReady {
		tmpl.Annotations = map[string]string{testenv.NeverReadyAnnotation: "true"}
	}
	return tmpl
}

// createDeployment creates a Deployment of app at version and waits until
// its rollout completes, unless it never becomes ready.
func createDeployment(t *testing.T, k *testenv.Kubernetes, ns, app string, replicas int32, version string, neverReady bool, deadline int32) {
	t.Helper()
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas:                &replicas,
			Selector:                &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Template:                e2eTemplate(app, version, neverReady),
			ProgressDeadlineSeconds: &deadline,
		},
	}
	if _, err := k.Client.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment %s/%s: %v", ns, app, err)
	}
	if !neverReady {
		waitRolledOut(t, k, ns, app)
	}
}

// setVersion changes a Deployment's template to version's, as `kubectl set
// image` does.
func setVersion(t *testing.T, k *testenv.Kubernetes, ns, app, version string, neverReady bool) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := k.Client.AppsV1().Deployments(ns).Get(context.Background(), app, metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template = e2eTemplate(app, version, neverReady)
		_, err = k.Client.AppsV1().Deployments(ns).Update(context.Background(), d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("setting %s/%s to %s: %v", ns, app, version, err)
	}
}

// waitRolledOut waits until a Deployment's rollout is complete.
func waitRolledOut(t *testing.T, k *testenv.Kubernetes, ns, app string) {
	t.Helper()
	testenv.Eventually(t, e2eTimeout, func() error { return rolledOut(k, ns, app) }, "deployment "+ns+"/"+app+" rolled out")
}

// rolledOut is `kubectl rollout status` for a Deployment, as a check.
func rolledOut(k *testenv.Kubernetes, ns, app string) error {
	d, err := k.Client.AppsV1().Deployments(ns).Get(context.Background(), app, metav1.GetOptions{})
	if err != nil {
		return err
	}
	st := d.Status
	if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != *d.Spec.Replicas || st.Replicas != *d.Spec.Replicas ||
		st.AvailableReplicas != *d.Spec.Replicas || st.UnavailableReplicas != 0 {
		return fmt.Errorf("generation %d observed %d; replicas %d updated %d available %d unavailable %d",
			d.Generation, st.ObservedGeneration, st.Replicas, st.UpdatedReplicas, st.AvailableReplicas, st.UnavailableReplicas)
	}
	return nil
}

// revisions lists a Deployment's ReplicaSets as "revision=version",
// ascending.
func revisions(t *testing.T, k *testenv.Kubernetes, ns, app string) []string {
	t.Helper()
	list, err := k.Client.AppsV1().ReplicaSets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rs := range list.Items {
		out = append(out, rs.Annotations["deployment.kubernetes.io/revision"]+"="+rs.Spec.Template.Labels["version"])
	}
	slices.SortFunc(out, func(a, b string) int {
		na, _ := strconv.Atoi(strings.Split(a, "=")[0])
		nb, _ := strconv.Atoi(strings.Split(b, "=")[0])
		return na - nb
	})
	return out
}

// e2eExecutor builds an executor from cfg that acts as ServiceAccount
// "guardian" of cfg.Connection.Namespace, which has exactly RBACRules there: every
// end-to-end rollback proves the rules are enough.
func e2eExecutor(t *testing.T, k *testenv.Kubernetes, cfg kubernetes.Config, opts ...kubernetes.Option) *kubernetes.Executor {
	t.Helper()
	cfg.Connection.Kubeconfig = grant(t, k, cfg.Connection.Namespace, "guardian", RBACRules)
	if cfg.Timeout == 0 {
		cfg.Timeout = model.Duration(e2eTimeout)
	}
	e, err := kubernetes.New(cfg, zaptest.NewLogger(t), append([]kubernetes.Option{kubernetes.WithPollInterval(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// grant gives ServiceAccount ns/sa the rules in ns (through a Role and a
// RoleBinding named sa) and returns a kubeconfig that acts as it.
func grant(t *testing.T, k *testenv.Kubernetes, ns, sa string, rules []rbacv1.PolicyRule) string {
	t.Helper()
	k.GrantRole(t, ns, sa, rules)
	return k.ServiceAccountKubeconfig(t, ns, sa)
}

func e2eDeployment(t *testing.T, k *testenv.Kubernetes) {
	ns := namespace(t, k)
	createDeployment(t, k, ns, "checkout", 3, "v1", false, 600)
	setVersion(t, k, ns, "checkout", "v2", false)
	waitRolledOut(t, k, ns, "checkout")
	if got, want := revisions(t, k, ns, "checkout"), []string{"1=v1", "2=v2"}; !slices.Equal(got, want) {
		t.Fatalf("before the rollback: revisions %v, want %v", got, want)
	}

	e := e2eExecutor(t, k, kubernetes.Config{Connection: kubernetes.Connection{Namespace: ns}, Deployment: "checkout"})
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("Rollback: %v\n%s", err, res.Output)
	}
	t.Logf("output: %s", res.Output)
	wantOut := "deployment " + ns + "/checkout: revision 2 → template of revision 1 (image registry.example/checkout:v1); rolled out 3/3 in "
	if !strings.HasPrefix(res.Output, wantOut) {
		t.Errorf("Output = %q, want prefix %q", res.Output, wantOut)
	}
	if res.Details["from_revision"] != "2" || res.Details["to_revision"] != "1" || res.Details["patched"] != "true" {
		t.Errorf("Details = %v", res.Details)
	}

	// The Deployment is back on v1's template, fully rolled out, and the
	// controller made exactly one new revision (v1's ReplicaSet, renumbered).
	d, err := k.Client.AppsV1().Deployments(ns).Get(context.Background(), "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Spec.Template.Spec.Containers[0].Image, "registry.example/checkout:v1"; got != want {
		t.Errorf("image after the rollback %s, want %s", got, want)
	}
	if _, hashed := d.Spec.Template.Labels["pod-template-hash"]; hashed {
		t.Errorf("the pod-template-hash label was copied into the deployment: %v", d.Spec.Template.Labels)
	}
	if err := rolledOut(k, ns, "checkout"); err != nil {
		t.Errorf("Rollback returned before the rollout completed: %v", err)
	}
	if got, want := revisions(t, k, ns, "checkout"), []string{"2=v2", "3=v1"}; !slices.Equal(got, want) {
		t.Errorf("after the rollback: revisions %v, want %v", got, want)
	}
	if d.Annotations[kubernetes.AnnotationIdempotencyKey] != target.IdempotencyKey {
		t.Errorf("annotations %v lack the idempotency key", d.Annotations)
	}
	testenv.Eventually(t, e2eTimeout, func() error {
		pods, err := k.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=checkout"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.Labels["version"] != "v1" {
				return fmt.Errorf("pod %s is %s", p.Name, p.Labels["version"])
			}
		}
		if len(pods.Items) != 3 {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		return nil
	}, "only v1 pods left")

	// The same step again changes nothing: no new revision, same
	// generation, although kubectl's "previous revision" would now be v2.
	gen := d.Generation
	res, err = e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("second Rollback: %v", err)
	}
	t.Logf("second output: %s", res.Output)
	if res.Details["patched"] != "false" {
		t.Errorf("second run patched: %v", res.Details)
	}
	d, err = k.Client.AppsV1().Deployments(ns).Get(context.Background(), "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Generation != gen || d.Spec.Template.Spec.Containers[0].Image != "registry.example/checkout:v1" {
		t.Errorf("second run changed the deployment: generation %d (was %d), image %s", d.Generation, gen, d.Spec.Template.Spec.Containers[0].Image)
	}
	if got, want := revisions(t, k, ns, "checkout"), []string{"2=v2", "3=v1"}; !slices.Equal(got, want) {
		t.Errorf("after the second run: revisions %v, want %v", got, want)
	}
}

// e2eBrokenNewVersion: v2 never becomes ready and exceeds its progress
// deadline; rolling back to v1 succeeds despite that condition.
func e2eBrokenNewVersion(t *testing.T, k *testenv.Kubernetes) {
	ns := namespace(t, k)
	createDeployment(t, k, ns, "cart", 2, "v1", false, 2)
	setVersion(t, k, ns, "cart", "v2", true)
	testenv.Eventually(t, e2eTimeout, func() error { return deadlineExceeded(k, ns, "cart") }, "v2 exceeding its progress deadline")

	e := e2eExecutor(t, k, kubernetes.Config{Connection: kubernetes.Connection{Namespace: ns}, Deployment: "cart", VersionLabel: "version"})
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("Rollback: %v\n%s", err, res.Output)
	}
	t.Logf("output: %s", res.Output)
	if err := rolledOut(k, ns, "cart"); err != nil {
		t.Errorf("not rolled out: %v", err)
	}
	if got, want := revisions(t, k, ns, "cart"), []string{"2=v2", "3=v1"}; !slices.Equal(got, want) {
		t.Errorf("revisions %v, want %v", got, want)
	}
}

// deadlineExceeded reports whether a Deployment's Progressing condition
// says ProgressDeadlineExceeded.
func deadlineExceeded(k *testenv.Kubernetes, ns, app string) error {
	d, err := k.Client.AppsV1().Deployments(ns).Get(context.Background(), app, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing {
			if c.Reason == "ProgressDeadlineExceeded" {
				return nil
			}
			return fmt.Errorf("progressing: %s", c.Reason)
		}
	}
	return errors.New("no Progressing condition")
}

// e2eNeverReady: the revision rolled back to never becomes ready, so the
// rollback fails with the Deployment's ProgressDeadlineExceeded.
func e2eNeverReady(t *testing.T, k *testenv.Kubernetes) {
	ns := namespace(t, k)
	createDeployment(t, k, ns, "search", 2, "v1", true, 2)
	setVersion(t, k, ns, "search", "v2", false)
	waitRolledOut(t, k, ns, "search")

	e := e2eExecutor(t, k, kubernetes.Config{Connection: kubernetes.Connection{Namespace: ns}, Deployment: "search"})
	start := time.Now()
	res, err := e.Rollback(context.Background(), target)
	t.Logf("error after %s: %v; output: %s", time.Since(start).Round(time.Millisecond), err, res.Output)
	if !errors.Is(err, executor.ErrFailed) || errors.Is(err, executor.ErrTimeout) || !strings.Contains(err.Error(), "ProgressDeadlineExceeded") {
		t.Fatalf("Rollback() error = %v, want ErrFailed for ProgressDeadlineExceeded", err)
	}
	if !strings.Contains(res.Output, "rollout not complete") {
		t.Errorf("Output = %q", res.Output)
	}
	d, err := k.Client.AppsV1().Deployments(ns).Get(context.Background(), "search", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Template.Labels["version"] != "v1" {
		t.Errorf("template %v, want v1's (the patch is not undone)", d.Spec.Template.Labels)
	}
}

// e2eConflict changes the Deployment between the executor's read and its
// patch: the API server refuses the stale patch, the executor plans again
// from the new state and keeps the concurrent change.
func e2eConflict(t *testing.T, k *testenv.Kubernetes) {
	ns := namespace(t, k)
	createDeployment(t, k, ns, "pay", 2, "v1", false, 600)
	setVersion(t, k, ns, "pay", "v2", false)
	waitRolledOut(t, k, ns, "pay")

	var (
		mu      sync.Mutex
		answers []int
	)
	cfg := saConfig(t, grant(t, k, ns, "guardian", RBACRules))
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			if req.Method != http.MethodPatch {
				return rt.RoundTrip(req)
			}
			mu.Lock()
			first := len(answers) == 0
			mu.Unlock()
			if first {
				// Someone else changes the deployment just before the patch.
				err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
					d, err := k.Client.AppsV1().Deployments(ns).Get(req.Context(), "pay", metav1.GetOptions{})
					if err != nil {
						return err
					}
					d.Annotations["team"] = "payments"
					_, err = k.Client.AppsV1().Deployments(ns).Update(req.Context(), d, metav1.UpdateOptions{})
					return err
				})
				if err != nil {
					return nil, err
				}
			}
			resp, err := rt.RoundTrip(req)
			if err == nil {
				mu.Lock()
				answers = append(answers, resp.StatusCode)
				mu.Unlock()
			}
			return resp, err
		})
	}
	client, err := k8s.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := e2eExecutor(t, k, kubernetes.Config{Connection: kubernetes.Connection{Namespace: ns}, Deployment: "pay"}, kubernetes.WithClient(client))
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("Rollback: %v\n%s", err, res.Output)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(answers, []int{http.StatusConflict, http.StatusOK}) {
		t.Errorf("patch answers %v, want a conflict, then success", answers)
	}
	d, err := k.Client.AppsV1().Deployments(ns).Get(context.Background(), "pay", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Annotations["team"] != "payments" || d.Spec.Template.Labels["version"] != "v1" {
		t.Errorf("annotations %v, template %v: want the concurrent change kept and v1's template", d.Annotations, d.Spec.Template.Labels)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func e2eStatefulSet(t *testing.T, k *testenv.Kubernetes) {
	ns := namespace(t, k)
	replicas := int32(2)
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			ServiceName:         "db",
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template:            e2eTemplate("db", "v1", false),
		},
	}
	ctx := context.Background()
	if _, err := k.Client.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stsDone := func(version string) func() error {
		return func() error {
			s, err := k.Client.AppsV1().StatefulSets(ns).Get(ctx, "db", metav1.GetOptions{})
			if err != nil {
				return err
			}
			st := s.Status
			if st.ObservedGeneration < s.Generation || st.ReadyReplicas != 2 || st.UpdatedReplicas != 2 ||
				st.CurrentRevision != st.UpdateRevision || s.Spec.Template.Labels["version"] != version {
				return fmt.Errorf("status %+v, version %s", st, s.Spec.Template.Labels["version"])
			}
			return nil
		}
	}
	testenv.Eventually(t, e2eTimeout, stsDone("v1"), "statefulset v1 rolled out")
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := k.Client.AppsV1().StatefulSets(ns).Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Template = e2eTemplate("db", "v2", false)
		_, err = k.Client.AppsV1().StatefulSets(ns).Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, e2eTimeout, stsDone("v2"), "statefulset v2 rolled out")

	e := e2eExecutor(t, k, kubernetes.Config{Connection: kubernetes.Connection{Namespace: ns}, StatefulSet: "db"})
	res, err := e.Rollback(ctx, target)
	if err != nil {
		t.Fatalf("Rollback: %v\n%s", err, res.Output)
	}
	t.Logf("output: %s", res.Output)
	if err := stsDone("v1")(); err != nil {
		t.Errorf("after the rollback: %v", err)
	}
	if res.Details["from_revision"] != "2" || res.Details["to_revision"] != "1" {
		t.Errorf("details %v", res.Details)
	}
	res, err = e.Rollback(ctx, target)
	if err != nil || res.Details["patched"] != "false" {
		t.Errorf("second run: %v, details %v", err, res.Details)
	}
	crs, err := k.Client.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=db"})
	if err != nil {
		t.Fatal(err)
	}
	var nums []int64
	for _, cr := range crs.Items {
		nums = append(nums, cr.Revision)
	}
	slices.Sort(nums)
	if !slices.Equal(nums, []int64{2, 3}) {
		t.Errorf("controller revisions %v, want [2 3] (v1's renumbered, no other)", nums)
	}
}

func e2eDaemonSet(t *testing.T, k *testenv.Kubernetes) {
	ns := namespace(t, k)
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: e2eTemplate("agent", "v1", false),
		},
	}
	ctx := context.Background()
	if _, err := k.Client.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	nodes := int32(len(k.Nodes))
	dsDone := func(version string) func() error {
		return func() error {
			d, err := k.Client.AppsV1().DaemonSets(ns).Get(ctx, "agent", metav1.GetOptions{})
			if err != nil {
				return err
			}
			st := d.Status
			if st.ObservedGeneration < d.Generation || st.DesiredNumberScheduled != nodes || st.UpdatedNumberScheduled != nodes ||
				st.NumberAvailable != nodes || d.Spec.Template.Labels["version"] != version {
				return fmt.Errorf("status %+v, version %s", st, d.Spec.Template.Labels["version"])
			}
			return nil
		}
	}
	testenv.Eventually(t, e2eTimeout, dsDone("v1"), "daemonset v1 rolled out")
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := k.Client.AppsV1().DaemonSets(ns).Get(ctx, "agent", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template = e2eTemplate("agent", "v2", false)
		_, err = k.Client.AppsV1().DaemonSets(ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, e2eTimeout, dsDone("v2"), "daemonset v2 rolled out")

	e := e2eExecutor(t, k, kubernetes.Config{Connection: kubernetes.Connection{Namespace: ns}, DaemonSet: "agent", VersionLabel: "version"})
	res, err := e.Rollback(ctx, target)
	if err != nil {
		t.Fatalf("Rollback: %v\n%s", err, res.Output)
	}
	t.Logf("output: %s", res.Output)
	if err := dsDone("v1")(); err != nil {
		t.Errorf("after the rollback: %v", err)
	}
	wantOut := fmt.Sprintf("rolled out %d/%d in ", nodes, nodes)
	if !strings.Contains(res.Output, wantOut) {
		t.Errorf("Output = %q, want %q", res.Output, wantOut)
	}
}

func e2eBlueGreen(t *testing.T, k *testenv.Kubernetes) {
	ns := namespace(t, k)
	ctx := context.Background()
	for _, colour := range []string{"blue", "green"} {
		replicas := int32(2)
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web-" + colour, Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "color": colour}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "color": colour}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "web", Image: "registry.example/web:" + colour,
						Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
					}}},
				},
			},
		}
		if _, err := k.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitRolledOut(t, k, ns, "web-blue")
	waitRolledOut(t, k, ns, "web-green")
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web", "color": "green"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if _, err := k.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, e2eTimeout, func() error { return endpointsOf(k, ns, "web", "green") }, "green endpoints")

	e := e2eExecutor(t, k, kubernetes.Config{Connection: kubernetes.Connection{Namespace: ns}, BlueGreen: &kubernetes.BlueGreen{
		Service: "web", Values: map[string]string{"v1": "blue", "v2": "green"},
	}})
	res, err := e.Rollback(ctx, target)
	if err != nil {
		t.Fatalf("Rollback: %v\n%s", err, res.Output)
	}
	t.Logf("output: %s", res.Output)
	// When Rollback returns, the Service's ready endpoints are blue only.
	if err := endpointsOf(k, ns, "web", "blue"); err != nil {
		t.Errorf("after the rollback: %v", err)
	}
	got, err := k.Client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.Selector["color"] != "blue" || got.Spec.Selector["app"] != "web" {
		t.Errorf("selector %v", got.Spec.Selector)
	}
	wantOut := "service " + ns + "/web: selector color=green → blue; 2/2 pods ready behind it in "
	if !strings.HasPrefix(res.Output, wantOut) {
		t.Errorf("Output = %q, want prefix %q", res.Output, wantOut)
	}
	res, err = e.Rollback(ctx, target)
	if err != nil || res.Details["patched"] != "false" {
		t.Errorf("second run: %v, details %v", err, res.Details)
	}
}

// endpointsOf checks that the Service's ready endpoints are exactly the
// pods of colour.
func endpointsOf(k *testenv.Kubernetes, ns, svc, colour string) error {
	ctx := context.Background()
	pods, err := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{"app": "web", "color": colour}.String()})
	if err != nil {
		return err
	}
	var want []string
	for _, p := range pods.Items {
		want = append(want, p.Name)
	}
	eps, err := k.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return err
	}
	var got []string
	for _, s := range eps.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready && ep.TargetRef != nil {
				got = append(got, ep.TargetRef.Name)
			}
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if len(want) == 0 || !slices.Equal(got, want) {
		return fmt.Errorf("ready endpoints %v, want the %s pods %v", got, colour, want)
	}
	return nil
}

// e2eRBAC checks what RBACRules do not allow: deleting a deployment, and
// without patch the rollback fails at once, naming the refusal. (Every
// other end-to-end rollback runs with exactly RBACRules.)
func e2eRBAC(t *testing.T, k *testenv.Kubernetes) {
	ns := namespace(t, k)
	ctx := context.Background()
	createDeployment(t, k, ns, "checkout", 1, "v1", false, 600)
	setVersion(t, k, ns, "checkout", "v2", false)
	waitRolledOut(t, k, ns, "checkout")

	sa, err := k8s.NewForConfig(saConfig(t, grant(t, k, ns, "guardian", RBACRules)))
	if err != nil {
		t.Fatal(err)
	}
	err = sa.AppsV1().Deployments(ns).Delete(ctx, "checkout", metav1.DeleteOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("deleting a deployment with the chart's rules: %v, want Forbidden", err)
	}
	_, err = sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("listing secrets with the chart's rules: %v, want Forbidden", err)
	}

	readOnly := slices.Clone(RBACRules)
	readOnly[0] = rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}}
	e, err := kubernetes.New(kubernetes.Config{
		Connection: kubernetes.Connection{Kubeconfig: grant(t, k, ns, "reader", readOnly), Namespace: ns},
		Deployment: "checkout", Timeout: model.Duration(e2eTimeout),
	}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Rollback(ctx, target)
	if !errors.Is(err, executor.ErrFailed) || !apierrors.IsForbidden(err) {
		t.Fatalf("Rollback without patch: %v, want ErrFailed and Forbidden", err)
	}
	d, err := k.Client.AppsV1().Deployments(ns).Get(ctx, "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Template.Labels["version"] != "v2" {
		t.Errorf("the refused rollback changed the template: %v", d.Spec.Template.Labels)
	}
}

// saConfig is the client configuration of a kubeconfig file.
func saConfig(t *testing.T, kubeconfig string) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
