package web

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/verify"
)

// statusNow is the status page's clock in these tests.
var statusNow = time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)

const evidenceQuery = `sum(rate(http_requests_total{service="checkout",code=~"5.."}[1m]))`

// lifecycle drives a real incident through the state machine: declared at
// at, then as far as upTo (detected, awaiting_approval, held, rolling_back,
// verifying, resolved or closed), each step a minute after the last.
func lifecycle(t testing.TB, id int64, service, severity string, at time.Time, upTo incident.State) incident.Record {
	t.Helper()
	rules := incident.Rules{Approval: approval.Policy{Mode: approval.Manual}, StableFor: time.Minute,
		RecoveryTimeout: time.Hour, ProbeInterval: time.Minute, Application: "command rollback.sh"}
	now := at
	next := func(r incident.Record, ev incident.Event) incident.Record {
		t.Helper()
		r, _, err := incident.Next(r, ev, rules, now)
		if err != nil {
			t.Fatalf("incident %d: %T: %v", id, ev, err)
		}
		now = now.Add(time.Minute)
		return r
	}
	r := next(incident.Record{}, incident.Declare{ID: id, Service: service, Severity: severity, Version: "v2.4.1", Baseline: "v2.4.0",
		Trigger: "error-rate", DeployedAt: at.Add(-5 * time.Minute),
		Evidence: incident.Evidence{Summary: "5xx ratio 7.9% > 5%", Query: evidenceQuery}})
	if upTo == incident.Detected {
		return r
	}
	if upTo == incident.Closed {
		return next(r, incident.CloseRequested{By: "token:alice", Channel: "api", Reason: "false alarm"})
	}
	r = next(r, incident.Tick{})
	switch upTo {
	case incident.AwaitingApproval:
		return r
	case incident.Held:
		return next(r, incident.Voted{Vote: approval.Vote{Incident: id, By: "token:alice", Channel: "api", Reason: "a fix is going out"}})
	}
	r = next(r, incident.Voted{Vote: approval.Vote{Incident: id, Approve: true, By: "token:alice", Channel: "api"}})
	if upTo == incident.RollingBack {
		return r
	}
	r = next(r, incident.StepEnded{Key: fmt.Sprintf("incident-%d/rollback.application", id), Outcome: incident.ActionSucceeded})
	if upTo == incident.Verifying {
		return r
	}
	ok := verify.Result{Recovered: true, Running: "v2.4.0", Status: "recovered"}
	r = next(r, incident.Probed{Result: ok})
	r = next(r, incident.Probed{Result: ok})
	if r.State != upTo {
		t.Fatalf("incident %d is %s, want %s", id, r.State, upTo)
	}
	return r
}

// records serves a fixed list of incidents and counts the listings.
type records struct {
	recs  []incident.Record
	err   error
	lists atomic.Int32
}

func (f *records) List(context.Context) ([]incident.Record, error) {
	f.lists.Add(1)
	return f.recs, f.err
}

var errNotHere = errors.New("not served by this test")

func (f *records) Get(context.Context, int64) (incident.Record, error) {
	return incident.Record{}, errNotHere
}
func (f *records) Vote(context.Context, approval.Vote) (incident.Record, error) {
	return incident.Record{}, errNotHere
}
func (f *records) Close(context.Context, int64, string, string, string) (incident.Record, error) {
	return incident.Record{}, errNotHere
}
func (f *records) Report(context.Context, int64, string) ([]byte, error) { return nil, errNotHere }
func (f *records) Rollback(context.Context, string, string, string, string, string) (incident.Record, error) {
	return incident.Record{}, errNotHere
}

func statusServer(t testing.TB, recs *records, cfg StatusConfig, flags Flags) *Server {
	t.Helper()
	return New(Options{Gatherer: prometheus.NewRegistry(), Logger: zap.NewNop(), Incidents: recs, Flags: flags,
		StatusPage: func() StatusConfig { cfg.Now = statusNow; return cfg }})
}

func get(t *testing.T, h http.Handler, path string) (int, string, http.Header) {
	t.Helper()
	w := do(t, h, http.MethodGet, path, "", "")
	return w.Code, w.Body.String(), w.Header()
}

