package slack

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxSkew is how far a request's X-Slack-Request-Timestamp may be from
// Guardian's clock, as Slack advises.
const MaxSkew = 5 * time.Minute

// maxSeen bounds the signatures remembered against replays.
const maxSeen = 10000

// Why a request is refused before it is read.
var (
	errNoSignature  = errors.New("no X-Slack-Signature or X-Slack-Request-Timestamp")
	errBadSignature = errors.New("signature does not match any configured signing secret")
	errStale        = errors.New("X-Slack-Request-Timestamp is not within 5 minutes of now")
	errReplay       = errors.New("request already seen (replay)")
	errBusy         = errors.New("too many recent requests to remember")
)

// Sign returns the X-Slack-Signature of body sent at ts with secret:
// "v0=" and the hex HMAC-SHA256 of "v0:{ts}:{body}".
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + strconv.FormatInt(ts, 10) + ":"))
	m.Write(body)
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}

// verify checks a request's signature against each secret and returns the
// index of the one that signed it.
func verify(h http.Header, body []byte, secrets []string, now time.Time) (int, string, error) {
	sig, tsv := h.Get("X-Slack-Signature"), h.Get("X-Slack-Request-Timestamp")
	if sig == "" || tsv == "" {
		return -1, "", errNoSignature
	}
	ts, err := strconv.ParseInt(tsv, 10, 64)
	if err != nil {
		return -1, "", errStale
	}
	if d := now.Sub(time.Unix(ts, 0)); d > MaxSkew || d < -MaxSkew {
		return -1, "", errStale
	}
	if !strings.HasPrefix(sig, "v0=") {
		return -1, "", errBadSignature
	}
	got, err := hex.DecodeString(sig[len("v0="):])
	if err != nil {
		return -1, "", errBadSignature
	}
	found := -1
	for i, s := range secrets {
		want, _ := hex.DecodeString(Sign(s, ts, body)[len("v0="):])
		// Every secret is tried, so the time taken does not tell which matched.
		if hmac.Equal(got, want) && found < 0 {
			found = i
		}
	}
	if found < 0 {
		return -1, "", errBadSignature
	}
	return found, strings.ToLower(sig), nil
}

// seen remembers the signatures of the requests accepted within the last
// MaxSkew: a request whose timestamp is older is refused as stale anyway,
// so a signature need not be kept longer. At most maxSeen are kept; when
// that many fresh ones are kept, requests are refused until some expire
// (only requests with valid signatures get this far).
type seen struct {
	mu    sync.Mutex
	until map[string]time.Time
}

// add records sig until expiry; it fails if sig was seen.
func (s *seen) add(sig string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until == nil {
		s.until = map[string]time.Time{}
	}
	if t, ok := s.until[sig]; ok && now.Before(t) {
		return errReplay
	}
	if len(s.until) >= maxSeen {
		for k, t := range s.until {
			if !now.Before(t) {
				delete(s.until, k)
			}
		}
		if len(s.until) >= maxSeen {
			return errBusy
		}
	}
	// The timestamp may be up to MaxSkew in the future: keep the signature
	// for twice that, past any time it could still be accepted.
	s.until[sig] = now.Add(2 * MaxSkew)
	return nil
}
