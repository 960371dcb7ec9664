package outage

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/source"
)

var (
	prom = Source{ID: "prom", Kind: KindPrometheus, URL: "http://prometheus:9090",
		Services: []string{"checkout", "payments"}, Receivers: []string{"oncall"}}
	scrape = Source{ID: ScrapeID("cart"), Kind: KindScrape, URL: "http://cart:8080/metrics",
		Services: []string{"cart"}, Receivers: []string{"oncall"}}
)

const refused = `Post "http://prometheus:9090/api/v1/query": dial tcp 10.0.0.7:9090: connect: connection refused`

// The events say what, since when, what Guardian does meanwhile and, on
// recovery, how long it lasted; their IDs are src_<source>_<n>, bound to no
// incident.
func TestEvents(t *testing.T) {
	down := Transition{Change: Unreachable, Since: at(0), At: at(120), Reason: source.ReasonUnavailable}
	back := Transition{Change: Recovered, Since: at(0), At: at(252)}
	for _, tc := range []struct {
		name    string
		src     Source
		tr      Transition
		n       int
		id      string
		typ     event.Type
		service string
		state   string
		text    []string
		data    map[string]any
	}{
		{
			name: "named source unreachable", src: prom, tr: down, n: 1,
			id: "src_prom_1", typ: event.SourceUnreachable, service: "", state: "unreachable",
			text: []string{
				`metric source "prom" (http://prometheus:9090) is unreachable`,
				"its queries have failed since 2026-03-01T12:00:00Z (2m0s; unavailable: " + refused + ")",
				"Guardian is blind for checkout and payments meanwhile: no trigger can judge; no rollback happens for lack of data.",
			},
			data: map[string]any{"source": "prom", "kind": "prometheus", "url": "http://prometheus:9090",
				"services": []any{"checkout", "payments"}, "since": "2026-03-01T12:00:00Z", "reason": "unavailable", "error": refused},
		},
		{
			name: "named source recovered", src: prom, tr: back, n: 2,
			id: "src_prom_2", typ: event.SourceRecovered, service: "", state: "reachable",
			text: []string{
				`metric source "prom" (http://prometheus:9090) answers again: it was unreachable for 4m12s, since 2026-03-01T12:00:00Z.`,
				"Guardian judges checkout and payments again.",
			},
			data: map[string]any{"source": "prom", "kind": "prometheus", "url": "http://prometheus:9090",
				"services": []any{"checkout", "payments"}, "since": "2026-03-01T12:00:00Z", "duration_seconds": 252.0},
		},
		{
			name: "scrape unreachable", src: scrape, tr: down, n: 7,
			id: "src_scrape:cart_7", typ: event.SourceUnreachable, service: "cart", state: "unreachable",
			text: []string{
				"the metrics endpoint of cart (http://cart:8080/metrics, scraped by Guardian) is unreachable",
				"its scrapes have failed since 2026-03-01T12:00:00Z",
				"Guardian is blind for cart meanwhile",
			},
			data: map[string]any{"source": "scrape:cart", "kind": "scrape", "url": "http://cart:8080/metrics",
				"services": []any{"cart"}, "since": "2026-03-01T12:00:00Z", "reason": "unavailable", "error": refused},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e = RecoveredEvent(tc.src, tc.n, tc.tr)
			if tc.typ == event.SourceUnreachable {
				e = UnreachableEvent(tc.src, tc.n, tc.tr, refused)
			}
			if e.ID != tc.id || e.Type != tc.typ || e.Sequence != tc.n || !e.Time.Equal(tc.tr.At) ||
				e.Incident != 0 || e.Service != tc.service || e.State != tc.state || e.Severity != "" {
				t.Errorf("event %+v", e)
			}
			for _, want := range tc.text {
				if !strings.Contains(e.Text, want) {
					t.Errorf("text %q\nlacks %q", e.Text, want)
				}
			}
			// The wire form, as receivers get it (and the outbox keeps it).
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			var wire map[string]any
			if err := json.Unmarshal(b, &wire); err != nil {
				t.Fatal(err)
			}
			if wire["incident"] != 0.0 || wire["type"] != string(tc.typ) || wire["id"] != tc.id {
				t.Errorf("wire form %s", b)
			}
			data, _ := json.Marshal(wire["data"])
			want, _ := json.Marshal(tc.data)
			if string(data) != string(want) {
				t.Errorf("data\n %s\nwant\n %s", data, want)
			}
		})
	}
}

func TestTextHelpers(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{list(nil), "no service"},
		{list([]string{"a"}), "a"},
		{list([]string{"a", "b"}), "a and b"},
		{list([]string{"a", "b", "c"}), "a, b and c"},
		{list([]string{"a", "b", "c", "d", "e", "f", "g"}), "a, b, c, d, e and 2 more services"},
		{clip("short", 10), "short"},
		{clip("ééé", 3), "é…"},
		{round(1500 * time.Microsecond).String(), "2ms"},
		{round(90*time.Second + 400*time.Millisecond).String(), "1m30s"},
		{Redact("https://user:pw@prom.example:9090/prefix?token=x#frag"), "https://prom.example:9090/prefix"},
		{Redact("http://127.0.0.1:9090"), "http://127.0.0.1:9090"},
		{Redact("://bad"), ""},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// A long error is cut in the text, and kept whole in the data.
func TestLongError(t *testing.T) {
	long := strings.Repeat("x", 1000)
	e := UnreachableEvent(prom, 1, Transition{Change: Unreachable, Since: at(0), At: at(60), Reason: "timeout"}, long)
	if strings.Contains(e.Text, long) || !strings.Contains(e.Text, strings.Repeat("x", maxErrorText)+"…") {
		t.Errorf("text %q", e.Text)
	}
	if e.Data["error"] != long {
		t.Error("data lacks the whole error")
	}
}
