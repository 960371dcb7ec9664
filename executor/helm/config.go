package helm

import "github.com/rollback-guardian/guardian/config"

// Config is a helm executor's configuration. It is config.HelmExecutor,
// which package config holds (with its YAML keys, defaults and validation)
// so that loading a configuration links neither this executor nor the Helm
// SDK; the alias keeps this package's code and tests in its own terms.
type Config = config.HelmExecutor

// Defaults of Config.
const (
	// DefaultTimeout bounds the whole rollback, the wait for the resources
	// included.
	DefaultTimeout = config.DefaultHelmTimeout
	// DefaultMaxHistory is how many revisions of the release Helm keeps, as
	// `helm rollback --history-max` does by default.
	DefaultMaxHistory = config.DefaultHelmMaxHistory
)
