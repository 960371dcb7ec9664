package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Warning is a setting in a valid configuration that is probably a
// mistake but may be intended, located like a FieldError. A setting that
// can never work is an error instead.
type Warning struct {
	// Path is the field path, such as "services[0].triggers[1].above".
	Path string
	// Line is the 1-based line in the file; 0 when unknown.
	Line int
	// Msg says what is suspicious and what to do instead.
	Msg string
}

// String formats the warning as `path: msg (line N)`, as FieldError does.
func (w Warning) String() string {
	e := FieldError(w)
	return e.Error()
}

func sortWarnings(ws []Warning) {
	slices.SortStableFunc(ws, func(a, b Warning) int { return cmp.Compare(a.Line, b.Line) })
}

// shellWarnings warns about a command whose shell script is a template:
// the shell interprets the substituted values.
func (v *validator) shellWarnings(path string, argv []string) {
	i := ShellScript(argv)
	if i < 0 || !strings.Contains(argv[i], "{{") {
		return
	}
	v.warnf(fmt.Sprintf("%s[%d]", path, i), "the shell interprets this template, so a value could change the script; "+
		"Guardian passes each value there as a quoted reference to its GUARDIAN_* variable, but pass them as arguments instead: "+
		`[sh, -c, 'rollback "$1"', sh, '{{.Version}}']`)
}
