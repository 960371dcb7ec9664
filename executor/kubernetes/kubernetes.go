// Package kubernetes is the executor that rolls a workload back through the
// Kubernetes API: a Deployment to the pod template of an earlier
// ReplicaSet (what `kubectl rollout undo` does), a StatefulSet or DaemonSet
// to an earlier ControllerRevision, or a blue-green Service's selector back
// to the previous colour; then it waits until the rollout is complete.
//
// A rollback is idempotent: the patch records the target's idempotency key
// on the object, so running the same step again (after a crash, say) waits
// for the rollout instead of rolling back one more revision. Patches carry
// the resourceVersion they were computed from; a concurrent change makes
// the API server refuse them and the rollback is planned again.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/rollback-guardian/guardian/executor"
)

// Name is the executor type's name in configuration and on the timeline.
const Name = "kubernetes"

// Annotations Guardian writes on the object it rolls back, in the same
// patch as the rollback itself.
const (
	// AnnotationPrefix starts every annotation Guardian writes.
	AnnotationPrefix = "rollback-guardian.io/"
	// AnnotationIdempotencyKey holds the idempotency key of the rollback
	// step that last patched the object.
	AnnotationIdempotencyKey = AnnotationPrefix + "idempotency-key"
	// AnnotationIncident holds that step's incident number.
	AnnotationIncident = AnnotationPrefix + "incident"
	// AnnotationFrom holds the revision (or selector value) rolled back
	// from.
	AnnotationFrom = AnnotationPrefix + "rolled-back-from"
	// AnnotationTo holds the revision (or selector value) rolled back to.
	AnnotationTo = AnnotationPrefix + "rolled-back-to"
	// AnnotationTemplate names the ReplicaSet or ControllerRevision whose
	// template was restored.
	AnnotationTemplate = AnnotationPrefix + "template"
)

const (
	// DefaultPollInterval is how often the rollout's status is read.
	DefaultPollInterval = time.Second
	// maxConflicts bounds how often a rollback is planned again after the
	// object changed under it.
	maxConflicts = 5
	// requestTimeout bounds each API request.
	requestTimeout = 30 * time.Second
	// inClusterNamespaceFile holds a pod's namespace.
	inClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
)

// errOwnTimeout is the cause of the context that Config.Timeout ends.
var errOwnTimeout = errors.New("kubernetes executor timeout")

// Option changes how an Executor works, mostly for tests.
type Option func(*Executor)

// WithClient uses c instead of a client built from the configuration's
// kubeconfig; the namespace is then Config.Connection.Namespace or "default".
func WithClient(c kubernetes.Interface) Option { return func(e *Executor) { e.client = c } }

// WithPollInterval reads the rollout's status every d instead of
// DefaultPollInterval.
func WithPollInterval(d time.Duration) Option { return func(e *Executor) { e.poll = d } }

// WithClock sets the clock that times the rollout.
func WithClock(now func() time.Time) Option { return func(e *Executor) { e.now = now } }

// Executor rolls one configured workload back. It is safe for concurrent
// use.
type Executor struct {
	cfg       Config
	kind      Kind
	name      string
	namespace string
	timeout   time.Duration
	poll      time.Duration
	client    kubernetes.Interface
	now       func() time.Time
	logger    *zap.Logger
}

var _ executor.Executor = (*Executor)(nil)

// New validates cfg (applying its defaults), builds a client from its
// kubeconfig (see Connection.Kubeconfig) and returns its executor. It does not
// contact the API server. A nil logger logs nothing.
func New(cfg Config, logger *zap.Logger, opts ...Option) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kubernetes executor: %w", err)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	e := &Executor{
		cfg:       cfg,
		kind:      cfg.Kind(),
		name:      cfg.TargetName(),
		namespace: cfg.Connection.Namespace,
		timeout:   time.Duration(cfg.Timeout),
		poll:      DefaultPollInterval,
		now:       time.Now,
	}
	for _, o := range opts {
		o(e)
	}
	if e.client == nil {
		rc, ns, err := RESTConfig(cfg.Connection)
		if err != nil {
			return nil, fmt.Errorf("kubernetes executor: %w", err)
		}
		if e.namespace == "" {
			e.namespace = ns
		}
		c, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("kubernetes executor: client: %w", err)
		}
		e.client = c
	}
	if e.namespace == "" {
		e.namespace = "default"
	}
	e.logger = logger.With(zap.String("executor", Name), zap.String("object", e.String()))
	return e, nil
}

// String names the target, such as "deployment shop/checkout".
func (e *Executor) String() string {
	kind := e.kind.String()
	if e.kind == KindBlueGreen {
		kind = "service"
	}
	return kind + " " + e.namespace + "/" + e.name
}

