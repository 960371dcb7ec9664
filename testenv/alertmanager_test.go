package testenv

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestAlertmanager: an alert posted to the real Alertmanager reaches the
// webhook receiver after group_wait, firing, then resolved; a restart on
// the same storage forgets the alerts (they are not persisted).
func TestAlertmanager(t *testing.T) {
	rcv := NewAlertReceiver(t)
	am := StartAlertmanager(t, AlertmanagerOptions{WebhookURL: rcv.URL})
	post := func(endsAt time.Time) {
		t.Helper()
		body := fmt.Sprintf(`[{"labels":{"alertname":"T","incident":"1"},"annotations":{"summary":"s"},"startsAt":%q,"endsAt":%q}]`,
			time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano), endsAt.UTC().Format(time.RFC3339Nano))
		resp, err := http.Post(am.URL+"/api/v2/alerts", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /api/v2/alerts: %d", resp.StatusCode)
		}
	}
	post(time.Now().Add(time.Hour))
	EventuallyTrue(t, 30*time.Second, func() bool {
		_, _, ok := rcv.Find("firing", map[string]string{"alertname": "T", "incident": "1"})
		return ok
	}, "the firing notification")
	alerts, err := am.Alerts()
	if err != nil || len(alerts) != 1 || alerts[0].State != "active" || alerts[0].Annotations["summary"] != "s" {
		t.Fatalf("alerts %+v, %v", alerts, err)
	}
	post(time.Now())
	EventuallyTrue(t, 30*time.Second, func() bool {
		_, _, ok := rcv.Find("resolved", map[string]string{"alertname": "T"})
		return ok
	}, "the resolved notification")
	am.Restart()
	if alerts, err := am.Alerts(); err != nil || len(alerts) != 0 {
		t.Fatalf("after a restart: %+v, %v", alerts, err)
	}
	if bad := rcv.Bad(); len(bad) != 0 {
		t.Fatal(bad)
	}
}
