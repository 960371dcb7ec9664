package report

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"text/template"
	"time"

	"github.com/rollback-guardian/guardian/incident"
)

// ErrInvalidConfig is wrapped by the errors of PostmortemConfig.Validate.
var ErrInvalidConfig = errors.New("invalid post-mortem config")

// DefaultPostmortemTitle is the title template used when
// PostmortemConfig.Title is empty. It is executed with the incident.Record.
const DefaultPostmortemTitle = "Post-mortem: incident #{{.ID}} {{.Service}} {{.Version}} rollback"

// Defaults applied to the zero values of a PostmortemConfig.
const (
	DefaultPostmortemAt       = "10:00"
	DefaultPostmortemDuration = time.Hour
)

// PostmortemConfig says when and with whom the post-mortem of a resolved
// incident is scheduled.
type PostmortemConfig struct {
	// Delay is how long after the resolution the meeting may start at the
	// earliest, e.g. 24h. Zero means the next slot at At.
	Delay time.Duration
	// BusinessDays skips Saturdays and Sundays (in TimeZone).
	BusinessDays bool
	// At is the local start time in TimeZone, "15:04" form; "" means "10:00".
	At string
	// TimeZone is an IANA zone name such as "Europe/Berlin"; "" means UTC.
	TimeZone string
	// Duration is the meeting length; zero means one hour.
	Duration time.Duration
	// Organizer is the organizer's email address, optionally with a display
	// name: "Release Manager <rm@example.com>".
	Organizer string
	// Attendees are the required participants' email addresses, in the same
	// form as Organizer.
	Attendees []string
	// Title is a text/template for the meeting title, executed with the
	// incident.Record; "" means DefaultPostmortemTitle.
	Title string
	// ReportURL, when set, is where the incident report can be read (a URL
	// or a path); the invite's description names it. Otherwise the
	// description names the report file, incident-<id>.md.
	ReportURL string
}

// Validate checks that the time zone loads, At parses, the durations make
// sense and every address looks like an email address. Its errors wrap
// ErrInvalidConfig.
func (c PostmortemConfig) Validate() error {
	_, err := c.compile()
	return err
}

// compiled is a validated PostmortemConfig.
type compiled struct {
	loc          *time.Location
	hour, minute int
	duration     time.Duration
	organizer    *mail.Address
	attendees    []*mail.Address
	title        *template.Template
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

func (c PostmortemConfig) compile() (*compiled, error) {
	var out compiled
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("%w: time zone %q: %w", ErrInvalidConfig, c.TimeZone, err)
	}
	out.loc = loc
	at := c.At
	if at == "" {
		at = DefaultPostmortemAt
	}
	t, err := time.Parse("15:04", at)
	if err != nil {
		return nil, fmt.Errorf("%w: at %q: want HH:MM: %w", ErrInvalidConfig, c.At, err)
	}
	out.hour, out.minute = t.Hour(), t.Minute()
	if c.Delay < 0 {
		return nil, invalid("delay %s is negative", c.Delay)
	}
	out.duration = c.Duration
	switch {
	case out.duration == 0:
		out.duration = DefaultPostmortemDuration
	case out.duration < 0:
		return nil, invalid("duration %s is negative", c.Duration)
	}
	if c.Organizer == "" {
		return nil, invalid("organizer is required")
	}
	if out.organizer, err = parseEmail(c.Organizer); err != nil {
		return nil, fmt.Errorf("%w: organizer: %w", ErrInvalidConfig, err)
	}
	if len(c.Attendees) == 0 {
		return nil, invalid("at least one attendee is required")
	}
	for i, a := range c.Attendees {
		addr, err := parseEmail(a)
		if err != nil {
			return nil, fmt.Errorf("%w: attendees[%d]: %w", ErrInvalidConfig, i, err)
		}
		out.attendees = append(out.attendees, addr)
	}
	title := c.Title
	if title == "" {
		title = DefaultPostmortemTitle
	}
	if out.title, err = template.New("title").Option("missingkey=error").Parse(title); err != nil {
		return nil, fmt.Errorf("%w: title: %w", ErrInvalidConfig, err)
	}
	return &out, nil
}

