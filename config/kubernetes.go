package config

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/executor"
)

// The configurations of the executors that talk to the Kubernetes API:
// kubernetes, argo_rollouts and helm. Names are checked here with the
// API server's own rules (names.go), without linking client-go or the Helm
// SDK.

// KubernetesConnection says how to reach the API server: the keys
// kubeconfig, context and namespace, shared by the Kubernetes-based
// executors.
type KubernetesConnection struct {
	// Kubeconfig is the path of a kubeconfig file. Empty means the
	// in-cluster configuration when Guardian runs in a pod, otherwise the
	// files named by $KUBECONFIG or ~/.kube/config. The config loader
	// resolves a relative path against the config file's directory.
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
	// Context selects a kubeconfig context instead of the current one.
	Context string `yaml:"context,omitempty"`
	// Namespace of the target; empty means the kubeconfig context's
	// namespace, the pod's own namespace in-cluster, or "default".
	Namespace string `yaml:"namespace,omitempty"`
}

// Validate checks the namespace, as "namespace: message" errors.
func (c *KubernetesConnection) Validate() []error {
	var errs []error
	if c.Namespace != "" {
		for _, m := range dns1123Label(c.Namespace) {
			errs = append(errs, fmt.Errorf("namespace: %s", m))
		}
	}
	return errs
}

// Defaults of KubernetesExecutor.
const (
	// DefaultKubernetesTimeout bounds the wait for the rolled-back workload.
	DefaultKubernetesTimeout = 10 * time.Minute
	// DefaultSelectorLabel is the Service selector label a blue-green switch
	// changes.
	DefaultSelectorLabel = "color"
)

// KubernetesExecutor configures the kubernetes executor. It names exactly
// one target: a Deployment, a StatefulSet, a DaemonSet or a blue-green
// Service.
//
//	kubeconfig: /etc/guardian/kubeconfig   # optional: in-cluster, else $KUBECONFIG or ~/.kube/config
//	context: prod                          # optional
//	namespace: shop                        # optional: the context's or the pod's namespace
//	deployment: checkout                   # or statefulset: NAME, daemonset: NAME, blue_green: {...}
//	to_revision: 0                         # optional: 0 rolls back to the previous revision
//	version_label: app.kubernetes.io/version  # optional: the revision whose pod template has label = baseline
//	timeout: 10m
//
// A blue-green target switches a Service's selector back:
//
//	blue_green:
//	  service: web
//	  selector_label: color      # default "color"
//	  previous: blue             # or values: {v1.4.0: blue, v1.5.0: green}, or value_template: "{{.Baseline}}"
type KubernetesExecutor struct {
	// Connection says how to reach the API server and which namespace the
	// target is in; its keys sit beside the others.
	Connection KubernetesConnection `yaml:",inline"`

	// Deployment names a Deployment to roll back through its ReplicaSets.
	Deployment string `yaml:"deployment,omitempty"`
	// StatefulSet names a StatefulSet to roll back through its
	// ControllerRevisions.
	StatefulSet string `yaml:"statefulset,omitempty"`
	// DaemonSet names a DaemonSet to roll back through its
	// ControllerRevisions.
	DaemonSet string `yaml:"daemonset,omitempty"`
	// BlueGreen switches a Service's selector back to the previous colour.
	BlueGreen *BlueGreen `yaml:"blue_green,omitempty"`

	// ToRevision is the revision to roll back to; 0 (unset) means the
	// previous one, or the one VersionLabel or VersionAnnotation picks.
	// Not used with BlueGreen.
	ToRevision int64 `yaml:"to_revision,omitempty"`
	// VersionLabel, when set, picks the newest revision whose pod template
	// has this label with the target's Baseline as value, instead of the
	// previous revision. Not used with BlueGreen.
	VersionLabel string `yaml:"version_label,omitempty"`
	// VersionAnnotation is VersionLabel for a pod template annotation.
	VersionAnnotation string `yaml:"version_annotation,omitempty"`

	// Timeout bounds the whole rollback, the wait for the rollout included
	// (0 or unset: DefaultKubernetesTimeout).
	Timeout model.Duration `yaml:"timeout,omitempty"`
}

// BlueGreen is a blue-green target: a Service whose selector chooses
// between two sets of pods by the value of one label.
type BlueGreen struct {
	// Service names the Service whose selector switches.
	Service string `yaml:"service"`
	// SelectorLabel is the selector label whose value switches (default
	// DefaultSelectorLabel).
	SelectorLabel string `yaml:"selector_label,omitempty"`
	// Previous is the value to switch back to. When it is empty, Values
	// maps the target's Baseline to the value, or ValueTemplate expands to
	// it; with none of the three the value is the Baseline itself.
	Previous string `yaml:"previous,omitempty"`
	// Values maps a baseline version to its label value.
	Values map[string]string `yaml:"values,omitempty"`
	// ValueTemplate is a text/template over {{.Service}}, {{.Version}},
	// {{.Baseline}} (and the other executor.Template keys) giving the value.
	ValueTemplate string `yaml:"value_template,omitempty"`
}

