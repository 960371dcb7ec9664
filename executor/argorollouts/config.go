package argorollouts

import "github.com/rollback-guardian/guardian/config"

// Config is an argo-rollouts executor's configuration. It is
// config.ArgoRolloutsExecutor, which package config holds (with its YAML
// keys, defaults and validation) so that loading a configuration links
// neither this executor nor client-go; the alias keeps this package's code
// and tests in its own terms.
type Config = config.ArgoRolloutsExecutor

// DefaultTimeout bounds the wait for the rolled-back Rollout.
const DefaultTimeout = config.DefaultArgoRolloutsTimeout
