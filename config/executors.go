package config

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/sign"
)

// The executors' configurations live here as plain structs, as
// Alertmanager's config package holds every notifier's: loading and
// checking a configuration links no executor and no SDK. Each Validate
// applies the executor's defaults and reports every problem as a
// "field: message" error; the loader gives each one its field path and
// line. The executor packages (executor/command, executor/webhook, ...)
// take these types as their Config.

// DefaultCommandTimeout bounds a command whose timeout is not set.
const DefaultCommandTimeout = 5 * time.Minute

// CommandExecutor configures the command executor. In YAML it is either a
// mapping:
//
//	command: ["./rollback.sh", "{{.Service}}", "{{.Baseline}}"]
//	env: { KUBECONFIG: /etc/guardian/kubeconfig }
//	dir: /srv/deploy
//	timeout: 10m
//
// or, as a shorthand, just the command list.
type CommandExecutor struct {
	// Command is the program and its arguments, run without a shell.
	// Arguments after the program are text/templates over {{.Incident}},
	// {{.Service}}, {{.Version}}, {{.Baseline}}, {{.Step}} and
	// {{.IdempotencyKey}}; each stays one argument whatever the values
	// contain. In the script a shell interprets (sh -c SCRIPT, see
	// ShellScript) each template becomes a quoted reference to its
	// GUARDIAN_* variable, so the shell never reads a value as code; the
	// config check warns about a template
	// there: pass the values as arguments instead, as in
	// [sh, -c, 'rollback "$1"', sh, '{{.Version}}']. The program itself
	// is not templated; a bare name is looked up in Guardian's PATH, a
	// relative path is relative to Dir. A program given as a path must be
	// an executable file when the configuration is loaded.
	Command []string `yaml:"command"`
	// Env is added to the command's environment, which otherwise holds only
	// PATH and HOME inherited from Guardian and the GUARDIAN_* variables.
	// Names starting with GUARDIAN_ are reserved.
	Env map[string]string `yaml:"env,omitempty"`
	// Dir is the working directory (default: Guardian's). The config loader
	// resolves a relative Dir against the config file's directory, and
	// checks that it is a directory.
	Dir string `yaml:"dir,omitempty"`
	// Timeout bounds the command (0 or unset: DefaultCommandTimeout). On
	// timeout its whole process group is killed.
	Timeout model.Duration `yaml:"timeout,omitempty"`
}

// plainCommand has CommandExecutor's fields without its unmarshaler.
type plainCommand CommandExecutor

// UnmarshalYAML accepts the mapping form or a list as a shorthand for
// {command: list}. It is the yaml.v2-style unmarshaler, which yaml.v3 still
// honours, so a strict decoder that walks mappings itself keeps doing so.
func (c *CommandExecutor) UnmarshalYAML(unmarshal func(any) error) error {
	var argv []string
	if err := unmarshal(&argv); err == nil {
		*c = CommandExecutor{Command: argv}
		return nil
	}
	return unmarshal((*plainCommand)(c))
}

// SetDefaults fills unset fields with their defaults. Validate calls it.
func (c *CommandExecutor) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = model.Duration(DefaultCommandTimeout)
	}
}

// Validate applies the defaults and checks c: a non-empty program, argument
// templates that parse and use only known keys, valid environment names,
// and a positive timeout. It reports every problem found.
func (c *CommandExecutor) Validate() error {
	c.SetDefaults()
	var errs []error
	switch {
	case len(c.Command) == 0:
		errs = append(errs, errors.New("command: must name a program"))
	case strings.TrimSpace(c.Command[0]) == "":
		errs = append(errs, errors.New("command[0]: the program is empty"))
	default:
		if strings.Contains(c.Command[0], "{{") {
			errs = append(errs, fmt.Errorf("command[0]: the program %q is not templated", c.Command[0]))
		}
		if i := envProgram(c.Command); i > 0 && strings.Contains(c.Command[i], "{{") {
			errs = append(errs, fmt.Errorf("command[%d]: the program %q that env runs is not templated", i, c.Command[i]))
		}
		for i, arg := range c.Command[1:] {
			if err := executor.ValidateTemplate([]string{arg}); err != nil {
				errs = append(errs, fmt.Errorf("command[%d]: %w", i+1, errors.Unwrap(err)))
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		v := c.Env[k]
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			errs = append(errs, fmt.Errorf("env: invalid variable name %q", k))
		case strings.HasPrefix(k, "GUARDIAN_"):
			errs = append(errs, fmt.Errorf("env: %s: names starting with GUARDIAN_ are reserved", k))
		case strings.Contains(v, "\x00"):
			errs = append(errs, fmt.Errorf("env: %s: value contains a NUL byte", k))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must be positive, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

// envProgram returns the index in argv of the program that env runs, as in
// ["env", "-i", "A=b", "./rollback.sh"], or -1 when argv[0] is not env.
func envProgram(argv []string) int {
	if len(argv) == 0 || filepath.Base(argv[0]) != "env" {
		return -1
	}
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "-u" || a == "-C" || a == "-S" || a == "--unset" || a == "--chdir" || a == "--split-string":
			i++ // the option's value
		case strings.HasPrefix(a, "-") || strings.Contains(a, "="):
		default:
			return i
		}
	}
	return -1
}

// Defaults of WebhookExecutor.
const (
	DefaultWebhookTimeout     = 30 * time.Second
	DefaultWebhookMaxAttempts = 3
)

// WebhookExecutor configures the webhook executor:
//
//	url: https://deploy.example.com/hooks/rollback
//	secret_file: /etc/guardian/rollback-hmac
//	timeout: 30s
//	idempotent: true
//	max_attempts: 3
type WebhookExecutor struct {
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
	// DefaultWebhookTimeout).
	Timeout model.Duration `yaml:"timeout,omitempty"`
	// Idempotent declares that the receiver dedupes on the idempotency key
	// (the webhook-id and Idempotency-Key headers), so Guardian may retry.
	// Without it the receiver is called exactly once per Rollback.
	Idempotent bool `yaml:"idempotent,omitempty"`
	// MaxAttempts bounds the calls per Rollback when Idempotent (0 or
	// unset: DefaultWebhookMaxAttempts). It is ignored otherwise.
	MaxAttempts int `yaml:"max_attempts,omitempty"`
}

// SetDefaults fills unset fields with their defaults. Validate calls it.
func (c *WebhookExecutor) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = model.Duration(DefaultWebhookTimeout)
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultWebhookMaxAttempts
	}
}

// Validate applies the defaults and checks c: an absolute http or https
// URL, a usable secret when one is set, a positive timeout and attempt
// count. It reports every problem found. It does not read SecretFile.
func (c *WebhookExecutor) Validate() error {
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
