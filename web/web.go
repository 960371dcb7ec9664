// Package web serves Guardian's HTTP interface: /metrics, the lifecycle
// endpoints (/-/healthy, /-/ready, /-/reload), the /api/v1 API and the
// incident console at /.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	toolkit "github.com/prometheus/exporter-toolkit/web"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/rollout"
)

// Deployer takes deploy announcements.
type Deployer interface {
	Announce(ctx context.Context, service, version, baseline string) (rollout.Event, error)
}

// Options configure the server. Funcs may be nil when unused.
type Options struct {
	Gatherer prometheus.Gatherer
	Logger   *zap.Logger
	// Ready reports whether Guardian is ready to serve.
	Ready func() bool
	// Reload requests a configuration reload and returns its result channel.
	Reload func() <-chan error
	// Tokens returns the current bearer tokens (they change on reload).
	Tokens   func() *Tokens
	Deployer Deployer
	// Status returns what GET /api/v1/status serves as JSON.
	Status func() any
	// Incidents serves /api/v1/incidents; nil until incidents are enabled.
	Incidents Incidents
	// Flags are the --web.* settings: TLS and basic auth, who may reload,
	// whether reads need a token.
	Flags Flags
	// Limits bound timeouts and sizes; zero fields take the defaults.
	Limits Limits
	// Forward, when it says so, sends a write request (deployments,
	// approve, deny) to the replica at the URL it returns: the leader, or
	// the replica that drives the request's service when the replicas
	// share the services out; the others do not act themselves.
	Forward func(r *http.Request) (leader *url.URL, forward bool, err error)
	// Slack, when set, serves Slack's button clicks and slash commands at
	// POST /api/v1/slack/interactions (and /api/v1/slack/commands). It
	// authenticates every request by Slack's signature: no bearer token.
	Slack http.Handler
	// StatusPage returns the settings of the status page at /status (they
	// change on reload), once per request; nil shows every service that
	// has incidents.
	StatusPage func() StatusConfig
	// Services returns what the console at / shows of every guarded
	// service, in configuration order; nil shows none.
	Services func() []ServiceView
	// Charts returns incident id's charts as inline SVG for the console's
	// incident page; nil shows none.
	Charts func(ctx context.Context, id int64) ([]template.HTML, error)
	// Verdict serves GET /api/v1/services/{service}/verdict and the
	// Flagger webhooks; nil answers 503.
	Verdict VerdictFunc
}

// Incidents is what the incident API needs.
type Incidents interface {
	List(ctx context.Context) ([]incident.Record, error)
	Get(ctx context.Context, id int64) (incident.Record, error)
	// Vote records a go or no-go (the approval seam).
	Vote(ctx context.Context, v approval.Vote) (incident.Record, error)
	// Close closes an incident without resolution.
	Close(ctx context.Context, id int64, by, channel, reason string) (incident.Record, error)
	// Report renders the incident report: format "markdown" or "json".
	Report(ctx context.Context, id int64, format string) ([]byte, error)
	// Rollback declares an incident because a person asked to roll
	// service back (to version to; "" means the open watch's baseline).
	Rollback(ctx context.Context, service, to, reason, by, channel string) (incident.Record, error)
}

// Server is Guardian's HTTP server.
type Server struct {
	opts   Options
	limits Limits
	mux    *http.ServeMux
	log    *zap.Logger
	// sessions are the console's sign-ins.
	sessions sessions
}

// newServer builds a server with the routes every Guardian serves,
// configured or not: /metrics and /-/healthy.
func newServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	s := &Server{opts: opts, limits: opts.Limits.withDefaults(), mux: http.NewServeMux(), log: opts.Logger}
	s.mux.Handle("GET /metrics", s.read(ReadAuthAll, promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true})))
	s.mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Guardian is Healthy.")
	})
	return s
}

// New builds the server's routes.
func New(opts Options) *Server {
	s := newServer(opts)
	opts = s.opts
	s.mux.HandleFunc("GET /-/ready", s.ready)
	s.mux.HandleFunc("POST /-/reload", s.reload)
	s.mux.HandleFunc("PUT /-/reload", s.reload)
	s.mux.HandleFunc("POST /api/v1/deployments", s.toLeader(s.deployments))
	s.mux.Handle("GET /api/v1/incidents", s.read(ReadAuthAPI, http.HandlerFunc(s.listIncidents)))
	s.mux.Handle("GET /api/v1/incidents/{id}", s.read(ReadAuthAPI, http.HandlerFunc(s.getIncident)))
	s.mux.Handle("GET /api/v1/incidents/{id}/report", s.read(ReadAuthAPI, http.HandlerFunc(s.incidentReport)))
	s.mux.HandleFunc("POST /api/v1/incidents/{id}/approve", s.toLeader(func(w http.ResponseWriter, r *http.Request) { s.decide(w, r, true) }))
	s.mux.HandleFunc("POST /api/v1/incidents/{id}/deny", s.toLeader(func(w http.ResponseWriter, r *http.Request) { s.decide(w, r, false) }))
	s.mux.HandleFunc("POST /api/v1/incidents/{id}/close", s.toLeader(s.close))
	s.mux.HandleFunc("POST /api/v1/services/{service}/rollback", s.toLeader(s.rollback))
	if opts.Slack != nil {
		s.mux.HandleFunc("POST /api/v1/slack/interactions", s.toLeader(opts.Slack.ServeHTTP))
		s.mux.HandleFunc("POST /api/v1/slack/commands", s.toLeader(opts.Slack.ServeHTTP))
	}
	s.mux.Handle("GET /api/v1/status", s.read(ReadAuthAPI, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if opts.Status == nil {
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, opts.Status())
	})))
	s.statusRoutes(s.mux, false, func(h http.Handler) http.Handler { return s.read(ReadAuthAll, h) })
	s.consoleRoutes()
	s.verdictRoutes()
	return s
}

