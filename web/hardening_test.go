package web

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
)

// serve runs s on a loopback listener until the test ends and returns its
// address. Register the client connections' cleanups after calling it, so
// that they close before the server shuts down.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	l, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer waits until the deadline for the server to close c (after
// reading whatever it still sends) and reports whether it did.
func closedByServer(c net.Conn, r *bufio.Reader, deadline time.Time) bool {
	_ = c.SetReadDeadline(deadline)
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true // EOF (err nil) or a reset: closed
}

func tokensFile(t *testing.T, content string) *Tokens {
	t.Helper()
	toks, err := NewTokens(writeTokens(t, content))
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// A client that sends a request's headers and then its body slowly, or
// never, cannot hold the server: a request without a token gets its 401 at
// once and the server closes the connection without waiting for the body.
// Before, the server read the unread body before answering, so 300 such
// clients held 300 connections with no answer, for ever.
func TestSlowBodyWithoutTokenIsRefusedAtOnce(t *testing.T) {
	const conns = 300
	readTimeout := 10 * time.Second
	s := New(Options{Gatherer: prometheus.NewRegistry(), Tokens: func() *Tokens { return tokensFile(t, "ci:"+goodToken+"\n") },
		Limits: Limits{ReadTimeout: readTimeout}})
	addr := serve(t, s)
	start := time.Now()
	cs := make([]net.Conn, conns)
	for i := range cs {
		cs[i] = dial(t, addr)
		// The headers announce 1 KiB; 10 bytes come, then nothing.
		if _, err := fmt.Fprintf(cs[i], "POST /api/v1/deployments HTTP/1.1\r\nHost: guardian\r\nContent-Type: application/json\r\nContent-Length: 1024\r\n\r\n{\"service\""); err != nil {
			t.Fatal(err)
		}
	}
	// Wait past the read timeout at most.
	deadline := start.Add(readTimeout + 2*time.Second)
	got401, open := 0, 0
	for _, c := range cs {
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(deadline)
		resp, err := http.ReadResponse(br, nil)
		if err == nil && resp.StatusCode == http.StatusUnauthorized {
			got401++
		}
		if !closedByServer(c, br, deadline) {
			open++
		}
	}
	t.Logf("%d slow-body connections: %d answered 401, %d still open after %s (read timeout %s)",
		conns, got401, open, time.Since(start).Round(time.Millisecond), readTimeout)
	if got401 != conns || open != 0 {
		t.Fatalf("%d of %d answered 401, %d still open", got401, conns, open)
	}
	if el := time.Since(start); el >= readTimeout {
		t.Fatalf("the refusals took %s: they waited for the read timeout (%s)", el, readTimeout)
	}
}

// An authenticated client whose body never completes is cut off at the
// read timeout with 408, and its connection closed.
func TestSlowBodyIsCutAtReadTimeout(t *testing.T) {
	const conns = 20
	readTimeout := 500 * time.Millisecond
	s := New(Options{Gatherer: prometheus.NewRegistry(), Deployer: &fakeDeployer{}, Tokens: func() *Tokens { return tokensFile(t, "ci:"+goodToken+"\n") },
		Limits: Limits{ReadTimeout: readTimeout}})
	addr := serve(t, s)
	cs := make([]net.Conn, conns)
	start := time.Now()
	for i := range cs {
		cs[i] = dial(t, addr)
		if _, err := fmt.Fprintf(cs[i], "POST /api/v1/deployments HTTP/1.1\r\nHost: guardian\r\nAuthorization: Bearer %s\r\nContent-Length: 1024\r\n\r\n{\"service\"", goodToken); err != nil {
			t.Fatal(err)
		}
	}
	deadline := start.Add(readTimeout + 5*time.Second)
	open := 0
	for _, c := range cs {
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(deadline)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("slow body: %v %v, want 408", resp, err)
		}
		if !closedByServer(c, br, deadline) {
			open++
		}
	}
	if el := time.Since(start); el < readTimeout {
		t.Errorf("answered after %s, before the read timeout %s", el, readTimeout)
	}
	if open != 0 {
		t.Fatalf("%d of %d connections still open after the read timeout", open, conns)
	}
}

