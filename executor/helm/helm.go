// Package helm is the executor that rolls a Helm release back to an earlier
// revision with the Helm SDK (action.Rollback, what `helm rollback` does),
// reading and writing the release history in Helm's own storage (Secrets in
// the release's namespace), then waits until the restored resources are
// ready, with Helm's readiness rules (`helm rollback --wait`).
//
// The revision restored is the newest deployed one before the current
// revision, the configured to_revision, or, with match_app_version, the
// newest deployed one whose chart appVersion is the incident's baseline.
//
// A rollback is idempotent. Helm copies the labels of the revision it
// restores into the revision the rollback creates; so just before rolling
// back, Guardian labels the revision to restore with the step's
// idempotency key and the revisions rolled back from and to (see
// LabelIdempotencyKey), and takes the labels off it again afterwards. The
// new revision therefore carries the key from the moment it is stored,
// whether the rollback then succeeds, fails or the process dies. Running
// the same step again finds it: deployed, only its resources are checked;
// still pending-rollback, it is awaited (never started twice); failed, or
// followed by newer revisions, the step fails rather than roll back once
// more. A current revision that is a rollback ("Rollback to N") to the very
// revision the step would restore counts as done too, key or not. A release
// with another operation pending is never touched.
//
// Resources that are not ready within the timeout mark the new revision
// failed (with what was not ready in its description) and fail the step.
// Unlike `helm rollback --wait`, the wait is Guardian's own (Helm's
// ReadyChecker, polled, honouring the context); Helm has by then marked the
// new revision deployed and the previous one superseded, and post-rollback
// hooks have run.
//
// Permissions: in the release's namespace, Helm's storage needs
//
//	secrets: get, list, create, update, delete   (delete: pruning past max_history)
//
// and the rollback needs get, create, patch and delete on every kind of
// resource the chart renders (it creates what the restored revision has and
// the current one lacks, and deletes the reverse); the readiness checks
// need get on Deployments, StatefulSets, DaemonSets, Services,
// PersistentVolumeClaims, Pods, ReplicaSets and ReplicationControllers the
// chart renders, list on ReplicaSets for Deployments, and list on Pods for
// ReplicaSets and ReplicationControllers. For a chart of a
// Deployment, a Service and a ConfigMap that is:
//
//	rules:
//	  - apiGroups: [""]
//	    resources: [secrets]
//	    verbs: [get, list, create, update, delete]
//	  - apiGroups: [apps]
//	    resources: [deployments]
//	    verbs: [get, create, patch, delete]
//	  - apiGroups: [""]
//	    resources: [services, configmaps]
//	    verbs: [get, create, patch, delete]
//	  - apiGroups: [apps]
//	    resources: [replicasets]
//	    verbs: [list]
//
// (the end-to-end test runs with exactly these, as RBACRules). Charts with
// hooks need the same on the hooks' kinds, and watch on Jobs and Pods.
package helm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/resource"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/kubernetes"
)

// Name is the executor type's name in configuration and on the timeline.
const Name = "helm"

const (
	// DefaultPollInterval is how often the resources' readiness (or a
	// pending revision's status) is read.
	DefaultPollInterval = time.Second
	// StorageDriver is the Helm storage driver used: release records are
	// Secrets in the release's namespace, as the helm CLI keeps them.
	StorageDriver = "secret"
	// minQPS and minBurst raise client-go's default rate limit (5/10) for
	// Helm's discovery and readiness requests.
	minQPS, minBurst = 20, 50
)

// errOwnTimeout is the cause of the context that Config.Timeout ends.
var errOwnTimeout = errors.New("helm executor timeout")

// Option changes how an Executor works, mostly for tests.
type Option func(*Executor)

// WithActionConfig uses this Helm action configuration (its Releases
// storage and KubeClient) and this client for the readiness checks,
// instead of ones built from the configuration's kubeconfig; the namespace
// is then Config.Connection.Namespace or "default". Unit tests pass Helm's memory
// storage driver and fake KubeClient.
func WithActionConfig(cfg *action.Configuration, client k8s.Interface) Option {
	return func(e *Executor) { e.actions, e.client = cfg, client }
}

// WithPollInterval reads the readiness every d instead of
// DefaultPollInterval.
func WithPollInterval(d time.Duration) Option { return func(e *Executor) { e.poll = d } }

// WithClock sets the clock that times the rollback.
func WithClock(now func() time.Time) Option { return func(e *Executor) { e.now = now } }