var componentRE = regexp.MustCompile(`<li class="component" data-service="([^"]+)" data-state="([^"]+)">\s*<div class="component-head"><span class="name">([^<]+)</span> <span class="state">([^<]+)</span>`)

// components returns each component's state and its text, by service.
func components(t *testing.T, page string) map[string][3]string {
	t.Helper()
	out := map[string][3]string{}
	for _, m := range componentRE.FindAllStringSubmatch(page, -1) {
		out[m[1]] = [3]string{m[2], m[3], m[4]}
	}
	return out
}

func TestStatusStates(t *testing.T) {
	at := statusNow.Add(-30 * time.Minute)
	recs := &records{recs: []incident.Record{
		lifecycle(t, 1, "checkout", "SEV-1", at, incident.AwaitingApproval),
		lifecycle(t, 2, "search", "SEV-2", at, incident.Held),
		lifecycle(t, 3, "payments", "SEV-1", at.Add(-2*time.Hour), incident.Resolved),
		lifecycle(t, 4, "auth", "SEV-3", at, incident.Closed),
		lifecycle(t, 5, "auth", "sev-3", at, incident.Verifying),
		lifecycle(t, 6, "cart", "SEV-2", at, incident.RollingBack),
		lifecycle(t, 7, "legacy", "SEV-1", at, incident.Detected), // not on the page
	}}
	// A service in shadow mode: Guardian's trial judgement is not news.
	trial := lifecycle(t, 8, "mail", "SEV-1", at, incident.Detected)
	trial.Mode = incident.ModeShadow
	recs.recs = append(recs.recs, trial)
	cfg := StatusConfig{
		Services: []StatusService{{Name: "checkout", Display: "Checkout"}, {Name: "search"}, {Name: "payments"},
			{Name: "auth"}, {Name: "cart"}, {Name: "inventory", Display: "Inventory"}, {Name: "mail"}},
		Maintenance: []MaintenanceWindow{
			{Services: []string{"inventory", "cart"}, Start: statusNow.Add(-time.Hour), End: statusNow.Add(time.Hour), Message: "Database upgrade"},
			{Services: []string{"mail"}, Start: statusNow.Add(-3 * time.Hour), End: statusNow.Add(-time.Hour)},
		},
	}
	code, page, h := get(t, statusServer(t, recs, cfg, Flags{}).Handler(), "/status")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /status: %d %s\n%s", code, h.Get("Content-Type"), page)
	}
	got := components(t, page)
	for svc, want := range map[string][3]string{
		"checkout":  {"major_outage", "Checkout", "Major outage"},
		"search":    {"degraded", "search", "Degraded performance"},
		"payments":  {"operational", "payments", "Operational"},
		"auth":      {"degraded", "auth", "Degraded performance"},
		"cart":      {"degraded", "cart", "Degraded performance"}, // an incident outranks maintenance
		"inventory": {"under_maintenance", "Inventory", "Under maintenance"},
		"mail":      {"operational", "mail", "Operational"}, // its window is over, its incident a shadow one
	} {
		if got[svc] != want {
			t.Errorf("%s: got %q, want %q", svc, got[svc], want)
		}
	}
	if len(got) != 7 {
		t.Errorf("%d components, want 7: %v", len(got), got)
	}
	if !strings.Contains(page, `<p class="overall" data-state="major_outage">Major outage</p>`) {
		t.Error("the overall state is not a major outage")
	}
	if !strings.Contains(page, "Database upgrade") || !strings.Contains(page, "In progress: Inventory, cart") {
		t.Error("the maintenance in progress is not shown")
	}
	if strings.Contains(page, "legacy") {
		t.Error("a service not on the page shows")
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if strings.Contains(page, "<script") || regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(page) {
		t.Error("the page loads a script or something from elsewhere")
	}
}

func TestStatusSeverityState(t *testing.T) {
	for sev, want := range map[string]ServiceState{
		"SEV-1": MajorOutage, "sev1": MajorOutage, "SEV-0": MajorOutage, "P1": MajorOutage, "critical": MajorOutage,
		"SEV-2": Degraded, "SEV-3": Degraded, "minor": Degraded, "": Degraded,
	} {
		if got := SeverityState(sev); got != want {
			t.Errorf("SeverityState(%q) = %s, want %s", sev, got, want)
		}
	}
}

