package trigger

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/source"
)

func TestStateMachine(t *testing.T) {
	hi, lo := value(0.1), value(0.01)
	for _, tc := range []struct {
		name   string
		forDur time.Duration
		values []answer
		want   []State
	}{
		{"pending then firing once For has passed", 30 * time.Second,
			[]answer{hi, hi, hi, hi, hi},
			[]State{Pending, Pending, Pending, Firing, Firing}},
		{"For 0 fires at once", 0,
			[]answer{hi, hi},
			[]State{Firing, Firing}},
		{"OK resets pending and For starts again", 30 * time.Second,
			[]answer{hi, hi, lo, hi, hi, hi, hi},
			[]State{Pending, Pending, Inactive, Pending, Pending, Pending, Firing}},
		{"OK resolves firing", 0,
			[]answer{hi, lo, lo},
			[]State{Firing, Inactive, Inactive}},
		{"OK stays inactive", 30 * time.Second,
			[]answer{lo, lo},
			[]State{Inactive, Inactive}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrigger(t, def(t, above(0.05), forDur(tc.forDur)))
			f := newFake(map[string]answer{valueQ: seq(tc.values...)})
			vs := run(tr, f.query, len(tc.values))
			if got := states(vs); !slices.Equal(got, tc.want) {
				t.Fatalf("states %v, want %v", got, tc.want)
			}
			prev := Inactive
			for i, v := range vs {
				if v.Previous != prev || v.Changed != (v.State != prev) {
					t.Errorf("tick %d: previous %v changed %v, want previous %v changed %v", i, v.Previous, v.Changed, prev, v.State != prev)
				}
				if v.Resolved() != (prev == Firing && v.State == Inactive) {
					t.Errorf("tick %d: Resolved() = %v", i, v.Resolved())
				}
				prev = v.State
			}
			if tr.State() != tc.want[len(tc.want)-1] {
				t.Errorf("State() = %v, want %v", tr.State(), tc.want[len(tc.want)-1])
			}
		})
	}
}

func TestActiveSince(t *testing.T) {
	hi, lo := value(0.1), value(0.01)
	tr := newTrigger(t, def(t, above(0.05), forDur(time.Minute)))
	f := newFake(map[string]answer{valueQ: seq(hi, hi, lo, hi)})
	vs := run(tr, f.query, 4)
	want := []time.Time{tick(0), tick(0), {}, tick(3)}
	for i, v := range vs {
		if !v.Evidence.ActiveSince.Equal(want[i]) {
			t.Errorf("tick %d: ActiveSince %v, want %v", i, v.Evidence.ActiveSince, want[i])
		}
	}
}

func TestConditions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mods     []func(*Definition)
		value    float64
		baseline float64
		want     Outcome
		checks   []Check // Name, Threshold, Breached compared
	}{
		{"above breached alone", []func(*Definition){above(0.05)}, 0.2, 0, Violated,
			[]Check{{Name: "above", Threshold: 0.05, Breached: true}}},
		{"above equal is not breached", []func(*Definition){above(0.05)}, 0.05, 0, OK,
			[]Check{{Name: "above", Threshold: 0.05}}},
		{"below breached", []func(*Definition){below(0.99)}, 0.9, 0, Violated,
			[]Check{{Name: "below", Threshold: 0.99, Breached: true}}},
		{"+Inf is a value", []func(*Definition){above(0.05)}, math.Inf(1), 0, Violated,
			[]Check{{Name: "above", Threshold: 0.05, Breached: true}}},
		{"above and baseline both breached", []func(*Definition){above(0.05), ratio(2)}, 0.2, 0.005, Violated,
			[]Check{{Name: "above", Threshold: 0.05, Breached: true}, {Name: "above_baseline", Threshold: 0.01, Breached: true}}},
		{"above breached but the baseline shares it: OK", []func(*Definition){above(0.05), ratio(2)}, 0.2, 0.15, OK,
			[]Check{{Name: "above", Threshold: 0.05, Breached: true}, {Name: "above_baseline", Threshold: 0.3}}},
		{"baseline breached but not above: OK", []func(*Definition){above(0.05), ratio(2)}, 0.03, 0.001, OK,
			[]Check{{Name: "above", Threshold: 0.05}, {Name: "above_baseline", Threshold: 0.002, Breached: true}}},
		{"ratio exactly met is not breached", []func(*Definition){ratio(2)}, 0.02, 0.01, OK,
			[]Check{{Name: "above_baseline", Threshold: 0.02}}},
		{"delta breached", []func(*Definition){delta(0.02)}, 0.04, 0.01, Violated,
			[]Check{{Name: "above_baseline", Threshold: 0.03, Breached: true}}},
		{"delta not breached", []func(*Definition){delta(0.02)}, 0.025, 0.01, OK,
			[]Check{{Name: "above_baseline", Threshold: 0.03}}},
		{"zero baseline with a ratio: any error breaches", []func(*Definition){ratio(2)}, 0.001, 0, Violated,
			[]Check{{Name: "above_baseline", Threshold: 0, Breached: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrigger(t, def(t, tc.mods...))
			f := newFake(map[string]answer{valueQ: value(tc.value), baselineQ: value(tc.baseline)})
			v := tr.Eval(context.Background(), t0, d, f.query)
			if v.Outcome != tc.want {
				t.Fatalf("outcome %v, want %v (%s)", v.Outcome, tc.want, v.Summary())
			}
			if len(v.Evidence.Conditions) != len(tc.checks) {
				t.Fatalf("conditions %+v, want %+v", v.Evidence.Conditions, tc.checks)
			}
			for i, c := range v.Evidence.Conditions {
				w := tc.checks[i]
				if c.Name != w.Name || math.Abs(c.Threshold-w.Threshold) > 1e-12 || c.Breached != w.Breached || c.Skipped {
					t.Errorf("condition %d = %+v, want %+v", i, c, w)
				}
			}
			if v.Evidence.Value == nil || *v.Evidence.Value != tc.value {
				t.Errorf("evidence value %v, want %v", v.Evidence.Value, tc.value)
			}
		})
	}
}

