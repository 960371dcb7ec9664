// Package webhook is the executor that rolls back by asking the user's
// deploy system over HTTP: it POSTs the target as JSON, signed the way
// Standard Webhooks signs (see package sign) with the idempotency key as
// webhook-id, and treats a 2xx answer as success. It retries only a
// receiver declared idempotent.
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
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/sign"
)

// Name is the executor type's name in configuration and on the timeline.
const Name = "webhook"

// HeaderIdempotencyKey carries the target's idempotency key, as the IETF
// Idempotency-Key draft names it; webhook-id carries it too.
const HeaderIdempotencyKey = "Idempotency-Key"

const (
	// errorSnippet bounds the part of a failed answer's body in the error.
	errorSnippet = 512
	// maxBackoff caps DefaultBackoff.
	maxBackoff = 10 * time.Second
)

// Payload is the JSON body of a rollback request.
type Payload struct {
	Incident       int64  `json:"incident"`
	Service        string `json:"service"`
	Version        string `json:"version"`
	Baseline       string `json:"baseline"`
	Step           string `json:"step"`
	IdempotencyKey string `json:"idempotency_key"`
	Reason         string `json:"reason"`
}

// DefaultBackoff waits 1s after the first failed attempt and twice as long
// after each further one, at most 10s.
func DefaultBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	if attempt > 5 {
		return maxBackoff
	}
	return min(time.Second<<(attempt-1), maxBackoff)
}

// Option changes how an Executor works, mostly for tests.
type Option func(*Executor)

// WithHTTPClient sends requests with c instead of a client that follows no
// redirects and keeps no idle connections.
func WithHTTPClient(c *http.Client) Option { return func(e *Executor) { e.client = c } }

// WithBackoff sets the wait after the attempt-th failed attempt (from 1)
// before the next one, instead of DefaultBackoff.
func WithBackoff(f func(attempt int) time.Duration) Option {
	return func(e *Executor) { e.backoff = f }
}

// WithClock sets the clock that timestamps the signatures.
func WithClock(now func() time.Time) Option { return func(e *Executor) { e.now = now } }

// Executor posts rollback requests to one URL. It is safe for concurrent
// use.
type Executor struct {
	url      string
	redacted string // for messages: scheme and host only (see redact)
	key      []byte // nil: unsigned
	timeout  time.Duration
	attempts int
	client   *http.Client
	backoff  func(int) time.Duration
	now      func() time.Time
	logger   *zap.Logger
}

var _ executor.Executor = (*Executor)(nil)

// New validates cfg (applying its defaults) and returns its executor. A
// SecretFile whose Secret the config loader did not fill is an error, not
// an unsigned receiver. A nil logger logs nothing.
func New(cfg Config, logger *zap.Logger, opts ...Option) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook executor: %w", err)
	}
	if cfg.SecretFile != "" && cfg.Secret == "" {
		return nil, fmt.Errorf("webhook executor: secret_file %q was not loaded", cfg.SecretFile)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	u, _ := url.Parse(cfg.URL) // checked by Validate
	e := &Executor{
		url:      cfg.URL,
		redacted: redact(u),
		timeout:  time.Duration(cfg.Timeout),
		attempts: 1,
		backoff:  DefaultBackoff,
		now:      time.Now,
	}
	if cfg.Idempotent {
		e.attempts = cfg.MaxAttempts
	}
	if cfg.Secret != "" {
		key, err := sign.Key(string(cfg.Secret))
		if err != nil {
			return nil, fmt.Errorf("webhook executor: secret_file %q: %w", cfg.SecretFile, err)
		}
		e.key = key
	}
	for _, o := range opts {
		o(e)
	}
	if e.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DisableKeepAlives = true // rollbacks are rare; leave no idle connections behind
		e.client = &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a redirected POST would turn into a GET
			},
		}
	}
	e.logger = logger.With(zap.String("executor", Name), zap.String("url", e.redacted))
	return e, nil
}

