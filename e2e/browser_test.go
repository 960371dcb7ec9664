package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/testenv"
)

// screenshotDir is where the browser test saves its screenshots:
// $GUARDIAN_SCREENSHOTS (docs/img to refresh the README's), else a
// temporary directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("GUARDIAN_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// run runs browser actions within 30 seconds, failing the test with the
// page it ended on otherwise.
func run(t *testing.T, b *testenv.Browser, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("%s: %v; the browser is at %s:\n%.3000s", what, err, loc, html)
	}
}

func text(t *testing.T, b *testenv.Browser, sel string) string {
	t.Helper()
	s, err := chromedp.Run(b.Ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

func count(t *testing.T, b *testenv.Browser, sel string) int {
	t.Helper()
	n, err := chromedp.Run(b.Ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	if err != nil {
		t.Fatalf("counting %s: %v", sel, err)
	}
	return n
}

func attr(t *testing.T, b *testenv.Browser, sel, name string) string {
	t.Helper()
	v, err := chromedp.Run(b.Ctx, chromedp.Evaluate[string](fmt.Sprintf("document.querySelector(%q).getAttribute(%q)", sel, name)))
	if err != nil {
		t.Fatalf("attribute %s of %s: %v", name, sel, err)
	}
	return v
}

func screenshot(t *testing.T, b *testenv.Browser, path string) {
	t.Helper()
	png, err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s", path)
}

// The console in a real browser, on the bad-deploy scenario: it loads
// without a console error, shows the service with its trigger's live value
// and sparkline, refuses an unsigned POST and a cross-site one (from a
// page on another origin, with the session cookie and a valid CSRF token),
// and a signed-in click on Approve rolls the service back. The incident
// page and the HTML report chart v2 against the baseline with the markers;
// the status page says "major outage" during the incident and
// "operational" after it.
func TestConsoleBrowser(t *testing.T) {
	t.Parallel()
	b := testenv.StartBrowser(t, 1280, 900)
	shots := screenshotDir(t)
	rcv := newReceiver(t)
	s := startStack(t, modeEmbedded, stackOpts{receiverURL: rcv.url, rollback: "placeholder"})
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))

	s.deploy("v2", 0.20)
	testenv.Eventually(t, 60*time.Second, func() error {
		c := s.app.Console()
		if w := c[0].Watch; w == nil || w.Version != "v2" || len(c[0].History["error-rate"]) < 5 {
			return fmt.Errorf("watch %+v, %d evaluations", w, len(c[0].History["error-rate"]))
		}
		return nil
	}, "the watch of v2 to have a few evaluations")

	run(t, b, "loading the console", chromedp.Navigate(s.apiURL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`section[data-service="checkout"] tr[data-trigger="error-rate"] td.spark svg`)))
	if got := text(t, b, `section[data-service="checkout"] .running b`); got != "v2" {
		t.Errorf("running version %q, want v2", got)
	}
	if got := text(t, b, `section[data-service="checkout"] .watch`); !strings.Contains(got, "Watching v2 against baseline v1") {
		t.Errorf("watch line %q", got)
	}
	value := text(t, b, `tr[data-trigger="error-rate"] td.value`)
	if v, err := strconv.ParseFloat(value, 64); err != nil || v <= 0 || v > 1 {
		t.Errorf("live error-rate value %q, want an error ratio", value)
	}
	if got := text(t, b, `tr[data-trigger="error-rate"] td.threshold`); got != "0.05" {
		t.Errorf("threshold %q, want 0.05 (the first condition, above)", got)
	}
	if n := count(t, b, `tr[data-trigger="error-rate"] td.spark svg [data-series="version"]`); n == 0 {
		t.Error("the sparkline draws no line for v2")
	}

	rec := s.waitIncident(1, incident.AwaitingApproval, 90*time.Second)
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := len(s.app.Console()[0].History["error-rate"]); n < 15 {
			return fmt.Errorf("%d evaluations", n)
		}
		return nil
	}, "a sparkline of 15 evaluations for the screenshot")
	run(t, b, "reloading the console", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`tr[data-incident="1"]`)))
	screenshot(t, b, filepath.Join(shots, "console.png"))
	if p := b.Problems(); len(p) != 0 {
		t.Errorf("console errors on the console page: %q", p)
	}

	// The status page tells stakeholders of the outage, in plain words.
	run(t, b, "loading the status page", chromedp.Navigate(s.apiURL+"/status"),
		chromedp.WaitVisible(chromedp.CSS(`.component[data-service="checkout"]`)))
	if got := attr(t, b, `.component[data-service="checkout"]`, "data-state"); got != "major_outage" {
		t.Errorf("status page says checkout is %q during a SEV-1 incident, want major_outage", got)
	}
	if body := text(t, b, "body"); !strings.Contains(body, "Major outage") || strings.Contains(body, "error-rate") || strings.Contains(body, "v2") {
		t.Errorf("status page during the incident: want \"Major outage\" and no trigger or version names:\n%s", body)
	}
	screenshot(t, b, filepath.Join(shots, "status.png"))
	if p := b.Problems(); len(p) != 0 {
		t.Errorf("console errors on the status page: %q", p)
	}

	// An unsigned POST is refused.
	resp, err := http.PostForm(s.apiURL+"/incidents/1/approve", url.Values{"reason": {"no session"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned POST: %d", resp.StatusCode)
	}

	// Sign in with the API token, back to the incident.
	run(t, b, "signing in", chromedp.Navigate(s.apiURL+"/sign-in?next=/incidents/1"),
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), apiToken),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#approve`)))
	if got := text(t, b, `.who`); got != "Signed in as token:ci" {
		t.Errorf("header says %q", got)
	}
	if got := text(t, b, `[data-state]`); got != "awaiting_approval" {
		t.Errorf("incident state %q", got)
	}
	// The charts: v2 against the baseline over the incident, with the
	// deploy and the detection marked.
	for _, sel := range []string{`figure.chart svg [data-series="version"]`, `figure.chart svg [data-series="baseline"]`,
		`figure.chart svg [data-marker="deploy"]`, `figure.chart svg [data-marker="detected"]`, `figure.chart svg .threshold`} {
		if n := count(t, b, sel); n == 0 {
			t.Errorf("the incident page's charts lack %s", sel)
		}
	}
	screenshot(t, b, filepath.Join(shots, "incident.png"))
	if p := b.Problems(); len(p) != 0 {
		t.Errorf("console errors on the incident page: %q", p)
	}

	// A page on another origin posts the approve form with the session
	// cookie (127.0.0.1 on another port is the same site, so even a
	// SameSite=Strict cookie goes along) and a valid CSRF token: refused.
	html, err := chromedp.Run(b.Ctx, chromedp.OuterHTML(chromedp.CSS(`html`)))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(html)
	if m == nil {
		t.Fatal("no CSRF token on the incident page")
	}
	evil := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/incidents/1/approve"><input type="hidden" name="csrf_token" value="%s"><button id="go" type="submit">win a prize</button></form>`,
			s.apiURL, m[1])
	}))
	run(t, b, "posting from another origin", chromedp.Navigate(evil+"/"), chromedp.Click(chromedp.CSS(`#go`)),
		chromedp.WaitVisible(chromedp.CSS(`p.error`)))
	if got := text(t, b, `h1`); got != "403 Forbidden" {
		t.Errorf("cross-site POST answered %q", got)
	}
	if r := s.incident(1); r.State != incident.AwaitingApproval || len(r.Decisions) != 0 || len(r.Timeline) != len(rec.Timeline) {
		t.Fatalf("the cross-site POST reached the incident: %s %+v", r.State, r.Decisions)
	}
	b.Problems() // the refused page's own log entries

	// The signed-in click on Approve rolls back.
	run(t, b, "approving", chromedp.Navigate(s.apiURL+"/incidents/1"),
		chromedp.SendKeys(chromedp.CSS(`form[action="/incidents/1/approve"] input[name="reason"]`), "error rate confirmed in the browser"),
		chromedp.Click(chromedp.CSS(`#approve`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#approve`)))
	rec = s.waitIncident(1, incident.Resolved, 120*time.Second)
	if d := rec.Decisions; len(d) != 1 || !d[0].Approved || d[0].By != "token:ci" || d[0].Channel != "console" || d[0].Reason != "error rate confirmed in the browser" {
		t.Fatalf("decisions %+v", d)
	}
	if got := s.rollbacks(); len(got) != 1 {
		t.Fatalf("rollback runs %v, want one", got)
	}
	run(t, b, "reloading the incident", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`tr[data-type="incident.resolved"]`)))
	if got := text(t, b, `[data-state]`); got != "resolved" {
		t.Errorf("incident page says %q after the rollback", got)
	}
	if p := b.Problems(); len(p) != 0 {
		t.Errorf("console errors after approving: %q", p)
	}
	run(t, b, "reloading the status page", chromedp.Navigate(s.apiURL+"/status"),
		chromedp.WaitVisible(chromedp.CSS(`.component[data-service="checkout"]`)))
	if got := attr(t, b, `.component[data-service="checkout"]`, "data-state"); got != "operational" {
		t.Errorf("status page says checkout is %q after the rollback, want operational", got)
	}

	// The HTML report, as the incident page links it: its charts and
	// markers, drawn without a console error.
	run(t, b, "opening the HTML report", chromedp.Navigate(s.apiURL+"/incidents/1"),
		chromedp.Click(chromedp.CSS(`a[href="/api/v1/incidents/1/report?format=html"]`)),
		chromedp.WaitVisible(chromedp.CSS(`figure.chart svg`)))
	for _, sel := range []string{`figure.chart svg [data-series="version"]`, `figure.chart svg [data-marker="detected"]`,
		`figure.chart svg [data-marker="rolled_back"]`} {
		if n := count(t, b, sel); n == 0 {
			t.Errorf("the HTML report's charts lack %s", sel)
		}
	}
	// The report is long: its top (summary, what changed, charts) makes
	// the picture.
	run(t, b, "sizing the window for the report", chromedp.EmulateViewport(1280, 1500))
	png, err := chromedp.Run(b.Ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shots, "report.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if p := b.Problems(); len(p) != 0 {
		t.Errorf("console errors on the HTML report: %q", p)
	}

	// The report link leads to the report.
	resp, err = http.Get(s.apiURL + "/api/v1/incidents/1/report?format=markdown")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "# Incident #1") {
		t.Errorf("markdown report: %.200s", body)
	}
}
