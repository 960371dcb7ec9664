package teams_test

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

	commoncfg "github.com/prometheus/common/config"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/internal/eventsample"
	"github.com/rollback-guardian/guardian/notify/teams"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// workflowPath is a Workflows webhook's path and query: the signature
// (sig) and the workflow's ID are its credential.
const (
	workflowPath  = "/workflows/0d1e2f3a4b5c6d7e8f90WORKFLOWID/triggers/manual/paths/invoke"
	workflowQuery = "api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SIGSECRETxyz0123456789"
)

var urlSecrets = []string{"WORKFLOWID", "SIGSECRET", "sig="}

type received struct {
	method, path, query string
	header              http.Header
	body                []byte
}

// receiver answers with codes in turn (the last one repeats) and keeps what
// it got.
type receiver struct {
	mu     sync.Mutex
	codes  []int
	header http.Header
	answer string
	got    []received
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, received{method: req.Method, path: req.URL.Path, query: req.URL.RawQuery, header: req.Header.Clone(), body: body})
	code := r.codes[min(len(r.got), len(r.codes))-1]
	for k, vs := range r.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(code)
	if r.answer != "" {
		_, _ = io.WriteString(w, r.answer)
	} else {
		_, _ = io.WriteString(w, "answer\nfor "+http.StatusText(code))
	}
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func newNotifier(t *testing.T, url string, logger *zap.Logger, tpl config.Templates) *teams.Notifier {
	t.Helper()
	n, err := teams.New(config.TeamsNotifier{URLFile: "/etc/guardian/teams-url", URL: commoncfg.Secret(url), Templates: tpl}, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

// checkCard checks body against the shape a Workflows webhook takes: a
// message with one Adaptive Card attachment, whose body holds TextBlocks
// and FactSets and whose actions open URLs.
func checkCard(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, body)
	}
	keys := func(obj map[string]any, want ...string) {
		t.Helper()
		for k := range obj {
			if !slices.Contains(want, k) {
				t.Errorf("unexpected field %q", k)
			}
		}
	}
	eq := func(obj map[string]any, k string, want any) {
		t.Helper()
		got, ok := obj[k]
		if !ok || got != want {
			t.Errorf("%s = %#v, want %#v", k, got, want)
		}
	}
	nonEmpty := func(obj map[string]any, k string) string {
		t.Helper()
		s, ok := obj[k].(string)
		if !ok || s == "" {
			t.Errorf("%s = %#v, want a non-empty string", k, obj[k])
		}
		return s
	}
	keys(m, "type", "attachments")
	eq(m, "type", "message")
	atts, ok := m["attachments"].([]any)
	if !ok || len(atts) != 1 {
		t.Fatalf("attachments = %#v, want one", m["attachments"])
	}
	att, ok := atts[0].(map[string]any)
	if !ok {
		t.Fatalf("attachment %#v", atts[0])
	}
	keys(att, "contentType", "contentUrl", "content")
	eq(att, "contentType", "application/vnd.microsoft.card.adaptive")
	if v, ok := att["contentUrl"]; !ok || v != nil {
		t.Errorf("contentUrl = %#v, want null", v)
	}
	card, ok := att["content"].(map[string]any)
	if !ok {
		t.Fatalf("content %#v", att["content"])
	}
	keys(card, "$schema", "type", "version", "body", "actions", "msteams")
	eq(card, "$schema", "http://adaptivecards.io/schemas/adaptive-card.json")
	eq(card, "type", "AdaptiveCard")
	eq(card, "version", "1.4")
	elems, ok := card["body"].([]any)
	if !ok || len(elems) < 2 {
		t.Fatalf("card body %#v, want a title and more", card["body"])
	}
	for i, el := range elems {
		e, ok := el.(map[string]any)
		if !ok {
			t.Fatalf("body[%d] = %#v", i, el)
		}
		switch e["type"] {
		case "TextBlock":
			keys(e, "type", "text", "size", "weight", "color", "wrap")
			nonEmpty(e, "text")
			if w, ok := e["wrap"].(bool); !ok || !w {
				t.Errorf("body[%d] does not wrap", i)
			}
		case "FactSet":
			keys(e, "type", "facts")
			facts, ok := e["facts"].([]any)
			if !ok || len(facts) == 0 {
				t.Fatalf("facts %#v", e["facts"])
			}
			for _, f := range facts {
				fm, ok := f.(map[string]any)
				if !ok {
					t.Fatalf("fact %#v", f)
				}
				keys(fm, "title", "value")
				nonEmpty(fm, "title")
				nonEmpty(fm, "value")
			}
		default:
			t.Errorf("body[%d] is a %v", i, e["type"])
		}
	}
	if i, ok := elems[0].(map[string]any); !ok || i["type"] != "TextBlock" || i["weight"] != "Bolder" {
		t.Errorf("the card does not open with a bold title: %#v", elems[0])
	}
	if acts, ok := card["actions"]; ok {
		list, ok := acts.([]any)
		if !ok || len(list) == 0 {
			t.Fatalf("actions %#v", acts)
		}
		for _, a := range list {
			am, ok := a.(map[string]any)
			if !ok {
				t.Fatalf("action %#v", a)
			}
			keys(am, "type", "title", "url")
			eq(am, "type", "Action.OpenUrl")
			nonEmpty(am, "title")
			if u := nonEmpty(am, "url"); !strings.HasPrefix(u, "https://") {
				t.Errorf("action url %q", u)
			}
		}
	}
	return card
}