// Rollback posts t to the receiver. A 2xx answer is success; its body
// (at most executor.MaxOutput bytes) is the Result's Output. When the
// receiver is idempotent, network errors, timeouts, 5xx and 429 answers are
// retried with backoff, up to MaxAttempts calls, every one with the same
// idempotency key and a fresh signature; otherwise the receiver is called
// once. The error wraps executor.ErrTimeout when the last attempt got no
// answer in time, executor.ErrFailed otherwise, or ctx's error when ctx
// ended first.
func (e *Executor) Rollback(ctx context.Context, t executor.Target) (executor.Result, error) {
	if t.IdempotencyKey == "" {
		return executor.Result{}, fmt.Errorf("webhook %s: %w: target has no idempotency key", e.redacted, executor.ErrFailed)
	}
	log := e.logger.With(
		zap.Int64("incident", t.Incident),
		zap.String("service", t.Service),
		zap.String("version", t.Version),
		zap.String("baseline", t.Baseline),
		zap.String("step", t.Step),
		zap.String("idempotency_key", t.IdempotencyKey),
	)
	body, err := json.Marshal(Payload{
		Incident:       t.Incident,
		Service:        t.Service,
		Version:        t.Version,
		Baseline:       t.Baseline,
		Step:           t.Step,
		IdempotencyKey: t.IdempotencyKey,
		Reason:         t.Reason,
	})
	if err != nil {
		return executor.Result{}, fmt.Errorf("webhook %s: %w: encoding the request: %w", e.redacted, executor.ErrFailed, err)
	}

	for attempt := 1; ; attempt++ {
		log.Info("calling rollback webhook", zap.Int("attempt", attempt))
		res, retry, err := e.call(ctx, t.IdempotencyKey, body)
		res.Details["attempts"] = strconv.Itoa(attempt)
		if err == nil {
			log.Info("rollback webhook succeeded", zap.Int("attempt", attempt), zap.String("status_code", res.Details["status_code"]))
			return res, nil
		}
		err = fmt.Errorf("webhook %s: %w", e.redacted, err)
		if !retry || attempt >= e.attempts || ctx.Err() != nil {
			if attempt > 1 {
				err = fmt.Errorf("%w (attempt %d of %d)", err, attempt, e.attempts)
			}
			log.Warn("rollback webhook failed", zap.Int("attempt", attempt), zap.Error(err))
			return res, err
		}
		wait := e.backoff(attempt)
		log.Warn("rollback webhook failed, retrying", zap.Int("attempt", attempt), zap.Duration("backoff", wait), zap.Error(err))
		if err := sleep(ctx, wait); err != nil {
			return res, fmt.Errorf("webhook %s: waiting to retry: %w", e.redacted, ctxError(ctx))
		}
	}
}

// call makes one attempt. retry reports whether a failure is worth another
// attempt at an idempotent receiver.
func (e *Executor) call(ctx context.Context, key string, body []byte) (res executor.Result, retry bool, err error) {
	res.Details = map[string]string{}
	actx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return res, false, fmt.Errorf("%w: %w", executor.ErrFailed, unquote(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Guardian")
	req.Header.Set(HeaderIdempotencyKey, key)
	sign.Apply(req.Header, e.key, key, e.now(), body)

	resp, err := e.client.Do(req)
	if err != nil {
		return res, true, e.transportError(ctx, actx, err)
	}
	defer resp.Body.Close()
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, executor.MaxOutput+1))
	truncated := len(data) > executor.MaxOutput
	if truncated {
		data = data[:executor.MaxOutput]
	}
	res.Output = string(data)
	if truncated {
		res.Output += "\n[guardian: response truncated]"
		res.Details["output_truncated"] = "true"
	}
	res.Details["status_code"] = strconv.Itoa(resp.StatusCode)

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		retry = resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
		return res, retry, fmt.Errorf("%w: %s%s", executor.ErrFailed, resp.Status, snippet(data))
	}
	if readErr != nil {
		// The receiver said yes; only its explanation was cut short.
		res.Details["output_error"] = readErr.Error()
	}
	return res, false, nil
}

// transportError classifies a request that got no answer.
func (e *Executor) transportError(ctx, actx context.Context, err error) error {
	err = unquote(err)
	switch {
	case ctx.Err() != nil:
		return ctxError(ctx)
	case actx.Err() != nil:
		return fmt.Errorf("%w: no answer within %s", executor.ErrTimeout, e.timeout)
	}
	return fmt.Errorf("%w: %w", executor.ErrFailed, err)
}

// redact keeps only a URL's scheme and host: a deploy system's webhook
// often carries its token in the path, the query or the user info.
// Anything after the host shows as "/<secret>".
func redact(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		s += "/<secret>"
	}
	return s
}

// unquote drops the URL a *url.Error quotes (its message repeats the
// URL), keeping its cause.
func unquote(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// snippet is the start of a failed answer's body for an error message.
func snippet(data []byte) string {
	s := strings.TrimSpace(string(data))
	if s == "" {
		return ""
	}
	if len(s) > errorSnippet {
		s = strings.ToValidUTF8(s[:errorSnippet], "") + "..."
	}
	return ": " + s
}

// ctxError is the error for a caller's context that ended: a deadline is a
// timeout too.
func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", executor.ErrTimeout, ctx.Err())
	}
	return ctx.Err()
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
