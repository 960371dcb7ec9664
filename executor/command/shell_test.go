package command_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rollback-guardian/guardian/executor/command"
)

// hostileVersions would each run touch X if a shell read them as code.
var hostileVersions = []struct{ name, version string }{
	{"semicolon", "1.0;touch X"},
	{"command substitution", "$(touch X)"},
	{"backticks", "`touch X`"},
	{"newline", "1.0\ntouch X"},
	{"single quote", "1.0'; touch X; echo '"},
	{"double quote", `1.0"; touch X; echo "`},
	{"backslashes and a glob", `\'\"\\ * ?`},
	{"ANSI-C quote", `'$'\x41; touch X`},
	{"pipe and redirection", "1.0 | touch X > Y & touch X"},
	{"plain", "v2.4.1"},
}

// Each script prints the version, in its own way of quoting, between
// brackets; the output must be exactly the version each time.
var scripts = []struct{ name, script string }{
	{"unquoted", `printf '[%s]\n' {{.Version}}`},
	{"double-quoted", `printf '[%s]\n' "{{.Version}}"`},
	{"single-quoted", `printf '[%s]\n' '{{.Version}}'`},
	{"inside a word", `printf '%s\n' [{{.Version}}]`},
	{"double-quoted in a word", `printf '%s\n' "["{{.Version}}"]"`},
	{"command substitution", `printf '[%s]\n' "$(printf '%s' {{.Version}})"`},
	{"assignment", `v={{.Version}}; printf '[%s]\n' "$v"`},
	{"after a comment", "# don't\nprintf '[%s]\\n' {{.Version}}"},
	{"escaped", `printf '[%s]\n' \{{.Version}}`},
}

func TestShellScriptValuesAreNotCode(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	for _, v := range hostileVersions {
		for _, s := range scripts {
			t.Run(v.name+"/"+s.name, func(t *testing.T) {
				dir := t.TempDir()
				e := newExecutor(t, command.Config{Command: []string{"sh", "-c", s.script}, Dir: dir})
				tg := target
				tg.Version = v.version
				res, err := e.Rollback(context.Background(), tg)
				if err != nil {
					t.Fatalf("Rollback() error = %v", err)
				}
				if want := "[" + v.version + "]\n"; res.Output != want {
					t.Errorf("script %s printed %q, want %q", s.script, res.Output, want)
				}
				if _, err := os.Stat(filepath.Join(dir, "X")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the version ran as code: X exists (stat error %v)", err)
				}
			})
		}
	}
}

func TestShellScriptEcho(t *testing.T) {
	dir := t.TempDir()
	e := newExecutor(t, command.Config{Command: []string{"sh", "-c", "echo {{.Version}} {{.Service}} {{.Baseline}}"}, Dir: dir})
	tg := target
	tg.Version, tg.Service, tg.Baseline = "1.0;touch X", "$(touch X)", "`touch X`"
	res, err := e.Rollback(context.Background(), tg)
	if err != nil {
		t.Fatalf("Rollback() error = %v", err)
	}
	if want := "1.0;touch X $(touch X) `touch X`\n"; res.Output != want {
		t.Errorf("Output = %q, want %q", res.Output, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "X")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a value ran as code: X exists (stat error %v)", err)
	}
}

func TestShellScriptForms(t *testing.T) {
	for _, tc := range []struct {
		name string
		argv []string
		want string
	}{
		{"bash -euc", []string{"bash", "-euc", `printf '[%s]' {{.Version}}`}, "[1.0;touch X]"},
		{"env sh -c", []string{"env", "sh", "-c", `printf '[%s]' {{.Version}}`}, "[1.0;touch X]"},
		{"every key", []string{"sh", "-c", `printf '[%s]' {{.Incident}} {{.Service}} {{.Baseline}} {{.Step}} {{.IdempotencyKey}}`},
			"[12][checkout][v2.4.0][application][incident-12/rollback.application]"},
		{"template logic sees the values", []string{"sh", "-c", `{{if eq .Step "application"}}printf app;{{end}}{{if eq .Version "1.0;touch X"}}printf ' same';{{end}} printf ' %s' {{len .Version}}`}, "app same 11"},
		{"arguments after the script stay as they are", []string{"sh", "-c", `printf '[%s]' "$1" {{.Version}}`, "sh", "{{.Version}}"}, "[1.0;touch X][1.0;touch X]"},
		{"no shell: arguments stay as they are", []string{"printf", "[%s]", "{{.Version}}"}, "[1.0;touch X]"},
		// The scanner does not follow here-documents: the apostrophe makes
		// it misjudge the context, which garbles the text but runs nothing.
		{"misjudged context", []string{"sh", "-c", "cat <<EOF\nit's {{.Version}}\nEOF"}, "it's '\"1.0;touch X\"'\n"},
		{"variables unchanged", []string{"sh", "-c", `printf '[%s]' "$GUARDIAN_VERSION" "$GUARDIAN_SERVICE" {{.Version}}`}, "[1.0;touch X][checkout][1.0;touch X]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := exec.LookPath(tc.argv[0]); err != nil {
				t.Skipf("no %s", tc.argv[0])
			}
			dir := t.TempDir()
			e := newExecutor(t, command.Config{Command: tc.argv, Dir: dir})
			tg := target
			tg.Version = "1.0;touch X"
			res, err := e.Rollback(context.Background(), tg)
			if err != nil {
				t.Fatalf("Rollback() error = %v", err)
			}
			if res.Output != tc.want {
				t.Errorf("Output = %q, want %q", res.Output, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "X")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a value ran as code: X exists (stat error %v)", err)
			}
		})
	}
}

// A version label may hold NUL, which no argument or environment variable
// can carry: the rollback must still run, with U+FFFD in its place.
func TestValueWithNUL(t *testing.T) {
	e := newExecutor(t, command.Config{Command: []string{"sh", "-c", `printf '[%s]' {{.Version}} "$GUARDIAN_VERSION" "$1"`, "sh", "{{.Version}}"}})
	tg := target
	tg.Version = "v2\x00x"
	res, err := e.Rollback(context.Background(), tg)
	if err != nil {
		t.Fatalf("Rollback() error = %v", err)
	}
	if want := "[v2\uFFFDx][v2\uFFFDx][v2\uFFFDx]"; res.Output != want {
		t.Errorf("Output = %q, want %q", res.Output, want)
	}
}