// An idle keep-alive connection is closed after the idle timeout.
func TestIdleConnectionClosed(t *testing.T) {
	s := New(Options{Gatherer: prometheus.NewRegistry(), Limits: Limits{IdleTimeout: 300 * time.Millisecond}})
	addr := serve(t, s)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET /-/healthy HTTP/1.1\r\nHost: guardian\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("%v %v: want a kept-alive 200", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	start := time.Now()
	if !closedByServer(c, br, start.Add(5*time.Second)) {
		t.Fatal("idle connection still open 5s after the request, idle timeout 300ms")
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("closed after %s, before the idle timeout", el)
	}
}

func TestLimitsDefaults(t *testing.T) {
	got := Limits{}.withDefaults()
	want := Limits{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 2 * time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, MaxBodyBytes: 64 << 10}
	if got != want {
		t.Fatalf("defaults %+v, want %+v", got, want)
	}
	l := New(Options{}).limits
	if l != want {
		t.Fatalf("New's limits %+v", l)
	}
}

// Every endpoint that reads a body answers 413 to one over the limit,
// whether its length is announced or not (chunked).
func TestBodyLimit(t *testing.T) {
	toks := tokensFile(t, "ci:"+goodToken+"\n")
	big := `{"service":"checkout","version":"v2","reason":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`
	for _, path := range []string{"/api/v1/deployments", "/api/v1/incidents/1/approve", "/api/v1/incidents/1/deny", "/api/v1/incidents/1/close", "/-/reload"} {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s chunked=%v", path, chunked), func(t *testing.T) {
				d := &fakeDeployer{}
				s := New(Options{Gatherer: prometheus.NewRegistry(), Deployer: d, Tokens: func() *Tokens { return toks }, Incidents: reports{awaitingIncident(t)},
					Reload: func() <-chan error { c := make(chan error, 1); c <- nil; return c }})
				r := httptest.NewRequest("POST", path, strings.NewReader(big))
				r.Header.Set("Authorization", "Bearer "+goodToken)
				if chunked {
					r.ContentLength = -1
				}
				w := httptest.NewRecorder()
				s.Handler().ServeHTTP(w, r)
				if path == "/-/reload" && chunked {
					// Reload reads no body: the limit does not matter to it.
					if w.Code != 200 {
						t.Fatalf("%d %s", w.Code, w.Body)
					}
					return
				}
				if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "request body too large: the limit is 65536 bytes") {
					t.Fatalf("got %d %s, want 413", w.Code, w.Body)
				}
				if len(d.got) != 0 {
					t.Fatal("an oversized request reached the deployer")
				}
			})
		}
	}
	// At the limit, a body is read.
	s := New(Options{Gatherer: prometheus.NewRegistry(), Deployer: &fakeDeployer{}, Tokens: func() *Tokens { return toks }})
	body := `{"service":"checkout","version":"v2"}`
	body += strings.Repeat(" ", DefaultMaxBodyBytes-len(body))
	if w := do(t, s.Handler(), "POST", "/api/v1/deployments", "Bearer "+goodToken, body); w.Code != 202 {
		t.Fatalf("a body of exactly the limit: %d %s", w.Code, w.Body)
	}
}

