// Package notify tells people about incidents: the Event every receiver gets,
// the one-method Notifier seam that each receiver package (notify/webhook,
// ...) implements, and the Outbox, the persisted retry stage that owns
// retries, backoff and per-receiver ordering, as Alertmanager's retry stage
// does for its integrations.
package notify

import (
	"context"
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
	// Text is the human message: what happened, why (value vs threshold vs
	// baseline) and what is proposed.
	Text string `json:"text"`
	// Data holds details: version, baseline, evidence, approver, report
	// path... Values must encode to JSON.
	Data map[string]any `json:"data"`
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