func TestBaselineModes(t *testing.T) {
	type want struct {
		outcome   Outcome
		mode      BaselineMode
		baseline  *float64
		skipped   bool
		snapshots int // baseline queries at the deploy time over all ticks
	}
	for _, tc := range []struct {
		name     string
		mods     []func(*Definition)
		deploy   Deploy
		baseline answer
		want     want
	}{
		{"live: the baseline still serves", []func(*Definition){ratio(2)}, d,
			value(0.01),
			want{Violated, BaselineLive, f64(0.01), false, 0}},
		{"pre_deploy: rolled away, value at the deploy time, queried once", []func(*Definition){ratio(2)}, d,
			at(deployAt, value(0.02), none),
			want{Violated, BaselinePreDeploy, f64(0.02), false, 1}},
		{"pre_deploy: live NaN (no traffic left) falls back", []func(*Definition){ratio(2)}, d,
			at(deployAt, value(0.02), nan),
			want{Violated, BaselinePreDeploy, f64(0.02), false, 1}},
		{"pre_deploy above the value: OK", []func(*Definition){ratio(2)}, d,
			at(deployAt, value(0.2), none),
			want{OK, BaselinePreDeploy, f64(0.2), false, 1}},
		{"unavailable, baseline only: not enough evidence, asked once", []func(*Definition){ratio(2)}, d,
			none,
			want{NotEnoughEvidence, BaselineUnavailable, nil, true, 1}},
		{"unavailable with an absolute condition: judged on it alone", []func(*Definition){above(0.05), ratio(2)}, d,
			none,
			want{Violated, BaselineUnavailable, nil, true, 1}},
		{"unavailable with an absolute condition not breached: OK", []func(*Definition){above(0.5), ratio(2)}, d,
			none,
			want{OK, BaselineUnavailable, nil, true, 1}},
		{"unknown baseline version: unavailable, never queried", []func(*Definition){ratio(2)},
			Deploy{Service: "checkout", Version: "v2", At: deployAt},
			nil,
			want{NotEnoughEvidence, BaselineUnavailable, nil, true, 0}},
		{"no deploy time: no snapshot", []func(*Definition){ratio(2)},
			Deploy{Service: "checkout", Version: "v2", Baseline: "v1"},
			none,
			want{NotEnoughEvidence, BaselineUnavailable, nil, true, 0}},
		{"no baseline condition: not consulted", []func(*Definition){above(0.05)}, d,
			nil,
			want{Violated, BaselineNone, nil, false, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrigger(t, def(t, tc.mods...))
			answers := map[string]answer{valueQ: value(0.1)}
			if tc.baseline != nil {
				answers[baselineQ] = tc.baseline
			}
			f := newFake(answers)
			var v Verdict
			for i := range 3 {
				v = tr.Eval(context.Background(), tick(i), tc.deploy, f.query)
			}
			ev := v.Evidence
			if v.Outcome != tc.want.outcome || ev.BaselineMode != tc.want.mode {
				t.Fatalf("outcome %v mode %v, want %v %v (%s)", v.Outcome, ev.BaselineMode, tc.want.outcome, tc.want.mode, v.Summary())
			}
			if !floatPtrEqual(ev.BaselineValue, tc.want.baseline) {
				t.Errorf("baseline value %v, want %v", ev.BaselineValue, tc.want.baseline)
			}
			if tc.want.mode != BaselineNone {
				c := ev.Conditions[len(ev.Conditions)-1]
				if c.Name != "above_baseline" || c.Skipped != tc.want.skipped {
					t.Errorf("baseline condition %+v, want skipped=%v", c, tc.want.skipped)
				}
				if c.Skipped && v.Outcome == Violated && c.Breached {
					t.Errorf("a skipped condition must not be breached: %+v", c)
				}
			}
			if got := f.callsAt(baselineQ, deployAt); got != tc.want.snapshots {
				t.Errorf("%d snapshot queries at the deploy time, want %d", got, tc.want.snapshots)
			}
			if tc.want.outcome == NotEnoughEvidence && v.State != Inactive {
				t.Errorf("state %v after not enough evidence", v.State)
			}
		})
	}
}

