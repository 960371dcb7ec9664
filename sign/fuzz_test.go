package sign

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// FuzzVerify: Verify never panics, whatever the headers say; a signature
// verifies for the exact key, id, timestamp and body it was made with, and
// for no other body, timestamp, id or key.
func FuzzVerify(f *testing.F) {
	f.Add([]byte("raw-secret"), "evt_1", int64(1_700_000_000), []byte(`{"type":"incident.declared"}`),
		[]byte("other-secret"), "evt_2", int64(1_700_000_001), []byte(`{"type":"x"}`), "v1,AAAA", "1700000000")
	f.Add([]byte{}, "", int64(0), []byte{}, []byte{0}, "a.1", int64(-1), []byte("2.x"), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,x", "+5")
	f.Add(bytes.Repeat([]byte("k"), 100), "msg_p5jXN8AQM9LWM0D4loKWxJek", int64(1614265330), []byte(`{"test": 2432232314}`),
		bytes.Repeat([]byte("k"), 65), "msg", int64(-9223372036854775808), []byte(nil), "", "99999999999999999999")
	f.Fuzz(func(t *testing.T, key []byte, id string, ts int64, body []byte, key2 []byte, id2 string, ts2 int64, body2 []byte, sigs, tsText string) {
		const tolerance = 5 * time.Minute
		// Arbitrary headers: no panic, and nothing verifies that was not
		// signed with key (a match needs the HMAC).
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, tsText)
		h.Set(HeaderSignature, sigs)
		if err := Verify(h, key, body, time.Unix(ts, 0), tolerance); err == nil {
			sec, _ := strconv.ParseInt(tsText, 10, 64)
			if !bytes.Contains([]byte(sigs), []byte(Signature(key, id, time.Unix(sec, 0), body))) {
				t.Fatalf("verified without the signature: %q", sigs)
			}
		}

		// Signed: verifies at its own time.
		at := time.Unix(ts, 0)
		signed := http.Header{}
		Apply(signed, key, id, at, body)
		if err := Verify(signed, key, body, at, tolerance); err != nil {
			if id == "" {
				if !errors.Is(err, ErrNoSignature) {
					t.Fatalf("no id: %v", err)
				}
				return
			}
			t.Fatalf("a valid signature rejected: %v", err)
		}
		// Another body, timestamp, id or key: rejected.
		if !bytes.Equal(body, body2) {
			if err := Verify(signed, key, body2, at, tolerance); !errors.Is(err, ErrBadSig) {
				t.Fatalf("verified for another body: %v", err)
			}
		}
		if ts2 != ts {
			moved := signed.Clone()
			moved.Set(HeaderTimestamp, strconv.FormatInt(ts2, 10))
			if err := Verify(moved, key, body, time.Unix(ts2, 0), tolerance); !errors.Is(err, ErrBadSig) {
				t.Fatalf("verified for another timestamp: %v", err)
			}
		}
		if id2 != id && id2 != "" {
			other := signed.Clone()
			other.Set(HeaderID, id2)
			if err := Verify(other, key, body, at, tolerance); !errors.Is(err, ErrBadSig) {
				t.Fatalf("verified for another id: %v", err)
			}
		}
		if !sameHMACKey(key, key2) {
			if err := Verify(signed, key2, body, at, tolerance); !errors.Is(err, ErrBadSig) {
				t.Fatalf("verified with another key: %v", err)
			}
		}
		// Outside the tolerance: stale, whatever the signature.
		if ts < 1<<62 {
			if err := Verify(signed, key, body, at.Add(tolerance+time.Second), tolerance); !errors.Is(err, ErrStale) {
				t.Fatalf("a stale signature: %v", err)
			}
		}
	})
}

// sameHMACKey reports whether HMAC-SHA256 treats two keys as one: HMAC
// hashes a key longer than the block and pads a shorter one with zeros, so
// "k" and "k\x00" sign alike. Such keys are the same key.
func sameHMACKey(a, b []byte) bool {
	norm := func(k []byte) []byte {
		if len(k) > sha256.BlockSize {
			s := sha256.Sum256(k)
			k = s[:]
		}
		return bytes.TrimRight(k, "\x00")
	}
	return bytes.Equal(norm(a), norm(b))
}
