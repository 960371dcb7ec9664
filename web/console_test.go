package web

import (
	"context"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/report/chart"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/watch"
)

// checkoutView is a service watching v2 against v1 whose error-rate
// trigger fires: 0.2 against a threshold of 0.05, the baseline at 0.01.
func checkoutView(points int) ServiceView {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	hist := make([]watch.Sample, points)
	for i := range hist {
		hist[i] = watch.Sample{At: t0.Add(time.Duration(i) * time.Second), Value: 0.01 + 0.19*float64(i)/float64(max(points-1, 1)),
			Baseline: 0.01, Threshold: 0.05, Outcome: trigger.Violated, State: trigger.Firing}
	}
	since := t0.Add(-time.Minute)
	return ServiceView{
		ServiceStatus: watch.ServiceStatus{Name: "checkout", Current: "v2", Serving: []string{"v2"}, Watch: &watch.WatchStatus{
			Version: "v2", Baseline: "v1", BaselineWhy: "served most before the deploy", Via: "version_query",
			Since: t0.Add(-time.Minute), Until: t0.Add(9 * time.Minute),
			Triggers: []watch.TriggerStatus{
				{Name: "error-rate", State: "firing", ActiveSince: &since, Outcome: "violated", Evidence: "error-rate v2: 0.2 > 0.05"},
				{Name: "latency", State: "inactive"},
			},
		}},
		History: map[string][]watch.Sample{"error-rate": hist},
	}
}

// fakeCharts draws one chart per incident, as the report does.
func fakeCharts(_ context.Context, id int64) ([]template.HTML, error) {
	th := 0.05
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := chart.Chart{Title: fmt.Sprintf("incident %d error-rate", id), Threshold: &th, Series: []chart.Series{
		{Name: "v2", Role: chart.RoleVersion, Points: []chart.Point{{T: t0, V: 0.01}, {T: t0.Add(time.Minute), V: 0.2}}},
	}, Markers: []chart.Marker{{At: t0.Add(30 * time.Second), Kind: "detected"}}}
	return []template.HTML{template.HTML(c.SVG())}, nil
}

// consoleEnv is a Server with a real incident manager holding incident 1
// (checkout v2 → v1, awaiting a go/no-go), served over HTTP.
type consoleEnv struct {
	t    *testing.T
	m    *incident.Manager
	srv  *httptest.Server
	logs *observer.ObservedLogs
}

