package web

import (
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/incident"
)

// DecisionRequest is the body of POST /api/v1/incidents/{id}/approve and /deny.
type DecisionRequest struct {
	Reason string `json:"reason"`
}

// maxReason bounds a decision's reason.
const maxReason = 2000

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
	case errors.Is(err, incident.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
	case errors.Is(err, incident.ErrNoDecision):
		writeJSON(w, http.StatusConflict, apiError{Error: err.Error()})
	case errors.Is(err, incident.ErrInvalidVote):
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
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
	case "json":
	default:
		writeJSON(w, http.StatusBadRequest, apiError{Error: "format must be markdown or json"})
		return
	}
	b, err := inc.Report(r.Context(), id, format)
	if err != nil {
		s.incidentError(w, err)
		return
	}
	if format == "json" {
		w.Header().Set("Content-Type", "application/json")
	} else {
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
	}
	_, _ = w.Write(b)
}

// decide records a go or no-go. Only an authenticated request reaches the
// incident; a rejected one is logged and leaves no trace on the timeline.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, approve bool) {
	who, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	inc, ok := s.incidents(w)
	if !ok {
		return
	}
	id, ok := incidentID(w, r)
	if !ok {
		return
	}
	var req DecisionRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
			return
		}
	}
	if len(req.Reason) > maxReason {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "reason is longer than 2000 characters"})
		return
	}
	rec, err := inc.Decide(r.Context(), id, approve, "token:"+who, req.Reason)
	if err != nil {
		s.incidentError(w, err)
		return
	}
	s.log.Info("go/no-go recorded", zap.Int64("incident", id), zap.Bool("approve", approve), zap.String("by", who))
	writeJSON(w, http.StatusOK, rec)
}
