package kubernetes

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/rollback-guardian/guardian/executor"
)

// Defaults of Config.
const (
	// DefaultTimeout bounds the wait for the rolled-back workload.
	DefaultTimeout = 10 * time.Minute
	// DefaultSelectorLabel is the Service selector label a blue-green switch
	// changes.
	DefaultSelectorLabel = "color"
)

// Config is a kubernetes executor's configuration. It names exactly one
// target: a Deployment, a StatefulSet, a DaemonSet or a blue-green Service.
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
type Config struct {
	// Connection says how to reach the API server and which namespace the
	// target is in.
	Connection `yaml:",inline"`

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
	// (0 or unset: DefaultTimeout).
	Timeout model.Duration `yaml:"timeout,omitempty"`
}

// Connection says how to reach the API server: the keys kubeconfig,
// context and namespace, shared by the Kubernetes-based executors.
type Connection struct {
	// Kubeconfig is the path of a kubeconfig file. Empty means the
	// in-cluster configuration when Guardian runs in a pod, otherwise the
	// files named by $KUBECONFIG or ~/.kube/config. The config loader
	// should resolve a relative path against the config file's directory.
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
	// Context selects a kubeconfig context instead of the current one.
	Context string `yaml:"context,omitempty"`
	// Namespace of the target; empty means the kubeconfig context's
	// namespace, the pod's own namespace in-cluster, or "default".
	Namespace string `yaml:"namespace,omitempty"`
}

// Validate checks the namespace, as "namespace: message" errors.
func (c *Connection) Validate() []error {
	var errs []error
	if c.Namespace != "" {
		for _, m := range validation.IsDNS1123Label(c.Namespace) {
			errs = append(errs, fmt.Errorf("namespace: %s", m))
		}
	}
	return errs
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

// Kind is the kind of workload a Config targets.
type Kind int

// Kinds of target.
const (
	KindNone Kind = iota
	KindDeployment
	KindStatefulSet
	KindDaemonSet
	KindBlueGreen
)

// String returns the kind's configuration key.
func (k Kind) String() string {
	switch k {
	case KindDeployment:
		return "deployment"
	case KindStatefulSet:
		return "statefulset"
	case KindDaemonSet:
		return "daemonset"
	case KindBlueGreen:
		return "blue_green"
	}
	return "none"
}

// Kind returns the kind of the configured target, or KindNone when none
// or several are set.
func (c *Config) Kind() Kind {
	set := c.targets()
	if len(set) != 1 {
		return KindNone
	}
	return set[0]
}

// targets lists the target kinds that are set, in configuration order.
func (c *Config) targets() []Kind {
	var set []Kind
	if c.Deployment != "" {
		set = append(set, KindDeployment)
	}
	if c.StatefulSet != "" {
		set = append(set, KindStatefulSet)
	}
	if c.DaemonSet != "" {
		set = append(set, KindDaemonSet)
	}
	if c.BlueGreen != nil {
		set = append(set, KindBlueGreen)
	}
	return set
}

// TargetName is the name of the configured Deployment, StatefulSet,
// DaemonSet or blue-green Service.
func (c *Config) TargetName() string {
	switch c.Kind() {
	case KindDeployment:
		return c.Deployment
	case KindStatefulSet:
		return c.StatefulSet
	case KindDaemonSet:
		return c.DaemonSet
	case KindBlueGreen:
		return c.BlueGreen.Service
	}
	return ""
}

// SetDefaults fills unset fields with their defaults. Validate calls it.
func (c *Config) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = model.Duration(DefaultTimeout)
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
func (c *Config) Validate() error {
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
	problems("deployment", nameProblems(c.Deployment))
	problems("statefulset", nameProblems(c.StatefulSet))
	problems("daemonset", nameProblems(c.DaemonSet))

	if c.ToRevision < 0 {
		add("to_revision", "must be positive (0: the previous revision), got %d", c.ToRevision)
	}
	if c.VersionLabel != "" {
		problems("version_label", validation.IsQualifiedName(c.VersionLabel))
	}
	if c.VersionAnnotation != "" {
		problems("version_annotation", validation.IsQualifiedName(c.VersionAnnotation))
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
		for _, m := range validation.IsDNS1035Label(bg.Service) {
			add("service", "%s", m)
		}
	}
	for _, m := range validation.IsQualifiedName(bg.SelectorLabel) {
		add("selector_label", "%s", m)
	}
	var sources []string
	if bg.Previous != "" {
		sources = append(sources, "previous")
		for _, m := range validation.IsValidLabelValue(bg.Previous) {
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
			for _, m := range validation.IsValidLabelValue(bg.Values[k]) {
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

// nameProblems checks an object name, if set.
func nameProblems(name string) []string {
	if name == "" {
		return nil
	}
	return validation.IsDNS1123Subdomain(name)
}
