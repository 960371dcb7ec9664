package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/webhook"
	"github.com/rollback-guardian/guardian/sign"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var target = executor.Target{
	Incident:       12,
	Service:        "checkout",
	Version:        "v2.4.1",
	Baseline:       "v2.4.0",
	Step:           executor.StepApplication,
	IdempotencyKey: "incident-12/rollback.application",
	Reason:         "5xx 7.9% > 5%, baseline 0.4%",
}

// now is the fixed clock of the tests.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// call is one request the receiver saw.
type call struct {
	header http.Header
	body   []byte
}

// receiver stands for the user's deploy system. It answers the n-th call
// (from 0) with answers[n], or the last answer after that.
type receiver struct {
	mu      sync.Mutex
	calls   []call
	answers []func(w http.ResponseWriter, r *http.Request)
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	n := len(rc.calls)
	rc.calls = append(rc.calls, call{header: r.Header.Clone(), body: body})
	rc.mu.Unlock()
	rc.answers[min(n, len(rc.answers)-1)](w, r)
}

func (rc *receiver) seen() []call {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]call(nil), rc.calls...)
}

func status(code int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// hang answers only when the client gives up.
func hang(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

func serve(t *testing.T, answers ...func(http.ResponseWriter, *http.Request)) (*receiver, *httptest.Server) {
	t.Helper()
	rc := &receiver{answers: answers}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv
}

// backoffs records the waits asked for, and waits not at all.
type backoffs struct {
	mu    sync.Mutex
	asked []int
}

func (b *backoffs) wait(attempt int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asked = append(b.asked, attempt)
	return 0
}

func newExecutor(t *testing.T, cfg webhook.Config, b *backoffs) *webhook.Executor {
	t.Helper()
	e, err := webhook.New(cfg, zap.NewNop(), webhook.WithClock(func() time.Time { return now }), webhook.WithBackoff(b.wait))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return e
}

func TestRollbackSignedRequest(t *testing.T) {
	tests := []struct {
		name   string
		secret string
	}{
		{name: "raw secret", secret: "s3cr3t"},
		{name: "whsec secret", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, srv := serve(t, status(http.StatusAccepted, "rollback of checkout to v2.4.0 started"))
			e := newExecutor(t, webhook.Config{URL: srv.URL + "/hooks/rollback", Secret: commoncfg.Secret(tt.secret)}, &backoffs{})
			res, err := e.Rollback(context.Background(), target)
			if err != nil {
				t.Fatalf("Rollback() error = %v", err)
			}
			if res.Output != "rollback of checkout to v2.4.0 started" {
				t.Errorf("Output = %q, want the answer's body", res.Output)
			}
			if res.Details["status_code"] != "202" || res.Details["attempts"] != "1" {
				t.Errorf("Details = %v, want status_code 202 and attempts 1", res.Details)
			}
			calls := rc.seen()
			if len(calls) != 1 {
				t.Fatalf("receiver got %d calls, want 1", len(calls))
			}
			c := calls[0]
			key, err := sign.Key(tt.secret)
			if err != nil {
				t.Fatal(err)
			}
			if err := sign.Verify(c.header, key, c.body, now, 5*time.Minute); err != nil {
				t.Errorf("sign.Verify() = %v", err)
			}
			if err := sign.Verify(c.header, []byte("another key"), c.body, now, 5*time.Minute); !errors.Is(err, sign.ErrBadSig) {
				t.Errorf("sign.Verify() with another key = %v, want ErrBadSig", err)
			}
			for h, want := range map[string]string{
				sign.HeaderID:        target.IdempotencyKey,
				"Idempotency-Key":    target.IdempotencyKey,
				"Content-Type":       "application/json",
				sign.HeaderTimestamp: "1772366400",
			} {
				if got := c.header.Get(h); got != want {
					t.Errorf("header %s = %q, want %q", h, got, want)
				}
			}
			var p map[string]any
			if err := json.Unmarshal(c.body, &p); err != nil {
				t.Fatalf("body %q: %v", c.body, err)
			}
			want := map[string]any{
				"incident":        float64(12),
				"service":         "checkout",
				"version":         "v2.4.1",
				"baseline":        "v2.4.0",
				"step":            "application",
				"idempotency_key": "incident-12/rollback.application",
				"reason":          "5xx 7.9% > 5%, baseline 0.4%",
			}
			if len(p) != len(want) {
				t.Errorf("body has fields %v, want %v", p, want)
			}
			for k, v := range want {
				if p[k] != v {
					t.Errorf("body %s = %v, want %v", k, p[k], v)
				}
			}
		})
	}
}

func TestRollbackUnsigned(t *testing.T) {
	rc, srv := serve(t, status(http.StatusOK, ""))
	e := newExecutor(t, webhook.Config{URL: srv.URL}, &backoffs{})
	if _, err := e.Rollback(context.Background(), target); err != nil {
		t.Fatalf("Rollback() error = %v", err)
	}
	h := rc.seen()[0].header
	if got := h.Get(sign.HeaderSignature); got != "" {
		t.Errorf("header %s = %q without a secret, want none", sign.HeaderSignature, got)
	}
	if got := h.Get(sign.HeaderID); got != target.IdempotencyKey {
		t.Errorf("header %s = %q, want %q", sign.HeaderID, got, target.IdempotencyKey)
	}
}

func TestRollbackRetries(t *testing.T) {
	fail500 := status(http.StatusInternalServerError, "database is locked")
	ok := status(http.StatusOK, "rolled back")
	tests := []struct {
		name        string
		idempotent  bool
		maxAttempts int
		answers     []func(http.ResponseWriter, *http.Request)
		wantCalls   int
		wantIs      error // nil: success
		wantMsg     []string
	}{
		{
			name:       "idempotent 500 then 200",
			idempotent: true,
			answers:    []func(http.ResponseWriter, *http.Request){fail500, ok},
			wantCalls:  2,
		},
		{
			name:       "idempotent 429 then 200",
			idempotent: true,
			answers:    []func(http.ResponseWriter, *http.Request){status(http.StatusTooManyRequests, "slow down"), ok},
			wantCalls:  2,
		},
		{
			name:        "idempotent 500 until attempts run out",
			idempotent:  true,
			maxAttempts: 4,
			answers:     []func(http.ResponseWriter, *http.Request){fail500},
			wantCalls:   4,
			wantIs:      executor.ErrFailed,
			wantMsg:     []string{"500 Internal Server Error", "database is locked", "attempt 4 of 4"},
		},
		{
			name:      "not idempotent 500 is called once",
			answers:   []func(http.ResponseWriter, *http.Request){fail500, ok},
			wantCalls: 1,
			wantIs:    executor.ErrFailed,
			wantMsg:   []string{"500 Internal Server Error", "database is locked"},
		},
		{
			name:       "400 is not retried",
			idempotent: true,
			answers:    []func(http.ResponseWriter, *http.Request){status(http.StatusBadRequest, `{"error":"unknown service"}`), ok},
			wantCalls:  1,
			wantIs:     executor.ErrFailed,
			wantMsg:    []string{"400 Bad Request", "unknown service"},
		},
		{
			name:       "redirect is not followed",
			idempotent: true,
			answers: []func(http.ResponseWriter, *http.Request){func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
			}, ok},
			wantCalls: 1,
			wantIs:    executor.ErrFailed,
			wantMsg:   []string{"302 Found"},
		},
		{
			name:       "idempotent timeout then 200",
			idempotent: true,
			answers:    []func(http.ResponseWriter, *http.Request){hang, ok},
			wantCalls:  2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, srv := serve(t, tt.answers...)
			b := &backoffs{}
			e := newExecutor(t, webhook.Config{
				URL:         srv.URL,
				Secret:      "s3cr3t",
				Idempotent:  tt.idempotent,
				MaxAttempts: tt.maxAttempts,
				Timeout:     model.Duration(200 * time.Millisecond),
			}, b)
			res, err := e.Rollback(context.Background(), target)
			calls := rc.seen()
			if len(calls) != tt.wantCalls {
				t.Errorf("receiver got %d calls, want %d", len(calls), tt.wantCalls)
			}
			if len(b.asked) != len(calls)-1 {
				t.Errorf("backoff asked %v times for %d calls", b.asked, len(calls))
			}
			for i, c := range calls {
				if err := sign.Verify(c.header, []byte("s3cr3t"), c.body, now, time.Minute); err != nil {
					t.Errorf("call %d: sign.Verify() = %v", i, err)
				}
				if c.header.Get("Idempotency-Key") != target.IdempotencyKey || c.header.Get(sign.HeaderID) != target.IdempotencyKey {
					t.Errorf("call %d: idempotency headers %q, %q, want %q", i, c.header.Get("Idempotency-Key"), c.header.Get(sign.HeaderID), target.IdempotencyKey)
				}
				if string(c.body) != string(calls[0].body) {
					t.Errorf("call %d: body %s differs from the first %s", i, c.body, calls[0].body)
				}
			}
			if tt.wantIs == nil {
				if err != nil {
					t.Fatalf("Rollback() error = %v", err)
				}
				if res.Output != "rolled back" {
					t.Errorf("Output = %q, want %q", res.Output, "rolled back")
				}
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Rollback() error = %v, want errors.Is %v", err, tt.wantIs)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("Rollback() error = %q, want it to contain %q", err, m)
				}
			}
		})
	}
}

