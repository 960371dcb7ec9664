package web

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// ErrUnauthorized is returned when a request carries no valid bearer token.
var ErrUnauthorized = errors.New("unauthorized")

// ErrForbidden is returned when a valid token lacks the scope a request needs.
var ErrForbidden = errors.New("forbidden")

// MinTokenLen is the shortest token accepted: shorter ones are guessable.
const MinTokenLen = 16

// Scope is a permission a token grants, or a set of them (a bit mask).
type Scope uint8

// The scopes of the API. A tokens file line without scopes grants them all.
const (
	// ScopeRead reads: GET /api/v1/... and /metrics, when --web.read-auth
	// asks for a token there.
	ScopeRead Scope = 1 << iota
	// ScopeDeploy announces deploys: POST /api/v1/deployments.
	ScopeDeploy
	// ScopeApprove decides on incidents: approve, deny and close.
	ScopeApprove
	// ScopeAdmin reloads the configuration (POST /-/reload) and implies
	// every other scope.
	ScopeAdmin

	// AllScopes is what a token without a scope list grants.
	AllScopes = ScopeRead | ScopeDeploy | ScopeApprove | ScopeAdmin
)

var scopeNames = []struct {
	s    Scope
	name string
}{{ScopeRead, "read"}, {ScopeDeploy, "deploy"}, {ScopeApprove, "approve"}, {ScopeAdmin, "admin"}}

// String returns the scope names joined by commas ("deploy,read").
func (s Scope) String() string {
	var names []string
	for _, n := range scopeNames {
		if s&n.s != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// Has reports whether the set grants want; admin grants everything.
func (s Scope) Has(want Scope) bool { return s&ScopeAdmin != 0 || s&want == want }

// ParseScopes parses a comma-separated list of scope names.
func ParseScopes(list string) (Scope, error) {
	var s Scope
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		found := false
		for _, n := range scopeNames {
			if item == n.name {
				s |= n.s
				found = true
			}
		}
		if !found {
			// The item is not echoed: it may be the end of a token.
			return 0, errors.New("unknown or empty scope after the last ':': want a comma-separated list of read, deploy, approve, admin")
		}
	}
	return s, nil
}

// Token is a named bearer token and its scopes; only the token's hash is
// kept in memory.
type Token struct {
	Name   string
	Scopes Scope
	hash   [sha256.Size]byte
}

// Tokens authenticates bearer tokens read from a file of "name:token" or
// "name:token:scope,scope" lines ('#' starts a comment). The file is read
// again when its modification time or size changes, so a rotated Kubernetes
// Secret takes effect without a reload. A file that becomes invalid keeps
// the last good tokens and is reported by Err.
type Tokens struct {
	path string

	mu      sync.Mutex
	tokens  []Token
	modTime time.Time
	size    int64
	lastErr error
}

// NewTokens reads path. An empty path gives Tokens that refuse everything.
func NewTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if path == "" {
		return t, nil
	}
	if err := t.refresh(); err != nil {
		return nil, err
	}
	return t, nil
}

// Path returns the tokens file, "" when none is configured.
func (t *Tokens) Path() string { return t.path }

// Authenticate returns the name of the token in r's Authorization header,
// whatever its scopes.
func (t *Tokens) Authenticate(r *http.Request) (string, error) {
	tok, err := t.lookup(r)
	return tok.Name, err
}

// Authorize returns the name of the token in r's Authorization header when
// it grants scope: ErrUnauthorized without a valid token, ErrForbidden when
// the token lacks the scope.
func (t *Tokens) Authorize(r *http.Request, scope Scope) (string, error) {
	tok, err := t.lookup(r)
	if err != nil {
		return "", err
	}
	if !tok.Scopes.Has(scope) {
		return tok.Name, fmt.Errorf("%w: token %q has scopes %s, this request needs %s", ErrForbidden, tok.Name, tok.Scopes, scope)
	}
	return tok.Name, nil
}

// lookup finds the token of r. Every configured token is compared in
// constant time.
func (t *Tokens) lookup(r *http.Request) (Token, error) {
	if t == nil || t.path == "" {
		return Token{}, fmt.Errorf("%w: no tokens_file configured", ErrUnauthorized)
	}
	h := r.Header.Get("Authorization")
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(cred) == "" {
		return Token{}, fmt.Errorf("%w: missing bearer token", ErrUnauthorized)
	}
	return t.bySecret(strings.TrimSpace(cred))
}

