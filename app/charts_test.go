package app

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/report"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/testenv"
)

// An incident's charts come from its service's own source (here the
// embedded one, scraping the demo under load): each trigger, the firing
// one first, with the incident's markers; the HTML report holds them.
func TestIncidentCharts(t *testing.T) {
	f := start(t)
	if _, _, ok := f.app.ChartSource("cart"); ok {
		t.Fatal("a chart source for a service not configured")
	}
	// v1 serves the demo's load: its traffic is charted once the source
	// has scraped a few seconds of it; v0 never served.
	var rec incident.Record
	var charts []report.IncidentChart
	testenv.Eventually(t, 30*time.Second, func() error {
		now := time.Now()
		rec = incident.Record{ID: 1, Service: "checkout", State: incident.AwaitingApproval, Version: "v1", Baseline: "v0",
			Trigger: "traffic", DeployedAt: now.Add(-20 * time.Second), DetectedAt: now.Add(-10 * time.Second)}
		charts = f.app.IncidentCharts(context.Background(), rec, now)
		if len(charts) != 2 || charts[0].Trigger != "traffic" || !charts[0].Firing || charts[1].Trigger != "error-rate" {
			t.Fatalf("%d charts", len(charts))
		}
		seen := 0
		for _, p := range charts[0].Series[0].Points {
			if !math.IsNaN(p.V) {
				if p.V <= 0 {
					t.Fatalf("traffic %g at %s", p.V, p.T)
				}
				seen++
			}
		}
		if seen < 5 {
			return fmt.Errorf("%d points of traffic", seen)
		}
		return nil
	}, "five seconds of v1's traffic")
	traffic := charts[0]
	if traffic.Threshold == nil || *traffic.Threshold != 1 || !strings.Contains(traffic.Queries[0], `version="v1"`) {
		t.Fatalf("traffic chart: threshold %v, queries %q", traffic.Threshold, traffic.Queries)
	}
	if !strings.Contains(traffic.Note, "baseline v0: no data at all") {
		t.Fatalf("note %q", traffic.Note)
	}
	page, err := report.HTML(rec, report.Options{Charts: charts})
	if err != nil || !strings.Contains(string(page), `data-marker="detected"`) || strings.Count(string(page), "<figure") != 2 {
		t.Fatalf("HTML report: %v", err)
	}
	// An announcement's change reaches the watch's deploy.
	ev, err := f.app.AnnounceChange(context.Background(), "checkout", "v9", "", rollout.Change{Commit: "9f3c2ab", ChangeURL: "https://git.example/pull/1"})
	if err != nil || ev.Change == nil || ev.Change.Commit != "9f3c2ab" {
		t.Fatalf("AnnounceChange = %+v, %v", ev, err)
	}
	if _, err := f.app.AnnounceChange(context.Background(), "cart", "v9", "", rollout.Change{}); err == nil {
		t.Fatal("an unknown service accepted")
	}
}
