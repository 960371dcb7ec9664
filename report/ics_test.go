package report

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// physicalLines splits an iCalendar stream on CRLF, failing on a bare CR or
// LF, a missing final CRLF or a line longer than 75 octets.
func physicalLines(t *testing.T, ics string) []string {
	t.Helper()
	if !strings.HasSuffix(ics, "\r\n") {
		t.Fatalf("stream does not end with CRLF")
	}
	lines := strings.Split(strings.TrimSuffix(ics, "\r\n"), "\r\n")
	for i, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			t.Errorf("line %d has a bare CR or LF: %q", i+1, l)
		}
		if len(l) > 75 {
			t.Errorf("line %d is %d octets: %q", i+1, len(l), l)
		}
		if !utf8.ValidString(l) {
			t.Errorf("line %d splits a UTF-8 sequence: %q", i+1, l)
		}
	}
	return lines
}

// unfold joins continuation lines (RFC 5545 section 3.1).
func unfold(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
			out[len(out)-1] += l[1:]
			continue
		}
		out = append(out, l)
	}
	return out
}

// unescapeText reverses EscapeText.
func unescapeText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			if s[i] == 'n' || s[i] == 'N' {
				b.WriteByte('\n')
			} else {
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// property is one content line split into name, parameters and value.
type property struct {
	name   string
	params string
	value  string
}

// parseContentLine splits on the first ':' outside a quoted parameter.
func parseContentLine(t *testing.T, l string) property {
	t.Helper()
	quoted := false
	for i := 0; i < len(l); i++ {
		switch l[i] {
		case '"':
			quoted = !quoted
		case ':':
			if !quoted {
				head := l[:i]
				name, params, _ := strings.Cut(head, ";")
				return property{name: name, params: params, value: l[i+1:]}
			}
		}
	}
	t.Fatalf("content line without a value: %q", l)
	return property{}
}

func parseICS(t *testing.T, ics []byte) []property {
	t.Helper()
	var props []property
	for _, l := range unfold(physicalLines(t, string(ics))) {
		props = append(props, parseContentLine(t, l))
	}
	return props
}

func find(props []property, name string) []property {
	var out []property
	for _, p := range props {
		if p.name == name {
			out = append(out, p)
		}
	}
	return out
}

func TestICSStructure(t *testing.T) {
	start := time.Date(2025, 3, 31, 10, 0, 0, 0, loadLocation(t, "Europe/Berlin"))
	r := resolved()
	r.Service = "checkout, EU; prod\\main" // exercises TEXT escaping in SUMMARY
	c := postmortem()
	c.Title = "Post-mortem: incident #{{.ID}} {{.Service}} {{.Version}} rollback — ünïcödé 🚀 " + strings.Repeat("é", 40)
	ics, err := ICS(r, start, c, generatedAt)
	if err != nil {
		t.Fatal(err)
	}
	props := parseICS(t, ics)
	var names []string
	for _, p := range props {
		names = append(names, p.name)
	}
	wantNames := "BEGIN PRODID VERSION CALSCALE METHOD BEGIN UID DTSTAMP DTSTART DTEND SUMMARY DESCRIPTION ORGANIZER ATTENDEE ATTENDEE ATTENDEE SEQUENCE STATUS END END"
	if got := strings.Join(names, " "); got != wantNames {
		t.Errorf("properties %q, want %q", got, wantNames)
	}
	one := func(name string) property {
		t.Helper()
		ps := find(props, name)
		if len(ps) != 1 {
			t.Fatalf("%d %s properties, want 1", len(ps), name)
		}
		return ps[0]
	}
	for name, want := range map[string]string{
		"PRODID":   "-//Guardian//Incident Post-mortem//EN",
		"VERSION":  "2.0",
		"CALSCALE": "GREGORIAN",
		"METHOD":   "REQUEST",
		"UID":      "incident-12-postmortem@guardian",
		"DTSTAMP":  "20250328T150000Z",
		"DTSTART":  "20250331T080000Z",
		"DTEND":    "20250331T090000Z",
		"SEQUENCE": "0",
		"STATUS":   "CONFIRMED",
	} {
		if got := one(name).value; got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	wantSummary := "Post-mortem: incident #12 checkout, EU; prod\\main v2.4.1 rollback — ünïcödé 🚀 " + strings.Repeat("é", 40)
	if got := unescapeText(one("SUMMARY").value); got != wantSummary {
		t.Errorf("SUMMARY unescapes to %q, want %q", got, wantSummary)
	}
	if got := one("SUMMARY").value; !strings.Contains(got, `checkout\, EU\; prod\\main`) {
		t.Errorf("SUMMARY not TEXT-escaped: %q", got)
	}
	desc := unescapeText(one("DESCRIPTION").value)
	for _, want := range []string{"Post-mortem of incident #12", "Trigger error-rate fired: value 0.079", "\nIncident report: https://guardian.example.com/incidents/12\n", "to be determined"} {
		if !strings.Contains(desc, want) {
			t.Errorf("DESCRIPTION lacks %q: %q", want, desc)
		}
	}
	org := one("ORGANIZER")
	if org.params != "CN=Release Manager" || org.value != "mailto:release-manager@example.com" {
		t.Errorf("ORGANIZER = %+v", org)
	}
	att := find(props, "ATTENDEE")
	wantAtt := []property{
		{"ATTENDEE", "ROLE=REQ-PARTICIPANT;RSVP=TRUE", "mailto:alice@example.com"},
		{"ATTENDEE", "CN=Bob Builder;ROLE=REQ-PARTICIPANT;RSVP=TRUE", "mailto:bob@example.com"},
		{"ATTENDEE", "ROLE=REQ-PARTICIPANT;RSVP=TRUE", "mailto:sre-oncall@example.com"},
	}
	for i := range wantAtt {
		if att[i] != wantAtt[i] {
			t.Errorf("ATTENDEE %d = %+v, want %+v", i, att[i], wantAtt[i])
		}
	}
}

func TestEscapeText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{",;\\\n", `\,\;\\\n`},
		{"a, b; c\\d\ne", `a\, b\; c\\d\ne`},
		{"crlf\r\nand cr\r", `crlf\nand cr\n`},
		{"tab\tkept, bell\x07 dropped", "tab\tkept\\, bell dropped"},
		{"colon: kept", "colon: kept"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got := EscapeText(tc.in)
			if got != tc.want {
				t.Errorf("EscapeText(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	// Round trip, line breaks normalised to LF and controls dropped.
	in := "Ünïcode, semi; back\\slash\nnew line"
	if got := unescapeText(EscapeText(in)); got != in {
		t.Errorf("round trip: %q, want %q", got, in)
	}
}

func TestParamValue(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Bob Builder", "Bob Builder"},
		{"Builder, Bob", `"Builder, Bob"`},
		{"a:b;c", `"a:b;c"`},
		{`The "Boss" ^`, `The ^'Boss^' ^^`},
		{"two\nlines", "two^nlines"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := paramValue(tc.in); got != tc.want {
				t.Errorf("paramValue(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestFold(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"short", "SUMMARY:short"},
		{"exactly 75", "X:" + strings.Repeat("a", 73)},
		{"76", "X:" + strings.Repeat("a", 74)},
		{"long ascii", "DESCRIPTION:" + strings.Repeat("0123456789", 40)},
		{"two-byte runes across the boundary", "X:" + strings.Repeat("é", 100)},
		{"three-byte runes", "X:a" + strings.Repeat("€", 90)},
		{"four-byte runes", "X:ab" + strings.Repeat("🚀", 60)},
		{"mixed", "X:" + strings.Repeat("a€é🚀", 30)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			folded := Fold(tc.in)
			lines := physicalLines(t, folded)
			for i, l := range lines[1:] {
				if !strings.HasPrefix(l, " ") {
					t.Errorf("continuation line %d does not start with a space: %q", i+2, l)
				}
			}
			if got := strings.Join(unfold(lines), ""); got != tc.in {
				t.Errorf("unfolded %q, want %q", got, tc.in)
			}
			if len(tc.in) <= 75 && len(lines) != 1 {
				t.Errorf("a %d-octet line was folded", len(tc.in))
			}
			// Folding is greedy: every line but the last is full, up to one
			// rune of slack.
			for i, l := range lines[:len(lines)-1] {
				if len(l) < 75-3 {
					t.Errorf("line %d has only %d octets", i+1, len(l))
				}
			}
		})
	}
}

func TestICSGoldenIsWellFormed(t *testing.T) {
	start, _ := resolvedInvite(t)
	ics, err := ICS(resolved(), start, postmortem(), generatedAt)
	if err != nil {
		t.Fatal(err)
	}
	props := parseICS(t, ics)
	if props[0].name != "BEGIN" || props[0].value != "VCALENDAR" || props[len(props)-1].value != "VCALENDAR" {
		t.Errorf("not a VCALENDAR: first %+v, last %+v", props[0], props[len(props)-1])
	}
	if !bytes.Contains(ics, []byte("UID:incident-12-postmortem@guardian\r\n")) {
		t.Error("UID is not stable per incident")
	}
}
