// Package slack is Guardian's Slack receiver and its go/no-go channel.
//
// The Notifier keeps one message per incident in the configured channel:
// the incident's first event posts it (chat.postMessage), every later event
// edits it in place (chat.update) so that it always shows where the
// incident stands, and tells the transition as a reply in the message's
// thread. Where the message is (channel and ts) is kept in the state store,
// bucket "slack", one key per notifier and incident, so a restarted
// Guardian edits the same message; the last event shown and the last
// replied are kept with it, so that a delivery the outbox repeats after a
// crash neither goes back in time nor replies twice. Like every notifier it
// does not retry: it says whether a failure is worth retrying (network
// errors, 5xx, rate limits, with Slack's Retry-After) and the outbox
// retries.
//
// With a signing secret, a message whose incident awaits a go/no-go
// carries Approve and Hold buttons (the database step's own while that
// step waits). Slack sends the clicks, and the /guardian slash command, to
// Guardian's POST /api/v1/slack/interactions, served by Handler: every
// request must carry a valid v0 signature of one of the configured signing
// secrets, made within five minutes, and not seen before (replays are
// refused); the clicking user must be one of the service's
// approval.slack_approvers, directly or through a user group; the vote
// then goes through the same approval seam as the API's, recorded as
// "slack:<user id> (<user name>)" on the timeline and in the report.
package slack

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
	"time"

	goslack "github.com/slack-go/slack"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/store"
)

// DefaultTimeout bounds one delivery (both of its API calls).
const DefaultTimeout = 10 * time.Second

// Bucket keeps where each incident's message is.
const Bucket = "slack"

// Notifier posts and keeps up to date one Slack message per incident.
type Notifier struct {
	name        string
	channel     string
	api         *goslack.Client
	tmpl        *templates
	interactive bool
	store       func() store.Store
	timeout     time.Duration
	logger      *zap.Logger
}

var _ notify.Notifier = (*Notifier)(nil)

// Option changes a Notifier's defaults.
type Option func(*options)

type options struct {
	client  *http.Client
	store   func() store.Store
	timeout time.Duration
}

// WithClient sends through c instead of a client of Guardian's own.
func WithClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithStore keeps the messages' places in the store st returns (nil until
// the store is open). Without a store, a delivery fails with a retry.
func WithStore(st func() store.Store) Option { return func(o *options) { o.store = st } }

