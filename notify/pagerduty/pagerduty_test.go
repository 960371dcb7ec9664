package pagerduty_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	commoncfg "github.com/prometheus/common/config"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/internal/eventsample"
	"github.com/rollback-guardian/guardian/notify/pagerduty"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// routingKey is 32 characters, as PagerDuty's are; it must never show.
const routingKey = "SECRETROUTINGKEY0123456789abcdef"

// received is one request as the test receiver saw it.
type received struct {
	method, path string
	header       http.Header
	body         []byte
}

// receiver answers with codes in turn (the last one repeats), as the
// Events API does, and keeps what it got.
type receiver struct {
	mu     sync.Mutex
	codes  []int
	header http.Header
	answer string // "": PagerDuty's answer for the code
	got    []received
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, received{method: req.Method, path: req.URL.Path, header: req.Header.Clone(), body: body})
	code := r.codes[min(len(r.got), len(r.codes))-1]
	for k, vs := range r.header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	switch {
	case r.answer != "":
		_, _ = io.WriteString(w, r.answer)
	case code == http.StatusAccepted:
		_, _ = io.WriteString(w, `{"status":"success","message":"Event processed","dedup_key":"x"}`)
	case code == http.StatusBadRequest:
		_, _ = io.WriteString(w, `{"status":"invalid event","message":"Event object is invalid","errors":["'payload.summary' is missing or blank"]}`)
	default:
		_, _ = io.WriteString(w, http.StatusText(code))
	}
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func newNotifier(t *testing.T, url string, logger *zap.Logger, tpl config.Templates) *pagerduty.Notifier {
	t.Helper()
	cfg := config.PagerDutyNotifier{RoutingKeyFile: "/etc/guardian/pd-key", RoutingKey: commoncfg.Secret(routingKey), URL: url, Templates: tpl}
	n, err := pagerduty.New(cfg, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

// checkMessage checks body against the Events API v2's documented
// request: the fields present, their types, the required ones, and no
// others.
func checkMessage(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, body)
	}
	str := func(obj map[string]any, k string, required bool) string {
		t.Helper()
		v, ok := obj[k]
		if !ok {
			if required {
				t.Errorf("%s missing in %s", k, body)
			}
			return ""
		}
		s, ok := v.(string)
		if !ok || s == "" {
			t.Errorf("%s = %#v, want a non-empty string", k, v)
		}
		return s
	}
	allowed := func(obj map[string]any, keys ...string) {
		t.Helper()
		for k := range obj {
			if !slices.Contains(keys, k) {
				t.Errorf("unexpected field %q", k)
			}
		}
	}
	allowed(m, "routing_key", "event_action", "dedup_key", "payload", "client", "client_url", "links", "images")
	if k := str(m, "routing_key", true); len(k) != 32 {
		t.Errorf("routing_key has %d characters, want 32", len(k))
	}
	action := str(m, "event_action", true)
	if !slices.Contains([]string{"trigger", "acknowledge", "resolve"}, action) {
		t.Errorf("event_action = %q", action)
	}
	if k := str(m, "dedup_key", true); len(k) > 255 {
		t.Errorf("dedup_key has %d bytes, PagerDuty takes 255", len(k))
	}
	if action != "trigger" {
		allowed(m, "routing_key", "event_action", "dedup_key")
		return m
	}
	p, ok := m["payload"].(map[string]any)
	if !ok {
		t.Fatalf("a trigger without a payload object: %s", body)
	}
	allowed(p, "summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details")
	if s := str(p, "summary", true); len(s) > pagerduty.MaxSummary || strings.Contains(s, "\n") {
		t.Errorf("summary of %d bytes or on several lines: %q", len(s), s)
	}
	str(p, "source", true)
	if sev := str(p, "severity", true); !slices.Contains([]string{"critical", "error", "warning", "info"}, sev) {
		t.Errorf("severity = %q", sev)
	}
	if ts := str(p, "timestamp", false); ts != "" {
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("timestamp %q: %v", ts, err)
		}
	}
	str(p, "component", false)
	str(p, "group", false)
	str(p, "class", false)
	if d, ok := p["custom_details"]; ok {
		if _, ok := d.(map[string]any); !ok {
			t.Errorf("custom_details = %#v, want an object", d)
		}
	}
	str(m, "client", false)
	str(m, "client_url", false)
	if ls, ok := m["links"]; ok {
		links, ok := ls.([]any)
		if !ok || len(links) == 0 {
			t.Errorf("links = %#v, want a non-empty array", ls)
		}
		for _, l := range links {
			lm, ok := l.(map[string]any)
			if !ok {
				t.Errorf("link %#v is not an object", l)
				continue
			}
			allowed(lm, "href", "text")
			if h := str(lm, "href", true); !strings.HasPrefix(h, "https://") {
				t.Errorf("link href %q", h)
			}
			str(lm, "text", true)
		}
	}
	return m
}

