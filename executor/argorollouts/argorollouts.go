// Package argorollouts is the executor that rolls an Argo Rollouts Rollout
// back through the dynamic client: it aborts an update in progress (as
// `kubectl argo rollouts abort` does, setting status.abort), so that the
// stable ReplicaSet serves all traffic again, and optionally puts the
// stable (or previous) revision's pod template back into the Rollout (as
// `kubectl argo rollouts undo` does); then it waits until the Rollout is
// back on the stable revision.
//
// Undo is idempotent like the kubernetes executor's rollbacks: the patch
// records the target's idempotency key on the Rollout, carries the
// resourceVersion it was computed from, and running the same step again
// waits instead of rolling back one more revision.
package argorollouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/kubernetes"
)

// Name is the executor type's name in configuration and on the timeline.
const Name = "argo-rollouts"

// RolloutResource is the Argo Rollouts Rollout resource.
var RolloutResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// Labels and annotations of the Argo Rollouts controller.
const (
	// PodHashLabel holds a ReplicaSet's pod template hash, which
	// status.stableRS and status.currentPodHash name.
	PodHashLabel = "rollouts-pod-template-hash"
	// RevisionAnnotation holds a ReplicaSet's revision.
	RevisionAnnotation = "rollout.argoproj.io/revision"
	// timedOut starts the status message of a Rollout whose update made no
	// progress in time.
	timedOut = "ProgressDeadlineExceeded"
)

const (
	// DefaultPollInterval is how often the Rollout's status is read.
	DefaultPollInterval = time.Second
	maxConflicts        = 5
)

var errOwnTimeout = errors.New("argo-rollouts executor timeout")

// Option changes how an Executor works, mostly for tests.
type Option func(*Executor)

// WithClients uses these clients instead of ones built from the
// configuration; the namespace is then Config.Connection.Namespace or "default".
func WithClients(d dynamic.Interface, c k8s.Interface) Option {
	return func(e *Executor) { e.dyn, e.kube = d, c }
}

// WithPollInterval reads the status every d instead of DefaultPollInterval.
func WithPollInterval(d time.Duration) Option { return func(e *Executor) { e.poll = d } }

// WithClock sets the clock that times the rollback.
func WithClock(now func() time.Time) Option { return func(e *Executor) { e.now = now } }

// Executor rolls one Rollout back. It is safe for concurrent use.
type Executor struct {
	cfg       Config
	namespace string
	timeout   time.Duration
	poll      time.Duration
	dyn       dynamic.Interface
	kube      k8s.Interface
	now       func() time.Time
	logger    *zap.Logger
}

var _ executor.Executor = (*Executor)(nil)

// New validates cfg (applying its defaults), builds its clients (see
// kubernetes.RESTConfig) and returns its executor. It does not contact the
// API server. A nil logger logs nothing.
func New(cfg Config, logger *zap.Logger, opts ...Option) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("argo-rollouts executor: %w", err)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	e := &Executor{
		cfg: cfg, namespace: cfg.Connection.Namespace, timeout: time.Duration(cfg.Timeout),
		poll: DefaultPollInterval, now: time.Now,
	}
	for _, o := range opts {
		o(e)
	}
	if e.dyn == nil || e.kube == nil {
		rc, ns, err := kubernetes.RESTConfig(cfg.Connection)
		if err != nil {
			return nil, fmt.Errorf("argo-rollouts executor: %w", err)
		}
		if e.namespace == "" {
			e.namespace = ns
		}
		if e.dyn, err = dynamic.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("argo-rollouts executor: dynamic client: %w", err)
		}
		if e.kube, err = k8s.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("argo-rollouts executor: client: %w", err)
		}
	}
	if e.namespace == "" {
		e.namespace = "default"
	}
	e.logger = logger.With(zap.String("executor", Name), zap.String("object", e.String()))
	return e, nil
}

// String names the target, such as "rollout shop/checkout".
func (e *Executor) String() string { return "rollout " + e.namespace + "/" + e.cfg.Rollout }

