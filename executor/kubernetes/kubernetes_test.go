package kubernetes_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/kubernetes"
	"github.com/rollback-guardian/guardian/internal/testctx"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ns = "shop"

var target = executor.Target{
	Incident:       12,
	Service:        "checkout",
	Version:        "v2",
	Baseline:       "v1",
	Step:           executor.StepApplication,
	IdempotencyKey: "incident-12/rollback.application",
	Reason:         "5xx 7.9% > 5%, baseline 0.4%",
}

// podTemplate is the checkout pod template of a version.
func podTemplate(version string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "checkout", "version": version}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "checkout:" + version,
		}}},
	}
}

func int32p(i int32) *int32 { return &i }

// deploymentOn is a Deployment whose current template is version's, at
// revision rev, with a complete rollout of 3 replicas.
func deploymentOn(version string, rev string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: "checkout", Namespace: ns, UID: "uid-checkout", ResourceVersion: "100", Generation: 2,
			Annotations: map[string]string{"deployment.kubernetes.io/revision": rev, "owner": "team-a"},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: int32p(3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
			Template: podTemplate(version),
		},
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3,
		},
	}
}

// replicaSet is d's ReplicaSet of revision rev with version's template.
func replicaSet(d *appsv1.Deployment, rev, version string) *appsv1.ReplicaSet {
	tmpl := podTemplate(version)
	tmpl.Labels["pod-template-hash"] = "h" + version
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: "checkout-h" + version, Namespace: ns, UID: types.UID("uid-rs-" + version),
			Labels: map[string]string{"app": "checkout", "pod-template-hash": "h" + version},
			Annotations: map[string]string{
				"deployment.kubernetes.io/revision": rev,
				"kubernetes.io/change-cause":        "deploy " + version,
			},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout", "pod-template-hash": "h" + version}},
			Template: tmpl,
		},
	}
}

// newExecutor returns an executor over client with a short poll interval.
func newExecutor(t *testing.T, cfg kubernetes.Config, client *fake.Clientset) *kubernetes.Executor {
	t.Helper()
	if cfg.Connection.Namespace == "" {
		cfg.Connection.Namespace = ns
	}
	e, err := kubernetes.New(cfg, zaptest.NewLogger(t),
		kubernetes.WithClient(client), kubernetes.WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// patches counts the patch requests client received.
func patches(client *fake.Clientset) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" {
			n++
		}
	}
	return n
}

