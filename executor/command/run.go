package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/executor"
)

// States of a run record.
const (
	// runStarting is written before the command starts: a Guardian that
	// dies before the process id is recorded leaves it.
	runStarting = "starting"
	// runNotStarted: the command could not be started.
	runNotStarted = "not_started"
	runRunning    = "running"
	runEnded      = "ended"
)

// runRecord is what a run directory keeps of one command run, as JSON in
// <key>.json beside its output <key>.log.
type runRecord struct {
	State     string    `json:"state"`
	StartedAt time.Time `json:"started_at"`
	PID       int       `json:"pid,omitempty"`
	// StartTicks is the process's start time in clock ticks since boot
	// (/proc/<pid>/stat); with PID it names the process even after its
	// id is reused.
	StartTicks uint64 `json:"start_ticks,omitempty"`
	// Deadline is when the executor's timeout kills the command.
	Deadline time.Time `json:"deadline,omitzero"`
	ExitCode *int      `json:"exit_code,omitempty"`
	Killed   bool      `json:"killed,omitempty"`
}

// run is one command run's record and output file.
type run struct {
	e      *Executor
	path   string // the record; empty without a run directory
	out    *os.File
	record func(runRecord)
	start  time.Time
}

// runName turns an idempotency key into a file name.
func runName(key string) string {
	if key == "" {
		key = "run"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			return r
		}
		return '_'
	}, key)
}

// newRun opens the output file and, with a run directory, writes the record
// as starting.
func (e *Executor) newRun(key string) (*run, error) {
	r := &run{e: e, start: time.Now()}
	if e.runDir == "" {
		f, err := os.CreateTemp("", "guardian-command-*.log")
		if err != nil {
			return nil, fmt.Errorf("creating the output file: %w", err)
		}
		r.out, r.record = f, func(runRecord) {}
		return r, nil
	}
	if err := os.MkdirAll(e.runDir, 0o750); err != nil {
		return nil, fmt.Errorf("creating the run directory: %w", err)
	}
	base := filepath.Join(e.runDir, runName(key))
	f, err := os.OpenFile(base+".log", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("creating the output file: %w", err)
	}
	r.out, r.path = f, base+".json"
	r.record = func(rec runRecord) {
		rec.StartedAt = r.start
		if err := writeRecord(r.path, rec); err != nil {
			e.logger.Warn("recording the command run", zap.Error(err))
		}
	}
	r.record(runRecord{State: runStarting})
	return r, nil
}

// output reads the output's end back.
func (r *run) output() *tailBuffer { return tailOf(r.out.Name()) }

// close closes the output file; without a run directory it removes it.
func (r *run) close() {
	_ = r.out.Close()
	if r.path == "" {
		_ = os.Remove(r.out.Name())
	}
}

// writeRecord replaces the record at path atomically.
func writeRecord(path string, rec runRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// tailOf reads about the last executor.MaxOutput bytes of the file at path.
func tailOf(path string) *tailBuffer {
	b := newTailBuffer(executor.MaxOutput)
	f, err := os.Open(path)
	if err != nil {
		return b
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return b
	}
	skip := max(fi.Size()-int64(executor.MaxOutput)-8, 0)
	if _, err := f.Seek(skip, io.SeekStart); err != nil {
		return b
	}
	_, _ = io.Copy(b, f)
	b.written += skip
	return b
}

// attachPoll is how often Attach looks for the command.
const attachPoll = 200 * time.Millisecond

// Attach implements executor.Attacher: after a restart it finds the run
// of t.IdempotencyKey in the run directory. A run that ended while Guardian
// was down reports its exit code and output as Rollback would. A run still
// going is waited for (up to its own deadline, when its process group is
// killed as a timeout); once gone, its exit status cannot be known (it is
// not Guardian's child any more): the error wraps executor.ErrUnknown and
// the Result carries the output. Without a record, or without a run
// directory, the outcome is unknown too. Attach never starts the command.
func (e *Executor) Attach(ctx context.Context, t executor.Target) (executor.Result, error) {
	name := e.argv[0]
	if e.runDir == "" {
		return executor.Result{}, fmt.Errorf("command %q: %w: no run directory to find it in", name, executor.ErrUnknown)
	}
	base := filepath.Join(e.runDir, runName(t.IdempotencyKey))
	b, err := os.ReadFile(base + ".json")
	if errors.Is(err, os.ErrNotExist) {
		return executor.Result{}, fmt.Errorf("command %q: %w: no trace of it in %s: Guardian stopped before starting it", name, executor.ErrUnknown, e.runDir)
	}
	if err != nil {
		return executor.Result{}, fmt.Errorf("command %q: %w: reading its record: %w", name, executor.ErrUnknown, err)
	}
	var rec runRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return executor.Result{}, fmt.Errorf("command %q: %w: reading its record: %w", name, executor.ErrUnknown, err)
	}
	log := e.logger.With(zap.String("idempotency_key", t.IdempotencyKey), zap.Int("pid", rec.PID))
	timedOut := false
	switch rec.State {
	case runNotStarted:
		return executor.Result{}, fmt.Errorf("command %q: %w: it could not be started", name, executor.ErrFailed)
	case runStarting:
		return executor.Result{}, fmt.Errorf("command %q: %w: Guardian stopped while starting it", name, executor.ErrUnknown)
	case runRunning:
		log.Info("waiting for the rollback command started before the restart")
		for running(rec.PID, rec.StartTicks) {
			if !rec.Deadline.IsZero() && time.Now().After(rec.Deadline) {
				log.Warn("the rollback command outlived its timeout: killing its process group")
				_ = killGroup(rec.PID)
				timedOut = true
				break
			}
			select {
			case <-ctx.Done():
				return executor.Result{}, fmt.Errorf("command %q: %w", name, ctxError(ctx))
			case <-time.After(attachPoll):
			}
		}
		_ = killGroup(rec.PID) // stragglers left in the group
		// It may have ended, and been recorded, just before Guardian died.
		if b, err := os.ReadFile(base + ".json"); err == nil {
			_ = json.Unmarshal(b, &rec)
		}
	}
	out := tailOf(base + ".log")
	res := executor.Result{Output: out.String(), Details: map[string]string{}}
	if n := out.truncated(); n > 0 {
		res.Details["output_truncated_bytes"] = strconv.FormatInt(n, 10)
	}
	switch {
	case timedOut || rec.Killed:
		return res, fmt.Errorf("command %q: %w, process group killed%s", name, executor.ErrTimeout, suffix(out))
	case rec.ExitCode != nil && *rec.ExitCode == 0:
		res.Details["exit_code"] = "0"
		return res, nil
	case rec.ExitCode != nil && *rec.ExitCode > 0:
		res.Details["exit_code"] = strconv.Itoa(*rec.ExitCode)
		return res, exitError(name, *rec.ExitCode, out)
	}
	res.Details["exit_code"] = "unknown"
	return res, fmt.Errorf("command %q: %w: it ended while Guardian was not running it, so its exit status cannot be known%s",
		name, executor.ErrUnknown, suffix(out))
}
