package approval

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	high, low := 0.5, 0.02
	skip := 0.2
	for _, tc := range []struct {
		name     string
		p        Policy
		r        Request
		now      time.Time
		want     Outcome
		by       string
		deadline time.Time
		reason   string
	}{
		{name: "manual waits without deadline", p: Policy{Mode: Manual}, now: t0.Add(time.Hour), want: Wait, reason: "manual"},
		{name: "empty mode is manual", p: Policy{}, now: t0, want: Wait},
		{name: "auto goes", p: Policy{Mode: Auto}, now: t0, want: Go, by: "policy:auto"},
		{name: "skip above goes under manual", p: Policy{Mode: Manual, SkipAbove: &skip}, r: Request{Trigger: "error-rate", Value: &high},
			now: t0, want: Go, by: "policy:skip_approval_above", reason: "error-rate is 0.5, above skip_approval_above 0.2"},
		{name: "skip above not reached", p: Policy{Mode: Manual, SkipAbove: &skip}, r: Request{Value: &low}, now: t0, want: Wait},
		{name: "skip above without a value", p: Policy{Mode: Manual, SkipAbove: &skip}, now: t0, want: Wait},
		{name: "value equal to skip is not above", p: Policy{Mode: Manual, SkipAbove: &skip}, r: Request{Value: &skip}, now: t0, want: Wait},
		{name: "auto_after before the deadline", p: Policy{Mode: AutoAfter, Timeout: 5 * time.Minute}, now: t0.Add(4 * time.Minute),
			want: Wait, deadline: t0.Add(5 * time.Minute), reason: "within 5m0s: rollback"},
		{name: "auto_after at the deadline goes", p: Policy{Mode: AutoAfter, Timeout: 5 * time.Minute}, now: t0.Add(5 * time.Minute),
			want: Go, by: "policy:auto_after", reason: "no answer within 5m0s"},
		{name: "auto_after hold", p: Policy{Mode: AutoAfter, Timeout: time.Minute, OnTimeout: TimeoutHold}, now: t0.Add(time.Hour),
			want: NoGo, by: "policy:auto_after", reason: "on_timeout is hold"},
		{name: "auto_after with skip above goes at once", p: Policy{Mode: AutoAfter, Timeout: time.Hour, SkipAbove: &skip}, r: Request{Value: &high},
			now: t0, want: Go, by: "policy:skip_approval_above"},
		{name: "database step never automatic", p: Policy{Mode: Auto, SkipAbove: &skip}, r: Request{Step: StepDatabase, Value: &high},
			now: t0.Add(time.Hour), want: Wait, reason: "never automatic"},
		{name: "database step under auto_after has no deadline", p: Policy{Mode: AutoAfter, Timeout: time.Second}, r: Request{Step: StepDatabase},
			now: t0.Add(time.Hour), want: Wait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			r.RequestedAt = t0
			if r.Step == "" {
				r.Step = StepApplication
			}
			d := Decide(tc.p, r, tc.now)
			if d.Outcome != tc.want || d.By != tc.by || !d.Deadline.Equal(tc.deadline) || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Decide = %+v (%s), want %s by %q deadline %v reason ~%q", d, d.Outcome, tc.want, tc.by, tc.deadline, tc.reason)
			}
		})
	}
}

func TestVoteValidate(t *testing.T) {
	for _, tc := range []struct {
		v    Vote
		want string
	}{
		{Vote{Approve: true, By: "token:alice"}, ""},
		{Vote{Approve: false, By: "token:bob", Reason: "load test"}, ""},
		{Vote{Approve: false, By: "token:bob"}, "a no-go needs a reason"},
		{Vote{Approve: false, By: "token:bob", Reason: "  "}, "a no-go needs a reason"},
		{Vote{Approve: true}, "who decided is unknown"},
		{Vote{Approve: true, By: "token:a", Reason: strings.Repeat("x", MaxReason+1)}, "longer than 2000"},
	} {
		err := tc.v.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.v, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidVote) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.v, err, tc.want)
		}
	}
}

type gate struct {
	got []Request
	err error
}

func (g *gate) Request(_ context.Context, r Request) error {
	g.got = append(g.got, r)
	return g.err
}

func TestGatesAskEveryGate(t *testing.T) {
	a, b, c := &gate{}, &gate{err: errors.New("slack down")}, &gate{}
	err := Gates{a, b, c}.Request(context.Background(), Request{Incident: 7})
	if err == nil || !strings.Contains(err.Error(), "slack down") {
		t.Fatalf("error %v", err)
	}
	for i, g := range []*gate{a, b, c} {
		if len(g.got) != 1 || g.got[0].Incident != 7 {
			t.Errorf("gate %d asked %+v", i, g.got)
		}
	}
}