// Executor rolls one Helm release back. It is safe for concurrent use;
// rollbacks of its release run one at a time.
type Executor struct {
	cfg       Config
	sel       selection
	namespace string
	timeout   time.Duration
	poll      time.Duration
	now       func() time.Time
	logger    *zap.Logger
	actions   *action.Configuration
	client    k8s.Interface
	// getter is nil with WithActionConfig.
	getter *restGetter
	// sem holds the one rollback running.
	sem chan struct{}
}

var _ executor.Executor = (*Executor)(nil)

// New validates cfg (applying its defaults), builds the Helm action
// configuration (see kubernetes.RESTConfig for the connection; release
// records in Secrets) and returns its executor. It does not contact the API
// server. A nil logger logs nothing; Helm's own log goes to it at debug
// level.
func New(cfg Config, logger *zap.Logger, opts ...Option) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("helm executor: %w", err)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	e := &Executor{
		cfg:       cfg,
		sel:       selection{toRevision: cfg.ToRevision, matchAppVersion: cfg.MatchAppVersion},
		namespace: cfg.Connection.Namespace,
		timeout:   time.Duration(cfg.Timeout),
		poll:      DefaultPollInterval,
		now:       time.Now,
		sem:       make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(e)
	}
	if e.actions == nil {
		rc, ns, err := kubernetes.RESTConfig(cfg.Connection)
		if err != nil {
			return nil, fmt.Errorf("helm executor: %w", err)
		}
		if e.namespace == "" {
			e.namespace = ns
		}
		if e.namespace == "" {
			e.namespace = "default"
		}
		if rc.QPS < minQPS {
			rc.QPS, rc.Burst = minQPS, max(rc.Burst, minBurst)
		}
		if e.getter, err = newRESTGetter(rc, e.namespace); err != nil {
			return nil, fmt.Errorf("helm executor: %w", err)
		}
		if e.client, err = k8s.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("helm executor: client: %w", err)
		}
		helmLog := logger.With(zap.String("executor", Name), zap.String("release", e.namespace+"/"+cfg.Release)).Named("helm")
		ac := new(action.Configuration)
		err = ac.Init(e.getter, e.namespace, StorageDriver, func(format string, v ...any) {
			helmLog.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)))
		})
		if err != nil {
			return nil, fmt.Errorf("helm executor: helm configuration: %w", err)
		}
		if kc, ok := ac.KubeClient.(*kube.Client); ok {
			kc.Namespace = e.namespace
		}
		e.actions = ac
	}
	if e.namespace == "" {
		e.namespace = "default"
	}
	e.logger = logger.With(zap.String("executor", Name), zap.String("object", e.String()))
	return e, nil
}

// String names the target, such as "helm release shop/checkout".
func (e *Executor) String() string { return "helm release " + e.namespace + "/" + e.cfg.Release }

