package web

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/report"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
)

type manualEnv struct{}

func (manualEnv) Service(name string) (incident.Service, bool) {
	return incident.Service{Rules: incident.Rules{Approval: approval.Policy{Mode: approval.Manual}}}, name == "checkout"
}

// reports wraps the manager with a trivial report for the API test.
type reports struct{ *incident.Manager }

func (r reports) Report(ctx context.Context, id int64, format string) ([]byte, error) {
	rec, err := r.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if format == "html" {
		return report.HTML(rec, report.Options{})
	}
	return []byte(fmt.Sprintf("%s report of incident %d", format, rec.ID)), nil
}

// Rollback asks the manager for a rollback of checkout v2 → v1 (or to).
func (r reports) Rollback(ctx context.Context, service, to, reason, by, channel string) (incident.Record, error) {
	if service != "checkout" {
		return incident.Record{}, fmt.Errorf("%w %q", rollout.ErrUnknownService, service)
	}
	d := rollout.Event{Service: service, Version: "v2", Baseline: cmp.Or(to, "v1"), At: time.Now()}
	return r.RequestRollback(ctx, d, nil, "SEV-1", incident.Requester{By: by, Channel: channel, Reason: reason})
}

// POST /api/v1/services/{service}/rollback needs the approve scope and a
// reason; it declares the incident with the token's name as its source.
func TestRollbackAPI(t *testing.T) {
	m := incident.NewManager(incident.Options{Store: store.NewMemory(), Env: manualEnv{}, Registry: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	toks, err := NewTokens(writeTokens(t, "alice:"+goodToken+"\nbob:"+readToken+":read\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := New(Options{Gatherer: prometheus.NewRegistry(), Logger: zap.NewNop(), Tokens: func() *Tokens { return toks }, Incidents: reports{m}}).Handler()
	for _, tc := range []struct {
		path, auth, body string
		code             int
	}{
		{"/api/v1/services/checkout/rollback", "", `{"reason":"x"}`, 401},
		{"/api/v1/services/checkout/rollback", "Bearer " + readToken, `{"reason":"x"}`, 403},
		{"/api/v1/services/checkout/rollback", "Bearer " + goodToken, `{}`, 400},
		{"/api/v1/services/checkout/rollback", "Bearer " + goodToken, `{"reason":"   "}`, 400},
		{"/api/v1/services/checkout/rollback", "Bearer " + goodToken, `{"reason":"x","version":"v0"}`, 400},
		{"/api/v1/services/cart/rollback", "Bearer " + goodToken, `{"reason":"x"}`, 404},
	} {
		if w := do(t, h, "POST", tc.path, tc.auth, tc.body); w.Code != tc.code {
			t.Errorf("%s %s %s: %d %s, want %d", tc.path, tc.auth, tc.body, w.Code, w.Body, tc.code)
		}
	}
	if recs, _ := m.List(context.Background()); len(recs) != 0 {
		t.Fatalf("refused requests declared %d incidents", len(recs))
	}
	w := do(t, h, "POST", "/api/v1/services/checkout/rollback", "Bearer "+goodToken, `{"to":"v0","reason":"orders are written twice"}`)
	if w.Code != 201 {
		t.Fatalf("rollback: %d %s", w.Code, w.Body)
	}
	var got incident.Record
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.RequestedBy == nil || got.RequestedBy.By != "token:alice" || got.RequestedBy.Channel != "api" || got.Baseline != "v0" ||
		got.Timeline[0].Actor != "token:alice" {
		t.Fatalf("record %+v", got)
	}
	if w := do(t, h, "POST", "/api/v1/services/checkout/rollback", "Bearer "+goodToken, `{"reason":"again"}`); w.Code != 409 || !strings.Contains(w.Body.String(), "incident 1") {
		t.Fatalf("second rollback: %d %s, want 409 naming incident 1", w.Code, w.Body)
	}
}

func TestIncidentAPI(t *testing.T) {
	m := incident.NewManager(incident.Options{Store: store.NewMemory(), Env: manualEnv{}, Registry: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	v := 0.2
	rec, _, err := m.Declare(context.Background(), rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1", At: time.Now()},
		trigger.Verdict{Trigger: "error-rate", State: trigger.Firing, Evidence: trigger.Evidence{Value: &v}}, nil, "SEV-1")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if r, _ := m.Get(context.Background(), rec.ID); r.State != incident.AwaitingApproval {
			return fmt.Errorf("state %s", r.State)
		}
		return nil
	}, "the approval request")
	toks, err := NewTokens(writeTokens(t, "alice:"+goodToken+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	s := New(Options{Gatherer: prometheus.NewRegistry(), Logger: zap.New(core), Tokens: func() *Tokens { return toks }, Incidents: reports{m}})
	h := s.Handler()
	timeline := func() int {
		r, _ := m.Get(context.Background(), rec.ID)
		return len(r.Timeline)
	}
	before := timeline()

	for _, auth := range []string{"", "Bearer not-the-right-token-123"} {
		if w := do(t, h, "POST", "/api/v1/incidents/1/approve", auth, `{}`); w.Code != 401 {
			t.Fatalf("approve with %q: %d", auth, w.Code)
		}
	}
	if timeline() != before {
		t.Fatal("a rejected approval reached the timeline")
	}
	if n := logs.FilterMessage("rejected API request").Len(); n != 2 {
		t.Fatalf("%d rejected attempts logged, want 2", n)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"GET", "/api/v1/incidents", "", 200},
		{"GET", "/api/v1/incidents/1", "", 200},
		{"GET", "/api/v1/incidents/9", "", 404},
		{"GET", "/api/v1/incidents/x", "", 400},
		{"GET", "/api/v1/incidents/1/report?format=pdf", "", 400},
		{"POST", "/api/v1/incidents/1/deny", `{}`, 400},
		{"POST", "/api/v1/incidents/9/approve", `{}`, 404},
	} {
		if w := do(t, h, tc.method, tc.path, "Bearer "+goodToken, tc.body); w.Code != tc.code {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, w.Code, w.Body, tc.code)
		}
	}
	w := do(t, h, "POST", "/api/v1/incidents/1/approve", "Bearer "+goodToken, `{"reason":"confirmed on dashboards"}`)
	if w.Code != 200 {
		t.Fatalf("approve: %d %s", w.Code, w.Body)
	}
	var got incident.Record
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Decisions) != 1 || got.Decisions[0].By != "token:alice" || got.Decisions[0].Reason != "confirmed on dashboards" ||
		got.Decisions[0].Channel != "api" {
		t.Fatalf("decisions %+v", got.Decisions)
	}
	if w := do(t, h, "POST", "/api/v1/incidents/1/approve", "Bearer "+goodToken, ``); w.Code != 409 {
		t.Fatalf("second approve: %d, want 409", w.Code)
	}
	if w := do(t, h, "GET", "/api/v1/incidents/1/report", "", ""); w.Code != 200 || w.Body.String() != "markdown report of incident 1" {
		t.Fatalf("report: %d %q", w.Code, w.Body)
	}
	// The HTML report is a page that loads and runs nothing.
	page := do(t, h, "GET", "/api/v1/incidents/1/report?format=html", "", "")
	if w := page; w.Code != 200 || w.Header().Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.HasPrefix(w.Body.String(), "<!DOCTYPE html>") || !strings.Contains(w.Body.String(), "<h1>Incident #1 — checkout") ||
		!strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("HTML report: %d %v %.200q", page.Code, page.Header(), page.Body)
	}
	// The incident rolls back now (no executor here: it fails and waits
	// for a human), who closes it through the CLI.
	testenv.Eventually(t, 5*time.Second, func() error {
		if r, _ := m.Get(context.Background(), rec.ID); r.State != incident.Failed {
			return fmt.Errorf("state %s", r.State)
		}
		return nil
	}, "the failed rollback")
	for _, tc := range []struct {
		auth, body string
		code       int
	}{
		{"", `{"reason":"x"}`, 401},
		{"Bearer " + goodToken, `{}`, 400},
		{"Bearer " + goodToken, `{"reason":"rolled back by hand"}`, 200},
		{"Bearer " + goodToken, `{"reason":"again"}`, 409},
	} {
		req := httptest.NewRequest("POST", "/api/v1/incidents/1/close", strings.NewReader(tc.body))
		req.Header.Set("User-Agent", CLIUserAgent+"v1.0")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tc.code {
			t.Fatalf("close %s: %d %s, want %d", tc.body, w.Code, w.Body, tc.code)
		}
	}
	closed, _ := m.Get(context.Background(), rec.ID)
	var e incident.Entry
	for _, x := range closed.Timeline {
		if x.Type == event.IncidentClosed {
			e = x
		}
	}
	if closed.State != incident.Closed || e.Actor != "token:alice" || e.Data["channel"] != "cli" || e.Data["reason"] != "rolled back by hand" {
		t.Fatalf("closed: %s %+v", closed.State, e)
	}
}

type shadowEnv struct{}

func (shadowEnv) Service(name string) (incident.Service, bool) {
	return incident.Service{Rules: incident.Rules{Approval: approval.Policy{Mode: approval.Manual}}, Mode: incident.ModeShadow}, name == "checkout"
}

// A go or no-go on an incident in shadow mode is a conflict that says why.
func TestShadowIncidentRefusesVotes(t *testing.T) {
	m := incident.NewManager(incident.Options{Store: store.NewMemory(), Env: shadowEnv{}, Registry: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	v := 0.2
	rec, _, err := m.Declare(context.Background(), rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1", At: time.Now()},
		trigger.Verdict{Trigger: "error-rate", State: trigger.Firing, Evidence: trigger.Evidence{Value: &v}}, nil, "SEV-1")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if r, _ := m.Get(context.Background(), rec.ID); r.State != incident.Shadow {
			return fmt.Errorf("state %s", r.State)
		}
		return nil
	}, "the shadow decision")
	toks, err := NewTokens(writeTokens(t, "alice:"+goodToken+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := New(Options{Gatherer: prometheus.NewRegistry(), Logger: zap.NewNop(), Tokens: func() *Tokens { return toks }, Incidents: reports{m}}).Handler()
	for _, verb := range []string{"approve", "deny"} {
		w := do(t, h, "POST", "/api/v1/incidents/1/"+verb, "Bearer "+goodToken, `{"reason":"try"}`)
		if w.Code != 409 || !strings.Contains(w.Body.String(), "shadow mode") {
			t.Errorf("%s: %d %s, want 409 saying shadow mode", verb, w.Code, w.Body)
		}
	}
	if r, _ := m.Get(context.Background(), rec.ID); len(r.Decisions) != 0 || r.State != incident.Shadow {
		t.Fatalf("a refused vote changed the incident: %s %+v", r.State, r.Decisions)
	}
}
