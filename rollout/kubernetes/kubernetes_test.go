package kubernetes

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func deployment(rev, image, label string) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: "shop", Annotations: map[string]string{}}}
	if rev != "" {
		d.Annotations[RevisionAnnotation] = rev
	}
	d.Spec.Template.Labels = map[string]string{"app": "checkout"}
	if label != "" {
		d.Spec.Template.Labels["version"] = label
	}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", Image: image}}
	return d
}

func TestVersionOf(t *testing.T) {
	for _, tc := range []struct{ image, label, labelName, want string }{
		{"registry.example.com:5000/shop/checkout:v2.4.1", "", "", "v2.4.1"},
		{"checkout", "", "", "latest"},
		{"registry.example.com:5000/checkout", "", "", "latest"},
		{"checkout@sha256:abc", "", "", "sha256:abc"},
		{"checkout:v2", "2.4.1", "version", "2.4.1"},
	} {
		if got := VersionOf(deployment("1", tc.image, tc.label), tc.labelName); got != tc.want {
			t.Errorf("VersionOf(%s, %q) = %q, want %q", tc.image, tc.labelName, got, tc.want)
		}
	}
}

func TestObserve(t *testing.T) {
	w, err := New(nil, nil, "checkout", Config{Namespace: "shop", Deployment: "checkout"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		rev, image string
		want       string
	}{
		{"", "checkout:v1", ""},        // not numbered yet
		{"1", "checkout:v1", ""},       // learns v1
		{"1", "checkout:v1", ""},       // status update, same revision
		{"2", "checkout:v2", "v2<-v1"}, // a deploy
		{"3", "checkout:v1", "v1<-v2"}, // back to v1 is a new revision with a new template: kubectl rollout undo makes revision 3
		{"3", "checkout:v1", ""},       // nothing new
		{"4", "checkout:v1", ""},       // new revision, same version (e.g. an env change): not judged as a new version
	}
	for i, s := range steps {
		ev, ok := w.Observe(deployment(s.rev, s.image, ""))
		got := ""
		if ok {
			got = ev.Version + "<-" + ev.Baseline
			if ev.Origin != rollout.OriginKubernetes || ev.Service != "checkout" {
				t.Errorf("step %d: event %+v", i, ev)
			}
		}
		if got != s.want {
			t.Errorf("step %d: %q, want %q", i, got, s.want)
		}
	}
}

// A deploy's event carries what the template runs: its images (init
// containers first) and its Helm chart, and the previous revision's as
// the baseline's.
func TestObserveChange(t *testing.T) {
	w, err := New(nil, nil, "checkout", Config{Namespace: "shop", Deployment: "checkout"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d1 := deployment("1", "checkout:v1", "")
	d1.Labels = map[string]string{ChartLabel: "checkout-1.7.3"}
	if _, ok := w.Observe(d1); ok {
		t.Fatal("the first revision is a deploy")
	}
	d2 := deployment("2", "checkout:v2", "")
	d2.Spec.Template.Labels[ChartLabel] = "checkout-1.8.0"
	d2.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "migrate:v2"}}
	d2.Spec.Template.Spec.Containers = append(d2.Spec.Template.Spec.Containers, corev1.Container{Name: "proxy", Image: "envoy:1.29"})
	ev, ok := w.Observe(d2)
	if !ok {
		t.Fatal("no deploy")
	}
	want := rollout.Change{Version: "v2", Images: []string{"migrate:v2", "checkout:v2", "envoy:1.29"}, Chart: "checkout-1.8.0"}
	base := rollout.Change{Version: "v1", Images: []string{"checkout:v1"}, Chart: "checkout-1.7.3"}
	if ev.Change == nil || !reflect.DeepEqual(*ev.Change, want) || ev.BaselineChange == nil || !reflect.DeepEqual(*ev.BaselineChange, base) {
		t.Fatalf("change %+v, baseline %+v", ev.Change, ev.BaselineChange)
	}
}

// Against a real API server and controller manager: a new image is a
// deploy with the previous image as baseline.
func TestWatchRealDeployment(t *testing.T) {
	k := testenv.StartKubernetes(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	replicas := int32(1)
	d := deployment("", "checkout:v1", "")
	d.Namespace = "default"
	d.Annotations = nil
	d.Spec.Replicas = &replicas
	deadline := int32(2)
	d.Spec.ProgressDeadlineSeconds = &deadline
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}}
	d.Spec.Template.Spec.NodeName = k.Nodes[0]
	if _, err := k.Client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w := runWatcher(ctx, t, k.Client, nil, Config{Namespace: "default", Deployment: "checkout"})
	patch := []byte(`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"checkout:v2"}]`)
	if _, err := k.Client.AppsV1().Deployments("default").Patch(ctx, "checkout", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitEvents(t, "v2<-v1")
	if _, ok := w.Stalled(); ok {
		t.Fatal("a complete rollout reported stalled")
	}
	w.mu.Lock()
	ev := w.events[0]
	w.mu.Unlock()
	if ev.Change == nil || !slices.Equal(ev.Change.Images, []string{"checkout:v2"}) || ev.BaselineChange == nil || !slices.Equal(ev.BaselineChange.Images, []string{"checkout:v1"}) {
		t.Fatalf("the deploy's images: %+v, baseline's %+v", ev.Change, ev.BaselineChange)
	}

	// v3's pods never become ready: after its progress deadline the
	// controller gives up, and the watcher reports the stall.
	patch = []byte(`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"checkout:v3"},` +
		`{"op":"add","path":"/spec/template/metadata/annotations","value":{"` + testenv.NeverReadyAnnotation + `":"true"}}]`)
	if _, err := k.Client.AppsV1().Deployments("default").Patch(ctx, "checkout", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		st, ok := w.Stalled()
		if !ok {
			return fmt.Errorf("no stall seen")
		}
		if st.Version != "v3" || st.Revision != "3" || st.Deadline != 2*time.Second || st.Want != 1 || st.Updated != 1 {
			return fmt.Errorf("stall %+v", st)
		}
		return nil
	}, "the stall of v3")
}

