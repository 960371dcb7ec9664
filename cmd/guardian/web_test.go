package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/web"
)

// guardian check reads the tokens file the config names, with the daemon's
// parser: a short token or an unknown scope fails the check, naming the
// line and never the token.
func TestCheckTokensFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	write(t, cfg, "global:\n  auth:\n    tokens_file: tokens\n")
	tokens := filepath.Join(dir, "tokens")
	for _, tc := range []struct {
		name, tokens string
		code         int
		want         []string
	}{
		{"good", "ci:ci-token-000000000001:deploy\nalice:alice-token-000000001\n", 0, []string{cfg + ": OK"}},
		{"short token", "ci:ci-token-000000000001:deploy\nbob:tooshort\n", 1,
			[]string{cfg + `: global.auth.tokens_file: tokens file ` + tokens + `: line 2: token for "bob" is shorter than 16 characters`}},
		{"unknown scope and a short token", "ci:ci-token-000000000001:deploy,aprove\nbob:tooshort\n", 1, []string{
			cfg + ": global.auth.tokens_file: tokens file " + tokens + ": line 1: unknown or empty scope",
			cfg + ": global.auth.tokens_file: tokens file " + tokens + `: line 2: token for "bob"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write(t, tokens, tc.tokens)
			var out, errb bytes.Buffer
			code := run([]string{"check", cfg}, &out, &errb)
			got := out.String() + errb.String()
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
			if strings.Contains(got, "tooshort") || strings.Contains(got, "ci-token") {
				t.Errorf("a token is printed:\n%s", got)
			}
		})
	}
}

func TestCheckWebConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	write(t, cfg, "global:\n  evaluation_interval: 5s\n")
	bad := filepath.Join(dir, "web.yml")
	write(t, bad, "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n")
	var out, errb bytes.Buffer
	if code := run([]string{"check", "--web.config.file", bad, cfg}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--web.config.file: web config file "+bad) {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
	if code := run([]string{"run", "--config", cfg, "--web.config.file", bad}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--web.config.file") {
		t.Fatalf("run with a bad web config: exit %d\n%s", code, errb.String())
	}
	if code := run([]string{"run", "--config", cfg, "--web.reload", "sometimes"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "want loopback, authenticated or off") {
		t.Fatalf("run with a bad --web.reload: exit %d\n%s", code, errb.String())
	}
}

// The client commands talk TLS with --ca-file, and send their token on reads
// when Guardian wants one (--web.read-auth).
func TestClientTLSAndReadAuth(t *testing.T) {
	tokFile := filepath.Join(t.TempDir(), "tokens")
	write(t, tokFile, "dash:read-token-0000000001:read\n")
	toks, err := web.NewTokens(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	m := withReport{heldManager(t)}
	srv := httptest.NewUnstartedServer(web.New(web.Options{Gatherer: prometheus.NewRegistry(), Tokens: func() *web.Tokens { return toks },
		Incidents: m, Flags: web.Flags{ReadAuth: web.ReadAuthAPI}}).Handler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake the CA-less client fails
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	write(t, ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	mine := filepath.Join(t.TempDir(), "token")
	write(t, mine, "read-token-0000000001\n")
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append(args, "--url", srv.URL), &out, &errb)
		return code, out.String(), errb.String()
	}
	os.Unsetenv("GUARDIAN_TOKEN")
	if code, _, errOut := cli("incidents", "--token-file", mine); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Fatalf("without the CA: %d %q", code, errOut)
	}
	if code, _, errOut := cli("incidents", "--ca-file", ca); code != 1 || !strings.Contains(errOut, "401") {
		t.Fatalf("without a token: %d %q", code, errOut)
	}
	if code, out, errOut := cli("incidents", "--ca-file", ca, "--token-file", mine); code != 0 || !strings.Contains(out, "checkout") {
		t.Fatalf("with the CA and a token: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := cli("approve", "1", "--ca-file", ca, "--token-file", mine); code != 1 || !strings.Contains(errOut, "403") || !strings.Contains(errOut, "lacks the approve scope") {
		t.Fatalf("approve with a read token: %d %q", code, errOut)
	}
}

// heldManager runs an incident manager with incident 1 of checkout
// awaiting a go/no-go.
func heldManager(t *testing.T) *incident.Manager {
	t.Helper()
	m := incident.NewManager(incident.Options{Store: store.NewMemory(), Env: heldEnv{}, Registry: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	v := 0.2
	if _, _, err := m.Declare(ctx, rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1", At: time.Now()},
		trigger.Verdict{Trigger: "error-rate", State: trigger.Firing, Evidence: trigger.Evidence{Value: &v}}, nil, "SEV-1"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if r, _ := m.Get(ctx, 1); r.State != incident.AwaitingApproval {
			return fmt.Errorf("state %s", r.State)
		}
		return nil
	}, "the approval request")
	return m
}
