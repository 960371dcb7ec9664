// Package webhook is the generic notification receiver: it POSTs each event
// as JSON, signed the Standard Webhooks way (package sign), to a configured
// URL.
//
// The request body is notify.Event's JSON form:
//
//	{"id": "evt_42_1", "type": "incident.declared", "timestamp": "2025-01-02T15:04:05Z",
//	 "incident": 42, "service": "checkout", "severity": "SEV-1", "state": "awaiting_approval",
//	 "text": "roll back checkout v2.4.1 → v2.4.0: ...", "data": {...}}
//
// with the headers Content-Type: application/json, User-Agent: Guardian,
// webhook-id (the event ID, the same on every retry: dedupe on it),
// webhook-timestamp (the send time, Unix seconds) and, when a secret is
// configured, webhook-signature ("v1,<base64 HMAC-SHA256 of id.timestamp.body>").
// A 2xx answer is success; 408, 429, 5xx, network errors and timeouts are
// retried by the outbox; any other answer, redirects included, is permanent.
//
// An event about a metric source (source.unreachable, source.recovered) is
// bound to no incident: "incident" is 0 and the id numbers the source's
// events:
//
//	{"id": "src_prom_1", "type": "source.unreachable", "sequence": 1, "incident": 0,
//	 "state": "unreachable", "text": "metric source \"prom\" (...) is unreachable: ...",
//	 "data": {"source": "prom", "services": ["checkout"], "since": "...", "reason": "unavailable", ...}}
package webhook

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
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/internal/httpx"
	"github.com/rollback-guardian/guardian/notify/tmpl"
	"github.com/rollback-guardian/guardian/sign"
)

// DefaultTimeout bounds one POST, connection included.
const DefaultTimeout = 10 * time.Second

// UserAgent is sent with every request.
const UserAgent = "Guardian"

// maxErrorBody is how much of an error answer is quoted in the error.
const maxErrorBody = 256

// Notifier posts events to one webhook URL.
type Notifier struct {
	url      string
	redacted string // scheme and host only, for logs and errors (see redact)
	key      []byte // nil: unsigned
	client   *http.Client
	timeout  time.Duration
	now      func() time.Time
	logger   *zap.Logger
	// text, when set, renders each event's text field.
	text *template.Template
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

// WithNow sets the clock giving webhook-timestamp.
func WithNow(now func() time.Time) Option {
	return func(n *Notifier) { n.now = now }
}

// New returns a notifier for the configured webhook. cfg.Secret, read by the
// config loader from cfg.SecretFile, is the signing key ("whsec_<base64>" or
// raw bytes); without a secret file the requests go unsigned.
func New(cfg config.Webhook, logger *zap.Logger, opts ...Option) (*Notifier, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook URL: %w", unquote(err))
	}
	redacted := redact(u)
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook URL %s: want an absolute http or https URL", redacted)
	}
	var key []byte
	switch {
	case cfg.Secret != "":
		if key, err = sign.Key(string(cfg.Secret)); err != nil {
			return nil, fmt.Errorf("webhook %s: secret from %s: %w", redacted, cfg.SecretFile, err)
		}
	case cfg.SecretFile != "":
		return nil, fmt.Errorf("webhook %s: secret file %s is empty", redacted, cfg.SecretFile)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	var text *template.Template
	if cfg.Templates.Text != "" {
		if text, err = tmpl.Parse("text", cfg.Templates.Text); err != nil {
			return nil, fmt.Errorf("webhook %s: templates.text: %w", redacted, err)
		}
	}
	n := &Notifier{
		text:     text,
		url:      u.String(),
		redacted: redacted,
		key:      key,
		timeout:  DefaultTimeout,
		now:      time.Now,
		logger:   logger.With(zap.String("webhook", redacted)),
	}
	for _, o := range opts {
		o(n)
	}
	if n.client == nil {
		n.client = httpx.Client(nil)
	}
	return n, nil
}

// redact keeps only scheme and host: the path of a webhook URL is often its
// credential (https://hooks.slack.com/services/T000/B000/XXXX), and so are
// its user info and query. Anything after the host shows as "/<secret>".
func redact(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		s += "/<secret>"
	}
	return s
}

// unquote drops the URL a *url.Error quotes, keeping its cause: the URL
// holds credentials. The cause keeps telling timeouts (net.Error).
func unquote(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// Notify posts e once. It reports retry for 408, 429, 5xx, network errors
// and timeouts.
func (n *Notifier) Notify(ctx context.Context, e notify.Event) (bool, error) {
	if n.text != nil {
		// A template that fails keeps the event's own text: the event
		// still goes out.
		if t, err := tmpl.Execute(n.text, e); err != nil {
			n.logger.Warn("templates.text failed; sending the event's own text", zap.String("event", e.ID), zap.Error(err))
		} else {
			e.Text = t
		}
	}
	body, err := Body(e)
	if err != nil {
		return false, fmt.Errorf("encoding event %s: %w", e.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("posting event %s to webhook %s: %w", e.ID, n.redacted, unquote(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	sign.Apply(req.Header, n.key, e.ID, n.now(), body)

	resp, err := n.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("posting event %s to webhook %s: %w", e.ID, n.redacted, unquote(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // for connection reuse

	code := resp.StatusCode
	if code >= 200 && code < 300 {
		n.logger.Debug("Event delivered", zap.String("event", e.ID), zap.Int("status", code))
		return false, nil
	}
	retry, se := httpx.Answer(resp, httpx.Clean(snippet), n.now())
	err = fmt.Errorf("posting event %s to webhook %s: %w", e.ID, n.redacted, se)
	return retry, err
}

// StatusError is a non-2xx answer, with the start of the answer.
type StatusError = httpx.StatusError

var _ notify.RetryAfterError = (*StatusError)(nil)

// Body returns the JSON body posted for e: e's JSON form with the time in
// UTC and data never null.
func Body(e notify.Event) ([]byte, error) {
	e.Time = e.Time.UTC()
	if e.Data == nil {
		e.Data = map[string]any{}
	}
	return json.Marshal(e)
}
