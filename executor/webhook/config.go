package webhook

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/sign"
)

// Defaults of Config.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultMaxAttempts = 3
)

// Config is a webhook executor's configuration:
//
//	url: https://deploy.example.com/hooks/rollback
//	secret_file: /etc/guardian/rollback-hmac
//	timeout: 30s
//	idempotent: true
//	max_attempts: 3
type Config struct {
	// URL receives the rollback request (http or https).
	URL string `yaml:"url"`
	// SecretFile holds the signing secret (optional): raw bytes, or
	// "whsec_" and base64 as Standard Webhooks writes them. The config
	// loader reads it into Secret and resolves a relative path against the
	// config file's directory.
	SecretFile string `yaml:"secret_file,omitempty"`
	// Secret is SecretFile's content with surrounding white space removed,
	// filled by the config loader. Empty means unsigned requests.
	Secret commoncfg.Secret `yaml:"-"`
	// Timeout bounds each attempt, answer included (0 or unset:
	// DefaultTimeout).
	Timeout model.Duration `yaml:"timeout,omitempty"`
	// Idempotent declares that the receiver dedupes on the idempotency key
	// (the webhook-id and Idempotency-Key headers), so Guardian may retry.
	// Without it the receiver is called exactly once per Rollback.
	Idempotent bool `yaml:"idempotent,omitempty"`
	// MaxAttempts bounds the calls per Rollback when Idempotent (0 or
	// unset: DefaultMaxAttempts). It is ignored otherwise.
	MaxAttempts int `yaml:"max_attempts,omitempty"`
}

// SetDefaults fills unset fields with their defaults. Validate calls it.
func (c *Config) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = model.Duration(DefaultTimeout)
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
}

// Validate applies the defaults and checks c: an absolute http or https
// URL, a usable secret when one is set, a positive timeout and attempt
// count. It reports every problem found. It does not read SecretFile.
func (c *Config) Validate() error {
	c.SetDefaults()
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("url: missing"))
	} else if u, err := url.Parse(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("url: %q is not an absolute http or https URL", c.URL))
	}
	if c.Secret != "" {
		if _, err := sign.Key(string(c.Secret)); err != nil {
			errs = append(errs, fmt.Errorf("secret_file: %w", err))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must be positive, got %s", c.Timeout))
	}
	if c.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("max_attempts: must be positive, got %d", c.MaxAttempts))
	}
	return errors.Join(errs...)
}
