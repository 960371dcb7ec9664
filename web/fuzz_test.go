package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollback-guardian/guardian/rollout"
)

// FuzzTokens: the tokens file parser never panics; an error names the
// line of each problem and never the token; a line written in the
// documented format (name:token or name:token:scopes) is accepted when
// valid, and its token then authenticates as its name with its scopes.
func FuzzTokens(f *testing.F) {
	f.Add([]byte("# CI\nci:"+goodToken+"\n"), "alice", "another-long-token-xyz", "")
	f.Add([]byte("ci:"+goodToken+":deploy\noncall:"+goodToken+"-2:approve,read\n"), "ops", "admin-token-0000000000X", "admin")
	f.Add([]byte("a:short\n:x\nnocolon\n"), "b", "abc:def:0123456789abcdef", "read, deploy")
	f.Add([]byte("a:"+goodToken+":deploy,rread\r\n"), " c ", "  spaced-token-0000000001  ", "approve")
	f.Add([]byte{}, "#comment", goodToken, "nope")
	fixed := fixedTokens(f)
	f.Fuzz(func(t *testing.T, data []byte, name, secret, scopes string) {
		toks, err := ParseTokens(data)
		checkErrLines(t, data, err)
		if err == nil {
			seen := map[string]bool{}
			for _, tok := range toks {
				if tok.Name == "" || seen[tok.Name] || !strings.Contains(string(data), tok.Name) {
					t.Fatalf("accepted token named %q (seen %v)", tok.Name, seen[tok.Name])
				}
				seen[tok.Name] = true
			}
		}

		// One line in the documented format, after a comment line.
		tname := strings.TrimSpace(name)
		if tname == "" || strings.HasPrefix(tname, "#") || strings.ContainsAny(name, ":\n\r") || strings.ContainsAny(secret, "\n\r") || strings.ContainsAny(scopes, ":\n\r") {
			return
		}
		line := name + ":" + secret
		wantSecret, wantScopes, wantErr := strings.TrimSpace(secret), AllScopes, ""
		if scopes != "" {
			line += ":" + scopes
			if looksLikeScopes(scopes) {
				s, err := ParseScopes(scopes)
				if err != nil {
					wantErr = "line 2: unknown or empty scope"
				}
				wantScopes = s
			} else {
				wantSecret = strings.TrimSpace(secret + ":" + scopes)
			}
		} else if i := strings.LastIndexByte(wantSecret, ':'); i >= 0 && looksLikeScopes(wantSecret[i+1:]) {
			return // the token's own last colon reads as scopes: the documented ambiguity
		}
		if wantErr == "" && len(wantSecret) < MinTokenLen {
			wantErr = "line 2: token for " + strconv.Quote(tname) + " is shorter than"
		}
		file := []byte("# generated\n" + line + "\n")
		toks, err = ParseTokens(file)
		checkErrLines(t, file, err)
		if wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), wantErr) {
				t.Fatalf("ParseTokens(%q) = %v, want %q", file, err, wantErr)
			}
			if len(wantSecret) >= 4 && strings.ContainsAny(wantSecret, "XQZ$@!0123456789") && !strings.Contains(strconv.Quote(tname), wantSecret) &&
				strings.Contains(err.Error(), wantSecret) {
				t.Fatalf("the error shows the token: %v", err)
			}
			return
		}
		if err != nil || len(toks) != 1 {
			t.Fatalf("ParseTokens(%q) = %d tokens, %v", file, len(toks), err)
		}
		if toks[0].Name != tname || toks[0].Scopes != wantScopes {
			t.Fatalf("ParseTokens(%q) = %q %s, want %q %s", file, toks[0].Name, toks[0].Scopes, tname, wantScopes)
		}
		ts := fixed(toks)
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+wantSecret)
		for _, sc := range []Scope{ScopeRead, ScopeDeploy, ScopeApprove, ScopeAdmin} {
			got, err := ts.Authorize(r, sc)
			switch {
			case wantScopes.Has(sc) && (err != nil || got != tname):
				t.Fatalf("%s: token of %q rejected for %s: %q %v", line, tname, sc, got, err)
			case !wantScopes.Has(sc) && err == nil:
				t.Fatalf("%s: token with scopes %s accepted for %s", line, wantScopes, sc)
			}
		}
		r.Header.Set("Authorization", "Bearer "+wantSecret+"x")
		if _, err := ts.Authorize(r, ScopeRead); err == nil {
			t.Fatal("another token accepted")
		}
	})
}

