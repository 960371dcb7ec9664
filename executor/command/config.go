package command

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

// DefaultTimeout bounds a command whose timeout is not set.
const DefaultTimeout = 5 * time.Minute

// Config is a command executor's configuration. In YAML it is either a
// mapping:
//
//	command: ["./rollback.sh", "{{.Service}}", "{{.Baseline}}"]
//	env: { KUBECONFIG: /etc/guardian/kubeconfig }
//	dir: /srv/deploy
//	timeout: 10m
//
// or, as a shorthand, just the command list.
type Config struct {
	// Command is the program and its arguments, run without a shell.
	// Arguments after the program are text/templates over {{.Incident}},
	// {{.Service}}, {{.Version}}, {{.Baseline}}, {{.Step}} and
	// {{.IdempotencyKey}}; each stays one argument whatever the values
	// contain. The program itself is not templated; a bare name is looked up
	// in Guardian's PATH, a relative path is relative to Dir.
	Command []string `yaml:"command"`
	// Env is added to the command's environment, which otherwise holds only
	// PATH and HOME inherited from Guardian and the GUARDIAN_* variables.
	// Names starting with GUARDIAN_ are reserved.
	Env map[string]string `yaml:"env,omitempty"`
	// Dir is the working directory (default: Guardian's). The config loader
	// should resolve a relative Dir against the config file's directory.
	Dir string `yaml:"dir,omitempty"`
	// Timeout bounds the command (0 or unset: DefaultTimeout). On timeout
	// its whole process group is killed.
	Timeout model.Duration `yaml:"timeout,omitempty"`
}

// plain has Config's fields without its unmarshaler.
type plain Config

// UnmarshalYAML accepts the mapping form or a list as a shorthand for
// {command: list}. It is the yaml.v2-style unmarshaler, which yaml.v3 still
// honours, so a strict decoder that walks mappings itself keeps doing so.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	var argv []string
	if err := unmarshal(&argv); err == nil {
		*c = Config{Command: argv}
		return nil
	}
	return unmarshal((*plain)(c))
}

// SetDefaults fills unset fields with their defaults. Validate calls it.
func (c *Config) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = model.Duration(DefaultTimeout)
	}
}

// Validate applies the defaults and checks c: a non-empty program, argument
// templates that parse and use only known keys, valid environment names,
// and a positive timeout. It reports every problem found.
func (c *Config) Validate() error {
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
