package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/rollback-guardian/guardian/executor"
)

// revision is one entry of a workload's rollout history: a Deployment's
// ReplicaSet or a StatefulSet's or DaemonSet's ControllerRevision.
type revision struct {
	number int64
	// name is the ReplicaSet's or ControllerRevision's name.
	name string
	// template is the pod template, without the pod-template-hash label.
	template corev1.PodTemplateSpec
	// annotations are a ReplicaSet's annotations.
	annotations map[string]string
	// data is a ControllerRevision's patch.
	data []byte
}

// snapshot is a workload as read at one moment.
type snapshot struct {
	resourceVersion                string
	generation, observedGeneration int64
	paused                         bool
	annotations                    map[string]string
	template                       corev1.PodTemplateSpec
	// history is ascending by number.
	history []revision
}

// current is the revision whose template the workload has, or nil.
func (s *snapshot) current() *revision {
	for i := len(s.history) - 1; i >= 0; i-- {
		if sameTemplate(&s.history[i].template, &s.template) {
			return &s.history[i]
		}
	}
	return nil
}

// byName returns the revision of that name, or nil.
func (s *snapshot) byName(name string) *revision {
	for i := range s.history {
		if s.history[i].name == name {
			return &s.history[i]
		}
	}
	return nil
}

// numbers lists the revisions for messages: "1, 2, 3".
func (s *snapshot) numbers() string {
	n := make([]string, len(s.history))
	for i, r := range s.history {
		n[i] = strconv.FormatInt(r.number, 10)
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

// workload is a Deployment, StatefulSet or DaemonSet.
type workload interface {
	// load reads the object and its history.
	load(ctx context.Context) (*snapshot, error)
	// restore patches the object to rev's template, guarded by s's
	// resourceVersion, and adds the annotations.
	restore(ctx context.Context, s *snapshot, rev *revision, annotations map[string]string) error
	// status reads the rollout's progress; an error wrapping
	// executor.ErrFailed means the rollout failed.
	status(ctx context.Context) (progress, error)
}

// workload returns the configured workload.
func (e *Executor) workload() workload {
	switch e.kind {
	case KindStatefulSet:
		return statefulSet(e)
	case KindDaemonSet:
		return daemonSet(e)
	}
	return &deployment{e: e}
}

// plan is what a rollback does.
type plan struct {
	from, to *revision
	// skip says why no patch is needed; empty means patch.
	skip string
}

// rollBack rolls a workload back: plan, patch (planning again after a
// conflict), wait.
func (e *Executor) rollBack(ctx context.Context, log *zap.Logger, t executor.Target, w workload, res *executor.Result) error {
	start := e.now()
	var p plan
	for attempt := 1; ; attempt++ {
		s, err := e.observed(ctx, log, w)
		if err != nil {
			return err
		}
		if p, err = e.plan(s, t); err != nil {
			return err
		}
		if p.skip != "" {
			log.Info("no patch needed", zap.String("reason", p.skip))
			break
		}
		from := ""
		if p.from != nil {
			from = strconv.FormatInt(p.from.number, 10)
		}
		m := marks(t, from, strconv.FormatInt(p.to.number, 10), p.to.name)
		log.Info("restoring revision", zap.String("from_revision", from), zap.Int64("to_revision", p.to.number),
			zap.Strings("images", images(&p.to.template)))
		err = w.restore(ctx, s, p.to, m)
		if err == nil {
			break
		}
		if apierrors.IsConflict(err) && attempt < maxConflicts {
			log.Info("object changed while rolling back, planning again", zap.Error(err))
			continue
		}
		return e.apiError(ctx, fmt.Sprintf("restoring revision %d", p.to.number), err)
	}

	d := res.Details
	if p.from != nil {
		d["from_revision"] = strconv.FormatInt(p.from.number, 10)
	}
	d["to_revision"] = strconv.FormatInt(p.to.number, 10)
	d["images"] = strings.Join(images(&p.to.template), ",")
	d["patched"] = strconv.FormatBool(p.skip == "")

	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", e)
	if p.skip != "" {
		fmt.Fprintf(&b, "%s, no patch", p.skip)
	} else {
		if p.from != nil {
			fmt.Fprintf(&b, "revision %d → ", p.from.number)
		}
		fmt.Fprintf(&b, "template of revision %d", p.to.number)
	}
	fmt.Fprintf(&b, " (%s)", imageList(&p.to.template))

	pr, err := e.wait(ctx, log, w.status)
	took := e.now().Sub(start)
	d["duration"] = seconds(took)
	if err != nil {
		fmt.Fprintf(&b, "; rollout not complete after %s", seconds(took))
		res.Output = b.String()
		return err
	}
	fmt.Fprintf(&b, "; rolled out %d/%d in %s", pr.ready, pr.want, seconds(took))
	res.Output = b.String()
	return nil
}

// observed loads the workload once its controller has observed its latest
// spec, so that the history holds the current template.
func (e *Executor) observed(ctx context.Context, log *zap.Logger, w workload) (*snapshot, error) {
	var s *snapshot
	_, err := e.wait(ctx, log, func(ctx context.Context) (progress, error) {
		var err error
		if s, err = w.load(ctx); err != nil {
			if errors.Is(err, executor.ErrFailed) {
				err = fmt.Errorf("%s: %w", e, err)
			}
			return progress{}, err
		}
		if s.observedGeneration < s.generation {
			return progress{msg: fmt.Sprintf("waiting for the controller to observe generation %d", s.generation)}, nil
		}
		return progress{done: true}, nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// plan decides what to restore. In order:
//
//  1. The object carries t's idempotency key: this step already patched
//     it. If its template is still the one restored, nothing is left to
//     patch; if it changed since, the step fails rather than roll back a
//     deploy made after it.
//  2. The revision to restore: Config.ToRevision; else, with a version
//     label or annotation, the newest revision whose template has
//     t.Baseline as that version; else the previous revision.
//  3. The object already has that revision's template: nothing to patch.
func (e *Executor) plan(s *snapshot, t executor.Target) (plan, error) {
	fail := func(format string, args ...any) (plan, error) {
		return plan{}, fmt.Errorf("%s: %w: %s", e, executor.ErrFailed, fmt.Sprintf(format, args...))
	}
	if s.paused {
		return fail("it is paused; resume it first")
	}
	cur := s.current()

	if s.annotations[AnnotationIdempotencyKey] == t.IdempotencyKey {
		ref := s.annotations[AnnotationTemplate]
		to := s.byName(ref)
		if to == nil || !sameTemplate(&to.template, &s.template) {
			return fail("%s already rolled it back (to %s), but its template changed since; not rolling back again", t.IdempotencyKey, ref)
		}
		// Report the revision as the step restored it: the controller has
		// renumbered it since.
		restored := *to
		if n, err := strconv.ParseInt(s.annotations[AnnotationTo], 10, 64); err == nil {
			restored.number = n
		}
		p := plan{to: &restored, skip: fmt.Sprintf("already rolled back by %s to the template of revision %d", t.IdempotencyKey, restored.number)}
		if n, err := strconv.ParseInt(s.annotations[AnnotationFrom], 10, 64); err == nil {
			p.from = &revision{number: n}
		}
		return p, nil
	}

	var to *revision
	key, kind := e.versionKey()
	switch {
	case e.cfg.ToRevision > 0:
		for i := range s.history {
			if s.history[i].number == e.cfg.ToRevision {
				to = &s.history[i]
			}
		}
		if to == nil {
			return fail("revision %d not found (revisions: %s)", e.cfg.ToRevision, s.numbers())
		}
	case key != "":
		if t.Baseline == "" {
			return fail("the target has no baseline version to find by %s %s", kind, key)
		}
		if v := version(&s.template, key, kind); t.Version != "" && v != t.Version && v != t.Baseline {
			return fail("it runs version %q (%s %s), neither the incident's %q nor the baseline %q; not rolling back", v, kind, key, t.Version, t.Baseline)
		}
		for i := len(s.history) - 1; i >= 0; i-- {
			if version(&s.history[i].template, key, kind) == t.Baseline {
				to = &s.history[i]
				break
			}
		}
		if to == nil {
			var seen []string
			for _, r := range s.history {
				seen = append(seen, fmt.Sprintf("%d: %q", r.number, version(&r.template, key, kind)))
			}
			return fail("no revision has %s %s=%q (revisions: %s)", kind, key, t.Baseline, strings.Join(seen, ", "))
		}
	default:
		if len(s.history) < 2 {
			return fail("no previous revision to roll back to (revisions: %s)", s.numbers())
		}
		// As kubectl: the second newest. A controller renumbers a revision
		// it goes back to, so the newest is the current template.
		to = &s.history[len(s.history)-2]
	}
	p := plan{from: cur, to: to}
	if sameTemplate(&to.template, &s.template) {
		p.skip = fmt.Sprintf("already on the template of revision %d", to.number)
	}
	return p, nil
}

// versionKey returns the configured version label or annotation and which
// of the two it is.
func (e *Executor) versionKey() (key, kind string) {
	switch {
	case e.cfg.VersionLabel != "":
		return e.cfg.VersionLabel, "label"
	case e.cfg.VersionAnnotation != "":
		return e.cfg.VersionAnnotation, "annotation"
	}
	return "", ""
}

// version is a template's version label or annotation.
func version(t *corev1.PodTemplateSpec, key, kind string) string {
	if kind == "annotation" {
		return t.Annotations[key]
	}
	return t.Labels[key]
}

// sameTemplate reports whether two pod templates are equal, ignoring
// Deployments' pod-template-hash label.
func sameTemplate(a, b *corev1.PodTemplateSpec) bool {
	a, b = withoutHash(a), withoutHash(b)
	return apiequality.Semantic.DeepEqual(a, b)
}

// withoutHash returns a copy of t without the pod-template-hash label
// (and without an empty label map).
func withoutHash(t *corev1.PodTemplateSpec) *corev1.PodTemplateSpec {
	t = t.DeepCopy()
	delete(t.Labels, podTemplateHashLabel)
	if len(t.Labels) == 0 {
		t.Labels = nil
	}
	return t
}

// images lists a template's containers as "name=image".
func images(t *corev1.PodTemplateSpec) []string {
	out := make([]string, 0, len(t.Spec.Containers))
	for _, c := range t.Spec.Containers {
		out = append(out, c.Name+"="+c.Image)
	}
	return out
}

// imageList describes a template's images for the output: "image app:v1"
// or "images app=app:v1, proxy=envoy:1.30".
func imageList(t *corev1.PodTemplateSpec) string {
	switch len(t.Spec.Containers) {
	case 0:
		return "no containers"
	case 1:
		return "image " + t.Spec.Containers[0].Image
	}
	return "images " + strings.Join(images(t), ", ")
}

// sortHistory sorts revisions by number.
func sortHistory(h []revision) {
	slices.SortFunc(h, func(a, b revision) int {
		switch {
		case a.number < b.number:
			return -1
		case a.number > b.number:
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
}