func TestStatusUpdates(t *testing.T) {
	start := statusNow.Add(-3 * time.Hour)
	rec := lifecycle(t, 42, "checkout", "SEV-1", start, incident.Resolved)
	recs := &records{recs: []incident.Record{rec}}
	cfg := StatusConfig{Services: []StatusService{{Name: "checkout", Display: "Checkout"}}}
	_, page, _ := get(t, statusServer(t, recs, cfg, Flags{}).Handler(), "/status")

	updateRE := regexp.MustCompile(`<li class="update"><strong>([^<]+)</strong> — ([^<]+) <time datetime="([^"]+)">`)
	var phases []string
	for _, m := range updateRE.FindAllStringSubmatch(page, -1) {
		at, err := time.Parse(time.RFC3339, m[3])
		if err != nil {
			t.Fatal(err)
		}
		if at.Before(start) || at.After(start.Add(10*time.Minute)) {
			t.Errorf("update %q at %s, outside the incident", m[1], at)
		}
		phases = append(phases, m[1])
	}
	want := []string{"Resolved", "Monitoring", "Monitoring", "Rolling back", "Identified", "Investigating"}
	if strings.Join(phases, ",") != strings.Join(want, ",") {
		t.Errorf("updates %q, want %q", phases, want)
	}
	if !strings.Contains(page, "We are investigating a problem affecting Checkout.") || !strings.Contains(page, `id="incident-42"`) {
		t.Error("the declaration is not told in plain words")
	}
	leaks := []string{"v2.4.1", "v2.4.0", "error-rate", "http_requests_total", "5xx", "token:alice", "alice", "SEV-1", "rollback.sh"}
	for _, leak := range leaks {
		if strings.Contains(page, leak) {
			t.Errorf("the page shows %q", leak)
		}
	}
	_, feed, _ := get(t, statusServer(t, recs, cfg, Flags{}).Handler(), "/status/feed.atom")
	for _, leak := range leaks {
		if strings.Contains(feed, leak) {
			t.Errorf("the feed shows %q", leak)
		}
	}

	cfg.ShowDetails = true
	_, page, _ = get(t, statusServer(t, recs, cfg, Flags{}).Handler(), "/status")
	for _, detail := range []string{"v2.4.1", "error-rate", "token:alice"} {
		if !strings.Contains(page, detail) {
			t.Errorf("with show_details the page does not show %q", detail)
		}
	}
}

// day returns the state of service's history cell for date.
func dayState(t *testing.T, page, service string, date time.Time) string {
	t.Helper()
	i := strings.Index(page, `data-service="`+service+`"`)
	if i < 0 {
		t.Fatalf("no component %s", service)
	}
	rest := page[i:]
	rest = rest[:strings.Index(rest, "</ol>")]
	m := regexp.MustCompile(`data-date="` + date.Format(time.DateOnly) + `" data-state="([a-z_]+)"`).FindStringSubmatch(rest)
	if m == nil {
		t.Fatalf("%s: no cell for %s", service, date.Format("2006-01-02"))
	}
	return m[1]
}

