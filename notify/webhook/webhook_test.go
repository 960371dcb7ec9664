package webhook_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/webhook"
	"github.com/rollback-guardian/guardian/sign"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const rawSecret = "s3cr3t-hmac-key-never-logged"

var sendTime = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func sampleEvent() notify.Event {
	return notify.Event{
		ID:       "evt_42_1",
		Type:     event.IncidentDeclared,
		Time:     time.Date(2025, 3, 4, 6, 6, 0, 0, time.FixedZone("CET", 3600)),
		Incident: 42,
		Service:  "checkout",
		Severity: "SEV-1",
		State:    "awaiting_approval",
		Text:     "roll back checkout v2.4.1 → v2.4.0: 5xx 7.9% > 5%, baseline 0.4%",
		Data:     map[string]any{"version": "v2.4.1", "baseline": "v2.4.0", "value": 0.079},
	}
}

// received is one request as the test receiver saw it.
type received struct {
	header http.Header
	body   []byte
}

// receiver answers with codes in turn (the last one repeats) and keeps what
// it got.
type receiver struct {
	mu    sync.Mutex
	codes []int
	got   []received
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, received{header: req.Header.Clone(), body: body})
	code := r.codes[min(len(r.got), len(r.codes))-1]
	w.WriteHeader(code)
	_, _ = io.WriteString(w, "answer\nfor "+http.StatusText(code))
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func newNotifier(t *testing.T, url, secret string, opts ...webhook.Option) *webhook.Notifier {
	t.Helper()
	cfg := config.Webhook{URL: url}
	if secret != "" {
		cfg.SecretFile, cfg.Secret = "/etc/guardian/hmac", commoncfg.Secret(secret)
	}
	opts = append([]webhook.Option{webhook.WithNow(func() time.Time { return sendTime })}, opts...)
	n, err := webhook.New(cfg, zap.NewNop(), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

func TestFormat(t *testing.T) {
	whsecKey := []byte("0123456789abcdef0123456789abcdef")
	tests := []struct {
		name   string
		secret string
		key    []byte
	}{
		{"raw secret", rawSecret, []byte(rawSecret)},
		{"whsec_ secret", "whsec_" + base64.StdEncoding.EncodeToString(whsecKey), whsecKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rcv := &receiver{codes: []int{http.StatusNoContent}}
			srv := httptest.NewServer(rcv)
			defer srv.Close()
			n := newNotifier(t, srv.URL+"/hook", tc.secret)

			retry, err := n.Notify(context.Background(), sampleEvent())
			if err != nil || retry {
				t.Fatalf("Notify = %v, %v; want success", retry, err)
			}
			reqs := rcv.requests()
			if len(reqs) != 1 {
				t.Fatalf("receiver got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if err := sign.Verify(r.header, tc.key, r.body, sendTime.Add(time.Second), time.Minute); err != nil {
				t.Errorf("signature does not verify: %v", err)
			}
			if err := sign.Verify(r.header, []byte("another key"), r.body, sendTime, time.Minute); !errors.Is(err, sign.ErrBadSig) {
				t.Errorf("signature verifies with the wrong key: %v", err)
			}
			for h, want := range map[string]string{
				"Content-Type":       "application/json",
				"User-Agent":         "Guardian",
				sign.HeaderID:        "evt_42_1",
				sign.HeaderTimestamp: "1741064767",
			} {
				if got := r.header.Get(h); got != want {
					t.Errorf("header %s = %q, want %q", h, got, want)
				}
			}
			if !strings.HasPrefix(r.header.Get(sign.HeaderSignature), "v1,") {
				t.Errorf("webhook-signature = %q, want v1,...", r.header.Get(sign.HeaderSignature))
			}

			var body map[string]any
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatalf("body is not JSON: %v\n%s", err, r.body)
			}
			want := map[string]any{
				"id":        "evt_42_1",
				"type":      "incident.declared",
				"timestamp": "2025-03-04T05:06:00Z",
				"incident":  float64(42),
				"service":   "checkout",
				"severity":  "SEV-1",
				"state":     "awaiting_approval",
				"text":      "roll back checkout v2.4.1 → v2.4.0: 5xx 7.9% > 5%, baseline 0.4%",
				"data":      map[string]any{"version": "v2.4.1", "baseline": "v2.4.0", "value": 0.079},
			}
			if len(body) != len(want) {
				t.Errorf("body has fields %v, want exactly %d", keys(body), len(want))
			}
			for k, w := range want {
				if got, err := json.Marshal(body[k]); err != nil || string(got) != mustJSON(t, w) {
					t.Errorf("body[%q] = %s, want %s", k, got, mustJSON(t, w))
				}
			}
		})
	}
}

func TestUnsignedAndNullData(t *testing.T) {
	rcv := &receiver{codes: []int{http.StatusOK}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	n := newNotifier(t, srv.URL, "")
	e := sampleEvent()
	e.Data = nil
	if _, err := n.Notify(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	r := rcv.requests()[0]
	if sig := r.header.Get(sign.HeaderSignature); sig != "" {
		t.Errorf("unsigned receiver got webhook-signature %q", sig)
	}
	if r.header.Get(sign.HeaderID) != e.ID {
		t.Errorf("webhook-id = %q, want %q", r.header.Get(sign.HeaderID), e.ID)
	}
	if !strings.Contains(string(r.body), `"data":{}`) {
		t.Errorf("nil data should be sent as {}: %s", r.body)
	}
}

func TestStatusClassification(t *testing.T) {
	tests := []struct {
		code  int
		ok    bool
		retry bool
	}{
		{http.StatusOK, true, false},
		{http.StatusAccepted, true, false},
		{http.StatusNoContent, true, false},
		{http.StatusRequestTimeout, false, true},
		{http.StatusTooManyRequests, false, true},
		{http.StatusInternalServerError, false, true},
		{http.StatusBadGateway, false, true},
		{http.StatusServiceUnavailable, false, true},
		{http.StatusBadRequest, false, false},
		{http.StatusUnauthorized, false, false},
		{http.StatusNotFound, false, false},
		{http.StatusGone, false, false},
		{http.StatusMovedPermanently, false, false}, // redirects are not followed
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			rcv := &receiver{codes: []int{tc.code}}
			srv := httptest.NewServer(rcv)
			defer srv.Close()
			n := newNotifier(t, srv.URL, rawSecret)
			retry, err := n.Notify(context.Background(), sampleEvent())
			if (err == nil) != tc.ok || retry != tc.retry {
				t.Fatalf("status %d: Notify = retry %v, err %v; want ok=%v retry=%v", tc.code, retry, err, tc.ok, tc.retry)
			}
			if err != nil {
				var se *webhook.StatusError
				if !errors.As(err, &se) || se.Code != tc.code {
					t.Errorf("error %v is not a StatusError %d", err, tc.code)
				}
				if !strings.Contains(err.Error(), "evt_42_1") || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q should name the event and be one line", err)
				}
			}
			if got := len(rcv.requests()); got != 1 {
				t.Errorf("receiver got %d requests, want 1 (the notifier never retries itself)", got)
			}
		})
	}
}

