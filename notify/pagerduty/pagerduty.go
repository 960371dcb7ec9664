// Package pagerduty is the PagerDuty receiver: it sends each incident to a
// PagerDuty service as Events API v2 events (POST, JSON, to
// https://events.pagerduty.com/v2/enqueue by default), one alert per
// incident.
//
// Every event of an incident carries the same dedup_key,
// "guardian-<service>-<incident>", so that PagerDuty folds them into one
// alert; a metric source's events carry "guardian-source-<source>". The
// event_action follows the incident:
//
//   - incident.declared and source.unreachable trigger the alert, with a
//     payload: the summary (the title template, one line of at most 1024
//     bytes), source "guardian", the severity (below), the event's time,
//     component (the service), group ("incidents" or "sources"), class (the
//     trigger's name), custom_details (the message, state, version,
//     baseline, evidence, proposed action, responders and the event's data)
//     and links to the incident, its report and the status page.
//   - approval.granted and approval.denied decided by a person acknowledge
//     it: someone has taken the incident in hand. A policy's decision
//     (actor "policy:...") acknowledges nothing.
//   - recovery.confirmed, incident.resolved and incident.closed resolve it;
//     so does source.recovered.
//   - report.written and postmortem.scheduled, which come after the
//     incident ended, are not sent: a trigger would open the alert again.
//   - Every other event of an open incident (trigger.fired,
//     approval.requested, rollback.*, recovery.failed, incident.escalated, a
//     policy's decision) is sent again as a trigger with the same dedup_key
//     and up-to-date details: PagerDuty adds it to the open alert's log
//     without paging again (an acknowledged alert stays acknowledged), and
//     opens the alert if the declaration never reached it, say because the
//     receiver was configured mid-incident.
//
// Severities map to PagerDuty's: SEV-0 and SEV-1 (also P0, P1, any case,
// with or without the dash) are critical, SEV-2 error, SEV-3 warning;
// critical, error, warning and info are kept; anything else is info. A
// metric source's events, which have no severity, are warnings.
//
// PagerDuty answers 202 when it accepts an event. A 400 (an invalid event)
// is permanent and its error quotes PagerDuty's message; 408, 429 and 5xx
// are retried by the outbox, after the Retry-After the answer gives, and
// so are network errors and timeouts; any other answer is permanent.
//
// The routing key is a secret: it is never logged, and it is cut out of
// every error, PagerDuty's own answers included.
//
// A title template that fails when it runs (a bad index, say) does not
// lose the page: the default summary is sent instead, and a warning logged.
package pagerduty

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/template"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/internal/httpx"
	"github.com/rollback-guardian/guardian/notify/tmpl"
)

// DefaultTimeout bounds one POST, connection included.
const DefaultTimeout = 10 * time.Second

// UserAgent is sent with every request.
const UserAgent = "Guardian"

// Client names Guardian in PagerDuty's alert ("client").
const Client = "Guardian"

// MaxSummary is the most PagerDuty takes in a payload's summary, in bytes.
const MaxSummary = 1024

// maxDedupKey is the most PagerDuty takes in a dedup_key.
const maxDedupKey = 255

// maxErrorBody is how much of an error answer is read.
const maxErrorBody = 1024

// DefaultTitle is the summary's template.
const DefaultTitle = `{{if .Incident}}{{.Service}} incident #{{.Incident}}: {{else}}Guardian: {{end}}{{.Text}}`

var defaultTitle = tmpl.Must("title", DefaultTitle)

// Event actions.
const (
	Trigger     = "trigger"
	Acknowledge = "acknowledge"
	Resolve     = "resolve"
)

// Message is one Events API v2 request body.
type Message struct {
	RoutingKey  string   `json:"routing_key"`
	EventAction string   `json:"event_action"`
	DedupKey    string   `json:"dedup_key"`
	Payload     *Payload `json:"payload,omitempty"`
	Client      string   `json:"client,omitempty"`
	ClientURL   string   `json:"client_url,omitempty"`
	Links       []Link   `json:"links,omitempty"`
}

