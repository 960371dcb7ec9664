package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/rollback-guardian/guardian/executor"
)

// history lists the ControllerRevisions in the namespace that owner
// controls and that sel selects, ascending by revision.
func (e *Executor) history(ctx context.Context, owner metav1.Object, sel *metav1.LabelSelector) ([]revision, error) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("%w: selector: %w", executor.ErrFailed, err)
	}
	list, err := e.client.AppsV1().ControllerRevisions(e.namespace).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
	if err != nil {
		return nil, fmt.Errorf("listing controller revisions: %w", err)
	}
	var h []revision
	for i := range list.Items {
		cr := &list.Items[i]
		if !metav1.IsControlledBy(cr, owner) {
			continue
		}
		t, err := revisionTemplate(cr.Data.Raw)
		if err != nil {
			return nil, fmt.Errorf("%w: controller revision %s: %w", executor.ErrFailed, cr.Name, err)
		}
		h = append(h, revision{number: cr.Revision, name: cr.Name, template: t, data: cr.Data.Raw})
	}
	sortHistory(h)
	return h, nil
}

// revisionTemplate decodes the pod template of a ControllerRevision's
// data: a strategic merge patch {"spec":{"template":{"$patch":"replace",
// ...}}}.
func revisionTemplate(data []byte) (corev1.PodTemplateSpec, error) {
	var v struct {
		Spec struct {
			Template *corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	if v.Spec.Template == nil {
		return corev1.PodTemplateSpec{}, fmt.Errorf("no spec.template in its data")
	}
	return *v.Spec.Template, nil
}

// revisionPatch is a ControllerRevision's data (what kubectl applies as a
// strategic merge patch) with the resourceVersion that guards it and the
// annotations added.
func revisionPatch(s *snapshot, rev *revision, marks map[string]string) ([]byte, error) {
	var patch map[string]any
	if err := json.Unmarshal(rev.data, &patch); err != nil {
		return nil, err
	}
	patch["metadata"] = map[string]any{"resourceVersion": s.resourceVersion, "annotations": marks}
	return json.Marshal(patch)
}

// revisioned rolls back a workload whose history is ControllerRevisions: a
// StatefulSet or a DaemonSet, which differ only in their typed client and
// in how their object and status read.
type revisioned[T metav1.Object] struct {
	e      *Executor
	client revisionedClient[T]
	// spec returns the object's pod template, its selector and the
	// generation its controller observed.
	spec func(o T) (template corev1.PodTemplateSpec, selector *metav1.LabelSelector, observed int64)
	// progress reads the object's rollout status; name is for messages.
	progress func(o T, name string) (progress, error)
}

// revisionedClient is what revisioned uses of a typed client such as
// StatefulSets(namespace).
type revisionedClient[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// statefulSet rolls a StatefulSet back to a ControllerRevision.
func statefulSet(e *Executor) workload {
	return &revisioned[*appsv1.StatefulSet]{
		e: e, client: e.client.AppsV1().StatefulSets(e.namespace),
		spec: func(o *appsv1.StatefulSet) (corev1.PodTemplateSpec, *metav1.LabelSelector, int64) {
			return o.Spec.Template, o.Spec.Selector, o.Status.ObservedGeneration
		},
		progress: statefulSetProgress,
	}
}

// daemonSet rolls a DaemonSet back to a ControllerRevision.
func daemonSet(e *Executor) workload {
	return &revisioned[*appsv1.DaemonSet]{
		e: e, client: e.client.AppsV1().DaemonSets(e.namespace),
		spec: func(o *appsv1.DaemonSet) (corev1.PodTemplateSpec, *metav1.LabelSelector, int64) {
			return o.Spec.Template, o.Spec.Selector, o.Status.ObservedGeneration
		},
		progress: daemonSetProgress,
	}
}

func (w *revisioned[T]) load(ctx context.Context) (*snapshot, error) {
	e := w.e
	o, err := w.client.Get(ctx, e.name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	template, selector, observed := w.spec(o)
	h, err := e.history(ctx, o, selector)
	if err != nil {
		return nil, err
	}
	return &snapshot{
		resourceVersion: o.GetResourceVersion(), generation: o.GetGeneration(), observedGeneration: observed,
		annotations: o.GetAnnotations(), template: template, history: h,
	}, nil
}

func (w *revisioned[T]) restore(ctx context.Context, s *snapshot, rev *revision, marks map[string]string) error {
	e := w.e
	patch, err := revisionPatch(s, rev, marks)
	if err != nil {
		return err
	}
	_, err = w.client.Patch(ctx, e.name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	return err
}

// status reads the rollout's progress as `kubectl rollout status` does
// (see statefulSetProgress and daemonSetProgress).
func (w *revisioned[T]) status(ctx context.Context) (progress, error) {
	e := w.e
	o, err := w.client.Get(ctx, e.name, metav1.GetOptions{})
	if err != nil {
		return progress{}, err
	}
	return w.progress(o, e.String())
}

// statefulSetProgress reads a StatefulSet's status as `kubectl rollout
// status` does, stricter: the controller observed the spec, every replica
// is ready, updated (above the partition) and, without a partition,
// current and update revisions agree. name is for messages.
func statefulSetProgress(o *appsv1.StatefulSet, name string) (progress, error) {
	want := int32(1)
	if o.Spec.Replicas != nil {
		want = *o.Spec.Replicas
	}
	st := o.Status
	p := progress{ready: st.ReadyReplicas, want: want}
	var partition int32
	if ru := o.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
		partition = *ru.Partition
	}
	switch {
	case o.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType:
		return p, fmt.Errorf("%s: %w: update strategy OnDelete: pods are not replaced until deleted", name, executor.ErrFailed)
	case st.ObservedGeneration < o.Generation:
		p.msg = fmt.Sprintf("waiting for the controller to observe generation %d", o.Generation)
	case st.UpdatedReplicas < want-partition:
		p.msg = fmt.Sprintf("%d of %d replicas updated (revision %s)", st.UpdatedReplicas, want-partition, st.UpdateRevision)
	case st.ReadyReplicas < want || st.Replicas > want:
		p.msg = fmt.Sprintf("%d of %d replicas ready", st.ReadyReplicas, want)
	case partition == 0 && st.CurrentRevision != st.UpdateRevision:
		p.msg = fmt.Sprintf("waiting for current revision %s to become %s", st.CurrentRevision, st.UpdateRevision)
	default:
		p.done = true
		p.msg = fmt.Sprintf("%d of %d replicas ready at revision %s", st.ReadyReplicas, want, st.UpdateRevision)
	}
	return p, nil
}

// daemonSetProgress reads a DaemonSet's status as `kubectl rollout status`
// does: the controller observed the spec and every scheduled pod is updated
// and available. name is for messages.
func daemonSetProgress(o *appsv1.DaemonSet, name string) (progress, error) {
	st := o.Status
	p := progress{ready: st.NumberAvailable, want: st.DesiredNumberScheduled}
	switch {
	case o.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType:
		return p, fmt.Errorf("%s: %w: update strategy OnDelete: pods are not replaced until deleted", name, executor.ErrFailed)
	case st.ObservedGeneration < o.Generation:
		p.msg = fmt.Sprintf("waiting for the controller to observe generation %d", o.Generation)
	case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		p.msg = fmt.Sprintf("%d of %d pods updated", st.UpdatedNumberScheduled, st.DesiredNumberScheduled)
	case st.NumberAvailable < st.DesiredNumberScheduled || st.NumberUnavailable > 0:
		p.msg = fmt.Sprintf("%d of %d updated pods available", st.NumberAvailable, st.DesiredNumberScheduled)
	default:
		p.done = true
		p.msg = fmt.Sprintf("%d of %d pods updated and available", st.NumberAvailable, st.DesiredNumberScheduled)
	}
	return p, nil
}
