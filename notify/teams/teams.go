// Package teams is the Microsoft Teams receiver: it posts each event as an
// Adaptive Card to a Teams Workflows webhook (the "Post to a channel when a
// webhook request is received" workflow), the successor of the retired
// Office 365 connectors, which takes Adaptive Cards only.
//
// The request body is a message with one attachment:
//
//	{"type": "message", "attachments": [{
//	  "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null,
//	  "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
//	    "type": "AdaptiveCard", "version": "1.4",
//	    "body": [{"type": "TextBlock", "text": "<title>", ...}, {"type": "TextBlock", "text": "<text>", ...},
//	             {"type": "FactSet", "facts": [{"title": "Service", "value": "checkout"}, ...]}],
//	    "actions": [{"type": "Action.OpenUrl", "title": "Incident #42", "url": "..."}, ...]}}]}
//
// The title and the text come from the templates (DefaultTitle,
// DefaultText, or the notifier's templates: {title, text}); the facts are
// the service, version → baseline, state, severity and responders (a
// metric source's: the source and its state); the actions open the
// incident, its report and Guardian's status, those of the event's links
// that are set. Every event type is posted: a Teams channel is a log of
// the incident.
//
// The text names the service's responders in bold. A Teams mention
// (<at>...</at> with an msteams.entities entry) needs each person's
// Microsoft Entra (AAD) object ID, which the configuration does not hold;
// names are enough for a channel to see whom the incident calls on.
//
// A Workflows webhook answers 202 (or 200). 408, 429 and 5xx answers are
// retried by the outbox, after the Retry-After the answer gives, and so
// are network errors and timeouts; any other answer, redirects included,
// is permanent.
//
// The workflow's URL carries its signature (sig=...): it is a secret. Logs
// and errors show only its scheme and host, and the URL's path and query
// are cut out of the answers quoted in errors.
//
// A template that fails when it runs does not lose the message: the
// default is used instead, and a warning logged.
package teams

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/template"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/internal/httpx"
	"github.com/rollback-guardian/guardian/notify/tmpl"
)

// DefaultTimeout bounds one POST, connection included.
const DefaultTimeout = 10 * time.Second

// UserAgent is sent with every request.
const UserAgent = "Guardian"

// maxErrorBody is how much of an error answer is quoted in the error.
const maxErrorBody = 256

// MaxTitle and MaxText bound the card's title and text, in bytes, so that
// the message stays well below the 28 KB Teams takes.
const (
	MaxTitle = 512
	MaxText  = 16 << 10
)

// DefaultTitle is the card's title template.
const DefaultTitle = `{{if .Incident}}{{.Severity}} {{.Service}} · incident #{{.Incident}} · {{.Type}}{{else}}Guardian · {{.Type}}{{end}}`

// DefaultText is the card's text template: the event's message, then the
// responders by name.
const DefaultText = `{{.Text}}
{{- with .Responders}}

Responders: {{range $i, $r := .}}{{if $i}}, {{end}}**{{$r.Name}}** ({{$r.Role}}){{end}}
{{- end}}`

var (
	defaultTitle = tmpl.Must("title", DefaultTitle)
	defaultText  = tmpl.Must("text", DefaultText)
)

// Adaptive Card constants.
const (
	ContentType = "application/vnd.microsoft.card.adaptive"
	Schema      = "http://adaptivecards.io/schemas/adaptive-card.json"
	Version     = "1.4"
)

// Message is the request body: a message with one Adaptive Card.
type Message struct {
	Type        string       `json:"type"`
	Attachments []Attachment `json:"attachments"`
}

// Attachment holds the card.
type Attachment struct {
	ContentType string  `json:"contentType"`
	ContentURL  *string `json:"contentUrl"`
	Content     Card    `json:"content"`
}

// Card is an Adaptive Card.
type Card struct {
	Schema  string         `json:"$schema"`
	Type    string         `json:"type"`
	Version string         `json:"version"`
	Body    []Element      `json:"body"`
	Actions []Action       `json:"actions,omitempty"`
	MSTeams map[string]any `json:"msteams,omitempty"`
}

// Element is a TextBlock or a FactSet.
type Element struct {
	Type   string `json:"type"`
	Text   string `json:"text,omitempty"`
	Size   string `json:"size,omitempty"`
	Weight string `json:"weight,omitempty"`
	Color  string `json:"color,omitempty"`
	Wrap   bool   `json:"wrap,omitempty"`
	Facts  []Fact `json:"facts,omitempty"`
}