// bySecret finds the token whose secret is secret. Every configured token
// is compared in constant time.
func (t *Tokens) bySecret(secret string) (Token, error) {
	if t == nil || t.path == "" {
		return Token{}, fmt.Errorf("%w: no tokens_file configured", ErrUnauthorized)
	}
	_ = t.refresh() // keeps the last good tokens on error; Err reports it
	sum := sha256.Sum256([]byte(secret))
	t.mu.Lock()
	defer t.mu.Unlock()
	var found Token
	for _, tok := range t.tokens {
		if subtle.ConstantTimeCompare(sum[:], tok.hash[:]) == 1 && found.Name == "" {
			found = tok
		}
	}
	if found.Name == "" {
		return Token{}, fmt.Errorf("%w: unknown token", ErrUnauthorized)
	}
	return found, nil
}

// named returns the token called name, as the file says now.
func (t *Tokens) named(name string) (Token, bool) {
	if t == nil || t.path == "" {
		return Token{}, false
	}
	_ = t.refresh()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tok := range t.tokens {
		if tok.Name == name {
			return tok, true
		}
	}
	return Token{}, false
}

// Err returns the error of the last read of the file, if it failed.
func (t *Tokens) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastErr
}

func (t *Tokens) refresh() error {
	fi, err := os.Stat(t.path)
	if err != nil {
		return t.setErr(fmt.Errorf("reading tokens file: %w", err))
	}
	t.mu.Lock()
	unchanged := t.tokens != nil && fi.ModTime().Equal(t.modTime) && fi.Size() == t.size
	t.mu.Unlock()
	if unchanged {
		return nil
	}
	data, err := os.ReadFile(t.path)
	if err != nil {
		return t.setErr(fmt.Errorf("reading tokens file: %w", err))
	}
	toks, err := ParseTokens(data)
	if err != nil {
		return t.setErr(fmt.Errorf("tokens file %s: %w", t.path, err))
	}
	t.mu.Lock()
	t.tokens, t.modTime, t.size, t.lastErr = toks, fi.ModTime(), fi.Size(), nil
	t.mu.Unlock()
	return nil
}

func (t *Tokens) setErr(err error) error {
	t.mu.Lock()
	t.lastErr = err
	t.mu.Unlock()
	return err
}

// ReadTokensFile reads and parses a tokens file, as the daemon does; the
// check command uses it to refuse what the daemon would refuse.
func ReadTokensFile(path string) ([]Token, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading tokens file: %w", err)
	}
	toks, err := ParseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return toks, nil
}

// ParseTokens parses lines of "name:token", which grants every scope, or
// "name:token:scopes", scopes being a comma-separated list of read, deploy,
// approve and admin. The scopes are what follows the token's last ':' when
// that is made of lowercase letters, commas and spaces only; a token that
// contains ':' itself keeps working when it is not followed by such a list
// (write the scopes explicitly to be sure). Names must be unique and tokens
// at least MinTokenLen characters long. Errors name the line, never the
// token.
func ParseTokens(data []byte) ([]Token, error) {
	var (
		toks  []Token
		names = map[string]bool{}
		errs  []error
	)
	for i, raw := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		line := strings.TrimSpace(string(raw))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, secret, ok := strings.Cut(line, ":")
		name, secret = strings.TrimSpace(name), strings.TrimSpace(secret)
		scopes := AllScopes
		if j := strings.LastIndexByte(secret, ':'); ok && j >= 0 && looksLikeScopes(secret[j+1:]) {
			s, err := ParseScopes(secret[j+1:])
			if err != nil {
				errs = append(errs, fmt.Errorf("line %d: %w", n, err))
				continue
			}
			scopes, secret = s, strings.TrimSpace(secret[:j])
		}
		switch {
		case !ok || name == "":
			errs = append(errs, fmt.Errorf("line %d: want name:token or name:token:scopes", n))
		case len(secret) < MinTokenLen:
			errs = append(errs, fmt.Errorf("line %d: token for %q is shorter than %d characters", n, name, MinTokenLen))
		case names[name]:
			errs = append(errs, fmt.Errorf("line %d: duplicate name %q", n, name))
		default:
			names[name] = true
			toks = append(toks, Token{Name: name, Scopes: scopes, hash: sha256.Sum256([]byte(secret))})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(toks) == 0 {
		return nil, errors.New("no tokens")
	}
	return toks, nil
}

// looksLikeScopes reports whether s is shaped like a scope list: lowercase
// letters, commas and spaces, with at least one letter.
func looksLikeScopes(s string) bool {
	letter := false
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z':
			letter = true
		case c == ',' || c == ' ' || c == '\t':
		default:
			return false
		}
	}
	return letter
}
