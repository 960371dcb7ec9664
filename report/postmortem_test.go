package report

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	berlin := loadLocation(t, "Europe/Berlin")
	tokyo := loadLocation(t, "Asia/Tokyo")
	newYork := loadLocation(t, "America/New_York")
	cfg := func(tz, at string, delay time.Duration, business bool) PostmortemConfig {
		c := postmortem()
		c.TimeZone, c.At, c.Delay, c.BusinessDays = tz, at, delay, business
		return c
	}
	for _, tc := range []struct {
		name     string
		resolved time.Time
		cfg      PostmortemConfig
		want     time.Time
	}{
		{"friday afternoon, no delay: monday", time.Date(2025, 3, 21, 16, 0, 0, 0, berlin),
			cfg("Europe/Berlin", "10:00", 0, true), time.Date(2025, 3, 24, 10, 0, 0, 0, berlin)},
		{"friday morning, no delay: same day", time.Date(2025, 3, 21, 9, 0, 0, 0, berlin),
			cfg("Europe/Berlin", "10:00", 0, true), time.Date(2025, 3, 21, 10, 0, 0, 0, berlin)},
		{"exactly at the slot: that slot", time.Date(2025, 3, 21, 10, 0, 0, 0, berlin),
			cfg("Europe/Berlin", "10:00", 0, true), time.Date(2025, 3, 21, 10, 0, 0, 0, berlin)},
		{"a second after the slot: next business day", time.Date(2025, 3, 21, 10, 0, 1, 0, berlin),
			cfg("Europe/Berlin", "10:00", 0, true), time.Date(2025, 3, 24, 10, 0, 0, 0, berlin)},
		{"wednesday, 24h delay: friday", time.Date(2025, 3, 19, 16, 0, 0, 0, berlin),
			cfg("Europe/Berlin", "10:00", 24*time.Hour, true), time.Date(2025, 3, 21, 10, 0, 0, 0, berlin)},
		{"thursday, 24h delay: over the weekend to monday", time.Date(2025, 3, 20, 16, 0, 0, 0, berlin),
			cfg("Europe/Berlin", "10:00", 24*time.Hour, true), time.Date(2025, 3, 24, 10, 0, 0, 0, berlin)},
		{"saturday, every day: sunday", time.Date(2025, 3, 22, 12, 0, 0, 0, berlin),
			cfg("Europe/Berlin", "10:00", 0, false), time.Date(2025, 3, 23, 10, 0, 0, 0, berlin)},
		{"saturday, business days: monday", time.Date(2025, 3, 22, 12, 0, 0, 0, berlin),
			cfg("Europe/Berlin", "10:00", 0, true), time.Date(2025, 3, 24, 10, 0, 0, 0, berlin)},
		// Europe/Berlin goes to summer time on Sunday 2025-03-30: Monday 10:00
		// CEST is 08:00 UTC, not the 09:00 UTC that adding 72h would give.
		{"over the spring DST change", time.Date(2025, 3, 28, 16, 0, 0, 0, berlin),
			cfg("Europe/Berlin", "10:00", 0, true), time.Date(2025, 3, 31, 8, 0, 0, 0, time.UTC)},
		// ... and back on Sunday 2025-10-26: Monday 10:00 CET is 09:00 UTC.
		{"over the autumn DST change", time.Date(2025, 10, 24, 16, 0, 0, 0, berlin),
			cfg("Europe/Berlin", "10:00", 0, true), time.Date(2025, 10, 27, 9, 0, 0, 0, time.UTC)},
		// Saturday 12:00 CET + 24h is Sunday 13:00 CEST: a 12:30 slot that
		// Sunday is too early, whatever the wall clock suggests.
		{"delay over the DST change is real time", time.Date(2025, 3, 29, 12, 0, 0, 0, berlin),
			cfg("Europe/Berlin", "12:30", 24*time.Hour, false), time.Date(2025, 3, 31, 12, 30, 0, 0, berlin)},
		{"delay over the DST change, slot reachable", time.Date(2025, 3, 29, 12, 0, 0, 0, berlin),
			cfg("Europe/Berlin", "13:00", 24*time.Hour, false), time.Date(2025, 3, 30, 13, 0, 0, 0, berlin)},
		// Friday 23:30 UTC is already Saturday 08:30 in Tokyo.
		{"friday in UTC is the weekend in Tokyo", time.Date(2025, 3, 21, 23, 30, 0, 0, time.UTC),
			cfg("Asia/Tokyo", "10:00", 0, true), time.Date(2025, 3, 24, 10, 0, 0, 0, tokyo)},
		// New York goes to summer time on 2025-03-09, three weeks before Berlin.
		{"New York over its own DST change", time.Date(2025, 3, 7, 20, 0, 0, 0, time.UTC),
			cfg("America/New_York", "10:00", 0, true), time.Date(2025, 3, 10, 14, 0, 0, 0, time.UTC)},
		{"New York friday morning", time.Date(2025, 3, 7, 13, 0, 0, 0, time.UTC),
			cfg("America/New_York", "09:30", 0, true), time.Date(2025, 3, 7, 9, 30, 0, 0, newYork)},
		{"empty time zone is UTC, empty at is 10:00", time.Date(2025, 3, 21, 16, 0, 0, 0, berlin),
			cfg("", "", 0, true), time.Date(2025, 3, 24, 10, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Schedule(tc.resolved, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("Schedule(%v) = %v, want %v", tc.resolved, got, tc.want.In(got.Location()))
			}
			wantZone := tc.cfg.TimeZone
			if wantZone == "" {
				wantZone = "UTC"
			}
			if got.Location().String() != wantZone {
				t.Errorf("result in %v, want %s", got.Location(), wantZone)
			}
			if got.Before(tc.resolved.Add(tc.cfg.Delay)) {
				t.Errorf("%v is before resolution + delay", got)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*PostmortemConfig)
		want   string // "" for valid
	}{
		{"fixture", func(*PostmortemConfig) {}, ""},
		{"defaults", func(c *PostmortemConfig) { c.At, c.TimeZone, c.Duration = "", "", 0 }, ""},
		{"unknown time zone", func(c *PostmortemConfig) { c.TimeZone = "Europe/Atlantis" }, `time zone "Europe/Atlantis"`},
		{"at out of range", func(c *PostmortemConfig) { c.At = "25:00" }, `at "25:00"`},
		{"at with am", func(c *PostmortemConfig) { c.At = "10am" }, `at "10am"`},
		{"at with seconds", func(c *PostmortemConfig) { c.At = "10:00:00" }, `at "10:00:00"`},
		{"negative delay", func(c *PostmortemConfig) { c.Delay = -time.Hour }, "delay -1h0m0s is negative"},
		{"negative duration", func(c *PostmortemConfig) { c.Duration = -time.Hour }, "duration -1h0m0s is negative"},
		{"no organizer", func(c *PostmortemConfig) { c.Organizer = "" }, "organizer is required"},
		{"organizer not an email", func(c *PostmortemConfig) { c.Organizer = "release manager" }, "organizer"},
		{"organizer without domain dot", func(c *PostmortemConfig) { c.Organizer = "rm@localhost" }, "organizer"},
		{"no attendees", func(c *PostmortemConfig) { c.Attendees = nil }, "at least one attendee"},
		{"attendee with two ats", func(c *PostmortemConfig) { c.Attendees = []string{"a@b@example.com"} }, "attendees[0]"},
		{"attendee with a space", func(c *PostmortemConfig) { c.Attendees = []string{"ok@example.com", `"a b"@example.com`} }, "attendees[1]"},
		{"attendee with a newline", func(c *PostmortemConfig) { c.Attendees = []string{"a@example.com\nBCC: x@example.com"} }, "attendees[0]"},
		{"attendee with trailing dot", func(c *PostmortemConfig) { c.Attendees = []string{"a.@example.com"} }, "attendees[0]"},
		{"bad title template", func(c *PostmortemConfig) { c.Title = "{{.ID" }, "title"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := postmortem()
			tc.modify(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want == "":
			case err == nil:
				t.Fatalf("Validate() = nil, want an error about %q", tc.want)
			case !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Validate() = %v, want ErrInvalidConfig about %q", err, tc.want)
			}
			if tc.want != "" {
				if _, err := Schedule(t0, c); !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("Schedule with an invalid config: %v", err)
				}
				if _, err := ICS(resolved(), t0, c, t0); !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("ICS with an invalid config: %v", err)
				}
			}
		})
	}
}

func TestNewInvite(t *testing.T) {
	start := time.Date(2025, 3, 31, 10, 0, 0, 0, loadLocation(t, "Europe/Berlin"))
	c := postmortem()
	c.Duration = 90 * time.Minute
	c.Title = "PM #{{.ID}}: {{.Service}}\n{{.Baseline}}"
	inv, err := NewInvite(resolved(), start, c)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Title != "PM #12: checkout v2.4.0" || !inv.End.Equal(start.Add(90*time.Minute)) ||
		inv.Organizer != "Release Manager <release-manager@example.com>" || len(inv.Attendees) != 3 ||
		inv.Attendees[1] != "Bob Builder <bob@example.com>" {
		t.Errorf("NewInvite = %+v", inv)
	}
	c.Title = "{{.NoSuchField}}"
	if _, err := NewInvite(resolved(), start, c); err == nil {
		t.Error("a title naming a missing field renders")
	}
}