// TestSnapshotTakenAtDeploy: the daemon snapshots when it sees the deploy; later
// the source has forgotten that time (the embedded source's short history),
// yet Eval judges against the snapshot.
func TestSnapshotTakenAtDeploy(t *testing.T) {
	tr := newTrigger(t, def(t, ratio(2)))
	early := newFake(map[string]answer{baselineQ: at(deployAt, value(0.004), failing)})
	got, ok, err := tr.Snapshot(context.Background(), d, early.query)
	if err != nil || !ok || got != 0.004 {
		t.Fatalf("Snapshot = %v, %v, %v; want 0.004, true, nil", got, ok, err)
	}
	// Asked again: remembered, not queried again.
	if _, _, err := tr.Snapshot(context.Background(), d, early.query); err != nil || early.callsAt(baselineQ, deployAt) != 1 {
		t.Fatalf("second Snapshot: err %v, %d queries", err, early.callsAt(baselineQ, deployAt))
	}
	late := newFake(map[string]answer{valueQ: value(0.1), baselineQ: none})
	v := tr.Eval(context.Background(), t0, d, late.query)
	if v.Evidence.BaselineMode != BaselinePreDeploy || !floatPtrEqual(v.Evidence.BaselineValue, f64(0.004)) || v.Outcome != Violated {
		t.Fatalf("got %v, mode %v, baseline %v; want violated against the 0.004 snapshot", v.Outcome, v.Evidence.BaselineMode, v.Evidence.BaselineValue)
	}
	if n := late.callsAt(baselineQ, deployAt); n != 0 {
		t.Errorf("Eval queried the deploy time %d times despite the snapshot", n)
	}

	// Reset (new deploy) drops the snapshot.
	tr.Reset()
	v = tr.Eval(context.Background(), t0, d, late.query)
	if v.Evidence.BaselineMode != BaselineUnavailable || late.callsAt(baselineQ, deployAt) != 1 {
		t.Fatalf("after Reset: mode %v, %d snapshot queries; want unavailable, 1", v.Evidence.BaselineMode, late.callsAt(baselineQ, deployAt))
	}

	// Snapshot without a baseline condition or baseline version: nothing to do.
	plain := newTrigger(t, def(t, above(1)))
	if _, ok, err := plain.Snapshot(context.Background(), d, early.query); ok || err != nil {
		t.Errorf("Snapshot without above_baseline = %v, %v", ok, err)
	}
}

func TestBaselineQueryErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		baseline answer
		want     string
	}{
		{"live query fails", failing, "baseline query"},
		{"snapshot query fails", at(deployAt, failing, none), "baseline snapshot query"},
		{"live query returns several series", series(2), "baseline query returned 2 series"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrigger(t, def(t, above(0.05), ratio(2), forDur(time.Minute)))
			f := newFake(map[string]answer{valueQ: value(0.1), baselineQ: tc.baseline})
			v := tr.Eval(context.Background(), t0, d, f.query)
			if v.Outcome != QueryError || v.Err == nil || !strings.Contains(v.Err.Error(), tc.want) {
				t.Fatalf("outcome %v err %v, want query_error mentioning %q", v.Outcome, v.Err, tc.want)
			}
			if v.State != Inactive {
				t.Errorf("state %v: a baseline failure must not fall back to the absolute condition", v.State)
			}
		})
	}
	t.Run("failed snapshot is retried, then remembered", func(t *testing.T) {
		tr := newTrigger(t, def(t, ratio(2)))
		calls := 0
		snap := func(ts time.Time) (source.Result, error) {
			calls++
			if calls == 1 {
				return failing(ts)
			}
			return value(0.01)(ts)
		}
		f := newFake(map[string]answer{valueQ: value(0.1), baselineQ: at(deployAt, snap, none)})
		vs := run(tr, f.query, 4)
		if vs[0].Outcome != QueryError || !errors.Is(vs[0].Err, errDown) {
			t.Fatalf("tick 0: %v %v, want query_error wrapping %v", vs[0].Outcome, vs[0].Err, errDown)
		}
		for _, v := range vs[1:] {
			if v.Outcome != Violated || v.Evidence.BaselineMode != BaselinePreDeploy {
				t.Fatalf("got %v %v, want violated against pre_deploy", v.Outcome, v.Evidence.BaselineMode)
			}
		}
		if n := f.callsAt(baselineQ, deployAt); n != 2 {
			t.Errorf("%d snapshot queries, want 2 (the failure is not remembered, the value is)", n)
		}
	})
}
