package outage

import (
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
)

// Kinds of Source.
const (
	// KindPrometheus is a named source: a Prometheus-compatible server.
	KindPrometheus = "prometheus"
	// KindScrape is the embedded source: Guardian scrapes the service's
	// metrics endpoint itself.
	KindScrape = "scrape"
)

// States of a source, the State of its events.
const (
	StateUnreachable = "unreachable"
	StateReachable   = "reachable"
)

// Source is one metric source of the configuration, as its events name it.
type Source struct {
	// ID names the source: a named source's name, or ScrapeID of the
	// service whose metrics endpoint the embedded source scrapes. It is the
	// source label of the metrics and part of the event IDs.
	ID string
	// Kind is KindPrometheus or KindScrape.
	Kind string
	// URL is the source's URL without credentials, query or fragment.
	URL string
	// Services are the services that use the source, in configuration order.
	Services []string
	// Receivers are the notifiers of those services, each once, sorted.
	Receivers []string
}

// ScrapeID is the ID of the embedded source of service: the scrape of its
// metrics endpoint. No named source has it (a name cannot contain ':').
func ScrapeID(service string) string { return KindScrape + ":" + service }

// EventID is the ID of the n-th event (from 1) of source id, such as
// src_prom_1: the same after a restart, as the count is saved.
func EventID(id string, n int) string { return fmt.Sprintf("src_%s_%d", id, n) }

// maxErrorText is how much of the latest error the text of an event quotes
// (the data carries all of it).
const maxErrorText = 200

// UnreachableEvent is the n-th event of s, telling that it became
// unreachable (tr, an Unreachable transition); lastErr is the latest
// failure's message.
func UnreachableEvent(s Source, n int, tr Transition, lastErr string) notify.Event {
	text := fmt.Sprintf("%s is unreachable: its %s have failed since %s (%s; %s: %s). "+
		"Guardian is blind for %s meanwhile: no trigger can judge; no rollback happens for lack of data.",
		s.subject(), s.attempts(), stamp(tr.Since), round(tr.At.Sub(tr.Since)), tr.Reason, clip(lastErr, maxErrorText),
		list(s.Services))
	data := s.data(tr)
	data["reason"] = tr.Reason
	data["error"] = lastErr
	return s.event(n, event.SourceUnreachable, StateUnreachable, tr.At, text, data)
}

// RecoveredEvent is the n-th event of s, telling that it answers again
// (tr, a Recovered transition).
func RecoveredEvent(s Source, n int, tr Transition) notify.Event {
	d := tr.At.Sub(tr.Since)
	text := fmt.Sprintf("%s answers again: it was unreachable for %s, since %s. Guardian judges %s again.",
		s.subject(), round(d), stamp(tr.Since), list(s.Services))
	data := s.data(tr)
	data["duration_seconds"] = d.Seconds()
	return s.event(n, event.SourceRecovered, StateReachable, tr.At, text, data)
}

func (s Source) event(n int, typ event.Type, state string, at time.Time, text string, data map[string]any) notify.Event {
	e := notify.Event{ID: EventID(s.ID, n), Type: typ, Sequence: n, Time: at, State: state, Text: text, Data: data}
	if s.Kind == KindScrape && len(s.Services) == 1 {
		e.Service = s.Services[0]
	}
	return e
}

func (s Source) data(tr Transition) map[string]any {
	return map[string]any{
		"source": s.ID, "kind": s.Kind, "url": s.URL, "services": s.Services, "since": tr.Since.UTC(),
	}
}

// subject names the source in a sentence.
func (s Source) subject() string {
	if s.Kind == KindScrape {
		return fmt.Sprintf("the metrics endpoint of %s (%s, scraped by Guardian)", strings.Join(s.Services, ", "), s.URL)
	}
	return fmt.Sprintf("metric source %q (%s)", s.ID, s.URL)
}

// attempts names what failed.
func (s Source) attempts() string {
	if s.Kind == KindScrape {
		return "scrapes"
	}
	return "queries"
}

// Redact returns u without credentials, query or fragment, for events and
// logs.
func Redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	p.User, p.RawQuery, p.ForceQuery, p.Fragment, p.RawFragment = nil, "", false, "", ""
	return p.String()
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// round rounds d to the second (to the millisecond below one second).
func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

// list joins names as "a", "a and b", "a, b and c"; past five it says how
// many more there are.
func list(names []string) string {
	const most = 5
	switch n := len(names); {
	case n == 0:
		return "no service"
	case n == 1:
		return names[0]
	case n > most:
		return fmt.Sprintf("%s and %d more services", strings.Join(names[:most], ", "), n-most)
	default:
		return strings.Join(names[:n-1], ", ") + " and " + names[n-1]
	}
}

// clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
