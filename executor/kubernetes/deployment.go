package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/rollback-guardian/guardian/executor"
)

// Annotations and labels of the Deployment controller.
const (
	revisionAnnotation        = "deployment.kubernetes.io/revision"
	revisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	desiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	maxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
	podTemplateHashLabel      = appsv1.DefaultDeploymentUniqueLabelKey
	// progressDeadlineExceeded is the reason of the Progressing condition
	// of a Deployment whose rollout made no progress in time.
	progressDeadlineExceeded = "ProgressDeadlineExceeded"
)

// keepAnnotations are the Deployment's own annotations that a rollback
// keeps rather than take from the ReplicaSet (as kubectl does).
var keepAnnotations = map[string]bool{
	corev1.LastAppliedConfigAnnotation: true,
	revisionAnnotation:                 true,
	revisionHistoryAnnotation:          true,
	desiredReplicasAnnotation:          true,
	maxReplicasAnnotation:              true,
	appsv1.DeprecatedRollbackTo:        true,
}

// deployment rolls a Deployment back to a ReplicaSet's template.
type deployment struct {
	e *Executor
	// stall is Guardian's own progress deadline over this rollback's
	// status reads.
	stall stallClock
}

func (w *deployment) load(ctx context.Context) (*snapshot, error) {
	e := w.e
	d, err := e.client.AppsV1().Deployments(e.namespace).Get(ctx, e.name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("%w: selector: %w", executor.ErrFailed, err)
	}
	list, err := e.client.AppsV1().ReplicaSets(e.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("listing replica sets: %w", err)
	}
	s := &snapshot{
		resourceVersion:    d.ResourceVersion,
		generation:         d.Generation,
		observedGeneration: d.Status.ObservedGeneration,
		paused:             d.Spec.Paused,
		annotations:        d.Annotations,
		template:           d.Spec.Template,
	}
	for i := range list.Items {
		rs := &list.Items[i]
		if !metav1.IsControlledBy(rs, d) {
			continue
		}
		n, err := strconv.ParseInt(rs.Annotations[revisionAnnotation], 10, 64)
		if err != nil {
			continue
		}
		s.history = append(s.history, revision{
			number:      n,
			name:        rs.Name,
			template:    *withoutHash(&rs.Spec.Template),
			annotations: rs.Annotations,
		})
	}
	sortHistory(s.history)
	return s, nil
}

