package kubernetes

import (
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rollback-guardian/guardian/executor"
)

func int32p(i int32) *int32 { return &i }

func TestDeploymentProgress(t *testing.T) {
	base := func(mod func(*appsv1.Deployment)) *appsv1.Deployment {
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: 4},
			Spec:       appsv1.DeploymentSpec{Replicas: int32p(3)},
			Status:     appsv1.DeploymentStatus{ObservedGeneration: 4, Replicas: 3, UpdatedReplicas: 3, AvailableReplicas: 3},
		}
		mod(d)
		return d
	}
	for _, tc := range []struct {
		name    string
		d       *appsv1.Deployment
		done    bool
		msg     string
		wantErr string
	}{
		{name: "complete", d: base(func(*appsv1.Deployment) {}), done: true, msg: "3 of 3 replicas updated and available"},
		{name: "not observed", d: base(func(d *appsv1.Deployment) { d.Status.ObservedGeneration = 3 }), msg: "waiting for the controller to observe generation 4"},
		{name: "updating", d: base(func(d *appsv1.Deployment) { d.Status.UpdatedReplicas = 1 }), msg: "1 of 3 replicas updated"},
		{name: "old replicas left", d: base(func(d *appsv1.Deployment) { d.Status.Replicas = 4 }), msg: "1 old replicas pending termination"},
		{name: "not available", d: base(func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 2 }), msg: "2 of 3 updated replicas available"},
		{name: "unavailable", d: base(func(d *appsv1.Deployment) { d.Status.UnavailableReplicas = 1 }), msg: "3 of 3 updated replicas available"},
		{
			name: "deadline exceeded",
			d: base(func(d *appsv1.Deployment) {
				d.Status.AvailableReplicas = 0
				d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: progressDeadlineExceeded, Message: "timed out"}}
			}),
			wantErr: "d: rollback failed: rollout exceeded its progress deadline (ProgressDeadlineExceeded): 3 of 3 replicas updated, 0 available: timed out",
		},
		{
			name: "deadline exceeded before the controller saw the rollback",
			d: base(func(d *appsv1.Deployment) {
				d.Status.ObservedGeneration = 3
				d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: progressDeadlineExceeded}}
			}),
			msg: "waiting for the controller to observe generation 4",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := deploymentProgress(tc.d, "d")
			check(t, p, err, tc.done, tc.msg, tc.wantErr)
		})
	}
}

func TestStatefulSetProgress(t *testing.T) {
	base := func(mod func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
		s := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Spec: appsv1.StatefulSetSpec{Replicas: int32p(3), UpdateStrategy: appsv1.StatefulSetUpdateStrategy{
				Type: appsv1.RollingUpdateStatefulSetStrategyType,
			}},
			Status: appsv1.StatefulSetStatus{
				ObservedGeneration: 2, Replicas: 3, ReadyReplicas: 3, UpdatedReplicas: 3, CurrentRevision: "db-1", UpdateRevision: "db-1",
			},
		}
		mod(s)
		return s
	}
	for _, tc := range []struct {
		name    string
		s       *appsv1.StatefulSet
		done    bool
		msg     string
		wantErr string
	}{
		{name: "complete", s: base(func(*appsv1.StatefulSet) {}), done: true, msg: "3 of 3 replicas ready at revision db-1"},
		{name: "not observed", s: base(func(s *appsv1.StatefulSet) { s.Status.ObservedGeneration = 1 }), msg: "waiting for the controller to observe generation 2"},
		{name: "updating", s: base(func(s *appsv1.StatefulSet) { s.Status.UpdatedReplicas = 2 }), msg: "2 of 3 replicas updated"},
		{name: "not ready", s: base(func(s *appsv1.StatefulSet) { s.Status.ReadyReplicas = 1 }), msg: "1 of 3 replicas ready"},
		{name: "revisions differ", s: base(func(s *appsv1.StatefulSet) { s.Status.UpdateRevision = "db-2" }), msg: "waiting for current revision db-1 to become db-2"},
		{
			name: "partition reached",
			s: base(func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: int32p(1)}
				s.Status.UpdatedReplicas, s.Status.UpdateRevision = 2, "db-2"
			}),
			done: true, msg: "3 of 3 replicas ready at revision db-2",
		},
		{
			name:    "on delete",
			s:       base(func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType }),
			wantErr: "s: rollback failed: update strategy OnDelete",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := statefulSetProgress(tc.s, "s")
			check(t, p, err, tc.done, tc.msg, tc.wantErr)
		})
	}
}

