package report

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rollback-guardian/guardian/incident"
)

// ProdID is the PRODID of the invites Guardian writes.
const ProdID = "-//Guardian//Incident Post-mortem//EN"

// maxLineOctets is the longest content line RFC 5545 allows, CRLF excluded.
const maxLineOctets = 75

// ICS returns the post-mortem of r, starting at start, as an RFC 5545
// iCalendar request (METHOD:REQUEST) with one VEVENT. Its UID is stable per
// incident ("incident-12-postmortem@guardian"), so a later invite for the
// same incident updates the event; now is the DTSTAMP. Times are written in
// UTC, lines end with CRLF and are folded at 75 octets.
func ICS(r incident.Record, start time.Time, c PostmortemConfig, now time.Time) ([]byte, error) {
	if err := checkRecord(r); err != nil {
		return nil, err
	}
	cc, err := c.compile()
	if err != nil {
		return nil, err
	}
	inv, err := cc.invite(r, start)
	if err != nil {
		return nil, err
	}
	var w icsWriter
	w.line("BEGIN:VCALENDAR")
	w.line("PRODID:" + ProdID)
	w.line("VERSION:2.0")
	w.line("CALSCALE:GREGORIAN")
	w.line("METHOD:REQUEST")
	w.line("BEGIN:VEVENT")
	w.line(fmt.Sprintf("UID:incident-%d-postmortem@guardian", r.ID))
	w.line("DTSTAMP:" + icsTime(now))
	w.line("DTSTART:" + icsTime(inv.Start))
	w.line("DTEND:" + icsTime(inv.End))
	w.line("SUMMARY:" + EscapeText(inv.Title))
	w.line("DESCRIPTION:" + EscapeText(inviteDescription(r, c.ReportURL)))
	w.line("ORGANIZER;CN=" + paramValue(cnOf(cc.organizer.Name, cc.organizer.Address)) + ":mailto:" + cc.organizer.Address)
	for _, a := range cc.attendees {
		l := "ATTENDEE"
		if a.Name != "" {
			l += ";CN=" + paramValue(a.Name)
		}
		w.line(l + ";ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:" + a.Address)
	}
	w.line("SEQUENCE:0")
	w.line("STATUS:CONFIRMED")
	w.line("END:VEVENT")
	w.line("END:VCALENDAR")
	return []byte(w.b.String()), nil
}

func cnOf(name, addr string) string {
	if name != "" {
		return name
	}
	return addr
}

// inviteDescription is the event's description: what happened, in short,
// and where the report is.
func inviteDescription(r incident.Record, reportURL string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Post-mortem of incident #%d (%s, %s): %s.\n", r.ID, orUnknown(r.Severity), orUnknown(r.Service), headline(r))
	if t := triggerSentence(r); t != "" {
		b.WriteString(t + "\n")
	}
	if reportURL == "" {
		reportURL = fmt.Sprintf("incident-%d.md", r.ID)
	}
	b.WriteString("Incident report: " + reportURL + "\n")
	b.WriteString("Preliminary root cause: to be determined in this post-mortem.")
	return b.String()
}

func icsTime(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// EscapeText escapes s as an RFC 5545 TEXT value: backslash, semicolon and
// comma are backslash-escaped, line breaks (CRLF, LF or CR) become \n, and
// other control characters but tab are dropped.
func EscapeText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', ';', ',':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			b.WriteString(`\n`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteByte(c)
		default:
			if c < 0x20 || c == 0x7f {
				continue
			}
			b.WriteByte(c)
		}
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

// paramValue encodes s as a parameter value: RFC 6868 caret encoding for
// line breaks, double quotes and carets, other control characters dropped,
// and quoted when it holds ":", ";" or ",".
func paramValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '^':
			b.WriteString("^^")
		case c == '"':
			b.WriteString("^'")
		case c == '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			b.WriteString("^n")
		case c == '\n':
			b.WriteString("^n")
		case c < 0x20 && c != '\t' || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	v := strings.ToValidUTF8(b.String(), "\uFFFD")
	if strings.ContainsAny(v, ":;,") {
		return `"` + v + `"`
	}
	return v
}

// icsWriter writes content lines, folded, each ended with CRLF.
type icsWriter struct{ b strings.Builder }

func (w *icsWriter) line(s string) { w.b.WriteString(Fold(s)) }

// Fold folds one content line (without its line break) as RFC 5545 section
// 3.1 asks: no physical line longer than 75 octets, continuation lines
// starting with a space, never splitting a UTF-8 sequence. Every physical
// line of the result ends with CRLF.
func Fold(s string) string {
	var b strings.Builder
	n := 0 // octets on the current physical line
	for _, r := range s {
		size := utf8.RuneLen(r) // an invalid byte comes as U+FFFD, 3 octets
		if n+size > maxLineOctets {
			b.WriteString("\r\n ")
			n = 1
		}
		b.WriteRune(r)
		n += size
	}
	b.WriteString("\r\n")
	return b.String()
}