// Rollback rolls the release back (see the package comment for which
// revision, and for what running it again does) and, unless Config.Wait is
// false, waits until the restored resources are ready. The error wraps
// executor.ErrFailed when the rollback cannot be done, Helm fails, or the
// resources are not ready within the configured timeout; executor.ErrTimeout
// when the time ran out before that (the rollback may have happened); or
// it is ctx's error when ctx ended first. Helm's own API requests do not
// see ctx: each is bounded by the client's request timeout.
func (e *Executor) Rollback(ctx context.Context, t executor.Target) (executor.Result, error) {
	res := executor.Result{Details: map[string]string{"namespace": e.namespace, "release": e.cfg.Release}}
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
	select {
	case e.sem <- struct{}{}:
		defer func() { <-e.sem }()
	case <-ctx.Done():
		return res, e.ctxError(ctx, "waiting for another rollback of the release to end", nil)
	}
	start := e.now()
	if e.getter != nil {
		e.getter.reset()
	}

	hist, err := e.actions.Releases.History(e.cfg.Release)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return res, fmt.Errorf("%s: %w: release not found (no revisions stored in namespace %s)", e, executor.ErrFailed, e.namespace)
	}
	if err != nil {
		return res, e.fail(ctx, "reading the release history", err)
	}
	p, err := planRollback(hist, e.sel, t)
	if err != nil {
		return res, fmt.Errorf("%s: %w: %w", e, executor.ErrFailed, err)
	}
	log.Info("planned", zap.Stringer("plan", p.step), zap.Int("from_revision", p.from),
		zap.Int("to_revision", p.toRevision), zap.Int("new_revision", p.newRevision), zap.String("reason", p.why))

	// rel is the revision whose resources are awaited; own says it is this
	// step's, so a failed wait marks it failed.
	rel, own := p.cur, p.step != stepNone
	var out strings.Builder
	fmt.Fprintf(&out, "%s: ", e)
	switch p.step {
	case stepRollback:
		fmt.Fprintf(&out, "revision %d (%s) → revision %d (%s): ", p.from, describe(p.cur), p.toRevision, describe(p.to))
		rel, err = e.rollBack(ctx, log, t, p)
		if err != nil {
			out.WriteString("rollback failed")
		} else {
			fmt.Fprintf(&out, "rolled back as revision %d", rel.Version)
		}
	case stepAwait:
		fmt.Fprintf(&out, "%s; awaited", p.why)
		rel, err = e.await(ctx, log, p.cur)
	default:
		fmt.Fprintf(&out, "%s (%s), no rollback", p.why, describe(p.cur))
	}
	res.Details["rolled_back"] = strconv.FormatBool(p.step == stepRollback && err == nil)
	setRevisions(res.Details, p, rel)
	if err != nil {
		res.Details["duration"] = seconds(e.now().Sub(start))
		res.Output = out.String()
		log.Warn("rollback failed", zap.Error(err))
		return res, err
	}

	if !e.cfg.Waits() {
		res.Details["duration"] = seconds(e.now().Sub(start))
		fmt.Fprintf(&out, "; not waiting for its resources (wait: false), %s", res.Details["duration"])
		res.Output = out.String()
		log.Info("rollback done", zap.String("output", res.Output))
		return res, nil
	}
	n, err := e.waitReady(ctx, log, rel, own)
	took := e.now().Sub(start)
	res.Details["duration"] = seconds(took)
	if err != nil {
		fmt.Fprintf(&out, "; resources not ready after %s", seconds(took))
		res.Output = out.String()
		log.Warn("rollback failed", zap.Error(err))
		return res, err
	}
	fmt.Fprintf(&out, "; %d resources ready in %s", n, seconds(took))
	res.Output = out.String()
	log.Info("rollback done", zap.String("output", res.Output))
	return res, nil
}

// setRevisions fills the Details about the revisions.
func setRevisions(d map[string]string, p plan, rel *release.Release) {
	if p.from > 0 {
		d["from_revision"] = strconv.Itoa(p.from)
	}
	if p.toRevision > 0 {
		d["to_revision"] = strconv.Itoa(p.toRevision)
	}
	if p.newRevision > 0 && (p.step != stepRollback || rel != nil) {
		d["new_revision"] = strconv.Itoa(p.newRevision)
	}
	content := p.to
	if content == nil {
		content = p.cur
	}
	if content != nil {
		d["chart"] = chartName(content)
		d["app_version"] = appVersion(content)
	}
}

// rollBack labels the revision to restore with the step's key, runs Helm's
// rollback to it (without Helm's wait), takes the labels off again and
// returns the revision the rollback created.
func (e *Executor) rollBack(ctx context.Context, log *zap.Logger, t executor.Target, p plan) (*release.Release, error) {
	deadline, _ := ctx.Deadline() // always set: the executor's timeout
	remaining := time.Until(deadline)
	if remaining <= 0 || ctx.Err() != nil {
		return nil, e.ctxError(ctx, "before rolling back", nil)
	}
	src := *p.to
	src.Labels = withLabels(p.to.Labels, t, p.from, p.to.Version)
	if err := e.actions.Releases.Update(&src); err != nil {
		return nil, e.fail(ctx, fmt.Sprintf("recording the idempotency key on revision %d", p.to.Version), err)
	}
	defer e.unlabel(log, p.to, t)

	rb := action.NewRollback(e.actions)
	rb.Version = p.to.Version
	rb.Wait = false
	rb.Timeout = remaining
	rb.CleanupOnFail = e.cfg.CleanupOnFail
	rb.MaxHistory = *e.cfg.MaxHistory
	log.Info("rolling back", zap.Int("from_revision", p.from), zap.Int("to_revision", p.to.Version),
		zap.String("chart", chartName(p.to)), zap.String("app_version", appVersion(p.to)), zap.Duration("timeout", remaining))
	if err := rb.Run(e.cfg.Release); err != nil {
		return nil, e.fail(ctx, fmt.Sprintf("rolling back to revision %d", p.to.Version), err)
	}
	rel, err := e.actions.Releases.Get(e.cfg.Release, p.newRevision)
	if err != nil {
		return nil, e.fail(ctx, fmt.Sprintf("reading the new revision %d", p.newRevision), err)
	}
	return rel, nil
}