func TestFailThenSucceed(t *testing.T) {
	rcv := &receiver{codes: []int{http.StatusInternalServerError, http.StatusOK}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	n := newNotifier(t, srv.URL, rawSecret)
	retry, err := n.Notify(context.Background(), sampleEvent())
	if err == nil || !retry {
		t.Fatalf("first Notify = %v, %v; want a retryable error", retry, err)
	}
	retry, err = n.Notify(context.Background(), sampleEvent())
	if err != nil || retry {
		t.Fatalf("second Notify = %v, %v; want success", retry, err)
	}
	reqs := rcv.requests()
	if len(reqs) != 2 || reqs[0].header.Get(sign.HeaderID) != reqs[1].header.Get(sign.HeaderID) {
		t.Errorf("the retry must carry the same webhook-id: %d requests", len(reqs))
	}
}

func TestTimeoutIsRetried(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	n := newNotifier(t, srv.URL, rawSecret, webhook.WithTimeout(50*time.Millisecond))
	start := time.Now()
	retry, err := n.Notify(context.Background(), sampleEvent())
	if !retry || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Notify = %v, %v; want retry with a deadline error", retry, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Notify took %s, want about the 50ms timeout", d)
	}
	if calls.Load() != 1 {
		t.Errorf("receiver saw %d calls, want 1", calls.Load())
	}
}

