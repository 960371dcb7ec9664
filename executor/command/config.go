package command

import "github.com/rollback-guardian/guardian/config"

// Config is a command executor's configuration. It is
// config.CommandExecutor, which package config holds (with its YAML keys,
// defaults and validation) so that loading a configuration links no
// executor; the alias keeps this package's code and tests in its own terms.
type Config = config.CommandExecutor

// DefaultTimeout bounds a command whose timeout is not set.
const DefaultTimeout = config.DefaultCommandTimeout
