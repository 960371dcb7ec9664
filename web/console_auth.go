package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"go.uber.org/zap"
)

// The console's cookies.
const (
	// sessionCookie holds a signed-in session: the token's name, the
	// expiry, a random nonce and an HMAC over them keyed by the token's
	// hash. It never holds the token: removing or rotating the token ends
	// its sessions.
	sessionCookie = "guardian_session"
	// csrfCookie holds the random CSRF token of a person the
	// authenticating proxy named (--web.console.user-header).
	csrfCookie = "guardian_csrf"
	// csrfField is the form field every console POST carries.
	csrfField = "csrf_token"
)

// consoleUser is who a console request comes from.
type consoleUser struct {
	// By names the person on the timeline: "token:NAME" or "proxy:NAME".
	By string
	// Scopes are what the person may do.
	Scopes Scope
	// CSRF is the token the person's forms must carry.
	CSRF string
	// Proxy: the authenticating proxy named the person; there is no
	// sign-out.
	Proxy bool
	// nonce identifies a token session (for sign-out).
	nonce  string
	expiry time.Time
}

// sessions signs and checks the console's session cookies and remembers
// the sessions signed out before their expiry.
type sessions struct {
	mu      sync.Mutex
	revoked map[string]time.Time // nonce → expiry
}

// maxRevoked bounds the signed-out sessions remembered: the expired ones
// are forgotten first, then any (the browser dropped their cookies when
// they signed out).
const maxRevoked = 10000

func sessionKey(tok Token) []byte {
	m := hmac.New(sha256.New, tok.hash[:])
	m.Write([]byte("guardian console session v1"))
	return m.Sum(nil)
}

func mac(key []byte, parts ...string) string {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

var b64 = base64.RawURLEncoding

// issue returns the cookie value of a new session of tok until expiry.
func (ss *sessions) issue(tok Token, expiry time.Time) (string, error) {
	var nonce [18]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", err
	}
	name, exp, n := b64.EncodeToString([]byte(tok.Name)), strconv.FormatInt(expiry.Unix(), 10), b64.EncodeToString(nonce[:])
	return name + "." + exp + "." + n + "." + mac(sessionKey(tok), "session", name, exp, n), nil
}

// check returns the user of a session cookie's value, signed by a token
// that toks still has, not expired nor signed out at now.
func (ss *sessions) check(toks *Tokens, value string, now time.Time) (*consoleUser, error) {
	parts := strings.Split(value, ".")
	if len(parts) != 4 {
		return nil, errors.New("malformed session cookie")
	}
	rawName, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, errors.New("malformed session cookie")
	}
	secs, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return nil, errors.New("malformed session cookie")
	}
	tok, ok := toks.named(string(rawName))
	if !ok {
		return nil, errors.New("the session's token is no longer configured")
	}
	key := sessionKey(tok)
	if !hmac.Equal([]byte(mac(key, "session", parts[0], parts[1], parts[2])), []byte(parts[3])) {
		return nil, errors.New("session cookie with a wrong signature")
	}
	expiry := time.Unix(secs, 0)
	if !now.Before(expiry) {
		return nil, errors.New("session expired")
	}
	ss.mu.Lock()
	_, out := ss.revoked[parts[2]]
	ss.mu.Unlock()
	if out {
		return nil, errors.New("session signed out")
	}
	return &consoleUser{By: "token:" + tok.Name, Scopes: tok.Scopes, CSRF: mac(key, "csrf", parts[2]), nonce: parts[2], expiry: expiry}, nil
}

// revoke remembers that the session nonce signed out, until its expiry.
func (ss *sessions) revoke(nonce string, expiry, now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.revoked == nil {
		ss.revoked = map[string]time.Time{}
	}
	if len(ss.revoked) >= maxRevoked {
		for n, exp := range ss.revoked {
			if !now.Before(exp) {
				delete(ss.revoked, n)
			}
		}
	}
	for n := range ss.revoked {
		if len(ss.revoked) < maxRevoked {
			break
		}
		delete(ss.revoked, n)
	}
	ss.revoked[nonce] = expiry
}

// consoleUser returns who r comes from: the person the authenticating
// proxy names, when --web.console.user-header is set and the request has
// it, else the signed-in session; nil for nobody. For a person the proxy
// names, a CSRF cookie is set on w when the request has none.
func (s *Server) consoleUser(w http.ResponseWriter, r *http.Request) *consoleUser {
	if h := s.opts.Flags.Console.UserHeader; h != "" {
		if name := r.Header.Get(h); name != "" {
			if !validProxyUser(name) {
				s.log.Warn("console: unusable user name from the proxy header", zap.String("header", h))
				return nil
			}
			u := &consoleUser{By: "proxy:" + name, Scopes: ScopeRead | ScopeApprove, Proxy: true}
			if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 {
				u.CSRF = c.Value
			} else if w != nil {
				var b [24]byte
				if _, err := rand.Read(b[:]); err == nil {
					u.CSRF = b64.EncodeToString(b[:])
					http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: u.CSRF, Path: "/", HttpOnly: true,
						SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
				}
			}
			return u
		}
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	var toks *Tokens
	if s.opts.Tokens != nil {
		toks = s.opts.Tokens()
	}
	u, err := s.sessions.check(toks, c.Value, time.Now())
	if err != nil {
		s.log.Debug("console: session not accepted", zap.String("reason", err.Error()))
		return nil
	}
	return u
}

// validProxyUser accepts a user name of printable characters without
// spaces, at most 128 bytes.
func validProxyUser(name string) bool {
	if len(name) > 128 {
		return false
	}
	for _, c := range name {
		if !unicode.IsPrint(c) || unicode.IsSpace(c) {
			return false
		}
	}
	return true
}

// sameOrigin reports whether a browser sent r from one of Guardian's own
// pages: Sec-Fetch-Site, when sent, must say same-origin, and Origin, when
// sent, must be the request's own host (or the external URL's). Clients
// that send neither (curl) still need the session and its CSRF token.
func (s *Server) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" among others
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	if ext := s.opts.Flags.ExternalURL; ext != "" {
		if e, err := url.Parse(ext); err == nil && strings.EqualFold(e.Scheme, u.Scheme) && strings.EqualFold(e.Host, u.Host) {
			return true
		}
	}
	return false
}

// secure reports whether cookies must be Secure: Guardian serves TLS, or
// people reach it at an https external URL (a proxy ends TLS).
func (s *Server) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(strings.ToLower(s.opts.Flags.ExternalURL), "https:")
}

// setSession sets the session cookie.
func (s *Server) setSession(w http.ResponseWriter, r *http.Request, value string, expiry time.Time) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/", Expires: expiry, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
}

// clearSession removes the session cookie.
func (s *Server) clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
}

// safeNext returns next when it is a path on this server, else "/".
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/"
	}
	return next
}
