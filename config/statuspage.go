package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultStatusPageTitle is the status page's default title.
const DefaultStatusPageTitle = "Service status"

// StatusPage configures the stakeholder status page served at /status:
// each service's state derived from its incidents, the incidents' updates
// in plain words, 90 days of history and an Atom feed.
type StatusPage struct {
	// Title heads the page and the feed (default "Service status").
	Title string `yaml:"title"`
	// ExternalURL is the URL stakeholders reach the page's listener at
	// (https://status.example.com/), for the feed's links. Without it the
	// feed links under Guardian's external URL on the main listener, and
	// under the request's own host on --web.status-listen-address.
	ExternalURL string `yaml:"external_url,omitempty"`
	// ShowDetails adds what the page leaves out by default: the versions,
	// the trigger and its evidence, and who decided. Leave it off for a
	// page the public sees.
	ShowDetails bool `yaml:"show_details"`
	// Services give services their public names, by service name; a
	// service not listed shows under its own name.
	Services map[string]StatusPageService `yaml:"services,omitempty"`
	// Maintenance are planned windows: their services show as under
	// maintenance from start to end.
	Maintenance []Maintenance `yaml:"maintenance,omitempty"`
}

// StatusPageService is how the status page shows one service.
type StatusPageService struct {
	// Name is the service's public name ("Checkout").
	Name string `yaml:"name"`
	// Hidden leaves the service off the page and the feed.
	Hidden bool `yaml:"hidden,omitempty"`
}

// Maintenance is a planned maintenance window.
type Maintenance struct {
	// Services names the services under maintenance (at least one).
	Services []string `yaml:"services"`
	// Start and End bound the window, RFC 3339 times
	// ("2026-12-05T22:00:00Z"); End must be after Start.
	Start Time `yaml:"start"`
	End   Time `yaml:"end"`
	// Message tells stakeholders what is done and what they may notice.
	Message string `yaml:"message,omitempty"`
}

// Time is a point in time written as RFC 3339.
type Time struct{ time.Time }

// MarshalYAML writes t as RFC 3339.
func (t Time) MarshalYAML() (any, error) { return t.UTC().Format(time.RFC3339), nil }

// UnmarshalYAML parses an RFC 3339 time such as 2026-12-05T22:00:00Z.
func (t *Time) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want an RFC 3339 time, got %s", describe(n))
	}
	v, err := time.Parse(time.RFC3339, n.Value)
	if err != nil {
		return fmt.Errorf("invalid time %q: want RFC 3339, such as 2026-12-05T22:00:00Z", n.Value)
	}
	t.Time = v
	return nil
}

// MaxStatusPageText bounds the status page's titles, names and messages.
const MaxStatusPageText = 1024

// statusPage checks the status page's settings; services maps the defined
// service names to their paths.
func (v *validator) statusPage(p string, s *StatusPage, services map[string]string) {
	if strings.TrimSpace(s.Title) == "" {
		v.errorf(p+".title", "must not be empty")
	}
	v.statusText(p+".title", s.Title)
	v.externalURL(p+".external_url", s.ExternalURL)
	for _, name := range slices.Sorted(maps.Keys(s.Services)) {
		sp := p + ".services." + name
		if _, ok := services[name]; !ok && !v.inFailed("services") {
			v.errorf(sp, "undefined service %q", name)
		}
		if svc := s.Services[name]; strings.TrimSpace(svc.Name) == "" && !svc.Hidden {
			v.errorf(sp+".name", "required: the service's public name")
		} else {
			v.statusText(sp+".name", svc.Name)
		}
	}
	for i, m := range s.Maintenance {
		mp := fmt.Sprintf("%s.maintenance[%d]", p, i)
		if len(m.Services) == 0 && !v.broken(mp+".services") {
			v.errorf(mp+".services", "required: at least one service")
		}
		for j, name := range m.Services {
			if _, ok := services[name]; !ok && !v.inFailed("services") {
				v.errorf(fmt.Sprintf("%s.services[%d]", mp, j), "undefined service %q", name)
			}
		}
		switch {
		case m.Start.IsZero() && !v.broken(mp+".start"):
			v.errorf(mp+".start", "required")
		case m.End.IsZero() && !v.broken(mp+".end"):
			v.errorf(mp+".end", "required")
		case !m.Start.IsZero() && !m.End.IsZero() && !m.End.After(m.Start.Time):
			v.errorf(mp+".end", "%s is not after start %s", m.End.Format(time.RFC3339), m.Start.Format(time.RFC3339))
		}
		v.statusText(mp+".message", m.Message)
	}
}

func (v *validator) statusText(p, s string) {
	if len(s) > MaxStatusPageText {
		v.errorf(p, "longer than %d bytes", MaxStatusPageText)
	}
}