func getDeployment(t *testing.T, client *fake.Clientset) *appsv1.Deployment {
	t.Helper()
	d, err := client.AppsV1().Deployments(ns).Get(context.Background(), "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDeploymentRollback(t *testing.T) {
	d := deploymentOn("v2", "2")
	other := replicaSet(d, "5", "v0") // not controlled by d: ignored
	other.OwnerReferences = nil
	client := fake.NewClientset(d, replicaSet(d, "1", "v1"), replicaSet(d, "2", "v2"), other)
	e := newExecutor(t, kubernetes.Config{Deployment: "checkout"}, client)

	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	got := getDeployment(t, client)
	if want := podTemplate("v1"); !apiequality.Semantic.DeepEqual(got.Spec.Template, want) {
		t.Errorf("template after rollback:\n%+v\nwant revision 1's without the hash label:\n%+v", got.Spec.Template, want)
	}
	for k, want := range map[string]string{
		"deployment.kubernetes.io/revision": "2", // the controller's, kept
		"owner":                             "team-a",
		"kubernetes.io/change-cause":        "deploy v1", // from the ReplicaSet, as kubectl
		kubernetes.AnnotationIdempotencyKey: target.IdempotencyKey,
		kubernetes.AnnotationIncident:       "12",
		kubernetes.AnnotationFrom:           "2",
		kubernetes.AnnotationTo:             "1",
		kubernetes.AnnotationTemplate:       "checkout-hv1",
	} {
		if got.Annotations[k] != want {
			t.Errorf("annotation %s = %q, want %q", k, got.Annotations[k], want)
		}
	}
	for k, want := range map[string]string{
		"kind": "deployment", "namespace": ns, "name": "checkout",
		"from_revision": "2", "to_revision": "1", "images": "app=checkout:v1", "patched": "true",
	} {
		if res.Details[k] != want {
			t.Errorf("Details[%s] = %q, want %q", k, res.Details[k], want)
		}
	}
	wantOut := "deployment shop/checkout: revision 2 → template of revision 1 (image checkout:v1); rolled out 3/3 in "
	if !strings.HasPrefix(res.Output, wantOut) {
		t.Errorf("Output = %q, want prefix %q", res.Output, wantOut)
	}
	if n := patches(client); n != 1 {
		t.Errorf("%d patches, want 1", n)
	}

	// The same step again (after a crash, say) changes nothing, even
	// though the "previous" revision would now be another one.
	if err := client.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("replicasets"),
		withRevision(replicaSet(d, "3", "v1"), "3"), ns); err != nil {
		t.Fatal(err)
	}
	got.Annotations["deployment.kubernetes.io/revision"] = "3"
	if _, err := client.AppsV1().Deployments(ns).Update(context.Background(), got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	if n := patches(client); n != 1 {
		t.Errorf("%d patches after running the step twice, want 1", n)
	}
	if res.Details["patched"] != "false" || res.Details["to_revision"] != "1" || res.Details["from_revision"] != "2" {
		t.Errorf("second run details %v", res.Details)
	}
	if !strings.Contains(res.Output, "already rolled back by incident-12/rollback.application") {
		t.Errorf("second run output %q", res.Output)
	}
	if d := getDeployment(t, client); !apiequality.Semantic.DeepEqual(d.Spec.Template, podTemplate("v1")) {
		t.Errorf("template changed on the second run: %+v", d.Spec.Template)
	}

	// Another incident's step is a new rollback: to the previous revision.
	other12 := target
	other12.Incident, other12.IdempotencyKey = 13, "incident-13/rollback.application"
	if _, err := e.Rollback(context.Background(), other12); err != nil {
		t.Fatal(err)
	}
	if d := getDeployment(t, client); d.Spec.Template.Spec.Containers[0].Image != "checkout:v2" {
		t.Errorf("a new step rolled back to %s, want the previous revision's checkout:v2", d.Spec.Template.Spec.Containers[0].Image)
	}
}

// withRevision renumbers rs, as the controller does when a rollback reuses it.
func withRevision(rs *appsv1.ReplicaSet, rev string) *appsv1.ReplicaSet {
	rs.Annotations["deployment.kubernetes.io/revision"] = rev
	return rs
}

func TestDeploymentPlan(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  kubernetes.Config
		// d is the deployment, rs its ReplicaSets as revision → version.
		d       *appsv1.Deployment
		rs      map[string]string
		target  func(*executor.Target)
		wantImg string // image after the rollback
		patched bool
		wantErr string
	}{
		{
			name: "previous revision",
			cfg:  kubernetes.Config{Deployment: "checkout"},
			d:    deploymentOn("v3", "3"), rs: map[string]string{"1": "v1", "2": "v2", "3": "v3"},
			wantImg: "checkout:v2", patched: true,
		},
		{
			name: "named revision",
			cfg:  kubernetes.Config{Deployment: "checkout", ToRevision: 1},
			d:    deploymentOn("v3", "3"), rs: map[string]string{"1": "v1", "2": "v2", "3": "v3"},
			wantImg: "checkout:v1", patched: true,
		},
		{
			name: "named revision already current",
			cfg:  kubernetes.Config{Deployment: "checkout", ToRevision: 3},
			d:    deploymentOn("v3", "3"), rs: map[string]string{"1": "v1", "2": "v2", "3": "v3"},
			wantImg: "checkout:v3", patched: false,
		},
		{
			name: "named revision missing",
			cfg:  kubernetes.Config{Deployment: "checkout", ToRevision: 7},
			d:    deploymentOn("v2", "2"), rs: map[string]string{"1": "v1", "2": "v2"},
			wantErr: "deployment shop/checkout: rollback failed: revision 7 not found (revisions: 1, 2)",
		},
		{
			name: "baseline by version label skips a newer revision",
			cfg:  kubernetes.Config{Deployment: "checkout", VersionLabel: "version"},
			d:    deploymentOn("v2", "4"), rs: map[string]string{"1": "v0", "2": "v1", "3": "v1.5", "4": "v2"},
			wantImg: "checkout:v1", patched: true,
		},
		{
			name: "baseline by version annotation",
			cfg:  kubernetes.Config{Deployment: "checkout", VersionAnnotation: "example.com/version"},
			d:    annotateVersions(deploymentOn("v2", "3")), rs: map[string]string{"1": "v1", "2": "v1.5", "3": "v2"},
			wantImg: "checkout:v1", patched: true,
		},
		{
			name: "already on the baseline",
			cfg:  kubernetes.Config{Deployment: "checkout", VersionLabel: "version"},
			d:    deploymentOn("v1", "3"), rs: map[string]string{"2": "v2", "3": "v1"},
			wantImg: "checkout:v1", patched: false,
		},
		{
			name: "no revision of the baseline",
			cfg:  kubernetes.Config{Deployment: "checkout", VersionLabel: "version"},
			d:    deploymentOn("v2", "2"), rs: map[string]string{"1": "v0", "2": "v2"},
			wantErr: `no revision has label version="v1" (revisions: 1: "v0", 2: "v2")`,
		},
		{
			name: "runs a third version",
			cfg:  kubernetes.Config{Deployment: "checkout", VersionLabel: "version"},
			d:    deploymentOn("v3", "3"), rs: map[string]string{"1": "v1", "2": "v2", "3": "v3"},
			wantErr: `it runs version "v3" (label version), neither the incident's "v2" nor the baseline "v1"; not rolling back`,
		},
		{
			name: "no baseline in the target",
			cfg:  kubernetes.Config{Deployment: "checkout", VersionLabel: "version"},
			d:    deploymentOn("v2", "2"), rs: map[string]string{"1": "v1", "2": "v2"},
			target:  func(t *executor.Target) { t.Baseline = "" },
			wantErr: "the target has no baseline version to find by label version",
		},
		{
			name: "single revision",
			cfg:  kubernetes.Config{Deployment: "checkout"},
			d:    deploymentOn("v1", "1"), rs: map[string]string{"1": "v1"},
			wantErr: "no previous revision to roll back to (revisions: 1)",
		},
		{
			name: "paused",
			cfg:  kubernetes.Config{Deployment: "checkout"},
			d:    paused(deploymentOn("v2", "2")), rs: map[string]string{"1": "v1", "2": "v2"},
			wantErr: "it is paused; resume it first",
		},
		{
			name: "another step of this incident changed the template since",
			cfg:  kubernetes.Config{Deployment: "checkout"},
			d: marked(deploymentOn("v3", "3"), map[string]string{
				kubernetes.AnnotationIdempotencyKey: target.IdempotencyKey,
				kubernetes.AnnotationTemplate:       "checkout-hv1",
			}),
			rs:      map[string]string{"2": "v1", "3": "v3"},
			wantErr: "incident-12/rollback.application already rolled it back (to checkout-hv1), but its template changed since; not rolling back again",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := []runtime.Object{tc.d}
			for rev, v := range tc.rs {
				rs := replicaSet(tc.d, rev, v)
				if tc.cfg.VersionAnnotation != "" {
					rs.Spec.Template.Annotations = map[string]string{"example.com/version": v}
				}
				objs = append(objs, rs)
			}
			client := fake.NewClientset(objs...)
			e := newExecutor(t, tc.cfg, client)
			tg := target
			if tc.target != nil {
				tc.target(&tg)
			}
			res, err := e.Rollback(context.Background(), tg)
			if tc.wantErr != "" {
				if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Rollback() error = %v, want ErrFailed with %q", err, tc.wantErr)
				}
				if n := patches(client); n != 0 {
					t.Errorf("%d patches on error, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if img := getDeployment(t, client).Spec.Template.Spec.Containers[0].Image; img != tc.wantImg {
				t.Errorf("image after rollback %s, want %s", img, tc.wantImg)
			}
			if n := patches(client); (n == 1) != tc.patched || n > 1 {
				t.Errorf("%d patches, want patched=%v", n, tc.patched)
			}
			if res.Details["patched"] != map[bool]string{true: "true", false: "false"}[tc.patched] {
				t.Errorf("Details[patched] = %q", res.Details["patched"])
			}
		})
	}
}

