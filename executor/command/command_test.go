package command_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/command"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var target = executor.Target{
	Incident:       12,
	Service:        "checkout",
	Version:        "v2.4.1",
	Baseline:       "v2.4.0",
	Step:           executor.StepApplication,
	IdempotencyKey: "incident-12/rollback.application",
	Reason:         "5xx 7.9% > 5%",
}

func newExecutor(t *testing.T, cfg command.Config) *command.Executor {
	t.Helper()
	e, err := command.New(cfg, zap.NewNop())
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return e
}

// sh runs script with sh -c; args become $0, $1, ...
func sh(script string, args ...string) []string {
	return append([]string{"sh", "-c", script}, args...)
}

func TestRollbackSuccess(t *testing.T) {
	e := newExecutor(t, command.Config{Command: sh(`echo out1; echo err1 >&2; echo out2; echo err2 >&2`)})
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("Rollback() error = %v", err)
	}
	if want := "out1\nerr1\nout2\nerr2\n"; res.Output != want {
		t.Errorf("Output = %q, want %q (stdout and stderr in order)", res.Output, want)
	}
	if got := res.Details["exit_code"]; got != "0" {
		t.Errorf(`Details["exit_code"] = %q, want "0"`, got)
	}
}

func TestRollbackArgumentsAreTemplatedWithoutShell(t *testing.T) {
	dir := t.TempDir()
	pwned := filepath.Join(dir, "pwned")
	tg := target
	tg.Version = fmt.Sprintf(`v2 "$(touch %s)" '; touch %s; echo '`, pwned, pwned)
	// Each argument is printed in brackets on its own line.
	e := newExecutor(t, command.Config{Command: sh(
		`for a in "$@"; do printf '[%s]\n' "$a"; done`,
		"sh", "{{.Incident}}", "{{.Service}}", "--version={{.Version}}", "{{.Baseline}}", "{{.Step}}", "{{.IdempotencyKey}}",
	)})
	res, err := e.Rollback(context.Background(), tg)
	if err != nil {
		t.Fatalf("Rollback() error = %v", err)
	}
	want := "[12]\n[checkout]\n[--version=" + tg.Version + "]\n[v2.4.0]\n[application]\n[incident-12/rollback.application]\n"
	if res.Output != want {
		t.Errorf("Output = %q, want %q", res.Output, want)
	}
	if _, err := os.Stat(pwned); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the version string was run by a shell: %s exists (stat error %v)", pwned, err)
	}
}

func TestRollbackEnvironment(t *testing.T) {
	t.Setenv("GUARDIAN_TEST_LEAK", "must not pass")
	t.Setenv("HOME", "/home/guardian-test")
	e := newExecutor(t, command.Config{
		Command: sh(`env`),
		Env:     map[string]string{"DEPLOY_TOKEN_FILE": "/etc/token", "EMPTY": ""},
	})
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("Rollback() error = %v", err)
	}
	env := map[string]string{}
	for line := range strings.Lines(res.Output) {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		env[k] = v
	}
	want := map[string]string{
		"HOME":                     "/home/guardian-test",
		"PATH":                     os.Getenv("PATH"),
		"DEPLOY_TOKEN_FILE":        "/etc/token",
		"EMPTY":                    "",
		"GUARDIAN_INCIDENT":        "12",
		"GUARDIAN_SERVICE":         "checkout",
		"GUARDIAN_VERSION":         "v2.4.1",
		"GUARDIAN_BASELINE":        "v2.4.0",
		"GUARDIAN_STEP":            "application",
		"GUARDIAN_IDEMPOTENCY_KEY": "incident-12/rollback.application",
		"GUARDIAN_REASON":          "5xx 7.9% > 5%",
	}
	for k, v := range want {
		if got, ok := env[k]; !ok || got != v {
			t.Errorf("env %s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	if v, ok := env["GUARDIAN_TEST_LEAK"]; ok {
		t.Errorf("env GUARDIAN_TEST_LEAK = %q passed on from Guardian's environment", v)
	}
}

func TestRollbackDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rollback.sh"), []byte("#!/bin/sh\necho \"ran in $(pwd)\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A relative program path is relative to dir.
	e := newExecutor(t, command.Config{Command: []string{"./rollback.sh"}, Dir: dir})
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("Rollback() error = %v", err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := "ran in " + real + "\n"; res.Output != want {
		t.Errorf("Output = %q, want %q", res.Output, want)
	}
}

func TestRollbackFailures(t *testing.T) {
	tests := []struct {
		name       string
		command    []string
		wantIs     error
		wantMsg    []string
		wantOutput string
	}{
		{
			name:       "non-zero exit",
			command:    sh(`echo starting; echo "rollout failed: deployment not found" >&2; exit 3`),
			wantIs:     executor.ErrFailed,
			wantMsg:    []string{"exited with code 3", "rollout failed: deployment not found"},
			wantOutput: "starting\nrollout failed: deployment not found\n",
		},
		{
			name:    "missing binary on PATH",
			command: []string{"guardian-no-such-rollback-tool", "undo"},
			wantIs:  executor.ErrFailed,
			wantMsg: []string{`"guardian-no-such-rollback-tool"`, "executable file not found"},
		},
		{
			name:    "missing binary by path",
			command: []string{"/nonexistent/guardian/rollback"},
			wantIs:  executor.ErrFailed,
			wantMsg: []string{`"/nonexistent/guardian/rollback"`, "no such file or directory"},
		},
		{
			name:       "killed by a signal",
			command:    sh(`echo bye; kill -TERM $$`),
			wantIs:     executor.ErrFailed,
			wantMsg:    []string{"signal: terminated", "bye"},
			wantOutput: "bye\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExecutor(t, command.Config{Command: tt.command})
			res, err := e.Rollback(context.Background(), target)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Rollback() error = %v, want errors.Is %v", err, tt.wantIs)
			}
			if errors.Is(err, executor.ErrTimeout) {
				t.Errorf("Rollback() error = %v, is also ErrTimeout", err)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("Rollback() error = %q, want it to contain %q", err, m)
				}
			}
			if res.Output != tt.wantOutput {
				t.Errorf("Output = %q, want %q", res.Output, tt.wantOutput)
			}
		})
	}
}

