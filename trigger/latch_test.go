package trigger

import (
	"context"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// A regressed decision survives a restart: the trigger rebuilt afterwards
// and latched for the same deploy judges it regressed at once, whatever
// the counts read now; another deploy is judged afresh.
func TestSequentialLatchAcrossRestart(t *testing.T) {
	pre := sequential.Counts{Errors: 1800, Requests: 180000}
	bad := linear{rate: 100, p: 0.05, pre: pre}.source()
	good := linear{rate: 100, p: 0.01, pre: pre}.source()
	tr := newTrigger(t, seqDef(t))
	if _, ok := tr.Regressed(); ok {
		t.Fatal("regressed before any evaluation")
	}
	if v := tr.Eval(context.Background(), t0, d, bad.query); v.Outcome != Violated {
		t.Fatalf("outcome %v", v.Outcome)
	}
	at, ok := tr.Regressed()
	if !ok || !at.Equal(t0) {
		t.Fatalf("regressed %v %v", at, ok)
	}
	restarted := newTrigger(t, seqDef(t))
	restarted.Latch(d, at)
	v := restarted.Eval(context.Background(), t0.Add(time.Minute), d, good.query)
	if v.Outcome != Violated || v.State != Firing || !v.Evidence.Sequential.DecidedAt.Equal(t0) {
		t.Fatalf("after the restart: %v %v (%s)", v.Outcome, v.State, v.Summary())
	}
	other := newTrigger(t, seqDef(t))
	other.Latch(d, at)
	v3 := d
	v3.Version = "v3"
	if v := other.Eval(context.Background(), t0.Add(time.Minute), v3, good.query); v.Outcome == Violated {
		t.Fatalf("another deploy inherited the latch: %s", v.Summary())
	}
	other.Reset()
	if v := other.Eval(context.Background(), t0.Add(time.Minute), d, good.query); v.Outcome == Violated {
		t.Fatalf("Reset kept the latch: %s", v.Summary())
	}
}
