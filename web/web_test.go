package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/rollout"
)

const goodToken = "s3cret-token-for-ci-0001"

type fakeDeployer struct{ got []string }

func (f *fakeDeployer) Announce(_ context.Context, service, version, baseline string) (rollout.Event, error) {
	if service != "checkout" {
		return rollout.Event{}, fmt.Errorf("%w %q", rollout.ErrUnknownService, service)
	}
	if err := rollout.ValidVersion(version); err != nil {
		return rollout.Event{}, err
	}
	f.got = append(f.got, service+"/"+version+"<-"+baseline)
	return rollout.Event{Service: service, Version: version, Baseline: baseline, At: time.Unix(1, 0)}, nil
}

// changeDeployer also takes what a deploy changed.
type changeDeployer struct {
	fakeDeployer
	changes []rollout.Change
}

func (f *changeDeployer) AnnounceChange(ctx context.Context, service, version, baseline string, c rollout.Change) (rollout.Event, error) {
	ev, err := f.Announce(ctx, service, version, baseline)
	if err != nil {
		return ev, err
	}
	f.changes = append(f.changes, c)
	ev.Change = &c
	return ev, nil
}

func writeTokens(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestServer(t *testing.T, d Deployer, toks *Tokens) (*Server, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	reg := prometheus.NewRegistry()
	s := New(Options{Gatherer: reg, Logger: zap.New(core), Deployer: d, Tokens: func() *Tokens { return toks }})
	return s, logs
}

func do(t *testing.T, h http.Handler, method, path, auth, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestDeployments(t *testing.T) {
	toks, err := NewTokens(writeTokens(t, "# CI pipeline\nci:"+goodToken+"\nalice: another-long-token-xyz\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, auth, body string
		code             int
		want             string
	}{
		{"no token", "", `{"service":"checkout","version":"v2"}`, 401, "unauthorized"},
		{"wrong token", "Bearer wrong-token-but-long-enough", `{"service":"checkout","version":"v2"}`, 401, "unauthorized"},
		{"basic scheme", "Basic " + goodToken, `{"service":"checkout","version":"v2"}`, 401, "unauthorized"},
		{"accepted", "Bearer " + goodToken, `{"service":"checkout","version":"v2","baseline":"v1"}`, 202, `"by":"ci"`},
		{"second token name", "Bearer another-long-token-xyz", `{"service":"checkout","version":"v3"}`, 202, `"by":"alice"`},
		{"unknown service", "Bearer " + goodToken, `{"service":"cart","version":"v2"}`, 404, "unknown service"},
		{"missing service", "Bearer " + goodToken, `{"version":"v2"}`, 400, "service is required"},
		{"empty version", "Bearer " + goodToken, `{"service":"checkout","version":""}`, 400, "invalid version"},
		{"unknown field", "Bearer " + goodToken, `{"service":"checkout","version":"v2","extra":1}`, 400, "unknown field"},
		{"not JSON", "Bearer " + goodToken, `service=checkout`, 400, "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDeployer{}
			s, logs := newTestServer(t, d, toks)
			w := do(t, s.Handler(), "POST", "/api/v1/deployments", tc.auth, tc.body)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
				t.Fatalf("got %d %s, want %d containing %q", w.Code, w.Body, tc.code, tc.want)
			}
			if tc.code == 401 {
				if len(d.got) != 0 {
					t.Fatal("unauthenticated request reached the deployer")
				}
				if w.Header().Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				if logs.FilterMessage("rejected API request").Len() != 1 {
					t.Error("rejected attempt not logged")
				}
				for _, e := range logs.All() {
					for _, f := range e.Context {
						if strings.Contains(f.String, goodToken) || strings.Contains(f.String, "wrong-token") {
							t.Errorf("token logged: %v", f)
						}
					}
				}
			}
		})
	}
}

// An announcement may say what the deploy changed: commit, author and
// change URL, checked before the deployer hears of them.
func TestDeploymentChange(t *testing.T) {
	toks, err := NewTokens(writeTokens(t, "ci:"+goodToken+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a", rollout.MaxAuthor+1)
	for _, tc := range []struct {
		name, body string
		code       int
		want       string
		change     rollout.Change
	}{
		{"all fields", `{"service":"checkout","version":"v2","commit":"9f3c2ab","author":"Dana <dana@example.com>","change_url":"https://git.example/pull/812"}`,
			202, `"version":"v2"`, rollout.Change{Version: "v2", Commit: "9f3c2ab", Author: "Dana <dana@example.com>", ChangeURL: "https://git.example/pull/812"}},
		{"commit only", `{"service":"checkout","version":"v2","commit":"9f3c2ab"}`, 202, `"version":"v2"`, rollout.Change{Version: "v2", Commit: "9f3c2ab"}},
		{"commit with spaces", `{"service":"checkout","version":"v2","commit":"fix the bug"}`, 400, "has spaces: give the revision alone", rollout.Change{}},
		{"commit too long", `{"service":"checkout","version":"v2","commit":"` + strings.Repeat("f", 65) + `"}`, 400, "commit is longer than 64 bytes", rollout.Change{}},
		{"author too long", `{"service":"checkout","version":"v2","author":"` + long + `"}`, 400, "author is longer than 256 bytes", rollout.Change{}},
		{"author with a control character", `{"service":"checkout","version":"v2","author":"a\u0007b"}`, 400, "author has control characters", rollout.Change{}},
		{"change_url not http", `{"service":"checkout","version":"v2","change_url":"javascript:alert(1)"}`, 400, "not an absolute http or https URL", rollout.Change{}},
		{"change_url relative", `{"service":"checkout","version":"v2","change_url":"/pull/812"}`, 400, "not an absolute http or https URL", rollout.Change{}},
		{"change_url with credentials", `{"service":"checkout","version":"v2","change_url":"https://u:p@git.example/pull/1"}`, 400, "must not carry credentials", rollout.Change{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &changeDeployer{}
			s, _ := newTestServer(t, d, toks)
			w := do(t, s.Handler(), "POST", "/api/v1/deployments", "Bearer "+goodToken, tc.body)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
				t.Fatalf("got %d %s, want %d containing %q", w.Code, w.Body, tc.code, tc.want)
			}
			switch {
			case tc.code != 202 && (len(d.changes) != 0 || len(d.got) != 0):
				t.Fatal("a refused announcement reached the deployer")
			case tc.code == 202 && (len(d.changes) != 1 || !reflect.DeepEqual(d.changes[0], tc.change)):
				t.Fatalf("deployer got %+v, want %+v", d.changes, tc.change)
			}
		})
	}
	// A deployer that cannot remember changes still validates them.
	d := &fakeDeployer{}
	s, _ := newTestServer(t, d, toks)
	if w := do(t, s.Handler(), "POST", "/api/v1/deployments", "Bearer "+goodToken, `{"service":"checkout","version":"v2","change_url":"ftp://x"}`); w.Code != 400 || len(d.got) != 0 {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
}

func TestNoTokensFileRefusesAll(t *testing.T) {
	toks, err := NewTokens("")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newTestServer(t, &fakeDeployer{}, toks)
	if w := do(t, s.Handler(), "POST", "/api/v1/deployments", "Bearer "+goodToken, `{"service":"checkout","version":"v2"}`); w.Code != 401 {
		t.Fatalf("got %d, want 401", w.Code)
	}
}

func TestTokensRotate(t *testing.T) {
	p := writeTokens(t, "ci:"+goodToken+"\n")
	toks, err := NewTokens(p)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/", nil)
	r.Header.Set("Authorization", "Bearer "+goodToken)
	if name, err := toks.Authenticate(r); err != nil || name != "ci" {
		t.Fatalf("%q %v", name, err)
	}
	// Rotate: the old token stops working, the new one works, without a restart.
	if err := os.WriteFile(p, []byte("ci:rotated-token-0000000002\n# longer now\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(p, future, future); err != nil {
		t.Fatal(err)
	}
	if _, err := toks.Authenticate(r); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("old token still accepted: %v", err)
	}
	r.Header.Set("Authorization", "Bearer rotated-token-0000000002")
	if name, err := toks.Authenticate(r); err != nil || name != "ci" {
		t.Fatalf("rotated token: %q %v", name, err)
	}
	// A broken file keeps the last good tokens and reports the error.
	if err := os.WriteFile(p, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, future.Add(time.Minute), future.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if name, err := toks.Authenticate(r); err != nil || name != "ci" {
		t.Fatalf("last good tokens lost: %q %v", name, err)
	}
	if toks.Err() == nil {
		t.Fatal("Err() is nil after a bad tokens file")
	}
}

func TestParseTokens(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "no tokens"},
		{"nocolon\n", "line 1: want name:token"},
		{"a:short\n", `line 1: token for "a" is shorter than 16 characters`},
		{"a:" + goodToken + "\na:" + goodToken + "x\n", `line 2: duplicate name "a"`},
		{":" + goodToken, "line 1: want name:token"},
		{"a:" + goodToken + ":deploy,rread\n", "line 1: unknown or empty scope after the last ':'"},
		{"a:" + goodToken + ":deploy,\n", "line 1: unknown or empty scope"},
		{"# c\n\na:short:read\n", `line 3: token for "a" is shorter than 16 characters`},
		{"a:" + goodToken + "\r\nb:x\r\n", `line 2: token for "b" is shorter`},
	} {
		_, err := ParseTokens([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTokens(%q) = %v, want %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), goodToken) {
			t.Errorf("error leaks the token: %v", err)
		}
	}
}

// Scopes follow the token's last colon; a line without them grants all; a
// token with colons in it keeps working.
func TestParseTokenScopes(t *testing.T) {
	toks, err := ParseTokens([]byte("ci:" + goodToken + ":deploy\n" +
		"oncall : " + goodToken + "-2 : approve, read \n" +
		"legacy:" + goodToken + "-3\n" +
		"colons:abc:def:ghi:0123456789abcdef\n" +
		"colons2:abc:def:0123456789abcdef:admin\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Scope{"ci": ScopeDeploy, "oncall": ScopeApprove | ScopeRead, "legacy": AllScopes, "colons": AllScopes, "colons2": ScopeAdmin}
	secrets := map[string]string{"ci": goodToken, "oncall": goodToken + "-2", "legacy": goodToken + "-3",
		"colons": "abc:def:ghi:0123456789abcdef", "colons2": "abc:def:0123456789abcdef"}
	if len(toks) != len(want) {
		t.Fatalf("%d tokens", len(toks))
	}
	p := writeTokens(t, "")
	for _, tok := range toks {
		if tok.Scopes != want[tok.Name] {
			t.Errorf("%s: scopes %s, want %s", tok.Name, tok.Scopes, want[tok.Name])
		}
	}
	ts := &Tokens{path: p, tokens: toks}
	for name, secret := range secrets {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+secret)
		if got, err := ts.Authenticate(r); err != nil || got != name {
			t.Errorf("%s: authenticated as %q, %v", name, got, err)
		}
	}
	if !ScopeAdmin.Has(ScopeApprove) || ScopeDeploy.Has(ScopeRead) || (ScopeRead | ScopeDeploy).Has(ScopeApprove) {
		t.Error("Has")
	}
}

func TestLifecycle(t *testing.T) {
	ready := false
	reloadErr := error(nil)
	reloads := 0
	s := New(Options{
		Gatherer: prometheus.NewRegistry(),
		Ready:    func() bool { return ready },
		Reload: func() <-chan error {
			reloads++
			c := make(chan error, 1)
			c <- reloadErr
			return c
		},
	})
	h := s.Handler()
	if w := do(t, h, "GET", "/-/healthy", "", ""); w.Code != 200 {
		t.Fatalf("healthy: %d", w.Code)
	}
	if w := do(t, h, "GET", "/-/ready", "", ""); w.Code != 503 {
		t.Fatalf("ready before ready: %d", w.Code)
	}
	ready = true
	if w := do(t, h, "GET", "/-/ready", "", ""); w.Code != 200 {
		t.Fatalf("ready: %d", w.Code)
	}
	local := func(method, path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := local("POST", "/-/reload"); w.Code != 200 || reloads != 1 {
		t.Fatalf("reload: %d %s (reloads %d)", w.Code, w.Body, reloads)
	}
	reloadErr = errors.New(`services[0].for: invalid duration "3x" (line 4)`)
	if w := local("POST", "/-/reload"); w.Code != 500 || !strings.Contains(w.Body.String(), `services[0].for: invalid duration "3x" (line 4)`) {
		t.Fatalf("failed reload: %d %s", w.Code, w.Body)
	}
	if w := local("GET", "/-/reload"); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /-/reload: %d", w.Code)
	}
}

func TestServeShutsDown(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "guardian_test_total", Help: "x"})
	reg.MustRegister(c)
	s := New(Options{Gatherer: reg})
	l, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "guardian_test_total 0") {
		t.Fatalf("metrics:\n%s", b)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