// unlabel gives the restored revision its own labels back, if it still
// has this step's; a failure is only logged (the labels left on the
// restored revision are not taken for this step's rollback: see
// ownRevision).
func (e *Executor) unlabel(log *zap.Logger, restored *release.Release, t executor.Target) {
	h, err := e.actions.Releases.History(e.cfg.Release)
	if err != nil {
		log.Warn("reading the history to take the labels off the restored revision", zap.Error(err))
		return
	}
	for _, r := range h {
		if r.Version != restored.Version || r.Labels[LabelIdempotencyKey] != KeyLabelValue(t.IdempotencyKey) {
			continue
		}
		c := *r
		c.Labels = restored.Labels
		if err := e.actions.Releases.Update(&c); err != nil {
			log.Warn("taking the labels off the restored revision", zap.Int("revision", r.Version), zap.Error(err))
		}
	}
}

// await polls this step's pending revision until Helm has settled it:
// deployed is returned, anything else fails. It never starts anything.
func (e *Executor) await(ctx context.Context, log *zap.Logger, pending *release.Release) (*release.Release, error) {
	rel := pending
	_, err := e.wait(ctx, log, func(context.Context) (progress, error) {
		r, err := e.actions.Releases.Get(e.cfg.Release, pending.Version)
		if errors.Is(err, driver.ErrReleaseNotFound) {
			return progress{}, fmt.Errorf("%w: revision %d, this step's pending rollback, is gone", executor.ErrFailed, pending.Version)
		}
		if err != nil {
			return progress{}, err
		}
		rel = r
		switch st := r.Info.Status; {
		case st.IsPending():
			return progress{msg: fmt.Sprintf("revision %d is still %s (the rollback that started it may have stopped: see `helm history`; not starting another)",
				r.Version, st)}, nil
		case st == release.StatusDeployed:
			return progress{done: true}, nil
		default:
			return progress{}, fmt.Errorf("%w: revision %d, this step's rollback, ended %s (%s)", executor.ErrFailed, r.Version, st, r.Info.Description)
		}
	})
	if err != nil {
		return nil, err
	}
	return rel, nil
}

// waitReady waits until every resource of rel's manifest is ready, by
// Helm's rules, and returns how many there are. Resources not ready when
// the executor's timeout ends fail the rollback and, when rel is this
// step's, mark rel failed.
func (e *Executor) waitReady(ctx context.Context, log *zap.Logger, rel *release.Release, own bool) (int, error) {
	resources, err := e.actions.KubeClient.Build(bytes.NewBufferString(rel.Manifest), false)
	if err != nil {
		return 0, e.fail(ctx, fmt.Sprintf("reading the resources of revision %d", rel.Version), err)
	}
	var said []string
	checker := kube.NewReadyChecker(e.client, func(format string, v ...any) {
		said = append(said, strings.TrimSuffix(strings.TrimSpace(fmt.Sprintf(format, v...)), "."))
	}, kube.PausedAsReady(true))
	last, err := e.wait(ctx, log, func(ctx context.Context) (progress, error) {
		var waiting []string
		for _, info := range resources {
			said = said[:0]
			ready, err := checker.IsReady(ctx, info)
			if err != nil {
				return progress{}, fmt.Errorf("%s: %w", resourceName(info), err)
			}
			if !ready {
				msg := resourceName(info) + " is not ready"
				if len(said) > 0 {
					msg = said[len(said)-1]
				}
				waiting = append(waiting, msg)
			}
		}
		if len(waiting) > 0 {
			return progress{msg: strings.Join(waiting, "; ")}, nil
		}
		return progress{done: true}, nil
	})
	if err == nil {
		return len(resources), nil
	}
	if !errors.Is(context.Cause(ctx), errOwnTimeout) {
		return 0, err
	}
	// The time is up: the rollback failed, as `helm rollback --wait` says.
	reason := fmt.Sprintf("resources not ready after %s: %s", e.timeout, last.msg)
	if last.msg == "" {
		reason = fmt.Sprintf("resources not ready after %s: %v", e.timeout, err)
	}
	if own {
		e.markFailed(log, rel, reason)
		reason += fmt.Sprintf("; revision %d marked failed", rel.Version)
	}
	return 0, fmt.Errorf("%s: %w: %s", e, executor.ErrFailed, reason)
}