// fixedTokens returns a function giving Tokens that hold toks, backed by a
// file that does not change (so they are never read again).
func fixedTokens(tb testing.TB) func([]Token) *Tokens {
	p := writeTokens(tb, "unused")
	fi, err := os.Stat(p)
	if err != nil {
		tb.Fatal(err)
	}
	return func(toks []Token) *Tokens {
		return &Tokens{path: p, tokens: toks, modTime: fi.ModTime(), size: fi.Size()}
	}
}

// checkErrLines: a parse error is "no tokens" or lists "line N: ..." for
// lines of the file.
func checkErrLines(t *testing.T, data []byte, err error) {
	t.Helper()
	if err == nil || err.Error() == "no tokens" {
		return
	}
	lines := strings.Count(string(data), "\n") + 1
	for _, l := range strings.Split(err.Error(), "\n") {
		var n int
		if _, serr := fmt.Sscanf(l, "line %d:", &n); serr != nil || n < 1 || n > lines {
			t.Fatalf("error %q: no line number of the file's %d lines", l, lines)
		}
	}
}

// FuzzAPIBodies: the API's JSON request bodies, fed through the real
// handlers with an in-memory incident store, never get a 5xx nor panic,
// and every answer is JSON.
func FuzzAPIBodies(f *testing.F) {
	toks, err := NewTokens(writeTokens(f, "ops:"+adminToken+":admin\n"))
	if err != nil {
		f.Fatal(err)
	}
	m := awaitingIncident(f)
	s := New(Options{Gatherer: prometheus.NewRegistry(), Deployer: checkDeployer{}, Tokens: func() *Tokens { return toks }, Incidents: reports{m}})
	h := s.Handler()
	paths := []string{"/api/v1/deployments", "/api/v1/incidents/%s/approve", "/api/v1/incidents/%s/deny", "/api/v1/incidents/%s/close"}
	f.Add(uint8(0), "1", []byte(`{"service":"checkout","version":"v2","baseline":"v1"}`), false)
	f.Add(uint8(0), "1", []byte(`{"service":"checkout","version":"../../etc"}`), true)
	f.Add(uint8(1), "1", []byte(`{"reason":"confirmed on dashboards"}`), false)
	f.Add(uint8(2), "1", []byte(`{"reason":"not now"}`), false)
	f.Add(uint8(3), "1", []byte(`{"reason":"rolled back by hand"}`), true)
	f.Add(uint8(1), "-1", []byte(`{"reason":1}`), false)
	f.Add(uint8(3), "9223372036854775807", []byte(`{}{}`), false)
	f.Add(uint8(1), "1", []byte(""), false)
	f.Fuzz(func(t *testing.T, which uint8, id string, body []byte, chunked bool) {
		path := paths[int(which)%len(paths)]
		if strings.Contains(path, "%s") {
			path = fmt.Sprintf(path, url.PathEscape(id))
		}
		r := httptest.NewRequest("POST", path, strings.NewReader(string(body)))
		r.Header.Set("Authorization", "Bearer "+adminToken)
		if chunked {
			r.ContentLength = -1
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("POST %s %q: %d %s", path, body, w.Code, w.Body)
		}
		// The mux's own answers (a redirect to the clean path, 404, 405)
		// are text; Guardian's are JSON.
		if w.Header().Get("Content-Type") == "application/json" && !json.Valid(w.Body.Bytes()) {
			t.Fatalf("POST %s %q: %d, not JSON: %q", path, body, w.Code, w.Body)
		}
		if w.Code/100 == 2 && w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("POST %s %q: %d with %q", path, body, w.Code, w.Header().Get("Content-Type"))
		}
	})
}

// checkDeployer accepts checkout's valid versions and keeps nothing.
type checkDeployer struct{}

func (checkDeployer) Announce(_ context.Context, service, version, baseline string) (rollout.Event, error) {
	if service != "checkout" {
		return rollout.Event{}, fmt.Errorf("%w %q", rollout.ErrUnknownService, service)
	}
	if err := rollout.ValidVersion(version); err != nil {
		return rollout.Event{}, err
	}
	return rollout.Event{Service: service, Version: version, Baseline: baseline}, nil
}
