package trigger

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// partialWarning is what Prometheus's remote read and Thanos say when a
// store did not answer.
const partialWarning = "remote read: store 10.0.0.7:10901 did not answer: partial response"

// warned answers v with a warning that the answer may be partial.
func warned(v float64) answer {
	return func(ts time.Time) (source.Result, error) {
		res, err := value(v)(ts)
		res.Warnings = []string{partialWarning}
		return res, err
	}
}

// A partial answer (the healthy series missing, so the ratio reads 1) is
// never a breach: the verdict is not_enough_evidence, says why, and the
// trigger does not move toward firing; the next complete answer is judged.
func TestPartialAnswerIsNotABreach(t *testing.T) {
	tr := newTrigger(t, def(t, above(0.05)))
	f := newFake(map[string]answer{valueQ: seq(warned(1), warned(1), value(0.2))})
	for i, want := range []Outcome{NotEnoughEvidence, NotEnoughEvidence, Violated} {
		v := tr.Eval(context.Background(), tick(i), d, f.query)
		if v.Outcome != want || v.Evidence.Incomplete != (want == NotEnoughEvidence) {
			t.Fatalf("tick %d: %v incomplete=%v, want %v (%s)", i, v.Outcome, v.Evidence.Incomplete, want, v.Summary())
		}
		if want == NotEnoughEvidence {
			if v.State != Inactive || !strings.Contains(v.Summary(), "may be incomplete ("+partialWarning+")") {
				t.Fatalf("tick %d: state %v, summary %s", i, v.State, v.Summary())
			}
		}
	}
	// A warning on an answer that is not a breach changes nothing.
	tr = newTrigger(t, def(t, above(0.05)))
	f = newFake(map[string]answer{valueQ: warned(0.01)})
	if v := tr.Eval(context.Background(), t0, d, f.query); v.Outcome != OK || v.Evidence.Incomplete {
		t.Fatalf("%v incomplete=%v", v.Outcome, v.Evidence.Incomplete)
	}
}

// The sequential test takes no step on counts that may be partial, and a
// regression it found earlier stands.
func TestSequentialSkipsPartialAnswers(t *testing.T) {
	pre := sequential.Counts{Errors: 1800, Requests: 180000}
	src := linear{rate: 100, p: 0.05, pre: pre}.source()
	var partial bool
	q := func(ctx context.Context, qs string, ts time.Time) (source.Result, error) {
		res, err := src.query(ctx, qs, ts)
		if partial {
			res.Warnings = []string{partialWarning}
		}
		return res, err
	}
	tr := newTrigger(t, seqDef(t))
	partial = true
	v := tr.Eval(context.Background(), t0, d, q)
	if v.Outcome != NotEnoughEvidence || !v.Evidence.Incomplete || v.Evidence.Sequential.Decision != sequential.Inconclusive {
		t.Fatalf("partial: %v incomplete=%v %s", v.Outcome, v.Evidence.Incomplete, v.Summary())
	}
	partial = false
	if v = tr.Eval(context.Background(), t0.Add(step), d, q); v.Outcome != Violated {
		t.Fatalf("complete: %v %s", v.Outcome, v.Summary())
	}
	partial = true
	if v = tr.Eval(context.Background(), t0.Add(2*step), d, q); v.Outcome != Violated || v.State != Firing {
		t.Fatalf("partial after the regression: %v %v %s", v.Outcome, v.State, v.Summary())
	}
}
