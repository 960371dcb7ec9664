package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The command line's mistakes get messages that say what to do.
func TestCLIMessages(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--conifg", "c.yaml"}, "guardian: unknown flag: --conifg (did you mean --config.file?)\nSee 'guardian run --help' for its flags\n"},
		{[]string{"check", "--log.levle=debug", "c.yaml"}, "guardian: unknown flag: --log.levle (did you mean --log.level?)\nSee 'guardian check --help' for its flags\n"},
		{[]string{"state", "check", "--confg", "c.yaml"}, "guardian: unknown flag: --confg (did you mean --config.file?)\nSee 'guardian state check --help' for its flags\n"},
		{[]string{"report", "--zzzzzz"}, "guardian: unknown flag: --zzzzzz\nSee 'guardian report --help' for its flags\n"},
		{[]string{"check"}, "guardian: check needs FILE\nUsage: guardian check FILE... [flags]\n"},
		{[]string{"report"}, "guardian: report needs ID\nUsage: guardian report ID [flags]\n"},
		{[]string{"report", "1", "2"}, "guardian: report takes 1 argument(s), got 2: [\"1\" \"2\"]\nUsage: guardian report ID [flags]\n"},
		{[]string{"incidents", "all"}, "guardian: incidents takes no arguments, got [\"all\"]\nUsage: guardian incidents [flags]\n"},
		{[]string{"check", missing}, "guardian check: config file " + missing + " does not exist\n"},
		{[]string{"version", "--log.level=verbose"}, "guardian: --log.level: unknown level \"verbose\": want debug, info, warn or error\n"},
		{[]string{"incidents", "--log.format=xml"}, "guardian: --log.format: want console or json, got \"xml\"\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if errb.String() != tc.want {
				t.Errorf("stderr:\n%q\nwant:\n%q", errb.String(), tc.want)
			}
		})
	}
}

// run with a missing file says so in one sentence, and does not claim to
// keep a configuration that never ran.
func TestRunMissingConfig(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	for _, flag := range []string{"--config.file", "--config"} {
		var out, errb bytes.Buffer
		if code := run([]string{"run", flag, missing, "--log.format=json"}, &out, &errb); code != 1 {
			t.Fatalf("%s: exit %d, want 1", flag, code)
		}
		lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
		want := `"msg":"cannot start","error":"config file ` + missing + ` does not exist: give its path with --config.file"}`
		if len(lines) != 1 || !strings.HasSuffix(lines[0], want) {
			t.Errorf("%s: stderr\n%s\nwant one line ending %s", flag, errb.String(), want)
		}
	}
}

// version says what the go command stamped in the binary: the module
// version and VCS revision of a build in a clone, and how to get them
// otherwise.
func TestVersionOfBuiltBinary(t *testing.T) {
	bin := buildGuardian(t)
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	mod := regexp.MustCompile(`(?m)^\tmod\t\S+\t(\S+)`).FindSubmatch(info)
	rev := regexp.MustCompile(`(?m)^\tbuild\tvcs\.revision=(\S+)`).FindSubmatch(info)
	if rev == nil {
		// No .git (a copy of the sources, or a git worktree, which the go
		// command does not stamp).
		if !strings.HasPrefix(got, "guardian devel (revision unknown, go1.") || !strings.Contains(got, "build with make") {
			t.Errorf("version of a build without VCS information:\n%s", got)
		}
		return
	}
	want := "guardian " + string(mod[1]) + " (revision " + string(rev[1])
	if string(mod[1]) == "(devel)" || !strings.HasPrefix(got, want) {
		t.Errorf("version:\n%s\nwant it to start %q (go version -m:\n%s)", got, want, info)
	}
}
