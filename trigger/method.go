package trigger

import (
	"context"
	"fmt"
	"time"
)

// method is how a Trigger judges a deploy: the seam between the state
// machine, which Trigger owns, and the evidence. Evidence goes in (the
// deploy, the evaluation time, the query function, as one evalContext);
// an Outcome and the Evidence come out. Each judging method lives in its
// own file: thresholds (threshold.go), the sequential count test
// (countTest, sequential.go) and the latency test (latencyTest,
// latencytest.go). Definition.newMethod picks one.
//
// A method may keep state about the deploy it judges (a running test, a
// baseline snapshot, queries rendered for the deploy), guarded by its own
// mutex; the Trigger tells it when the deploy changes (begin), when every
// deploy is forgotten (reset) and when a reload hands it an older method's
// state (copyFrom). The Trigger never holds a method's lock, and a method
// never calls back into its Trigger.
type method interface {
	// judge judges ec.deploy once at ec.at: it runs its queries through
	// ec.query, fills ev (the common fields and its own evidence struct)
	// and returns the outcome; the error explains a QueryError. judge is
	// never called concurrently with itself, begin, reset or copyFrom.
	judge(ctx context.Context, ec *evalContext, ev *Evidence) (Outcome, error)
	// snapshot takes, at most once per deploy, what judge compares with
	// from before ec.deploy (ec.at is the deploy time) and keeps it for
	// that deploy; ok is false when there is nothing to take. A failed
	// query is returned and not kept. It may run at any time.
	snapshot(ctx context.Context, ec *evalContext) (value float64, ok bool, err error)
	// begin is called when the trigger starts judging d, a deploy other
	// than the one it judged last: the method drops its judgement in
	// progress and what it kept for other deploys.
	begin(d Deploy)
	// reset forgets every deploy.
	reset()
	// copyFrom takes over old's state across a config reload; old is the
	// method of an Equal definition, so of the same type.
	copyFrom(old method)
}

// evalContext is what one evaluation (or snapshot) knows before querying:
// the trigger, the deploy, the time and the query function.
type evalContext struct {
	// trigger is the trigger's name, for errors.
	trigger string
	deploy  Deploy
	// at is the evaluation time: queries run at it.
	at    time.Time
	query QueryFunc
}

// atDeploy returns ec evaluated at the deploy time, where the baseline's
// pre-deploy values are read.
func (ec *evalContext) atDeploy() *evalContext {
	c := *ec
	c.at = ec.deploy.At
	return &c
}

// sample runs one instant query at ec.at and returns its single sample; ok
// is false for an empty vector. More than one series is an error wrapping
// ErrSeriesCount (see source.Result.Single). The engine's warnings go to
// ev.
func (ec *evalContext) sample(ctx context.Context, what, qs string, ev *Evidence) (float64, bool, error) {
	res, err := ec.query(ctx, qs, ec.at)
	ev.Warnings = append(ev.Warnings, res.Warnings...)
	if err != nil {
		return 0, false, fmt.Errorf("trigger %q: %s query at %s: %w", ec.trigger, what, ec.at.UTC().Format(time.RFC3339), err)
	}
	v, ok, err := res.Single()
	if err != nil {
		return 0, false, fmt.Errorf("trigger %q: %s %w", ec.trigger, what, err)
	}
	return v, ok, nil
}

// newMethod returns the method that judges d: its sequential test or its
// latency test when it has one, its threshold conditions otherwise.
func (d Definition) newMethod() (method, error) {
	if d.Sequential != nil {
		return newCountTest(d)
	}
	if d.Latency != nil {
		return newLatencyTest(d)
	}
	return &thresholds{def: d}, nil
}
