package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/rollout"
)

// DecisionRequest is the body of POST /api/v1/incidents/{id}/approve,
// /deny and /close.
type DecisionRequest struct {
	Reason string `json:"reason"`
}

// CLIUserAgent starts the User-Agent of Guardian's own CLI: its votes are
// recorded as coming through the "cli" channel, others through "api".
const CLIUserAgent = "guardian-cli/"

// channel is the approval channel a request came through.
func channel(r *http.Request) string {
	if strings.HasPrefix(r.UserAgent(), CLIUserAgent) {
		return approval.ChannelCLI
	}
	return approval.ChannelAPI
}

func (s *Server) incidents(w http.ResponseWriter) (Incidents, bool) {
	if s.opts.Incidents == nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "incidents are not enabled"})
		return nil, false
	}
	return s.opts.Incidents, true
}

func incidentID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "incident id must be a positive number"})
		return 0, false
	}
	return id, true
}

func (s *Server) incidentError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, incident.ErrNotFound), errors.Is(err, rollout.ErrUnknownService):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
	case errors.Is(err, incident.ErrNoDecision), errors.Is(err, incident.ErrBusy), errors.Is(err, incident.ErrFinished),
		errors.Is(err, incident.ErrShadow),
		errors.Is(err, incident.ErrNoService), errors.Is(err, incident.ErrOpenIncident), errors.Is(err, rollout.ErrNoTarget):
		writeJSON(w, http.StatusConflict, apiError{Error: err.Error()})
	case errors.Is(err, incident.ErrInvalidVote):
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
	case errors.Is(err, incident.ErrNotOwner):
		// The service changed hands while the request was on its way.
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error() + ": retry"})
	default:
		s.log.Error("incident API", zap.Error(err))
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
	}
}

func (s *Server) listIncidents(w http.ResponseWriter, r *http.Request) {
	inc, ok := s.incidents(w)
	if !ok {
		return
	}
	recs, err := inc.List(r.Context())
	if err != nil {
		s.incidentError(w, err)
		return
	}
	if recs == nil {
		recs = []incident.Record{}
	}
	writeJSON(w, http.StatusOK, recs)
}

func (s *Server) getIncident(w http.ResponseWriter, r *http.Request) {
	inc, ok := s.incidents(w)
	if !ok {
		return
	}
	id, ok := incidentID(w, r)
	if !ok {
		return
	}
	rec, err := inc.Get(r.Context(), id)
	if err != nil {
		s.incidentError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) incidentReport(w http.ResponseWriter, r *http.Request) {
	inc, ok := s.incidents(w)
	if !ok {
		return
	}
	id, ok := incidentID(w, r)
	if !ok {
		return
	}
	format := r.URL.Query().Get("format")
	switch format {
	case "", "markdown", "md":
		format = "markdown"
	case "json", "html":
	default:
		writeJSON(w, http.StatusBadRequest, apiError{Error: "format must be markdown, json or html"})
		return
	}
	b, err := inc.Report(r.Context(), id, format)
	if err != nil {
		s.incidentError(w, err)
		return
	}
	switch format {
	case "json":
		w.Header().Set("Content-Type", "application/json")
	case "html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// The page loads nothing and runs nothing; say so to the browser.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'")
	default:
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
	}
	_, _ = w.Write(b)
}

// decisionRequest authenticates a write request about an incident and
// reads its body. Only an authenticated request reaches the incident; a
// rejected one is logged and leaves no trace on the timeline.
func (s *Server) decisionRequest(w http.ResponseWriter, r *http.Request) (inc Incidents, id int64, by string, req DecisionRequest, ok bool) {
	who, ok := s.authorize(w, r, ScopeApprove)
	if !ok {
		return nil, 0, "", req, false
	}
	if inc, ok = s.incidents(w); !ok {
		return nil, 0, "", req, false
	}
	if id, ok = incidentID(w, r); !ok {
		return nil, 0, "", req, false
	}
	if r.ContentLength != 0 {
		if !s.decodeJSON(w, r, &req) {
			return nil, 0, "", req, false
		}
	}
	if len(req.Reason) > approval.MaxReason {
		writeJSON(w, http.StatusBadRequest, apiError{Error: fmt.Sprintf("reason is longer than %d characters", approval.MaxReason)})
		return nil, 0, "", req, false
	}
	return inc, id, "token:" + who, req, true
}

// decide records a go or no-go through the approval seam.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, approve bool) {
	inc, id, by, req, ok := s.decisionRequest(w, r)
	if !ok {
		return
	}
	v := approval.Vote{Incident: id, Approve: approve, By: by, Channel: channel(r), Reason: req.Reason}
	rec, err := inc.Vote(r.Context(), v)
	if err != nil {
		s.incidentError(w, err)
		return
	}
	s.log.Info("go/no-go recorded", zap.Int64("incident", id), zap.Bool("approve", approve), zap.String("by", by), zap.String("channel", v.Channel))
	writeJSON(w, http.StatusOK, rec)
}

// close closes an incident without resolution; a reason is required.
func (s *Server) close(w http.ResponseWriter, r *http.Request) {
	inc, id, by, req, ok := s.decisionRequest(w, r)
	if !ok {
		return
	}
	rec, err := inc.Close(r.Context(), id, by, channel(r), req.Reason)
	if err != nil {
		s.incidentError(w, err)
		return
	}
	s.log.Info("incident closed", zap.Int64("incident", id), zap.String("by", by), zap.String("reason", req.Reason))
	writeJSON(w, http.StatusOK, rec)
}

// RollbackRequest is the body of POST /api/v1/services/{service}/rollback.
type RollbackRequest struct {
	// To is the version to roll back to; empty means the baseline of the
	// service's open watch.
	To string `json:"to,omitempty"`
	// Reason says why: required.
	Reason string `json:"reason"`
}

// rollback starts a person's rollback of a service: an incident declared
// with the person as its source, the request counting as the go.
func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	who, ok := s.authorize(w, r, ScopeApprove)
	if !ok {
		return
	}
	inc, ok := s.incidents(w)
	if !ok {
		return
	}
	var req RollbackRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Reason) == "" {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "a rollback needs a reason"})
		return
	}
	service, by := r.PathValue("service"), "token:"+who
	rec, err := inc.Rollback(r.Context(), service, req.To, req.Reason, by, channel(r))
	if err != nil {
		s.incidentError(w, err)
		return
	}
	s.log.Warn("rollback requested", zap.String("service", service), zap.Int64("incident", rec.ID), zap.String("by", by), zap.String("reason", req.Reason))
	writeJSON(w, http.StatusCreated, rec)
}