// rolloutObject is the part of a Rollout the executor reads.
type rolloutObject struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Replicas *int32                 `json:"replicas"`
		Selector *metav1.LabelSelector  `json:"selector"`
		Template corev1.PodTemplateSpec `json:"template"`
	} `json:"spec"`
	Status struct {
		Abort              bool   `json:"abort"`
		StableRS           string `json:"stableRS"`
		CurrentPodHash     string `json:"currentPodHash"`
		ObservedGeneration string `json:"observedGeneration"`
		Phase              string `json:"phase"`
		Message            string `json:"message"`
		Replicas           int32  `json:"replicas"`
		UpdatedReplicas    int32  `json:"updatedReplicas"`
		AvailableReplicas  int32  `json:"availableReplicas"`
	} `json:"status"`
}

func (r *rolloutObject) replicas() int32 {
	if r.Spec.Replicas == nil {
		return 1
	}
	return *r.Spec.Replicas
}

// fullyPromoted reports whether the Rollout is not in an update: its
// current pods are the stable ones.
func (r *rolloutObject) fullyPromoted() bool {
	return r.Status.StableRS != "" && r.Status.StableRS == r.Status.CurrentPodHash
}

// observed reports whether the controller saw the latest spec.
func (r *rolloutObject) observed() bool {
	g, err := strconv.ParseInt(r.Status.ObservedGeneration, 10, 64)
	return err == nil && g >= r.Generation
}

func (e *Executor) get(ctx context.Context) (*rolloutObject, error) {
	u, err := e.dyn.Resource(RolloutResource).Namespace(e.namespace).Get(ctx, e.cfg.Rollout, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var r rolloutObject
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
		return nil, fmt.Errorf("%w: decoding: %w", executor.ErrFailed, err)
	}
	return &r, nil
}

// Rollback aborts the Rollout's update in progress and, with Undo, restores
// the stable (or previous, or configured) revision's template; then it
// waits until the stable ReplicaSet is available (abort) or the Rollout is
// healthy on the restored revision (undo). Aborting a fully promoted
// Rollout would change nothing, so without Undo that is an error. The error
// wraps executor.ErrFailed, executor.ErrTimeout, or ctx's error.
func (e *Executor) Rollback(ctx context.Context, t executor.Target) (executor.Result, error) {
	res := executor.Result{Details: map[string]string{"kind": "rollout", "namespace": e.namespace, "name": e.cfg.Rollout}}
	if t.IdempotencyKey == "" {
		return res, fmt.Errorf("%s: %w: target has no idempotency key", e, executor.ErrFailed)
	}
	log := e.logger.With(
		zap.Int64("incident", t.Incident),
		zap.String("service", t.Service),
		zap.String("version", t.Version),
		zap.String("baseline", t.Baseline),
		zap.String("step", t.Step),
	)
	ctx, cancel := context.WithTimeoutCause(ctx, e.timeout, errOwnTimeout)
	defer cancel()
	start := e.now()
	var out []string

	r, err := e.get(ctx)
	if err != nil {
		return res, e.fail(ctx, "reading the rollout", err)
	}
	res.Details["stable_rs"] = r.Status.StableRS
	res.Details["current_pod_hash"] = r.Status.CurrentPodHash
	switch {
	case !r.fullyPromoted() && r.Status.Abort:
		out = append(out, fmt.Sprintf("update to %s already aborted", r.Status.CurrentPodHash))
	case !r.fullyPromoted():
		if err := e.abort(ctx); err != nil {
			return res, e.fail(ctx, "aborting", err)
		}
		log.Info("aborted the update", zap.String("stable_rs", r.Status.StableRS), zap.String("current_pod_hash", r.Status.CurrentPodHash))
		out = append(out, fmt.Sprintf("aborted the update to %s, back to stable %s", r.Status.CurrentPodHash, r.Status.StableRS))
		res.Details["aborted"] = "true"
	case !e.cfg.Undo && r.Status.StableRS == "":
		return res, fmt.Errorf("%s: %w: no stable ReplicaSet in its status (is the Argo Rollouts controller running?)", e, executor.ErrFailed)
	case !e.cfg.Undo:
		return res, fmt.Errorf("%s: %w: it is fully promoted to %s, so aborting changes nothing; configure undo: true to restore the previous revision",
			e, executor.ErrFailed, r.Status.StableRS)
	}

	check := e.abortDone
	if e.cfg.Undo {
		hash, msg, err := e.undo(ctx, log, t, res.Details)
		if err != nil {
			res.Output = fmt.Sprintf("%s: %s", e, strings.Join(out, "; "))
			return res, err
		}
		out = append(out, msg)
		check = func(ctx context.Context) (progress, error) { return e.undoDone(ctx, hash) }
	}

	p, err := e.wait(ctx, log, check)
	took := e.now().Sub(start)
	res.Details["duration"] = strconv.FormatFloat(took.Seconds(), 'f', 1, 64) + "s"
	if err != nil {
		out = append(out, fmt.Sprintf("not done after %.1fs", took.Seconds()))
		res.Output = fmt.Sprintf("%s: %s", e, strings.Join(out, "; "))
		log.Warn("rollback failed", zap.Error(err))
		return res, err
	}
	out = append(out, fmt.Sprintf("%s in %.1fs", p.msg, took.Seconds()))
	res.Output = fmt.Sprintf("%s: %s", e, strings.Join(out, "; "))
	log.Info("rollback done", zap.String("output", res.Output))
	return res, nil
}

