package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/watch"
)

// A person rolls a healthy-looking deploy back from the CLI, for a reason
// no metric shows: no trigger fires, yet the incident is declared with the
// person's reason, rolled back once, verified and reported; the report
// names the team, and the invite links the served report.
func TestRequestedRollbackFromCLI(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder"})
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))
	s.deploy("v2", 0.005)
	testenv.Eventually(t, 60*time.Second, func() error {
		var st []watch.ServiceStatus
		if err := s.getJSON("/api/v1/status", &st); err != nil {
			return err
		}
		if len(st) != 1 || st[0].Watch == nil || st[0].Watch.Version != "v2" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	}, "the deploy of v2 to be watched")

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (string, error) {
		out, err := exec.Command(s.proc.bin, append(args, "--url", s.apiURL, "--token-file", tokenFile)...).CombinedOutput()
		return string(out), err
	}
	if out, err := cli("rollback", "checkout"); err == nil || !strings.Contains(out, "--reason is required") {
		t.Fatalf("rollback without a reason: %v\n%s", err, out)
	}
	out, err := cli("rollback", "checkout", "--reason", "orders are written twice since the deploy")
	if err != nil || !strings.Contains(out, "incident #1 (checkout)") || !strings.Contains(out, "v2 → v1") {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	rec := s.waitIncident(1, incident.Resolved, 120*time.Second)
	if rec.Trigger != "" || rec.RequestedBy == nil || rec.RequestedBy.By != "token:ci" || rec.RequestedBy.Channel != "cli" ||
		rec.Timeline[0].Actor != "token:ci" || !strings.Contains(rec.Timeline[0].Message, "orders are written twice") {
		t.Fatalf("incident %+v", rec)
	}
	if got := timelineTypes(rec); !inOrder(got, []string{"incident.declared", "approval.granted", "rollback.started",
		"rollback.succeeded", "recovery.confirmed", "incident.resolved"}) || strings.Contains(strings.Join(got, ","), "approval.requested") {
		t.Fatalf("timeline %v", got)
	}
	if got := s.rollbacks(); len(got) != 1 || got[0] != "incident-1/rollback.application" {
		t.Fatalf("rollback runs %v, want exactly one", got)
	}
	if len(rec.Team) != 2 || rec.Team[0].Name != "Ana Silva" {
		t.Fatalf("team %+v", rec.Team)
	}

	// The report names the requester and the team; the invite invites the
	// team and links the report, which is served there.
	var md, ics []byte
	testenv.Eventually(t, 30*time.Second, func() error {
		reports := filepath.Join(s.dir, "data", "reports")
		if md, err = os.ReadFile(filepath.Join(reports, "incident-1.md")); err != nil {
			return err
		}
		ics, err = os.ReadFile(filepath.Join(reports, "incident-1-postmortem.ics"))
		return err
	}, "the report and the invite")
	for _, want := range []string{"**Requested by:** token:ci via cli: orders are written twice", "**Incident commander:** Ana Silva", "**DBA:** Bo Chen"} {
		if !strings.Contains(string(md), want) {
			t.Fatalf("report lacks %q:\n%s", want, md)
		}
	}
	unfolded := strings.ReplaceAll(string(ics), "\r\n ", "")
	for _, want := range []string{"mailto:ana@example.com", "mailto:bo@example.com", "mailto:oncall@example.com"} {
		if !strings.Contains(unfolded, want) {
			t.Fatalf("invite lacks %s:\n%s", want, unfolded)
		}
	}
	link := regexp.MustCompile(`Incident report: (http://[^\\\s]+)`).FindStringSubmatch(unfolded)
	if want := s.apiURL + "/api/v1/incidents/1/report?format=html"; link == nil || link[1] != want {
		t.Fatalf("invite's report link %v, want %s", link, want)
	}
	resp, err := http.Get(link[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<h1>Incident #1") {
		t.Fatalf("the invite's link: %d %.200s", resp.StatusCode, body)
	}
	// Notifications carry the team and working links.
	testenv.Eventually(t, 30*time.Second, func() error {
		if !inOrder(rcv.types(), []string{"incident.declared", "approval.granted", "incident.resolved"}) {
			return fmt.Errorf("events %v", rcv.types())
		}
		return nil
	}, "the events at the receiver")
	first := rcv.first()
	if first.Links.Incident != s.apiURL+"/incidents/1" || len(first.Responders) != 2 || first.Data["actor"] != "token:ci" {
		t.Fatalf("declared event: links %+v, responders %+v, data %v", first.Links, first.Responders, first.Data)
	}
}