// markFailed sets this step's revision rel failed, as Helm does when its
// wait fails, if it is still deployed. A failure is only logged.
func (e *Executor) markFailed(log *zap.Logger, rel *release.Release, reason string) {
	r, err := e.actions.Releases.Get(e.cfg.Release, rel.Version)
	if err != nil {
		log.Warn("reading the revision to mark it failed", zap.Int("revision", rel.Version), zap.Error(err))
		return
	}
	if r.Info.Status != release.StatusDeployed {
		return
	}
	c := *r
	info := *r.Info
	c.Info = &info
	desc := "Rollback failed: " + reason
	if n, ok := rollbackTo(r); ok {
		desc = fmt.Sprintf("Rollback to %d failed: %s", n, reason)
	}
	c.SetStatus(release.StatusFailed, desc)
	if err := e.actions.Releases.Update(&c); err != nil {
		log.Warn("marking the revision failed", zap.Int("revision", rel.Version), zap.Error(err))
	}
}

// resourceName names a resource: "Deployment shop/checkout".
func resourceName(info *resource.Info) string {
	kind := "object"
	if info.Mapping != nil {
		kind = info.Mapping.GroupVersionKind.Kind
	} else if info.Object != nil {
		kind = info.Object.GetObjectKind().GroupVersionKind().Kind
	}
	if info.Namespace == "" {
		return kind + " " + info.Name
	}
	return kind + " " + info.Namespace + "/" + info.Name
}

// progress is what a wait saw at one moment.
type progress struct {
	done bool
	// msg says what is awaited.
	msg string
}

// Progress is the reading the shared wait loop sees.
func (p progress) Progress() executor.Progress { return executor.Progress{Done: p.done, Msg: p.msg} }

// wait polls check until it reports done, fails or the time is up, and
// returns the last progress seen (see executor.Wait). An error wrapping
// executor.ErrFailed, or a final API error such as Forbidden, ends the
// wait; other errors are logged and read again.
func (e *Executor) wait(ctx context.Context, log *zap.Logger, check func(context.Context) (progress, error)) (progress, error) {
	return executor.Wait(ctx, log, e.waiter(), func(ctx context.Context) (progress, error) {
		p, err := check(ctx)
		if errors.Is(err, executor.ErrFailed) {
			err = fmt.Errorf("%s: %w", e, err) // check's failures do not name the release
		}
		return p, err
	})
}

// waiter is the executor's wait loop.
func (e *Executor) waiter() executor.Waiter {
	return executor.Waiter{
		Name: e.String(), Interval: e.poll, Timeout: e.timeout, OwnTimeout: errOwnTimeout,
		Waiting: "waiting", Retrying: "checking the release",
		Final: func(ctx context.Context, err error) error {
			if final(err) {
				return e.fail(ctx, "checking the resources", err)
			}
			return nil
		},
	}
}

// ctxError is the error of an ended context (see executor.Waiter.ContextError).
func (e *Executor) ctxError(ctx context.Context, state string, lastErr error) error {
	return e.waiter().ContextError(ctx, state, lastErr)
}

// fail wraps the error of a step: the context's end, a missing permission,
// or ErrFailed.
func (e *Executor) fail(ctx context.Context, what string, err error) error {
	switch {
	case ctx.Err() != nil:
		return e.ctxError(ctx, what, err)
	case forbidden(err):
		return fmt.Errorf("%s: %w: %s: permission denied (grant it as the helm executor's RBAC rules say): %w", e, executor.ErrFailed, what, err)
	}
	return fmt.Errorf("%s: %w: %s: %w", e, executor.ErrFailed, what, err)
}

// forbidden reports a Forbidden answer, also inside the plain-text errors
// that Helm joins from several requests.
func forbidden(err error) bool {
	return apierrors.IsForbidden(err) || strings.Contains(err.Error(), " is forbidden: ")
}

// final reports API errors that polling again does not cure.
func final(err error) bool {
	return apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) ||
		apierrors.IsBadRequest(err) || apierrors.IsInvalid(err) || apierrors.IsMethodNotSupported(err)
}

// seconds formats d as "4.2s".
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
}