// TestGolden renders every event type, checks each body's shape and
// compares it with testdata/<type>.golden (go test -update rewrites them).
func TestGolden(t *testing.T) {
	n := newNotifier(t, "", zap.NewNop(), config.Templates{})
	for _, e := range eventsample.All() {
		t.Run(string(e.Type), func(t *testing.T) {
			body, err := n.Body(e)
			if err != nil {
				t.Fatal(err)
			}
			got := []byte("not sent\n")
			if body != nil {
				checkMessage(t, body)
				var buf bytes.Buffer
				if err := json.Indent(&buf, body, "", "  "); err != nil {
					t.Fatal(err)
				}
				got = append(buf.Bytes(), '\n')
			}
			golden(t, filepath.Join("testdata", string(e.Type)+".golden"), got)
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestLifecycle sends an incident's every event through an Events API
// receiver: one dedup key throughout, trigger on declare, acknowledge on
// a person's go, resolve at the end, nothing after it.
func TestLifecycle(t *testing.T) {
	rcv := &receiver{codes: []int{http.StatusAccepted}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	n := newNotifier(t, srv.URL+"/v2/enqueue", zap.NewNop(), config.Templates{})

	want := map[event.Type]string{
		event.IncidentDeclared:    "trigger",
		event.TriggerFired:        "trigger",
		event.ApprovalRequested:   "trigger",
		event.ApprovalGranted:     "acknowledge",
		event.ApprovalDenied:      "acknowledge",
		event.RollbackStarted:     "trigger",
		event.RollbackResumed:     "trigger",
		event.RollbackSucceeded:   "trigger",
		event.RollbackFailed:      "trigger",
		event.RollbackUnknown:     "trigger",
		event.RecoveryProgress:    "trigger",
		event.RecoveryConfirmed:   "resolve",
		event.RecoveryFailed:      "trigger",
		event.IncidentEscalated:   "trigger",
		event.IncidentResolved:    "resolve",
		event.IncidentClosed:      "resolve",
		event.ReportWritten:       "",
		event.PostmortemScheduled: "",
		event.SourceUnreachable:   "trigger",
		event.SourceRecovered:     "resolve",
		event.ShadowDecision:      "trigger",
	}
	for _, e := range eventsample.All() {
		before := len(rcv.requests())
		retry, err := n.Notify(context.Background(), e)
		if err != nil || retry {
			t.Fatalf("%s: Notify = %v, %v", e.Type, retry, err)
		}
		reqs := rcv.requests()
		if want[e.Type] == "" {
			if len(reqs) != before {
				t.Errorf("%s was sent", e.Type)
			}
			continue
		}
		if len(reqs) != before+1 {
			t.Fatalf("%s: %d requests, want 1", e.Type, len(reqs)-before)
		}
		r := reqs[len(reqs)-1]
		if r.method != http.MethodPost || r.path != "/v2/enqueue" {
			t.Errorf("%s %s, want POST /v2/enqueue", r.method, r.path)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		m := checkMessage(t, r.body)
		if m["event_action"] != want[e.Type] {
			t.Errorf("%s: event_action %v, want %s", e.Type, m["event_action"], want[e.Type])
		}
		wantKey := "guardian-checkout-42"
		if e.Incident == 0 {
			wantKey = "guardian-source-prom"
		}
		if m["dedup_key"] != wantKey {
			t.Errorf("%s: dedup_key %v, want %s", e.Type, m["dedup_key"], wantKey)
		}
	}

	// The declaration in detail.
	var m pagerduty.Message
	if err := json.Unmarshal(rcv.requests()[0].body, &m); err != nil {
		t.Fatal(err)
	}
	p := m.Payload
	if p.Severity != "critical" || p.Source != "guardian" || p.Component != "checkout" || p.Class != "error-rate" ||
		p.Timestamp != "2025-03-04T05:06:37Z" || m.Client != "Guardian" || m.ClientURL != eventsample.Links.Incident {
		t.Errorf("declaration: %+v %+v", m, p)
	}
	if !strings.Contains(p.Summary, "SEV-1 declared for checkout") || !strings.Contains(p.Summary, "#42") {
		t.Errorf("summary %q", p.Summary)
	}
	wantLinks := []pagerduty.Link{
		{Href: "https://guardian.example.com/incidents/42", Text: "Incident #42"},
		{Href: "https://guardian.example.com/api/v1/incidents/42/report?format=html", Text: "Report of incident #42"},
		{Href: "https://guardian.example.com/", Text: "Guardian status"},
	}
	if !slices.Equal(m.Links, wantLinks) {
		t.Errorf("links %+v, want %+v", m.Links, wantLinks)
	}
	for k, v := range map[string]any{
		"version": "v2.4.1", "baseline": "v2.4.0", "evidence": "5xx ratio 7.9% > 5% (baseline 0.4%)",
		"state": "detected", "proposed_action": "roll back checkout v2.4.1 → v2.4.0", "incident": 42.0,
	} {
		if got := p.CustomDetails[k]; got != v {
			t.Errorf("custom_details.%s = %#v, want %#v", k, got, v)
		}
	}
	rs, _ := p.CustomDetails["responders"].([]any)
	if len(rs) != 2 || rs[0] != "Alice Martin (incident_commander) <alice@example.com>" {
		t.Errorf("custom_details.responders = %#v", p.CustomDetails["responders"])
	}
}

// A policy's go acknowledges nothing: nobody took the incident in hand.
func TestPolicyDecisionIsNoAcknowledgement(t *testing.T) {
	e := eventsample.Event(event.ApprovalGranted, 3)
	e.Data["actor"] = "policy:auto"
	if a := pagerduty.Action(e); a != pagerduty.Trigger {
		t.Errorf("policy go: %q, want trigger", a)
	}
	e.Data["actor"] = "token:bob"
	if a := pagerduty.Action(e); a != pagerduty.Acknowledge {
		t.Errorf("a person's go: %q, want acknowledge", a)
	}
	// A late event of an ended incident opens nothing again.
	e = eventsample.Event(event.TriggerFired, 9)
	e.State = "closed"
	if a := pagerduty.Action(e); a != "" {
		t.Errorf("after the end: %q", a)
	}
}

func TestSeverity(t *testing.T) {
	for in, want := range map[string]string{
		"SEV-1": "critical", "SEV-0": "critical", "sev1": "critical", "Sev 1": "critical", "P1": "critical",
		"SEV-2": "error", "sev_2": "error", "SEV-3": "warning", "SEV-4": "info", "SEV-5": "info",
		"critical": "critical", "Warning": "warning", "info": "info", "": "info", "high": "info",
	} {
		if got := pagerduty.Severity(in); got != want {
			t.Errorf("Severity(%q) = %q, want %q", in, got, want)
		}
	}
	e := eventsample.Event(event.IncidentDeclared, 1)
	for sev, want := range map[string]string{"SEV-1": "critical", "SEV-2": "error", "SEV-3": "warning", "minor": "info"} {
		e.Severity = sev
		n := newNotifier(t, "", zap.NewNop(), config.Templates{})
		if got := n.Message(e).Payload.Severity; got != want {
			t.Errorf("%s: payload severity %q, want %q", sev, got, want)
		}
	}
	src := eventsample.Event(event.SourceUnreachable, 1)
	if got := newNotifier(t, "", zap.NewNop(), config.Templates{}).Message(src).Payload.Severity; got != "warning" {
		t.Errorf("source.unreachable: severity %q, want warning", got)
	}
}

// The summary stays within 1024 bytes, on one line, valid UTF-8, whatever
// the template writes; a template that fails sends the default summary.
func TestSummary(t *testing.T) {
	e := eventsample.Event(event.IncidentDeclared, 1)
	e.Text = strings.Repeat("é\nrror ", 600)
	n := newNotifier(t, "", zap.NewNop(), config.Templates{})
	s := n.Message(e).Payload.Summary
	if len(s) > 1024 || !utf8.ValidString(s) || strings.Contains(s, "\n") || !strings.HasSuffix(s, "…") {
		t.Errorf("summary of %d bytes: %q", len(s), s)
	}

	e = eventsample.Event(event.IncidentDeclared, 1)
	n = newNotifier(t, "", zap.NewNop(), config.Templates{Title: `{{.Service | upper}} {{index .Data "version"}} is bad`})
	if s := n.Message(e).Payload.Summary; s != "CHECKOUT v2.4.1 is bad" {
		t.Errorf("templated summary %q", s)
	}

	core, logs := observer.New(zap.WarnLevel)
	n = newNotifier(t, "", zap.New(core), config.Templates{Title: `{{index .Responders 7}}`})
	if s := n.Message(e).Payload.Summary; !strings.HasPrefix(s, "checkout incident #42: SEV-1 declared") {
		t.Errorf("failing template: summary %q, want the default", s)
	}
	if logs.Len() != 1 {
		t.Errorf("failing template: %d warnings, want 1", logs.Len())
	}

	if _, err := pagerduty.New(config.PagerDutyNotifier{RoutingKey: routingKey, Templates: config.Templates{Title: "{{"}}, nil); err == nil {
		t.Error("a title that does not parse")
	}
	if _, err := pagerduty.New(config.PagerDutyNotifier{RoutingKeyFile: "/k"}, nil); err == nil {
		t.Error("no routing key")
	}
}

// TestRetry: 202 is delivered; 400 is permanent and quotes PagerDuty's
// message; 429 (with its Retry-After), 500 and a refused connection are
// retried.
func TestRetry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int
		header http.Header
		retry  bool
		wait   time.Duration
		errHas string
	}{
		{"accepted", http.StatusAccepted, nil, false, 0, ""},
		{"invalid event", http.StatusBadRequest, nil, false, 0, "status 400: Event object is invalid: 'payload.summary' is missing or blank"},
		{"rate limited", http.StatusTooManyRequests, http.Header{"Retry-After": {"7"}}, true, 7 * time.Second, "status 429"},
		{"rate limited, no Retry-After", http.StatusTooManyRequests, nil, true, 0, "status 429"},
		{"server error", http.StatusInternalServerError, nil, true, 0, "status 500"},
		{"unavailable", http.StatusServiceUnavailable, http.Header{"Retry-After": {"30"}}, true, 30 * time.Second, "status 503"},
		{"forbidden", http.StatusForbidden, nil, false, 0, "status 403"},
		{"redirect", http.StatusFound, http.Header{"Location": {"https://example.com/"}}, false, 0, "status 302"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := &receiver{codes: []int{tc.code}, header: tc.header}
			srv := httptest.NewServer(rcv)
			defer srv.Close()
			n := newNotifier(t, srv.URL+"/v2/enqueue", zap.NewNop(), config.Templates{})
			retry, err := n.Notify(context.Background(), eventsample.Event(event.IncidentDeclared, 1))
			if retry != tc.retry {
				t.Errorf("retry = %v, want %v (%v)", retry, tc.retry, err)
			}
			if tc.errHas == "" {
				if err != nil {
					t.Fatalf("Notify: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("error %v, want it to say %q", err, tc.errHas)
			}
			var se *pagerduty.StatusError
			if !errors.As(err, &se) || se.Code != tc.code {
				t.Fatalf("error %v is not a StatusError %d", err, tc.code)
			}
			var ra notify.RetryAfterError
			if !errors.As(err, &ra) || ra.RetryAfter() != tc.wait {
				t.Errorf("RetryAfter = %v, want %v", ra, tc.wait)
			}
		})
	}

	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		n := newNotifier(t, "http://"+addr+"/v2/enqueue", zap.NewNop(), config.Templates{})
		retry, err := n.Notify(context.Background(), eventsample.Event(event.IncidentDeclared, 1))
		if !retry || err == nil {
			t.Fatalf("Notify = %v, %v; want a retryable error", retry, err)
		}
	})

	t.Run("Retry-After as a date", func(t *testing.T) {
		now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
		rcv := &receiver{codes: []int{http.StatusTooManyRequests}, header: http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}}
		srv := httptest.NewServer(rcv)
		defer srv.Close()
		n, err := pagerduty.New(config.PagerDutyNotifier{RoutingKey: routingKey, URL: srv.URL}, nil,
			pagerduty.WithNow(func() time.Time { return now }), pagerduty.WithClient(srv.Client()))
		if err != nil {
			t.Fatal(err)
		}
		retry, err := n.Notify(context.Background(), eventsample.Event(event.IncidentDeclared, 1))
		var ra notify.RetryAfterError
		if !retry || !errors.As(err, &ra) || ra.RetryAfter() != 90*time.Second {
			t.Fatalf("Notify = %v, %v; want a retry after 90s", retry, err)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		block := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
		defer srv.Close()
		defer close(block)
		n, err := pagerduty.New(config.PagerDutyNotifier{RoutingKey: routingKey, URL: srv.URL}, nil, pagerduty.WithTimeout(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		retry, err := n.Notify(context.Background(), eventsample.Event(event.IncidentDeclared, 1))
		if !retry || err == nil {
			t.Fatalf("Notify = %v, %v; want a retryable error", retry, err)
		}
	})
}

// TestRoutingKeyNeverShown: no log line, at debug level, nor error shows
// the routing key, even when PagerDuty's answer quotes it.
func TestRoutingKeyNeverShown(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	rcv := &receiver{
		codes:  []int{http.StatusAccepted, http.StatusBadRequest, http.StatusInternalServerError},
		answer: `{"status":"invalid event","message":"Event object is invalid","errors":["routing_key ` + routingKey + ` is unknown"]}`,
	}
	srv := httptest.NewServer(rcv)
	n := newNotifier(t, srv.URL+"/v2/enqueue", zap.New(core), config.Templates{Title: `{{index .Responders 9}}`})
	var errs []error
	for i, e := range eventsample.All() {
		if i > 3 {
			break
		}
		_, err := n.Notify(context.Background(), e)
		errs = append(errs, err)
	}
	srv.Close()
	_, err := n.Notify(context.Background(), eventsample.Event(event.IncidentDeclared, 1))
	errs = append(errs, err)

	var texts []string
	for _, l := range logs.All() {
		enc, _ := json.Marshal(l.ContextMap())
		texts = append(texts, l.Message+" "+string(enc))
	}
	nerr := 0
	for _, err := range errs {
		if err != nil {
			nerr++
			texts = append(texts, err.Error())
		}
	}
	if nerr < 3 || logs.Len() == 0 {
		t.Fatalf("%d errors and %d log lines: the test tests nothing", nerr, logs.Len())
	}
	for _, s := range texts {
		if strings.Contains(s, routingKey) {
			t.Errorf("%q shows the routing key", s)
		}
	}
	if !strings.Contains(errs[1].Error(), "routing_key <routing key> is unknown") {
		t.Errorf("the 400's message is not quoted, redacted: %v", errs[1])
	}
}