func TestRollbackTimeout(t *testing.T) {
	tests := []struct {
		name       string
		idempotent bool
		wantCalls  int
	}{
		{name: "not idempotent", wantCalls: 1},
		{name: "idempotent", idempotent: true, wantCalls: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, srv := serve(t, hang)
			e := newExecutor(t, webhook.Config{URL: srv.URL, Idempotent: tt.idempotent, Timeout: model.Duration(100 * time.Millisecond)}, &backoffs{})
			start := time.Now()
			_, err := e.Rollback(context.Background(), target)
			if !errors.Is(err, executor.ErrTimeout) {
				t.Fatalf("Rollback() error = %v, want ErrTimeout", err)
			}
			if errors.Is(err, executor.ErrFailed) {
				t.Errorf("Rollback() error = %v, is also ErrFailed", err)
			}
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("Rollback() took %s, want about %d×100ms", elapsed, tt.wantCalls)
			}
			if got := len(rc.seen()); got != tt.wantCalls {
				t.Errorf("receiver got %d calls, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestRollbackUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	b := &backoffs{}
	e := newExecutor(t, webhook.Config{URL: url, Idempotent: true}, b)
	_, err := e.Rollback(context.Background(), target)
	if !errors.Is(err, executor.ErrFailed) {
		t.Fatalf("Rollback() error = %v, want ErrFailed", err)
	}
	if !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "attempt 3 of 3") {
		t.Errorf("Rollback() error = %q, want connection refused after 3 attempts", err)
	}
	if len(b.asked) != 2 || b.asked[0] != 1 || b.asked[1] != 2 {
		t.Errorf("backoff asked for attempts %v, want [1 2]", b.asked)
	}
}

func TestRollbackCanceledDuringBackoff(t *testing.T) {
	rc, srv := serve(t, status(http.StatusServiceUnavailable, "down"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := webhook.New(webhook.Config{URL: srv.URL, Idempotent: true}, zap.NewNop(),
		webhook.WithBackoff(func(int) time.Duration { cancel(); return time.Hour }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Rollback(ctx, target)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Rollback() error = %v, want context.Canceled", err)
	}
	if got := len(rc.seen()); got != 1 {
		t.Errorf("receiver got %d calls, want 1", got)
	}
}

func TestRollbackLargeAnswerIsTruncated(t *testing.T) {
	big := strings.Repeat("x", 3*executor.MaxOutput)
	_, srv := serve(t, status(http.StatusOK, big))
	e := newExecutor(t, webhook.Config{URL: srv.URL}, &backoffs{})
	res, err := e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("Rollback() error = %v", err)
	}
	if len(res.Output) > executor.MaxOutput+100 || !strings.HasPrefix(res.Output, "xxx") || !strings.HasSuffix(res.Output, "[guardian: response truncated]") {
		t.Errorf("Output has %d bytes, ends %q; want about %d and a note", len(res.Output), res.Output[max(0, len(res.Output)-40):], executor.MaxOutput)
	}
	if res.Details["output_truncated"] != "true" {
		t.Errorf("Details = %v, want output_truncated", res.Details)
	}
}

func TestRollbackErrorSnippetIsBounded(t *testing.T) {
	_, srv := serve(t, status(http.StatusBadGateway, strings.Repeat("<html>", 10000)))
	e := newExecutor(t, webhook.Config{URL: srv.URL}, &backoffs{})
	_, err := e.Rollback(context.Background(), target)
	if !errors.Is(err, executor.ErrFailed) || len(err.Error()) > 1000 || !strings.Contains(err.Error(), "502 Bad Gateway") {
		t.Errorf("Rollback() error = %.300q (%d bytes), want a short ErrFailed naming 502", err, len(err.Error()))
	}
}

func TestRollbackNeedsIdempotencyKey(t *testing.T) {
	rc, srv := serve(t, status(http.StatusOK, ""))
	e := newExecutor(t, webhook.Config{URL: srv.URL}, &backoffs{})
	tg := target
	tg.IdempotencyKey = ""
	if _, err := e.Rollback(context.Background(), tg); !errors.Is(err, executor.ErrFailed) {
		t.Errorf("Rollback() error = %v, want ErrFailed", err)
	}
	if got := len(rc.seen()); got != 0 {
		t.Errorf("receiver got %d calls, want 0", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     webhook.Config
		wantErr []string
	}{
		{name: "minimal", cfg: webhook.Config{URL: "https://deploy.example.com/rollback"}},
		{name: "no url", cfg: webhook.Config{}, wantErr: []string{"url: missing"}},
		{name: "relative url", cfg: webhook.Config{URL: "/rollback"}, wantErr: []string{"not an absolute http or https URL"}},
		{name: "other scheme", cfg: webhook.Config{URL: "ftp://deploy.example.com/"}, wantErr: []string{"not an absolute http or https URL"}},
		{name: "bad whsec secret", cfg: webhook.Config{URL: "http://127.0.0.1/", Secret: "whsec_!!!"}, wantErr: []string{"secret_file: decoding whsec_ secret"}},
		{
			name:    "negatives",
			cfg:     webhook.Config{URL: "http://127.0.0.1/", Timeout: -1, MaxAttempts: -2},
			wantErr: []string{"timeout: must be positive", "max_attempts: must be positive"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if time.Duration(tt.cfg.Timeout) != webhook.DefaultTimeout || tt.cfg.MaxAttempts != webhook.DefaultMaxAttempts {
					t.Errorf("defaults: timeout %s, max_attempts %d", tt.cfg.Timeout, tt.cfg.MaxAttempts)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestNewRefusesUnloadedSecretFile(t *testing.T) {
	_, err := webhook.New(webhook.Config{URL: "http://127.0.0.1/", SecretFile: "/etc/guardian/hmac"}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "was not loaded") {
		t.Errorf("New() error = %v, want secret_file not loaded", err)
	}
}

func TestDefaultBackoff(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := webhook.DefaultBackoff(i + 1); got != w {
			t.Errorf("DefaultBackoff(%d) = %s, want %s", i+1, got, w)
		}
	}
}