// abort sets status.abort as `kubectl argo rollouts abort` does: through the
// status subresource, or the object itself where the CRD has none.
func (e *Executor) abort(ctx context.Context) error {
	patch := []byte(`{"status":{"abort":true}}`)
	ri := e.dyn.Resource(RolloutResource).Namespace(e.namespace)
	_, err := ri.Patch(ctx, e.cfg.Rollout, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		_, err = ri.Patch(ctx, e.cfg.Rollout, types.MergePatchType, patch, metav1.PatchOptions{})
	}
	return err
}

// revision is one of the Rollout's ReplicaSets.
type revision struct {
	number   int64
	name     string
	hash     string
	template corev1.PodTemplateSpec // without PodHashLabel
}

// history lists the ReplicaSets r controls, ascending by revision.
func (e *Executor) history(ctx context.Context, r *rolloutObject) ([]revision, error) {
	sel, err := metav1.LabelSelectorAsSelector(r.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("%w: selector: %w", executor.ErrFailed, err)
	}
	list, err := e.kube.AppsV1().ReplicaSets(e.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("listing replica sets: %w", err)
	}
	var h []revision
	for i := range list.Items {
		rs := &list.Items[i]
		if !metav1.IsControlledBy(rs, r) {
			continue
		}
		n, err := strconv.ParseInt(rs.Annotations[RevisionAnnotation], 10, 64)
		if err != nil {
			continue
		}
		h = append(h, revision{number: n, name: rs.Name, hash: rs.Labels[PodHashLabel], template: *withoutHash(&rs.Spec.Template)})
	}
	slices.SortFunc(h, func(a, b revision) int { return int(a.number - b.number) })
	return h, nil
}

// undo restores the target revision's template (planning again after a
// conflict) and returns its pod hash and what it did.
func (e *Executor) undo(ctx context.Context, log *zap.Logger, t executor.Target, d map[string]string) (hash, msg string, err error) {
	for attempt := 1; ; attempt++ {
		r, err := e.get(ctx)
		if err != nil {
			return "", "", e.fail(ctx, "reading the rollout", err)
		}
		h, err := e.history(ctx, r)
		if err != nil {
			return "", "", e.fail(ctx, "reading its history", err)
		}
		to, skip, err := e.plan(r, h, t)
		if err != nil {
			return "", "", err
		}
		d["to_revision"] = strconv.FormatInt(to.number, 10)
		d["images"] = strings.Join(images(&to.template), ",")
		if cur := current(r, h); cur != nil {
			d["from_revision"] = strconv.FormatInt(cur.number, 10)
		}
		if skip != "" {
			d["patched"] = "false"
			log.Info("no patch needed", zap.String("reason", skip))
			return to.hash, skip, nil
		}
		from := d["from_revision"]
		if err = e.restore(ctx, r, to, from, t); err == nil {
			d["patched"] = "true"
			log.Info("restored revision", zap.String("from_revision", from), zap.Int64("to_revision", to.number))
			if from != "" {
				from = "revision " + from + " → "
			}
			return to.hash, fmt.Sprintf("%stemplate of revision %d (%s)", from, to.number, strings.Join(images(&to.template), ", ")), nil
		}
		if apierrors.IsConflict(err) && attempt < maxConflicts {
			log.Info("rollout changed while rolling back, planning again", zap.Error(err))
			continue
		}
		return "", "", e.fail(ctx, fmt.Sprintf("restoring revision %d", to.number), err)
	}
}

