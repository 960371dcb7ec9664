package alertmanager_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/alertmanager"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// goldenState is the incident's state after each event type, as an
// incident usually goes.
var goldenState = map[event.Type]string{
	event.IncidentDeclared: "detected", event.TriggerFired: "awaiting_approval", event.ApprovalRequested: "awaiting_approval",
	event.ApprovalGranted: "rolling_back", event.ApprovalDenied: "held", event.RollbackStarted: "rolling_back",
	event.RollbackResumed: "rolling_back", event.RollbackSucceeded: "verifying", event.RollbackFailed: "failed",
	event.RollbackUnknown: "verifying", event.RecoveryProgress: "verifying", event.RecoveryConfirmed: "resolved",
	event.RecoveryFailed: "db_awaiting_approval", event.IncidentEscalated: "escalated", event.IncidentResolved: "resolved",
	event.IncidentClosed: "closed", event.ReportWritten: "resolved", event.PostmortemScheduled: "resolved",
	event.SourceUnreachable: "unreachable", event.SourceRecovered: "reachable", event.ShadowDecision: "shadow",
}

// TestGolden renders the alert this receiver posts for every event type
// of the vocabulary (go test -run TestGolden -update rewrites the files).
// Events bound to no incident are not posted.
func TestGolden(t *testing.T) {
	for i, typ := range event.All() {
		if !typ.Published() && typ != event.RecoveryProgress {
			continue // never reaches a receiver
		}
		t.Run(string(typ), func(t *testing.T) {
			state, ok := goldenState[typ]
			if !ok {
				t.Fatalf("no state for %s: add it to goldenState", typ)
			}
			e := ev(i+1, typ, state, declaredAt.Add(time.Duration(i)*time.Minute))
			e.Text = "the " + string(typ) + " message"
			if typ == event.SourceUnreachable || typ == event.SourceRecovered {
				e = notify.Event{ID: "src_prom_1", Type: typ, Sequence: 1, Time: e.Time, State: state,
					Text: "metric source \"prom\" is " + state, Data: map[string]any{"source": "prom"}}
			}
			var got []byte
			if e.Incident == 0 {
				got = []byte("not posted: bound to no incident\n")
			} else {
				a, err := alertmanager.Render(e, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				a.StartsAt = declaredAt
				if goldenState[typ] == "resolved" || goldenState[typ] == "closed" {
					a.EndsAt = e.Time
				} else {
					a.EndsAt = sendTime.Add(4 * resend)
				}
				if got, err = json.MarshalIndent([]alertmanager.Alert{a}, "", "  "); err != nil {
					t.Fatal(err)
				}
				got = append(got, '\n')
			}
			path := filepath.Join("testdata", string(typ)+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}
