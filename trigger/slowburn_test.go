package trigger

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/trigger/sequential"
)

func slowBurn(d *Definition) { d.Sequential.SlowBurn = true }

// burnRate is a slow burn: the baseline's ratio base for the first five
// minutes after the deploy, then growing linearly to 5x at minute 15.
func burnRate(base float64) func(time.Duration) float64 {
	return func(at time.Duration) float64 {
		grow := min(max(at.Minutes()-5, 0)/10, 1)
		return base * (1 + 4*grow)
	}
}

// firstFiring evaluates tr every 10 s for 30 minutes after the deploy and
// returns the seconds since the deploy of its first firing, or +Inf.
func firstFiring(tr *Trigger, src *counter) float64 {
	for i := 1; i <= 180; i++ {
		if v := tr.Eval(context.Background(), deployAt.Add(time.Duration(i)*10*time.Second), d, src.query); v.State == Firing {
			return float64(i * 10)
		}
	}
	return math.Inf(1)
}

// TestSlowBurnDetectsSooner: on a slow burn that starts five minutes after
// the deploy (100 req/s, 1% growing to 5%), the trigger with slow_burn
// fires sooner than without, at the same alpha: the test of all the data
// since the deploy is diluted by the healthy minutes, the change detector
// is not.
func TestSlowBurnDetectsSooner(t *testing.T) {
	const runs = 12
	var with, without []float64
	for run := range runs {
		seed := uint64(run) + 2000
		with = append(with, firstFiring(newTrigger(t, seqDef(t, slowBurn)), simulated(seed, 100, burnRate(0.01), 0.01)))
		without = append(without, firstFiring(newTrigger(t, seqDef(t)), simulated(seed, 100, burnRate(0.01), 0.01)))
	}
	slices.Sort(with)
	slices.Sort(without)
	mw, mo := with[runs/2], without[runs/2]
	t.Logf("median first firing %g s after the deploy with slow_burn, %g s without (burn from 300 s)", mw, mo)
	if math.IsInf(mw, 1) || !(mw < mo) {
		t.Fatalf("slow_burn fired after %g s (median), not sooner than %g s without: %v vs %v", mw, mo, with, without)
	}
}

// TestSlowBurnAA runs the trigger with slow_burn on simulated A/A deploys
// (the new version's error ratio equal to the baseline's) evaluated every
// 10 s for 30 minutes: at alpha 0.05 at most 5% of them may fire, within
// binomial confidence, with the alpha split between the test, the detector
// and the baseline's bound.
func TestSlowBurnAA(t *testing.T) {
	runs := 300
	if testing.Short() {
		runs = 100
	}
	const alpha = 0.05
	fired, burnAlarms := 0, 0
	for run := range runs {
		src := simulated(uint64(run)+5000, 20, func(time.Duration) float64 { return 0.02 }, 0.02)
		tr := newTrigger(t, seqDef(t, alphaOf(alpha), slowBurn))
		for i := 1; i <= 180; i++ {
			v := tr.Eval(context.Background(), deployAt.Add(time.Duration(i)*10*time.Second), d, src.query)
			if v.State == Firing {
				fired++
				if v.Evidence.Sequential.ChangeAlarm {
					burnAlarms++
				}
				break
			}
		}
	}
	limit := int(alpha*float64(runs) + 3*math.Sqrt(float64(runs)*alpha*(1-alpha)))
	t.Logf("%d of %d healthy deploys fired (%d by the change detector), alpha %g", fired, runs, burnAlarms, alpha)
	if fired > limit {
		t.Fatalf("%d of %d healthy deploys fired, more than %d allowed at alpha %g", fired, runs, limit, alpha)
	}
}

// TestSlowBurnEvidence: the detector's share of alpha and its bound, as
// the evidence and the verdict's text show them.
func TestSlowBurnEvidence(t *testing.T) {
	pre := sequential.Counts{Errors: 1800, Requests: 180000}
	_, upper := sequential.Confidence(pre, 0.001/4)
	noBaseline := Deploy{Service: "checkout", Version: "v2", At: deployAt}
	for _, tc := range []struct {
		name      string
		def       Definition
		dep       Deploy
		threshold float64 // 0: no detector
		q0        float64
	}{
		{"against the baseline", seqDef(t, slowBurn), d, 4000, upper},
		{"baseline and a lower limit", seqDef(t, slowBurn, above(0.01)), d, 4000, 0.01},
		{"limit only", seqDef(t, slowBurn, above(0.02)), noBaseline, 2000, 0.02},
		{"neither", seqDef(t, slowBurn), noBaseline, 0, 0},
		{"off", seqDef(t), d, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := linear{rate: 100, p: 0.01, pre: pre}.source()
			tr := newTrigger(t, tc.def)
			v := tr.Eval(context.Background(), t0, tc.dep, src.query)
			se := v.Evidence.Sequential
			if se == nil {
				t.Fatalf("no sequential evidence: %s", v.Summary())
			}
			if tc.threshold == 0 {
				if se.SlowBurn || len(v.Evidence.Conditions) > 1 || strings.Contains(v.Summary(), "change detector") {
					t.Fatalf("a detector ran: %+v, %s", v.Evidence.Conditions, v.Summary())
				}
				return
			}
			if !se.SlowBurn || se.ChangeThreshold != tc.threshold || math.Abs(se.ChangeQ0-tc.q0) > 1e-12 {
				t.Fatalf("detector threshold %g bound %g, want %g and %g", se.ChangeThreshold, se.ChangeQ0, tc.threshold, tc.q0)
			}
			if se.ChangeAlarm || v.Outcome == Violated {
				t.Fatalf("a version at the baseline's rate: %s", v.Summary())
			}
			cs := v.Evidence.Conditions
			if len(cs) != 2 || cs[1].Name != "slow_burn" || cs[1].Threshold != tc.threshold || cs[1].Breached ||
				!strings.HasPrefix(cs[1].Text, "change detector quiet (e ") {
				t.Fatalf("conditions %+v", cs)
			}
			if !strings.Contains(v.Summary(), "; change detector quiet (e ") {
				t.Fatalf("summary %s", v.Summary())
			}
		})
	}
	t.Run("alarm", func(t *testing.T) {
		// 5% from the deploy at 100 req/s: both alarm at once; the
		// detector's finding is rendered.
		tr := newTrigger(t, seqDef(t, slowBurn))
		src := linear{rate: 100, p: 0.05, pre: pre}.source()
		v := tr.Eval(context.Background(), t0, d, src.query)
		se := v.Evidence.Sequential
		if v.Outcome != Violated || !se.ChangeAlarm || !se.ChangeAlarmAt.Equal(t0) || se.ChangeRatio < 2 {
			t.Fatalf("outcome %v alarm %v at %v ratio %g: %s", v.Outcome, se.ChangeAlarm, se.ChangeAlarmAt, se.ChangeRatio, v.Summary())
		}
		if s := v.Summary(); !strings.Contains(s, "change detector alarmed at 12:00:00 (e ") || !strings.Contains(s, "likeliest a change from deploy+0s") {
			t.Fatalf("summary %s", s)
		}
	})
}