// Payload describes a triggered alert.
type Payload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"`
	Timestamp     string         `json:"timestamp,omitempty"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// Link is a link shown on the alert.
type Link struct {
	Href string `json:"href"`
	Text string `json:"text"`
}

// Notifier sends events to one PagerDuty integration.
type Notifier struct {
	url      string
	redacted string // scheme and host only, for logs and errors
	key      string
	title    *template.Template
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

// New returns a notifier for the configured integration. cfg.RoutingKey is
// read by the config loader from cfg.RoutingKeyFile; an empty URL is
// config.DefaultPagerDutyURL.
func New(cfg config.PagerDutyNotifier, logger *zap.Logger, opts ...Option) (*Notifier, error) {
	raw := cfg.URL
	if raw == "" {
		raw = config.DefaultPagerDutyURL
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("pagerduty URL: %w", unquote(err))
	}
	redacted := redact(u)
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("pagerduty URL %s: want an absolute http or https URL", redacted)
	}
	if strings.TrimSpace(string(cfg.RoutingKey)) == "" {
		return nil, fmt.Errorf("pagerduty %s: no routing key (routing_key_file %s)", redacted, cfg.RoutingKeyFile)
	}
	title := defaultTitle
	if cfg.Templates.Title != "" {
		if title, err = tmpl.Parse("title", cfg.Templates.Title); err != nil {
			return nil, fmt.Errorf("pagerduty %s: templates.title: %w", redacted, err)
		}
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	n := &Notifier{
		url:      u.String(),
		redacted: redacted,
		key:      strings.TrimSpace(string(cfg.RoutingKey)),
		title:    title,
		timeout:  DefaultTimeout,
		now:      time.Now,
		logger:   logger.With(zap.String("pagerduty", redacted)),
	}
	for _, o := range opts {
		o(n)
	}
	if n.client == nil {
		n.client = httpx.Client(nil)
	}
	return n, nil
}

// Action is the event_action e is sent with, or "" when e is not sent.
func Action(e notify.Event) string {
	switch e.Type {
	case event.IncidentDeclared, event.SourceUnreachable:
		return Trigger
	case event.RecoveryConfirmed, event.IncidentResolved, event.IncidentClosed, event.SourceRecovered:
		return Resolve
	case event.ReportWritten, event.PostmortemScheduled:
		return ""
	case event.ApprovalGranted, event.ApprovalDenied:
		if byPerson(e) {
			return Acknowledge
		}
	}
	if e.Incident == 0 || !incident.State(e.State).Open() {
		// An unknown metric-source event, or a late event of an
		// incident that ended: a trigger would open a new alert.
		return ""
	}
	return Trigger
}

// byPerson reports whether e's actor is a person, not Guardian or a policy.
func byPerson(e notify.Event) bool {
	actor, _ := e.Data["actor"].(string)
	return actor != "" && actor != "guardian" && !strings.HasPrefix(actor, "policy:")
}

// DedupKey is the key of e's alert: one per incident, one per metric
// source.
func DedupKey(e notify.Event) string {
	var k string
	if e.Incident == 0 {
		src, _ := e.Data["source"].(string)
		if src == "" {
			src = e.Service
		}
		k = "guardian-source-" + src
	} else {
		k = fmt.Sprintf("guardian-%s-%d", e.Service, e.Incident)
	}
	return tmpl.Truncate(maxDedupKey, k)
}

// Severity maps a Guardian severity (SEV-1, ...) to PagerDuty's.
func Severity(s string) string {
	switch event.SeverityLevel(s) {
	case event.LevelCritical:
		return "critical"
	case event.LevelError:
		return "error"
	case event.LevelWarning:
		return "warning"
	}
	return "info"
}

// Message returns the request for e, or nil when e is not sent (see the
// package comment).
func (n *Notifier) Message(e notify.Event) *Message {
	action := Action(e)
	if action == "" {
		return nil
	}
	m := &Message{RoutingKey: n.key, EventAction: action, DedupKey: DedupKey(e)}
	if action != Trigger {
		return m
	}
	m.Client = Client
	m.ClientURL = e.Links.Incident
	if m.ClientURL == "" {
		m.ClientURL = e.Links.Status
	}
	for _, l := range []Link{
		{e.Links.Incident, fmt.Sprintf("Incident #%d", e.Incident)},
		{e.Links.Report, fmt.Sprintf("Report of incident #%d", e.Incident)},
		{e.Links.Status, "Guardian status"},
	} {
		if l.Href != "" {
			m.Links = append(m.Links, l)
		}
	}
	p := &Payload{
		Summary:       n.summary(e),
		Source:        "guardian",
		Severity:      Severity(e.Severity),
		Component:     e.Service,
		Group:         "incidents",
		CustomDetails: details(e),
	}
	if !e.Time.IsZero() {
		p.Timestamp = e.Time.UTC().Format(time.RFC3339Nano)
	}
	if e.Incident == 0 {
		p.Severity = "warning"
		p.Group = "sources"
		p.Class = string(e.Type)
		if src, _ := e.Data["source"].(string); src != "" {
			p.Component = src
		}
	} else {
		p.Class, _ = e.Data["trigger"].(string)
	}
	m.Payload = p
	return m
}

// summary renders the title template, on one line of at most MaxSummary
// bytes; a template that fails or writes nothing gives the default.
func (n *Notifier) summary(e notify.Event) string {
	s, err := tmpl.Execute(n.title, e)
	if err != nil || strings.TrimSpace(s) == "" {
		if err != nil {
			n.logger.Warn("Title template failed; sending the default summary", zap.String("event", e.ID), zap.Error(err))
		}
		s, _ = tmpl.Execute(defaultTitle, e)
	}
	return tmpl.Truncate(MaxSummary, strings.Join(strings.Fields(s), " "))
}

// details are the alert's custom_details: the event's data with the
// message, state, proposed action and responders.
func details(e notify.Event) map[string]any {
	d := make(map[string]any, len(e.Data)+8)
	for k, v := range e.Data {
		d[k] = v
	}
	d["event"] = string(e.Type)
	d["message"] = e.Text
	if e.State != "" {
		d["state"] = e.State
	}
	if e.Incident > 0 {
		d["incident"] = e.Incident
		d["service"] = e.Service
		d["severity"] = e.Severity
		version, _ := e.Data["version"].(string)
		baseline, _ := e.Data["baseline"].(string)
		if version != "" && baseline != "" {
			d["proposed_action"] = fmt.Sprintf("roll back %s %s → %s", e.Service, version, baseline)
		}
	}
	if len(e.Responders) > 0 {
		rs := make([]string, len(e.Responders))
		for i, r := range e.Responders {
			rs[i] = fmt.Sprintf("%s (%s)", r.Name, r.Role)
			if r.Email != "" {
				rs[i] += " <" + r.Email + ">"
			}
		}
		d["responders"] = rs
	}
	return d
}

// Body returns the JSON body posted for e, or nil when e is not sent.
func (n *Notifier) Body(e notify.Event) ([]byte, error) {
	m := n.Message(e)
	if m == nil {
		return nil, nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Notify sends e once, or not at all when e is not sent (see the package
// comment). It reports retry for 408, 429, 5xx, network errors and
// timeouts.
func (n *Notifier) Notify(ctx context.Context, e notify.Event) (bool, error) {
	body, err := n.Body(e)
	if err != nil {
		return false, fmt.Errorf("encoding event %s: %s", e.ID, n.scrub(err.Error()))
	}
	if body == nil {
		n.logger.Debug("Event not sent to PagerDuty", zap.String("event", e.ID), zap.String("type", string(e.Type)))
		return false, nil
	}
	action := Action(e)
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return false, n.errorf(e, action, unquote(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", UserAgent)

	resp, err := n.client.Do(req)
	if err != nil {
		return true, n.errorf(e, action, unquote(err))
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // for connection reuse

	code := resp.StatusCode
	if code >= 200 && code < 300 {
		n.logger.Debug("Event sent to PagerDuty", zap.String("event", e.ID), zap.String("action", action),
			zap.String("dedup_key", DedupKey(e)), zap.Int("status", code))
		return false, nil
	}
	retry, se := httpx.Answer(resp, n.scrub(message(answer)), n.now())
	return retry, n.errorf(e, action, se)
}

func (n *Notifier) errorf(e notify.Event, action string, err error) error {
	return &httpx.ScrubbedError{
		Msg: n.scrub(fmt.Sprintf("sending event %s (%s) to PagerDuty %s: %v", e.ID, action, n.redacted, err)),
		Err: err,
	}
}

// scrub cuts the routing key out of s.
func (n *Notifier) scrub(s string) string { return httpx.Scrub(s, n.key, "<routing key>") }

// StatusError is an answer other than 2xx, with PagerDuty's message and
// errors.
type StatusError = httpx.StatusError

var _ notify.RetryAfterError = (*StatusError)(nil)

// message reads an error answer: {"status": "invalid event", "message":
// "Event object is invalid", "errors": ["..."]} gives "Event object is
// invalid: ..."; anything else its start, on one line.
func message(b []byte) string {
	var a struct {
		Status  string   `json:"status"`
		Message string   `json:"message"`
		Errors  []string `json:"errors"`
	}
	if json.Unmarshal(b, &a) == nil && (a.Message != "" || len(a.Errors) > 0) {
		s := a.Message
		if s == "" {
			s = a.Status
		}
		if len(a.Errors) > 0 {
			s += ": " + strings.Join(a.Errors, "; ")
		}
		return tmpl.Truncate(256, httpx.Clean([]byte(s)))
	}
	return tmpl.Truncate(256, httpx.Clean(b))
}

// redact keeps only scheme and host of u.
func redact(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		s += "/..."
	}
	return s
}

// unquote drops the URL a *url.Error quotes, keeping its cause.
func unquote(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}
