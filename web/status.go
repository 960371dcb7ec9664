package web

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/incident"
)

// The status page: a server-rendered page for stakeholders at GET /status,
// its stylesheet at GET /status/status.css and an Atom feed of its
// incidents at GET /status/feed.atom. Each service's state comes from its
// incidents and the configured maintenance windows; the incidents' updates
// are written from their timelines in plain words, without queries,
// versions, triggers or people unless StatusConfig.ShowDetails says so.

// StatusConfig is what the status page shows.
type StatusConfig struct {
	// Title heads the page and the feed ("Service status").
	Title string
	// ShowDetails adds versions, triggers, evidence and who decided to
	// each incident.
	ShowDetails bool
	// Services are the services shown, in order. Nil shows every
	// service that has incidents, under its own name; empty shows none.
	Services []StatusService
	// Maintenance are planned maintenance windows.
	Maintenance []MaintenanceWindow
	// Now is the time the page shows the services at; zero is the
	// current time.
	Now time.Time
	// PublicURL is where the status page's listener is reached, for the
	// feed's links; ExternalURL is Guardian's own external URL. On the
	// main listener the feed links under PublicURL, else ExternalURL,
	// else the request's host; on the status listener under PublicURL,
	// else the request's host.
	PublicURL, ExternalURL string
}

// StatusService is one service on the status page.
type StatusService struct {
	// Name is the service's name in Guardian's configuration.
	Name string
	// Display is its public name; empty is Name.
	Display string
}

// MaintenanceWindow is a planned maintenance of some services.
type MaintenanceWindow struct {
	Services   []string
	Start, End time.Time
	Message    string
}

// ServiceState is how a service stands on the status page.
type ServiceState uint8

// Service states, from best to worst.
const (
	Operational ServiceState = iota
	UnderMaintenance
	Degraded
	MajorOutage
)

var stateNames = []struct{ name, text string }{
	{"operational", "Operational"},
	{"under_maintenance", "Under maintenance"},
	{"degraded", "Degraded performance"},
	{"major_outage", "Major outage"},
}

// String is the state's stable name, the page's data-state attribute:
// operational, under_maintenance, degraded or major_outage.
func (s ServiceState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s].name
	}
	return fmt.Sprintf("ServiceState(%d)", s)
}

// Text is the state in words ("Major outage").
func (s ServiceState) Text() string {
	if int(s) < len(stateNames) {
		return stateNames[s].text
	}
	return s.String()
}

// SeverityState is the state an open incident of severity sev puts its
// service in: SEV-0 and SEV-1 (also P0, P1 and critical, in any case,
// with or without the dash) are a major outage, every other severity
// degraded performance.
func SeverityState(sev string) ServiceState {
	if event.SeverityLevel(sev) == event.LevelCritical {
		return MajorOutage
	}
	return Degraded
}

// HistoryDays is how many days of history the page shows per service.
const HistoryDays = 90

// Limits of the page and the feed.
const (
	maxPastIncidents = 20
	maxFeedEntries   = 50
	// upcomingMaintenance is how far ahead planned maintenance is shown.
	upcomingMaintenance = 14 * 24 * time.Hour
)

//go:embed status/page.html status/status.css
var statusFiles embed.FS

var statusPage = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"datetime": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"when":     func(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04 UTC") },
}).ParseFS(statusFiles, "status/page.html"))

var statusCSS = func() []byte {
	b, err := statusFiles.ReadFile("status/status.css")
	if err != nil {
		panic(err)
	}
	return b
}()

// statusView is what the page renders.
type statusView struct {
	Title       string
	Now         time.Time
	Overall     ServiceState
	OverallText string
	Components  []componentView
	Maintenance []maintenanceView
	Active      []incidentView
	Past        []incidentView
	ShowDetails bool
	From        time.Time // the first day of the history
}

type componentView struct {
	Service, Display string
	State            ServiceState
	// Note is the message of the maintenance the service is under.
	Note string
	Days []dayView
}

type dayView struct {
	Date  time.Time
	State ServiceState
}

// dayCell is a history cell as rendered: its strings made once, not by
// template functions for each of the page's thousands of cells.
type dayCell struct{ ISO, Label, State string }

// Cells are the component's history cells.
func (c componentView) Cells() []dayCell {
	out := make([]dayCell, len(c.Days))
	for i, d := range c.Days {
		date := d.Date.UTC()
		out[i] = dayCell{ISO: date.Format(time.DateOnly), Label: date.Format("2 Jan 2006") + ": " + d.State.Text(), State: d.State.String()}
	}
	return out
}

type maintenanceView struct {
	Services   []string // public names
	Start, End time.Time
	Message    string
	Active     bool
}

type incidentView struct {
	ID       int64
	Service  string // the public name
	Title    string
	State    ServiceState // the state it put the service in
	Open     bool
	Started  time.Time
	Ended    *time.Time
	Updated  time.Time
	Updates  []updateView // newest first
	Details  []string     // with ShowDetails only
	detected time.Time
}

type updateView struct {
	Phase event.Phase
	Text  string
	At    time.Time
	// Detail is the timeline's own entry, with ShowDetails only.
	Detail string
}