// RESTConfig returns the client configuration c describes and the
// namespace of its context: with no kubeconfig and no context, the
// in-cluster configuration when running in a pod; otherwise the kubeconfig
// file, or the files of $KUBECONFIG or ~/.kube/config. The namespace is
// empty when neither says one.
func RESTConfig(cfg Connection) (*rest.Config, string, error) {
	var inCluster error
	if cfg.Kubeconfig == "" && cfg.Context == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		rc, err := rest.InClusterConfig()
		if err == nil {
			ns := ""
			if b, err := os.ReadFile(inClusterNamespaceFile); err == nil {
				ns = strings.TrimSpace(string(b))
			}
			return finish(rc), ns, nil
		}
		// No mounted token, say: fall back to a kubeconfig.
		inCluster = fmt.Errorf("in-cluster configuration: %w", err)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if cfg.Kubeconfig != "" {
		rules.ExplicitPath = cfg.Kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: cfg.Context})
	rc, err := cc.ClientConfig()
	switch {
	case err == nil:
	case cfg.Kubeconfig != "":
		return nil, "", fmt.Errorf("kubeconfig %s: %w", cfg.Kubeconfig, err)
	case inCluster != nil:
		return nil, "", fmt.Errorf("%w; kubeconfig: %w", inCluster, err)
	default:
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig namespace: %w", err)
	}
	return finish(rc), ns, nil
}

// finish sets Guardian's user agent and request timeout.
func finish(rc *rest.Config) *rest.Config {
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "guardian-rollback"
	if rc.Timeout == 0 {
		rc.Timeout = requestTimeout
	}
	return rc
}

// Rollback rolls the configured target back to t.Baseline (or the
// configured or previous revision) and waits until the rollout is complete.
// The error wraps executor.ErrFailed when the rollback cannot be done or
// the rollout fails (a Deployment's ProgressDeadlineExceeded), and
// executor.ErrTimeout when the rollout did not complete within the
// configured timeout; or it is ctx's error when ctx ended first.
func (e *Executor) Rollback(ctx context.Context, t executor.Target) (executor.Result, error) {
	res := executor.Result{Details: map[string]string{
		"kind": e.kind.String(), "namespace": e.namespace, "name": e.name,
	}}
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

	var err error
	if e.kind == KindBlueGreen {
		err = e.switchBack(ctx, log, t, &res)
	} else {
		err = e.rollBack(ctx, log, t, e.workload(), &res)
	}
	if err != nil {
		log.Warn("rollback failed", zap.Error(err))
		return res, err
	}
	log.Info("rollback done", zap.String("output", res.Output))
	return res, nil
}

// marks are the annotations recording a rollback step on its object.
func marks(t executor.Target, from, to, template string) map[string]string {
	m := map[string]string{
		AnnotationIdempotencyKey: t.IdempotencyKey,
		AnnotationIncident:       strconv.FormatInt(t.Incident, 10),
		AnnotationFrom:           from,
		AnnotationTo:             to,
	}
	if template != "" {
		m[AnnotationTemplate] = template
	}
	return m
}

// progress is a rollout's state at one moment.
type progress struct {
	done bool
	// msg says what is awaited, or what completed.
	msg string
	// ready of want pods (replicas, scheduled pods or endpoints).
	ready, want int32
}

// Progress is the reading the shared wait loop sees.
func (p progress) Progress() executor.Progress { return executor.Progress{Done: p.done, Msg: p.msg} }

// wait polls check until it reports done, fails or the time is up (see
// executor.Wait); final API errors such as Forbidden end it.
func (e *Executor) wait(ctx context.Context, log *zap.Logger, check func(context.Context) (progress, error)) (progress, error) {
	return executor.Wait(ctx, log, e.waiter(), check)
}

// waiter is the executor's wait loop.
func (e *Executor) waiter() executor.Waiter {
	return executor.Waiter{
		Name: e.String(), Interval: e.poll, Timeout: e.timeout, OwnTimeout: errOwnTimeout,
		Waiting: "waiting for rollout", Retrying: "reading rollout status",
		Final: func(_ context.Context, err error) error {
			if final(err) {
				return fmt.Errorf("%s: %w: %w", e, executor.ErrFailed, err)
			}
			return nil
		},
	}
}

// apiError wraps an error of a request made before the wait: the context's
// end, or ErrFailed.
func (e *Executor) apiError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return e.waiter().ContextError(ctx, what, err)
	}
	return fmt.Errorf("%s: %w: %s: %w", e, executor.ErrFailed, what, err)
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