// Fact is one line of a FactSet.
type Fact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

// Action is an Action.OpenUrl.
type Action struct {
	Type  string `json:"type"`
	Title string `json:"title"`
	URL   string `json:"url"`
}

// Notifier posts events to one Teams Workflows webhook.
type Notifier struct {
	url      string
	redacted string   // scheme and host only, for logs and errors
	secrets  []string // the URL's parts cut out of quoted answers
	title    *template.Template
	text     *template.Template
	client   *http.Client
	timeout  time.Duration
	now      func() time.Time
	logger   *zap.Logger
}

var _ notify.Notifier = (*Notifier)(nil)

// Option changes a Notifier's defaults.
type Option func(*Notifier)

// WithClient sends through c (for TLS or proxy settings, or tests) instead
// of a client of Guardian's own. Redirects are never followed either way.
func WithClient(c *http.Client) Option {
	return func(n *Notifier) {
		n.client = httpx.Client(c)
	}
}

// WithTimeout bounds each POST to d instead of DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(n *Notifier) {
		if d > 0 {
			n.timeout = d
		}
	}
}

// WithNow sets the clock against which an HTTP-date Retry-After is read.
func WithNow(now func() time.Time) Option {
	return func(n *Notifier) { n.now = now }
}

// New returns a notifier for the configured workflow. cfg.URL is read by
// the config loader from cfg.URLFile.
func New(cfg config.TeamsNotifier, logger *zap.Logger, opts ...Option) (*Notifier, error) {
	raw := strings.TrimSpace(string(cfg.URL))
	if raw == "" {
		return nil, fmt.Errorf("teams: no workflow URL (url_file %s)", cfg.URLFile)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("teams: workflow URL from %s does not parse", cfg.URLFile)
	}
	redacted := redact(u)
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("teams: workflow URL %s from %s: want an absolute http or https URL", redacted, cfg.URLFile)
	}
	n := &Notifier{
		url:      u.String(),
		redacted: redacted,
		secrets:  secretParts(u),
		title:    defaultTitle,
		text:     defaultText,
		timeout:  DefaultTimeout,
		now:      time.Now,
	}
	if cfg.Templates.Title != "" {
		if n.title, err = tmpl.Parse("title", cfg.Templates.Title); err != nil {
			return nil, fmt.Errorf("teams %s: templates.title: %w", redacted, err)
		}
	}
	if cfg.Templates.Text != "" {
		if n.text, err = tmpl.Parse("text", cfg.Templates.Text); err != nil {
			return nil, fmt.Errorf("teams %s: templates.text: %w", redacted, err)
		}
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	n.logger = logger.With(zap.String("teams", redacted))
	for _, o := range opts {
		o(n)
	}
	if n.client == nil {
		n.client = httpx.Client(nil)
	}
	return n, nil
}

// Message returns the message posted for e.
func (n *Notifier) Message(e notify.Event) *Message {
	title := n.render(n.title, defaultTitle, e)
	title = tmpl.Truncate(MaxTitle, strings.Join(strings.Fields(title), " "))
	text := tmpl.Truncate(MaxText, n.render(n.text, defaultText, e))

	body := []Element{{Type: "TextBlock", Text: title, Size: "Large", Weight: "Bolder", Color: color(e.Type), Wrap: true}}
	if text != "" {
		body = append(body, Element{Type: "TextBlock", Text: text, Wrap: true})
	}
	if facts := facts(e); len(facts) > 0 {
		body = append(body, Element{Type: "FactSet", Facts: facts})
	}
	var actions []Action
	for _, a := range []Action{
		{Title: fmt.Sprintf("Incident #%d", e.Incident), URL: e.Links.Incident},
		{Title: "Report", URL: e.Links.Report},
		{Title: "Guardian status", URL: e.Links.Status},
	} {
		if a.URL != "" {
			a.Type = "Action.OpenUrl"
			actions = append(actions, a)
		}
	}
	return &Message{
		Type: "message",
		Attachments: []Attachment{{
			ContentType: ContentType,
			Content: Card{
				Schema: Schema, Type: "AdaptiveCard", Version: Version,
				Body: body, Actions: actions,
				MSTeams: map[string]any{"width": "Full"},
			},
		}},
	}
}

// render executes t on e; a failure, or nothing written by a title, gives
// def's output.
func (n *Notifier) render(t, def *template.Template, e notify.Event) string {
	s, err := tmpl.Execute(t, e)
	if err != nil {
		n.logger.Warn("Template failed; sending the default", zap.String("template", t.Name()), zap.String("event", e.ID), zap.Error(err))
	}
	if err != nil || (s == "" && t.Name() == "title") {
		s, _ = tmpl.Execute(def, e)
	}
	return s
}