// read guards a read endpoint: with --web.read-auth at level or above it
// needs a token with the read scope, otherwise it is open.
func (s *Server) read(level ReadAuth, h http.Handler) http.Handler {
	if s.opts.Flags.ReadAuth < level {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.authorize(w, r, ScopeRead); ok {
			h.ServeHTTP(w, r)
		}
	})
}

// toLeader serves h here, or proxies the request to the replica that acts
// on it (the leader, or the owner of the request's service) when Forward
// says so. That replica authenticates it: this one passes the
// Authorization header through and never acts on it.
func (s *Server) toLeader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Forward == nil {
			h(w, r)
			return
		}
		leader, forward, err := s.opts.Forward(r)
		switch {
		case err != nil:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "this replica does not act on this request, and cannot tell which does: " + err.Error()})
		case !forward:
			h(w, r)
		default:
			if r.Header.Get(forwardedHeader) != "" {
				w.Header().Set("Retry-After", "1")
				writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "forwarding loop: the replica that acts on this changed, retry"})
				return
			}
			r.Header.Set(forwardedHeader, "1")
			s.log.Debug("forwarding", zap.String("path", r.URL.Path), zap.String("to", leader.String()))
			httputil.NewSingleHostReverseProxy(leader).ServeHTTP(w, r)
		}
	}
}

// forwardedHeader marks a request a follower forwarded.
const forwardedHeader = "X-Guardian-Forwarded"

// Handler returns the HTTP handler. Every request body is limited to
// Limits.MaxBodyBytes: a larger one is answered 413.
func (s *Server) Handler() http.Handler { return s.limitBody(s.mux) }

// limitBody limits h's request bodies to Limits.MaxBodyBytes.
func (s *Server) limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.limits.MaxBodyBytes {
			refuse(w)
			writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Error: tooLarge(s.limits.MaxBodyBytes)})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.limits.MaxBodyBytes)
		h.ServeHTTP(w, r)
	})
}

func tooLarge(limit int64) string {
	return fmt.Sprintf("request body too large: the limit is %d bytes", limit)
}

// Serve serves on l until ctx ends, then shuts down gracefully. With
// Flags.ConfigFile it serves TLS and checks basic auth as that web
// configuration file says (the Prometheus exporter-toolkit's format, read
// again for each connection and request, so certificates rotate without a
// restart).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	return s.serve(ctx, l, s.Handler())
}