// incidentEnd is when an incident ended, or nil while it is open.
func incidentEnd(r incident.Record) *time.Time {
	if r.State.Open() {
		return nil
	}
	for _, t := range []*time.Time{r.ResolvedAt, r.ClosedAt} {
		if t != nil {
			return t
		}
	}
	if n := len(r.Timeline); n > 0 {
		at := r.Timeline[n-1].At
		return &at
	}
	at := r.DetectedAt
	return &at
}

// incidentStart is when an incident began, as far as stakeholders go.
func incidentStart(r incident.Record) time.Time {
	if !r.DetectedAt.IsZero() {
		return r.DetectedAt
	}
	if len(r.Timeline) > 0 {
		return r.Timeline[0].At
	}
	return r.DeployedAt
}

// newIncidentView writes an incident for stakeholders.
func newIncidentView(r incident.Record, display string, details bool) incidentView {
	state := SeverityState(r.Severity)
	v := incidentView{
		ID: r.ID, Service: display, State: state, Open: r.State.Open(),
		Started: incidentStart(r), Ended: incidentEnd(r), detected: r.DetectedAt,
	}
	if state == MajorOutage {
		v.Title = "Major outage of " + display
	} else {
		v.Title = "Degraded performance of " + display
	}
	v.Updated = v.Started
	for _, e := range r.Timeline {
		phase, text, ok := event.Public(e.Type, display)
		if !ok {
			continue
		}
		u := updateView{Phase: phase, Text: text, At: e.At}
		if details {
			u.Detail = e.Message
			if e.Actor != "" && e.Actor != "guardian" {
				u.Detail += " (" + e.Actor + ")"
			}
		}
		if n := len(v.Updates); n > 0 && v.Updates[n-1].Phase == phase && v.Updates[n-1].Text == text && !details {
			continue // a repeat says nothing new
		}
		v.Updates = append(v.Updates, u)
		if e.At.After(v.Updated) {
			v.Updated = e.At
		}
	}
	slices.Reverse(v.Updates)
	if details {
		v.Details = append(v.Details, "Incident #"+fmt.Sprint(r.ID)+", "+r.Severity+", "+string(r.State))
		if r.Version != "" {
			v.Details = append(v.Details, fmt.Sprintf("Version %s, baseline %s", r.Version, r.Baseline))
		}
		if r.Trigger != "" {
			v.Details = append(v.Details, "Trigger "+r.Trigger+": "+r.Evidence.Summary)
		}
		for _, d := range r.Decisions {
			verdict := "No-go"
			if d.Approved {
				verdict = "Go"
			}
			v.Details = append(v.Details, fmt.Sprintf("%s for the %s step by %s (%s)", verdict, d.Step, d.By, d.Channel))
		}
		if r.RequestedBy != nil {
			v.Details = append(v.Details, "Rollback requested by "+r.RequestedBy.By+": "+r.RequestedBy.Reason)
		}
	}
	return v
}

// buildStatus computes the page from the incidents, listed once, at now.
func buildStatus(cfg StatusConfig, recs []incident.Record, now time.Time) statusView {
	now = now.UTC()
	if cfg.Title == "" {
		cfg.Title = "Service status"
	}
	services := cfg.Services
	if services == nil {
		seen := map[string]bool{}
		for _, r := range recs {
			if !seen[r.Service] {
				seen[r.Service] = true
				services = append(services, StatusService{Name: r.Service})
			}
		}
		slices.SortFunc(services, func(a, b StatusService) int { return strings.Compare(a.Name, b.Name) })
	}
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	from := today.AddDate(0, 0, -(HistoryDays - 1))
	v := statusView{Title: cfg.Title, Now: now, ShowDetails: cfg.ShowDetails, From: from}
	index := map[string]int{}
	for _, s := range services {
		if _, dup := index[s.Name]; dup {
			continue
		}
		if s.Display == "" {
			s.Display = s.Name
		}
		index[s.Name] = len(v.Components)
		c := componentView{Service: s.Name, Display: s.Display, Days: make([]dayView, HistoryDays)}
		for i := range c.Days {
			c.Days[i].Date = from.AddDate(0, 0, i)
		}
		v.Components = append(v.Components, c)
	}
	// mark raises the state of the days of component c that [start, end]
	// touches.
	mark := func(c *componentView, start, end time.Time, st ServiceState) {
		if end.Before(from) || start.After(now) {
			return
		}
		first := max(0, int(start.Sub(from)/(24*time.Hour)))
		last := min(HistoryDays-1, int(end.Sub(from)/(24*time.Hour)))
		for i := first; i <= last; i++ {
			c.Days[i].State = max(c.Days[i].State, st)
		}
	}
	for _, m := range cfg.Maintenance {
		var names []string
		active := !now.Before(m.Start) && now.Before(m.End)
		for _, svc := range m.Services {
			i, ok := index[svc]
			if !ok {
				continue
			}
			c := &v.Components[i]
			names = append(names, c.Display)
			mark(c, m.Start, m.End.Add(-time.Nanosecond), UnderMaintenance)
			if active && c.State < UnderMaintenance {
				c.State, c.Note = UnderMaintenance, m.Message
			}
		}
		if len(names) > 0 && now.Before(m.End) && m.Start.Sub(now) <= upcomingMaintenance {
			v.Maintenance = append(v.Maintenance, maintenanceView{Services: names, Start: m.Start, End: m.End, Message: m.Message, Active: active})
		}
	}
	slices.SortFunc(v.Maintenance, func(a, b maintenanceView) int { return a.Start.Compare(b.Start) })
	for _, r := range recs {
		i, ok := index[r.Service]
		if !ok {
			continue
		}
		end := now
		if e := incidentEnd(r); e != nil {
			end = *e
		}
		if end.Before(from) {
			continue // older than the history
		}
		c := &v.Components[i]
		iv := newIncidentView(r, c.Display, cfg.ShowDetails)
		mark(c, iv.Started, end, iv.State)
		switch {
		case iv.Open:
			c.State = max(c.State, iv.State)
			if c.State > UnderMaintenance {
				c.Note = ""
			}
			v.Active = append(v.Active, iv)
		default:
			v.Past = append(v.Past, iv)
		}
	}
	newest := func(a, b incidentView) int {
		if c := b.Started.Compare(a.Started); c != 0 {
			return c
		}
		return int(b.ID - a.ID)
	}
	slices.SortFunc(v.Active, newest)
	slices.SortFunc(v.Past, newest)
	if len(v.Past) > maxPastIncidents {
		v.Past = v.Past[:maxPastIncidents]
	}
	for _, c := range v.Components {
		v.Overall = max(v.Overall, c.State)
	}
	switch v.Overall {
	case Operational:
		v.OverallText = "All systems operational"
	case UnderMaintenance:
		v.OverallText = "Maintenance in progress"
	case Degraded:
		v.OverallText = "Some systems are degraded"
	default:
		v.OverallText = "Major outage"
	}
	return v
}

