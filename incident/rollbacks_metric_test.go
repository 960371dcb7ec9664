package incident

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/testenv"
)

// guardian_rollbacks_total counts each rollback step once it ends, by
// service, step and result; Prevented counts the rolled-back incident.
func TestRollbacksTotal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		state  State
		result string
		line   string
	}{
		{"succeeded", nil, Resolved, "succeeded", "1 bad deploy stopped in the last 30 days; detected in "},
		{"failed", fmt.Errorf("%w: exit status 3", executor.ErrFailed), Failed, "failed", "No bad deploys stopped in the last 30 days."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			h := newHarness(t, nil, approval.Policy{Mode: approval.Auto}, false, func(o *Options) { o.Registry = reg })
			h.app.err = tc.err
			h.waitState(h.declare().ID, tc.state)
			want := fmt.Sprintf(`# HELP guardian_rollbacks_total Rollbacks run, by step and result (succeeded, failed, unknown).
# TYPE guardian_rollbacks_total counter
guardian_rollbacks_total{result=%q,service="checkout",step="application"} 1
`, tc.result)
			// Counted once the transition is saved, after the record is readable.
			testenv.Eventually(t, 5*time.Second, func() error {
				return testutil.GatherAndCompare(reg, strings.NewReader(want), "guardian_rollbacks_total")
			}, "the rollback counted")
			recs, err := h.m.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := Prevented(recs, time.Now(), 30*24*time.Hour).String()
			if !strings.HasPrefix(got, tc.line) {
				t.Errorf("Prevented: %q, want it to begin %q", got, tc.line)
			}
		})
	}
}
