package statuspage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/internal/eventsample"
	"github.com/rollback-guardian/guardian/notify/statuspage"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/store/bolt"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// apiKey must never show in errors or logs.
const (
	apiKey    = "sp-api-key-0123456789abcdef"
	pageID    = "kctbh9vrtdwd"
	component = "ftgks51sfs2d"
)

// call is one request as the fake page saw it.
type call struct {
	method, path string
	body         statuspage.Incident
	raw          []byte
}

// page is a Statuspage page as its REST API documents it: it checks each
// request's method, path, headers and JSON body, keeps the incidents and
// answers as Statuspage does. Codes, when set, are answered in turn
// instead (the last repeats); drop loses the answer to the next create.
type page struct {
	t         *testing.T
	mu        sync.Mutex
	incidents map[string]map[string]any
	order     []string
	calls     []call
	codes     []int
	retry     string // Retry-After with a code
	drop      bool
}

func newPage(t *testing.T) (*page, *httptest.Server) {
	p := &page{t: t, incidents: map[string]map[string]any{}}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv
}

var (
	incidentsPath = "/v1/pages/" + pageID + "/incidents"
	incidentPath  = regexp.MustCompile(`^/v1/pages/` + pageID + `/incidents/([a-z0-9]+)$`)
	statuses      = map[string]bool{"investigating": true, "identified": true, "monitoring": true, "resolved": true}
	compStatuses  = map[string]bool{"operational": true, "degraded_performance": true, "partial_outage": true, "major_outage": true, "under_maintenance": true}
)