// color is the title's: attention when a human must act or something
// failed, good when the incident ends well.
func color(t event.Type) string {
	switch t {
	case event.IncidentDeclared, event.ApprovalRequested, event.RollbackFailed, event.RollbackUnknown,
		event.RecoveryFailed, event.IncidentEscalated, event.SourceUnreachable:
		return "Attention"
	case event.RecoveryConfirmed, event.IncidentResolved, event.SourceRecovered:
		return "Good"
	}
	return ""
}

// facts are the card's FactSet: the service, version → baseline, state,
// severity and responders; a metric source's event, the source and state.
func facts(e notify.Event) []Fact {
	var fs []Fact
	add := func(title, value string) {
		if value != "" {
			fs = append(fs, Fact{Title: title, Value: value})
		}
	}
	str := func(k string) string { s, _ := e.Data[k].(string); return s }
	if e.Incident == 0 {
		add("Source", str("source"))
		add("Service", e.Service)
		add("State", e.State)
		return fs
	}
	add("Service", e.Service)
	switch version, baseline := str("version"), str("baseline"); {
	case version != "" && baseline != "":
		add("Version", version+" → "+baseline)
	default:
		add("Version", version)
	}
	add("State", e.State)
	add("Severity", e.Severity)
	add("Trigger", str("trigger"))
	if len(e.Responders) > 0 {
		rs := make([]string, len(e.Responders))
		for i, r := range e.Responders {
			rs[i] = fmt.Sprintf("%s (%s)", r.Name, r.Role)
		}
		add("Responders", strings.Join(rs, ", "))
	}
	return fs
}

// Body returns the JSON body posted for e.
func (n *Notifier) Body(e notify.Event) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(n.Message(e)); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Notify posts e once. It reports retry for 408, 429, 5xx, network errors
// and timeouts.
func (n *Notifier) Notify(ctx context.Context, e notify.Event) (bool, error) {
	body, err := n.Body(e)
	if err != nil {
		return false, fmt.Errorf("encoding event %s: %w", e.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("posting event %s to Teams %s: %w", e.ID, n.redacted, unquote(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)

	resp, err := n.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("posting event %s to Teams %s: %w", e.ID, n.redacted, unquote(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // for connection reuse

	code := resp.StatusCode
	if code >= 200 && code < 300 {
		n.logger.Debug("Event posted to Teams", zap.String("event", e.ID), zap.Int("status", code))
		return false, nil
	}
	retry, se := httpx.Answer(resp, n.scrub(httpx.Clean(snippet)), n.now())
	return retry, fmt.Errorf("posting event %s to Teams %s: %w", e.ID, n.redacted, se)
}

// StatusError is an answer other than 2xx, with the start of the answer.
type StatusError = httpx.StatusError

var _ notify.RetryAfterError = (*StatusError)(nil)

// redact keeps only scheme and host: a workflow URL's path and query are
// its credential. Anything after the host shows as "/<secret>".
func redact(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		s += "/<secret>"
	}
	return s
}

// secretParts are the parts of u that an answer might echo: its path, its
// path segments and query values of some length, its user info.
func secretParts(u *url.URL) []string {
	var parts []string
	keep := func(s string) {
		if len(s) >= 8 {
			parts = append(parts, s)
		}
	}
	if all := u.String(); strings.Contains(all, u.Host) {
		keep(all[strings.Index(all, u.Host)+len(u.Host):])
	}
	keep(u.EscapedPath())
	keep(u.RawQuery)
	for _, seg := range strings.Split(u.Path, "/") {
		keep(seg)
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			keep(v)
			keep(url.QueryEscape(v))
		}
	}
	if u.User != nil {
		keep(u.User.Username())
		if p, ok := u.User.Password(); ok {
			keep(p)
		}
	}
	slices.SortStableFunc(parts, func(a, b string) int { return len(b) - len(a) })
	return parts
}

// scrub cuts the URL's secret parts out of s, longest first.
func (n *Notifier) scrub(s string) string {
	for _, p := range n.secrets {
		s = strings.ReplaceAll(s, p, "<secret>")
	}
	return s
}

// unquote drops the URL a *url.Error quotes, keeping its cause: the URL
// holds the signature. The cause keeps telling timeouts (net.Error).
func unquote(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}
