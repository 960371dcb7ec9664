// Package command is the executor that rolls back by running a program:
// argv directly, no shell, with templated arguments (each value stays one
// argument, whatever it contains), a minimal environment
// carrying the target as GUARDIAN_* variables, a timeout that kills the
// whole process group, and the interleaved stdout and stderr kept (the last
// 64 KiB) for the incident's timeline. A run's record and output stay in a
// run directory, so a Guardian restarted while the command runs waits for it
// rather than running it again (Attach).
//
// When argv runs a shell script itself, as in
// ["sh", "-c", "echo {{.Version}}"] (see config.ShellScript), the values a
// template puts into the script are not pasted in as text, which the shell
// would read as code: each becomes a quoted reference to its GUARDIAN_*
// variable, so a version "1.0;touch X" or "$(touch X)" reaches the script
// as exactly that text and runs nothing. Other arguments are passed as they
// are; ["sh", "-c", "echo \"$1\"", "sh", "{{.Version}}"] is as safe. No
// argument or variable can hold NUL: a value's NUL is passed as U+FFFD.
package command

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/executor"
)

// Name is the executor type's name in configuration and on the timeline.
const Name = "command"

const (
	// waitDelay bounds the wait for the output pipe after the command is
	// gone (a process that left its group but kept the pipe) and for a
	// killed process to exit.
	waitDelay = 5 * time.Second
	// errorTail is about how much of the output's end an error carries.
	errorTail = 512
)

// inherited are the only variables passed on from Guardian's environment.
var inherited = []string{"PATH", "HOME"}

// Executor runs the configured command for each rollback. It is safe for
// concurrent use.
type Executor struct {
	argv      []string
	env       []string // inherited and configured, without GUARDIAN_*
	dir       string
	timeout   time.Duration
	waitDelay time.Duration
	logger    *zap.Logger
	// runDir, when set, keeps each run's record and output (see WithRunDir).
	runDir string
}

var (
	_ executor.Executor = (*Executor)(nil)
	_ executor.Attacher = (*Executor)(nil)
)

// Option configures an Executor.
type Option func(*Executor)

// WithRunDir keeps, in dir, each run's record (its process id and start
// time, then its exit code) and its output, under the name of the step's
// idempotency key. A Guardian restarted while a command runs finds it there
// and waits for it instead of running it again (Attach).
func WithRunDir(dir string) Option { return func(e *Executor) { e.runDir = dir } }

// New validates cfg (applying its defaults) and returns its executor. It
// reads PATH and HOME from Guardian's environment once, here. A program that
// cannot be found now is only logged: it may be installed later, and
// Rollback reports it then. A nil logger logs nothing.
func New(cfg Config, logger *zap.Logger, opts ...Option) (*Executor, error) {
	cfg.Command = slices.Clone(cfg.Command)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("command executor: %w", err)
	}
	if _, err := templateArgs(cfg.Command, sampleTarget); err != nil {
		return nil, fmt.Errorf("command executor: command: %w", err)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	var env []string
	for _, k := range inherited {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Env)) {
		env = append(env, k+"="+cfg.Env[k])
	}
	e := &Executor{
		argv:      cfg.Command,
		env:       env,
		dir:       cfg.Dir,
		timeout:   time.Duration(cfg.Timeout),
		waitDelay: waitDelay,
		logger:    logger.With(zap.String("executor", Name), zap.String("command", cfg.Command[0])),
	}
	for _, o := range opts {
		o(e)
	}
	if _, err := exec.LookPath(e.program()); err != nil {
		e.logger.Warn("rollback command not found", zap.Error(err))
	}
	return e, nil
}

// program is the path LookPath should check: a relative path is relative to
// the working directory.
func (e *Executor) program() string {
	p := e.argv[0]
	if e.dir != "" && !filepath.IsAbs(p) && filepath.Base(p) != p {
		return filepath.Join(e.dir, p)
	}
	return p
}

// withoutNUL replaces NUL in t's values with U+FFFD, the replacement
// character, and reports whether it did: an argument or environment variable
// cannot hold NUL, and a version label with one (Prometheus accepts it)
// would otherwise keep every rollback of that version from starting.
func withoutNUL(t executor.Target) (executor.Target, bool) {
	found := false
	for _, p := range []*string{&t.Service, &t.Version, &t.Baseline, &t.Step, &t.IdempotencyKey, &t.Reason} {
		if strings.IndexByte(*p, 0) >= 0 {
			*p = strings.ReplaceAll(*p, "\x00", "\uFFFD")
			found = true
		}
	}
	return t, found
}

// environ returns the command's environment for t. The GUARDIAN_* variables
// come last, so they win over anything configured.
func (e *Executor) environ(t executor.Target) []string {
	return append(slices.Clip(e.env),
		"GUARDIAN_INCIDENT="+strconv.FormatInt(t.Incident, 10),
		"GUARDIAN_SERVICE="+t.Service,
		"GUARDIAN_VERSION="+t.Version,
		"GUARDIAN_BASELINE="+t.Baseline,
		"GUARDIAN_STEP="+t.Step,
		"GUARDIAN_IDEMPOTENCY_KEY="+t.IdempotencyKey,
		"GUARDIAN_REASON="+t.Reason,
	)
}

