// Package statuspage is the Atlassian Statuspage receiver: it keeps one
// incident on a Statuspage page per Guardian incident, through the REST
// API (https://api.statuspage.io/v1/ by default, authenticated with
// "Authorization: OAuth <api key>").
//
// The incident's first event sent creates it (POST
// /pages/{page_id}/incidents); every later one updates it (PATCH
// /pages/{page_id}/incidents/{incident_id}) with the new status and an
// update body in plain words. Statuspage's incident id is kept in the
// state store, bucket "statuspage", one key per notifier and incident,
// with the sequence of the last event sent: a restarted Guardian updates
// the same incident, and a delivery the outbox repeats is not sent twice.
// The key is written as pending before the incident is created, and the
// incident carries its Guardian number in its metadata; if Guardian stops
// between the two, the next delivery finds the incident among the page's
// unresolved ones (GET /pages/{page_id}/incidents/unresolved) instead of
// creating another.
//
// Statuses follow the incident:
//
//   - incident.declared: investigating;
//   - approval.requested, approval.denied, rollback.started,
//     rollback.failed, recovery.failed and incident.escalated: identified;
//   - rollback.succeeded and rollback.unknown: monitoring;
//   - incident.resolved and incident.closed: resolved.
//
// Other events (trigger.fired, approval.granted, rollback.resumed,
// recovery.*, report.written, postmortem.scheduled, shadow.decision), a
// metric source's events and every event of an incident in shadow mode are
// not sent: they tell stakeholders nothing new, or nothing Guardian acted on. While the
// incident is open, the service's component (from the components setting)
// is in major_outage for SEV-0 and SEV-1 incidents and in
// degraded_performance for the others; a resolved incident puts it back
// to operational.
//
// The default name and bodies say what stakeholders may know: no
// versions, triggers, queries or people. Templates (Title for the name,
// Text for the body) may say more.
//
// 2xx is success. 408, 429 and 5xx are retried by the outbox, after the
// Retry-After the answer gives, and so are network errors and timeouts;
// any other answer is permanent, and its error quotes Statuspage's. The API
// key is never logged and is cut out of every error.
package statuspage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/internal/httpx"
	"github.com/rollback-guardian/guardian/notify/tmpl"
	"github.com/rollback-guardian/guardian/store"
)

// DefaultTimeout bounds one delivery (all of its requests).
const DefaultTimeout = 10 * time.Second

// Bucket keeps the Statuspage incident of each Guardian incident.
const Bucket = "statuspage"

// UserAgent is sent with every request.
const UserAgent = "Guardian"

// Incident statuses (Statuspage's realtime incident statuses).
const (
	Investigating = "investigating"
	Identified    = "identified"
	Monitoring    = "monitoring"
	Resolved      = "resolved"
)

// Component statuses.
const (
	ComponentOperational = "operational"
	ComponentDegraded    = "degraded_performance"
	ComponentMajorOutage = "major_outage"
)

// maxErrorBody is how much of an error answer is read; maxAnswer of a
// successful one.
const (
	maxErrorBody = 1024
	maxAnswer    = 1 << 20
)

// Limits Statuspage puts on an incident's name and an update's body.
const (
	maxName = 255
	maxBody = 10000
)

// Request is the body of a create or update request.
type Request struct {
	Incident Incident `json:"incident"`
}

// Incident is the incident's fields Guardian sets.
type Incident struct {
	// Name is set on creation only.
	Name   string `json:"name,omitempty"`
	Status string `json:"status"`
	Body   string `json:"body"`
	// ComponentIDs and Components name the service's component and its
	// status; both are empty for a service without a component.
	ComponentIDs []string          `json:"component_ids,omitempty"`
	Components   map[string]string `json:"components,omitempty"`
	// Metadata ties the incident to Guardian's (creation only).
	Metadata map[string]map[string]string `json:"metadata,omitempty"`
}

