package outage

import (
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/source"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

// step is one observation: ok, or a failure's reason, at a second after t0,
// and the change it must make (with since, the outage's start).
type step struct {
	at     int
	reason string // "" for a success
	want   Change
	since  int
}

func TestTracker(t *testing.T) {
	const (
		ok          = ""
		unavailable = source.ReasonUnavailable
		timeout     = source.ReasonTimeout
		badQuery    = source.ReasonBadQuery
	)
	for _, tc := range []struct {
		name  string
		after time.Duration
		steps []step
	}{
		{"unreachable once failing for after, then not again", 2 * time.Minute, []step{
			{0, unavailable, Unchanged, 0},
			{60, unavailable, Unchanged, 0},
			{119, unavailable, Unchanged, 0},
			{120, unavailable, Unreachable, 0},
			{180, unavailable, Unchanged, 0},
			{600, timeout, Unchanged, 0},
		}},
		{"one success ends the outage", 2 * time.Minute, []step{
			{10, unavailable, Unchanged, 0},
			{130, unavailable, Unreachable, 10},
			{140, ok, Recovered, 10},
			{150, ok, Unchanged, 0},
			{160, unavailable, Unchanged, 0},
		}},
		{"a success before after starts the count again", 2 * time.Minute, []step{
			{0, unavailable, Unchanged, 0},
			{100, unavailable, Unchanged, 0},
			{110, ok, Unchanged, 0},
			{120, unavailable, Unchanged, 0},
			{239, unavailable, Unchanged, 0},
			{240, unavailable, Unreachable, 120},
		}},
		{"timeouts count", time.Minute, []step{
			{0, timeout, Unchanged, 0},
			{60, timeout, Unreachable, 0},
		}},
		{"bad queries do not count", time.Minute, []step{
			{0, badQuery, Unchanged, 0},
			{60, badQuery, Unchanged, 0},
			{3600, badQuery, Unchanged, 0},
		}},
		{"other failures neither prolong nor end an outage", time.Minute, []step{
			{0, unavailable, Unchanged, 0},
			{30, badQuery, Unchanged, 0},
			{40, source.ReasonCanceled, Unchanged, 0},
			{50, source.ReasonOther, Unchanged, 0},
			{60, unavailable, Unreachable, 0},
			{70, badQuery, Unchanged, 0},
			{80, ok, Recovered, 0},
		}},
		{"off with 0", 0, []step{
			{0, unavailable, Unchanged, 0},
			{3600, unavailable, Unchanged, 0},
			{7200, ok, Unchanged, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := Tracker{After: tc.after}
			for _, s := range tc.steps {
				got := tr.Observe(s.reason == "", s.reason, at(s.at))
				if got.Change != s.want {
					t.Fatalf("at %ds (%q): %s, want %s", s.at, s.reason, got.Change, s.want)
				}
				if s.want == Unchanged {
					if got != (Transition{}) {
						t.Errorf("at %ds: unchanged with details %+v", s.at, got)
					}
					continue
				}
				if !got.Since.Equal(at(s.since)) || !got.At.Equal(at(s.at)) {
					t.Errorf("at %ds: since %v at %v, want since %v at %v", s.at, got.Since, got.At, at(s.since), at(s.at))
				}
				if want := map[Change]string{Unreachable: s.reason}[s.want]; got.Reason != want {
					t.Errorf("at %ds: reason %q, want %q", s.at, got.Reason, want)
				}
				if since, down := tr.Down(); down != (s.want == Unreachable) || (down && !since.Equal(at(s.since))) {
					t.Errorf("at %ds: Down() = %v, %v", s.at, since, down)
				}
			}
		})
	}
}

// The latest failure's reason is the outage's.
func TestTrackerReason(t *testing.T) {
	tr := Tracker{After: time.Minute}
	tr.Observe(false, source.ReasonUnavailable, at(0))
	if got := tr.Observe(false, source.ReasonTimeout, at(60)); got.Reason != source.ReasonTimeout {
		t.Errorf("reason %q, want %q", got.Reason, source.ReasonTimeout)
	}
}

// A resumed outage (saved before a restart) is not begun again by a
// failure; a success ends it, since its first start.
func TestTrackerResume(t *testing.T) {
	tr := Tracker{After: time.Minute}
	tr.Resume(at(0), source.ReasonUnavailable)
	if got := tr.Observe(false, source.ReasonUnavailable, at(600)); got.Change != Unchanged {
		t.Fatalf("failure after resume: %s", got.Change)
	}
	got := tr.Observe(true, "", at(900))
	if got.Change != Recovered || !got.Since.Equal(at(0)) || !got.At.Equal(at(900)) {
		t.Errorf("success after resume: %+v", got)
	}
}

func TestChangeString(t *testing.T) {
	for c, want := range map[Change]string{Unchanged: "unchanged", Unreachable: "unreachable", Recovered: "recovered"} {
		if c.String() != want {
			t.Errorf("%d.String() = %q, want %q", c, c.String(), want)
		}
	}
}