// restore replaces the Deployment's template with rev's, as kubectl does,
// in a JSON patch that fails with a conflict unless the Deployment is still
// at s's resourceVersion. The annotations are the Deployment's own, those
// of the ReplicaSet (such as kubernetes.io/change-cause) over them, and
// Guardian's marks.
func (w *deployment) restore(ctx context.Context, s *snapshot, rev *revision, marks map[string]string) error {
	e := w.e
	ann := maps.Clone(s.annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	for k, v := range rev.annotations {
		if !keepAnnotations[k] && !strings.HasPrefix(k, AnnotationPrefix) {
			ann[k] = v
		}
	}
	maps.Copy(ann, marks)
	patch, err := json.Marshal([]map[string]any{
		{"op": "replace", "path": "/metadata/resourceVersion", "value": s.resourceVersion},
		{"op": "replace", "path": "/spec/template", "value": rev.template},
		{"op": "add", "path": "/metadata/annotations", "value": ann},
	})
	if err != nil {
		return err
	}
	_, err = e.client.AppsV1().Deployments(e.namespace).Patch(ctx, e.name, types.JSONPatchType, patch, metav1.PatchOptions{})
	return err
}

// status is `kubectl rollout status`: the controller observed the spec, no
// progress deadline passed, every replica is updated and available and no
// old one is left.
func (w *deployment) status(ctx context.Context) (progress, error) {
	e := w.e
	d, err := e.client.AppsV1().Deployments(e.namespace).Get(ctx, e.name, metav1.GetOptions{})
	if err != nil {
		return progress{}, err
	}
	p, err := deploymentProgress(d, e.String())
	if err != nil || p.done {
		return p, err
	}
	return p, w.stall.check(d, e.now(), e.String())
}

// stallGrace is how long after the progress deadline Guardian waits for
// the controller to report it before saying so itself.
const stallGrace = 2 * time.Second

// stallClock is Guardian's own progress deadline for a Deployment. The
// controller reports ProgressDeadlineExceeded only once it has counted
// progress in the new rollout: a template change right after a complete
// rollout (a rollback to a ReplicaSet that still exists, say) whose first
// status update already shows the new replicas can leave the Progressing
// condition at NewReplicaSetAvailable for ever (kubernetes/kubernetes#40496,
// seen in our CI under load), and the wait would run into the executor's
// timeout instead of failing fast. So Guardian counts progress as the
// controller does (more updated, ready or available replicas, fewer old
// ones) and fails the rollout when none came for progressDeadlineSeconds.
type stallClock struct {
	started bool
	last    [4]int32
	since   time.Time
}

// check records d's status read at now and returns an ErrFailed error
// once the rollout has made no progress for its deadline and grace.
func (c *stallClock) check(d *appsv1.Deployment, now time.Time, name string) error {
	st := d.Status
	if d.Spec.ProgressDeadlineSeconds == nil || d.Spec.Paused || st.ObservedGeneration < d.Generation {
		// No deadline, or none the controller would count now.
		c.started = false
		return nil
	}
	cur := [4]int32{st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas, st.Replicas - st.UpdatedReplicas}
	progressed := cur[0] > c.last[0] || cur[1] > c.last[1] || cur[2] > c.last[2] || cur[3] < c.last[3]
	if !c.started || progressed {
		c.started, c.since = true, now
	}
	c.last = cur
	deadline := time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second
	stalled := now.Sub(c.since)
	if stalled <= deadline+stallGrace {
		return nil
	}
	reason := "none"
	for _, cond := range st.Conditions {
		if cond.Type == appsv1.DeploymentProgressing {
			reason = cond.Reason
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return fmt.Errorf("%s: %w: rollout made no progress for %s, past its progress deadline of %ds (%s, seen by Guardian: the controller's Progressing condition still says %s): %d of %d replicas updated, %d available",
		name, executor.ErrFailed, stalled.Round(time.Second), *d.Spec.ProgressDeadlineSeconds, progressDeadlineExceeded, reason, st.UpdatedReplicas, want, st.AvailableReplicas)
}

// deploymentProgress reads a Deployment's status; name is for messages.
func deploymentProgress(d *appsv1.Deployment, name string) (progress, error) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	p := progress{ready: st.AvailableReplicas, want: want}
	if st.ObservedGeneration < d.Generation {
		p.msg = fmt.Sprintf("waiting for the controller to observe generation %d", d.Generation)
		return p, nil
	}
	for _, c := range st.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == progressDeadlineExceeded {
			deadline := ""
			if d.Spec.ProgressDeadlineSeconds != nil {
				deadline = fmt.Sprintf(" of %ds", *d.Spec.ProgressDeadlineSeconds)
			}
			return p, fmt.Errorf("%s: %w: rollout exceeded its progress deadline%s (%s): %d of %d replicas updated, %d available: %s",
				name, executor.ErrFailed, deadline, progressDeadlineExceeded, st.UpdatedReplicas, want, st.AvailableReplicas, c.Message)
		}
	}
	switch {
	case st.UpdatedReplicas < want:
		p.msg = fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, want)
	case st.Replicas > st.UpdatedReplicas:
		p.msg = fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas)
	case st.AvailableReplicas < want || st.UnavailableReplicas > 0:
		p.msg = fmt.Sprintf("%d of %d updated replicas available", st.AvailableReplicas, want)
	default:
		p.done = true
		p.msg = fmt.Sprintf("%d of %d replicas updated and available", st.AvailableReplicas, want)
	}
	return p, nil
}
