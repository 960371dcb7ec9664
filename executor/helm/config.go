package helm

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"helm.sh/helm/v3/pkg/chartutil"

	"github.com/rollback-guardian/guardian/executor/kubernetes"
)

// Defaults of Config.
const (
	// DefaultTimeout bounds the whole rollback, the wait for the resources
	// included.
	DefaultTimeout = 10 * time.Minute
	// DefaultMaxHistory is how many revisions of the release Helm keeps, as
	// `helm rollback --history-max` does by default.
	DefaultMaxHistory = 10
	// maxReleaseName is the longest release name Helm accepts.
	maxReleaseName = 53
)

// Config is a helm executor's configuration:
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
type Config struct {
	// Connection says how to reach the API server and which namespace the
	// release (and its storage Secrets) is in.
	kubernetes.Connection `yaml:",inline"`

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
	// DefaultTimeout).
	Timeout model.Duration `yaml:"timeout,omitempty"`
	// CleanupOnFail deletes the resources the rollback created when
	// applying them fails, as `helm rollback --cleanup-on-fail` does.
	CleanupOnFail bool `yaml:"cleanup_on_fail,omitempty"`
	// MaxHistory limits the revisions Helm keeps of the release (unset:
	// DefaultMaxHistory; 0: no limit), as `helm rollback --history-max`.
	MaxHistory *int `yaml:"max_history,omitempty"`
}

// SetDefaults fills unset fields with their defaults. Validate calls it.
func (c *Config) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = model.Duration(DefaultTimeout)
	}
	if c.Wait == nil {
		c.Wait = new(true)
	}
	if c.MaxHistory == nil {
		c.MaxHistory = new(DefaultMaxHistory)
	}
}

// Waits reports whether the rollback waits for the resources (Wait, true
// when unset).
func (c *Config) Waits() bool { return c.Wait == nil || *c.Wait }

// Validate applies the defaults and checks c: a valid release name and
// namespace, a revision or an app-version match but not both, a positive
// timeout and history limit. It reports every problem found, each as
// "field: message". It does not read Kubeconfig.
func (c *Config) Validate() error {
	c.SetDefaults()
	errs := c.Connection.Validate()
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch {
	case c.Release == "":
		add("release", "missing")
	case chartutil.ValidateReleaseName(c.Release) != nil:
		add("release", "invalid Helm release name %q: want at most %d lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
			c.Release, maxReleaseName)
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
