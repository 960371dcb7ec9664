// Package sign signs and verifies webhook bodies the way Standard Webhooks
// does: the headers webhook-id, webhook-timestamp and webhook-signature, the
// signature being "v1," and the base64 HMAC-SHA256 of "id.timestamp.body".
// Notifications and the webhook executor both use it, so a receiver checks
// every request from Guardian with one routine.
package sign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of Standard Webhooks.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// secretPrefix marks a base64 secret, as Standard Webhooks writes them.
const secretPrefix = "whsec_"

// Errors of Verify.
var (
	ErrNoSignature = errors.New("missing webhook signature headers")
	ErrBadSig      = errors.New("webhook signature does not match")
	ErrStale       = errors.New("webhook timestamp outside the tolerance")
)

// Key returns the HMAC key for a configured secret: the base64 after
// "whsec_" when present, the raw bytes otherwise.
func Key(secret string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(secret, secretPrefix); ok {
		k, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return nil, fmt.Errorf("decoding whsec_ secret: %w", err)
		}
		return k, nil
	}
	if secret == "" {
		return nil, errors.New("empty secret")
	}
	return []byte(secret), nil
}

// Signature returns "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>".
func Signature(key []byte, id string, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.", id, ts.Unix())
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Apply sets the three headers on h. A nil key sets only the id and
// timestamp (an unsigned receiver).
func Apply(h http.Header, key []byte, id string, ts time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	if key != nil {
		h.Set(HeaderSignature, Signature(key, id, ts, body))
	}
}

// Verify checks h's signature of body against key, and that the timestamp is
// within tolerance of now. It accepts any of several space-separated
// signatures, as Standard Webhooks allows during key rotation.
func Verify(h http.Header, key []byte, body []byte, now time.Time, tolerance time.Duration) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrNoSignature
	}
	sec, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad timestamp %q", ErrNoSignature, tsText)
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: %s", ErrStale, d)
	}
	want := Signature(key, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrBadSig
}
