package trigger

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// TestEvalRunsARepeatedQueryOnce: a query one evaluation sends twice at
// the same time runs once, and the verdict is the one two runs gave.
func TestEvalRunsARepeatedQueryOnce(t *testing.T) {
	t.Run("counter values of a requests query without increase", func(t *testing.T) {
		// Reading the counts as counter values rewrites the errors query;
		// the requests query has no increase() and stays as it is.
		dd := seqDef(t, func(dd *Definition) {
			dd.Sequential.Errors = tmpl(t, `sum(increase(errs{version="{{.Version}}"}[{{.SinceDeploy}}]))`)
			dd.Sequential.Requests = tmpl(t, `sum(reqs{version="{{.Version}}",range="{{.SinceDeploy}}"})`)
			dd.Sequential.BaselineWindow = 0
		})
		dep := d
		dep.Lead = 20 * time.Second // 5m20s for the new version, 5m for the baseline
		const (
			newErrors  = `sum(increase(errs{version="v2"}[5m20s]))`
			newValues  = `sum(last_over_time(errs{version="v2"}[5m20s]))`
			newReqs    = `sum(reqs{version="v2",range="5m20s"})`
			baseErrors = `sum(increase(errs{version="v1"}[5m]))`
			baseReqs   = `sum(reqs{version="v1",range="5m"})`
		)
		f := newFake(map[string]answer{
			newErrors: value(12), newValues: value(10), newReqs: value(1000),
			baseErrors: value(10), baseReqs: value(1000),
		})
		v := newTrigger(t, dd).Eval(context.Background(), t0, dep, f.query)
		if v.Outcome == QueryError {
			t.Fatal(v.Err)
		}
		se := v.Evidence.Sequential
		if se.RequestsValueQuery != newReqs || se.ErrorsValueQuery != newValues {
			t.Fatalf("counter-value queries %q and %q, want %q and %q", se.ErrorsValueQuery, se.RequestsValueQuery, newValues, newReqs)
		}
		if n := f.callsAt(newReqs, t0); n != 1 {
			t.Errorf("the requests query ran %d times at the evaluation time, want 1", n)
		}
		for _, q := range []string{newErrors, newValues, baseErrors, baseReqs} {
			if n := f.callsAt(q, t0); n != 1 {
				t.Errorf("%s ran %d times, want 1", q, n)
			}
		}
		if want := (sequential.Counts{Errors: 10, Requests: 1000}); se.New != want {
			t.Errorf("new version's counts %+v, want %+v (the smaller errors reading)", se.New, want)
		}
	})

	t.Run("baseline live and pre-deploy at the deploy time", func(t *testing.T) {
		// At the deploy time the pre-deploy snapshot is the live query at
		// the same time: it runs once and finds nothing either way.
		f := newFake(map[string]answer{valueQ: value(0.2), baselineQ: none})
		v := newTrigger(t, def(t, ratio(2))).Eval(context.Background(), deployAt, d, f.query)
		if v.Outcome != NotEnoughEvidence || v.Evidence.BaselineMode != BaselineUnavailable {
			t.Fatalf("outcome %v mode %v, want not_enough_evidence, unavailable", v.Outcome, v.Evidence.BaselineMode)
		}
		if n := f.callsAt(baselineQ, deployAt); n != 1 {
			t.Errorf("the baseline query ran %d times at the deploy time, want 1", n)
		}
	})

	t.Run("baseline that is the new version", func(t *testing.T) {
		same := Deploy{Service: "checkout", Version: "v2", Baseline: "v2", At: deployAt}
		f := newFake(map[string]answer{valueQ: value(0.2)})
		v := newTrigger(t, def(t, ratio(2))).Eval(context.Background(), t0, same, f.query)
		if v.Outcome != OK || v.Evidence.BaselineValue == nil || *v.Evidence.BaselineValue != 0.2 || v.Evidence.BaselineMode != BaselineLive {
			t.Fatalf("outcome %v, baseline %v (%v): want ok against a live 0.2", v.Outcome, v.Evidence.BaselineValue, v.Evidence.BaselineMode)
		}
		if n := f.callsAt(valueQ, t0); n != 1 {
			t.Errorf("the value query ran %d times, want 1", n)
		}
	})
}

// TestEvalKeepsTimesAndVersionsApart: answers are shared within one
// evaluation only for the same query at the same time; the same baseline
// query at the deploy time and at the evaluation time both run, each
// version's query is answered for that version, and a later evaluation
// at the same time asks again.
func TestEvalKeepsTimesAndVersionsApart(t *testing.T) {
	t.Run("pre-deploy and live baseline", func(t *testing.T) {
		f := newFake(map[string]answer{
			valueQ:    value(0.05),
			baselineQ: at(deployAt, value(0.02), none), // gone since the deploy
		})
		v := newTrigger(t, def(t, ratio(2))).Eval(context.Background(), t0, d, f.query)
		if v.Evidence.BaselineMode != BaselinePreDeploy || *v.Evidence.BaselineValue != 0.02 || v.Outcome != Violated {
			t.Fatalf("outcome %v, baseline %v (%v): want violated against 0.02 before the deploy", v.Outcome, v.Evidence.BaselineValue, v.Evidence.BaselineMode)
		}
		if f.callsAt(baselineQ, t0) != 1 || f.callsAt(baselineQ, deployAt) != 1 {
			t.Errorf("baseline query ran %d times now and %d at the deploy time, want 1 and 1", f.callsAt(baselineQ, t0), f.callsAt(baselineQ, deployAt))
		}
	})

	t.Run("versions", func(t *testing.T) {
		f := newFake(map[string]answer{valueQ: value(0.05), baselineQ: value(0.01)})
		v := newTrigger(t, def(t, ratio(2))).Eval(context.Background(), t0, d, f.query)
		if *v.Evidence.Value != 0.05 || *v.Evidence.BaselineValue != 0.01 || v.Outcome != Violated {
			t.Fatalf("value %v baseline %v outcome %v, want 0.05, 0.01, violated", *v.Evidence.Value, *v.Evidence.BaselineValue, v.Outcome)
		}
	})

	t.Run("evaluations", func(t *testing.T) {
		val := 0.01
		q := func(_ context.Context, q string, _ time.Time) (source.Result, error) {
			return source.Result{Vector: model.Vector{{Value: model.SampleValue(val)}}}, nil
		}
		tr := newTrigger(t, def(t, above(0.05)))
		first := tr.Eval(context.Background(), t0, d, q)
		val = 0.1
		second := tr.Eval(context.Background(), t0, d, q)
		if first.Outcome != OK || second.Outcome != Violated {
			t.Fatalf("outcomes %v then %v at the same time with a new answer, want ok then violated", first.Outcome, second.Outcome)
		}
	})
}
