package web

import (
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/report/chart"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/watch"
)

// ChannelConsole is the approval channel of decisions and rollbacks asked
// for in the web console.
const ChannelConsole = "console"

// DefaultSessionTTL is how long a console sign-in lasts by default.
const DefaultSessionTTL = 8 * time.Hour

// recentIncidents is how many finished incidents the console lists.
const recentIncidents = 20

// ConsoleFlags are the web console's settings (guardian run
// --web.console.*).
type ConsoleFlags struct {
	// UserHeader, when set, is the request header in which an
	// authenticating proxy in front of Guardian names the signed-in
	// person (X-Forwarded-User, say). Only the proxy may be able to set
	// it: Guardian trusts it as it comes. Empty (the default) trusts no
	// header.
	UserHeader string
	// SessionTTL is how long a sign-in with a token lasts; zero takes
	// DefaultSessionTTL.
	SessionTTL time.Duration
	// Refresh is how often the overview at / reloads itself; zero never.
	Refresh time.Duration
}

// ServiceView is what the console shows of one guarded service: its status
// and each trigger's recent evaluations, by trigger name.
type ServiceView struct {
	watch.ServiceStatus
	History map[string][]watch.Sample
}

//go:embed console
var consoleFiles embed.FS

var consoleTemplates = parseConsole()

