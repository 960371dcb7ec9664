package argorollouts

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/rollback-guardian/guardian/executor/kubernetes"
)

// DefaultTimeout bounds the wait for the rolled-back Rollout.
const DefaultTimeout = 10 * time.Minute

// Config is an argo-rollouts executor's configuration:
//
//	kubeconfig: /etc/guardian/kubeconfig   # optional, as the kubernetes executor's
//	context: prod                          # optional
//	namespace: shop                        # optional
//	rollout: checkout
//	undo: true            # also restore the stable (or previous) revision's template
//	to_revision: 0        # with undo: 0 is the stable or previous revision
//	timeout: 10m
type Config struct {
	// Connection says how to reach the API server and which namespace the
	// Rollout is in.
	kubernetes.Connection `yaml:",inline"`
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
	// DefaultTimeout).
	Timeout model.Duration `yaml:"timeout,omitempty"`
}

// SetDefaults fills unset fields with their defaults. Validate calls it.
func (c *Config) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = model.Duration(DefaultTimeout)
	}
}

// Validate applies the defaults and checks c: a Rollout name, a valid
// namespace, to_revision only with undo, and a positive timeout. It
// reports every problem found, each as "field: message".
func (c *Config) Validate() error {
	c.SetDefaults()
	errs := c.Connection.Validate()
	if c.Rollout == "" {
		errs = append(errs, errors.New("rollout: missing"))
	}
	for _, m := range validation.IsDNS1123Subdomain(c.Rollout) {
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