// awaitingIncident starts an incident manager on an in-memory store with
// incident 1 of checkout awaiting a go/no-go.
func awaitingIncident(tb testing.TB) *incident.Manager {
	tb.Helper()
	m := incident.NewManager(incident.Options{Store: store.NewMemory(), Env: manualEnv{}, Registry: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	v := 0.2
	rec, _, err := m.Declare(context.Background(), rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1", At: time.Now()},
		trigger.Verdict{Trigger: "error-rate", State: trigger.Firing, Evidence: trigger.Evidence{Value: &v}}, nil, "SEV-1")
	if err != nil {
		tb.Fatal(err)
	}
	testenv.Eventually(tb, 5*time.Second, func() error {
		if r, _ := m.Get(context.Background(), rec.ID); r.State != incident.AwaitingApproval {
			return fmt.Errorf("state %s", r.State)
		}
		return nil
	}, "the approval request")
	return m
}

const (
	adminToken   = "admin-token-000000000001"
	deployToken  = "deploy-token-00000000001"
	approveToken = "approve-token-0000000001"
	readToken    = "read-token-0000000000001"
)

// scopedTokens: ci announces deploys, oncall decides on incidents and
// reads, ops administers, legacy (no scope list) may do everything.
func scopedTokens(t *testing.T) *Tokens {
	return tokensFile(t, "ci:"+deployToken+":deploy\n"+
		"oncall:"+approveToken+":approve,read\n"+
		"ops:"+adminToken+":admin\n"+
		"dash:"+readToken+":read\n"+
		"legacy:"+goodToken+"\n")
}

// POST /-/reload: by default a loopback client needs no token and any other
// one an admin token; authenticated wants an admin token from everyone;
// off refuses. Before, anyone could reload.
func TestReloadAccess(t *testing.T) {
	toks := scopedTokens(t)
	for _, tc := range []struct {
		mode   ReloadAccess
		remote string
		token  string
		code   int
	}{
		{ReloadLoopback, "127.0.0.1:4000", "", 200},
		{ReloadLoopback, "[::1]:4000", "", 200},
		{ReloadLoopback, "[::ffff:127.0.0.1]:4000", "", 200},
		{ReloadLoopback, "10.0.0.7:4000", "", 401},
		{ReloadLoopback, "127.0.0.6:4000", "", 401},
		{ReloadLoopback, "127.0.0.1.example.com:4000", "", 401},
		{ReloadLoopback, "10.0.0.7:4000", adminToken, 200},
		{ReloadLoopback, "10.0.0.7:4000", goodToken, 200},
		{ReloadLoopback, "10.0.0.7:4000", deployToken, 403},
		{ReloadAuthenticated, "127.0.0.1:4000", "", 401},
		{ReloadAuthenticated, "127.0.0.1:4000", approveToken, 403},
		{ReloadAuthenticated, "10.0.0.7:4000", adminToken, 200},
		{ReloadOff, "127.0.0.1:4000", adminToken, 403},
	} {
		t.Run(fmt.Sprintf("%s from %s with %.6s", tc.mode, tc.remote, tc.token), func(t *testing.T) {
			reloads := 0
			s := New(Options{Gatherer: prometheus.NewRegistry(), Tokens: func() *Tokens { return toks }, Flags: Flags{Reload: tc.mode},
				Reload: func() <-chan error { reloads++; c := make(chan error, 1); c <- nil; return c }})
			for _, method := range []string{"POST", "PUT"} {
				r := httptest.NewRequest(method, "/-/reload", nil)
				r.RemoteAddr = tc.remote
				if tc.token != "" {
					r.Header.Set("Authorization", "Bearer "+tc.token)
				}
				w := httptest.NewRecorder()
				s.Handler().ServeHTTP(w, r)
				if w.Code != tc.code {
					t.Fatalf("%s: %d %s, want %d", method, w.Code, w.Body, tc.code)
				}
			}
			if want := map[bool]int{true: 2, false: 0}[tc.code == 200]; reloads != want {
				t.Fatalf("%d reloads, want %d", reloads, want)
			}
		})
	}
}

// A configuration that fails to load because of a notifier URL with
// credentials does not send them back in the reload's answer: the answer
// names the field, the URL's secrets are redacted.
func TestReloadAnswerHasNoSecrets(t *testing.T) {
	const bad = "ftp://guardian:hunter2-pass@hooks.example.com/services/T0/B0/XXXXSECRET?token=abc123"
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("notifiers:\n  - name: oncall\n    webhook:\n      url: "+bad+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, loadErr := config.LoadFile(cfgFile)
	if loadErr == nil || !strings.Contains(loadErr.Error(), "hunter2-pass") {
		t.Fatalf("the config's error does not carry the URL, the test proves nothing: %v", loadErr)
	}
	s := New(Options{Gatherer: prometheus.NewRegistry(), Reload: func() <-chan error { c := make(chan error, 1); c <- loadErr; return c }})
	r := httptest.NewRequest("POST", "/-/reload", nil)
	r.RemoteAddr = "127.0.0.1:4000"
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	body := w.Body.String()
	if w.Code != 500 || !strings.Contains(body, "notifiers[0].webhook.url") || !strings.Contains(body, "ftp://<secret>@hooks.example.com/<secret>?<secret>") {
		t.Fatalf("got %d %q", w.Code, body)
	}
	for _, secret := range []string{"guardian:", "hunter2-pass", "XXXXSECRET", "abc123", "token="} {
		if strings.Contains(body, secret) {
			t.Errorf("the answer holds %q: %s", secret, body)
		}
	}
}

func TestRedactURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"no url here", "no url here"},
		{`url: invalid URL "https://u:p@h.example.com:8443/a/b?x=1#f": want`, `url: invalid URL "https://<secret>@h.example.com:8443/<secret>?<secret>": want`},
		{"https://hooks.slack.com/services/T0/B0/XYZ", "https://hooks.slack.com/<secret>"},
		{"http://prometheus:9090", "http://prometheus:9090"},
		{"http://prometheus:9090/", "http://prometheus:9090/"},
		{"http://TOKEN@h", "http://<secret>@h"},
		{"see https://h/?secretkey and http://a:b@c", "see https://h/?<secret> and http://<secret>@c"},
		{"http://u:p%zz@h/x", "<secret>"},
	} {
		if got := RedactURLs(tc.in); got != tc.want {
			t.Errorf("RedactURLs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Each endpoint needs its scope: a CI token that announces deploys cannot
// decide on an incident (403, nothing on the timeline), the on-call's can,
// and its name is on the decision.
func TestScopes(t *testing.T) {
	toks := scopedTokens(t)
	m := awaitingIncident(t)
	s := New(Options{Gatherer: prometheus.NewRegistry(), Deployer: &fakeDeployer{}, Tokens: func() *Tokens { return toks }, Incidents: reports{m}})
	h := s.Handler()
	timeline := func() int {
		r, _ := m.Get(context.Background(), 1)
		return len(r.Timeline)
	}
	before := timeline()
	for _, tc := range []struct {
		path, token string
		code        int
		want        string
	}{
		{"/api/v1/deployments", approveToken, 403, `forbidden: token \"oncall\" lacks the deploy scope`},
		{"/api/v1/deployments", readToken, 403, "lacks the deploy scope"},
		{"/api/v1/incidents/1/approve", deployToken, 403, `forbidden: token \"ci\" lacks the approve scope`},
		{"/api/v1/incidents/1/deny", deployToken, 403, "lacks the approve scope"},
		{"/api/v1/incidents/1/close", deployToken, 403, "lacks the approve scope"},
		{"/api/v1/incidents/1/approve", readToken, 403, "lacks the approve scope"},
		{"/api/v1/deployments", deployToken, 202, `"by":"ci"`},
		{"/api/v1/deployments", adminToken, 202, `"by":"ops"`},
		{"/api/v1/deployments", goodToken, 202, `"by":"legacy"`},
	} {
		body := `{"service":"checkout","version":"v2"}`
		if strings.Contains(tc.path, "incidents") {
			body = `{"reason":"x"}`
		}
		w := do(t, h, "POST", tc.path, "Bearer "+tc.token, body)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("%s with %s: %d %s, want %d %s", tc.path, tc.token, w.Code, w.Body, tc.code, tc.want)
		}
		if w.Code == 403 && w.Header().Get("Connection") != "close" {
			t.Errorf("%s: 403 keeps the connection", tc.path)
		}
	}
	if timeline() != before {
		t.Fatal("a refused decision reached the timeline")
	}
	w := do(t, h, "POST", "/api/v1/incidents/1/approve", "Bearer "+approveToken, `{"reason":"confirmed"}`)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"by":"token:oncall"`) {
		t.Fatalf("approve with the approve scope: %d %s", w.Code, w.Body)
	}
}

// --web.read-auth: open leaves reads open, api guards /api/v1, all guards
// /metrics too; the probes stay open.
func TestReadAuth(t *testing.T) {
	toks := scopedTokens(t)
	paths := []string{"/-/healthy", "/-/ready", "/metrics", "/api/v1/status", "/api/v1/incidents", "/api/v1/incidents/1", "/api/v1/incidents/1/report"}
	for _, tc := range []struct {
		mode   ReadAuth
		guards []string
	}{
		{ReadOpen, nil},
		{ReadAuthAPI, paths[3:]},
		{ReadAuthAll, paths[2:]},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			s := New(Options{Gatherer: prometheus.NewRegistry(), Tokens: func() *Tokens { return toks }, Incidents: reports{awaitingIncident(t)},
				Status: func() any { return "ok" }, Flags: Flags{ReadAuth: tc.mode}})
			for _, p := range paths {
				guarded := false
				for _, g := range tc.guards {
					guarded = guarded || g == p
				}
				for _, tok := range []struct {
					token string
					code  int
				}{{"", 401}, {deployToken, 403}, {readToken, 200}, {approveToken, 200}, {adminToken, 200}} {
					want := tok.code
					if !guarded {
						want = 200
					}
					auth := ""
					if tok.token != "" {
						auth = "Bearer " + tok.token
					}
					if w := do(t, s.Handler(), "GET", p, auth, ""); w.Code != want {
						t.Errorf("GET %s with %q: %d %s, want %d", p, tok.token, w.Code, w.Body, want)
					}
				}
			}
		})
	}
}

// writeTLS writes a self-signed certificate for 127.0.0.1 and its key to
// dir and returns a pool holding it (the client's CA).
func writeTLS(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "guardian test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// --web.config.file serves TLS (a client without the CA fails, one with it
// succeeds) and checks basic auth (a wrong password gets 401), as
// Prometheus and Alertmanager do; the bearer tokens work over TLS.
func TestWebConfigTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	pool := writeTLS(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	tlsOnly := filepath.Join(dir, "tls.yml")
	withUsers := filepath.Join(dir, "users.yml")
	tlsCfg := "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
	if err := os.WriteFile(tlsOnly, []byte(tlsCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(withUsers, []byte(tlsCfg+"basic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{tlsOnly, withUsers} {
		if err := ValidateConfigFile(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := ValidateConfigFile(filepath.Join(dir, "missing.yml")); err == nil {
		t.Error("a missing web config file is valid")
	}

	trusting := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer trusting.CloseIdleConnections()
	client := &http.Client{Transport: trusting, Timeout: 10 * time.Second}
	noCA := &http.Transport{}
	defer noCA.CloseIdleConnections()

	t.Run("TLS", func(t *testing.T) {
		toks := tokensFile(t, "ci:"+goodToken+"\n")
		s := New(Options{Gatherer: prometheus.NewRegistry(), Logger: zap.NewNop(), Deployer: &fakeDeployer{},
			Tokens: func() *Tokens { return toks }, Flags: Flags{ConfigFile: tlsOnly}})
		base := "https://" + serve(t, s)
		if _, err := (&http.Client{Transport: noCA, Timeout: 10 * time.Second}).Get(base + "/-/healthy"); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("a client without the CA: %v, want a certificate error", err)
		}
		if resp, err := http.Get(strings.Replace(base, "https", "http", 1) + "/-/healthy"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Fatal("plain HTTP served with TLS configured")
			}
		}
		resp, err := client.Get(base + "/-/healthy")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.TLS == nil {
			t.Fatalf("with the CA: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
		}
		req, _ := http.NewRequest("POST", base+"/api/v1/deployments", strings.NewReader(`{"service":"checkout","version":"v2"}`))
		req.Header.Set("Authorization", "Bearer "+goodToken)
		resp, err = client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("deployment over TLS: %d", resp.StatusCode)
		}
	})
	t.Run("basic auth", func(t *testing.T) {
		s := New(Options{Gatherer: prometheus.NewRegistry(), Flags: Flags{ConfigFile: withUsers}})
		base := "https://" + serve(t, s)
		for _, tc := range []struct {
			user, pass string
			code       int
		}{{"", "", 401}, {"prometheus", "wrong", 401}, {"other", "correct horse", 401}, {"prometheus", "correct horse", 200}} {
			req, _ := http.NewRequest("GET", base+"/metrics", nil)
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("%s:%s: %d, want %d", tc.user, tc.pass, resp.StatusCode, tc.code)
			}
		}
	})
}