func TestStatusHistory(t *testing.T) {
	day := func(n int) time.Time { return time.Date(2026, 12, 3-n, 0, 0, 0, 0, time.UTC) }
	long := lifecycle(t, 3, "checkout", "SEV-2", day(6).Add(23*time.Hour+50*time.Minute), incident.Verifying)
	long.State, long.ResolvedAt = incident.Resolved, ptr(day(5).Add(2*time.Hour)) // over midnight
	recs := &records{recs: []incident.Record{
		lifecycle(t, 1, "checkout", "SEV-2", day(3).Add(9*time.Hour), incident.Resolved),
		lifecycle(t, 2, "checkout", "SEV-1", day(3).Add(18*time.Hour), incident.Resolved), // the worst of the day wins
		long,
		lifecycle(t, 4, "checkout", "SEV-1", day(120), incident.Resolved), // before the history
		lifecycle(t, 5, "search", "SEV-1", statusNow.Add(-time.Hour), incident.AwaitingApproval),
	}}
	cfg := StatusConfig{
		Services:    []StatusService{{Name: "checkout"}, {Name: "search"}},
		Maintenance: []MaintenanceWindow{{Services: []string{"search"}, Start: day(10).Add(22 * time.Hour), End: day(10).Add(23 * time.Hour)}},
	}
	_, page, _ := get(t, statusServer(t, recs, cfg, Flags{}).Handler(), "/status")
	if !strings.Contains(page, `data-date="`+day(89).Format(time.DateOnly)+`"`) {
		t.Error("the history does not start 89 days before today")
	}
	if n := strings.Count(page, `<li class="day"`); n != 2*HistoryDays {
		t.Errorf("%d day cells, want %d", n, 2*HistoryDays)
	}
	for _, tc := range []struct {
		service string
		day     int
		want    string
	}{
		{"checkout", 0, "operational"},
		{"checkout", 2, "operational"},
		{"checkout", 3, "major_outage"},
		{"checkout", 4, "operational"},
		{"checkout", 5, "degraded"},
		{"checkout", 6, "degraded"},
		{"checkout", 89, "operational"},
		{"search", 0, "major_outage"},
		{"search", 1, "operational"},
		{"search", 10, "under_maintenance"},
	} {
		if got := dayState(t, page, tc.service, day(tc.day)); got != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.service, day(tc.day).Format("2006-01-02"), got, tc.want)
		}
	}
	if i := strings.Index(page, `data-date="`+day(90).Format(time.DateOnly)+`"`); i >= 0 {
		t.Errorf("the history goes back more than 90 days: %s", page[i:i+80])
	}
	if strings.Contains(page, `id="incident-4"`) {
		t.Error("an incident older than the history is listed")
	}
	if !strings.Contains(page, `id="incident-1"`) || !strings.Contains(page, `id="incident-5"`) {
		t.Error("an incident is missing")
	}
	if n := recs.lists.Load(); n != 1 {
		t.Errorf("the incidents were listed %d times for one page", n)
	}
}

func ptr[T any](v T) *T { return &v }

func TestStatusFeed(t *testing.T) {
	recs := &records{recs: []incident.Record{
		lifecycle(t, 1, "checkout", "SEV-1", statusNow.Add(-48*time.Hour), incident.Resolved),
		lifecycle(t, 2, "search", "SEV-2", statusNow.Add(-time.Hour), incident.Held),
	}}
	cfg := StatusConfig{Title: "Acme status", Services: []StatusService{{Name: "checkout", Display: "Checkout"}, {Name: "search", Display: "Search"}}}
	h := statusServer(t, recs, cfg, Flags{ExternalURL: "https://status.example.com/guardian/"}).Handler()

	_, page, _ := get(t, h, "/status")
	if !strings.Contains(page, `<link rel="alternate" type="application/atom+xml" title="Acme status: incidents" href="status/feed.atom">`) {
		t.Error("the page does not link its feed")
	}
	code, body, hdr := get(t, h, "/status/feed.atom")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/atom+xml") {
		t.Fatalf("GET /status/feed.atom: %d %s", code, hdr.Get("Content-Type"))
	}
	type link struct {
		Rel  string `xml:"rel,attr"`
		Href string `xml:"href,attr"`
	}
	var feed struct {
		XMLName xml.Name `xml:"http://www.w3.org/2005/Atom feed"`
		ID      string   `xml:"http://www.w3.org/2005/Atom id"`
		Title   string   `xml:"http://www.w3.org/2005/Atom title"`
		Updated string   `xml:"http://www.w3.org/2005/Atom updated"`
		Author  string   `xml:"http://www.w3.org/2005/Atom author>name"`
		Links   []link   `xml:"http://www.w3.org/2005/Atom link"`
		Entries []struct {
			ID      string `xml:"http://www.w3.org/2005/Atom id"`
			Title   string `xml:"http://www.w3.org/2005/Atom title"`
			Updated string `xml:"http://www.w3.org/2005/Atom updated"`
			Links   []link `xml:"http://www.w3.org/2005/Atom link"`
			Content struct {
				Type string `xml:"type,attr"`
				Text string `xml:",chardata"`
			} `xml:"http://www.w3.org/2005/Atom content"`
		} `xml:"http://www.w3.org/2005/Atom entry"`
	}
	if err := xml.Unmarshal([]byte(body), &feed); err != nil {
		t.Fatalf("the feed is not Atom: %v\n%s", err, body)
	}
	if !strings.HasPrefix(feed.ID, "urn:uuid:") || feed.Title != "Acme status" || feed.Author == "" {
		t.Errorf("feed id %q title %q author %q", feed.ID, feed.Title, feed.Author)
	}
	if len(feed.Links) != 2 || feed.Links[0].Rel != "self" || feed.Links[0].Href != "https://status.example.com/guardian/status/feed.atom" {
		t.Errorf("feed links %+v", feed.Links)
	}
	if len(feed.Entries) != 2 {
		t.Fatalf("%d entries, want 2", len(feed.Entries))
	}
	newest := feed.Entries[0]
	if newest.Title != "Degraded performance of Search" || newest.Content.Type != "text" ||
		!strings.Contains(newest.Content.Text, "Identified: The cause has been identified") ||
		len(newest.Links) != 1 || newest.Links[0].Href != "https://status.example.com/guardian/status#incident-2" {
		t.Errorf("entry %+v", newest)
	}
	updated, err := time.Parse(time.RFC3339, feed.Updated)
	if err != nil {
		t.Fatalf("feed updated %q: %v", feed.Updated, err)
	}
	if last, _ := time.Parse(time.RFC3339, newest.Updated); !updated.Equal(last) {
		t.Errorf("feed updated %s, its newest entry %s", feed.Updated, newest.Updated)
	}
	if feed.Entries[0].ID == feed.Entries[1].ID || !strings.HasPrefix(newest.ID, "urn:uuid:") {
		t.Errorf("entry ids %q %q", feed.Entries[0].ID, feed.Entries[1].ID)
	}
	_, again, _ := get(t, h, "/status/feed.atom")
	if again != body {
		t.Error("the feed changed between two fetches with nothing new")
	}
}

