package config

import (
	"strings"
	"testing"
	"time"
)

func TestStatusPage(t *testing.T) {
	const svc = `services:
  - name: checkout
    scrape: { url: http://127.0.0.1:8080/metrics }
    triggers: [{name: errors, query: 'sum(rate(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.Window}}]))', above: 0.05}]
`
	t.Run("defaults", func(t *testing.T) {
		cfg, err := Parse([]byte(svc))
		if err != nil {
			t.Fatal(err)
		}
		sp := cfg.StatusPage
		if sp.Title != DefaultStatusPageTitle || sp.ShowDetails || len(sp.Services) != 0 || len(sp.Maintenance) != 0 {
			t.Errorf("defaults: %+v", sp)
		}
	})
	t.Run("set", func(t *testing.T) {
		cfg, err := Parse([]byte(svc + `status_page:
  title: Acme status
  external_url: https://status.example.com/
  show_details: true
  services:
    checkout: {name: Checkout}
  maintenance:
    - services: [checkout]
      start: 2026-12-05T22:00:00+01:00
      end: 2026-12-05T23:30:00+01:00
      message: Database upgrade; checkout may be slow.
`))
		if err != nil {
			t.Fatal(err)
		}
		sp := cfg.StatusPage
		if sp.Title != "Acme status" || sp.ExternalURL != "https://status.example.com/" || !sp.ShowDetails || sp.Services["checkout"].Name != "Checkout" {
			t.Errorf("got %+v", sp)
		}
		if len(sp.Maintenance) != 1 {
			t.Fatalf("maintenance: %+v", sp.Maintenance)
		}
		m := sp.Maintenance[0]
		if !m.Start.Equal(time.Date(2026, 12, 5, 21, 0, 0, 0, time.UTC)) || m.End.Sub(m.Start.Time) != 90*time.Minute ||
			!strings.HasPrefix(m.Message, "Database upgrade") {
			t.Errorf("maintenance: %+v", m)
		}
	})
	t.Run("statuspage receiver", func(t *testing.T) {
		cfg, err := Parse([]byte(svc + `    notify: [public]
notifiers:
  - name: public
    statuspage:
      page_id: kctbh9vrtdwd
      api_key_file: testdata/secrets/statuspage-key
      components: {checkout: ftgks51sfs2d}
`))
		if err != nil {
			t.Fatal(err)
		}
		sp := cfg.Notifiers[0].Statuspage
		if sp.APIKey != "statuspage-key-0123456789" || sp.URL != DefaultStatuspageURL || sp.Components["checkout"] != "ftgks51sfs2d" {
			t.Errorf("got %+v", sp)
		}
		if len(cfg.Warnings) != 0 {
			t.Errorf("warnings: %v", cfg.Warnings)
		}
		if out := cfg.String(); strings.Contains(out, "statuspage-key-0123456789") || !strings.Contains(out, "ftgks51sfs2d") {
			t.Error("the API key is in the marshalled configuration, or the component is not")
		}
	})
}
