// Package web serves Guardian's HTTP interface: /metrics, the lifecycle
// endpoints (/-/healthy, /-/ready, /-/reload) and the /api/v1 API.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	// Forward, when it says so, sends a write request (deployments,
	// approve, deny) to the leader at the URL it returns: followers of a
	// replicated Guardian do not act themselves.
	Forward func(r *http.Request) (leader *url.URL, forward bool, err error)
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
}

// Server is Guardian's HTTP server.
type Server struct {
	opts Options
	mux  *http.ServeMux
	log  *zap.Logger
}

// New builds the server's routes.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), log: opts.Logger}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	s.mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Guardian is Healthy.")
	})
	s.mux.HandleFunc("GET /-/ready", s.ready)
	s.mux.HandleFunc("POST /-/reload", s.reload)
	s.mux.HandleFunc("PUT /-/reload", s.reload)
	s.mux.HandleFunc("POST /api/v1/deployments", s.toLeader(s.deployments))
	s.mux.HandleFunc("GET /api/v1/incidents", s.listIncidents)
	s.mux.HandleFunc("GET /api/v1/incidents/{id}", s.getIncident)
	s.mux.HandleFunc("GET /api/v1/incidents/{id}/report", s.incidentReport)
	s.mux.HandleFunc("POST /api/v1/incidents/{id}/approve", s.toLeader(func(w http.ResponseWriter, r *http.Request) { s.decide(w, r, true) }))
	s.mux.HandleFunc("POST /api/v1/incidents/{id}/deny", s.toLeader(func(w http.ResponseWriter, r *http.Request) { s.decide(w, r, false) }))
	s.mux.HandleFunc("POST /api/v1/incidents/{id}/close", s.toLeader(s.close))
	s.mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		if opts.Status == nil {
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, opts.Status())
	})
	return s
}

// toLeader serves h here, or proxies the request to the leader when this
// replica is a follower. The leader authenticates it: the follower passes
// the Authorization header through and never acts on it.
func (s *Server) toLeader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Forward == nil {
			h(w, r)
			return
		}
		leader, forward, err := s.opts.Forward(r)
		switch {
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "not the leader, and the leader is unknown: " + err.Error()})
		case !forward:
			h(w, r)
		default:
			if r.Header.Get(forwardedHeader) != "" {
				writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "forwarding loop: the leader changed, retry"})
				return
			}
			r.Header.Set(forwardedHeader, "1")
			s.log.Debug("forwarding to the leader", zap.String("path", r.URL.Path), zap.String("leader", leader.String()))
			httputil.NewSingleHostReverseProxy(leader).ServeHTTP(w, r)
		}
	}
}

// forwardedHeader marks a request a follower forwarded.
const forwardedHeader = "X-Guardian-Forwarded"

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves on l until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
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

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Ready != nil && !s.opts.Ready() {
		http.Error(w, "Guardian is not ready.", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "Guardian is Ready.")
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.opts.Reload == nil {
		http.Error(w, "reload is not available", http.StatusServiceUnavailable)
		return
	}
	select {
	case err := <-s.opts.Reload():
		if err != nil {
			http.Error(w, fmt.Sprintf("failed to reload config: %v", err), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "config reloaded")
	case <-r.Context().Done():
	}
}

// authenticate returns the token's name, or writes 401 and logs the attempt
// (never the token itself).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (string, bool) {
	var toks *Tokens
	if s.opts.Tokens != nil {
		toks = s.opts.Tokens()
	}
	name, err := toks.Authenticate(r)
	if err != nil {
		s.log.Warn("rejected API request", zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr), zap.String("reason", err.Error()))
		w.Header().Set("WWW-Authenticate", `Bearer realm="guardian"`)
		writeJSON(w, http.StatusUnauthorized, apiError{Error: "unauthorized: a valid bearer token is required"})
		return "", false
	}
	return name, true
}

type apiError struct {
	Error string `json:"error"`
}

// DeploymentRequest is the body of POST /api/v1/deployments.
type DeploymentRequest struct {
	Service  string `json:"service"`
	Version  string `json:"version"`
	Baseline string `json:"baseline,omitempty"`
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
	who, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	var req DeploymentRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
		return
	}
	if req.Service == "" {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "service is required"})
		return
	}
	if s.opts.Deployer == nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "not ready"})
		return
	}
	ev, err := s.opts.Deployer.Announce(r.Context(), req.Service, req.Version, req.Baseline)
	switch {
	case errors.Is(err, rollout.ErrUnknownService):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
		return
	case errors.Is(err, rollout.ErrInvalidVersion):
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	s.log.Info("deploy announced", zap.String("service", ev.Service), zap.String("version", ev.Version),
		zap.String("baseline", ev.Baseline), zap.String("by", who))
	writeJSON(w, http.StatusAccepted, DeploymentResponse{Service: ev.Service, Version: ev.Version, Baseline: ev.Baseline, At: ev.At, By: who})
}

// maxBody bounds API request bodies.
const maxBody = 64 << 10

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
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
