package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/notify/webhook"
)

// urlSecrets are the parts of a Slack-style webhook URL that are the
// credential: its path, query and user info.
var urlSecrets = []string{"T0SECRET", "B0SECRET", "XXXXPATHSECRET", "QUERYSECRET", "PASSWORDSECRET", "USERSECRET"}

// secretURL is srv's address with a secret path, query and user info.
func secretURL(srv string) string {
	return strings.Replace(srv, "://", "://USERSECRET:PASSWORDSECRET@", 1) +
		"/services/T0SECRET/B0SECRET/XXXXPATHSECRET?token=QUERYSECRET"
}

// noSecrets fails t for every log line or error that holds a part of the
// URL's credentials.
func noSecrets(t *testing.T, logs *observer.ObservedLogs, errs ...error) {
	t.Helper()
	var texts []string
	for _, l := range logs.All() {
		enc, _ := json.Marshal(l.ContextMap())
		texts = append(texts, l.Message+" "+string(enc))
	}
	for _, err := range errs {
		if err != nil {
			texts = append(texts, err.Error())
		}
	}
	for _, text := range texts {
		for _, s := range urlSecrets {
			if strings.Contains(text, s) {
				t.Errorf("%q leaks %s", text, s)
			}
		}
	}
}

// TestURLSecretsNeverShown posts to a webhook whose path, query and user
// info are secrets: not a log line (the logger's own fields included) nor
// an error, of an answer, a failure or a transport error, shows them; the
// host does show.
func TestURLSecretsNeverShown(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	rcv := &receiver{codes: []int{http.StatusOK, http.StatusInternalServerError, http.StatusBadRequest}}
	srv := httptest.NewServer(rcv)
	u := secretURL(srv.URL)
	n, err := webhook.New(config.Webhook{URL: u}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	for range 3 {
		_, err := n.Notify(context.Background(), sampleEvent())
		errs = append(errs, err)
	}
	srv.Close()
	_, err = n.Notify(context.Background(), sampleEvent())
	if err == nil {
		t.Fatal("Notify to a closed server succeeded")
	}
	errs = append(errs, err)
	if errs[0] != nil || errs[1] == nil || errs[2] == nil {
		t.Fatalf("want a success and two failures, got %v", errs)
	}
	if logs.Len() == 0 {
		t.Fatal("no log line to check")
	}
	noSecrets(t, logs, errs...)
	host := strings.TrimPrefix(srv.URL, "http://")
	if !strings.Contains(errs[3].Error(), host) {
		t.Errorf("error %q does not name the host %s", errs[3], host)
	}
	// Refusals at New redact too.
	_, err = webhook.New(config.Webhook{URL: strings.Replace(u, "http:", "ftp:", 1)}, zap.New(core))
	noSecrets(t, logs, err)
}

// TestUnparsableURLNotQuoted: url.Parse's error quotes the whole URL.
func TestUnparsableURLNotQuoted(t *testing.T) {
	_, err := webhook.New(config.Webhook{URL: "https://hooks.example.com/services/XXXXPATHSECRET/%zz"}, zap.NewNop())
	if err == nil {
		t.Fatal("New accepted an unparsable URL")
	}
	_, logs := observer.New(zap.DebugLevel)
	noSecrets(t, logs, err)
}