// statusConfig returns the page's settings.
func (s *Server) statusConfig() StatusConfig {
	if s.opts.StatusPage == nil {
		return StatusConfig{}
	}
	return s.opts.StatusPage()
}

// at is when cfg shows the services.
func (cfg StatusConfig) at() time.Time {
	if cfg.Now.IsZero() {
		return time.Now()
	}
	return cfg.Now
}

// statusRecords lists the incidents, once per request, leaving out those
// of services in shadow mode: a trial of Guardian's judgement is not news
// for stakeholders.
func (s *Server) statusRecords(ctx context.Context) ([]incident.Record, error) {
	if s.opts.Incidents == nil {
		return nil, nil
	}
	recs, err := s.opts.Incidents.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]incident.Record, 0, len(recs))
	for _, r := range recs {
		if !r.Shadowed() {
			out = append(out, r)
		}
	}
	return out, nil
}

// statusHeaders are the page's security headers: nothing is loaded from
// elsewhere, no script runs, no one frames it.
func statusHeaders(w http.ResponseWriter, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

func (s *Server) statusUnavailable(w http.ResponseWriter, err error) {
	s.log.Error("status page: listing incidents", zap.Error(err))
	statusHeaders(w, "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "The status is unavailable for a moment: try again shortly.")
}

// servePage serves GET /status.
func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	recs, err := s.statusRecords(r.Context())
	if err != nil {
		s.statusUnavailable(w, err)
		return
	}
	cfg := s.statusConfig()
	v := buildStatus(cfg, recs, cfg.at())
	var b strings.Builder
	if err := statusPage.Execute(&b, v); err != nil {
		s.log.Error("status page: rendering", zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	statusHeaders(w, "text/html; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

// serveCSS serves GET /status/status.css.
func serveCSS(w http.ResponseWriter, _ *http.Request) {
	statusHeaders(w, "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=3600")
	_, _ = w.Write(statusCSS)
}

// statusRoutes registers the status page's routes on mux; guard wraps
// each handler (read authentication on the main listener).
func (s *Server) statusRoutes(mux *http.ServeMux, public bool, guard func(http.Handler) http.Handler) {
	mux.Handle("GET /status", guard(http.HandlerFunc(s.servePage)))
	mux.Handle("GET /status/feed.atom", guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveFeed(w, r, public) })))
	mux.Handle("GET /status/status.css", guard(http.HandlerFunc(serveCSS)))
}

// StatusHandler serves the status page alone, for its own listen address
// (--web.status-listen-address): GET /status, its feed and its
// stylesheet, with GET / redirecting to /status; everything else is 404.
// It needs no token whatever Flags.ReadAuth says: it exists to publish
// the page while the console and the API stay private.
func (s *Server) StatusHandler() http.Handler {
	mux := http.NewServeMux()
	s.statusRoutes(mux, true, func(h http.Handler) http.Handler { return h })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "status", http.StatusFound)
	})
	return s.limitBody(mux)
}

// ServeStatus serves StatusHandler on l until ctx ends, with the TLS and
// basic auth settings of Flags.ConfigFile as Serve does.
func (s *Server) ServeStatus(ctx context.Context, l net.Listener) error {
	return s.serve(ctx, l, s.StatusHandler())
}