// TestSlowBurnRun: the detector's run belongs to the deploy. A reload with
// an equal definition carries it (the evidence continues as if there had
// been no reload); a new deploy starts a new one; turning slow_burn on or
// off is a changed definition, whose state is not copied.
func TestSlowBurnRun(t *testing.T) {
	at := func(i int) time.Time { return deployAt.Add(time.Duration(i) * 10 * time.Second) }
	ctx := context.Background()
	control := newTrigger(t, seqDef(t, slowBurn))
	old := newTrigger(t, seqDef(t, slowBurn))
	srcC := simulated(7, 50, burnRate(0.01), 0.01)
	srcO := simulated(7, 50, burnRate(0.01), 0.01)
	for i := 1; i <= 40; i++ {
		control.Eval(ctx, at(i), d, srcC.query)
		old.Eval(ctx, at(i), d, srcO.query)
	}
	cur := newTrigger(t, seqDef(t, slowBurn))
	if !cur.CopyStateFrom(old) {
		t.Fatal("CopyStateFrom refused an equal definition")
	}
	for i := 41; i <= 50; i++ {
		want := control.Eval(ctx, at(i), d, srcC.query).Evidence.Sequential
		got := cur.Eval(ctx, at(i), d, srcO.query).Evidence.Sequential
		if got.ChangeE != want.ChangeE || got.ChangeStart != want.ChangeStart {
			t.Fatalf("tick %d after the reload: e %g from %v, without a reload %g from %v", i, got.ChangeE, got.ChangeStart, want.ChangeE, want.ChangeStart)
		}
	}
	// A fresh trigger has seen nothing of the deploy: its first tick holds
	// everything since the deploy, judged from a new run.
	fresh := newTrigger(t, seqDef(t, slowBurn)).Eval(ctx, at(51), d, srcO.query).Evidence.Sequential
	carried := cur.Eval(ctx, at(51), d, srcO.query).Evidence.Sequential
	if fresh.ChangeE == carried.ChangeE {
		t.Fatalf("a fresh run and the carried one agree (e %g): the run was not carried", fresh.ChangeE)
	}
	// Another deploy starts over: the same as a fresh trigger's first tick.
	other := d
	other.Version = "v3"
	srcN := simulated(8, 50, burnRate(0.01), 0.01)
	srcF := simulated(8, 50, burnRate(0.01), 0.01)
	got := cur.Eval(ctx, at(52), other, srcN.query).Evidence.Sequential
	want := newTrigger(t, seqDef(t, slowBurn)).Eval(ctx, at(52), other, srcF.query).Evidence.Sequential
	if got.ChangeE != want.ChangeE || got.ChangeE == carried.ChangeE {
		t.Fatalf("new deploy: e %g, a fresh trigger's %g", got.ChangeE, want.ChangeE)
	}
	if newTrigger(t, seqDef(t)).CopyStateFrom(old) {
		t.Fatal("CopyStateFrom copied across slow_burn turned off")
	}
	if !seqDef(t, slowBurn).Equal(seqDef(t, slowBurn)) || seqDef(t, slowBurn).Equal(seqDef(t)) {
		t.Fatal("Equal ignores slow_burn")
	}
}

// TestSlowBurnFromSpec: slow_burn reaches the definition.
func TestSlowBurnFromSpec(t *testing.T) {
	dd, err := FromSpec(Spec{Name: "errors", Sequential: &SequentialSpec{
		Errors: errorsT, Requests: requestsT, Alpha: 0.001, MinEffect: BaselineLimit{Ratio: 1.5, Text: "1.5x"}, SlowBurn: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !dd.Sequential.SlowBurn {
		t.Fatal("slow_burn lost")
	}
}
