package trigger

import (
	"context"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/source"
)

// stallText is how the Kubernetes detector describes a stalled rollout.
const stallText = `rollout of v2 (revision 2) exceeded its progress deadline of 30s (ProgressDeadlineExceeded): ` +
	`1 of 2 replicas updated, 2 available: ReplicaSet "checkout-2" has timed out progressing.`

// The progress-deadline trigger fires at once while the judged version's
// rollout is stalled, goes back to inactive when it progresses again, and
// leaves another version's stall alone; it runs no query.
func TestProgressDeadline(t *testing.T) {
	stallOf := func(version string) *Stall {
		return &Stall{Version: version, Deadline: 30 * time.Second, Description: stallText}
	}
	for _, tc := range []struct {
		name string
		// steps: the stall reported before each evaluation (nil: none).
		steps    []*Stall
		want     []State
		changed  []bool
		summary  []string // "" leaves the summary unchecked
		outcomes []Outcome
	}{
		{
			name:     "stall fires, progress clears",
			steps:    []*Stall{nil, stallOf("v2"), stallOf("v2"), nil, nil},
			want:     []State{Inactive, Firing, Firing, Inactive, Inactive},
			changed:  []bool{false, true, false, true, false},
			outcomes: []Outcome{OK, Violated, Violated, OK, OK},
			summary: []string{
				"progress-deadline v2: the rollout is not stalled; inactive",
				"progress-deadline v2: " + stallText + "; firing (was inactive)",
				"progress-deadline v2: " + stallText + "; firing",
				"progress-deadline v2: the rollout is progressing again; inactive (was firing)",
				"progress-deadline v2: the rollout is not stalled; inactive",
			},
		},
		{
			name:     "another version's stall",
			steps:    []*Stall{stallOf("v3")},
			want:     []State{Inactive},
			changed:  []bool{false},
			outcomes: []Outcome{OK},
			summary:  []string{"progress-deadline v2: the rollout is not stalled; inactive"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cur *Stall
			p := NewProgressDeadline("progress-deadline", "SEV-1", func() (Stall, bool) {
				if cur == nil {
					return Stall{}, false
				}
				return *cur, true
			})
			queried := false
			q := func(context.Context, string, time.Time) (source.Result, error) {
				queried = true
				return source.Result{}, nil
			}
			for i, st := range tc.steps {
				cur = st
				ts := tick(i)
				v := p.Eval(context.Background(), ts, d, q)
				if v.Trigger != "progress-deadline" || !v.Deploy.Equal(d) || !v.At.Equal(ts) {
					t.Errorf("step %d: verdict %+v", i, v)
				}
				if v.State != tc.want[i] || p.State() != tc.want[i] || v.Changed != tc.changed[i] || v.Outcome != tc.outcomes[i] {
					t.Errorf("step %d: %s %s changed %v, want %s %s changed %v", i, v.Outcome, v.State, v.Changed, tc.outcomes[i], tc.want[i], tc.changed[i])
				}
				if v.Breach != (v.Outcome == Violated) {
					t.Errorf("step %d: breach %v for %s", i, v.Breach, v.Outcome)
				}
				if s := v.Summary(); s != tc.summary[i] {
					t.Errorf("step %d: summary %q\nwant %q", i, s, tc.summary[i])
				}
				if v.Outcome == Violated {
					c := v.Evidence.Conditions
					if len(c) != 1 || c[0].Name != "progress_deadline" || c[0].Threshold != 30 || !c[0].Breached || c[0].Text != "no rollout progress within 30s" {
						t.Errorf("step %d: conditions %+v", i, c)
					}
				}
				if last, ok := p.Last(); !ok || last.Summary() != v.Summary() {
					t.Errorf("step %d: Last %v %+v", i, ok, last)
				}
			}
			if queried {
				t.Error("the progress-deadline trigger ran a query")
			}
		})
	}
}

// A new deploy, Reset and a reload: the state belongs to one deploy, and
// a reload carries it over so a firing trigger does not fire again.
func TestProgressDeadlineState(t *testing.T) {
	stall := func() (Stall, bool) { return Stall{Version: "v2", Deadline: time.Minute, Description: "stuck"}, true }
	p := NewProgressDeadline("progress-deadline", "SEV-2", stall)
	if p.Name() != "progress-deadline" || p.Severity() != "SEV-2" {
		t.Fatalf("name %q severity %q", p.Name(), p.Severity())
	}
	if v, ok, err := p.Snapshot(context.Background(), d, nil); v != 0 || ok || err != nil {
		t.Errorf("Snapshot = %v %v %v, want nothing taken", v, ok, err)
	}
	if v := p.Eval(context.Background(), t0, d, nil); v.State != Firing || !v.Changed {
		t.Fatalf("first stall: %s changed %v", v.State, v.Changed)
	}

	fresh := NewProgressDeadline("progress-deadline", "SEV-2", stall)
	if fresh.CopyStateFrom(NewProgressDeadline("other", "", stall)) {
		t.Error("copied from a trigger of another name")
	}
	if fresh.CopyStateFrom(newTrigger(t, def(t, above(1)))) {
		t.Error("copied from a metric trigger")
	}
	if fresh.CopyStateFrom(nil) || fresh.CopyStateFrom(fresh) {
		t.Error("copied from nil or itself")
	}
	if !fresh.CopyStateFrom(p) {
		t.Fatal("CopyStateFrom refused the same trigger")
	}
	if v := fresh.Eval(context.Background(), tick(1), d, nil); v.State != Firing || v.Changed {
		t.Errorf("after a reload: %s changed %v, want firing without a change", v.State, v.Changed)
	}

	// Another deploy of the same version starts inactive, and fires anew.
	d2 := d
	d2.At = d.At.Add(time.Hour)
	if v := fresh.Eval(context.Background(), tick(2), d2, nil); v.Previous != Inactive || !v.Changed || v.State != Firing {
		t.Errorf("new deploy: %s → %s changed %v", v.Previous, v.State, v.Changed)
	}

	fresh.Reset()
	if _, ok := fresh.Last(); ok || fresh.State() != Inactive {
		t.Error("Reset kept the state")
	}
	if v := NewProgressDeadline("progress-deadline", "", nil).Eval(context.Background(), t0, d, nil); v.State != Inactive || v.Outcome != OK {
		t.Errorf("without a stall function: %s %s", v.Outcome, v.State)
	}
}
