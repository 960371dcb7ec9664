package command

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/executor"
)

var attachTarget = executor.Target{Incident: 3, Service: "checkout", Version: "v2", Baseline: "v1",
	Step: executor.StepApplication, IdempotencyKey: "incident-3/rollback.application"}

func newAttachExecutor(t *testing.T, dir string, timeout time.Duration, code ...string) *Executor {
	t.Helper()
	env := map[string]string{"CODE": "0"}
	if len(code) > 0 {
		env["CODE"] = code[0]
	}
	e, err := New(Config{Command: []string{"sh", "-c", "echo rolled back; exit $CODE"}, Timeout: model.Duration(timeout), Env: env},
		zap.NewNop(), WithRunDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// startOrphan starts a process group as a command Guardian lost would be
// (its output in the run directory) and records it as running.
func startOrphan(t *testing.T, dir, script string, deadline time.Time) *exec.Cmd {
	t.Helper()
	base := filepath.Join(dir, runName(attachTarget.IdempotencyKey))
	out, err := os.Create(base + ".log")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("sh", "-c", script)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // reap it: a zombie counts as gone
	t.Cleanup(func() { _ = killGroup(cmd.Process.Pid); <-done })
	pid := cmd.Process.Pid
	if err := writeRecord(base+".json", runRecord{State: runRunning, StartedAt: time.Now(), PID: pid,
		StartTicks: startTicks(pid), Deadline: deadline}); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func TestAttachToAnOrphanWaitsForIt(t *testing.T) {
	dir := t.TempDir()
	e := newAttachExecutor(t, dir, time.Minute)
	marker := filepath.Join(dir, "ended")
	startOrphan(t, dir, `echo rolling back; sleep 1; echo done; touch "`+marker+`"`, time.Now().Add(time.Minute))
	res, err := e.Attach(context.Background(), attachTarget)
	if _, serr := os.Stat(marker); serr != nil {
		t.Fatalf("Attach returned before the command ended: %v", serr)
	}
	if !errors.Is(err, executor.ErrUnknown) || !strings.Contains(err.Error(), "exit status cannot be known") {
		t.Fatalf("error %v, want ErrUnknown", err)
	}
	if res.Output != "rolling back\ndone\n" || res.Details["exit_code"] != "unknown" {
		t.Fatalf("result %+v", res)
	}
}

func TestAttachKillsAnOrphanPastItsDeadline(t *testing.T) {
	dir := t.TempDir()
	e := newAttachExecutor(t, dir, time.Minute)
	cmd := startOrphan(t, dir, `echo stuck; exec sleep 100`, time.Now().Add(500*time.Millisecond))
	start := time.Now()
	_, err := e.Attach(context.Background(), attachTarget)
	if !errors.Is(err, executor.ErrTimeout) || time.Since(start) > 10*time.Second {
		t.Fatalf("error %v after %s, want ErrTimeout soon after the deadline", err, time.Since(start))
	}
	deadline := time.Now().Add(5 * time.Second)
	for running(cmd.Process.Pid, 0) {
		if time.Now().After(deadline) {
			t.Fatal("the orphan's group was not killed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAttachHonoursItsContext(t *testing.T) {
	dir := t.TempDir()
	e := newAttachExecutor(t, dir, time.Minute)
	startOrphan(t, dir, `exec sleep 100`, time.Now().Add(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := e.Attach(ctx, attachTarget); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v", err)
	}
}

// A run that ended (and was recorded) before Guardian stopped reports its
// real outcome.
func TestAttachAfterTheRunEnded(t *testing.T) {
	for _, tc := range []struct {
		code string
		err  error
	}{{"0", nil}, {"3", executor.ErrFailed}} {
		t.Run("exit "+tc.code, func(t *testing.T) {
			dir := t.TempDir()
			e := newAttachExecutor(t, dir, time.Minute, tc.code)
			if _, err := e.Rollback(context.Background(), attachTarget); !errors.Is(err, tc.err) {
				t.Fatalf("Rollback: %v", err)
			}
			res, err := e.Attach(context.Background(), attachTarget)
			if !errors.Is(err, tc.err) || res.Output != "rolled back\n" || res.Details["exit_code"] != tc.code {
				t.Fatalf("Attach: %+v %v", res, err)
			}
		})
	}
}

func TestAttachWithoutARun(t *testing.T) {
	dir := t.TempDir()
	e := newAttachExecutor(t, dir, time.Minute)
	base := filepath.Join(dir, runName(attachTarget.IdempotencyKey))
	for _, tc := range []struct {
		name   string
		record *runRecord
		want   error
		text   string
	}{
		{"no record", nil, executor.ErrUnknown, "no trace of it"},
		{"starting", &runRecord{State: runStarting}, executor.ErrUnknown, "while starting it"},
		{"not started", &runRecord{State: runNotStarted}, executor.ErrFailed, "could not be started"},
		{"gone process", &runRecord{State: runRunning, PID: 1 << 22, StartTicks: 1}, executor.ErrUnknown, "cannot be known"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.record != nil {
				if err := writeRecord(base+".json", *tc.record); err != nil {
					t.Fatal(err)
				}
			}
			_, err := e.Attach(context.Background(), attachTarget)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %v, want %v (%q)", err, tc.want, tc.text)
			}
		})
	}
	noDir, err := New(Config{Command: []string{"true"}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noDir.Attach(context.Background(), attachTarget); !errors.Is(err, executor.ErrUnknown) {
		t.Fatalf("without a run directory: %v", err)
	}
}

func TestRunName(t *testing.T) {
	for in, want := range map[string]string{
		"incident-12/rollback.application": "incident-12_rollback.application",
		"../../etc/passwd":                 ".._.._etc_passwd",
		"":                                 "run",
	} {
		if got := runName(in); got != want {
			t.Errorf("runName(%q) = %q, want %q", in, got, want)
		}
	}
}