func newConsoleEnv(t *testing.T, flags Flags) *consoleEnv {
	t.Helper()
	m := incident.NewManager(incident.Options{Store: store.NewMemory(), Env: manualEnv{}, Registry: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
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
	toks := tokensFile(t, "alice:"+goodToken+"\nbob:"+readToken+":read\n")
	core, logs := observer.New(zap.DebugLevel)
	s := New(Options{
		Gatherer: prometheus.NewRegistry(), Logger: zap.New(core), Tokens: func() *Tokens { return toks },
		Incidents: reports{m}, Flags: flags, Charts: fakeCharts,
		Services: func() []ServiceView { return []ServiceView{checkoutView(60)} },
	})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &consoleEnv{t: t, m: m, srv: srv, logs: logs}
}

func (e *consoleEnv) incident(id int64) incident.Record {
	e.t.Helper()
	r, err := e.m.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// browser keeps cookies, does not follow redirects and sends its own
// origin with every POST, as a browser does.
type browser struct {
	t      *testing.T
	base   string
	c      *http.Client
	header http.Header
}

func (e *consoleEnv) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: e.t, base: e.srv.URL, header: http.Header{}, c: &http.Client{
		Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) do(method, path string, form url.Values, header ...string) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range b.header {
		req.Header[k] = v
	}
	if method == "POST" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.base)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

func (b *browser) get(path string) (*http.Response, string) { return b.do("GET", path, nil) }

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// csrf returns the CSRF token of the page at path.
func (b *browser) csrf(path string) string {
	b.t.Helper()
	_, page := b.get(path)
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("no CSRF token on %s:\n%s", path, page)
	}
	return m[1]
}

func (b *browser) signIn(token string) *http.Response {
	b.t.Helper()
	resp, _ := b.do("POST", "/sign-in", url.Values{"token": {token}, "next": {"/incidents/1"}})
	return resp
}

func TestConsoleRenders(t *testing.T) {
	e := newConsoleEnv(t, Flags{Console: ConsoleFlags{Refresh: 10 * time.Second}})
	b := e.browser()
	resp, page := b.get("/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`data-service="checkout"`, `running <b>v2</b>`, `Watching <b>v2</b> against baseline <b>v1</b> (served most before the deploy)`,
		`2026-03-01 11:59:00 UTC – 2026-03-01 12:09:00 UTC`,
		`<tr class="trigger state-firing" data-trigger="error-rate">`,
		`<td class="value num">0.2</td>`, `<td class="threshold num">0.05</td>`, `<td class="baseline num">0.01</td>`,
		`data-series="version"`, `data-series="baseline"`, `class="threshold"`, `60 evaluations`,
		`<tr class="trigger state-inactive" data-trigger="latency">`, `not evaluated yet`,
		`href="/incidents/1">incident #1: awaiting_approval</a>`, `<tr data-incident="1">`,
		`href="/services/checkout#rollback">Roll back now…</a>`,
		`<meta http-equiv="refresh" content="10">`, `href="/sign-in?next=%2f"`,
		`<p class="prevented" id="prevented">No bad deploys stopped in the last 30 days.</p>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("console lacks %s", want)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "Sign out") || strings.Contains(page, "csrf_token") {
		t.Error("an anonymous console has a script, a sign-out button or a CSRF token")
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Frame-Options":         "DENY", "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}

	resp, page = b.get("/incidents/1")
	if resp.StatusCode != 200 {
		t.Fatalf("incident page: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`data-state="awaiting_approval"`, `checkout</a> v2 → v1`, `SEV-1`, `trigger error-rate`,
		`href="/api/v1/incidents/1/report?format=html"`, `href="/api/v1/incidents/1/report?format=markdown"`,
		`aria-label="incident 1 error-rate"`, `data-marker="detected"`,
		`<tr data-type="incident.declared">`, `<tr data-type="approval.requested">`,
		`<dd class="num">0.2</dd>`, `href="/sign-in?next=%2fincidents%2f1">Sign in</a> to approve or hold.`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("incident page lacks %s", want)
		}
	}
	if strings.Contains(page, `http-equiv="refresh"`) {
		t.Error("the incident page reloads itself while it awaits a decision")
	}

	resp, page = b.get("/services/checkout")
	if resp.StatusCode != 200 || !strings.Contains(page, `id="rollback"`) || !strings.Contains(page, `data-trigger="error-rate"`) ||
		!strings.Contains(page, "to roll back") {
		t.Errorf("service page: %d", resp.StatusCode)
	}
	for path, code := range map[string]int{
		"/incidents/9": 404, "/incidents/x": 400, "/services/cart": 404, "/static/console.css": 200, "/nope": 404,
	} {
		if resp, _ := b.get(path); resp.StatusCode != code {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, code)
		}
	}
}

// Signing in takes an API token and gives a session cookie that is not the
// token; a wrong token, a cross-site form or a tampered cookie give none.
func TestConsoleSignIn(t *testing.T) {
	e := newConsoleEnv(t, Flags{})
	b := e.browser()
	if resp, page := b.get("/sign-in?next=/incidents/1"); resp.StatusCode != 200 || !strings.Contains(page, `name="next" value="/incidents/1"`) {
		t.Fatalf("sign-in form: %d", resp.StatusCode)
	}
	resp, page := b.do("POST", "/sign-in", url.Values{"token": {"wrong-token-00000000000"}})
	if resp.StatusCode != 401 || !strings.Contains(page, "Unknown token.") || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if resp, _ := b.do("POST", "/sign-in", url.Values{"token": {goodToken}}, "Origin", "https://evil.example"); resp.StatusCode != 403 || len(resp.Cookies()) != 0 {
		t.Fatalf("cross-site sign-in: %d", resp.StatusCode)
	}
	resp = b.signIn(goodToken)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/incidents/1" {
		t.Fatalf("sign-in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	c := cookies[0]
	if c.Name != sessionCookie || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || strings.Contains(c.Value, goodToken) {
		t.Fatalf("session cookie %+v", c)
	}
	if e.logs.FilterMessage("console: signed in").Len() != 1 || strings.Contains(fmt.Sprint(e.logs.All()), goodToken) {
		t.Error("sign-in not logged, or the token logged")
	}
	_, page = b.get("/")
	if !strings.Contains(page, "Signed in as token:alice") || !strings.Contains(page, `action="/sign-out"`) {
		t.Fatal("signed-in console does not name alice")
	}
	if !strings.Contains(func() string { _, p := b.get("/incidents/1"); return p }(), `id="approve"`) {
		t.Fatal("no approve button for alice")
	}

	// A cookie with a changed name, or signed by another token, is nobody's.
	anon := e.browser()
	parts := strings.Split(c.Value, ".")
	forged := b64.EncodeToString([]byte("bob")) + "." + strings.Join(parts[1:], ".")
	for _, v := range []string{forged, "garbage", c.Value + "x"} {
		anon.c.Jar.SetCookies(mustURL(t, e.srv.URL), []*http.Cookie{{Name: sessionCookie, Value: v}})
		if _, page := anon.get("/"); strings.Contains(page, "Signed in") {
			t.Errorf("cookie %q signed in", v)
		}
	}

	// Signing out ends the session, even for a copy of the cookie.
	resp, _ = b.do("POST", "/sign-out", url.Values{csrfField: {b.csrf("/")}})
	if resp.StatusCode != 303 {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	if _, page := b.get("/"); strings.Contains(page, "Signed in") {
		t.Error("still signed in after signing out")
	}
	anon.c.Jar.SetCookies(mustURL(t, e.srv.URL), []*http.Cookie{{Name: sessionCookie, Value: c.Value}})
	if _, page := anon.get("/"); strings.Contains(page, "Signed in") {
		t.Error("a copy of a signed-out cookie still signs in")
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A go/no-go from the console needs a session with the approve scope, the
// session's CSRF token and a same-origin request; only then does it reach
// the incident, named after the token, through the "console" channel.
func TestConsoleDecisions(t *testing.T) {
	e := newConsoleEnv(t, Flags{})
	before := len(e.incident(1).Timeline)

	anon := e.browser()
	if resp, page := anon.do("POST", "/incidents/1/approve", url.Values{csrfField: {"whatever"}}); resp.StatusCode != 401 || !strings.Contains(page, "Sign in first.") {
		t.Fatalf("approve without a session: %d", resp.StatusCode)
	}

	bob := e.browser()
	bob.signIn(readToken)
	if resp, _ := bob.do("POST", "/incidents/1/approve", url.Values{csrfField: {bob.csrf("/")}}); resp.StatusCode != 403 {
		t.Fatalf("approve with a read-only token: %d", resp.StatusCode)
	}

	alice := e.browser()
	alice.signIn(goodToken)
	token := alice.csrf("/incidents/1")
	for _, tc := range []struct {
		name   string
		form   url.Values
		header []string
		code   int
	}{
		{"no CSRF token", url.Values{}, nil, 403},
		{"wrong CSRF token", url.Values{csrfField: {token[:len(token)-2] + "xx"}}, nil, 403},
		{"bob's CSRF token", url.Values{csrfField: {bob.csrf("/")}}, nil, 403},
		{"cross-site Origin", url.Values{csrfField: {token}}, []string{"Origin", "https://evil.example", "Sec-Fetch-Site", ""}, 403},
		{"null Origin", url.Values{csrfField: {token}}, []string{"Origin", "null", "Sec-Fetch-Site", ""}, 403},
		{"cross-site fetch", url.Values{csrfField: {token}}, []string{"Origin", "", "Sec-Fetch-Site", "cross-site"}, 403},
		{"same-site fetch", url.Values{csrfField: {token}}, []string{"Origin", "", "Sec-Fetch-Site", "same-site"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp, _ := alice.do("POST", "/incidents/1/approve", tc.form, tc.header...); resp.StatusCode != tc.code {
				t.Errorf("%d, want %d", resp.StatusCode, tc.code)
			}
		})
	}
	if resp, page := alice.do("POST", "/incidents/1/hold", url.Values{csrfField: {token}, "reason": {"  "}}); resp.StatusCode != 400 || !strings.Contains(page, "A hold needs a reason.") {
		t.Fatalf("hold without a reason: %d", resp.StatusCode)
	}
	if n := len(e.incident(1).Timeline); n != before {
		t.Fatalf("refused requests reached the timeline (%d → %d entries)", before, n)
	}
	if e.logs.FilterMessage("console: cross-site request refused").Len() != 4 || e.logs.FilterMessage("console: request without a valid CSRF token refused").Len() != 3 {
		t.Errorf("refusals not logged: %v", e.logs.All())
	}

	resp, _ := alice.do("POST", "/incidents/1/hold", url.Values{csrfField: {token}, "reason": {"checking the dashboards first"}})
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/incidents/1" {
		t.Fatalf("hold: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	rec := e.incident(1)
	if rec.State != incident.Held || len(rec.Decisions) != 1 || rec.Decisions[0].Approved || rec.Decisions[0].By != "token:alice" ||
		rec.Decisions[0].Channel != ChannelConsole || rec.Decisions[0].Reason != "checking the dashboards first" {
		t.Fatalf("after hold: %s %+v", rec.State, rec.Decisions)
	}
	// Held: the go is still offered, the no-go not.
	_, page := alice.get("/incidents/1")
	if !strings.Contains(page, `id="approve"`) || strings.Contains(page, `id="hold"`) {
		t.Error("held incident's page: want approve only")
	}
	// Without Origin and Sec-Fetch-Site (curl), the session and its CSRF
	// token still decide.
	resp, _ = alice.do("POST", "/incidents/1/approve", url.Values{csrfField: {token}, "reason": {"confirmed"}}, "Origin", "", "Sec-Fetch-Site", "")
	if resp.StatusCode != 303 {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	rec = e.incident(1)
	if len(rec.Decisions) != 2 || !rec.Decisions[1].Approved || rec.Decisions[1].By != "token:alice" || rec.Decisions[1].Channel != ChannelConsole {
		t.Fatalf("after approve: %+v", rec.Decisions)
	}
	if resp, page := alice.do("POST", "/incidents/1/approve", url.Values{csrfField: {token}}); resp.StatusCode != 409 || !strings.Contains(page, "not waiting for a decision") {
		t.Fatalf("second approve: %d", resp.StatusCode)
	}
}

// "Roll back now" declares an incident with the signed-in person as its
// source; it needs a reason.
func TestConsoleRollback(t *testing.T) {
	e := newConsoleEnv(t, Flags{})
	alice := e.browser()
	alice.signIn(goodToken)
	token := alice.csrf("/services/checkout")
	if resp, _ := e.browser().do("POST", "/services/checkout/rollback", url.Values{csrfField: {token}, "reason": {"x"}}); resp.StatusCode != 401 {
		t.Fatalf("rollback without a session: %d", resp.StatusCode)
	}
	if resp, _ := alice.do("POST", "/services/checkout/rollback", url.Values{csrfField: {token}}); resp.StatusCode != 400 {
		t.Fatalf("rollback without a reason: %d", resp.StatusCode)
	}
	if resp, _ := alice.do("POST", "/services/cart/rollback", url.Values{csrfField: {token}, "reason": {"x"}}); resp.StatusCode != 404 {
		t.Fatalf("rollback of an unknown service: %d", resp.StatusCode)
	}
	// Incident 1 is still open for checkout, so a second one is refused:
	// close it first, as a person would.
	if _, err := e.m.Close(context.Background(), 1, "token:alice", "api", "test"); err != nil {
		t.Fatal(err)
	}
	resp, _ := alice.do("POST", "/services/checkout/rollback", url.Values{csrfField: {token}, "to": {"v0"}, "reason": {"orders are written twice"}})
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/incidents/2" {
		t.Fatalf("rollback: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	rec := e.incident(2)
	if rec.RequestedBy == nil || rec.RequestedBy.By != "token:alice" || rec.RequestedBy.Channel != ChannelConsole ||
		rec.RequestedBy.Reason != "orders are written twice" || rec.Baseline != "v0" {
		t.Fatalf("record %+v", rec)
	}
	if resp, page := alice.do("POST", "/services/checkout/rollback", url.Values{csrfField: {token}, "reason": {"again"}}); resp.StatusCode != 409 || !strings.Contains(page, "incident 2") {
		t.Fatalf("second rollback: %d", resp.StatusCode)
	}
}

// With --web.console.user-header, the proxy's header names the person; a
// CSRF cookie binds the forms. Without the flag the header is ignored.
func TestConsoleProxyHeader(t *testing.T) {
	off := newConsoleEnv(t, Flags{}).browser()
	off.header.Set("X-Forwarded-User", "mallory")
	if _, page := off.get("/"); strings.Contains(page, "mallory") {
		t.Fatal("the header is trusted without --web.console.user-header")
	}
	if resp, _ := off.do("POST", "/incidents/1/approve", url.Values{}); resp.StatusCode != 401 {
		t.Fatalf("approve with an untrusted header: %d", resp.StatusCode)
	}

	e := newConsoleEnv(t, Flags{Console: ConsoleFlags{UserHeader: "X-Forwarded-User"}})
	b := e.browser()
	b.header.Set("X-Forwarded-User", "ana")
	resp, page := b.get("/incidents/1")
	if !strings.Contains(page, "Signed in as proxy:ana") || strings.Contains(page, `action="/sign-out"`) {
		t.Fatal("proxy user not shown, or offered a sign-out")
	}
	var csrfSet bool
	for _, c := range resp.Cookies() {
		csrfSet = csrfSet || (c.Name == csrfCookie && c.HttpOnly && c.SameSite == http.SameSiteStrictMode)
	}
	if !csrfSet {
		t.Fatalf("no CSRF cookie: %v", resp.Cookies())
	}
	token := csrfRE.FindStringSubmatch(page)[1]
	if resp, _ := b.do("POST", "/incidents/1/approve", url.Values{}); resp.StatusCode != 403 {
		t.Fatalf("proxy user without the CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := b.do("POST", "/incidents/1/approve", url.Values{csrfField: {token}}, "X-Forwarded-User", "two words"); resp.StatusCode != 401 {
		t.Fatalf("unusable user name: %d", resp.StatusCode)
	}
	if resp, _ := b.do("POST", "/incidents/1/approve", url.Values{csrfField: {token}, "reason": {"go"}}); resp.StatusCode != 303 {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	if d := e.incident(1).Decisions; len(d) != 1 || d[0].By != "proxy:ana" || d[0].Channel != ChannelConsole {
		t.Fatalf("decisions %+v", d)
	}
}

// With --web.read-auth api or all, reading the console needs a sign-in
// (or a bearer token with the read scope); the sign-in page stays open.
func TestConsoleReadAuth(t *testing.T) {
	e := newConsoleEnv(t, Flags{ReadAuth: ReadAuthAPI})
	anon := e.browser()
	for _, path := range []string{"/", "/incidents/1", "/services/checkout"} {
		resp, _ := anon.get(path)
		if resp.StatusCode != 303 || resp.Header.Get("Location") != "/sign-in?next="+url.QueryEscape(path) {
			t.Errorf("anonymous GET %s: %d to %q", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	for _, path := range []string{"/sign-in", "/static/console.css"} {
		if resp, _ := anon.get(path); resp.StatusCode != 200 {
			t.Errorf("anonymous GET %s: %d", path, resp.StatusCode)
		}
	}
	if resp, _ := anon.do("GET", "/", nil, "Authorization", "Bearer "+readToken); resp.StatusCode != 200 {
		t.Errorf("GET / with a read token: %d", resp.StatusCode)
	}
	if resp, _ := anon.do("GET", "/", nil, "Authorization", "Bearer wrong-token-0000000000"); resp.StatusCode != 401 {
		t.Errorf("GET / with a wrong token: %d", resp.StatusCode)
	}
	bob := e.browser()
	bob.signIn(readToken)
	if resp, page := bob.get("/"); resp.StatusCode != 200 || !strings.Contains(page, "data-service=\"checkout\"") {
		t.Errorf("signed-in read: %d", resp.StatusCode)
	}
}

// A follower sends the console's writes to the leader, which decides.
func TestConsoleWritesGoToTheLeader(t *testing.T) {
	var got []string
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get(forwardedHeader))
		http.Redirect(w, r, "/incidents/1", http.StatusSeeOther)
	}))
	defer leader.Close()
	lu := mustURL(t, leader.URL)
	s := New(Options{Gatherer: prometheus.NewRegistry(), Forward: func(*http.Request) (*url.URL, bool, error) { return lu, true, nil }})
	follower := httptest.NewServer(s.Handler())
	defer follower.Close()
	b := &browser{t: t, base: follower.URL, header: http.Header{}, c: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	for _, path := range []string{"/incidents/1/approve", "/incidents/1/hold", "/services/checkout/rollback"} {
		if resp, _ := b.do("POST", path, url.Values{csrfField: {"t"}}); resp.StatusCode != 303 {
			t.Errorf("POST %s on a follower: %d", path, resp.StatusCode)
		}
	}
	if want := "POST /incidents/1/approve 1,POST /incidents/1/hold 1,POST /services/checkout/rollback 1"; strings.Join(got, ",") != want {
		t.Errorf("the leader got %q, want %q", got, want)
	}
}

// Behind an https external URL (a proxy ends TLS), the session cookie is
// Secure; the external URL's origin is accepted for forms.
func TestConsoleSecureCookie(t *testing.T) {
	e := newConsoleEnv(t, Flags{ExternalURL: "https://guardian.example.com/"})
	b := e.browser()
	resp := b.signIn(goodToken)
	if c := resp.Cookies(); resp.StatusCode != 303 || len(c) != 1 || !c[0].Secure {
		t.Fatalf("sign-in: %d, cookies %+v", resp.StatusCode, c)
	}
	if resp, _ := b.do("POST", "/sign-in", url.Values{"token": {goodToken}}, "Origin", "https://guardian.example.com"); resp.StatusCode != 303 {
		t.Errorf("sign-in from the external URL's origin: %d", resp.StatusCode)
	}
	if resp, _ := b.do("POST", "/sign-in", url.Values{"token": {goodToken}}, "Origin", "http://guardian.example.com"); resp.StatusCode != 403 {
		t.Errorf("sign-in from the external host over http: %d", resp.StatusCode)
	}
}

// A service another replica evaluates is shown with that replica, not
// with this one's stale view.
func TestConsoleServiceOfAnotherReplica(t *testing.T) {
	shard := 7
	s := New(Options{
		Gatherer: prometheus.NewRegistry(), Logger: zap.NewNop(), Tokens: func() *Tokens { return nil },
		Services: func() []ServiceView {
			return []ServiceView{{ServiceStatus: watch.ServiceStatus{Name: "billing", Owner: "guardian-2|http://10.0.0.12:9095", Shard: &shard}}}
		},
	})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	b := (&consoleEnv{t: t, srv: srv}).browser()
	for _, path := range []string{"/", "/services/billing"} {
		resp, page := b.get(path)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		if want := `Evaluated by another replica, <b>guardian-2|http://10.0.0.12:9095</b> (shard 7)`; !strings.Contains(page, want) {
			t.Errorf("GET %s lacks %q", path, want)
		}
		if strings.Contains(page, "No open watch") {
			t.Errorf("GET %s shows this replica's view of another replica's service", path)
		}
	}
}
