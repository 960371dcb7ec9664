package command

import (
	"fmt"
	"strconv"
	"strings"
	"text/template"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
)

// A shell script's values. When the command runs a shell script (sh -c
// '...', see config.ShellScript), the values a template substitutes into the
// script would be read by the shell as code: a version "1.0;touch X" would
// run touch. So in that one argument a value is not pasted in: it becomes a
// quoted reference to the GUARDIAN_* variable that holds it, which the shell
// expands without ever reading the value as code:
//
//	sh -c 'echo {{.Version}}'      runs  echo "${GUARDIAN_VERSION}"
//	sh -c 'echo "v={{.Version}}"'  runs  echo "v=${GUARDIAN_VERSION}"
//	sh -c "echo 'v={{.Version}}'"  runs  echo 'v='"${GUARDIAN_VERSION}"''
//
// The reference is quoted for where it lands (outside quotes, inside double
// quotes, inside single quotes), so the script sees the value exactly; and
// should the quoting be misjudged, the shell still only expands a variable,
// at worst splitting it into words, never running it. Template logic sees
// the values themselves ({{if eq .Step "database"}} works). What the shell
// does with the expanded value is the script's business: eval, a nested
// sh -c, ssh or bash arithmetic ($((...)), [[ -eq ]]) read it as code again.
// {{.Incident}} is a number and is pasted in.

// The value types of a shell script's template: each is its value for
// template logic and prints as the marker of its variable.
type (
	shellService        string
	shellVersion        string
	shellBaseline       string
	shellStep           string
	shellIdempotencyKey string
)

// String returns the marker of the variable holding the value.
func (shellService) String() string { return marker("GUARDIAN_SERVICE") }

// String returns the marker of the variable holding the value.
func (shellVersion) String() string { return marker("GUARDIAN_VERSION") }

// String returns the marker of the variable holding the value.
func (shellBaseline) String() string { return marker("GUARDIAN_BASELINE") }

// String returns the marker of the variable holding the value.
func (shellStep) String() string { return marker("GUARDIAN_STEP") }

// String returns the marker of the variable holding the value.
func (shellIdempotencyKey) String() string { return marker("GUARDIAN_IDEMPOTENCY_KEY") }

// marker stands for a variable in a rendered script. An argument cannot hold
// NUL, so no script text is mistaken for a marker.
func marker(name string) string { return "\x00" + name + "\x00" }

// shellTemplate renders the script argument: values become references to
// their GUARDIAN_* variables, quoted for their place in the script.
func shellTemplate(script string, t executor.Target) (string, error) {
	if !strings.Contains(script, "{{") {
		return script, nil
	}
	tmpl, err := template.New("script").Option("missingkey=error").Parse(script)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	err = tmpl.Execute(&b, map[string]any{
		"Incident":       t.Incident,
		"Service":        shellService(t.Service),
		"Version":        shellVersion(t.Version),
		"Baseline":       shellBaseline(t.Baseline),
		"Step":           shellStep(t.Step),
		"IdempotencyKey": shellIdempotencyKey(t.IdempotencyKey),
	})
	if err != nil {
		return "", err
	}
	return quoteMarkers(b.String()), nil
}

// sampleTarget fills every template key, so that New finds a script
// template that cannot be expanded.
var sampleTarget = executor.Target{
	Incident: 1, Service: "service", Version: "v2", Baseline: "v1",
	Step: executor.StepApplication, IdempotencyKey: executor.IdempotencyKey(1, executor.StepApplication),
}

// templateArgs expands the arguments after the program (argv[1:]) for t:
// the shell script, if argv runs one, with shellTemplate, the others with
// executor.Template, each value as it is.
func templateArgs(argv []string, t executor.Target) ([]string, error) {
	args, err := executor.Template(argv[1:], t)
	if err != nil {
		return nil, err
	}
	if i := config.ShellScript(argv); i > 0 {
		s, err := shellTemplate(argv[i], t)
		if err != nil {
			return nil, fmt.Errorf("argument %d %q: %w", i-1, argv[i], err)
		}
		args[i-1] = s
	}
	return args, nil
}

