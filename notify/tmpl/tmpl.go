// Package tmpl holds what every receiver's text/templates share: the
// functions they may call, and execution with a bound on the output, so
// that a template from the configuration cannot make a message without end.
package tmpl

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"time"
)

// Funcs are the functions a notification template may call.
var Funcs = template.FuncMap{
	// upper, lower, title and join work on strings as package strings does.
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"join":  func(sep string, s []string) string { return strings.Join(s, sep) },
	// truncate cuts s to n bytes at a rune boundary, ending it with "…".
	"truncate": Truncate,
	// since is the duration from t to now, rounded to the second.
	"since": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
	// rfc3339 formats a time as RFC 3339 in UTC.
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}

// MaxOutput bounds what one template may write, in bytes.
const MaxOutput = 64 << 10

// Parse parses a template with Funcs; a missing map key is an error.
func Parse(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=zero").Funcs(Funcs).Parse(text)
}

// Must is Parse for a receiver's built-in defaults: it panics on an error.
func Must(name, text string) *template.Template {
	return template.Must(Parse(name, text))
}

// errTooLong stops a template that writes more than MaxOutput.
var errTooLong = errors.New("longer than 64 KiB")

type capped struct {
	bytes.Buffer
}

func (c *capped) Write(p []byte) (int, error) {
	if c.Len()+len(p) > MaxOutput {
		return 0, errTooLong
	}
	return c.Buffer.Write(p)
}

// Execute runs t on data and returns its output with surrounding white
// space removed.
func Execute(t *template.Template, data any) (string, error) {
	var b capped
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("template %s: %w", t.Name(), err)
	}
	return strings.TrimSpace(b.String()), nil
}

// Truncate cuts s to at most n bytes at a rune boundary, ending it with
// "…" when it was cut.
func Truncate(n int, s string) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	if n < len(ell) {
		return ""
	}
	cut := n - len(ell)
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
