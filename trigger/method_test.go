package trigger

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// streak is a judging method of its own, plugged in through the method
// interface: a deploy is violated once the value of its query has been
// above 1 at need evaluations in a row. The streak is its per-deploy
// state; it records what the trigger hands it.
type streak struct {
	need int

	mu     sync.Mutex
	deploy Deploy
	n      int
	seen   []time.Time // ec.at of every judge
	events []string    // begin, reset, copyFrom
}

const streakQ = "streak_value"

func (m *streak) judge(ctx context.Context, ec *evalContext, ev *Evidence) (Outcome, error) {
	m.mu.Lock()
	m.seen = append(m.seen, ec.at)
	m.mu.Unlock()
	ev.Query = streakQ
	v, ok, err := ec.sample(ctx, "streak", streakQ, ev)
	switch {
	case err != nil:
		return QueryError, err
	case !ok:
		return NoData, nil
	}
	ev.Value = &v
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.deploy.Equal(ec.deploy) {
		m.deploy, m.n = ec.deploy, 0
	}
	if v <= 1 {
		m.n = 0
		ev.Detail = "no streak"
		return OK, nil
	}
	m.n++
	ev.Detail = fmt.Sprintf("streak %d of %d", m.n, m.need)
	if m.n < m.need {
		return NotEnoughEvidence, nil
	}
	return Violated, nil
}

func (m *streak) snapshot(context.Context, *evalContext) (float64, bool, error) { return 0, false, nil }

func (m *streak) begin(d Deploy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deploy, m.n = d, 0
	m.events = append(m.events, "begin "+d.Version)
}

func (m *streak) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deploy, m.n = Deploy{}, 0
	m.events = append(m.events, "reset")
}

func (m *streak) copyFrom(old method) {
	o := old.(*streak)
	o.mu.Lock()
	dep, n := o.deploy, o.n
	o.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deploy, m.n = dep, n
	m.events = append(m.events, "copyFrom")
}

// withStreak returns a trigger whose definition (For 20s; its threshold
// conditions would fail on the unknown query) is judged by a streak.
func withStreak(t *testing.T, need int) (*Trigger, *streak) {
	t.Helper()
	tr := newTrigger(t, def(t, above(0.05), forDur(2*step)))
	m := &streak{need: need}
	tr.m = m
	return tr, m
}

// A method plugged into the seam drives the state machine: its outcomes
// move the trigger from inactive through pending to firing after For, its
// evidence is the verdict's, and the trigger tells it when the deploy
// changes, when it is reset and when a reload copies it.
func TestMethodDrivesStateMachine(t *testing.T) {
	tr, m := withStreak(t, 2)
	f := newFake(map[string]answer{streakQ: seq(value(2), value(2), value(2), value(2), value(0.5))})
	vs := run(tr, f.query, 5)

	wantOutcomes := []Outcome{NotEnoughEvidence, Violated, Violated, Violated, OK}
	wantStates := []State{Inactive, Pending, Pending, Firing, Inactive}
	var outcomes []Outcome
	for _, v := range vs {
		outcomes = append(outcomes, v.Outcome)
	}
	if !slices.Equal(outcomes, wantOutcomes) || !slices.Equal(states(vs), wantStates) {
		t.Fatalf("outcomes %v states %v, want %v %v", outcomes, states(vs), wantOutcomes, wantStates)
	}
	if !vs[2].Evidence.ActiveSince.Equal(tick(1)) || !vs[3].Evidence.ActiveSince.Equal(tick(1)) {
		t.Errorf("active since %v, %v; want %v (the first violation)", vs[2].Evidence.ActiveSince, vs[3].Evidence.ActiveSince, tick(1))
	}
	if s := vs[3].Summary(); !strings.Contains(s, "streak 4 of 2") || !strings.HasSuffix(s, "firing (was pending)") {
		t.Errorf("summary %q lacks the method's evidence or the state", s)
	}
	if v := vs[3].Evidence.Value; v == nil || *v != 2 || vs[3].Evidence.Query != streakQ {
		t.Errorf("evidence %+v, want the method's query and value", vs[3].Evidence)
	}
	if want := []time.Time{tick(0), tick(1), tick(2), tick(3), tick(4)}; !slices.EqualFunc(m.seen, want, time.Time.Equal) {
		t.Errorf("the method judged at %v, want %v", m.seen, want)
	}

	// A reload keeps the streak: the copy violates at its first evaluation.
	for range 2 {
		tr.Eval(context.Background(), tick(5), d, newFake(map[string]answer{streakQ: value(2)}).query)
	}
	fresh, fm := withStreak(t, 2)
	if !fresh.CopyStateFrom(tr) {
		t.Fatal("CopyStateFrom refused an equal definition")
	}
	if v := fresh.Eval(context.Background(), tick(6), d, newFake(map[string]answer{streakQ: value(2)}).query); v.Outcome != Violated || v.State != Pending {
		t.Errorf("after the reload: %v %v (%s), want violated and pending", v.Outcome, v.State, v.Summary())
	}

	// Another deploy starts a new streak; Reset forgets everything.
	v3 := d
	v3.Version = "v3"
	if v := tr.Eval(context.Background(), tick(7), v3, newFake(map[string]answer{streakQ: value(2)}).query); v.Outcome != NotEnoughEvidence || v.State != Inactive {
		t.Errorf("new deploy: %v %v, want a new streak", v.Outcome, v.State)
	}
	tr.Reset()
	if want := []string{"begin v2", "begin v3", "reset"}; !slices.Equal(m.events, want) {
		t.Errorf("the method was told %q, want %q", m.events, want)
	}
	if want := []string{"copyFrom"}; !slices.Equal(fm.events, want) {
		t.Errorf("the reloaded method was told %q, want %q", fm.events, want)
	}
}
