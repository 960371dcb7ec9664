package statuspage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify/internal/eventsample"
	"github.com/rollback-guardian/guardian/store"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestGolden sends every event type receivers get, each to an incident
// its declaration created, and compares the requests with
// testdata/<type>.golden (go test -update rewrites them).
func TestGolden(t *testing.T) {
	for _, e := range eventsample.All() {
		t.Run(string(e.Type), func(t *testing.T) {
			p, srv := newPage(t)
			n := newNotifier(t, srv.URL, store.NewMemory())
			if e.Type != event.IncidentDeclared && e.Incident != 0 {
				if _, err := n.Notify(context.Background(), eventsample.Event(event.IncidentDeclared, 1)); err != nil {
					t.Fatal(err)
				}
				p.took()
			}
			if _, err := n.Notify(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			calls := p.took()
			if len(calls) == 0 {
				out.WriteString("not sent\n")
			}
			for _, c := range calls {
				fmt.Fprintf(&out, "%s %s\n", c.method, c.path)
				var v any
				if err := json.Unmarshal(c.raw, &v); err != nil {
					t.Fatalf("body is not JSON: %v\n%s", err, c.raw)
				}
				b, _ := json.MarshalIndent(v, "", "  ")
				out.Write(b)
				out.WriteString("\n")
			}
			path := filepath.Join("testdata", string(e.Type)+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, out.Bytes(), want)
			}
		})
	}
}
