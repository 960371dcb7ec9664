//go:build !nokubernetes

package app

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/plugin"
	kuberollout "github.com/rollback-guardian/guardian/rollout/kubernetes"
	"github.com/rollback-guardian/guardian/trigger"
)

// stallDeployment is the checkout Deployment at a revision and image,
// stalled or not.
func stallDeployment(rev, image string, stalled bool) *appsv1.Deployment {
	deadline, replicas := int32(30), int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: "shop", Generation: 2,
			Annotations: map[string]string{kuberollout.RevisionAnnotation: rev}},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, ProgressDeadlineSeconds: &deadline, Template: corev1.PodTemplateSpec{
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
		}},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, UpdatedReplicas: 1, AvailableReplicas: 2},
	}
	reason := "ReplicaSetUpdated"
	if stalled {
		reason = kuberollout.ProgressDeadlineExceeded
	}
	d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: reason, Message: "ReplicaSet \"checkout-2\" has timed out progressing."}}
	return d
}

// A service that learns deploys from a Deployment gets the built-in
// progress-deadline trigger, judged from the stalls its watcher saw: it fires
// while the watched deploy's rollout is stalled, goes back to inactive when
// it progresses again and ignores a stall of another version. With
// on_progress_deadline: ignore, or without Kubernetes, there is none.
func TestProgressDeadlineTrigger(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy string
		// steps: the Deployment's state before each evaluation.
		steps []*appsv1.Deployment
		want  []trigger.State
		none  bool // no trigger is built
	}{
		{
			name:   "stall fires, progress clears",
			policy: config.OnProgressDeadlineIncident,
			steps: []*appsv1.Deployment{
				stallDeployment("2", "checkout:v2", false), stallDeployment("2", "checkout:v2", true),
				stallDeployment("2", "checkout:v2", true), stallDeployment("2", "checkout:v2", false),
			},
			want: []trigger.State{trigger.Inactive, trigger.Firing, trigger.Firing, trigger.Inactive},
		},
		{
			name:   "default policy",
			policy: "",
			steps:  []*appsv1.Deployment{stallDeployment("2", "checkout:v2", true)},
			want:   []trigger.State{trigger.Firing},
		},
		{
			name:   "another version's stall",
			policy: config.OnProgressDeadlineIncident,
			steps:  []*appsv1.Deployment{stallDeployment("3", "checkout:v3", true)},
			want:   []trigger.State{trigger.Inactive},
		},
		{name: "ignore", policy: config.OnProgressDeadlineIgnore, none: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kw, err := kuberollout.New(nil, nil, "checkout", kuberollout.Config{Namespace: "shop", Deployment: "checkout"}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			kw.Observe(stallDeployment("1", "checkout:v1", false))
			p := progressDeadline(&config.KubernetesDeploy{Namespace: "shop", Deployment: "checkout", OnProgressDeadline: tc.policy}, plugin.StallFunc(kw))
			if tc.none {
				if p != nil {
					t.Fatalf("a progress-deadline trigger with policy %q", tc.policy)
				}
				return
			}
			if p == nil {
				t.Fatal("no progress-deadline trigger")
			}
			if p.Name() != config.ProgressDeadlineTrigger || p.Severity() != config.DefaultSeverity {
				t.Errorf("name %q severity %q", p.Name(), p.Severity())
			}
			d := trigger.Deploy{Service: "checkout", Version: "v2", Baseline: "v1", At: time.Unix(1000, 0)}
			for i, dep := range tc.steps {
				kw.Observe(dep)
				v := p.Eval(context.Background(), d.At.Add(time.Duration(i+1)*time.Second), d, nil)
				if v.State != tc.want[i] {
					t.Errorf("step %d: state %s, want %s", i, v.State, tc.want[i])
				}
				if v.State == trigger.Firing && v.Summary() != "progress-deadline v2: rollout of v2 (revision 2) exceeded its progress deadline of 30s "+
					"(ProgressDeadlineExceeded): 1 of 2 replicas updated, 2 available: ReplicaSet \"checkout-2\" has timed out progressing.; firing"+
					map[bool]string{true: " (was inactive)", false: ""}[v.Changed] {
					t.Errorf("step %d: summary %q", i, v.Summary())
				}
			}
		})
	}
	if progressDeadline(nil, nil) != nil {
		t.Error("a progress-deadline trigger without Kubernetes")
	}
}