func annotateVersions(d *appsv1.Deployment) *appsv1.Deployment {
	d.Spec.Template.Annotations = map[string]string{"example.com/version": d.Spec.Template.Labels["version"]}
	return d
}

func paused(d *appsv1.Deployment) *appsv1.Deployment {
	d.Spec.Paused = true
	return d
}

func marked(d *appsv1.Deployment, ann map[string]string) *appsv1.Deployment {
	for k, v := range ann {
		d.Annotations[k] = v
	}
	return d
}

func TestDeploymentConflict(t *testing.T) {
	for _, tc := range []struct {
		name      string
		conflicts int
		wantErr   bool
	}{
		{name: "one conflict is planned again", conflicts: 1},
		{name: "endless conflicts fail", conflicts: 100, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := deploymentOn("v2", "2")
			client := fake.NewClientset(d, replicaSet(d, "1", "v1"), replicaSet(d, "2", "v2"))
			left := tc.conflicts
			client.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
				if left == 0 {
					return false, nil, nil
				}
				left--
				return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "checkout", errors.New("the object has been modified"))
			})
			e := newExecutor(t, kubernetes.Config{Deployment: "checkout"}, client)
			_, err := e.Rollback(context.Background(), target)
			if tc.wantErr {
				if !errors.Is(err, executor.ErrFailed) || !apierrors.IsConflict(err) {
					t.Fatalf("Rollback() error = %v, want ErrFailed from a conflict", err)
				}
				if n := patches(client); n != 5 {
					t.Errorf("%d patch attempts, want 5", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := patches(client); n != 2 {
				t.Errorf("%d patch attempts, want 2", n)
			}
			if img := getDeployment(t, client).Spec.Template.Spec.Containers[0].Image; img != "checkout:v1" {
				t.Errorf("image %s, want checkout:v1", img)
			}
		})
	}
}