func TestStallOf(t *testing.T) {
	deadline := int32(600)
	base := func(mod func(*appsv1.Deployment)) *appsv1.Deployment {
		d := deployment("4", "checkout:v4", "")
		d.Generation = 7
		d.Spec.ProgressDeadlineSeconds = &deadline
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 7, UpdatedReplicas: 1, AvailableReplicas: 2, Conditions: []appsv1.DeploymentCondition{
			{Type: appsv1.DeploymentAvailable, Reason: "MinimumReplicasAvailable"},
			{Type: appsv1.DeploymentProgressing, Reason: ProgressDeadlineExceeded, Message: `ReplicaSet "checkout-7d9" has timed out progressing.`},
		}}
		if mod != nil {
			mod(d)
		}
		return d
	}
	st, ok := StallOf(base(nil), "")
	want := `rollout of v4 (revision 4) exceeded its progress deadline of 10m0s (ProgressDeadlineExceeded): 1 of 1 replicas updated, 2 available: ReplicaSet "checkout-7d9" has timed out progressing.`
	if !ok || st.String() != want {
		t.Errorf("StallOf = %v %q\nwant %q", ok, st, want)
	}
	for name, mod := range map[string]func(*appsv1.Deployment){
		"progressing":          func(d *appsv1.Deployment) { d.Status.Conditions[1].Reason = "ReplicaSetUpdated" },
		"complete":             func(d *appsv1.Deployment) { d.Status.Conditions[1].Reason = "NewReplicaSetAvailable" },
		"newer spec unseen":    func(d *appsv1.Deployment) { d.Generation = 8 },
		"no conditions at all": func(d *appsv1.Deployment) { d.Status.Conditions = nil },
	} {
		if st, ok := StallOf(base(mod), ""); ok {
			t.Errorf("%s: stall %+v", name, st)
		}
	}
}

// rolloutObj is an Argo Rollout of image at revision rev, as the Argo
// controller leaves it (observedGeneration as a string).
func rolloutObj(rev, image string, stalled bool) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
		"metadata": map[string]any{"name": "checkout", "namespace": "default", "generation": int64(3)},
		"spec": map[string]any{
			"replicas": int64(2), "progressDeadlineSeconds": int64(60),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "checkout"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": "checkout"}},
				"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": image}}},
			},
		},
	}}
	if rev != "" {
		u.SetAnnotations(map[string]string{RolloutRevisionAnnotation: rev})
	}
	if stalled {
		u.Object["status"] = map[string]any{
			"observedGeneration": "3", "updatedReplicas": int64(1), "availableReplicas": int64(2),
			"conditions": []any{map[string]any{"type": "Progressing", "status": "False", "reason": ProgressDeadlineExceeded,
				"message": `ReplicaSet "checkout-5d8" has timed out progressing.`, "lastUpdateTime": "2026-11-26T01:00:00Z"}},
		}
	}
	return u
}