// The separate listener serves the status page and nothing else, without
// a token whatever --web.read-auth says; the main listener asks for one
// when reads of everything need it.
func TestStatusListener(t *testing.T) {
	recs := &records{recs: []incident.Record{lifecycle(t, 1, "checkout", "SEV-1", statusNow.Add(-time.Hour), incident.AwaitingApproval)}}
	toks, err := NewTokens(writeTokens(t, "viewer:"+goodToken+":read\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Gatherer: prometheus.NewRegistry(), Logger: zap.NewNop(), Incidents: recs,
		Tokens: func() *Tokens { return toks }, Flags: Flags{ReadAuth: ReadAuthAll},
		StatusPage: func() StatusConfig { return StatusConfig{Now: statusNow} }})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeStatus(ctx, l) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + l.Addr().String()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		code         int
		want         string
	}{
		{"GET", "/status", 200, `data-service="checkout" data-state="major_outage"`},
		{"GET", "/status/feed.atom", 200, "<feed"},
		{"GET", "/status/status.css", 200, ".component"},
		{"GET", "/", 302, ""},
		{"GET", "/api/v1/incidents", 404, ""},
		{"GET", "/api/v1/status", 404, ""},
		{"GET", "/metrics", 404, ""},
		{"GET", "/-/ready", 404, ""},
		{"POST", "/-/reload", 404, ""},
		{"POST", "/api/v1/incidents/1/approve", 404, ""},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code && !(tc.code == 404 && resp.StatusCode == 405) {
			t.Errorf("%s %s on the status listener: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
		}
		if !strings.Contains(string(b), tc.want) {
			t.Errorf("%s %s: %q is not in\n%s", tc.method, tc.path, tc.want, b)
		}
		if tc.code == 302 && resp.Header.Get("Location") != "/status" {
			t.Errorf("GET / redirects to %q", resp.Header.Get("Location"))
		}
	}

	// The main listener, with --web.read-auth=all, wants a read token.
	h := s.Handler()
	for _, path := range []string{"/status", "/status/feed.atom", "/status/status.css"} {
		if w := do(t, h, "GET", path, "", ""); w.Code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d, want 401", path, w.Code)
		}
		if w := do(t, h, "GET", path, "Bearer "+goodToken, ""); w.Code != http.StatusOK {
			t.Errorf("GET %s with a read token: %d", path, w.Code)
		}
	}
	// With --web.read-auth=api it is public, as it is by default.
	api := New(Options{Gatherer: prometheus.NewRegistry(), Logger: zap.NewNop(), Incidents: recs, Flags: Flags{ReadAuth: ReadAuthAPI}})
	if w := do(t, api.Handler(), "GET", "/status", "", ""); w.Code != http.StatusOK {
		t.Errorf("GET /status with --web.read-auth=api: %d", w.Code)
	}
}

