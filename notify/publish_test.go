package notify_test

import (
	"context"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/store"
)

func TestEventOf(t *testing.T) {
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	rec := incident.Record{ID: 4, Service: "checkout", Severity: "SEV-1", State: incident.RollingBack, Version: "v2", Baseline: "v1",
		Trigger: "error-rate", Evidence: incident.Evidence{Summary: "0.2 > 0.05"},
		Timeline: []incident.Entry{
			{At: at, Type: event.IncidentDeclared, Actor: "guardian", Message: "declared"},
			{At: at, Type: event.RecoveryProgress, Actor: "guardian", Message: "progress"},
			{At: at, Type: event.ApprovalGranted, Actor: "token:alice", Message: "go", Data: map[string]string{"reason": "confirmed"}, Count: 2},
		}}
	e := notify.EventOf(rec, 2)
	if e.ID != "evt_4_2" || e.Sequence != 2 || e.Type != event.ApprovalGranted || e.Text != "go" || e.State != "rolling_back" ||
		e.Data["actor"] != "token:alice" || e.Data["reason"] != "confirmed" || e.Data["baseline"] != "v1" || e.Data["count"] != 2 {
		t.Fatalf("event %+v", e)
	}
	if e.Mode != "" {
		t.Errorf("enforced incident's event has mode %q", e.Mode)
	}
	rec.Mode, rec.State = incident.ModeShadow, incident.Shadow
	rec.Timeline = append(rec.Timeline, incident.Entry{At: at, Type: event.ShadowDecision, Actor: "guardian",
		Message: "Guardian would have rolled back checkout v2 → v1", Data: map[string]string{"decision": "rollback"}})
	e = notify.EventOf(rec, 3)
	if e.Mode != "shadow" || e.Text != "[shadow] Guardian would have rolled back checkout v2 → v1" || e.State != "shadow" ||
		e.Data["decision"] != "rollback" || e.Sequence != 3 {
		t.Fatalf("shadow event %+v", e)
	}
}

type nop struct{}

func (nop) Notify(context.Context, notify.Event) (bool, error) { return false, nil }

func TestPublisherQueuesForEveryReceiver(t *testing.T) {
	st := store.NewMemory()
	ob, err := notify.NewOutbox(st, map[string]notify.Notifier{"oncall": nop{}, "chat": nop{}, "other": nop{}}, notify.OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := notify.Publisher{Outbox: ob, Receivers: func(service string) []string {
		if service == "checkout" {
			return []string{"oncall", "chat"}
		}
		return nil
	}}
	rec := incident.Record{ID: 1, Service: "checkout", Timeline: []incident.Entry{{Type: event.IncidentDeclared, Message: "declared"}}}
	if err := p.Publish(context.Background(), rec, 0); err != nil {
		t.Fatal(err)
	}
	kvs, err := st.List(context.Background(), notify.OutboxBucket)
	if err != nil || len(kvs) != 2 {
		t.Fatalf("%d queued, %v", len(kvs), err)
	}
	p.Receivers = func(string) []string { return []string{"gone"} }
	if err := p.Publish(context.Background(), rec, 0); err == nil {
		t.Fatal("queueing for an unknown receiver succeeded")
	}
}