// plan picks the revision to restore: this step's own earlier restore (if
// the template is still its), the configured revision, the stable one in
// an update, or the previous one. skip is set when the Rollout already has
// its template.
func (e *Executor) plan(r *rolloutObject, h []revision, t executor.Target) (to *revision, skip string, err error) {
	fail := func(format string, args ...any) (*revision, string, error) {
		return nil, "", fmt.Errorf("%s: %w: %s", e, executor.ErrFailed, fmt.Sprintf(format, args...))
	}
	byName := func(name string) *revision {
		for i := range h {
			if h[i].name == name {
				return &h[i]
			}
		}
		return nil
	}
	if r.Annotations[kubernetes.AnnotationIdempotencyKey] == t.IdempotencyKey {
		ref := r.Annotations[kubernetes.AnnotationTemplate]
		to := byName(ref)
		if to == nil || !sameTemplate(&r.Spec.Template, &to.template) {
			return fail("%s already rolled it back (to %s), but its template changed since; not rolling back again", t.IdempotencyKey, ref)
		}
		return to, "already rolled back by " + t.IdempotencyKey, nil
	}
	switch {
	case e.cfg.ToRevision > 0:
		for i := range h {
			if h[i].number == e.cfg.ToRevision {
				to = &h[i]
			}
		}
		if to == nil {
			return fail("revision %d not found", e.cfg.ToRevision)
		}
	case !r.fullyPromoted() && r.Status.StableRS != "":
		for i := range h {
			if h[i].hash == r.Status.StableRS {
				to = &h[i]
			}
		}
		if to == nil {
			return fail("no ReplicaSet of the stable hash %s", r.Status.StableRS)
		}
	default:
		if len(h) < 2 {
			return fail("no previous revision to roll back to")
		}
		to = &h[len(h)-2]
	}
	if sameTemplate(&r.Spec.Template, &to.template) {
		return to, fmt.Sprintf("already on the template of revision %d", to.number), nil
	}
	return to, "", nil
}

// current is the revision whose template r has, or nil.
func current(r *rolloutObject, h []revision) *revision {
	for i := len(h) - 1; i >= 0; i-- {
		if sameTemplate(&r.Spec.Template, &h[i].template) {
			return &h[i]
		}
	}
	return nil
}

// restore replaces the Rollout's template with to's in a JSON patch guarded
// by r's resourceVersion, adding Guardian's annotations.
func (e *Executor) restore(ctx context.Context, r *rolloutObject, to *revision, from string, t executor.Target) error {
	ann := maps.Clone(r.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	maps.Copy(ann, map[string]string{
		kubernetes.AnnotationIdempotencyKey: t.IdempotencyKey,
		kubernetes.AnnotationIncident:       strconv.FormatInt(t.Incident, 10),
		kubernetes.AnnotationFrom:           from,
		kubernetes.AnnotationTo:             strconv.FormatInt(to.number, 10),
		kubernetes.AnnotationTemplate:       to.name,
	})
	patch, err := json.Marshal([]map[string]any{
		{"op": "replace", "path": "/metadata/resourceVersion", "value": r.ResourceVersion},
		{"op": "replace", "path": "/spec/template", "value": to.template},
		{"op": "add", "path": "/metadata/annotations", "value": ann},
	})
	if err != nil {
		return err
	}
	_, err = e.dyn.Resource(RolloutResource).Namespace(e.namespace).Patch(ctx, e.cfg.Rollout, types.JSONPatchType, patch, metav1.PatchOptions{})
	return err
}

// progress is the rollback's state at one moment.
type progress struct {
	done bool
	msg  string
}

// abortDone: the controller saw the abort and the stable ReplicaSet has
// every replica available.
func (e *Executor) abortDone(ctx context.Context) (progress, error) {
	r, err := e.get(ctx)
	if err != nil {
		return progress{}, err
	}
	want := r.replicas()
	if !r.Status.Abort {
		return progress{msg: "waiting for the abort to be recorded"}, nil
	}
	if r.Status.StableRS == "" {
		return progress{msg: "no stable ReplicaSet yet"}, nil
	}
	list, err := e.kube.AppsV1().ReplicaSets(e.namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{PodHashLabel: r.Status.StableRS}.String(),
	})
	if err != nil {
		return progress{}, fmt.Errorf("listing replica sets: %w", err)
	}
	var stable *appsv1.ReplicaSet
	for i := range list.Items {
		if metav1.IsControlledBy(&list.Items[i], r) {
			stable = &list.Items[i]
		}
	}
	if stable == nil {
		return progress{msg: "stable ReplicaSet " + r.Status.StableRS + " not found"}, nil
	}
	if stable.Status.AvailableReplicas < want {
		return progress{msg: fmt.Sprintf("stable ReplicaSet %s: %d of %d replicas available", stable.Name, stable.Status.AvailableReplicas, want)}, nil
	}
	return progress{done: true, msg: fmt.Sprintf("stable ReplicaSet %s serves %d/%d", stable.Name, stable.Status.AvailableReplicas, want)}, nil
}