func TestStatusUnavailable(t *testing.T) {
	recs := &records{err: errors.New("bolt: database at /var/lib/guardian/guardian.db is locked")}
	h := statusServer(t, recs, StatusConfig{}, Flags{}).Handler()
	for _, path := range []string{"/status", "/status/feed.atom"} {
		code, body, _ := get(t, h, path)
		if code != http.StatusServiceUnavailable || strings.Contains(body, "guardian.db") {
			t.Errorf("GET %s when listing fails: %d %q", path, code, body)
		}
	}
	// Without incidents at all, every configured service is operational.
	none := New(Options{Gatherer: prometheus.NewRegistry(), Logger: zap.NewNop(),
		StatusPage: func() StatusConfig { return StatusConfig{Services: []StatusService{{Name: "checkout"}}} }})
	_, page, _ := get(t, none.Handler(), "/status")
	if got := components(t, page)["checkout"][0]; got != "operational" || !strings.Contains(page, "<title>Service status</title>") {
		t.Errorf("checkout is %q without incidents; title default missing?", got)
	}
}

// BenchmarkStatusPage renders the page over a year of incidents of 20
// services (2000 incidents).
func BenchmarkStatusPage(b *testing.B) {
	var recs []incident.Record
	var services []StatusService
	for s := 0; s < 20; s++ {
		services = append(services, StatusService{Name: fmt.Sprintf("svc-%d", s)})
	}
	for i := 0; i < 2000; i++ {
		at := statusNow.Add(-time.Duration(i) * 4 * time.Hour)
		recs = append(recs, lifecycle(b, int64(i+1), services[i%20].Name, []string{"SEV-1", "SEV-2"}[i%2], at, incident.Resolved))
	}
	h := statusServer(b, &records{recs: recs}, StatusConfig{Services: services}, Flags{}).Handler()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, _ := http.NewRequest("GET", "/status", nil)
		w := &discard{h: http.Header{}}
		h.ServeHTTP(w, r)
		if w.code != 0 && w.code != 200 {
			b.Fatal(w.code)
		}
	}
}

type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(c int)           { d.code = c }

// The feed links under the status page's public URL; without one, under
// Guardian's external URL on the main listener only: the status listener
// is reached elsewhere, so its own host is used.
func TestStatusFeedLinks(t *testing.T) {
	recs := &records{}
	for _, tc := range []struct {
		name             string
		public, external string
		flag             string
		statusListener   bool
		want             string
	}{
		{"request host", "", "", "", false, "http://example.com/status"},
		{"external URL", "", "https://guardian.example.com/", "", false, "https://guardian.example.com/status"},
		{"flag", "", "", "https://flag.example.com", false, "https://flag.example.com/status"},
		{"public URL", "https://status.example.com/", "https://guardian.example.com/", "", false, "https://status.example.com/status"},
		{"status listener, public URL", "https://status.example.com/", "https://guardian.example.com/", "", true, "https://status.example.com/status"},
		{"status listener, no public URL", "", "https://guardian.example.com/", "https://flag.example.com", true, "http://example.com/status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := statusServer(t, recs, StatusConfig{PublicURL: tc.public, ExternalURL: tc.external}, Flags{ExternalURL: tc.flag})
			h := s.Handler()
			if tc.statusListener {
				h = s.StatusHandler()
			}
			_, feed, _ := get(t, h, "/status/feed.atom")
			if want := `<link rel="alternate" type="text/html" href="` + tc.want + `">`; !strings.Contains(feed, want) {
				t.Errorf("the feed lacks %s:\n%s", want, feed)
			}
		})
	}
}