// shell quoting contexts.
type quoting int

const (
	unquoted quoting = iota
	singleQuoted
	doubleQuoted
	ansiCQuoted // bash's $'...'
	substitution
	backquoted
)

// quoteMarkers replaces each marker in script with a reference to its
// variable, quoted for the context the marker is in. It follows POSIX sh
// quoting: backslashes, single and double quotes, bash's $'...', and
// command substitutions $(...) and `...`, which start afresh outside quotes.
func quoteMarkers(script string) string {
	var b strings.Builder
	type frame struct {
		q     quoting
		depth int // open parentheses in a $(...)
	}
	stack := []frame{{q: unquoted}}
	top := func() *frame { return &stack[len(stack)-1] }
	pop := func() {
		if len(stack) > 1 {
			stack = stack[:len(stack)-1]
		}
	}
	for i := 0; i < len(script); i++ {
		c := script[i]
		if c == 0 {
			if end := strings.IndexByte(script[i+1:], 0); end >= 0 {
				b.WriteString(reference(script[i+1:i+1+end], top().q))
				i += end + 1
				continue
			}
		}
		if c == '\\' && i+1 < len(script) && script[i+1] == 0 && top().q != singleQuoted {
			// A backslash before a value: the reference quotes it already.
			continue
		}
		f := top()
		if c == '#' && (f.q == unquoted || f.q == substitution || f.q == backquoted) && wordStart(script, i) {
			// A comment, to the end of the line.
			end := strings.IndexByte(script[i:], '\n')
			if end < 0 {
				end = len(script) - i
			}
			b.WriteString(strings.ReplaceAll(script[i:i+end], "\x00", ""))
			i += end - 1
			continue
		}
		b.WriteByte(c)
		switch f.q {
		case singleQuoted:
			if c == '\'' {
				pop()
			}
			continue
		case ansiCQuoted:
			if c == '\\' && i+1 < len(script) && script[i+1] != 0 {
				i++
				b.WriteByte(script[i])
			} else if c == '\'' {
				pop()
			}
			continue
		}
		switch {
		case c == '\\' && i+1 < len(script) && script[i+1] != 0:
			i++
			b.WriteByte(script[i])
		case c == '"' && f.q == doubleQuoted:
			pop()
		case c == '`' && f.q == backquoted:
			pop()
		case c == '`':
			stack = append(stack, frame{q: backquoted})
		case c == '$' && i+1 < len(script) && script[i+1] == '(':
			i++
			b.WriteByte('(')
			stack = append(stack, frame{q: substitution})
		case f.q == doubleQuoted:
			// Only \, ", ` and $( mean something inside double quotes.
		case c == '"':
			stack = append(stack, frame{q: doubleQuoted})
		case c == '\'':
			stack = append(stack, frame{q: singleQuoted})
		case c == '$' && i+1 < len(script) && script[i+1] == '\'':
			i++
			b.WriteByte('\'')
			stack = append(stack, frame{q: ansiCQuoted})
		case c == '(' && f.q == substitution:
			f.depth++
		case c == ')' && f.q == substitution:
			if f.depth == 0 {
				pop()
			} else {
				f.depth--
			}
		}
	}
	return b.String()
}

// wordStart reports whether script[i] starts a word.
func wordStart(script string, i int) bool {
	return i == 0 || strings.IndexByte(" \t\n;&|()", script[i-1]) >= 0
}

// reference is the shell text that expands variable name to its exact value
// in context q.
func reference(name string, q quoting) string {
	ref := "${" + name + "}"
	switch q {
	case doubleQuoted:
		return ref
	case singleQuoted:
		return `'"` + ref + `"'`
	case ansiCQuoted:
		return `'"` + ref + `"$'`
	}
	return strconv.Quote(ref)
}