// Notifier keeps Statuspage incidents up to date.
type Notifier struct {
	name       string
	base       string // .../pages/{page_id}/incidents
	redacted   string
	key        string
	components map[string]string
	names      map[string]string
	title      *template.Template
	text       *template.Template
	store      func() store.Store
	client     *http.Client
	timeout    time.Duration
	now        func() time.Time
	logger     *zap.Logger
}

var _ notify.Notifier = (*Notifier)(nil)

// Option changes a Notifier's defaults.
type Option func(*Notifier)

// WithClient sends through c instead of a client of Guardian's own.
// Redirects are never followed either way.
func WithClient(c *http.Client) Option {
	return func(n *Notifier) {
		n.client = httpx.Client(c)
	}
}

// WithStore keeps the incidents' ids in the store st returns (nil until
// the store is open). Without a store, a delivery fails with a retry.
func WithStore(st func() store.Store) Option { return func(n *Notifier) { n.store = st } }

// WithTimeout bounds each delivery to d instead of DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(n *Notifier) {
		if d > 0 {
			n.timeout = d
		}
	}
}

// WithNow sets the clock against which an HTTP-date Retry-After is read.
func WithNow(now func() time.Time) Option { return func(n *Notifier) { n.now = now } }

// WithServiceNames gives services their public names (the status page's),
// for the default incident name and bodies.
func WithServiceNames(names map[string]string) Option {
	return func(n *Notifier) { n.names = names }
}

