package incident

import (
	"testing"
	"time"
)

func TestPrevented(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { x := now.Add(d); return &x }
	// stopped is an incident deployed ago, detected after detect, rolled
	// back and, when recover > 0, recovered recover after the deploy.
	stopped := func(ago, detect, recover time.Duration) Record {
		r := Record{State: Resolved, DeployedAt: now.Add(-ago), DetectedAt: now.Add(-ago + detect), RollbackDoneAt: at(-ago + detect + time.Second)}
		if recover > 0 {
			r.RecoveredSince, r.RecoveredAt = at(-ago+recover), at(-ago+recover+time.Minute)
		}
		return r
	}
	const month = 30 * 24 * time.Hour
	for _, tc := range []struct {
		name string
		recs []Record
		want string
	}{
		{"none", nil, "No bad deploys stopped in the last 30 days."},
		{"one", []Record{stopped(time.Hour, 41*time.Second, 190*time.Second)},
			"1 bad deploy stopped in the last 30 days; detected in 41s, recovered in 3m10s."},
		{"odd count: the middle one", []Record{
			stopped(time.Hour, 30*time.Second, 2*time.Minute),
			stopped(2*time.Hour, 41*time.Second, 190*time.Second),
			stopped(3*time.Hour, 90*time.Second, 10*time.Minute),
		}, "3 bad deploys stopped in the last 30 days; median detection 41s, median time to recovery 3m10s."},
		{"even count: the mean of the middle two; recovery over the recovered", []Record{
			stopped(time.Hour, 20*time.Second, 2*time.Minute),
			stopped(2*time.Hour, 40*time.Second, 4*time.Minute),
			stopped(3*time.Hour, 60*time.Second, 0),
			stopped(4*time.Hour, 80*time.Second, 0),
		}, "4 bad deploys stopped in the last 30 days; median detection 50s, median time to recovery 3m0s."},
		{"left out: older than the span, not rolled back, in the future", []Record{
			stopped(31*24*time.Hour, 10*time.Second, time.Minute),
			{State: Closed, DeployedAt: now.Add(-time.Hour), DetectedAt: now.Add(-time.Hour + time.Minute)},
			{State: Escalated, DeployedAt: now.Add(-time.Hour), DetectedAt: now.Add(-time.Hour + time.Minute)},
			stopped(-time.Hour, 10*time.Second, time.Minute),
			stopped(time.Hour, 15*time.Second, 0),
		}, "1 bad deploy stopped in the last 30 days; detected in 15s."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Prevented(tc.recs, now, month).String(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
	if got := Prevented(nil, now, 24*time.Hour).String(); got != "No bad deploys stopped in the last day." {
		t.Errorf("a day: %q", got)
	}
	p := Prevented([]Record{stopped(time.Hour, 41*time.Second, 190*time.Second), stopped(time.Hour, time.Minute, 0)}, now, month)
	if p.Stopped != 2 || p.Recovered != 1 || p.MedianRecovery != 190*time.Second {
		t.Errorf("%+v", p)
	}
}
