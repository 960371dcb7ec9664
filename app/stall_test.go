package app

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/rollout"
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

// The built-in progress-deadline trigger fires once while the watched
// deploy's rollout is stalled, goes back to inactive when it progresses
// again, ignores a stall of another version, and is off with "ignore".
func TestProgressDeadlineTrigger(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy string
		// steps: the Deployment's state before each tick.
		steps []*appsv1.Deployment
		want  []trigger.State
		fired int
	}{
		{
			name:   "stall fires, progress clears",
			policy: config.OnProgressDeadlineIncident,
			steps: []*appsv1.Deployment{
				stallDeployment("2", "checkout:v2", false), stallDeployment("2", "checkout:v2", true),
				stallDeployment("2", "checkout:v2", true), stallDeployment("2", "checkout:v2", false),
			},
			want:  []trigger.State{trigger.Inactive, trigger.Firing, trigger.Firing, trigger.Inactive},
			fired: 2,
		},
		{
			name:   "another version's stall",
			policy: config.OnProgressDeadlineIncident,
			steps:  []*appsv1.Deployment{stallDeployment("3", "checkout:v3", true)},
			want:   []trigger.State{trigger.Inactive},
		},
		{
			name:   "ignore",
			policy: config.OnProgressDeadlineIgnore,
			steps:  []*appsv1.Deployment{stallDeployment("2", "checkout:v2", true)},
			want:   []trigger.State{trigger.Inactive},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kw, err := kuberollout.New(nil, nil, "checkout", kuberollout.Config{Namespace: "shop", Deployment: "checkout"}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			kw.Observe(stallDeployment("1", "checkout:v1", false))
			m := newMetrics(prometheus.NewRegistry())
			deploy := rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1", At: time.Unix(1000, 0), Origin: rollout.OriginKubernetes}
			var verdicts []trigger.Verdict
			fired := 0
			s := &service{
				name: "checkout",
				cfg: config.Service{Name: "checkout", Deploy: config.Deploy{Kubernetes: &config.KubernetesDeploy{
					Namespace: "shop", Deployment: "checkout", OnProgressDeadline: tc.policy}}},
				m: m, log: zap.NewNop(), lastOutcome: map[string]trigger.Outcome{}, kwatch: kw,
				watch:     &watch{deploy: deploy, until: deploy.At.Add(time.Hour)},
				onVerdict: func(_ context.Context, _ rollout.Event, v trigger.Verdict) { verdicts = append(verdicts, v) },
				onFiring:  func(context.Context, *service, rollout.Event, trigger.Verdict) { fired++ },
			}
			for i, d := range tc.steps {
				kw.Observe(d)
				n := len(verdicts)
				s.checkStall(context.Background(), deploy.At.Add(time.Duration(i+1)*time.Second))
				got := trigger.Inactive
				if len(verdicts) > n {
					v := verdicts[len(verdicts)-1]
					got = v.State
					if v.Trigger != config.ProgressDeadlineTrigger || v.Deploy.Version != "v2" {
						t.Errorf("step %d: verdict %+v", i, v)
					}
					if v.State == trigger.Firing && v.Summary() != "progress-deadline v2: rollout of v2 (revision 2) exceeded its progress deadline of 30s "+
						"(ProgressDeadlineExceeded): 1 of 2 replicas updated, 2 available: ReplicaSet \"checkout-2\" has timed out progressing.; firing"+
						map[bool]string{true: " (was inactive)", false: ""}[v.Changed] {
						t.Errorf("step %d: summary %q", i, v.Summary())
					}
				}
				if got != tc.want[i] {
					t.Errorf("step %d: state %s, want %s", i, got, tc.want[i])
				}
			}
			if fired != tc.fired {
				t.Errorf("onFiring called %d times, want %d", fired, tc.fired)
			}
			wantCount := 0.0
			if tc.fired > 0 {
				wantCount = 1
			}
			if c := testutil.ToFloat64(m.triggersFired.WithLabelValues("checkout", config.ProgressDeadlineTrigger)); c != wantCount {
				t.Errorf("guardian_triggers_fired_total = %g, want %g", c, wantCount)
			}
		})
	}
}
