// Package kubernetes learns of fresh deploys from a Deployment or an Argo
// Rollout: an informer watches it, and a new revision with a new pod
// template is a deploy whose baseline is the previous revision. The version
// is a pod-template label, or else the image tag of the first container. A
// rollout the controller gives up on (ProgressDeadlineExceeded) is reported
// as a Stall.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/rollback-guardian/guardian/rollout"
)

// RevisionAnnotation is where the deployment controller numbers revisions.
const RevisionAnnotation = "deployment.kubernetes.io/revision"

// Config says which Deployment or Argo Rollout to watch and how to name
// its versions.
type Config struct {
	Namespace string
	// Deployment or Rollout (exactly one) names the workload.
	Deployment string
	// Rollout names an Argo Rollouts Rollout, watched through the dynamic
	// client; its revisions are the rollout.argoproj.io/revision annotation.
	Rollout string
	// VersionLabel is the pod-template label holding the version; empty
	// means the image tag of the first container.
	VersionLabel string
}

// Watcher turns a Deployment's or Rollout's new revisions into deploy
// events.
type Watcher struct {
	client  k8s.Interface
	dyn     dynamic.Interface
	cfg     Config
	service string
	log     *zap.Logger
	now     func() time.Time
	emit    func(rollout.Event)
	learn   func(version string)

	mu       sync.Mutex
	revision string         // last revision seen
	version  string         // its version
	change   rollout.Change // its images and chart
	stall    *Stall         // the last state seen, when its rollout stalled
}

// ProgressDeadlineExceeded is the reason of a Deployment's Progressing
// condition once its rollout made no progress within
// spec.progressDeadlineSeconds.
const ProgressDeadlineExceeded = "ProgressDeadlineExceeded"

// Stall is a rollout the Deployment controller gave up on: its Progressing
// condition says ProgressDeadlineExceeded.
type Stall struct {
	// Revision and Version are the stalled rollout's.
	Revision, Version string
	// Deadline is spec.progressDeadlineSeconds.
	Deadline time.Duration
	// Since is when the controller declared it (the condition's update time).
	Since time.Time
	// Updated, Available and Want count replicas.
	Updated, Available, Want int32
	// Message is the controller's, e.g. `ReplicaSet "checkout-7d9" has
	// timed out progressing.`
	Message string
}

// String describes the stall for the timeline.
func (s Stall) String() string {
	return fmt.Sprintf("rollout of %s (revision %s) exceeded its progress deadline of %s (%s): %d of %d replicas updated, %d available: %s",
		s.Version, s.Revision, s.Deadline, ProgressDeadlineExceeded, s.Updated, s.Want, s.Available, s.Message)
}

// StallOf returns the stall of d's latest spec, if the controller
// reported one.
func StallOf(d *appsv1.Deployment, label string) (Stall, bool) {
	return deploymentState(d, label).stall()
}

// stall is the state's stall, if its controller reported one for its
// latest spec.
func (st state) stall() (Stall, bool) {
	if st.observedGeneration < st.generation {
		return Stall{}, false // a newer spec may have fixed it
	}
	c := st.progressing
	if c == nil || c.reason != ProgressDeadlineExceeded {
		return Stall{}, false
	}
	s := Stall{
		Revision: st.revision, Version: st.version, Since: c.updated,
		Updated: st.updated, Available: st.available, Want: 1, Message: c.message,
	}
	if st.deadline != nil {
		s.Deadline = time.Duration(*st.deadline) * time.Second
	}
	if st.replicas != nil {
		s.Want = *st.replicas
	}
	return s, true
}

// Stalled returns the stall of the Deployment's state last seen, if any.
func (w *Watcher) Stalled() (Stall, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stall == nil {
		return Stall{}, false
	}
	return *w.stall, true
}

// RolloutRevisionAnnotation is where the Argo Rollouts controller numbers
// a Rollout's revisions.
const RolloutRevisionAnnotation = "rollout.argoproj.io/revision"