// New returns the notifier named name (the configuration's notifier
// name, part of its store keys) for cfg. cfg.APIKey is read by the config
// loader from cfg.APIKeyFile; an empty URL is config.DefaultStatuspageURL.
func New(name string, cfg config.StatuspageNotifier, logger *zap.Logger, opts ...Option) (*Notifier, error) {
	raw := cfg.URL
	if raw == "" {
		raw = config.DefaultStatuspageURL
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("statuspage: url %q: want an absolute http or https URL", raw)
	}
	if cfg.PageID == "" || strings.ContainsAny(cfg.PageID, "/?#%") {
		return nil, fmt.Errorf("statuspage: invalid page_id %q", cfg.PageID)
	}
	key := strings.TrimSpace(string(cfg.APIKey))
	if key == "" {
		return nil, fmt.Errorf("statuspage: no API key (api_key_file %s)", cfg.APIKeyFile)
	}
	if err := store.CheckKey(storeKey(name, 1)); err != nil {
		return nil, fmt.Errorf("statuspage: notifier name: %w", err)
	}
	title, text := defaultTitle, defaultText
	if cfg.Templates.Title != "" {
		if title, err = tmpl.Parse("title", cfg.Templates.Title); err != nil {
			return nil, fmt.Errorf("statuspage: templates.title: %w", err)
		}
	}
	if cfg.Templates.Text != "" {
		if text, err = tmpl.Parse("text", cfg.Templates.Text); err != nil {
			return nil, fmt.Errorf("statuspage: templates.text: %w", err)
		}
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	n := &Notifier{
		name:       name,
		base:       strings.TrimRight(u.String(), "/") + "/pages/" + url.PathEscape(cfg.PageID) + "/incidents",
		redacted:   u.Scheme + "://" + u.Host,
		key:        key,
		components: cfg.Components,
		title:      title,
		text:       text,
		timeout:    DefaultTimeout,
		now:        time.Now,
		logger:     logger.With(zap.String("statuspage", cfg.PageID)),
	}
	for _, o := range opts {
		o(n)
	}
	if n.client == nil {
		n.client = httpx.Client(nil)
	}
	return n, nil
}

// Status is the incident status e moves the Statuspage incident to, or ""
// when e is not sent (see the package comment).
func Status(e notify.Event) string {
	if e.Incident == 0 || e.Mode == "shadow" {
		return ""
	}
	switch e.Type {
	case event.IncidentDeclared:
		return Investigating
	case event.ApprovalRequested, event.ApprovalDenied, event.RollbackStarted,
		event.RollbackFailed, event.RecoveryFailed, event.IncidentEscalated:
		return Identified
	case event.RollbackSucceeded, event.RollbackUnknown:
		return Monitoring
	case event.IncidentResolved, event.IncidentClosed:
		return Resolved
	}
	return ""
}

// ComponentStatus is the status of the service's component while an
// incident of severity sev is at status.
func ComponentStatus(sev, status string) string {
	if status == Resolved {
		return ComponentOperational
	}
	if event.SeverityLevel(sev) == event.LevelCritical {
		return ComponentMajorOutage
	}
	return ComponentDegraded
}

// DefaultTitle is the incident name's template: the service's public name
// (.Data.public_name) and what it suffers.
const DefaultTitle = `{{if eq .Data.component_status "major_outage"}}Major outage{{else}}Degraded performance{{end}} of {{.Data.public_name}}`

// DefaultText is the update body's template: the event in plain words.
const DefaultText = `{{.Data.public_text}}`

var (
	defaultTitle = tmpl.Must("title", DefaultTitle)
	defaultText  = tmpl.Must("text", DefaultText)
)

// publicText says an event in plain words, as the status page does; the
// resolution also says the recovery, which Statuspage is not told apart.
func publicText(t event.Type, service string) string {
	_, text, _ := event.Public(t, service)
	if t == event.IncidentResolved {
		return service + " has recovered. " + text
	}
	return text
}

// publicName is the service's public name.
func (n *Notifier) publicName(service string) string {
	if p := n.names[service]; p != "" {
		return p
	}
	return service
}

// execute runs t for e; a template that fails when it runs, or writes
// nothing, gives the default's text instead, with a warning.
func (n *Notifier) execute(t, def *template.Template, e notify.Event) string {
	s, err := tmpl.Execute(t, e)
	if err == nil && strings.TrimSpace(s) != "" {
		return s
	}
	if err != nil {
		n.logger.Warn("Template failed; sending the default text", zap.String("template", t.Name()), zap.String("event", e.ID), zap.Error(err))
	}
	s, _ = tmpl.Execute(def, e)
	return s
}

// Build returns the request for e at status (create: with the name and
// metadata).
func (n *Notifier) Build(e notify.Event, status string, create bool) Request {
	comp := ComponentStatus(e.Severity, status)
	public := n.publicName(e.Service)
	// The templates see the event with the public name, text and
	// component status among its data.
	te := e
	te.Data = make(map[string]any, len(e.Data)+3)
	for k, v := range e.Data {
		te.Data[k] = v
	}
	te.Data["public_name"], te.Data["public_text"], te.Data["component_status"] = public, publicText(e.Type, public), comp

	inc := Incident{Status: status, Body: tmpl.Truncate(maxBody, strings.TrimSpace(n.execute(n.text, defaultText, te)))}
	if id := n.components[e.Service]; id != "" {
		inc.ComponentIDs = []string{id}
		inc.Components = map[string]string{id: comp}
	}
	if create {
		name := n.execute(n.title, defaultTitle, te)
		inc.Name = tmpl.Truncate(maxName, strings.Join(strings.Fields(name), " "))
		if inc.Name == "" {
			inc.Name = public
		}
		inc.Metadata = map[string]map[string]string{"guardian": {
			"incident": strconv.FormatInt(e.Incident, 10), "service": e.Service, "notifier": n.name,
		}}
	}
	return Request{Incident: inc}
}

// storeKey is the store key of a notifier's incident.
func storeKey(name string, incident int64) string {
	return name + "." + store.Key(uint64(incident))
}

// ref is where a Guardian incident is on Statuspage, as stored.
type ref struct {
	// ID is Statuspage's incident id; empty while Pending.
	ID string `json:"id,omitempty"`
	// Pending: the incident was being created, by the event of sequence
	// Creating, when this was written.
	Pending  bool `json:"pending,omitempty"`
	Creating int  `json:"creating,omitempty"`
	// Sent is the sequence of the last event sent.
	Sent int `json:"sent"`
}

// Notify creates or updates the Statuspage incident of e's incident, or
// does nothing when e is not sent.
func (n *Notifier) Notify(ctx context.Context, e notify.Event) (bool, error) {
	status := Status(e)
	if status == "" {
		n.logger.Debug("Event not sent to Statuspage", zap.String("event", e.ID), zap.String("type", string(e.Type)))
		return false, nil
	}
	if n.store == nil || n.store() == nil {
		return true, fmt.Errorf("statuspage %s: event %s: the state store is not open", n.name, e.ID)
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	st := n.store()
	k := storeKey(n.name, e.Incident)
	var (
		r   ref
		rev uint64
	)
	kv, err := st.Get(ctx, Bucket, k)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return true, fmt.Errorf("statuspage %s: event %s: reading the incident's id: %w", n.name, e.ID, err)
	default:
		if err := json.Unmarshal(kv.Value, &r); err != nil || (r.ID == "" && !r.Pending) {
			return false, fmt.Errorf("statuspage %s: event %s: the stored id of the incident is damaged", n.name, e.ID)
		}
		rev = kv.Revision
	}
	if r.ID == "" && r.Pending {
		// Guardian stopped while creating the incident, or the answer
		// was lost: it may exist.
		id, retry, err := n.find(ctx, e)
		if err != nil {
			return retry, n.errorf(e, "looking for the incident being created", err)
		}
		if id != "" {
			r = ref{ID: id, Sent: r.Creating}
			if rev, err = st.Put(ctx, Bucket, k, mustJSON(r), rev); err != nil {
				return true, fmt.Errorf("statuspage %s: event %s: saving the incident's id: %w", n.name, e.ID, err)
			}
			n.logger.Info("Statuspage incident found after an interrupted creation", zap.String("event", e.ID), zap.String("id", id))
		}
	}
	if r.ID != "" && e.Sequence != 0 && e.Sequence <= r.Sent {
		n.logger.Debug("Event already sent to Statuspage", zap.String("event", e.ID))
		return false, nil
	}
	if r.ID == "" {
		if status == Resolved {
			// Never created (the receiver came after the incident): there
			// is nothing to resolve.
			n.logger.Debug("No Statuspage incident to resolve", zap.String("event", e.ID))
			return false, nil
		}
		if rev, err = st.Put(ctx, Bucket, k, mustJSON(ref{Pending: true, Creating: e.Sequence}), rev); err != nil {
			return true, fmt.Errorf("statuspage %s: event %s: saving the pending incident: %w", n.name, e.ID, err)
		}
		req := n.Build(e, status, true)
		var created struct {
			ID string `json:"id"`
		}
		if retry, err := n.send(ctx, http.MethodPost, n.base, req, &created); err != nil {
			return retry, n.errorf(e, "creating the incident", err)
		}
		if created.ID == "" {
			return false, n.errorf(e, "creating the incident", errors.New("the answer has no incident id"))
		}
		if _, err := st.Put(ctx, Bucket, k, mustJSON(ref{ID: created.ID, Sent: e.Sequence}), rev); err != nil {
			// The next delivery finds it through its metadata.
			n.logger.Warn("Statuspage incident created but its id not saved", zap.String("event", e.ID), zap.Error(err))
		}
		n.logger.Debug("Statuspage incident created", zap.String("event", e.ID), zap.String("id", created.ID))
		return false, nil
	}
	req := n.Build(e, status, false)
	if retry, err := n.send(ctx, http.MethodPatch, n.base+"/"+url.PathEscape(r.ID), req, nil); err != nil {
		return retry, n.errorf(e, "updating incident "+r.ID, err)
	}
	if _, err := st.Put(ctx, Bucket, k, mustJSON(ref{ID: r.ID, Sent: max(e.Sequence, r.Sent)}), rev); err != nil {
		n.logger.Warn("Statuspage incident updated but the update not saved: a repeated delivery may update it again",
			zap.String("event", e.ID), zap.Error(err))
	}
	n.logger.Debug("Statuspage incident updated", zap.String("event", e.ID), zap.String("id", r.ID), zap.String("status", status))
	return false, nil
}

// find looks for e's incident among the page's unresolved incidents, by
// the metadata it was created with; "" when there is none.
func (n *Notifier) find(ctx context.Context, e notify.Event) (string, bool, error) {
	var open []struct {
		ID       string                       `json:"id"`
		Metadata map[string]map[string]string `json:"metadata"`
	}
	if retry, err := n.send(ctx, http.MethodGet, n.base+"/unresolved", nil, &open); err != nil {
		return "", retry, err
	}
	want := strconv.FormatInt(e.Incident, 10)
	for _, inc := range open {
		g := inc.Metadata["guardian"]
		if g["incident"] == want && g["service"] == e.Service && g["notifier"] == n.name && inc.ID != "" {
			return inc.ID, false, nil
		}
	}
	return "", false, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// send makes one API request with body (nil: none) and decodes a
// successful answer into out (nil: ignored). It reports retry for 408, 429,
// 5xx, network errors and timeouts.
func (n *Notifier) send(ctx context.Context, method, u string, body any, out any) (bool, error) {
	var rd io.Reader
	if body != nil {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(body); err != nil {
			return false, err
		}
		rd = &b
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return false, unquote(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "OAuth "+n.key)
	req.Header.Set("User-Agent", UserAgent)
	resp, err := n.client.Do(req)
	if err != nil {
		return true, unquote(err)
	}
	defer resp.Body.Close()
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		if err != nil {
			return true, fmt.Errorf("reading the answer: %w", unquote(err))
		}
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				return false, fmt.Errorf("status %d with an answer that is not the expected JSON: %s", code, tmpl.Truncate(128, httpx.Clean(b)))
			}
		}
		return false, nil
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // for connection reuse
	retry, se := httpx.Answer(resp, message(answer), n.now())
	se.Hint = hints[code]
	return retry, se
}

// hints explain permanent answers.
var hints = map[int]string{
	http.StatusUnauthorized: "the API key is not valid: check api_key_file",
	http.StatusForbidden:    "the API key's user may not manage this page's incidents",
	http.StatusNotFound:     "no such page or incident: check page_id (was the incident deleted on Statuspage?)",
	420:                     "rate limited",
}

func (n *Notifier) errorf(e notify.Event, what string, err error) error {
	return &httpx.ScrubbedError{
		Msg: n.scrub(fmt.Sprintf("statuspage %s: event %s: %s on %s: %v", n.name, e.ID, what, n.redacted, err)),
		Err: err,
	}
}

// scrub cuts the API key out of s.
func (n *Notifier) scrub(s string) string { return httpx.Scrub(s, n.key, "<api key>") }

// StatusError is an answer other than 2xx: Statuspage's message, and a
// hint for a permanent one.
type StatusError = httpx.StatusError

var _ notify.RetryAfterError = (*StatusError)(nil)

// message reads an error answer: {"error": "..."} or {"error": ["..."]}
// gives its text; anything else its start, on one line.
func message(b []byte) string {
	var a struct {
		Error any `json:"error"`
	}
	if json.Unmarshal(b, &a) == nil && a.Error != nil {
		switch v := a.Error.(type) {
		case string:
			return tmpl.Truncate(256, httpx.Clean([]byte(v)))
		case []any:
			parts := make([]string, 0, len(v))
			for _, p := range v {
				parts = append(parts, fmt.Sprint(p))
			}
			return tmpl.Truncate(256, httpx.Clean([]byte(strings.Join(parts, "; "))))
		}
	}
	return tmpl.Truncate(256, httpx.Clean(b))
}

// unquote drops the URL a *url.Error quotes, keeping its cause.
func unquote(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}