// TestGolden renders every event type as a card, checks its shape and
// compares it with testdata/<type>.golden (go test -update rewrites them).
func TestGolden(t *testing.T) {
	n := newNotifier(t, "https://example.invalid"+workflowPath+"?"+workflowQuery, zap.NewNop(), config.Templates{})
	for _, e := range eventsample.All() {
		t.Run(string(e.Type), func(t *testing.T) {
			body, err := n.Body(e)
			if err != nil {
				t.Fatal(err)
			}
			checkCard(t, body)
			var buf bytes.Buffer
			if err := json.Indent(&buf, body, "", "  "); err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", string(e.Type)+".golden"), append(buf.Bytes(), '\n'))
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

// TestFormat posts the declaration to a workflow: POST to the URL, path
// and query as configured, JSON, the card's title, text, facts and links.
func TestFormat(t *testing.T) {
	rcv := &receiver{codes: []int{http.StatusAccepted}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	n := newNotifier(t, srv.URL+workflowPath+"?"+workflowQuery, zap.NewNop(), config.Templates{})
	retry, err := n.Notify(context.Background(), eventsample.Event(event.IncidentDeclared, 1))
	if err != nil || retry {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	reqs := rcv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.method != http.MethodPost || r.path != workflowPath || r.query != workflowQuery {
		t.Errorf("%s %s?%s", r.method, r.path, r.query)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	checkCard(t, r.body)

	var m teams.Message
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatal(err)
	}
	card := m.Attachments[0].Content
	if got := card.Body[0].Text; got != "SEV-1 checkout · incident #42 · incident.declared" {
		t.Errorf("title %q", got)
	}
	text := card.Body[1].Text
	if !strings.HasPrefix(text, "SEV-1 declared for checkout: checkout v2.4.1 is bad") ||
		!strings.HasSuffix(text, "Responders: **Alice Martin** (incident_commander), **Bob Chen** (dba)") {
		t.Errorf("text %q", text)
	}
	wantFacts := []teams.Fact{
		{Title: "Service", Value: "checkout"},
		{Title: "Version", Value: "v2.4.1 → v2.4.0"},
		{Title: "State", Value: "detected"},
		{Title: "Severity", Value: "SEV-1"},
		{Title: "Trigger", Value: "error-rate"},
		{Title: "Responders", Value: "Alice Martin (incident_commander), Bob Chen (dba)"},
	}
	if !slices.Equal(card.Body[2].Facts, wantFacts) {
		t.Errorf("facts %+v\nwant %+v", card.Body[2].Facts, wantFacts)
	}
	wantActions := []teams.Action{
		{Type: "Action.OpenUrl", Title: "Incident #42", URL: "https://guardian.example.com/incidents/42"},
		{Type: "Action.OpenUrl", Title: "Report", URL: "https://guardian.example.com/api/v1/incidents/42/report?format=html"},
		{Type: "Action.OpenUrl", Title: "Guardian status", URL: "https://guardian.example.com/"},
	}
	if !slices.Equal(card.Actions, wantActions) {
		t.Errorf("actions %+v", card.Actions)
	}

	// Without links, no actions.
	e := eventsample.Event(event.IncidentDeclared, 1)
	e.Links = notify.Links{}
	if acts := n.Message(e).Attachments[0].Content.Actions; len(acts) != 0 {
		t.Errorf("actions without links: %+v", acts)
	}
}

// TestTemplates: the notifier's templates replace the title and text; a
// template that fails falls back to the default, with a warning; one that
// does not parse fails New.
func TestTemplates(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	n := newNotifier(t, "https://example.invalid/hook", zap.New(core), config.Templates{
		Title: `{{.Service | upper}} {{index .Data "version"}}`,
		Text:  `{{.Text | truncate 20}} ({{.State}})`,
	})
	card := n.Message(eventsample.Event(event.IncidentDeclared, 1)).Attachments[0].Content
	if card.Body[0].Text != "CHECKOUT v2.4.1" || card.Body[1].Text != "SEV-1 declared fo… (detected)" {
		t.Errorf("title %q, text %q", card.Body[0].Text, card.Body[1].Text)
	}
	if logs.Len() != 0 {
		t.Errorf("warnings: %v", logs.All())
	}

	n = newNotifier(t, "https://example.invalid/hook", zap.New(core), config.Templates{
		Title: `{{index .Responders 5}}`, Text: `{{index .Responders 6}}`,
	})
	card = n.Message(eventsample.Event(event.IncidentDeclared, 1)).Attachments[0].Content
	if !strings.HasPrefix(card.Body[0].Text, "SEV-1 checkout") || !strings.HasPrefix(card.Body[1].Text, "SEV-1 declared") {
		t.Errorf("failing templates: title %q, text %q; want the defaults", card.Body[0].Text, card.Body[1].Text)
	}
	if logs.Len() != 2 {
		t.Errorf("%d warnings, want 2", logs.Len())
	}

	// A long text is cut.
	e := eventsample.Event(event.IncidentDeclared, 1)
	e.Text = strings.Repeat("x", 100<<10)
	body, err := newNotifier(t, "https://example.invalid/hook", nil, config.Templates{}).Body(e)
	if err != nil || len(body) > 20<<10 {
		t.Errorf("a body of %d bytes: %v", len(body), err)
	}

	for _, tpl := range []config.Templates{{Title: "{{"}, {Text: "{{end}}"}} {
		if _, err := teams.New(config.TeamsNotifier{URL: "https://example.invalid/hook", Templates: tpl}, nil); err == nil {
			t.Errorf("%+v parses", tpl)
		}
	}
	for _, u := range []string{"", "ftp://example.invalid/x", "/relative"} {
		if _, err := teams.New(config.TeamsNotifier{URL: commoncfg.Secret(u)}, nil); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
}

// TestRetry: 200 and 202 are delivered; 400 and 404 are permanent; 429
// (with its Retry-After), 500 and a refused connection are retried.
func TestRetry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int
		header http.Header
		retry  bool
		wait   time.Duration
		fails  bool
	}{
		{"accepted", http.StatusAccepted, nil, false, 0, false},
		{"ok", http.StatusOK, nil, false, 0, false},
		{"bad request", http.StatusBadRequest, nil, false, 0, true},
		{"not found", http.StatusNotFound, nil, false, 0, true},
		{"too large", http.StatusRequestEntityTooLarge, nil, false, 0, true},
		{"rate limited", http.StatusTooManyRequests, http.Header{"Retry-After": {"12"}}, true, 12 * time.Second, true},
		{"server error", http.StatusInternalServerError, nil, true, 0, true},
		{"bad gateway", http.StatusBadGateway, nil, true, 0, true},
		{"redirect", http.StatusTemporaryRedirect, http.Header{"Location": {"https://example.com/"}}, false, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := &receiver{codes: []int{tc.code}, header: tc.header}
			srv := httptest.NewServer(rcv)
			defer srv.Close()
			n := newNotifier(t, srv.URL+workflowPath+"?"+workflowQuery, zap.NewNop(), config.Templates{})
			retry, err := n.Notify(context.Background(), eventsample.Event(event.ApprovalRequested, 3))
			if retry != tc.retry || (err != nil) != tc.fails {
				t.Fatalf("Notify = %v, %v; want retry %v, failure %v", retry, err, tc.retry, tc.fails)
			}
			if !tc.fails {
				return
			}
			var se *teams.StatusError
			if !errors.As(err, &se) || se.Code != tc.code || se.Message != "answer for "+http.StatusText(tc.code) {
				t.Fatalf("error %v is not the StatusError of %d", err, tc.code)
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
		n := newNotifier(t, "http://"+addr+workflowPath+"?"+workflowQuery, zap.NewNop(), config.Templates{})
		retry, err := n.Notify(context.Background(), eventsample.Event(event.IncidentDeclared, 1))
		if !retry || err == nil {
			t.Fatalf("Notify = %v, %v; want a retryable error", retry, err)
		}
	})
}

// TestURLNeverShown: the workflow URL carries its signature; no log line,
// at debug level, nor error shows its path or query, even when the
// answer quotes the URL; the host does show.
func TestURLNeverShown(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	rcv := &receiver{codes: []int{http.StatusAccepted, http.StatusBadRequest, http.StatusInternalServerError}}
	srv := httptest.NewServer(rcv)
	u := srv.URL + workflowPath + "?" + workflowQuery
	rcv.answer = `{"error":{"code":"TriggerInputSchemaMismatch","message":"bad input for ` + u + ` (` + workflowPath + `)"}}`
	n := newNotifier(t, u, zap.New(core), config.Templates{Title: `{{index .Responders 9}}`})
	var errs []error
	for _, typ := range []event.Type{event.IncidentDeclared, event.TriggerFired, event.ApprovalRequested} {
		_, err := n.Notify(context.Background(), eventsample.Event(typ, 1))
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
	if nerr != 3 || logs.Len() == 0 {
		t.Fatalf("%d errors and %d log lines: the test tests nothing", nerr, logs.Len())
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, s := range texts {
		for _, secret := range urlSecrets {
			if strings.Contains(s, secret) {
				t.Errorf("%q shows %s", s, secret)
			}
		}
	}
	for _, err := range errs[1:] {
		if !strings.Contains(err.Error(), host) {
			t.Errorf("%v does not name the host %s", err, host)
		}
	}
	// A URL that does not parse is not quoted either.
	if _, err := teams.New(config.TeamsNotifier{URLFile: "/f", URL: "https://h/x?sig=SIGSECRET%zz\x7f"}, nil); err == nil || strings.Contains(err.Error(), "SIGSECRET") {
		t.Errorf("New: %v", err)
	}
}