// parseEmail accepts "local@domain.tld" or "Name <local@domain.tld>". The
// address is kept to plain ASCII (letters, digits and "._+-" before the @,
// dot-separated host labels after it) so that it is a valid mailto URI as
// is.
func parseEmail(s string) (*mail.Address, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an email address: %w", s, err)
	}
	local, domain, ok := strings.Cut(a.Address, "@")
	if !ok || local == "" || !validLocal(local) || !validDomain(domain) {
		return nil, fmt.Errorf("%q is not a plain email address (local@domain.tld)", s)
	}
	return a, nil
}

func validLocal(s string) bool {
	if strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if !isAlnum(r) && !strings.ContainsRune("._+-", r) {
			return false
		}
	}
	return true
}

func validDomain(s string) bool {
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !isAlnum(r) && r != '-' {
				return false
			}
		}
	}
	return true
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// Schedule returns the post-mortem's start: the first time at c.At, in
// c.TimeZone, that is not before resolvedAt+c.Delay and, with
// c.BusinessDays, not on a Saturday or Sunday. Resolved on a Friday at 16:00
// with no delay and a 10:00 slot on business days, it is Monday 10:00.
// Days are stepped with time.Date in the zone, so a DST change keeps the
// wall-clock time. The result is in c.TimeZone.
func Schedule(resolvedAt time.Time, c PostmortemConfig) (time.Time, error) {
	cc, err := c.compile()
	if err != nil {
		return time.Time{}, err
	}
	return cc.schedule(resolvedAt, c.Delay, c.BusinessDays), nil
}

func (cc *compiled) schedule(resolvedAt time.Time, delay time.Duration, businessDays bool) time.Time {
	earliest := resolvedAt.Add(delay).In(cc.loc)
	y, m, d := earliest.Date()
	// Eight days always contain an allowed day after the earliest one.
	for i := 0; i < 8; i++ {
		t := time.Date(y, m, d+i, cc.hour, cc.minute, 0, 0, cc.loc)
		if t.Before(earliest) {
			continue
		}
		if businessDays && (t.Weekday() == time.Saturday || t.Weekday() == time.Sunday) {
			continue
		}
		return t
	}
	panic("report: no post-mortem slot within eight days") // unreachable
}

// Invite is a scheduled post-mortem meeting.
type Invite struct {
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Title     string    `json:"title"`
	Organizer string    `json:"organizer"`
	Attendees []string  `json:"attendees"`
}

// NewInvite describes the post-mortem of r starting at start (see Schedule)
// as configured by c: its end, title, organizer and attendees.
func NewInvite(r incident.Record, start time.Time, c PostmortemConfig) (Invite, error) {
	cc, err := c.compile()
	if err != nil {
		return Invite{}, err
	}
	return cc.invite(r, start)
}

func (cc *compiled) invite(r incident.Record, start time.Time) (Invite, error) {
	var title strings.Builder
	if err := cc.title.Execute(&title, r); err != nil {
		return Invite{}, fmt.Errorf("post-mortem title for incident %d: %w", r.ID, err)
	}
	inv := Invite{
		Start:     start,
		End:       start.Add(cc.duration),
		Title:     strings.Join(strings.Fields(title.String()), " "),
		Organizer: displayAddress(cc.organizer),
	}
	for _, a := range cc.attendees {
		inv.Attendees = append(inv.Attendees, displayAddress(a))
	}
	return inv, nil
}

// displayAddress formats a as "Name <addr>", or addr without a name; unlike
// mail.Address.String it does not MIME-encode non-ASCII names.
func displayAddress(a *mail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	return a.Name + " <" + a.Address + ">"
}