func TestNetworkErrorIsRetriedAndRedacted(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/hook?token=query-token-secret"
	srv.Close() // nothing listens any more
	n := newNotifier(t, url, rawSecret)
	retry, err := n.Notify(context.Background(), sampleEvent())
	if err == nil || !retry {
		t.Fatalf("Notify to a closed port = %v, %v; want a retryable error", retry, err)
	}
	if strings.Contains(err.Error(), "query-token-secret") {
		t.Errorf("error leaks the URL's query: %v", err)
	}
}

func TestSecretNeverLogged(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	rcv := &receiver{codes: []int{http.StatusInternalServerError, http.StatusOK}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	n, err := webhook.New(config.Webhook{URL: srv.URL, SecretFile: "/x", Secret: rawSecret}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	_, err1 := n.Notify(context.Background(), sampleEvent())
	_, err2 := n.Notify(context.Background(), sampleEvent())
	if err1 == nil || err2 != nil {
		t.Fatalf("want a failure then a success, got %v, %v", err1, err2)
	}
	if logs.Len() == 0 {
		t.Fatal("expected a debug log of the delivery")
	}
	for _, l := range logs.All() {
		enc, _ := json.Marshal(l.ContextMap())
		if strings.Contains(l.Message+string(enc), rawSecret) {
			t.Errorf("log line leaks the secret: %s %s", l.Message, enc)
		}
	}
	if strings.Contains(err1.Error(), rawSecret) {
		t.Errorf("error leaks the secret: %v", err1)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  config.Webhook
		want string
	}{
		{"relative URL", config.Webhook{URL: "/hook"}, "absolute http or https"},
		{"other scheme", config.Webhook{URL: "ftp://example.invalid/hook"}, "absolute http or https"},
		{"unparsable URL", config.Webhook{URL: "http://[::1"}, "webhook URL"},
		{"empty secret file", config.Webhook{URL: "http://127.0.0.1/h", SecretFile: "/etc/hmac"}, "secret file /etc/hmac is empty"},
		{"bad whsec", config.Webhook{URL: "http://127.0.0.1/h", SecretFile: "/etc/hmac", Secret: "whsec_%%%"}, "secret from /etc/hmac"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := webhook.New(tc.cfg, zap.NewNop())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New(%+v) err = %v, want it to contain %q", tc.cfg, err, tc.want)
			}
		})
	}
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRetryAfter: a 429 or 503's Retry-After, in seconds or as an HTTP
// date, reaches the outbox through the error; other answers carry none.
func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int
		header string
		want   time.Duration
	}{
		{"seconds", http.StatusTooManyRequests, "120", 2 * time.Minute},
		{"http date", http.StatusServiceUnavailable, sendTime.Add(90 * time.Second).UTC().Format(http.TimeFormat), 90 * time.Second},
		{"date in the past", http.StatusServiceUnavailable, sendTime.Add(-time.Minute).UTC().Format(http.TimeFormat), 0},
		{"garbage", http.StatusTooManyRequests, "soon", 0},
		{"absent", http.StatusTooManyRequests, "", 0},
		{"not retryable", http.StatusBadRequest, "120", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if tc.header != "" {
					w.Header().Set("Retry-After", tc.header)
				}
				w.WriteHeader(tc.code)
			}))
			defer srv.Close()
			_, err := newNotifier(t, srv.URL, rawSecret).Notify(context.Background(), sampleEvent())
			var ra notify.RetryAfterError
			if !errors.As(err, &ra) {
				t.Fatalf("error %v carries no RetryAfter", err)
			}
			if got := ra.RetryAfter(); got != tc.want {
				t.Errorf("RetryAfter() = %s, want %s", got, tc.want)
			}
		})
	}
}
