package trigger

import (
	"context"
	"fmt"
	"time"

	"github.com/rollback-guardian/guardian/source"
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
	// memo holds the answers of this evaluation so far, shared with the
	// contexts derived from it (atDeploy); nil: none are kept.
	memo *queryMemo
}

// newEvalContext returns the context of one evaluation (or snapshot) at at.
func newEvalContext(trigger string, d Deploy, at time.Time, q QueryFunc) *evalContext {
	c := &struct {
		ec   evalContext
		memo queryMemo
	}{}
	c.ec = evalContext{trigger: trigger, deploy: d, at: at, query: q, memo: &c.memo}
	return &c.ec
}

// queryMemo keeps the successful answers of one evaluation, so that a query
// it sends twice at the same time (a counter-values reading of a query
// without increase(), a baseline that is the new version, the baseline's
// live and pre-deploy queries when the evaluation is at the deploy time)
// runs once. A failed query is not kept: every caller gives up on the
// evaluation at the first failure.
type queryMemo struct {
	list []memoEntry
	buf  [4]memoEntry // room for a threshold evaluation's queries
}

type memoEntry struct {
	q   string
	at  time.Time
	res source.Result
}

// run runs q at ec.at, or returns its answer earlier in this evaluation.
func (ec *evalContext) run(ctx context.Context, q string) (source.Result, error) {
	a := ec.memo
	if a == nil {
		return ec.query(ctx, q, ec.at)
	}
	for _, x := range a.list {
		if x.q == q && x.at.Equal(ec.at) {
			return x.res, nil
		}
	}
	res, err := ec.query(ctx, q, ec.at)
	if err == nil {
		if a.list == nil {
			a.list = a.buf[:0]
		}
		a.list = append(a.list, memoEntry{q: q, at: ec.at, res: res})
	}
	return res, err
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
	res, err := ec.run(ctx, qs)
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
// latency test when it has one, its threshold conditions otherwise. The
// method keeps d, which must not change afterwards (the Trigger's own).
func (d *Definition) newMethod() (method, error) {
	if d.Sequential != nil {
		return newCountTest(d)
	}
	if d.Latency != nil {
		return newLatencyTest(d)
	}
	return &thresholds{def: d}, nil
}