// RolloutResource is the Argo Rollouts Rollout resource.
var RolloutResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// New returns a watcher of cfg's Deployment (through client) or Rollout
// (through dyn) for service, calling emit for each fresh deploy.
func New(client k8s.Interface, dyn dynamic.Interface, service string, cfg Config, emit func(rollout.Event), logger *zap.Logger) (*Watcher, error) {
	if cfg.Namespace == "" || (cfg.Deployment == "") == (cfg.Rollout == "") {
		return nil, errors.New("kubernetes deploy detection: a namespace and exactly one of deployment and rollout are required")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Watcher{client: client, dyn: dyn, cfg: cfg, service: service, log: logger, now: time.Now, emit: emit}, nil
}

// kind names the watched workload for logs: "deployment" or "rollout".
func (w *Watcher) kind() string {
	if w.cfg.Rollout != "" {
		return "rollout"
	}
	return "deployment"
}

// state is what the watcher reads of a Deployment or a Rollout.
type state struct {
	revision, version              string
	change                         rollout.Change // images and chart of the template
	generation, observedGeneration int64
	deadline                       *int32
	replicas                       *int32
	updated, available             int32
	// progressing is the Progressing condition, if any.
	progressing *condition
}

type condition struct {
	reason, message string
	updated         time.Time
}

// deploymentState reads a Deployment.
func deploymentState(d *appsv1.Deployment, label string) state {
	st := state{
		revision: d.Annotations[RevisionAnnotation], version: VersionOf(d, label),
		change:     templateChange(&d.ObjectMeta, &d.Spec.Template),
		generation: d.Generation, observedGeneration: d.Status.ObservedGeneration,
		deadline: d.Spec.ProgressDeadlineSeconds, replicas: d.Spec.Replicas,
		updated: d.Status.UpdatedReplicas, available: d.Status.AvailableReplicas,
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing {
			st.progressing = &condition{reason: c.Reason, message: c.Message, updated: c.LastUpdateTime.Time}
		}
	}
	return st
}

// rolloutObject is the part of an Argo Rollout the watcher reads.
type rolloutObject struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Replicas                *int32                 `json:"replicas"`
		ProgressDeadlineSeconds *int32                 `json:"progressDeadlineSeconds"`
		Template                corev1.PodTemplateSpec `json:"template"`
	} `json:"spec"`
	Status struct {
		// The Argo controller writes observedGeneration as a string.
		ObservedGeneration string `json:"observedGeneration"`
		UpdatedReplicas    int32  `json:"updatedReplicas"`
		AvailableReplicas  int32  `json:"availableReplicas"`
		Conditions         []struct {
			Type           string      `json:"type"`
			Reason         string      `json:"reason"`
			Message        string      `json:"message"`
			LastUpdateTime metav1.Time `json:"lastUpdateTime"`
		} `json:"conditions"`
	} `json:"status"`
}

// rolloutState reads an Argo Rollout: its revision, the version its pod
// template runs (label, else the first container's image tag) and its
// progress.
func rolloutState(u *unstructured.Unstructured, label string) (state, error) {
	var r rolloutObject
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
		return state{}, fmt.Errorf("reading rollout %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	st := state{
		revision: r.Annotations[RolloutRevisionAnnotation], version: templateVersion(&r.Spec.Template, label),
		change:     templateChange(&r.ObjectMeta, &r.Spec.Template),
		generation: r.Generation, deadline: r.Spec.ProgressDeadlineSeconds, replicas: r.Spec.Replicas,
		updated: r.Status.UpdatedReplicas, available: r.Status.AvailableReplicas,
	}
	st.observedGeneration, _ = strconv.ParseInt(r.Status.ObservedGeneration, 10, 64)
	for _, c := range r.Status.Conditions {
		if c.Type == "Progressing" {
			st.progressing = &condition{reason: c.Reason, message: c.Message, updated: c.LastUpdateTime.Time}
		}
	}
	return st, nil
}

// SetEmit sets the function called with each fresh deploy, and learn the
// one called with the version running when the watch starts (before Run).
func (w *Watcher) SetEmit(emit func(rollout.Event), learn func(version string)) {
	w.emit, w.learn = emit, learn
}

// Version returns the version of the last revision seen.
func (w *Watcher) Version() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.version
}

// VersionOf returns the version a Deployment's pod template runs.
func VersionOf(d *appsv1.Deployment, label string) string {
	return templateVersion(&d.Spec.Template, label)
}

// ChartLabel is the label Helm charts conventionally put on what they
// render: the chart's name and version, e.g. "checkout-1.4.2".
const ChartLabel = "helm.sh/chart"

// templateChange is what a workload's pod template deploys: its
// containers' images (init containers first) and the Helm chart that
// rendered it (the template's helm.sh/chart label, else the workload's).
func templateChange(meta *metav1.ObjectMeta, t *corev1.PodTemplateSpec) rollout.Change {
	var c rollout.Change
	for _, cs := range [][]corev1.Container{t.Spec.InitContainers, t.Spec.Containers} {
		for _, ct := range cs {
			if ct.Image != "" && !slices.Contains(c.Images, ct.Image) {
				c.Images = append(c.Images, ct.Image)
			}
		}
	}
	c.Chart = t.Labels[ChartLabel]
	if c.Chart == "" {
		c.Chart = meta.Labels[ChartLabel]
	}
	return c
}

