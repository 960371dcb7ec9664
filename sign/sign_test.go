package sign

import (
	"encoding/base64"
	"errors"
	"net/http"
	"testing"
	"time"
)

// The example from the Standard Webhooks specification's reference
// implementations: secret, id, timestamp and payload with their signature.
func TestSignatureMatchesSpecExample(t *testing.T) {
	key, err := Key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := Signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	key := []byte("raw-secret")
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"type":"incident.declared"}`)
	h := http.Header{}
	Apply(h, key, "evt_1", now, body)
	if err := Verify(h, key, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("valid signature rejected: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(h http.Header) ([]byte, time.Time)
		want error
	}{
		{"tampered body", func(http.Header) ([]byte, time.Time) { return []byte(`{"type":"x"}`), now }, ErrBadSig},
		{"other id", func(h http.Header) ([]byte, time.Time) { h.Set(HeaderID, "evt_2"); return body, now }, ErrBadSig},
		{"stale", func(http.Header) ([]byte, time.Time) { return body, now.Add(time.Hour) }, ErrStale},
		{"unsigned", func(h http.Header) ([]byte, time.Time) { h.Del(HeaderSignature); return body, now }, ErrNoSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc := h.Clone()
			b, at := tc.mod(hc)
			if err := Verify(hc, key, b, at, 5*time.Minute); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Rotation: several signatures, one valid.
	hc := h.Clone()
	hc.Set(HeaderSignature, "v1,"+base64.StdEncoding.EncodeToString([]byte("nope"))+" "+h.Get(HeaderSignature))
	if err := Verify(hc, key, body, now, time.Minute); err != nil {
		t.Fatalf("rotation: %v", err)
	}
}

func TestKey(t *testing.T) {
	if _, err := Key(""); err == nil {
		t.Error("empty secret accepted")
	}
	if _, err := Key("whsec_!!!"); err == nil {
		t.Error("bad base64 accepted")
	}
	if k, err := Key("plain"); err != nil || string(k) != "plain" {
		t.Errorf("raw secret: %q %v", k, err)
	}
}
