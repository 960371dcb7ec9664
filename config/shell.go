package config

import (
	"path/filepath"
	"slices"
	"strings"
)

// shells are the programs that interpret a -c argument as a script.
var shells = []string{"sh", "bash", "dash", "ash", "ksh", "mksh", "zsh", "busybox"}

// ShellScript returns the index in argv of the script a shell interprets,
// as in ["sh", "-c", "echo {{.Version}}"] or ["bash", "-euc", "..."], or -1
// when argv does not run a shell script. A template in that argument is
// interpreted by the shell, so the command executor quotes the values it
// substitutes there, and the config check warns about it.
func ShellScript(argv []string) int {
	if len(argv) == 0 {
		return -1
	}
	args := argv[1:]
	off := 1
	if prog := filepath.Base(argv[0]); prog == "env" && len(args) > 0 {
		// env sh -c '...'
		return offset(1, ShellScript(args))
	} else if prog == "busybox" {
		if len(args) == 0 || !slices.Contains(shells, args[0]) {
			return -1
		}
		args, off = args[1:], 2
	} else if !slices.Contains(shells, prog) {
		return -1
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-o" || a == "+o" { // set -o option
			i++
			continue
		}
		if a == "--" || !strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "+") {
			return -1
		}
		if a[0] == '-' && !strings.HasPrefix(a, "--") && strings.Contains(a[1:], "c") {
			if i+1 < len(args) {
				return off + i + 1
			}
			return -1
		}
	}
	return -1
}

func offset(by, i int) int {
	if i < 0 {
		return i
	}
	return i + by
}
