package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
)

// configFlag registers --config.file, the configuration file's path, as
// Prometheus and Alertmanager name it; --config is the same flag under its
// earlier name.
func configFlag(cmd *cobra.Command, p *string, usage string) {
	cmd.Flags().StringVar(p, "config.file", "config.yaml", usage)
	cmd.Flags().SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "config" {
			name = "config.file"
		}
		return pflag.NormalizedName(name)
	})
}

// checkLogFlags validates the logging flags every command takes, so that a
// bad --log.level is refused whatever the command.
func checkLogFlags(lf *logFlags) error {
	if _, err := zapcore.ParseLevel(lf.level); err != nil {
		return fmt.Errorf("--log.level: unknown level %q: want debug, info, warn or error", lf.level)
	}
	if lf.format != "console" && lf.format != "json" {
		return fmt.Errorf("--log.format: want console or json, got %q", lf.format)
	}
	return nil
}

// flagError turns a flag parsing error into one that says what to do: the
// flag meant when a name is close to one the command has, and where the
// usage is.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		if s := suggestFlag(cmd, name); s != "" {
			msg += fmt.Sprintf(" (did you mean --%s?)", s)
		}
	}
	return fmt.Errorf("%s\nSee '%s --help' for its flags", msg, cmd.CommandPath())
}

// suggestFlag returns the name of cmd's flag closest to name, if one is
// close enough to be a typo of it.
func suggestFlag(cmd *cobra.Command, name string) string {
	best, bestD := "", max(2, len(name)/3)+1
	visit := func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		d := editDistance(name, f.Name)
		if first, _, ok := strings.Cut(f.Name, "."); ok {
			// --conifg for --config.file (--config is its alias).
			d = min(d, editDistance(name, first))
		}
		if d < bestD {
			best, bestD = f.Name, d
		}
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// args checks a command's positional arguments, between lo and hi (hi < 0:
// no limit), and says what is missing or extra with the command's usage
// line, instead of cobra's "requires at least 1 arg(s), only received 0".
func args(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		// "check", "state check": run prefixes "guardian: ".
		path := strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
		switch {
		case len(a) < lo:
			what := strings.TrimSpace(strings.TrimPrefix(cmd.Use, cmd.Name()))
			if w, _, ok := strings.Cut(what, " "); ok {
				what = w
			}
			return fmt.Errorf("%s needs %s\nUsage: %s", path, strings.TrimSuffix(what, "..."), cmd.UseLine())
		case hi >= 0 && len(a) > hi:
			if hi == 0 {
				return fmt.Errorf("%s takes no arguments, got %q\nUsage: %s", path, a, cmd.UseLine())
			}
			return fmt.Errorf("%s takes %d argument(s), got %d: %q\nUsage: %s", path, hi, len(a), a, cmd.UseLine())
		}
		return nil
	}
}
