package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// oddVersions are label values with bytes PromQL and JSON treat specially.
var oddVersions = []string{
	"v2-\uFFFD",
	`v2"} or vector(1) #`,
	"v2`}[30s]) or vector(0)) * 0 #",
	`v2\`,
	"v2\nnext",
	"v2\x00",
	"v2'",
}

// A version label with odd bytes is a deploy like any other: its event
// holds the exact version, and a restart does not forget it.
func TestObserveOddVersions(t *testing.T) {
	ts := time.Unix(1_700_000_000, 0)
	for _, v := range oddVersions {
		d := newDetector(t)
		if _, err := d.Observe(context.Background(), ts, versions(map[string]float64{"v1": 10})); err != nil {
			t.Fatal(err)
		}
		ev, err := d.Observe(context.Background(), ts.Add(time.Minute), versions(map[string]float64{"v1": 5, v: 5}))
		if err != nil {
			t.Fatal(err)
		}
		if ev == nil || ev.Version != v || ev.Baseline != "v1" {
			t.Fatalf("version %q: event %+v, want a deploy of it replacing v1", v, ev)
		}
		b, err := json.Marshal(d.State())
		if err != nil {
			t.Fatal(err)
		}
		var st State
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		r := newDetector(t)
		r.Restore(st)
		if !r.Known(v) || r.Current() != v {
			t.Errorf("version %q: after a restart known %v, current %q", v, r.Known(v), r.Current())
		}
	}
}

// An announced version must be one a series can carry: Prometheus refuses
// label values that are not valid UTF-8, so such a version could never be
// judged. U+FFFD itself is valid.
func TestAnnounceRefusesInvalidUTF8(t *testing.T) {
	ts := time.Unix(1_700_000_000, 0)
	d := newDetector(t)
	for _, tc := range []struct{ version, baseline string }{{"v2\xff", ""}, {"v2", "v1\xe2\x82"}} {
		if _, err := d.Announce(tc.version, tc.baseline, ts); !errors.Is(err, ErrInvalidVersion) {
			t.Errorf("Announce(%q, %q) err %v, want ErrInvalidVersion", tc.version, tc.baseline, err)
		}
	}
	if ev, err := d.Announce("v2-\uFFFD", "v1", ts); err != nil || ev.Version != "v2-\uFFFD" {
		t.Errorf("Announce(U+FFFD): %+v, %v", ev, err)
	}
}