// KubernetesKind is the kind of target a KubernetesExecutor names.
type KubernetesKind int

// Kinds of target.
const (
	KubernetesNone KubernetesKind = iota
	KubernetesDeployment
	KubernetesStatefulSet
	KubernetesDaemonSet
	KubernetesBlueGreen
)

// String returns the kind's configuration key.
func (k KubernetesKind) String() string {
	switch k {
	case KubernetesDeployment:
		return "deployment"
	case KubernetesStatefulSet:
		return "statefulset"
	case KubernetesDaemonSet:
		return "daemonset"
	case KubernetesBlueGreen:
		return "blue_green"
	}
	return "none"
}

// Kind returns the kind of the configured target, or KubernetesNone when
// none or several are set.
func (c *KubernetesExecutor) Kind() KubernetesKind {
	set := c.targets()
	if len(set) != 1 {
		return KubernetesNone
	}
	return set[0]
}

// targets lists the target kinds that are set, in configuration order.
func (c *KubernetesExecutor) targets() []KubernetesKind {
	var set []KubernetesKind
	if c.Deployment != "" {
		set = append(set, KubernetesDeployment)
	}
	if c.StatefulSet != "" {
		set = append(set, KubernetesStatefulSet)
	}
	if c.DaemonSet != "" {
		set = append(set, KubernetesDaemonSet)
	}
	if c.BlueGreen != nil {
		set = append(set, KubernetesBlueGreen)
	}
	return set
}

// TargetName is the name of the configured Deployment, StatefulSet,
// DaemonSet or blue-green Service.
func (c *KubernetesExecutor) TargetName() string {
	switch c.Kind() {
	case KubernetesDeployment:
		return c.Deployment
	case KubernetesStatefulSet:
		return c.StatefulSet
	case KubernetesDaemonSet:
		return c.DaemonSet
	case KubernetesBlueGreen:
		return c.BlueGreen.Service
	}
	return ""
}

// SetDefaults fills unset fields with their defaults. Validate calls it.
func (c *KubernetesExecutor) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = model.Duration(DefaultKubernetesTimeout)
	}
	if c.BlueGreen != nil && c.BlueGreen.SelectorLabel == "" {
		c.BlueGreen.SelectorLabel = DefaultSelectorLabel
	}
}

// Validate applies the defaults and checks c: exactly one target with a
// valid object name, a valid namespace, label and annotation keys and
// values, no options that do not apply to the target, and a positive
// timeout. It reports every problem found, each as "field: message". It
// does not read Kubeconfig.
func (c *KubernetesExecutor) Validate() error {
	c.SetDefaults()
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	problems := func(field string, msgs []string) {
		for _, m := range msgs {
			add(field, "%s", m)
		}
	}

	errs = append(errs, c.Connection.Validate()...)
	set := c.targets()
	switch {
	case len(set) == 0:
		errs = append(errs, errors.New("no target, want one of deployment, statefulset, daemonset or blue_green"))
	case len(set) > 1:
		for _, k := range set[1:] {
			add(k.String(), "conflicts with %s (want exactly one target)", set[0])
		}
	}
	problems("deployment", objectNameProblems(c.Deployment))
	problems("statefulset", objectNameProblems(c.StatefulSet))
	problems("daemonset", objectNameProblems(c.DaemonSet))

	if c.ToRevision < 0 {
		add("to_revision", "must be positive (0: the previous revision), got %d", c.ToRevision)
	}
	if c.VersionLabel != "" {
		problems("version_label", qualifiedName(c.VersionLabel))
	}
	if c.VersionAnnotation != "" {
		problems("version_annotation", qualifiedName(c.VersionAnnotation))
	}
	switch {
	case c.BlueGreen != nil:
		// Reported below: none of them applies.
	case c.VersionLabel != "" && c.VersionAnnotation != "":
		add("version_annotation", "conflicts with version_label (want at most one)")
	case c.ToRevision > 0 && c.VersionLabel != "":
		add("version_label", "conflicts with to_revision (want at most one)")
	case c.ToRevision > 0 && c.VersionAnnotation != "":
		add("version_annotation", "conflicts with to_revision (want at most one)")
	}

	if bg := c.BlueGreen; bg != nil {
		if c.ToRevision != 0 {
			add("to_revision", "not used with blue_green")
		}
		if c.VersionLabel != "" {
			add("version_label", "not used with blue_green")
		}
		if c.VersionAnnotation != "" {
			add("version_annotation", "not used with blue_green")
		}
		errs = append(errs, bg.validate()...)
	}
	if c.Timeout < 0 {
		add("timeout", "must be positive, got %s", c.Timeout)
	}
	return errors.Join(errs...)
}