func TestObserveRollout(t *testing.T) {
	w, err := New(nil, nil, "checkout", Config{Namespace: "default", Rollout: "checkout"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range []struct {
		rev, image string
		want       string
	}{
		{"", "checkout:v1", ""},
		{"1", "checkout:v1", ""},
		{"2", "checkout:v2", "v2<-v1"},
		{"2", "checkout:v2", ""},
	} {
		ev, ok, err := w.ObserveRollout(rolloutObj(s.rev, s.image, false))
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if ok {
			got = ev.Version + "<-" + ev.Baseline
		}
		if got != s.want {
			t.Errorf("step %d: %q, want %q", i, got, s.want)
		}
	}
	if _, _, err := w.ObserveRollout(rolloutObj("2", "checkout:v2", true)); err != nil {
		t.Fatal(err)
	}
	st, ok := w.Stalled()
	want := `rollout of v2 (revision 2) exceeded its progress deadline of 1m0s (ProgressDeadlineExceeded): 1 of 2 replicas updated, 2 available: ReplicaSet "checkout-5d8" has timed out progressing.`
	if !ok || st.String() != want {
		t.Errorf("Stalled() = %v %q\nwant %q", ok, st, want)
	}
	bad := rolloutObj("3", "checkout:v3", false)
	bad.Object["spec"].(map[string]any)["replicas"] = "two"
	if _, _, err := w.ObserveRollout(bad); err == nil {
		t.Error("an unreadable Rollout gave no error")
	}
	if _, err := New(nil, nil, "checkout", Config{Namespace: "default", Deployment: "checkout", Rollout: "checkout"}, nil, nil); err == nil {
		t.Error("a Deployment and a Rollout at once were accepted")
	}
}

// Against a real API server with the Rollout CRD (the test plays the Argo
// controller, numbering revisions): a new image in the Rollout's template
// is a deploy with the previous image as baseline.
func TestWatchRealRollout(t *testing.T) {
	k := testenv.StartKubernetes(t)
	dyn := k.InstallRolloutCRD(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ro := dyn.Resource(RolloutResource).Namespace("default")
	if _, err := ro.Create(ctx, rolloutObj("1", "checkout:v1", false), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The watcher runs with exactly the rules the chart's
	// rbac.rolloutDetection grants.
	saDyn, err := dynamic.NewForConfig(k.GrantRole(t, "default", "watcher", []rbacv1.PolicyRule{
		{APIGroups: []string{"argoproj.io"}, Resources: []string{"rollouts"}, Verbs: []string{"list", "watch"}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	w := runWatcher(ctx, t, k.Client, saDyn, Config{Namespace: "default", Rollout: "checkout"})
	patch := []byte(`{"metadata":{"annotations":{"` + RolloutRevisionAnnotation + `":"2"}},` +
		`"spec":{"template":{"spec":{"containers":[{"name":"app","image":"checkout:v2"}]}}}}`)
	if _, err := ro.Patch(ctx, "checkout", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitEvents(t, "v2<-v1")
}

// testWatcher is a running Watcher and the events it emitted.
type testWatcher struct {
	*Watcher
	mu     sync.Mutex
	events []rollout.Event
}

// runWatcher runs a watcher of cfg until ctx ends (waiting for it at t's
// cleanup) and returns once it has learnt v1.
func runWatcher(ctx context.Context, t *testing.T, client k8s.Interface, dyn dynamic.Interface, cfg Config) *testWatcher {
	t.Helper()
	tw := &testWatcher{}
	w, err := New(client, dyn, "checkout", cfg, func(e rollout.Event) {
		tw.mu.Lock()
		tw.events = append(tw.events, e)
		tw.mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tw.Watcher = w
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.Eventually(t, 30*time.Second, func() error {
		if v := w.Version(); v != "v1" {
			return fmt.Errorf("version %q", v)
		}
		return nil
	}, "the watcher to learn v1")
	return tw
}

// waitEvents waits until the events emitted are want, as "version<-baseline".
func (tw *testWatcher) waitEvents(t *testing.T, want ...string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		tw.mu.Lock()
		defer tw.mu.Unlock()
		var got []string
		for _, e := range tw.events {
			got = append(got, e.Version+"<-"+e.Baseline)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("events %v, want %v", got, want)
		}
		return nil
	}, "the deploys "+strings.Join(want, ", "))
}
