package webhook

import "github.com/rollback-guardian/guardian/config"

// Config is a webhook executor's configuration. It is
// config.WebhookExecutor, which package config holds (with its YAML keys,
// defaults and validation) so that loading a configuration links no
// executor; the alias keeps this package's code and tests in its own terms.
type Config = config.WebhookExecutor

// Defaults of Config.
const (
	DefaultTimeout     = config.DefaultWebhookTimeout
	DefaultMaxAttempts = config.DefaultWebhookMaxAttempts
)
