// Package httpx holds what the HTTP receivers (webhook, alertmanager,
// pagerduty, teams) share about reading an answer: Retry-After, a printable
// excerpt of the body, and never following redirects.
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