// WithTimeout bounds each delivery to d instead of DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// New returns the notifier named name (the configuration's notifier name,
// part of its store keys) for cfg.
func New(name string, cfg config.SlackNotifier, logger *zap.Logger, opts ...Option) (*Notifier, error) {
	if cfg.Channel == "" {
		return nil, errors.New("slack: no channel")
	}
	if cfg.Token == "" {
		return nil, errors.New("slack: no bot token")
	}
	if err := store.CheckKey(key(name, 1)); err != nil {
		return nil, fmt.Errorf("slack: notifier name: %w", err)
	}
	t, err := newTemplates(cfg.Templates)
	if err != nil {
		return nil, fmt.Errorf("slack: %w", err)
	}
	o := options{timeout: DefaultTimeout}
	for _, f := range opts {
		f(&o)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	api, err := newClient(string(cfg.Token), cfg.APIURL, o.client)
	if err != nil {
		return nil, err
	}
	return &Notifier{
		name: name, channel: cfg.Channel, api: api, tmpl: t, interactive: cfg.SigningSecret != "",
		store: o.store, timeout: o.timeout, logger: logger,
	}, nil
}

// newClient is a Web API client for token at apiURL ("" is Slack's).
func newClient(token, apiURL string, c *http.Client) (*goslack.Client, error) {
	if apiURL == "" {
		apiURL = config.DefaultSlackAPIURL
	}
	u, err := url.Parse(apiURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("slack: api_url %q: want an absolute http or https URL", apiURL)
	}
	if !strings.HasSuffix(apiURL, "/") {
		apiURL += "/"
	}
	if c == nil {
		c = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return goslack.New(token, goslack.OptionAPIURL(apiURL), goslack.OptionHTTPClient(bearer{c: &cc, token: token})), nil
}

// bearer sends the token in the Authorization header, as Slack recommends,
// instead of the form field "token" that the client library adds to the
// form-encoded methods: the token then never travels in a body that a
// proxy or a debug dump might keep.
type bearer struct {
	c     *http.Client
	token string
}

func (b bearer) Do(req *http.Request) (*http.Response, error) {
	if strings.HasPrefix(req.Header.Get("Content-Type"), "application/x-www-form-urlencoded") && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		if v, err := url.ParseQuery(string(body)); err == nil && v.Has("token") {
			v.Del("token")
			body = []byte(v.Encode())
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	if q := req.URL.Query(); q.Has("token") {
		q.Del("token")
		req.URL.RawQuery = q.Encode()
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	return b.c.Do(req)
}

// key is the store key of a notifier's message for an incident.
func key(name string, incident int64) string {
	return name + "." + store.Key(uint64(incident))
}

// placed is where an incident's message is, as stored.
type placed struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
	// Shown is the sequence of the event the message shows; Replied the
	// last one told in the thread.
	Shown   int `json:"shown"`
	Replied int `json:"replied"`
}

// Notify posts, or edits and replies to, the incident's message.
func (n *Notifier) Notify(ctx context.Context, e notify.Event) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	msg, err := n.tmpl.message(e, n.interactive)
	if err != nil {
		return false, fmt.Errorf("slack %s: event %s: %w", n.name, e.ID, err)
	}
	opts := []goslack.MsgOption{goslack.MsgOptionBlocks(msg.Blocks...), goslack.MsgOptionText(msg.Text, false)}
	if e.Incident == 0 {
		// A metric source's event belongs to no incident: a message of its own.
		_, _, err := n.api.PostMessageContext(ctx, n.channel, opts...)
		return n.failed(e, "chat.postMessage", err)
	}
	if n.store == nil || n.store() == nil {
		return true, fmt.Errorf("slack %s: event %s: the state store is not open", n.name, e.ID)
	}
	st := n.store()
	k := key(n.name, e.Incident)
	kv, err := st.Get(ctx, Bucket, k)
	switch {
	case errors.Is(err, store.ErrNotFound):
		ch, ts, err := n.api.PostMessageContext(ctx, n.channel, opts...)
		if err != nil {
			return n.failed(e, "chat.postMessage", err)
		}
		p := placed{Channel: ch, TS: ts, Shown: e.Sequence, Replied: e.Sequence}
		if err := n.save(ctx, st, k, p, 0); err != nil {
			// The message is posted; a retry would post another.
			n.logger.Error("Slack message posted but its place not saved: later events start a new message",
				zap.String("event", e.ID), zap.Error(err))
		}
		n.logger.Debug("Slack message posted", zap.String("event", e.ID), zap.String("channel", ch), zap.String("ts", ts))
		return false, nil
	case err != nil:
		return true, fmt.Errorf("slack %s: event %s: reading the message's place: %w", n.name, e.ID, err)
	}
	var p placed
	if err := json.Unmarshal(kv.Value, &p); err != nil || p.Channel == "" || p.TS == "" {
		return false, fmt.Errorf("slack %s: event %s: the stored place of the message is damaged", n.name, e.ID)
	}
	before := p
	if e.Sequence == 0 || e.Sequence > p.Shown {
		if _, _, _, err := n.api.UpdateMessageContext(ctx, p.Channel, p.TS, opts...); err != nil {
			return n.failed(e, "chat.update", err)
		}
		p.Shown = e.Sequence
	}
	if e.Sequence == 0 || e.Sequence > p.Replied {
		text, err := n.tmpl.reply(e)
		if err != nil {
			return false, fmt.Errorf("slack %s: event %s: %w", n.name, e.ID, err)
		}
		if _, _, err := n.api.PostMessageContext(ctx, p.Channel, goslack.MsgOptionText(text, false), goslack.MsgOptionTS(p.TS)); err != nil {
			if p != before {
				n.saveLogged(ctx, st, k, p, kv.Revision, e)
			}
			return n.failed(e, "chat.postMessage (thread reply)", err)
		}
		p.Replied = e.Sequence
	}
	if p != before {
		n.saveLogged(ctx, st, k, p, kv.Revision, e)
	}
	return false, nil
}

func (n *Notifier) save(ctx context.Context, st store.Store, k string, p placed, rev uint64) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = st.Put(ctx, Bucket, k, b, rev)
	return err
}

func (n *Notifier) saveLogged(ctx context.Context, st store.Store, k string, p placed, rev uint64, e notify.Event) {
	if err := n.save(ctx, st, k, p, rev); err != nil {
		n.logger.Warn("Slack message updated but its progress not saved: a repeated delivery may reply again",
			zap.String("event", e.ID), zap.Error(err))
	}
}

// failed classifies a Web API failure: rate limits, 5xx and network
// errors are retried, Slack's refusals are not.
func (n *Notifier) failed(e notify.Event, method string, err error) (bool, error) {
	if err == nil {
		return false, nil
	}
	retry, err := classify(err)
	return retry, fmt.Errorf("slack %s: event %s: %s: %w", n.name, e.ID, method, err)
}

// APIError is a failed Web API call.
type APIError struct {
	// Code is Slack's error ("channel_not_found") or the HTTP status.
	Code string
	// Hint says what to do about a permanent error.
	Hint string
	// Wait is how long Slack asked to wait (rate limits).
	Wait time.Duration
}

var _ notify.RetryAfterError = (*APIError)(nil)

func (e *APIError) Error() string {
	s := e.Code
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	if e.Wait > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.Wait)
	}
	return s
}

