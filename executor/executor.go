// Package executor defines the seam through which Guardian rolls a bad deploy
// back: a Target (what to roll back, to which version, and why), the
// Executor interface every backend implements, the Result kept on the
// incident's timeline, and the sentinel errors that tell a timeout from a
// failure. Backends live in sub-packages (command, webhook, ...).
package executor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/template"
)

// Steps of a rollback.
const (
	// StepApplication rolls the application back; it always comes first.
	StepApplication = "application"
	// StepDatabase is the separately approved database step.
	StepDatabase = "database"
)

// MaxOutput bounds Result.Output, in bytes.
const MaxOutput = 64 << 10

// Sentinel errors. Every error an Executor returns wraps exactly one of
// ErrTimeout or ErrFailed, or, when the caller's context ended first,
// context.Canceled or context.DeadlineExceeded (the latter together with
// ErrTimeout).
var (
	// ErrTimeout means the backend gave no answer in time: the rollback may
	// have happened, may still be running, or may not have started.
	ErrTimeout = errors.New("rollback timed out")
	// ErrFailed means the backend could not be run or reported failure (a
	// non-zero exit, a non-2xx answer).
	ErrFailed = errors.New("rollback failed")
)

// Target is what to roll back and why.
type Target struct {
	// Incident is the incident's number.
	Incident int64
	// Service is rolled back from Version to Baseline.
	Service, Version, Baseline string
	// Step is StepApplication or StepDatabase.
	Step string
	// IdempotencyKey is stable per incident and step, such as
	// "incident-12/rollback.application"; see IdempotencyKey.
	IdempotencyKey string
	// Reason is one line: the trigger evidence.
	Reason string
}

// Result is what a successful (or failed) rollback reports for the timeline.
type Result struct {
	// Output is the backend's output, at most about MaxOutput bytes.
	Output string
	// Details are short facts such as "exit_code" or "status_code".
	Details map[string]string
}

// Executor rolls a target back. Implementations are safe for concurrent use
// and honour ctx's cancellation and deadline on top of their own timeout.
type Executor interface {
	Rollback(ctx context.Context, t Target) (Result, error)
}

// IdempotencyKey returns the key of an incident's rollback step, such as
// "incident-12/rollback.application".
func IdempotencyKey(incident int64, step string) string {
	return "incident-" + strconv.FormatInt(incident, 10) + "/rollback." + step
}

// templateData is what argument templates see: {{.Incident}}, {{.Service}},
// {{.Version}}, {{.Baseline}}, {{.Step}} and {{.IdempotencyKey}}.
func templateData(t Target) map[string]any {
	return map[string]any{
		"Incident":       t.Incident,
		"Service":        t.Service,
		"Version":        t.Version,
		"Baseline":       t.Baseline,
		"Step":           t.Step,
		"IdempotencyKey": t.IdempotencyKey,
	}
}

// sampleTarget fills every template key, so that ValidateTemplate finds
// unknown keys and execution errors at load time.
var sampleTarget = Target{
	Incident: 1, Service: "service", Version: "v2", Baseline: "v1",
	Step: StepApplication, IdempotencyKey: IdempotencyKey(1, StepApplication),
}

// Template expands each argument as a text/template over the target's
// {{.Incident}}, {{.Service}}, {{.Version}}, {{.Baseline}}, {{.Step}} and
// {{.IdempotencyKey}}; any other key is an error. Each argument stays one
// argument whatever the values contain. Arguments without "{{" are copied
// as they are. An error names the argument by its index in args.
func Template(args []string, t Target) ([]string, error) {
	data := templateData(t)
	out := make([]string, len(args))
	var b strings.Builder
	for i, arg := range args {
		if !strings.Contains(arg, "{{") {
			out[i] = arg
			continue
		}
		tmpl, err := template.New("argument").Option("missingkey=error").Parse(arg)
		if err != nil {
			return nil, fmt.Errorf("argument %d %q: %w", i, arg, err)
		}
		b.Reset()
		if err := tmpl.Execute(&b, data); err != nil {
			return nil, fmt.Errorf("argument %d %q: %w", i, arg, err)
		}
		out[i] = b.String()
	}
	return out, nil
}

// ValidateTemplate reports whether args parse and expand, without a real
// target: it finds syntax errors and unknown keys at load time.
func ValidateTemplate(args []string) error {
	_, err := Template(args, sampleTarget)
	return err
}