// templateVersion is a pod template's version label, or else the image tag
// (or digest) of its first container.
func templateVersion(t *corev1.PodTemplateSpec, label string) string {
	if label != "" {
		return t.Labels[label]
	}
	if cs := t.Spec.Containers; len(cs) > 0 {
		img := cs[0].Image
		if i := strings.LastIndex(img, "@"); i >= 0 {
			return img[i+1:]
		}
		if i := strings.LastIndex(img, ":"); i >= 0 && !strings.Contains(img[i:], "/") {
			return img[i+1:]
		}
		return "latest"
	}
	return ""
}

// Observe handles one state of the Deployment, noting whether its rollout
// stalled (see Stalled): the first one only learns the running version; a
// later new revision whose version differs is a deploy, the previous
// version its baseline. A revision going back to an earlier template (a
// rollback) moves the current version without an event.
func (w *Watcher) Observe(d *appsv1.Deployment) (rollout.Event, bool) {
	return w.observe(deploymentState(d, w.cfg.VersionLabel))
}

// ObserveRollout is Observe for an Argo Rollout.
func (w *Watcher) ObserveRollout(u *unstructured.Unstructured) (rollout.Event, bool, error) {
	st, err := rolloutState(u, w.cfg.VersionLabel)
	if err != nil {
		return rollout.Event{}, false, err
	}
	ev, ok := w.observe(st)
	return ev, ok, nil
}

func (w *Watcher) observe(st state) (rollout.Event, bool) {
	w.observeStall(st)
	rev, v := st.revision, st.version
	if rev == "" {
		return rollout.Event{}, false // the controller has not numbered it yet
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	prevRev, prevVersion, prevChange := w.revision, w.version, w.change
	if rev == prevRev {
		// The template may already be new while the controller has not
		// numbered its revision yet: wait for the number.
		return rollout.Event{}, false
	}
	w.revision, w.version, w.change = rev, v, st.change
	w.change.Version = v
	switch {
	case prevRev == "":
		w.log.Info("watching "+w.kind(), zap.String("revision", rev), zap.String("version", v))
		return rollout.Event{}, false
	case v == prevVersion || v == "":
		return rollout.Event{}, false
	}
	ev := rollout.Event{Service: w.service, Version: v, Baseline: prevVersion, At: w.now(), Origin: rollout.OriginKubernetes}
	if c := w.change; !c.Empty() {
		ev.Change = &c
	}
	if c := prevChange; !c.Empty() {
		ev.BaselineChange = &c
	}
	w.log.Info(w.kind()+" rolled to a new revision", zap.String("revision", rev), zap.String("version", v), zap.String("baseline", prevVersion))
	return ev, true
}

// observeStall records whether the workload's rollout stalled, logging a
// new stall.
func (w *Watcher) observeStall(s state) {
	st, ok := s.stall()
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !ok:
		w.stall = nil
	case w.stall == nil || w.stall.Revision != st.Revision:
		w.log.Warn(w.kind()+" rollout stalled", zap.String("revision", st.Revision), zap.String("version", st.Version),
			zap.String("reason", ProgressDeadlineExceeded), zap.String("message", st.Message))
		w.stall = &st
	default:
		w.stall = &st
	}
}

// Run watches the Deployment or Rollout with an informer until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	handled := func(ev rollout.Event, ok, first bool) {
		switch {
		case ok && w.emit != nil:
			w.emit(ev)
		case first && w.learn != nil:
			if v := w.Version(); v != "" {
				w.learn(v)
			}
		}
	}
	first := func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.revision == ""
	}
	var (
		inf    cache.SharedIndexInformer
		name   string
		handle func(obj any)
	)
	if w.cfg.Rollout != "" {
		if w.dyn == nil {
			return errors.New("watching a rollout needs a dynamic client")
		}
		name = w.cfg.Rollout
		inf = dynamicinformer.NewFilteredDynamicInformer(w.dyn, RolloutResource, w.cfg.Namespace, 0, cache.Indexers{},
			func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			}).Informer()
		handle = func(obj any) {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				return
			}
			f := first()
			ev, ok, err := w.ObserveRollout(u)
			if err != nil {
				w.log.Warn("unreadable rollout", zap.Error(err))
				return
			}
			handled(ev, ok, f)
		}
	} else {
		name = w.cfg.Deployment
		lw := cache.NewListWatchFromClient(w.client.AppsV1().RESTClient(), "deployments", w.cfg.Namespace,
			fields.OneTermEqualSelector("metadata.name", name))
		inf = cache.NewSharedIndexInformer(lw, &appsv1.Deployment{}, 0, cache.Indexers{})
		handle = func(obj any) {
			d, ok := obj.(*appsv1.Deployment)
			if !ok {
				return
			}
			f := first()
			ev, ok := w.Observe(d)
			handled(ev, ok, f)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
	}); err != nil {
		return fmt.Errorf("watching %s %s/%s: %w", w.kind(), w.cfg.Namespace, name, err)
	}
	inf.Run(ctx.Done())
	return nil
}
