package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/report"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/web"
)

type heldEnv struct{}

func (heldEnv) Service(name string) (incident.Service, bool) {
	return incident.Service{Rules: incident.Rules{Approval: approval.Policy{Mode: approval.Manual}}}, name == "checkout"
}

type withReport struct{ *incident.Manager }

func (w withReport) Report(ctx context.Context, id int64, format string) ([]byte, error) {
	rec, err := w.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if format == "json" {
		return report.JSON(rec, report.Options{})
	}
	return report.Markdown(rec, report.Options{})
}

// The API client commands against Guardian's real HTTP handler and
// incident manager: incidents, incidents show, deny, approve, report.
func TestIncidentCommands(t *testing.T) {
	m := incident.NewManager(incident.Options{Store: store.NewMemory(), Env: heldEnv{}, Registry: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	v := 0.2
	if _, _, err := m.Declare(ctx, rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1", At: time.Now()},
		trigger.Verdict{Trigger: "error-rate", State: trigger.Firing, Evidence: trigger.Evidence{Value: &v}}, nil, "SEV-1"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if r, _ := m.Get(ctx, 1); r.State != incident.AwaitingApproval {
			return fmt.Errorf("state %s", r.State)
		}
		return nil
	}, "the approval request")
	tokFile := filepath.Join(t.TempDir(), "tokens")
	write(t, tokFile, "alice:cli-token-0000000000001\n")
	toks, err := web.NewTokens(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(web.New(web.Options{Gatherer: prometheus.NewRegistry(), Tokens: func() *web.Tokens { return toks }, Incidents: withReport{m}}).Handler())
	defer srv.Close()
	mine := filepath.Join(t.TempDir(), "token")
	write(t, mine, "cli-token-0000000000001\n")

	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append(args, "--url", srv.URL), &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, _ := cli("incidents"); code != 0 || !strings.Contains(out, "checkout") || !strings.Contains(out, "awaiting_approval") ||
		!strings.Contains(out, "\nNo bad deploys stopped in the last 30 days.\n") {
		t.Fatalf("incidents: %d %q", code, out)
	}
	if code, _, errOut := cli("approve", "1"); code != 1 || !strings.Contains(errOut, "token is required") {
		t.Fatalf("approve without a token: %d %q", code, errOut)
	}
	if code, _, errOut := cli("deny", "1", "--token-file", mine); code != 1 || !strings.Contains(errOut, "--reason is required") {
		t.Fatalf("deny without a reason: %d %q", code, errOut)
	}
	if code, out, errOut := cli("deny", "1", "--token-file", mine, "--reason", "load test, not a real regression"); code != 0 || !strings.Contains(out, "held") {
		t.Fatalf("deny: %d %q %q", code, out, errOut)
	}
	os.Setenv("GUARDIAN_TOKEN", "wrong-token-0000000000000")
	defer os.Unsetenv("GUARDIAN_TOKEN")
	if code, _, errOut := cli("approve", "#1"); code != 1 || !strings.Contains(errOut, "401") {
		t.Fatalf("approve with a wrong token: %d %q", code, errOut)
	}
	os.Setenv("GUARDIAN_TOKEN", "cli-token-0000000000001")
	if code, out, errOut := cli("approve", "#1"); code != 0 || !strings.Contains(out, "rolling_back") && !strings.Contains(out, "failed") {
		t.Fatalf("approve: %d %q %q", code, out, errOut)
	}
	code, out, _ := cli("incidents", "show", "1")
	if code != 0 || !strings.Contains(out, "no-go for the application step by token:alice via cli") || !strings.Contains(out, "approval.denied") {
		t.Fatalf("show: %d\n%s", code, out)
	}
	// No executor here: the rollback failed, and a person closes the incident.
	testenv.Eventually(t, 5*time.Second, func() error {
		if r, _ := m.Get(ctx, 1); r.State != incident.Failed {
			return fmt.Errorf("state %s", r.State)
		}
		return nil
	}, "the failed rollback")
	if code, _, errOut := cli("close", "1"); code != 1 || !strings.Contains(errOut, "--reason is required") {
		t.Fatalf("close without a reason: %d %q", code, errOut)
	}
	if code, out, errOut := cli("close", "1", "--reason", "rolled back by hand"); code != 0 || !strings.Contains(out, "closed") {
		t.Fatalf("close: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := cli("close", "1", "--reason", "again"); code != 1 || !strings.Contains(errOut, "409") {
		t.Fatalf("close again: %d %q", code, errOut)
	}
	if code, out, _ := cli("report", "1"); code != 0 || !strings.HasPrefix(out, "# Incident #1") {
		t.Fatalf("report: %d %.100q", code, out)
	}
	if code, out, _ := cli("report", "1", "--format", "json"); code != 0 || !strings.Contains(out, `"schema_version": 1`) && !strings.Contains(out, `"schema_version":1`) {
		t.Fatalf("report json: %d %.200q", code, out)
	}
	if code, _, errOut := cli("incidents", "show", "9"); code != 1 || !strings.Contains(errOut, "404") {
		t.Fatalf("show missing: %d %q", code, errOut)
	}
	// A person's rollback: a reason is required; the incident names them
	// and the CLI as its source.
	if code, _, errOut := cli("rollback", "checkout", "--token-file", mine); code != 1 || !strings.Contains(errOut, "--reason is required") {
		t.Fatalf("rollback without a reason: %d %q", code, errOut)
	}
	if code, _, errOut := cli("rollback", "cart", "--reason", "x"); code != 1 || !strings.Contains(errOut, "404") {
		t.Fatalf("rollback of an unknown service: %d %q", code, errOut)
	}
	code, out, errOut := cli("rollback", "checkout", "--to", "v0", "--reason", "orders are written twice")
	if code != 0 || !strings.Contains(out, "incident #2 (checkout)") || !strings.Contains(out, "v2 → v0") {
		t.Fatalf("rollback: %d %q %q", code, out, errOut)
	}
	if rec, _ := m.Get(ctx, 2); rec.RequestedBy == nil || rec.RequestedBy.By != "token:alice" || rec.RequestedBy.Channel != "cli" {
		t.Fatalf("requested by %+v", rec.RequestedBy)
	}
}

// Rollback asks for checkout v2 → to (default v1).
func (w withReport) Rollback(ctx context.Context, service, to, reason, by, channel string) (incident.Record, error) {
	if service != "checkout" {
		return incident.Record{}, fmt.Errorf("%w %q", rollout.ErrUnknownService, service)
	}
	d := rollout.Event{Service: service, Version: "v2", Baseline: cmp.Or(to, "v1"), At: time.Now()}
	return w.RequestRollback(ctx, d, nil, "SEV-1", incident.Requester{By: by, Channel: channel, Reason: reason})
}