// Rollback runs the command for t and waits for it, at most the configured
// timeout. Exit status 0 is success. Otherwise the error wraps
// executor.ErrFailed and names the exit code and the output's last lines,
// or wraps executor.ErrTimeout when the timeout killed the process group,
// or wraps ctx's error when ctx ended first. The Result carries the output
// in every case where the command started. When the command exits, any
// process it left in its process group is killed.
//
// The command's stdout and stderr go to one file (in the run directory, see
// WithRunDir, or a temporary one), so a command that outlives Guardian keeps
// running and keeps its output.
func (e *Executor) Rollback(ctx context.Context, t executor.Target) (executor.Result, error) {
	name := e.argv[0]
	t, nul := withoutNUL(t)
	log := e.logger.With(
		zap.Int64("incident", t.Incident),
		zap.String("service", t.Service),
		zap.String("version", t.Version),
		zap.String("baseline", t.Baseline),
		zap.String("step", t.Step),
		zap.String("idempotency_key", t.IdempotencyKey),
	)
	if nul {
		log.Warn("a value holds NUL, which no argument or environment variable can carry: passing U+FFFD in its place")
	}
	args, err := templateArgs(e.argv, t)
	if err != nil {
		return executor.Result{}, fmt.Errorf("command %q: %w: templating: %w", name, executor.ErrFailed, err)
	}

	runCtx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, name, args...)
	cmd.Env = e.environ(t)
	cmd.Dir = e.dir
	cmd.WaitDelay = e.waitDelay
	setProcessGroup(cmd)
	var killed atomic.Bool // the context ended and the command was killed
	kill := cmd.Cancel
	cmd.Cancel = func() error {
		err := kill()
		if err == nil {
			killed.Store(true)
		}
		return err
	}

	// stdout and stderr share one file, which keeps their order and, unlike
	// a pipe, outlives Guardian: a command still running when Guardian dies
	// neither gets SIGPIPE nor loses its output.
	run, err := e.newRun(t.IdempotencyKey)
	if err != nil {
		return executor.Result{}, fmt.Errorf("command %q: %w: %w", name, executor.ErrFailed, err)
	}
	defer run.close()
	cmd.Stdout, cmd.Stderr = run.out, run.out

	log.Info("running rollback command")
	err = cmd.Start()
	if err != nil {
		run.record(runRecord{State: runNotStarted})
		if ctx.Err() != nil {
			return executor.Result{}, fmt.Errorf("command %q: %w", name, ctxError(ctx))
		}
		log.Warn("rollback command did not start", zap.Error(err))
		return executor.Result{}, fmt.Errorf("command %q: %w: starting: %w", name, executor.ErrFailed, err)
	}
	pid := cmd.Process.Pid
	run.record(runRecord{State: runRunning, PID: pid, StartTicks: startTicks(pid), Deadline: time.Now().Add(e.timeout)})
	waitErr := cmd.Wait()
	_ = killGroup(pid) // stragglers left in the group
	out := run.output()
	res := executor.Result{Output: out.String(), Details: map[string]string{}}
	if n := out.truncated(); n > 0 {
		res.Details["output_truncated_bytes"] = strconv.FormatInt(n, 10)
	}
	code := cmd.ProcessState.ExitCode()
	if code >= 0 {
		res.Details["exit_code"] = strconv.Itoa(code)
	}
	run.record(runRecord{State: runEnded, PID: pid, ExitCode: &code, Killed: killed.Load()})

	switch {
	case waitErr == nil:
		log.Info("rollback command succeeded")
		return res, nil
	case killed.Load() && ctx.Err() != nil:
		err = fmt.Errorf("command %q: %w, process group killed%s", name, ctxError(ctx), suffix(out))
	case killed.Load():
		err = fmt.Errorf("command %q: %w after %s, process group killed%s", name, executor.ErrTimeout, e.timeout, suffix(out))
	default:
		var exitErr *exec.ExitError
		if errors.As(waitErr, &exitErr) && exitErr.ExitCode() >= 0 {
			err = exitError(name, exitErr.ExitCode(), out)
		} else {
			err = fmt.Errorf("command %q: %w: %w%s", name, executor.ErrFailed, waitErr, suffix(out))
		}
	}
	log.Warn("rollback command failed", zap.Error(err))
	return res, err
}

// exitError is the error of a command that exited with a non-zero code.
func exitError(name string, code int, out *tailBuffer) error {
	return fmt.Errorf("command %q: %w: exited with code %d%s", name, executor.ErrFailed, code, suffix(out))
}

// suffix is the output's end for an error message.
func suffix(out *tailBuffer) string {
	if t := out.tail(errorTail); t != "" {
		return ": " + t
	}
	return ""
}

// ctxError is the error for a caller's context that ended: a deadline is a
// timeout too.
func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", executor.ErrTimeout, ctx.Err())
	}
	return ctx.Err()
}