func TestDeploymentPatchIsGuarded(t *testing.T) {
	d := deploymentOn("v2", "2")
	client := fake.NewClientset(d, replicaSet(d, "1", "v1"), replicaSet(d, "2", "v2"))
	var patch []map[string]any
	client.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pa := a.(k8stesting.PatchAction)
		if pa.GetPatchType() != types.JSONPatchType {
			t.Errorf("patch type %s, want JSON patch", pa.GetPatchType())
		}
		if err := json.Unmarshal(pa.GetPatch(), &patch); err != nil {
			t.Error(err)
		}
		return false, nil, nil
	})
	e := newExecutor(t, kubernetes.Config{Deployment: "checkout"}, client)
	if _, err := e.Rollback(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	if len(patch) == 0 || patch[0]["path"] != "/metadata/resourceVersion" || patch[0]["value"] != "100" {
		t.Errorf("patch %v does not start by setting resourceVersion 100", patch)
	}
}

func TestDeploymentWait(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status func(*appsv1.Deployment)
		ctx    func() (context.Context, context.CancelFunc)
		// expire: the context expires at the second read after the patch.
		expire bool
		// timeout is the executor's own (300ms when zero).
		timeout time.Duration
		wantIs  []error
		wantErr string
	}{
		{
			name: "progress deadline exceeded",
			status: func(d *appsv1.Deployment) {
				d.Spec.ProgressDeadlineSeconds = int32p(30)
				d.Status.AvailableReplicas = 1
				d.Status.Conditions = []appsv1.DeploymentCondition{{
					Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
					Message: `ReplicaSet "checkout-hv1" has timed out progressing.`,
				}}
			},
			wantIs:  []error{executor.ErrFailed},
			wantErr: `deployment shop/checkout: rollback failed: rollout exceeded its progress deadline of 30s (ProgressDeadlineExceeded): 3 of 3 replicas updated, 1 available: ReplicaSet "checkout-hv1" has timed out progressing.`,
		},
		{
			name:    "never available: own timeout",
			status:  func(d *appsv1.Deployment) { d.Status.AvailableReplicas, d.Status.UnavailableReplicas = 2, 1 },
			wantIs:  []error{executor.ErrTimeout},
			wantErr: "deployment shop/checkout: rollback timed out after 300ms: 2 of 3 updated replicas available",
		},
		{
			// The caller's deadline passes at the second read after the
			// patch, whatever the machine's speed, long before the
			// executor's own timeout.
			name:    "caller's deadline",
			status:  func(d *appsv1.Deployment) { d.Status.UpdatedReplicas = 1 },
			expire:  true,
			timeout: time.Hour,
			wantIs:  []error{executor.ErrTimeout, context.DeadlineExceeded},
			wantErr: "1 of 3 replicas updated",
		},
		{
			name:   "caller cancels",
			status: func(d *appsv1.Deployment) { d.Status.ObservedGeneration = 1 },
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			wantIs: []error{context.Canceled},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := deploymentOn("v2", "2")
			client := fake.NewClientset(d, replicaSet(d, "1", "v1"), replicaSet(d, "2", "v2"))
			// The status goes bad once the rollback is patched in.
			client.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
				obj, err := client.Tracker().Get(a.GetResource(), ns, "checkout")
				if err != nil {
					return true, nil, err
				}
				cur := obj.(*appsv1.Deployment)
				tc.status(cur)
				return false, nil, client.Tracker().Update(a.GetResource(), cur, ns)
			})
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 300 * time.Millisecond
			}
			e := newExecutor(t, kubernetes.Config{Deployment: "checkout", Timeout: model.Duration(timeout)}, client)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			if tc.expire {
				exp := testctx.NewExpiring()
				ctx = exp
				var patched atomic.Bool
				reads := 0
				client.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
					patched.Store(true)
					return false, nil, nil
				})
				client.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
					if patched.Load() {
						if reads++; reads == 2 {
							exp.Expire()
						}
					}
					return false, nil, nil
				})
			}
			res, err := e.Rollback(ctx, target)
			for _, want := range tc.wantIs {
				if !errors.Is(err, want) {
					t.Errorf("Rollback() error = %v, want errors.Is %v", err, want)
				}
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Rollback() error = %v, want %q", err, tc.wantErr)
			}
			if errors.Is(err, executor.ErrTimeout) && errors.Is(err, executor.ErrFailed) {
				t.Errorf("error wraps both ErrTimeout and ErrFailed: %v", err)
			}
			if tc.name != "caller cancels" && !strings.Contains(res.Output, "rollout not complete after") {
				t.Errorf("Output = %q, want it to say the rollout is not complete", res.Output)
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	client := fake.NewClientset()
	e := newExecutor(t, kubernetes.Config{Deployment: "checkout"}, client)
	_, err := e.Rollback(context.Background(), target)
	if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), `deployments.apps "checkout" not found`) {
		t.Fatalf("Rollback() error = %v, want ErrFailed naming the missing deployment", err)
	}
	noKey := target
	noKey.IdempotencyKey = ""
	if _, err := e.Rollback(context.Background(), noKey); !errors.Is(err, executor.ErrFailed) {
		t.Fatalf("Rollback() without an idempotency key = %v, want ErrFailed", err)
	}
}

