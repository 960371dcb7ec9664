package trigger

import (
	"context"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// TestSequentialEvidenceQueries checks that a sequential verdict carries
// every query its test used, as sent: the new version's and the live
// baseline's counts since the deploy, and the baseline's counts over the
// baseline window before it, taken once at the deploy (by Snapshot or by
// the first evaluation) and kept by every later verdict.
func TestSequentialEvidenceQueries(t *testing.T) {
	const (
		newErrors    = `sum(increase(http_requests_total{service="checkout",version="v2",code=~"5.."}[5m10s]))`
		newRequests  = `sum(increase(http_requests_total{service="checkout",version="v2"}[5m10s]))`
		liveErrors   = `sum(increase(http_requests_total{service="checkout",version="v1",code=~"5.."}[5m10s]))`
		liveRequests = `sum(increase(http_requests_total{service="checkout",version="v1"}[5m10s]))`
		preErrors    = `sum(increase(http_requests_total{service="checkout",version="v1",code=~"5.."}[30m]))`
		preRequests  = `sum(increase(http_requests_total{service="checkout",version="v1"}[30m]))`
	)
	pre := sequential.Counts{Errors: 180, Requests: 18000}
	for _, tc := range []struct {
		name     string
		snapshot bool // Snapshot takes the pre-deploy counts when the deploy is seen
	}{{"snapshot taken when the deploy was seen", true}, {"snapshot taken by the first evaluation", false}} {
		t.Run(tc.name, func(t *testing.T) {
			src := linear{rate: 100, p: 0.05, pre: pre, live: 10, liveRatio: 0.01}.source()
			tr := newTrigger(t, seqDef(t))
			if tc.snapshot {
				if _, _, err := tr.Snapshot(context.Background(), d, src.query); err != nil {
					t.Fatal(err)
				}
			}
			tr.Eval(context.Background(), t0, d, src.query)
			v := tr.Eval(context.Background(), t0.Add(10*time.Second), d, src.query)
			se := v.Evidence.Sequential
			for _, c := range []struct{ what, got, want string }{
				{"errors", v.Evidence.Query, newErrors},
				{"requests", v.Evidence.VolumeQuery, newRequests},
				{"baseline errors since the deploy", v.Evidence.BaselineQuery, liveErrors},
				{"baseline requests since the deploy", se.BaselineRequestsQuery, liveRequests},
				{"baseline errors before the deploy", se.PreDeployErrorsQuery, preErrors},
				{"baseline requests before the deploy", se.PreDeployRequestsQuery, preRequests},
			} {
				if c.got != c.want {
					t.Errorf("%s query\n%s\nwant\n%s", c.what, c.got, c.want)
				}
			}
			if se.SinceDeploy != 5*time.Minute+10*time.Second || se.BaselineWindow != 30*time.Minute {
				t.Errorf("since deploy %s, baseline window %s", se.SinceDeploy, se.BaselineWindow)
			}
			// The pre-deploy queries shown are the ones that ran, at the deploy.
			if got := src.sent(preErrors + "@"); len(got) != 1 || got[0] != preErrors+"@-5m0s" {
				t.Errorf("pre-deploy errors query sent %q, want once at the deploy", got)
			}
		})
	}
	t.Run("no baseline window: no pre-deploy queries", func(t *testing.T) {
		src := linear{rate: 100, p: 0.05, live: 10, liveRatio: 0.01}.source()
		tr := newTrigger(t, seqDef(t, func(d *Definition) { d.Sequential.BaselineWindow = 0 }))
		se := tr.Eval(context.Background(), t0, d, src.query).Evidence.Sequential
		if se.PreDeployErrorsQuery != "" || se.PreDeployRequestsQuery != "" || se.BaselineWindow != 0 {
			t.Errorf("pre-deploy queries %q %q over %s without a baseline window", se.PreDeployErrorsQuery, se.PreDeployRequestsQuery, se.BaselineWindow)
		}
		if se.BaselineRequestsQuery != `sum(increase(http_requests_total{service="checkout",version="v1"}[5m]))` {
			t.Errorf("live baseline requests query %s", se.BaselineRequestsQuery)
		}
	})
}

func TestSlowerThanIsNotAVerdict(t *testing.T) {
	a, b := def(t, above(0.5)), def(t, above(0.5))
	b.SlowerThan = 500 * time.Millisecond
	if !a.Equal(b) {
		t.Error("a definition differing only in slower_than is not Equal: a reload would lose its pending state")
	}
	b.SlowerThan = -time.Second
	if err := b.Validate(); err == nil {
		t.Error("a negative slower_than is valid")
	}
	got, err := FromSpec(Spec{Name: "p99", Query: `latency{version="{{.Version}}"}`, Above: f64(0.5), SlowerThan: 500 * time.Millisecond})
	if err != nil || got.SlowerThan != 500*time.Millisecond {
		t.Errorf("FromSpec: slower_than %s, %v", got.SlowerThan, err)
	}
}