// alive reports whether pid is a running process (a zombie is dead: the
// container's init may never reap it).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// readPids reads the pids a script wrote, one a line.
func readPids(t *testing.T, path string, want int) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading pid file: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid file: %v", err)
		}
		pids = append(pids, pid)
	}
	if len(pids) != want {
		t.Fatalf("pid file holds %d pids, want %d: %q", len(pids), want, data)
	}
	return pids
}

// waitDead waits, with a deadline, for every pid to be gone.
func waitDead(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d is still running", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestRollbackTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	e := newExecutor(t, command.Config{
		Command: sh(`sleep 100 & echo $! > "$0"; sleep 100 & echo $! >> "$0"; echo $$ >> "$0"; echo started; wait`, pidFile),
		Timeout: model.Duration(2 * time.Second),
	})
	start := time.Now()
	res, err := e.Rollback(context.Background(), target)
	elapsed := time.Since(start)
	if !errors.Is(err, executor.ErrTimeout) {
		t.Fatalf("Rollback() error = %v, want ErrTimeout", err)
	}
	if errors.Is(err, executor.ErrFailed) {
		t.Errorf("Rollback() error = %v, is also ErrFailed", err)
	}
	if elapsed > 15*time.Second {
		t.Errorf("Rollback() took %s, want about the 2s timeout", elapsed)
	}
	if res.Output != "started\n" {
		t.Errorf("Output = %q, want the output before the kill", res.Output)
	}
	waitDead(t, readPids(t, pidFile, 3))
}

func TestRollbackKillsLeftoverProcesses(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	// The background sleep keeps the output pipe open after sh exits.
	e := newExecutor(t, command.Config{Command: sh(`sleep 100 & echo $! > "$0"; echo done`, pidFile)})
	start := time.Now()
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("Rollback() error = %v", err)
	}
	if elapsed := time.Since(start); elapsed > 4*time.Second {
		t.Errorf("Rollback() took %s: it waited for the leftover process", elapsed)
	}
	if res.Output != "done\n" {
		t.Errorf("Output = %q, want %q", res.Output, "done\n")
	}
	waitDead(t, readPids(t, pidFile, 1))
}

