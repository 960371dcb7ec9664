package web

import (
	"bufio"
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

// minTokenLen is the shortest token accepted: shorter ones are guessable.
const minTokenLen = 16

// token is a named bearer token; only its hash is kept in memory.
type token struct {
	name string
	hash [sha256.Size]byte
}

// Tokens authenticates bearer tokens read from a file of "name:token" lines
// ('#' starts a comment). The file is read again when its modification time
// or size changes, so a rotated Kubernetes Secret takes effect without a
// reload. A file that becomes invalid keeps the last good tokens and is
// reported by Err.
type Tokens struct {
	path string

	mu      sync.Mutex
	tokens  []token
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

// Authenticate returns the name of the token in r's Authorization header.
// Every configured token is compared in constant time.
func (t *Tokens) Authenticate(r *http.Request) (string, error) {
	if t == nil || t.path == "" {
		return "", fmt.Errorf("%w: no tokens_file configured", ErrUnauthorized)
	}
	h := r.Header.Get("Authorization")
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(cred) == "" {
		return "", fmt.Errorf("%w: missing bearer token", ErrUnauthorized)
	}
	_ = t.refresh() // keeps the last good tokens on error; Err reports it
	sum := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	t.mu.Lock()
	defer t.mu.Unlock()
	name := ""
	for _, tok := range t.tokens {
		if subtle.ConstantTimeCompare(sum[:], tok.hash[:]) == 1 && name == "" {
			name = tok.name
		}
	}
	if name == "" {
		return "", fmt.Errorf("%w: unknown token", ErrUnauthorized)
	}
	return name, nil
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

// ParseTokens parses "name:token" lines. Names must be unique and tokens at
// least 16 characters long. Errors name the line, never the token.
func ParseTokens(data []byte) ([]token, error) {
	var (
		toks  []token
		names = map[string]bool{}
		errs  []error
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, secret, ok := strings.Cut(line, ":")
		name, secret = strings.TrimSpace(name), strings.TrimSpace(secret)
		switch {
		case !ok || name == "":
			errs = append(errs, fmt.Errorf("line %d: want name:token", n))
		case len(secret) < minTokenLen:
			errs = append(errs, fmt.Errorf("line %d: token for %q is shorter than %d characters", n, name, minTokenLen))
		case names[name]:
			errs = append(errs, fmt.Errorf("line %d: duplicate name %q", n, name))
		default:
			names[name] = true
			toks = append(toks, token{name: name, hash: sha256.Sum256([]byte(secret))})
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(toks) == 0 {
		return nil, errors.New("no tokens")
	}
	return toks, nil
}