// undoDone: the controller saw the restored template, its pods are the
// stable ones, all available, and the Rollout is healthy. A progress
// deadline exceeded fails.
func (e *Executor) undoDone(ctx context.Context, hash string) (progress, error) {
	r, err := e.get(ctx)
	if err != nil {
		return progress{}, err
	}
	st := r.Status
	want := r.replicas()
	switch {
	case !r.observed():
		return progress{msg: "waiting for the controller to observe generation " + strconv.FormatInt(r.Generation, 10)}, nil
	case st.Phase == "Degraded" && strings.HasPrefix(st.Message, timedOut):
		return progress{}, fmt.Errorf("%s: %w: %s", e, executor.ErrFailed, st.Message)
	case st.CurrentPodHash != hash || st.StableRS != hash:
		return progress{msg: fmt.Sprintf("current pods %s, stable %s, want both %s", st.CurrentPodHash, st.StableRS, hash)}, nil
	case st.UpdatedReplicas < want || st.AvailableReplicas < want:
		return progress{msg: fmt.Sprintf("%d of %d replicas updated, %d available", st.UpdatedReplicas, want, st.AvailableReplicas)}, nil
	case st.Phase != "" && st.Phase != "Healthy":
		return progress{msg: fmt.Sprintf("phase %s: %s", st.Phase, st.Message)}, nil
	}
	return progress{done: true, msg: fmt.Sprintf("healthy on %s, %d/%d available", hash, st.AvailableReplicas, want)}, nil
}

// Progress is the reading the shared wait loop sees.
func (p progress) Progress() executor.Progress { return executor.Progress{Done: p.done, Msg: p.msg} }

// wait polls check until it is done, fails or the time is up (see
// executor.Wait); NotFound, Forbidden and Unauthorized end it.
func (e *Executor) wait(ctx context.Context, log *zap.Logger, check func(context.Context) (progress, error)) (progress, error) {
	return executor.Wait(ctx, log, e.waiter(), check)
}

// waiter is the executor's wait loop.
func (e *Executor) waiter() executor.Waiter {
	return executor.Waiter{
		Name: e.String(), Interval: e.poll, Timeout: e.timeout, OwnTimeout: errOwnTimeout,
		Waiting: "waiting for rollout", Retrying: "reading rollout status",
		Final: func(_ context.Context, err error) error {
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
				return fmt.Errorf("%s: %w: %w", e, executor.ErrFailed, err)
			}
			return nil
		},
	}
}

// fail wraps a request's error: the context's end, or ErrFailed.
func (e *Executor) fail(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return e.waiter().ContextError(ctx, what, err)
	}
	if errors.Is(err, executor.ErrFailed) {
		return fmt.Errorf("%s: %s: %w", e, what, err)
	}
	return fmt.Errorf("%s: %w: %s: %w", e, executor.ErrFailed, what, err)
}

func withoutHash(t *corev1.PodTemplateSpec) *corev1.PodTemplateSpec {
	t = t.DeepCopy()
	delete(t.Labels, PodHashLabel)
	if len(t.Labels) == 0 {
		t.Labels = nil
	}
	return t
}

// sameTemplate reports whether a Rollout's template ro is a ReplicaSet's
// template rs, ignoring the pod hash label and, as Argo Rollouts does,
// fields that ro leaves unset and the API server defaulted in rs (a
// Rollout's template is not defaulted).
func sameTemplate(ro, rs *corev1.PodTemplateSpec) bool {
	return apiequality.Semantic.DeepDerivative(withoutHash(ro), withoutHash(rs))
}

func images(t *corev1.PodTemplateSpec) []string {
	out := make([]string, 0, len(t.Spec.Containers))
	for _, c := range t.Spec.Containers {
		out = append(out, c.Image)
	}
	return out
}