func TestRollbackContextCanceled(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	e := newExecutor(t, command.Config{Command: sh(`echo $$ > "$0"; exec sleep 100`, pidFile)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Cancel once the command runs.
		for {
			if data, err := os.ReadFile(pidFile); err == nil && len(data) > 0 {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	_, err := e.Rollback(ctx, target)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Rollback() error = %v, want context.Canceled", err)
	}
	if errors.Is(err, executor.ErrTimeout) || errors.Is(err, executor.ErrFailed) {
		t.Errorf("Rollback() error = %v, want neither ErrTimeout nor ErrFailed", err)
	}
	waitDead(t, readPids(t, pidFile, 1))
}

func TestRollbackCallerDeadlineIsTimeout(t *testing.T) {
	e := newExecutor(t, command.Config{Command: []string{"sleep", "100"}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := e.Rollback(ctx, target)
	if !errors.Is(err, executor.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Rollback() error = %v, want ErrTimeout and context.DeadlineExceeded", err)
	}
}

func TestRollbackHugeOutputIsTruncated(t *testing.T) {
	// 1 MB of 'a', then a last line.
	e := newExecutor(t, command.Config{Command: sh(`head -c 1000000 /dev/zero | tr '\0' a; echo; echo the end`)})
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("Rollback() error = %v", err)
	}
	if len(res.Output) > executor.MaxOutput+100 {
		t.Errorf("len(Output) = %d, want at most about %d", len(res.Output), executor.MaxOutput)
	}
	if !strings.HasSuffix(res.Output, "a\nthe end\n") {
		t.Errorf("Output ends %q, want the output's end", res.Output[max(0, len(res.Output)-20):])
	}
	if !strings.HasPrefix(res.Output, "[guardian: ") || !strings.Contains(res.Output, "dropped]") {
		t.Errorf("Output starts %q, want a truncation note", res.Output[:min(60, len(res.Output))])
	}
	total := 1000000 + len("\nthe end\n")
	if got, want := res.Details["output_truncated_bytes"], strconv.Itoa(total-executor.MaxOutput); got != want {
		t.Errorf(`Details["output_truncated_bytes"] = %q, want %q`, got, want)
	}
}

func TestRollbackHugeFailureOutputInError(t *testing.T) {
	e := newExecutor(t, command.Config{Command: sh(`head -c 100000 /dev/zero | tr '\0' x; echo; echo fatal: cannot roll back >&2; exit 1`)})
	_, err := e.Rollback(context.Background(), target)
	if !errors.Is(err, executor.ErrFailed) {
		t.Fatalf("Rollback() error = %v, want ErrFailed", err)
	}
	if !strings.HasSuffix(err.Error(), "fatal: cannot roll back") || len(err.Error()) > 1000 {
		t.Errorf("Rollback() error = %.200q... (%d bytes), want a short one ending with the last line", err, len(err.Error()))
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     command.Config
		wantErr []string
	}{
		{name: "minimal", cfg: command.Config{Command: []string{"true"}}},
		{name: "templates", cfg: command.Config{Command: []string{"kubectl", "rollout", "undo", "deployment/{{.Service}}", "--to={{.Baseline}}"}}},
		{name: "no command", cfg: command.Config{}, wantErr: []string{"command: must name a program"}},
		{name: "empty program", cfg: command.Config{Command: []string{" ", "x"}}, wantErr: []string{"command[0]: the program is empty"}},
		{name: "templated program", cfg: command.Config{Command: []string{"{{.Service}}-rollback"}}, wantErr: []string{"command[0]"}},
		{name: "syntax error", cfg: command.Config{Command: []string{"helm", "rollback", "{{.Service"}}, wantErr: []string{"command[2]:", "unclosed action"}},
		{name: "unknown key", cfg: command.Config{Command: []string{"helm", "{{.Release}}"}}, wantErr: []string{"command[1]:", `no entry for key "Release"`}},
		{name: "negative timeout", cfg: command.Config{Command: []string{"true"}, Timeout: -1}, wantErr: []string{"timeout: must be positive"}},
		{
			name:    "bad env",
			cfg:     command.Config{Command: []string{"true"}, Env: map[string]string{"A=B": "x", "GUARDIAN_SERVICE": "x", "OK": "a\x00b"}},
			wantErr: []string{`env: invalid variable name "A=B"`, "GUARDIAN_SERVICE: names starting with GUARDIAN_ are reserved", "OK: value contains a NUL byte"},
		},
		{
			name:    "every problem",
			cfg:     command.Config{Command: []string{"x", "{{.Nope}}", "{{"}, Timeout: -1},
			wantErr: []string{"command[1]", "command[2]", "timeout"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if time.Duration(tt.cfg.Timeout) != command.DefaultTimeout {
					t.Errorf("Timeout = %s, want the default %s", tt.cfg.Timeout, command.DefaultTimeout)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			if _, nerr := command.New(tt.cfg, zap.NewNop()); nerr == nil {
				t.Errorf("New() accepted a config Validate rejects")
			}
		})
	}
}

func TestUnmarshalYAML(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    command.Config
		wantErr string
	}{
		{
			name: "list shorthand",
			yaml: `command: ["./migrate", "down", "1"]`,
			want: command.Config{Command: []string{"./migrate", "down", "1"}},
		},
		{
			name: "mapping",
			yaml: "command:\n  command: [kubectl, rollout, undo]\n  env: {KUBECONFIG: /k}\n  dir: /srv\n  timeout: 10m\n",
			want: command.Config{
				Command: []string{"kubectl", "rollout", "undo"},
				Env:     map[string]string{"KUBECONFIG": "/k"},
				Dir:     "/srv",
				Timeout: model.Duration(10 * time.Minute),
			},
		},
		{
			name:    "unknown field",
			yaml:    "command:\n  command: [x]\n  timeuot: 1m\n",
			wantErr: "timeuot",
		},
		{
			name:    "bad duration",
			yaml:    "command:\n  command: [x]\n  timeout: soon\n",
			wantErr: "soon",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc struct {
				Command command.Config `yaml:"command"`
			}
			dec := yaml.NewDecoder(strings.NewReader(tt.yaml))
			dec.KnownFields(true)
			err := dec.Decode(&doc)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode() error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			got := doc.Command
			if fmt.Sprint(got.Command) != fmt.Sprint(tt.want.Command) || fmt.Sprint(got.Env) != fmt.Sprint(tt.want.Env) ||
				got.Dir != tt.want.Dir || got.Timeout != tt.want.Timeout {
				t.Errorf("decoded %+v, want %+v", got, tt.want)
			}
		})
	}
}