func parseConsole() map[string]*template.Template {
	funcs := template.FuncMap{
		"fmtTime": func(t time.Time) string {
			if t.IsZero() {
				return "–"
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"fmtTimep": func(t *time.Time) string {
			if t == nil {
				return "–"
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"num":  func(p *float64) string { return numText(p) },
		"join": strings.Join,
	}
	out := map[string]*template.Template{}
	for _, page := range []string{"index", "incident", "service", "signin", "error"} {
		out[page] = template.Must(template.New(page).Funcs(funcs).ParseFS(consoleFiles, "console/layout.html", "console/"+page+".html"))
	}
	return out
}

func numText(p *float64) string {
	if p == nil || math.IsNaN(*p) {
		return "–"
	}
	return strconv.FormatFloat(*p, 'g', 4, 64)
}

// consoleRoutes adds the console's pages and forms.
func (s *Server) consoleRoutes() {
	static, _ := fs.Sub(consoleFiles, "console/static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(http.FileServerFS(static))))
	s.mux.HandleFunc("GET /{$}", s.consoleIndex)
	s.mux.HandleFunc("GET /incidents/{id}", s.consoleIncident)
	s.mux.HandleFunc("GET /services/{service}", s.consoleService)
	s.mux.HandleFunc("GET /sign-in", s.consoleSignInForm)
	s.mux.HandleFunc("POST /sign-in", s.consoleSignIn)
	s.mux.HandleFunc("POST /sign-out", s.consoleWrite(s.consoleSignOut))
	s.mux.HandleFunc("POST /incidents/{id}/approve", s.toLeader(s.consoleWrite(func(w http.ResponseWriter, r *http.Request, u *consoleUser) {
		s.consoleVote(w, r, u, true)
	})))
	s.mux.HandleFunc("POST /incidents/{id}/hold", s.toLeader(s.consoleWrite(func(w http.ResponseWriter, r *http.Request, u *consoleUser) {
		s.consoleVote(w, r, u, false)
	})))
	s.mux.HandleFunc("POST /services/{service}/rollback", s.toLeader(s.consoleWrite(s.consoleRollback)))
}

func staticHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

// securityHeaders forbid framing, inline scripts and styles, and foreign
// resources, and keep URLs out of Referer headers to other sites.
// (no-referrer would make browsers send "Origin: null" with the console's
// own forms, which the origin check refuses.)
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
}

// page is what every console page has.
type page struct {
	Title string
	User  *consoleUser
	// Refresh, in seconds, reloads the page; 0 never.
	Refresh int
	// Path is the page's path, where signing in returns to.
	Path string
	Now  time.Time
}

func (s *Server) newPage(r *http.Request, u *consoleUser, title string) page {
	return page{Title: title, User: u, Path: r.URL.RequestURI(), Now: time.Now()}
}

// render writes the page template name with data, answering code.
func (s *Server) render(w http.ResponseWriter, code int, name string, data any) {
	var buf bytes.Buffer
	if err := consoleTemplates[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.log.Error("console: rendering a page", zap.String("page", name), zap.Error(err))
		http.Error(w, "rendering the page failed (the log has the details)", http.StatusInternalServerError)
		return
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

type errorPage struct {
	page
	Code    int
	Message string
	// SignIn offers the sign-in form.
	SignIn bool
}

func (s *Server) consoleError(w http.ResponseWriter, r *http.Request, u *consoleUser, code int, msg string) {
	p := errorPage{page: s.newPage(r, u, http.StatusText(code)), Code: code, Message: msg, SignIn: code == http.StatusUnauthorized}
	if code == http.StatusUnauthorized || code == http.StatusForbidden {
		refuse(w)
	}
	s.render(w, code, "error", p)
}

// consoleReader returns who reads the page, or answers and returns false
// when reads need signing in (--web.read-auth api or all) and the reader
// has not: a person is sent to the sign-in page; a request with a bearer
// token with the read scope passes.
func (s *Server) consoleReader(w http.ResponseWriter, r *http.Request) (*consoleUser, bool) {
	u := s.consoleUser(w, r)
	if s.opts.Flags.ReadAuth < ReadAuthAPI || (u != nil && u.Scopes.Has(ScopeRead)) {
		return u, true
	}
	if u != nil {
		s.consoleError(w, r, u, http.StatusForbidden, fmt.Sprintf("%s may not read: its token lacks the read scope.", u.By))
		return nil, false
	}
	if r.Header.Get("Authorization") != "" {
		_, ok := s.authorize(w, r, ScopeRead)
		return nil, ok
	}
	http.Redirect(w, r, "/sign-in?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
	return nil, false
}

// consoleWrite guards a console form: the request must come from one of
// Guardian's own pages (no cross-site Origin or Sec-Fetch-Site), from a
// signed-in person with the approve scope, and carry that person's CSRF
// token. Refusals are logged and never reach an incident.
func (s *Server) consoleWrite(h func(http.ResponseWriter, *http.Request, *consoleUser)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.sameOrigin(r) {
			s.log.Warn("console: cross-site request refused", zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr),
				zap.String("origin", r.Header.Get("Origin")), zap.String("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")))
			s.consoleError(w, r, nil, http.StatusForbidden, "Cross-site request refused: use Guardian's own pages.")
			return
		}
		u := s.consoleUser(nil, r)
		if u == nil {
			s.log.Warn("console: request without sign-in refused", zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
			s.consoleError(w, r, nil, http.StatusUnauthorized, "Sign in first.")
			return
		}
		if err := r.ParseForm(); err != nil {
			s.consoleError(w, r, u, http.StatusBadRequest, "Unreadable form: "+err.Error())
			return
		}
		if got := r.PostForm.Get(csrfField); u.CSRF == "" || !constantEqual(got, u.CSRF) {
			s.log.Warn("console: request without a valid CSRF token refused", zap.String("path", r.URL.Path), zap.String("by", u.By), zap.String("remote", r.RemoteAddr))
			s.consoleError(w, r, u, http.StatusForbidden, "The form's CSRF token is missing or wrong: reload the page and try again.")
			return
		}
		if r.URL.Path != "/sign-out" && !u.Scopes.Has(ScopeApprove) {
			s.log.Warn("console: request without the approve scope refused", zap.String("path", r.URL.Path), zap.String("by", u.By))
			s.consoleError(w, r, u, http.StatusForbidden, fmt.Sprintf("%s may not decide: its token lacks the approve scope.", u.By))
			return
		}
		h(w, r, u)
	}
}

// consoleIncidentError answers an Incidents error as a page.
func (s *Server) consoleIncidentError(w http.ResponseWriter, r *http.Request, u *consoleUser, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, incident.ErrNotFound), errors.Is(err, rollout.ErrUnknownService):
		code = http.StatusNotFound
	case errors.Is(err, incident.ErrNoDecision), errors.Is(err, incident.ErrBusy), errors.Is(err, incident.ErrFinished),
		errors.Is(err, incident.ErrShadow),
		errors.Is(err, incident.ErrNoService), errors.Is(err, incident.ErrOpenIncident), errors.Is(err, rollout.ErrNoTarget):
		code = http.StatusConflict
	case errors.Is(err, incident.ErrInvalidVote):
		code = http.StatusBadRequest
	case errors.Is(err, incident.ErrNotOwner):
		code = http.StatusServiceUnavailable
	default:
		s.log.Error("console", zap.Error(err))
	}
	s.consoleError(w, r, u, code, err.Error())
}

// Views of the overview.

type indexPage struct {
	page
	Services []serviceRow
	// Open and Recent are the open incidents and the latest finished ones,
	// newest first.
	Open, Recent []incident.Record
	// IncidentsOff: incidents are not enabled; IncidentsErr: listing them failed.
	IncidentsOff bool
	IncidentsErr string
	// Prevented sums up the bad deploys stopped in the last PreventedSpan.
	Prevented incident.Prevention
}

// PreventedSpan is how far back the console sums up the bad deploys
// stopped.
const PreventedSpan = 30 * 24 * time.Hour

type serviceRow struct {
	ServiceView
	Rows []triggerRow
	// Incident is the service's latest open incident, if any.
	Incident *incident.Record
}

type triggerRow struct {
	watch.TriggerStatus
	Value, Baseline, Threshold string
	// Samples counts the evaluations drawn; Spark is the sparkline.
	Samples int
	Spark   template.HTML
}

func (s *Server) consoleIndex(w http.ResponseWriter, r *http.Request) {
	u, ok := s.consoleReader(w, r)
	if !ok {
		return
	}
	p := indexPage{page: s.newPage(r, u, "Console")}
	p.Refresh = int(s.opts.Flags.Console.Refresh.Seconds())
	recs, off, err := s.incidentList(r.Context())
	p.IncidentsOff = off
	if err != nil {
		p.IncidentsErr = err.Error()
	}
	p.Prevented = incident.Prevented(recs, p.Now, PreventedSpan)
	for _, rec := range recs {
		if rec.State.Open() {
			p.Open = append(p.Open, rec)
		} else if len(p.Recent) < recentIncidents {
			p.Recent = append(p.Recent, rec)
		}
	}
	if s.opts.Services != nil {
		for _, sv := range s.opts.Services() {
			row := serviceRow{ServiceView: sv, Rows: triggerRows(sv, 200, 40)}
			for i := range p.Open {
				if p.Open[i].Service == sv.Name {
					row.Incident = &p.Open[i]
					break
				}
			}
			p.Services = append(p.Services, row)
		}
	}
	s.render(w, http.StatusOK, "index", p)
}

// incidentList returns every incident, newest first; off reports that
// incidents are not enabled.
func (s *Server) incidentList(ctx context.Context) (recs []incident.Record, off bool, err error) {
	if s.opts.Incidents == nil {
		return nil, true, nil
	}
	recs, err = s.opts.Incidents.List(ctx)
	slices.SortFunc(recs, func(a, b incident.Record) int { return cmp.Compare(b.ID, a.ID) })
	return recs, false, err
}

func triggerRows(sv ServiceView, width, height int) []triggerRow {
	if sv.Watch == nil {
		return nil
	}
	rows := make([]triggerRow, 0, len(sv.Watch.Triggers))
	for _, ts := range sv.Watch.Triggers {
		row := triggerRow{TriggerStatus: ts, Value: "–", Baseline: "–", Threshold: "–"}
		if h := sv.History[ts.Name]; len(h) > 0 {
			last := h[len(h)-1]
			row.Value, row.Baseline, row.Threshold = numText(&last.Value), numText(&last.Baseline), numText(&last.Threshold)
			row.Samples = len(h)
			row.Spark = sparkline(ts.Name, sv.Watch.Version, sv.Watch.Baseline, h, width, height)
		}
		rows = append(rows, row)
	}
	return rows
}

// sparkline draws a trigger's recent values for the new version and the
// baseline, and its latest threshold.
func sparkline(name, version, baseline string, h []watch.Sample, width, height int) template.HTML {
	from, to := h[0].At, h[len(h)-1].At
	h = thin(h, width/2)
	val := make([]chart.Point, len(h))
	base := make([]chart.Point, 0, len(h))
	var threshold *float64
	for i, x := range h {
		val[i] = chart.Point{T: x.At, V: x.Value}
		if !math.IsNaN(x.Baseline) {
			base = append(base, chart.Point{T: x.At, V: x.Baseline})
		}
		if !math.IsNaN(x.Threshold) {
			t := x.Threshold
			threshold = &t
		}
	}
	series := []chart.Series{{Name: version, Role: chart.RoleVersion, Points: val}}
	if len(base) > 0 {
		series = append(series, chart.Series{Name: "baseline " + baseline, Role: chart.RoleBaseline, Points: base})
	}
	c := chart.Chart{
		Title:  fmt.Sprintf("%s: %s vs baseline %s, last %s", name, version, baseline, to.Sub(from).Round(time.Second)),
		Series: series, Threshold: threshold, From: from, To: to,
		Width: width, Height: height, Compact: true,
	}
	// The chart escapes every text it draws.
	return template.HTML(c.SVG())
}

// thin keeps at most n of h's samples: of each run of consecutive ones, the
// one with the highest value (a spike stays visible), in order.
func thin(h []watch.Sample, n int) []watch.Sample {
	if n <= 0 || len(h) <= n {
		return h
	}
	out := make([]watch.Sample, 0, n)
	for i := range n {
		run := h[i*len(h)/n : (i+1)*len(h)/n]
		best := run[0]
		for _, x := range run[1:] {
			if math.IsNaN(best.Value) || x.Value > best.Value {
				best = x
			}
		}
		out = append(out, best)
	}
	return out
}

// The incident page.

type incidentPage struct {
	page
	Rec    incident.Record
	Charts []template.HTML
	// ChartsErr says why the charts are missing.
	ChartsErr string
	// Approve and Hold offer the go and the no-go; Step is the step they
	// decide.
	Approve, Hold bool
	Step          string
}

func (s *Server) consoleIncident(w http.ResponseWriter, r *http.Request) {
	u, ok := s.consoleReader(w, r)
	if !ok {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		s.consoleError(w, r, u, http.StatusBadRequest, "An incident id is a positive number.")
		return
	}
	if s.opts.Incidents == nil {
		s.consoleError(w, r, u, http.StatusNotFound, "Incidents are not enabled.")
		return
	}
	rec, err := s.opts.Incidents.Get(r.Context(), id)
	if err != nil {
		s.consoleIncidentError(w, r, u, err)
		return
	}
	p := incidentPage{page: s.newPage(r, u, fmt.Sprintf("Incident #%d", id)), Rec: rec, Step: approval.StepApplication}
	switch rec.State {
	case incident.AwaitingApproval:
		p.Approve, p.Hold = true, true
	case incident.Held:
		p.Approve = true
	case incident.DBAwaitingApproval:
		p.Approve, p.Hold, p.Step = true, true, approval.StepDatabase
	}
	if rec.State.Open() && !p.Approve {
		// Nothing to type here: follow the rollback as it runs.
		p.Refresh = int(s.opts.Flags.Console.Refresh.Seconds())
	}
	if s.opts.Charts != nil {
		p.Charts, err = s.opts.Charts(r.Context(), id)
		if err != nil {
			s.log.Warn("console: drawing the incident's charts", zap.Int64("incident", id), zap.Error(err))
			p.ChartsErr = err.Error()
		}
	}
	s.render(w, http.StatusOK, "incident", p)
}

// The service page, with its "Roll back now" form.

type servicePage struct {
	page
	Service serviceRow
	// Incidents are the service's, newest first.
	Incidents []incident.Record
}

func (s *Server) consoleService(w http.ResponseWriter, r *http.Request) {
	u, ok := s.consoleReader(w, r)
	if !ok {
		return
	}
	name := r.PathValue("service")
	var (
		sv    ServiceView
		found bool
	)
	if s.opts.Services != nil {
		for _, v := range s.opts.Services() {
			if v.Name == name {
				sv, found = v, true
			}
		}
	}
	if !found {
		s.consoleError(w, r, u, http.StatusNotFound, fmt.Sprintf("No service %q is guarded.", name))
		return
	}
	p := servicePage{page: s.newPage(r, u, name), Service: serviceRow{ServiceView: sv, Rows: triggerRows(sv, 480, 120)}}
	recs, _, _ := s.incidentList(r.Context())
	for i, rec := range recs {
		if rec.Service != name {
			continue
		}
		p.Incidents = append(p.Incidents, rec)
		if rec.State.Open() && p.Service.Incident == nil {
			p.Service.Incident = &recs[i]
		}
	}
	s.render(w, http.StatusOK, "service", p)
}

// Forms.

func formReason(r *http.Request) string { return strings.TrimSpace(r.PostForm.Get("reason")) }

func (s *Server) consoleVote(w http.ResponseWriter, r *http.Request, u *consoleUser, approve bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		s.consoleError(w, r, u, http.StatusBadRequest, "An incident id is a positive number.")
		return
	}
	reason := formReason(r)
	switch {
	case !approve && reason == "":
		s.consoleError(w, r, u, http.StatusBadRequest, "A hold needs a reason.")
		return
	case len(reason) > approval.MaxReason:
		s.consoleError(w, r, u, http.StatusBadRequest, fmt.Sprintf("The reason is longer than %d characters.", approval.MaxReason))
		return
	case s.opts.Incidents == nil:
		s.consoleError(w, r, u, http.StatusNotFound, "Incidents are not enabled.")
		return
	}
	v := approval.Vote{Incident: id, Approve: approve, By: u.By, Channel: ChannelConsole, Reason: reason}
	if _, err := s.opts.Incidents.Vote(r.Context(), v); err != nil {
		s.consoleIncidentError(w, r, u, err)
		return
	}
	s.log.Info("go/no-go recorded", zap.Int64("incident", id), zap.Bool("approve", approve), zap.String("by", u.By), zap.String("channel", ChannelConsole))
	http.Redirect(w, r, fmt.Sprintf("/incidents/%d", id), http.StatusSeeOther)
}

func (s *Server) consoleRollback(w http.ResponseWriter, r *http.Request, u *consoleUser) {
	service, to, reason := r.PathValue("service"), strings.TrimSpace(r.PostForm.Get("to")), formReason(r)
	switch {
	case reason == "":
		s.consoleError(w, r, u, http.StatusBadRequest, "A rollback needs a reason.")
		return
	case len(reason) > approval.MaxReason:
		s.consoleError(w, r, u, http.StatusBadRequest, fmt.Sprintf("The reason is longer than %d characters.", approval.MaxReason))
		return
	case s.opts.Incidents == nil:
		s.consoleError(w, r, u, http.StatusNotFound, "Incidents are not enabled.")
		return
	}
	rec, err := s.opts.Incidents.Rollback(r.Context(), service, to, reason, u.By, ChannelConsole)
	if err != nil {
		s.consoleIncidentError(w, r, u, err)
		return
	}
	s.log.Warn("rollback requested", zap.String("service", service), zap.Int64("incident", rec.ID), zap.String("by", u.By), zap.String("channel", ChannelConsole), zap.String("reason", reason))
	http.Redirect(w, r, fmt.Sprintf("/incidents/%d", rec.ID), http.StatusSeeOther)
}

// Signing in and out.

type signInPage struct {
	page
	Next    string
	Message string
	// Tokens: a tokens file is configured, so signing in can work.
	Tokens bool
}

func (s *Server) tokens() *Tokens {
	if s.opts.Tokens == nil {
		return nil
	}
	return s.opts.Tokens()
}

func (s *Server) consoleSignInForm(w http.ResponseWriter, r *http.Request) {
	u := s.consoleUser(w, r)
	toks := s.tokens()
	p := signInPage{page: s.newPage(r, u, "Sign in"), Next: safeNext(r.URL.Query().Get("next")), Tokens: toks != nil && toks.Path() != ""}
	s.render(w, http.StatusOK, "signin", p)
}

func (s *Server) consoleSignIn(w http.ResponseWriter, r *http.Request) {
	if !s.sameOrigin(r) {
		s.log.Warn("console: cross-site sign-in refused", zap.String("remote", r.RemoteAddr), zap.String("origin", r.Header.Get("Origin")))
		s.consoleError(w, r, nil, http.StatusForbidden, "Cross-site request refused: use Guardian's own pages.")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.consoleError(w, r, nil, http.StatusBadRequest, "Unreadable form: "+err.Error())
		return
	}
	toks := s.tokens()
	next := safeNext(r.PostForm.Get("next"))
	tok, err := toks.bySecret(strings.TrimSpace(r.PostForm.Get("token")))
	if err != nil {
		s.log.Warn("console: sign-in refused", zap.String("remote", r.RemoteAddr), zap.String("reason", err.Error()))
		refuse(w)
		p := signInPage{page: s.newPage(r, nil, "Sign in"), Next: next, Tokens: toks != nil && toks.Path() != "", Message: "Unknown token."}
		s.render(w, http.StatusUnauthorized, "signin", p)
		return
	}
	ttl := cmp.Or(s.opts.Flags.Console.SessionTTL, DefaultSessionTTL)
	expiry := time.Now().Add(ttl)
	value, err := s.sessions.issue(tok, expiry)
	if err != nil {
		s.consoleError(w, r, nil, http.StatusInternalServerError, "Could not start a session: "+err.Error())
		return
	}
	s.setSession(w, r, value, expiry)
	s.log.Info("console: signed in", zap.String("by", "token:"+tok.Name), zap.String("remote", r.RemoteAddr))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) consoleSignOut(w http.ResponseWriter, r *http.Request, u *consoleUser) {
	if u.nonce != "" {
		s.sessions.revoke(u.nonce, u.expiry, time.Now())
	}
	s.clearSession(w, r)
	s.log.Info("console: signed out", zap.String("by", u.By))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func constantEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