// controllerRevision is owner's revision rev holding version's template as
// the StatefulSet and DaemonSet controllers write it.
func controllerRevision(t *testing.T, owner metav1.Object, kind string, rev int64, version string) *appsv1.ControllerRevision {
	t.Helper()
	tmpl := podTemplate(version)
	raw, err := json.Marshal(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["$patch"] = "replace"
	data, err := json.Marshal(map[string]any{"spec": map[string]any{"template": m}})
	if err != nil {
		t.Fatal(err)
	}
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name: owner.GetName() + "-" + version, Namespace: ns,
			Labels:          map[string]string{"app": "checkout", "controller-revision-hash": version},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(owner, appsv1.SchemeGroupVersion.WithKind(kind))},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: rev,
	}
}

func TestStatefulSetRollback(t *testing.T) {
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns, UID: "uid-db", ResourceVersion: "7", Generation: 3},
		Spec: appsv1.StatefulSetSpec{
			Replicas: int32p(2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
			Template: podTemplate("v2"),
		},
		Status: appsv1.StatefulSetStatus{
			ObservedGeneration: 3, Replicas: 2, ReadyReplicas: 2, UpdatedReplicas: 2,
			CurrentRevision: "db-v2", UpdateRevision: "db-v2",
		},
	}
	client := fake.NewClientset(sts,
		controllerRevision(t, sts, "StatefulSet", 1, "v1"), controllerRevision(t, sts, "StatefulSet", 2, "v2"))
	e := newExecutor(t, kubernetes.Config{StatefulSet: "db"}, client)
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	got, err := client.AppsV1().StatefulSets(ns).Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(got.Spec.Template, podTemplate("v1")) {
		t.Errorf("template after rollback %+v, want v1's", got.Spec.Template)
	}
	if got.Annotations[kubernetes.AnnotationIdempotencyKey] != target.IdempotencyKey || got.Annotations[kubernetes.AnnotationTemplate] != "db-v1" {
		t.Errorf("annotations %v", got.Annotations)
	}
	want := "statefulset shop/db: revision 2 → template of revision 1 (image checkout:v1); rolled out 2/2 in "
	if !strings.HasPrefix(res.Output, want) {
		t.Errorf("Output = %q, want prefix %q", res.Output, want)
	}
	// Again: nothing to patch.
	if _, err := e.Rollback(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	if n := patches(client); n != 1 {
		t.Errorf("%d patches after two runs, want 1", n)
	}
}

