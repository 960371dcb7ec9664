package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/notify/alertmanager"
	"github.com/rollback-guardian/guardian/testenv"
)

// addAlertmanager configures the Alertmanager receiver "am" for the
// service, next to the webhook, with Guardian's external URL for the
// links, and reloads.
func (s *stack) addAlertmanager(amURL string, resend time.Duration) {
	s.t.Helper()
	s.editConfig(
		"global:\n", "global:\n  external_url: "+s.apiURL+"\n",
		"notifiers:\n", fmt.Sprintf("notifiers:\n  - name: am\n    alertmanager:\n      urls: [%q]\n      resend_interval: %s\n      timeout: 2s\n", amURL, resend),
		"notify: [oncall]", "notify: [oncall, am]",
	)
}

// amLabels are the labels of incident id's alert.
func amLabels(rec incident.Record) map[string]string {
	return map[string]string{"alertname": alertmanager.AlertName, "service": rec.Service, "version": rec.Version,
		"baseline": rec.Baseline, "severity": rec.Severity, "incident": strconv.FormatInt(rec.ID, 10)}
}

// A bad deploy's incident reaches on-call through a real Alertmanager's
// routing, with its labels and working links; Alertmanager restarted while
// the incident awaits the go has the alert firing again within a resend
// interval; the resolution reaches on-call as a resolved notification.
func TestAlertmanagerIncident(t *testing.T) {
	t.Parallel()
	arcv := testenv.NewAlertReceiver(t)
	am := testenv.StartAlertmanager(t, testenv.AlertmanagerOptions{WebhookURL: arcv.URL})
	rcv := newReceiver(t)
	s := startStack(t, modeEmbedded, stackOpts{receiverURL: rcv.url, rollback: "placeholder"})
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))
	const resend = 2 * time.Second
	s.addAlertmanager(am.URL, resend)

	s.deploy("v2", 0.20)
	rec := s.waitIncident(1, incident.AwaitingApproval, 90*time.Second)
	labels := amLabels(rec)
	if labels["version"] != "v2" || labels["baseline"] != "v1" || labels["severity"] == "" {
		t.Fatalf("incident %+v", rec)
	}
	var firing testenv.AMAlert
	testenv.Eventually(t, 30*time.Second, func() error {
		var ok bool
		if firing, _, ok = arcv.Find("firing", labels); !ok {
			return fmt.Errorf("notifications %+v", arcv.Notifications())
		}
		return nil
	}, "the firing alert at on-call")
	if !maps(firing.Labels, labels) {
		t.Errorf("labels %v, want exactly %v", firing.Labels, labels)
	}
	if d := firing.StartsAt.Sub(rec.DetectedAt).Abs(); d > time.Millisecond {
		t.Errorf("startsAt %s, want the declare time %s", firing.StartsAt, rec.DetectedAt)
	}
	incURL := s.apiURL + "/incidents/1"
	for k, want := range map[string]string{
		"incident_url": incURL, "report_url": s.apiURL + "/api/v1/incidents/1/report?format=html", "status_url": s.apiURL + "/",
		"summary": "checkout: roll back v2 → v1 (" + rec.Severity + ", incident #1, awaiting_approval)", "state": "awaiting_approval",
	} {
		if got := firing.Annotations[k]; got != want {
			t.Errorf("annotation %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"description", "evidence", "proposed_action"} {
		if firing.Annotations[k] == "" {
			t.Errorf("no %s annotation: %v", k, firing.Annotations)
		}
	}
	if firing.GeneratorURL != incURL {
		t.Errorf("generatorURL %q, want %q", firing.GeneratorURL, incURL)
	}
	// The link works: the incident's page in the console.
	resp, err := http.Get(firing.Annotations["incident_url"])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Incident #1") || !strings.Contains(string(body), "v2") {
		t.Fatalf("GET %s: %d %.200s", firing.Annotations["incident_url"], resp.StatusCode, body)
	}

	// Alertmanager restarts mid-incident: it keeps no alerts, and the
	// re-post loop brings the incident's back, firing, with its start.
	// Without the loop the alert would never come back, so the bound is
	// generous (it is back within a resend interval or two on an idle
	// machine, logged below): the test runs beside others and must not
	// depend on the machine's speed.
	am.Stop()
	am.Restart()
	restarted := time.Now()
	testenv.Eventually(t, 15*resend+10*time.Second, func() error {
		alerts, err := am.Alerts()
		if err != nil {
			return err
		}
		for _, a := range alerts {
			if maps(a.Labels, labels) && a.State == "active" && a.StartsAt.Sub(rec.DetectedAt).Abs() <= time.Millisecond {
				return nil
			}
		}
		return fmt.Errorf("alerts %+v", alerts)
	}, "the alert firing again in the restarted Alertmanager")
	t.Logf("alert back %s after Alertmanager's restart (resend_interval %s)", time.Since(restarted).Round(time.Millisecond), resend)
	if st := s.incident(1).State; st != incident.AwaitingApproval {
		t.Fatalf("incident %s, want still awaiting approval", st)
	}

	// The go: rolled back, recovered, resolved; on-call gets the resolution.
	if code := s.decide(1, "approve", apiToken, `{"reason":"confirmed"}`); code != http.StatusOK {
		t.Fatalf("approve: %d", code)
	}
	rec = s.waitIncident(1, incident.Resolved, 120*time.Second)
	var resolved testenv.AMAlert
	testenv.Eventually(t, 30*time.Second, func() error {
		var ok bool
		if resolved, _, ok = arcv.Find("resolved", labels); !ok {
			return fmt.Errorf("notifications %+v", arcv.Notifications())
		}
		return nil
	}, "the resolved notification at on-call")
	if rec.ResolvedAt == nil || resolved.EndsAt.Sub(*rec.ResolvedAt).Abs() > time.Millisecond {
		t.Errorf("endsAt %s, want the resolution time %v", resolved.EndsAt, rec.ResolvedAt)
	}
	if bad := arcv.Bad(); len(bad) != 0 {
		t.Fatal(bad)
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// BenchmarkAlertmanagerDelay measures, on the end-to-end stack (embedded
// source), the time from an incident's declaration (its declare
// timestamp) to its firing alert arriving at the webhook receiver behind a
// real Alertmanager (group_wait 1s, one group per incident). Each
// iteration ships a healthy version, then announces and ships a bad one,
// and closes the incident once the alert arrived.
//
//	go test -run '^$' -bench AlertmanagerDelay -benchtime 5x ./e2e
func BenchmarkAlertmanagerDelay(b *testing.B) {
	arcv := testenv.NewAlertReceiver(b)
	am := testenv.StartAlertmanager(b, testenv.AlertmanagerOptions{WebhookURL: arcv.URL})
	rcv := newReceiver(b)
	s := startStack(b, modeEmbedded, stackOpts{watch: time.Hour, receiverURL: rcv.url, rollback: "placeholder"})
	s.addAlertmanager(am.URL, time.Minute)
	var delays []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		good, bad := fmt.Sprintf("g%d", i), fmt.Sprintf("b%d", i)
		s.shipHealthy(good)
		// The previous bad version may still dominate the recent traffic:
		// announce the deploy with its baseline.
		s.announce(bad, good)
		s.deploy(bad, 0.20)
		var rec incident.Record
		testenv.Eventually(b, 90*time.Second, func() error {
			recs, err := s.app.List(context.Background())
			if err != nil || len(recs) == 0 || recs[0].Version != bad {
				return fmt.Errorf("no incident for %s yet", bad)
			}
			rec = recs[0]
			return nil
		}, "the incident to be declared")
		var arrived time.Time
		testenv.Eventually(b, 30*time.Second, func() error {
			var ok bool
			if _, arrived, ok = arcv.Find("firing", amLabels(rec)); !ok {
				return fmt.Errorf("no firing alert of incident %d", rec.ID)
			}
			return nil
		}, "the alert at the receiver")
		delays = append(delays, arrived.Sub(rec.DetectedAt))
		if code := s.decide(rec.ID, "close", apiToken, `{"reason":"benchmark"}`); code != http.StatusOK {
			b.Fatalf("close: %d", code)
		}
	}
	b.StopTimer()
	slices.Sort(delays)
	b.ReportMetric(median(delays).Seconds(), "s-median")
	b.ReportMetric(delays[len(delays)-1].Seconds(), "s-max")
	b.ReportMetric(delays[0].Seconds(), "s-min")
	b.Logf("declared→alert at the receiver (group_wait %s) over %d runs: %v", am.Options.GroupWait, len(delays), delays)
}
