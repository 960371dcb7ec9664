// Package notify tells people about incidents: the Event every receiver gets,
// the one-method Notifier seam that each receiver package (notify/webhook,
// ...) implements, and the Outbox, the persisted retry stage that owns
// retries, backoff and per-receiver ordering, as Alertmanager's retry stage
// does for its integrations.
package notify

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rollback-guardian/guardian/event"
)

// Event is one notification about an incident, or about a metric source
// (source.unreachable, source.recovered: Incident 0). Its JSON form is the wire
// format receivers get (notify/webhook posts it as is) and the form the
// Outbox persists; the field names are stable.
type Event struct {
	// ID is unique per event, e.g. "evt_<incident>_<seq>" (a metric
	// source's: "src_<source>_<seq>"), and is the webhook-id: delivery is
	// at least once, so receivers dedupe on it.
	ID string `json:"id"`
	// Type is what happened, from Guardian's one vocabulary (package event).
	Type event.Type `json:"type"`
	// Sequence numbers the incident's (or the source's) events from 1,
	// without gaps: a receiver that sees 5 after 3 knows it missed one.
	Sequence int `json:"sequence,omitempty"`
	// Time is when it happened (not when it was sent).
	Time     time.Time `json:"timestamp"`
	Incident int64     `json:"incident"`
	Service  string    `json:"service"`
	Severity string    `json:"severity"`
	// State is the incident's state after the event (a source's:
	// unreachable or reachable).
	State string `json:"state"`
	// Mode is "shadow" for an incident of a service in shadow mode:
	// Guardian only records what it would have done, and Text begins with
	// "[shadow] ". Empty for an enforced incident.
	Mode string `json:"mode,omitempty"`
	// Text is the human message: what happened, why (value vs threshold vs
	// baseline) and what is proposed.
	Text string `json:"text"`
	// Data holds details: version, baseline, evidence, approver, report
	// path... Values must encode to JSON.
	Data map[string]any `json:"data"`
	// Links lead back to Guardian: the incident, its report and the status
	// page, under the external URL.
	Links Links `json:"links,omitzero"`
	// Responders are the service's people by role, for receivers to
	// mention or page.
	Responders []Responder `json:"responders,omitempty"`
}

// Links are absolute URLs into Guardian's pages for people: the incident's
// page in the console, its HTML report, and the console's overview.
type Links struct {
	Incident string `json:"incident,omitempty"`
	Report   string `json:"report,omitempty"`
	Status   string `json:"status,omitempty"`
}

// LinksFor builds the links of incident id under base, Guardian's
// external URL (http://127.0.0.1:9095, https://example.com/guardian/);
// incident 0 (a metric source's event) links only to the status.
func LinksFor(base string, id int64) Links {
	if base == "" {
		return Links{}
	}
	base = strings.TrimRight(base, "/")
	l := Links{Status: base + "/"}
	if id > 0 {
		l.Incident = fmt.Sprintf("%s/incidents/%d", base, id)
		l.Report = fmt.Sprintf("%s/api/v1/incidents/%d/report?format=html", base, id)
	}
	return l
}

// Responder is a person a service's incidents call on.
type Responder struct {
	// Role is incident_commander, dba, on_call or the configuration's own word.
	Role  string `json:"role"`
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	// Slack is a user (U...) or user group (S...) ID.
	Slack string `json:"slack,omitempty"`
}

// Notifier delivers an event to one receiver. Like Alertmanager's notifiers
// it does not retry itself: it reports whether a failure is worth retrying
// (network errors, timeouts, 5xx, 429) or permanent (a rejected request),
// and the Outbox owns the retries.
type Notifier interface {
	Notify(ctx context.Context, e Event) (retry bool, err error)
}

// RetryAfterError is implemented by a retryable failure whose receiver
// said when to come back (an HTTP Retry-After header on a 429 or 503).
// The Outbox waits at least that long, up to its MaxBackoff, before the
// next attempt.
type RetryAfterError interface {
	error
	RetryAfter() time.Duration
}

// OpenFunc returns the events of every open incident a receiver is told
// of, in timeline order: at least each incident's first event and its
// latest, with their links and responders.
type OpenFunc func(ctx context.Context) ([]Event, error)

// Runner is implemented by a receiver with work of its own between events,
// such as re-posting open incidents (notify/alertmanager). The app runs it
// on the replica that acts, from start until the receiver is replaced by a
// reload or Guardian stops; open gives the open incidents from the incident
// store, so that the work survives a restart.
type Runner interface {
	Run(ctx context.Context, open OpenFunc)
}
