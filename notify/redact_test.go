package notify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/webhook"
)

// TestOutboxLogsNoURLSecrets delivers through the outbox to a Slack-style
// webhook that fails, then rejects: the outbox's log lines (retries, the
// given-up notification) name the receiver and the host, never the URL's
// path, query or user info.
func TestOutboxLogsNoURLSecrets(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	u := strings.Replace(srv.URL, "://", "://USERSECRET:PASSWORDSECRET@", 1) + "/services/T0SECRET/B0SECRET/XXXXPATHSECRET?token=QUERYSECRET"
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	wh, err := webhook.New(config.Webhook{URL: u}, log.Named("webhook"))
	if err != nil {
		t.Fatal(err)
	}
	st := openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	defer st.Close()
	o, reg := newOutbox(t, st, map[string]notify.Notifier{"slack": wh}, notify.OutboxOptions{Logger: log.Named("outbox")})
	r := start(t, o)
	if err := o.Enqueue(context.Background(), "slack", events(1, 1)[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the notification given up", func() bool { return count(t, reg, "slack", notify.ResultFailed) == 1 })
	r.stop()
	if len(logs.FilterMessageSnippet("Giving up").All()) == 0 {
		t.Fatalf("no log line of the rejected notification: %v", logs.All())
	}
	for _, l := range logs.All() {
		enc, _ := json.Marshal(l.ContextMap())
		text := l.Message + " " + string(enc)
		for _, s := range []string{"T0SECRET", "B0SECRET", "XXXXPATHSECRET", "QUERYSECRET", "PASSWORDSECRET", "USERSECRET"} {
			if strings.Contains(text, s) {
				t.Errorf("%q leaks %s", text, s)
			}
		}
	}
}