// validate checks a blue-green target; field names start with
// "blue_green.".
func (bg *BlueGreen) validate() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("blue_green.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if bg.Service == "" {
		add("service", "missing")
	} else {
		for _, m := range dns1035Label(bg.Service) {
			add("service", "%s", m)
		}
	}
	for _, m := range qualifiedName(bg.SelectorLabel) {
		add("selector_label", "%s", m)
	}
	var sources []string
	if bg.Previous != "" {
		sources = append(sources, "previous")
		for _, m := range labelValue(bg.Previous) {
			add("previous", "%s", m)
		}
	}
	if bg.Values != nil {
		sources = append(sources, "values")
		if len(bg.Values) == 0 {
			add("values", "empty")
		}
		for _, k := range slices.Sorted(maps.Keys(bg.Values)) {
			if strings.TrimSpace(k) == "" {
				add("values", "empty version")
			}
			field := fmt.Sprintf("values[%q]", k)
			if bg.Values[k] == "" {
				add(field, "empty label value")
			}
			for _, m := range labelValue(bg.Values[k]) {
				add(field, "%s", m)
			}
		}
	}
	if bg.ValueTemplate != "" {
		sources = append(sources, "value_template")
		if err := executor.ValidateTemplate([]string{bg.ValueTemplate}); err != nil {
			// The error names "argument 0"; say which field instead.
			_, msg, _ := strings.Cut(err.Error(), ": ")
			add("value_template", "%s", msg)
		}
	}
	if len(sources) > 1 {
		for _, s := range sources[1:] {
			add(s, "conflicts with %s (want at most one of previous, values, value_template)", sources[0])
		}
	}
	return errs
}

// objectNameProblems checks an object name, if set.
func objectNameProblems(name string) []string {
	if name == "" {
		return nil
	}
	return dns1123Subdomain(name)
}

// DefaultArgoRolloutsTimeout bounds the wait for the rolled-back Rollout.
const DefaultArgoRolloutsTimeout = 10 * time.Minute

// ArgoRolloutsExecutor configures the argo-rollouts executor:
//
//	kubeconfig: /etc/guardian/kubeconfig   # optional, as the kubernetes executor's
//	context: prod                          # optional
//	namespace: shop                        # optional
//	rollout: checkout
//	undo: true            # also restore the stable (or previous) revision's template
//	to_revision: 0        # with undo: 0 is the stable or previous revision
//	timeout: 10m
type ArgoRolloutsExecutor struct {
	// Connection says how to reach the API server and which namespace the
	// Rollout is in; its keys sit beside the others.
	Connection KubernetesConnection `yaml:",inline"`
	// Rollout names the Argo Rollouts Rollout.
	Rollout string `yaml:"rollout"`
	// Undo, besides aborting an update in progress, puts the pod template
	// of the stable revision (or, when the Rollout is fully promoted, of
	// the previous revision) back into the Rollout, as `kubectl argo
	// rollouts undo` does: the rollback then survives the abort being
	// cleared, and works after a full promotion too.
	Undo bool `yaml:"undo,omitempty"`
	// ToRevision is the revision Undo restores (0 or unset: the stable or
	// previous one).
	ToRevision int64 `yaml:"to_revision,omitempty"`
	// Timeout bounds the whole rollback, the wait included (0 or unset:
	// DefaultArgoRolloutsTimeout).
	Timeout model.Duration `yaml:"timeout,omitempty"`
}

// SetDefaults fills unset fields with their defaults. Validate calls it.
func (c *ArgoRolloutsExecutor) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = model.Duration(DefaultArgoRolloutsTimeout)
	}
}

