// Package kubernetes learns of fresh deploys from a Deployment: an informer
// watches it, and a new revision with a new pod template is a deploy whose
// baseline is the previous revision. The version is a pod-template label,
// or else the image tag of the first container.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/fields"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/rollback-guardian/guardian/rollout"
)

// RevisionAnnotation is where the deployment controller numbers revisions.
const RevisionAnnotation = "deployment.kubernetes.io/revision"

// Config says which Deployment to watch and how to name its versions.
type Config struct {
	Namespace  string
	Deployment string
	// VersionLabel is the pod-template label holding the version; empty
	// means the image tag of the first container.
	VersionLabel string
}

// Watcher turns a Deployment's new revisions into deploy events.
type Watcher struct {
	client  k8s.Interface
	cfg     Config
	service string
	log     *zap.Logger
	now     func() time.Time
	emit    func(rollout.Event)
	learn   func(version string)

	mu       sync.Mutex
	revision string // last revision seen
	version  string // its version
	stall    *Stall // the last state seen, when its rollout stalled
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
	return fmt.Sprintf("deployment rollout to %s (revision %s) exceeded its progress deadline of %s (%s): %d of %d replicas updated, %d available: %s",
		s.Version, s.Revision, s.Deadline, ProgressDeadlineExceeded, s.Updated, s.Want, s.Available, s.Message)
}

// StallOf returns the stall of d's latest spec, if the controller
// reported one.
func StallOf(d *appsv1.Deployment, label string) (Stall, bool) {
	if d.Status.ObservedGeneration < d.Generation {
		return Stall{}, false // a newer spec may have fixed it
	}
	for _, c := range d.Status.Conditions {
		if c.Type != appsv1.DeploymentProgressing || c.Reason != ProgressDeadlineExceeded {
			continue
		}
		s := Stall{
			Revision: d.Annotations[RevisionAnnotation], Version: VersionOf(d, label), Since: c.LastUpdateTime.Time,
			Updated: d.Status.UpdatedReplicas, Available: d.Status.AvailableReplicas, Want: 1, Message: c.Message,
		}
		if d.Spec.ProgressDeadlineSeconds != nil {
			s.Deadline = time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second
		}
		if d.Spec.Replicas != nil {
			s.Want = *d.Spec.Replicas
		}
		return s, true
	}
	return Stall{}, false
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

// New returns a watcher of cfg's Deployment for service, calling emit for
// each fresh deploy.
func New(client k8s.Interface, service string, cfg Config, emit func(rollout.Event), logger *zap.Logger) (*Watcher, error) {
	if cfg.Namespace == "" || cfg.Deployment == "" {
		return nil, errors.New("kubernetes deploy detection: namespace and deployment are required")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Watcher{client: client, cfg: cfg, service: service, log: logger, now: time.Now, emit: emit}, nil
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
	if label != "" {
		return d.Spec.Template.Labels[label]
	}
	if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
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
// stalled (see Stalled): the first one only learns the running version; a later new revision whose version differs is a
// deploy, the previous version its baseline. A revision going back to an
// earlier template (a rollback) moves the current version without an event.
func (w *Watcher) Observe(d *appsv1.Deployment) (rollout.Event, bool) {
	w.observeStall(d)
	rev := d.Annotations[RevisionAnnotation]
	if rev == "" {
		return rollout.Event{}, false // the controller has not numbered it yet
	}
	v := VersionOf(d, w.cfg.VersionLabel)
	w.mu.Lock()
	defer w.mu.Unlock()
	prevRev, prevVersion := w.revision, w.version
	if rev == prevRev {
		// The template may already be new while the controller has not
		// numbered its revision yet: wait for the number.
		return rollout.Event{}, false
	}
	w.revision, w.version = rev, v
	switch {
	case prevRev == "":
		w.log.Info("watching deployment", zap.String("revision", rev), zap.String("version", v))
		return rollout.Event{}, false
	case v == prevVersion || v == "":
		return rollout.Event{}, false
	}
	ev := rollout.Event{Service: w.service, Version: v, Baseline: prevVersion, At: w.now(), Origin: rollout.OriginKubernetes}
	w.log.Info("deployment rolled to a new revision", zap.String("revision", rev), zap.String("version", v), zap.String("baseline", prevVersion))
	return ev, true
}

// observeStall records whether d's rollout stalled, logging a new stall.
func (w *Watcher) observeStall(d *appsv1.Deployment) {
	st, ok := StallOf(d, w.cfg.VersionLabel)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !ok:
		w.stall = nil
	case w.stall == nil || w.stall.Revision != st.Revision:
		w.log.Warn("deployment rollout stalled", zap.String("revision", st.Revision), zap.String("version", st.Version),
			zap.String("reason", ProgressDeadlineExceeded), zap.String("message", st.Message))
		w.stall = &st
	default:
		w.stall = &st
	}
}

// Run watches the Deployment with an informer until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	lw := cache.NewListWatchFromClient(w.client.AppsV1().RESTClient(), "deployments", w.cfg.Namespace,
		fields.OneTermEqualSelector("metadata.name", w.cfg.Deployment))
	handle := func(obj any) {
		d, ok := obj.(*appsv1.Deployment)
		if !ok {
			return
		}
		w.mu.Lock()
		first := w.revision == ""
		w.mu.Unlock()
		ev, ok := w.Observe(d)
		switch {
		case ok && w.emit != nil:
			w.emit(ev)
		case first && w.learn != nil:
			if v := w.Version(); v != "" {
				w.learn(v)
			}
		}
	}
	inf := cache.NewSharedIndexInformer(lw, &appsv1.Deployment{}, 0, cache.Indexers{})
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
	}); err != nil {
		return fmt.Errorf("watching deployment %s/%s: %w", w.cfg.Namespace, w.cfg.Deployment, err)
	}
	inf.Run(ctx.Done())
	return nil
}