func TestDaemonSetRollback(t *testing.T) {
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns, UID: "uid-agent", ResourceVersion: "9", Generation: 2},
		Spec: appsv1.DaemonSetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
			Template:       podTemplate("v2"),
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType},
		},
		Status: appsv1.DaemonSetStatus{
			ObservedGeneration: 2, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberAvailable: 2, NumberReady: 2,
		},
	}
	client := fake.NewClientset(ds,
		controllerRevision(t, ds, "DaemonSet", 1, "v1"), controllerRevision(t, ds, "DaemonSet", 2, "v2"),
		controllerRevision(t, ds, "DaemonSet", 3, "v3"))
	e := newExecutor(t, kubernetes.Config{DaemonSet: "agent", VersionLabel: "version"}, client)
	// The template (v2) is not the newest revision's (v3) here; the version
	// label still finds the baseline.
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	got, err := client.AppsV1().DaemonSets(ns).Get(context.Background(), "agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := got.Spec.Template.Spec.Containers[0].Image; img != "checkout:v1" {
		t.Errorf("image %s, want checkout:v1", img)
	}
	if res.Details["from_revision"] != "2" || res.Details["to_revision"] != "1" {
		t.Errorf("details %v", res.Details)
	}
}

// service is a blue-green Service selecting colour.
func service(colour string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, ResourceVersion: "5"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web", "color": colour}},
	}
}

func pod(name, colour string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web", "color": colour}}}
}

// slice is the Service's EndpointSlice with the pods as endpoints, ready or
// not.
func slice(ready bool, pods ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, p := range pods {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{"10.0.0." + string(rune('1'+i))},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: p, Namespace: ns},
		})
	}
	return s
}