func (p *page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fail := func(code int, msg string) {
		p.t.Errorf("%s %s: %s", r.Method, r.URL.Path, msg)
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error": %q}`, msg)
	}
	if got := r.Header.Get("Authorization"); got != "OAuth "+apiKey {
		fail(401, "Authorization is "+got)
		return
	}
	if len(p.codes) > 0 {
		code := p.codes[0]
		if len(p.codes) > 1 {
			p.codes = p.codes[1:]
		}
		if code != 0 {
			if p.retry != "" {
				w.Header().Set("Retry-After", p.retry)
			}
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error": "answer %d with the key %s"}`, code, apiKey)
			return
		}
	}
	var inc statuspage.Incident
	raw, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(raw))
	if r.Method == http.MethodPost || r.Method == http.MethodPatch {
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			fail(415, "Content-Type is "+ct)
			return
		}
		// The documented body: {"incident": {...}}, nothing else.
		var body struct {
			Incident *struct {
				Name         *string                      `json:"name"`
				Status       string                       `json:"status"`
				Body         string                       `json:"body"`
				ComponentIDs []string                     `json:"component_ids"`
				Components   map[string]string            `json:"components"`
				Metadata     map[string]map[string]string `json:"metadata"`
			} `json:"incident"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || body.Incident == nil {
			fail(400, fmt.Sprintf("body is not {\"incident\": {...}}: %v", err))
			return
		}
		b := body.Incident
		if !statuses[b.Status] || strings.TrimSpace(b.Body) == "" {
			fail(422, fmt.Sprintf("status %q, body %q", b.Status, b.Body))
			return
		}
		for _, id := range b.ComponentIDs {
			if !compStatuses[b.Components[id]] {
				fail(422, fmt.Sprintf("component %s status %q", id, b.Components[id]))
				return
			}
		}
		if len(b.Components) != len(b.ComponentIDs) {
			fail(422, "components and component_ids differ")
			return
		}
		inc = statuspage.Incident{Status: b.Status, Body: b.Body, ComponentIDs: b.ComponentIDs, Components: b.Components, Metadata: b.Metadata}
		if b.Name != nil {
			inc.Name = *b.Name
		}
	}
	p.calls = append(p.calls, call{method: r.Method, path: r.URL.Path, body: inc, raw: raw})
	switch {
	case r.Method == http.MethodPost && r.URL.Path == incidentsPath:
		if inc.Name == "" || len(inc.Name) > 255 {
			fail(422, "name "+inc.Name)
			return
		}
		id := fmt.Sprintf("p%d", len(p.order)+1)
		p.order = append(p.order, id)
		rec := map[string]any{"id": id, "name": inc.Name, "status": inc.Status, "metadata": inc.Metadata, "page_id": pageID}
		p.incidents[id] = rec
		if p.drop {
			p.drop = false
			hj, _ := w.(http.Hijacker)
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		_ = json.NewEncoder(w).Encode(rec)
	case r.Method == http.MethodGet && r.URL.Path == incidentsPath+"/unresolved":
		var open []map[string]any
		for _, id := range p.order {
			if p.incidents[id]["status"] != "resolved" {
				open = append(open, p.incidents[id])
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(open)
	case r.Method == http.MethodPatch && incidentPath.MatchString(r.URL.Path):
		id := incidentPath.FindStringSubmatch(r.URL.Path)[1]
		rec, ok := p.incidents[id]
		if !ok {
			w.WriteHeader(404)
			fmt.Fprint(w, `{"error": "Incident not found"}`)
			return
		}
		rec["status"] = inc.Status
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rec)
	default:
		fail(404, "not a documented endpoint")
	}
}

func (p *page) took() []call {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls
	p.calls = nil
	return c
}

func cfg(url string) config.StatuspageNotifier {
	return config.StatuspageNotifier{PageID: pageID, APIKey: commoncfg.Secret(apiKey), URL: url + "/v1/",
		Components: map[string]string{"checkout": component}}
}

func newNotifier(t *testing.T, url string, st store.Store, opts ...statuspage.Option) *statuspage.Notifier {
	t.Helper()
	opts = append([]statuspage.Option{statuspage.WithStore(func() store.Store { return st }),
		statuspage.WithServiceNames(map[string]string{"checkout": "Checkout"})}, opts...)
	n, err := statuspage.New("public", cfg(url), zap.NewNop(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func ev(t event.Type, seq int) notify.Event { return eventsample.Event(t, seq) }

func openBolt(t *testing.T, path string) store.Store {
	t.Helper()
	st, err := bolt.Open(path, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// An incident's lifecycle creates one Statuspage incident and updates it;
// a restart in between updates the same one, and a repeated delivery
// sends nothing.
func TestLifecycleAcrossRestart(t *testing.T) {
	p, srv := newPage(t)
	path := filepath.Join(t.TempDir(), "guardian.db")
	ctx := context.Background()

	st := openBolt(t, path)
	n := newNotifier(t, srv.URL, st)
	for _, e := range []notify.Event{ev(event.IncidentDeclared, 1), ev(event.TriggerFired, 2), ev(event.ApprovalRequested, 3)} {
		if retry, err := n.Notify(ctx, e); err != nil || retry {
			t.Fatalf("%s: %v %v", e.Type, retry, err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = openBolt(t, path) // Guardian restarted
	defer st.Close()
	n = newNotifier(t, srv.URL, st)
	for _, e := range []notify.Event{
		ev(event.ApprovalRequested, 3), // the outbox repeats a delivery
		ev(event.ApprovalGranted, 4), ev(event.RollbackStarted, 5), ev(event.RollbackSucceeded, 6),
		ev(event.RecoveryConfirmed, 7), ev(event.IncidentResolved, 8), ev(event.ReportWritten, 9),
		ev(event.IncidentResolved, 8),
	} {
		if retry, err := n.Notify(ctx, e); err != nil || retry {
			t.Fatalf("%s: %v %v", e.Type, retry, err)
		}
	}

	calls := p.took()
	type want struct{ method, path, status, comp string }
	wants := []want{
		{"POST", incidentsPath, "investigating", "major_outage"},
		{"PATCH", incidentsPath + "/p1", "identified", "major_outage"},
		{"PATCH", incidentsPath + "/p1", "identified", "major_outage"},
		{"PATCH", incidentsPath + "/p1", "monitoring", "major_outage"},
		{"PATCH", incidentsPath + "/p1", "resolved", "operational"},
	}
	if len(calls) != len(wants) {
		for _, c := range calls {
			t.Logf("%s %s %s", c.method, c.path, c.body.Status)
		}
		t.Fatalf("%d requests, want %d", len(calls), len(wants))
	}
	for i, w := range wants {
		c := calls[i]
		if c.method != w.method || c.path != w.path || c.body.Status != w.status || c.body.Components[component] != w.comp ||
			len(c.body.ComponentIDs) != 1 || c.body.ComponentIDs[0] != component {
			t.Errorf("request %d: %s %s %+v, want %+v", i, c.method, c.path, c.body, w)
		}
	}
	create := calls[0].body
	if create.Name != "Major outage of Checkout" || create.Body != "We are investigating a problem affecting Checkout." ||
		create.Metadata["guardian"]["incident"] != "42" {
		t.Errorf("create: %+v", create)
	}
	for _, c := range calls {
		for _, leak := range []string{"v2.4.1", "error-rate", "5xx", "alice", "SEV-1"} {
			if strings.Contains(c.body.Name+c.body.Body, leak) {
				t.Errorf("%s %s says %q: %+v", c.method, c.path, leak, c.body)
			}
		}
		if c.method == "PATCH" && (c.body.Name != "" || c.body.Metadata != nil) {
			t.Errorf("an update renames the incident or changes its metadata: %+v", c.body)
		}
	}
	if len(p.incidents) != 1 {
		t.Errorf("%d incidents on the page, want 1", len(p.incidents))
	}
}

// When the answer to the creation is lost, the next delivery finds the
// incident by its metadata instead of creating another.
func TestInterruptedCreation(t *testing.T) {
	p, srv := newPage(t)
	st := store.NewMemory()
	n := newNotifier(t, srv.URL, st)
	ctx := context.Background()
	p.drop = true
	retry, err := n.Notify(ctx, ev(event.IncidentDeclared, 1))
	if err == nil || !retry {
		t.Fatalf("a lost answer: retry %v, err %v", retry, err)
	}
	// The outbox retries the declaration, then sends the next event.
	for _, e := range []notify.Event{ev(event.IncidentDeclared, 1), ev(event.ApprovalRequested, 2)} {
		if retry, err := n.Notify(ctx, e); err != nil || retry {
			t.Fatalf("%s: %v %v", e.Type, retry, err)
		}
	}
	var got []string
	for _, c := range p.took() {
		got = append(got, c.method+" "+strings.TrimPrefix(c.path, incidentsPath))
	}
	want := []string{"POST ", "GET /unresolved", "PATCH /p1"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("requests %q, want %q", got, want)
	}
	if len(p.incidents) != 1 {
		t.Errorf("%d incidents on the page, want 1", len(p.incidents))
	}
}

// shadow marks e as an event of an incident in shadow mode.
func shadow(e notify.Event) notify.Event {
	e.Mode = "shadow"
	return e
}

func TestNotSent(t *testing.T) {
	p, srv := newPage(t)
	n := newNotifier(t, srv.URL, store.NewMemory())
	for _, e := range []notify.Event{
		ev(event.SourceUnreachable, 1), ev(event.TriggerFired, 2), ev(event.PostmortemScheduled, 3),
		ev(event.IncidentResolved, 4), // never created: nothing to resolve
		shadow(ev(event.IncidentDeclared, 5)), shadow(ev(event.ShadowDecision, 6)),
	} {
		if retry, err := n.Notify(context.Background(), e); err != nil || retry {
			t.Errorf("%s: %v %v", e.Type, retry, err)
		}
	}
	if c := p.took(); len(c) != 0 {
		t.Errorf("%d requests: %+v", len(c), c)
	}
	// A service without a component gets an incident without one.
	e := ev(event.IncidentDeclared, 1)
	e.Service, e.Severity = "search", "SEV-2"
	if _, err := n.Notify(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	c := p.took()
	if len(c) != 1 || c[0].body.ComponentIDs != nil || c[0].body.Components != nil || c[0].body.Name != "Degraded performance of search" {
		t.Errorf("requests %+v", c)
	}
}

func TestNoStore(t *testing.T) {
	_, srv := newPage(t)
	n, err := statuspage.New("public", cfg(srv.URL), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if retry, err := n.Notify(context.Background(), ev(event.IncidentDeclared, 1)); !retry || err == nil {
		t.Errorf("without a store: retry %v, err %v", retry, err)
	}
}

func TestAnswers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		codes      []int
		retryAfter string
		retry      bool
		wait       time.Duration
		want       string
	}{
		{"rate limited", []int{429}, "7", true, 7 * time.Second, "status 429"},
		{"unavailable", []int{503}, "", true, 0, "status 503"},
		{"server error", []int{500}, "", true, 0, "status 500"},
		{"bad request", []int{400}, "", false, 0, "status 400"},
		{"bad key", []int{401}, "", false, 0, "check api_key_file"},
		{"no page", []int{404}, "", false, 0, "check page_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, srv := newPage(t)
			p.codes, p.retry = tc.codes, tc.retryAfter
			n := newNotifier(t, srv.URL, store.NewMemory())
			retry, err := n.Notify(context.Background(), ev(event.IncidentDeclared, 1))
			if err == nil || retry != tc.retry || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("retry %v, err %v", retry, err)
			}
			if strings.Contains(err.Error(), apiKey) {
				t.Errorf("the error shows the API key: %v", err)
			}
			var ra notify.RetryAfterError
			if !errors.As(err, &ra) || ra.RetryAfter() != tc.wait {
				t.Errorf("Retry-After: %v", err)
			}
			// After a failure the next attempt still creates the incident once.
			p.mu.Lock()
			p.codes = []int{0}
			p.mu.Unlock()
			if _, err := n.Notify(context.Background(), ev(event.IncidentDeclared, 1)); err != nil {
				t.Fatal(err)
			}
			if len(p.incidents) != 1 {
				t.Errorf("%d incidents", len(p.incidents))
			}
		})
	}
	t.Run("network error", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		n := newNotifier(t, url, store.NewMemory())
		if retry, err := n.Notify(context.Background(), ev(event.IncidentDeclared, 1)); !retry || err == nil {
			t.Errorf("retry %v, err %v", retry, err)
		}
	})
}

func TestTemplates(t *testing.T) {
	p, srv := newPage(t)
	c := cfg(srv.URL)
	c.Templates = config.Templates{Title: `{{.Service}} incident #{{.Incident}}`, Text: `{{.Data.public_text}} ({{.Data.version}}{{index .Data "nothing" "x"}})`}
	n, err := statuspage.New("public", c, zap.NewNop(), statuspage.WithStore(func() store.Store { return store.NewMemory() }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), ev(event.IncidentDeclared, 1)); err != nil {
		t.Fatal(err)
	}
	calls := p.took()
	if len(calls) != 1 || calls[0].body.Name != "checkout incident #42" ||
		calls[0].body.Body != "We are investigating a problem affecting checkout." {
		t.Errorf("a failing text template does not fall back to the default: %+v", calls)
	}
	if _, err := statuspage.New("public", config.StatuspageNotifier{PageID: pageID, URL: srv.URL}, zap.NewNop()); err == nil {
		t.Error("New without an API key")
	}
}