// RetryAfter is Slack's Retry-After, or 0.
func (e *APIError) RetryAfter() time.Duration { return e.Wait }

// hints explain Slack's permanent errors.
var hints = map[string]string{
	"channel_not_found":   "the channel does not exist or the bot cannot see it: check the notifier's channel (an ID such as C0123ABC, or #name)",
	"not_in_channel":      "the bot is not a member of the channel: invite it (/invite @your-app)",
	"invalid_auth":        "the bot token is not valid: check token_file",
	"not_authed":          "no bot token was sent: check token_file",
	"account_inactive":    "the bot token belongs to a deleted user or a disabled app",
	"token_revoked":       "the bot token was revoked: install the app again and update token_file",
	"missing_scope":       "the token lacks a scope: the app needs chat:write (and usergroups:read for user groups)",
	"is_archived":         "the channel is archived",
	"msg_too_long":        "the message is too long: shorten the templates",
	"invalid_blocks":      "Slack refused the message's blocks: check the templates",
	"message_not_found":   "the incident's message was deleted",
	"cant_update_message": "the message was not posted by this bot",
}

// retryable are Slack's errors worth another try.
var retryable = map[string]bool{
	"ratelimited": true, "internal_error": true, "fatal_error": true, "service_unavailable": true,
	"request_timeout": true, "team_added_to_org": true,
}

func classify(err error) (bool, error) {
	var rl *goslack.RateLimitedError
	var se goslack.SlackErrorResponse
	var sc goslack.StatusCodeError
	switch {
	case errors.As(err, &rl):
		return true, &APIError{Code: "ratelimited", Wait: rl.RetryAfter}
	case errors.As(err, &se):
		return retryable[se.Err], &APIError{Code: se.Err, Hint: hints[se.Err]}
	case errors.As(err, &sc):
		retry := sc.Code == http.StatusTooManyRequests || sc.Code == http.StatusRequestTimeout || sc.Code >= 500
		return retry, &APIError{Code: fmt.Sprintf("HTTP status %d", sc.Code)}
	case errors.Is(err, context.Canceled):
		return true, err
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return true, uerr.Err // the URL is the API's, the error its cause
	}
	return true, err
}