func TestBlueGreen(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bg        kubernetes.BlueGreen
		svc       *corev1.Service
		endpoints *discoveryv1.EndpointSlice
		target    func(*executor.Target)
		timeout   time.Duration
		wantTo    string
		patched   bool
		wantIs    error
		wantErr   string
		wantOut   string
	}{
		{
			name: "fixed previous colour", bg: kubernetes.BlueGreen{Service: "web", Previous: "blue"},
			svc: service("green"), endpoints: slice(true, "blue-1", "blue-2"),
			wantTo: "blue", patched: true,
			wantOut: "service shop/web: selector color=green → blue; 2/2 pods ready behind it in ",
		},
		{
			name: "colour from the baseline", bg: kubernetes.BlueGreen{Service: "web", Values: map[string]string{"v1": "blue", "v2": "green"}},
			svc: service("green"), endpoints: slice(true, "blue-1", "blue-2"),
			wantTo: "blue", patched: true,
		},
		{
			name: "colour from a template", bg: kubernetes.BlueGreen{Service: "web", ValueTemplate: "bl{{.Baseline}}"},
			svc: service("green"), endpoints: slice(true, "blue-1", "blue-2"),
			target: func(t *executor.Target) { t.Baseline = "ue" },
			wantTo: "blue", patched: true,
		},
		{
			name: "already blue", bg: kubernetes.BlueGreen{Service: "web", Previous: "blue"},
			svc: service("blue"), endpoints: slice(true, "blue-1", "blue-2"),
			wantTo: "blue", patched: false,
			wantOut: "service shop/web: already selects color=blue, no patch; 2/2 pods ready behind it in ",
		},
		{
			name: "no entry for the baseline", bg: kubernetes.BlueGreen{Service: "web", Values: map[string]string{"v0": "blue"}},
			svc: service("green"), wantIs: executor.ErrFailed,
			wantErr: `blue_green.values has no entry for the baseline "v1"`,
		},
		{
			name: "selector without the label", bg: kubernetes.BlueGreen{Service: "web", SelectorLabel: "slot", Previous: "a"},
			svc: service("green"), wantIs: executor.ErrFailed,
			wantErr: "service shop/web: rollback failed: its selector app=web,color=green has no label slot",
		},
		{
			name: "old pods still behind it", bg: kubernetes.BlueGreen{Service: "web", Previous: "blue"},
			svc: service("green"), endpoints: slice(true, "green-1", "blue-1"), timeout: 200 * time.Millisecond,
			wantIs:  executor.ErrTimeout,
			wantErr: "1 ready endpoints of other pods left (green-1); 1 of 2 selected pods ready",
		},
		{
			name: "no ready endpoint", bg: kubernetes.BlueGreen{Service: "web", Previous: "blue"},
			svc: service("green"), endpoints: slice(false, "blue-1", "blue-2"), timeout: 200 * time.Millisecond,
			wantIs:  executor.ErrTimeout,
			wantErr: "none of 2 selected pods is a ready endpoint",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := []runtime.Object{tc.svc, pod("blue-1", "blue"), pod("blue-2", "blue"), pod("green-1", "green")}
			if tc.endpoints != nil {
				objs = append(objs, tc.endpoints)
			}
			client := fake.NewClientset(objs...)
			cfg := kubernetes.Config{BlueGreen: &tc.bg}
			if tc.timeout != 0 {
				cfg.Timeout = model.Duration(tc.timeout)
			}
			e := newExecutor(t, cfg, client)
			tg := target
			if tc.target != nil {
				tc.target(&tg)
			}
			res, err := e.Rollback(context.Background(), tg)
			if tc.wantIs != nil {
				if !errors.Is(err, tc.wantIs) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Rollback() error = %v, want %v with %q", err, tc.wantIs, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			svc, err := client.CoreV1().Services(ns).Get(context.Background(), "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := svc.Spec.Selector["color"]; got != tc.wantTo || svc.Spec.Selector["app"] != "web" {
				t.Errorf("selector %v, want color=%s and app=web kept", svc.Spec.Selector, tc.wantTo)
			}
			if n := patches(client); (n == 1) != tc.patched || n > 1 {
				t.Errorf("%d patches, want patched=%v", n, tc.patched)
			}
			if tc.wantOut != "" && !strings.HasPrefix(res.Output, tc.wantOut) {
				t.Errorf("Output = %q, want prefix %q", res.Output, tc.wantOut)
			}
			if tc.patched && (res.Details["from"] != "green" || res.Details["to"] != tc.wantTo) {
				t.Errorf("details %v", res.Details)
			}
		})
	}
}

func TestBlueGreenIdempotent(t *testing.T) {
	client := fake.NewClientset(service("green"), pod("blue-1", "blue"), slice(true, "blue-1"))
	e := newExecutor(t, kubernetes.Config{BlueGreen: &kubernetes.BlueGreen{Service: "web", Previous: "blue"}}, client)
	if _, err := e.Rollback(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	if n := patches(client); n != 1 {
		t.Errorf("%d patches after two runs, want 1", n)
	}
	if res.Details["from"] != "green" || !strings.Contains(res.Output, "already switched by incident-12/rollback.application") {
		t.Errorf("second run: %q %v", res.Output, res.Details)
	}

	// Someone switched it to green after the step: running the step again
	// does not fight them.
	svc, err := client.CoreV1().Services(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.Selector["color"] = "green"
	if _, err := client.CoreV1().Services(ns).Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = e.Rollback(context.Background(), target)
	if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), "already switched it to color=blue, but it is color=green now") {
		t.Fatalf("Rollback() after a later switch = %v, want ErrFailed", err)
	}
}
