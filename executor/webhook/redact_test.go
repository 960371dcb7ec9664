package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/executor/webhook"
)

// TestURLSecretsNeverShown calls a receiver whose URL carries a token in
// its path, query and user info: no log line or error of a failed attempt,
// a retry, a success or an unreachable receiver shows them.
func TestURLSecretsNeverShown(t *testing.T) {
	_, srv := serve(t, status(http.StatusBadGateway, "busy"), status(http.StatusOK, "rolled back"))
	u := strings.Replace(srv.URL, "://", "://USERSECRET:PASSWORDSECRET@", 1) + "/hooks/PATHSECRET/rollback?token=QUERYSECRET"
	core, logs := observer.New(zap.DebugLevel)
	cfg := webhook.Config{URL: u, Idempotent: true, MaxAttempts: 3, Timeout: model.Duration(5 * time.Second)}
	e, err := webhook.New(cfg, zap.New(core), webhook.WithBackoff(func(int) time.Duration { return 0 }))
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	if _, err := e.Rollback(context.Background(), target); err != nil {
		t.Fatalf("Rollback after a retry: %v", err)
	}
	srv.Close()
	_, err = e.Rollback(context.Background(), target)
	if err == nil {
		t.Fatal("Rollback to a closed server succeeded")
	}
	errs = append(errs, err)
	if len(logs.FilterMessageSnippet("retrying").All()) == 0 {
		t.Fatalf("no log line of the retry: %v", logs.All())
	}
	texts := []string{}
	for _, l := range logs.All() {
		enc, _ := json.Marshal(l.ContextMap())
		texts = append(texts, l.Message+" "+string(enc))
	}
	for _, err := range errs {
		texts = append(texts, err.Error())
	}
	for _, text := range texts {
		for _, s := range []string{"PATHSECRET", "QUERYSECRET", "PASSWORDSECRET", "USERSECRET"} {
			if strings.Contains(text, s) {
				t.Errorf("%q leaks %s", text, s)
			}
		}
	}
}