// Validate applies the defaults and checks c: a Rollout name, a valid
// namespace, to_revision only with undo, and a positive timeout. It
// reports every problem found, each as "field: message".
func (c *ArgoRolloutsExecutor) Validate() error {
	c.SetDefaults()
	errs := c.Connection.Validate()
	if c.Rollout == "" {
		errs = append(errs, errors.New("rollout: missing"))
	}
	for _, m := range dns1123Subdomain(c.Rollout) {
		if c.Rollout != "" {
			errs = append(errs, fmt.Errorf("rollout: %s", m))
		}
	}
	switch {
	case c.ToRevision < 0:
		errs = append(errs, fmt.Errorf("to_revision: must be positive (0: the stable or previous revision), got %d", c.ToRevision))
	case c.ToRevision > 0 && !c.Undo:
		errs = append(errs, errors.New("to_revision: only used with undo: true"))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must be positive, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

// Defaults of HelmExecutor.
const (
	// DefaultHelmTimeout bounds the whole rollback, the wait for the
	// resources included.
	DefaultHelmTimeout = 10 * time.Minute
	// DefaultHelmMaxHistory is how many revisions of the release Helm
	// keeps, as `helm rollback --history-max` does by default.
	DefaultHelmMaxHistory = 10
)

// HelmExecutor configures the helm executor:
//
//	kubeconfig: /etc/guardian/kubeconfig   # optional, as the kubernetes executor's
//	context: prod                          # optional
//	namespace: shop                        # optional: the release's namespace
//	release: checkout
//	to_revision: 0           # optional: 0 is the previous deployed revision
//	match_app_version: true  # optional: the newest deployed revision whose chart appVersion is the baseline
//	wait: true               # wait until the restored resources are ready (default true)
//	timeout: 10m             # bounds the whole rollback, the wait included
//	cleanup_on_fail: false   # delete resources the rollback created when it fails
//	max_history: 10          # revisions Helm keeps (0: no limit)
type HelmExecutor struct {
	// Connection says how to reach the API server and which namespace the
	// release (and its storage Secrets) is in; its keys sit beside the
	// others.
	Connection KubernetesConnection `yaml:",inline"`

	// Release names the Helm release.
	Release string `yaml:"release"`
	// ToRevision is the revision to roll back to; 0 (unset) means the
	// newest revision before the current one that was deployed (status
	// deployed or superseded), or the one MatchAppVersion picks.
	ToRevision int `yaml:"to_revision,omitempty"`
	// MatchAppVersion, when true, picks the newest deployed revision before
	// the current one whose chart's appVersion is the target's Baseline, as
	// the kubernetes executor's version_label does; and refuses to roll back
	// a release whose current appVersion is neither the incident's Version
	// nor the Baseline.
	MatchAppVersion bool `yaml:"match_app_version,omitempty"`
	// Wait, true unless set to false, waits until the restored resources
	// are ready, as `helm rollback --wait` does; resources not ready within
	// Timeout fail the rollback and mark the new revision failed.
	Wait *bool `yaml:"wait,omitempty"`
	// Timeout bounds the whole rollback, the wait included (0 or unset:
	// DefaultHelmTimeout).
	Timeout model.Duration `yaml:"timeout,omitempty"`
	// CleanupOnFail deletes the resources the rollback created when
	// applying them fails, as `helm rollback --cleanup-on-fail` does.
	CleanupOnFail bool `yaml:"cleanup_on_fail,omitempty"`
	// MaxHistory limits the revisions Helm keeps of the release (unset:
	// DefaultHelmMaxHistory; 0: no limit), as `helm rollback --history-max`.
	MaxHistory *int `yaml:"max_history,omitempty"`
}

// SetDefaults fills unset fields with their defaults. Validate calls it.
func (c *HelmExecutor) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = model.Duration(DefaultHelmTimeout)
	}
	if c.Wait == nil {
		c.Wait = new(true)
	}
	if c.MaxHistory == nil {
		c.MaxHistory = new(DefaultHelmMaxHistory)
	}
}

// Waits reports whether the rollback waits for the resources (Wait, true
// when unset).
func (c *HelmExecutor) Waits() bool { return c.Wait == nil || *c.Wait }

// Validate applies the defaults and checks c: a valid release name and
// namespace, a revision or an app-version match but not both, a positive
// timeout and history limit. It reports every problem found, each as
// "field: message". It does not read Kubeconfig.
func (c *HelmExecutor) Validate() error {
	c.SetDefaults()
	errs := c.Connection.Validate()
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch {
	case c.Release == "":
		add("release", "missing")
	case !helmReleaseName(c.Release):
		add("release", "invalid Helm release name %q: want at most %d lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
			c.Release, maxHelmReleaseName)
	}
	switch {
	case c.ToRevision < 0:
		add("to_revision", "must be positive (0: the previous deployed revision), got %d", c.ToRevision)
	case c.ToRevision > 0 && c.MatchAppVersion:
		add("match_app_version", "conflicts with to_revision (want at most one)")
	}
	if c.Timeout < 0 {
		add("timeout", "must be positive, got %s", c.Timeout)
	}
	if *c.MaxHistory < 0 {
		add("max_history", "must be positive (0: no limit), got %d", *c.MaxHistory)
	}
	return errors.Join(errs...)
}
