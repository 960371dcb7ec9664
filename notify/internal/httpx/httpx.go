// Package httpx holds what the HTTP receivers (webhook, alertmanager,
// pagerduty, teams, statuspage) share about reading an answer: which are
// worth retrying, Retry-After, a printable excerpt of the body, the error
// that says it with secrets cut out, and never following redirects.
package httpx

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// RetryAfter reads a Retry-After header (RFC 9110 section 10.2.3): a
// number of seconds (at most a day) or an HTTP date. Anything else, or a
// time in the past, is 0.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}

// Clean makes an answer printable on one line: invalid UTF-8 becomes '?',
// control characters spaces, runs of white space one space.
func Clean(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// NoRedirect is an http.Client CheckRedirect that returns a redirect as
// the answer: a receiver's URL is exact, and a redirect could carry its
// secrets elsewhere.
func NoRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Retryable reports whether an answer's status is worth another attempt:
// a timeout (408), rate limiting (429) or a server error (5xx).
func Retryable(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// StatusError is an answer other than 2xx.
type StatusError struct {
	Code int
	// Message is the receiver's error, or the start of the answer, on one
	// line.
	Message string
	// Hint says what to do about a permanent error.
	Hint string
	// Wait is the answer's Retry-After, or 0.
	Wait time.Duration
}

// Answer classifies a non-2xx answer whose body says message: whether it
// is worth retrying, and its StatusError, which keeps the Retry-After of a
// retryable one.
func Answer(resp *http.Response, message string, now time.Time) (retry bool, se *StatusError) {
	retry = Retryable(resp.StatusCode)
	se = &StatusError{Code: resp.StatusCode, Message: message}
	if retry {
		se.Wait = RetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return retry, se
}

// RetryAfter is how long the receiver asked to wait before the next
// attempt (0: it did not say).
func (e *StatusError) RetryAfter() time.Duration { return e.Wait }

// Error says the status, the receiver's message and the hint.
func (e *StatusError) Error() string {
	s := "status " + strconv.Itoa(e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// ScrubbedError is a failure whose message has a secret cut out; it
// unwraps to its cause (a *StatusError, a net.Error).
type ScrubbedError struct {
	Msg string
	Err error
}

func (e *ScrubbedError) Error() string { return e.Msg }
func (e *ScrubbedError) Unwrap() error { return e.Err }

// Scrub cuts secret out of s, writing placeholder instead.
func Scrub(s, secret, placeholder string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, placeholder)
}

// Client is the client a receiver sends through: a copy of c (nil: one of
// the receiver's own, with its own connections) that never follows a
// redirect.
func Client(c *http.Client) *http.Client {
	if c == nil {
		return &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), CheckRedirect: NoRedirect}
	}
	cc := *c
	cc.CheckRedirect = NoRedirect
	return &cc
}