func TestDaemonSetProgress(t *testing.T) {
	base := func(mod func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
		d := &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Generation: 5},
			Spec:       appsv1.DaemonSetSpec{UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType}},
			Status:     appsv1.DaemonSetStatus{ObservedGeneration: 5, DesiredNumberScheduled: 4, UpdatedNumberScheduled: 4, NumberAvailable: 4},
		}
		mod(d)
		return d
	}
	for _, tc := range []struct {
		name    string
		d       *appsv1.DaemonSet
		done    bool
		msg     string
		wantErr string
	}{
		{name: "complete", d: base(func(*appsv1.DaemonSet) {}), done: true, msg: "4 of 4 pods updated and available"},
		{name: "not observed", d: base(func(d *appsv1.DaemonSet) { d.Status.ObservedGeneration = 4 }), msg: "waiting for the controller to observe generation 5"},
		{name: "updating", d: base(func(d *appsv1.DaemonSet) { d.Status.UpdatedNumberScheduled = 3 }), msg: "3 of 4 pods updated"},
		{name: "not available", d: base(func(d *appsv1.DaemonSet) { d.Status.NumberAvailable = 2 }), msg: "2 of 4 updated pods available"},
		{
			name:    "on delete",
			d:       base(func(d *appsv1.DaemonSet) { d.Spec.UpdateStrategy.Type = appsv1.OnDeleteDaemonSetStrategyType }),
			wantErr: "d: rollback failed: update strategy OnDelete",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := daemonSetProgress(tc.d, "d")
			check(t, p, err, tc.done, tc.msg, tc.wantErr)
		})
	}
}

func check(t *testing.T, p progress, err error, done bool, msg, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error = %v, want ErrFailed with %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if p.done != done || !strings.HasPrefix(p.msg, msg) {
		t.Errorf("progress = done %v %q, want done %v %q", p.done, p.msg, done, msg)
	}
}

// TestStallClock replays the status a rollback back to an existing
// ReplicaSet can show when the controller never counts progress: the
// Progressing condition stays NewReplicaSetAvailable while one new replica
// never becomes ready. Guardian fails it after the deadline and grace.
func TestStallClock(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Generation: 3},
		Spec:       appsv1.DeploymentSpec{Replicas: int32p(2), ProgressDeadlineSeconds: int32p(10)},
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: 3, Replicas: 3, UpdatedReplicas: 1, ReadyReplicas: 2, AvailableReplicas: 2,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: "NewReplicaSetAvailable"}},
		},
	}
	var c stallClock
	at := func(sec int) error { return c.check(d, t0.Add(time.Duration(sec)*time.Second), "d") }
	for _, sec := range []int{0, 5, 12} {
		if err := at(sec); err != nil {
			t.Fatalf("at %ds: %v, want no error before deadline+grace", sec, err)
		}
	}
	// Progress (a second updated replica) restarts the clock.
	d.Status.UpdatedReplicas, d.Status.Replicas = 2, 4
	if err := at(12); err != nil {
		t.Fatal(err)
	}
	// A replica going away is no progress.
	d.Status.ReadyReplicas = 1
	if err := at(20); err != nil {
		t.Fatalf("at 20s: %v", err)
	}
	err := at(25)
	want := "d: rollback failed: rollout made no progress for 13s, past its progress deadline of 10s (ProgressDeadlineExceeded, seen by Guardian: the controller's Progressing condition still says NewReplicaSetAvailable): 2 of 2 replicas updated, 2 available"
	if !errors.Is(err, executor.ErrFailed) || err.Error() != want {
		t.Fatalf("at 25s: error = %v\nwant %s", err, want)
	}

	// No deadline, a paused rollout, or a spec the controller has not
	// observed: never Guardian's call.
	for name, mod := range map[string]func(*appsv1.Deployment){
		"no deadline":  func(d *appsv1.Deployment) { d.Spec.ProgressDeadlineSeconds = nil },
		"paused":       func(d *appsv1.Deployment) { d.Spec.Paused = true },
		"not observed": func(d *appsv1.Deployment) { d.Status.ObservedGeneration = 2 },
	} {
		dd := d.DeepCopy()
		mod(dd)
		var c stallClock
		for sec := 0; sec <= 600; sec += 60 {
			if err := c.check(dd, t0.Add(time.Duration(sec)*time.Second), "d"); err != nil {
				t.Errorf("%s at %ds: %v", name, sec, err)
			}
		}
	}
}