func (s *Server) serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		ReadTimeout:       s.limits.ReadTimeout,
		WriteTimeout:      s.limits.WriteTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		MaxHeaderBytes:    s.limits.MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
	}
	webConfig, systemd := s.opts.Flags.ConfigFile, false
	flags := &toolkit.FlagConfig{WebListenAddresses: &[]string{}, WebSystemdSocket: &systemd, WebConfigFile: &webConfig}
	errc := make(chan error, 1)
	go func() { errc <- toolkit.Serve(l, srv, flags, slog.New(zapHandler{s.log.Named("http")})) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving HTTP on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down HTTP server: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ValidateConfigFile checks a web configuration file (TLS, basic auth) as
// Serve would read it.
func ValidateConfigFile(path string) error {
	if err := toolkit.Validate(path); err != nil {
		return fmt.Errorf("web config file %s: %w", path, err)
	}
	return nil
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Ready != nil && !s.opts.Ready() {
		http.Error(w, "Guardian is not ready.", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "Guardian is Ready.")
}

// reload serves POST /-/reload as Flags.Reload allows. A failed reload is
// answered with its errors, URLs in them redacted (a notifier's URL may
// carry credentials); the log has them whole.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	switch s.opts.Flags.Reload {
	case ReloadOff:
		refuse(w)
		http.Error(w, "reloading over HTTP is off (--web.reload=off): send SIGHUP or edit the file", http.StatusForbidden)
		return
	case ReloadLoopback:
		if !loopback(r.RemoteAddr) {
			if _, ok := s.authorize(w, r, ScopeAdmin); !ok {
				return
			}
		}
	default:
		if _, ok := s.authorize(w, r, ScopeAdmin); !ok {
			return
		}
	}
	if s.opts.Reload == nil {
		http.Error(w, "reload is not available", http.StatusServiceUnavailable)
		return
	}
	select {
	case err := <-s.opts.Reload():
		if err != nil {
			http.Error(w, "failed to reload config (the log has the details): "+RedactURLs(err.Error()), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "config reloaded")
	case <-r.Context().Done():
	}
}

// refuse prepares the answer to a request refused before its body is read:
// the connection closes after the answer instead of waiting for the body
// (the server would otherwise read what is left of it first, as slowly as
// the client sends it).
func refuse(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	// Reading stops now: closing the request discards no more of the body.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// loopback reports whether a request comes from 127.0.0.1 or ::1. Not the
// whole of 127.0.0.0/8: a service mesh's sidecar (Istio's, from 127.0.0.6)
// relays remote clients from other loopback addresses.
func loopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	return ip == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || ip == netip.IPv6Loopback()
}

// authorize returns the name of the request's token when it grants scope.
// Otherwise it answers 401 (no valid token) or 403 (a token without the
// scope), logs the attempt (never the token itself) and closes the
// connection without waiting for the request's body.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, scope Scope) (string, bool) {
	var toks *Tokens
	if s.opts.Tokens != nil {
		toks = s.opts.Tokens()
	}
	name, err := toks.Authorize(r, scope)
	if err == nil {
		return name, true
	}
	s.log.Warn("rejected API request", zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr), zap.String("reason", err.Error()))
	refuse(w)
	if errors.Is(err, ErrForbidden) {
		writeJSON(w, http.StatusForbidden, apiError{Error: fmt.Sprintf("forbidden: token %q lacks the %s scope this request needs", name, scope)})
		return "", false
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="guardian"`)
	writeJSON(w, http.StatusUnauthorized, apiError{Error: "unauthorized: a valid bearer token is required"})
	return "", false
}

type apiError struct {
	Error string `json:"error"`
}

// DeploymentRequest is the body of POST /api/v1/deployments. Commit,
// Author and ChangeURL, all optional, say what the deploy changed: the
// incident report shows them as the first place to look.
type DeploymentRequest struct {
	Service   string `json:"service"`
	Version   string `json:"version"`
	Baseline  string `json:"baseline,omitempty"`
	Commit    string `json:"commit,omitempty"`
	Author    string `json:"author,omitempty"`
	ChangeURL string `json:"change_url,omitempty"`
}

// ChangeDeployer is a Deployer that also remembers what an announced
// deploy changed.
type ChangeDeployer interface {
	AnnounceChange(ctx context.Context, service, version, baseline string, c rollout.Change) (rollout.Event, error)
}

// DeploymentResponse answers an accepted announcement.
type DeploymentResponse struct {
	Service  string    `json:"service"`
	Version  string    `json:"version"`
	Baseline string    `json:"baseline"`
	At       time.Time `json:"at"`
	By       string    `json:"by"`
}

func (s *Server) deployments(w http.ResponseWriter, r *http.Request) {
	who, ok := s.authorize(w, r, ScopeDeploy)
	if !ok {
		return
	}
	var req DeploymentRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	if req.Service == "" {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "service is required"})
		return
	}
	change := rollout.Change{Version: req.Version, Commit: req.Commit, Author: req.Author, ChangeURL: req.ChangeURL}
	if err := change.Validate(); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
		return
	}
	if s.opts.Deployer == nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "not ready"})
		return
	}
	var ev rollout.Event
	var err error
	if cd, ok := s.opts.Deployer.(ChangeDeployer); ok {
		ev, err = cd.AnnounceChange(r.Context(), req.Service, req.Version, req.Baseline, change)
	} else {
		ev, err = s.opts.Deployer.Announce(r.Context(), req.Service, req.Version, req.Baseline)
	}
	switch {
	case errors.Is(err, rollout.ErrUnknownService):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
		return
	case errors.Is(err, rollout.ErrInvalidVersion), errors.Is(err, rollout.ErrInvalidChange):
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
		return
	case errors.Is(err, incident.ErrNotOwner):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error() + ": retry"})
		return
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	s.log.Info("deploy announced", zap.String("service", ev.Service), zap.String("version", ev.Version),
		zap.String("baseline", ev.Baseline), zap.String("commit", req.Commit), zap.String("by", who))
	writeJSON(w, http.StatusAccepted, DeploymentResponse{Service: ev.Service, Version: ev.Version, Baseline: ev.Baseline, At: ev.At, By: who})
}

// decodeJSON decodes r's body into v, strictly, or answers 400 (413 for a
// body over the limit, 408 for one that did not arrive in time) and returns
// false.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	err := decodeJSON(r.Body, v)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Error: tooLarge(tooBig.Limit)})
	case errors.Is(err, os.ErrDeadlineExceeded):
		writeJSON(w, http.StatusRequestTimeout, apiError{Error: "request body not received within the read timeout"})
	case err != nil:
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
	}
	return err == nil
}

func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	if dec.More() {
		return errors.New("invalid JSON body: trailing data")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
