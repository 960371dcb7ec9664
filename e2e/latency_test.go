package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/demo"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// A deploy from v1 to a slower v2 (every request 30 ms longer, the same
// error rate) is caught by the latency trigger on the request duration
// histogram in a real Prometheus, and rolled back to v1 (approval auto),
// which recovers.
func TestLatencyTriggerRollsBack(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := startStack(t, modePrometheus, stackOpts{latency: true, receiverURL: rcv.url, rollback: "placeholder", approval: "auto"})
	cfg, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	script := rollbackScript(t, s.dir, s.demoURL, 0)
	if err := os.WriteFile(s.cfgPath, []byte(strings.Replace(string(cfg), `"placeholder"`, fmt.Sprintf("%q", script), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-s.app.Reload(); err != nil {
		t.Fatal(err)
	}
	// The stack waited for Guardian to see v1 serve, so Prometheus has
	// scraped v1's histogram before the deploy.
	if err := s.demo.Deploy(demo.Version{Version: "v2", ErrorRate: 0.005, Latency: 30 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	f := s.waitFiring(90 * time.Second)
	v, le := f.verdict, f.verdict.Evidence.Latency
	if f.deploy.Version != "v2" || f.deploy.Baseline != "v1" || le == nil || v.Trigger != "latency" {
		t.Fatalf("fired %s for %s (baseline %s): %s", v.Trigger, f.deploy.Version, f.deploy.Baseline, v.Summary())
	}
	if le.Decision != sequential.Regressed || le.E < 1/le.Alpha || le.P > le.Alpha || le.Judged <= 0 {
		t.Fatalf("latency evidence: decision %v, e %g, p %g, judged %g: %s", le.Decision, le.E, le.P, le.Judged, v.Summary())
	}
	if v.Evidence.Value == nil || *v.Evidence.Value < 0.025 || v.Evidence.BaselineValue == nil || *v.Evidence.BaselineValue > 0.025 {
		t.Fatalf("p99 %v vs baseline %v, want v2 over 25 ms and v1 under: %s", v.Evidence.Value, v.Evidence.BaselineValue, v.Summary())
	}
	t.Logf("fired %s after the deploy was seen: %s", v.At.Sub(f.deploy.At), v.Summary())
	if !strings.Contains(v.Evidence.Query, `version="v2"`) || !strings.Contains(le.ValueQuery, "last_over_time(") {
		t.Errorf("queries %q, %q", v.Evidence.Query, le.ValueQuery)
	}
	rec := s.waitIncident(1, incident.Resolved, 120*time.Second)
	if rec.Trigger != "latency" || rec.Version != "v2" || rec.Baseline != "v1" || rec.Evidence.Latency == nil || rec.Evidence.Latency.Decision != "regressed" {
		t.Fatalf("incident %d: trigger %s, %s → %s, evidence %+v", rec.ID, rec.Trigger, rec.Baseline, rec.Version, rec.Evidence.Latency)
	}
	if got := s.rollbacks(); len(got) != 1 || got[0] != "incident-1/rollback.application" {
		t.Fatalf("rollback runs %v, want exactly one", got)
	}
	if vs := s.demo.Versions(); len(vs) != 1 || vs[0].Version != "v1" || vs[0].Latency != 0 {
		t.Fatalf("the demo serves %+v after the rollback, want v1", vs)
	}
}
