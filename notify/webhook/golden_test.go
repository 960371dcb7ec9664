package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/notify/internal/eventsample"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestGolden posts every event type receivers get, with the default text
// and with a templates.text override, and compares the bodies with
// testdata/<type>.golden (go test -update rewrites them).
func TestGolden(t *testing.T) {
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
	}))
	defer srv.Close()
	plain, err := New(config.Webhook{URL: srv.URL}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	templated, err := New(config.Webhook{URL: srv.URL, Templates: config.Templates{
		Text: `{{.Service}} #{{.Incident}} {{.Type}} ({{.State}}): {{.Text}}{{with .Links.Incident}} — {{.}}{{end}}`}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range eventsample.All() {
		t.Run(string(e.Type), func(t *testing.T) {
			var out bytes.Buffer
			for _, n := range []*Notifier{plain, templated} {
				if _, err := n.Notify(context.Background(), e); err != nil {
					t.Fatal(err)
				}
				var v any
				if err := json.Unmarshal(got, &v); err != nil {
					t.Fatalf("body is not JSON: %v\n%s", err, got)
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
