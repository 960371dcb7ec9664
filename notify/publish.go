package notify

import (
	"context"
	"fmt"

	"github.com/rollback-guardian/guardian/incident"
)

// Publisher hands an incident's timeline entries to the Outbox, one Event
// per receiver of the incident's service. It implements incident.Publisher.
type Publisher struct {
	Outbox *Outbox
	// Receivers names the receivers of a service's events now (its
	// configured notifiers); none means the event goes nowhere.
	Receivers func(service string) []string
	// ExternalURL, when set, returns Guardian's external URL now, from
	// which each event's links are built.
	ExternalURL func() string
}

var _ incident.Publisher = Publisher{}

// Publish queues timeline entry i of rec for every receiver, persisted
// before it returns.
func (p Publisher) Publish(ctx context.Context, rec incident.Record, i int) error {
	ev := EventOf(rec, i)
	if p.ExternalURL != nil {
		ev.Links = LinksFor(p.ExternalURL(), rec.ID)
	}
	for _, name := range p.Receivers(rec.Service) {
		if err := p.Outbox.Enqueue(ctx, name, ev); err != nil {
			return fmt.Errorf("queueing %s for %s: %w", ev.Type, name, err)
		}
	}
	return nil
}

// EventOf is the notification of timeline entry i of rec: its id and
// sequence number are stable (the same after a restart), the text is the
// entry's message and the data carries the incident's versions, trigger and
// evidence with the entry's own details.
func EventOf(rec incident.Record, i int) Event {
	e := rec.Timeline[i]
	data := map[string]any{
		"version": rec.Version, "baseline": rec.Baseline, "trigger": rec.Trigger,
		"actor": e.Actor, "evidence": rec.Evidence.Summary,
	}
	for k, v := range e.Data {
		data[k] = v
	}
	if e.Count > 1 {
		data["count"] = e.Count
	}
	seq := rec.Sequence(i)
	var team []Responder
	for _, r := range rec.Team {
		team = append(team, Responder(r))
	}
	ev := Event{Responders: team,
		ID: incident.EventID(rec.ID, seq), Type: e.Type, Sequence: seq, Time: e.At, Incident: rec.ID,
		Service: rec.Service, Severity: rec.Severity, State: rec.State.String(), Text: e.Message, Data: data,
	}
	if rec.Shadowed() {
		// Every receiver shows the text: each says Guardian did not act.
		ev.Mode, ev.Text = incident.ModeShadow.String(), ShadowPrefix+e.Message
	}
	return ev
}

// ShadowPrefix begins the text of every event of an incident in shadow mode.
const ShadowPrefix = "[shadow] "
