package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"
)

// maxAdminBody bounds the size of an admin request body.
const maxAdminBody = 64 << 10

// versionJSON is a Version on the wire; a missing weight means 1.
type versionJSON struct {
	Version   string   `json:"version"`
	Weight    *float64 `json:"weight,omitempty"`
	ErrorRate float64  `json:"error_rate"`
	LatencyMS float64  `json:"latency_ms"`
}

// stateJSON is the body of GET and PUT /admin/state. In a PUT, a missing
// field leaves that part of the state unchanged.
type stateJSON struct {
	Versions []versionJSON `json:"versions,omitempty"`
	Healthy  *bool         `json:"healthy,omitempty"`
}

type errorJSON struct {
	Error string `json:"error"`
}

func (v versionJSON) version() (Version, error) {
	w := 1.0
	if v.Weight != nil {
		w = *v.Weight
	}
	// Range-check before converting so a huge value cannot overflow the Duration.
	if !(v.LatencyMS >= 0 && v.LatencyMS <= float64(MaxLatency/time.Millisecond)) {
		return Version{}, fmt.Errorf("%w: version %q: latency_ms must be within [0, %d], got %g",
			ErrInvalidVersion, v.Version, MaxLatency/time.Millisecond, v.LatencyMS)
	}
	return Version{
		Version:   v.Version,
		Weight:    w,
		ErrorRate: v.ErrorRate,
		Latency:   time.Duration(math.Round(v.LatencyMS * float64(time.Millisecond))),
	}, nil
}

func toJSON(v Version) versionJSON {
	w := v.Weight
	return versionJSON{
		Version:   v.Version,
		Weight:    &w,
		ErrorRate: v.ErrorRate,
		LatencyMS: float64(v.Latency) / float64(time.Millisecond),
	}
}

func (s *Service) serveAdmin(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/admin/state":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.writeState(w)
		case http.MethodPut:
			s.putState(w, r)
		default:
			methodNotAllowed(w, r, http.MethodGet, http.MethodHead, http.MethodPut)
		}
	case "/admin/deploy":
		if allowMethods(w, r, http.MethodPost) {
			s.postDeploy(w, r)
		}
	case "/admin/rollback":
		if allowMethods(w, r, http.MethodPost) {
			s.postRollback(w, r)
		}
	default:
		writeJSON(w, http.StatusNotFound, errorJSON{
			Error: fmt.Sprintf("no admin endpoint %s; use /admin/state (GET, PUT) or /admin/deploy (POST)", r.URL.Path),
		})
	}
}

func (s *Service) writeState(w http.ResponseWriter) {
	vs := s.Versions()
	healthy := s.Healthy()
	st := stateJSON{Versions: make([]versionJSON, len(vs)), Healthy: &healthy}
	for i, v := range vs {
		st.Versions[i] = toJSON(v)
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Service) putState(w http.ResponseWriter, r *http.Request) {
	var st stateJSON
	if !decodeJSON(w, r, &st) {
		return
	}
	if st.Versions != nil {
		vs := make([]Version, len(st.Versions))
		for i, vj := range st.Versions {
			v, err := vj.version()
			if err != nil {
				writeError(w, fmt.Errorf("versions[%d]: %w", i, err))
				return
			}
			vs[i] = v
		}
		if err := s.SetVersions(vs); err != nil {
			writeError(w, err)
			return
		}
	}
	if st.Healthy != nil {
		s.SetHealthy(*st.Healthy)
	}
	s.writeState(w)
}

func (s *Service) postDeploy(w http.ResponseWriter, r *http.Request) {
	var vj versionJSON
	if !decodeJSON(w, r, &vj) {
		return
	}
	v, err := vj.version()
	if err == nil {
		err = s.Deploy(v)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	s.writeState(w)
}

// RollbackRequest is the body of POST /admin/rollback: Guardian's webhook
// executor payload (other fields are ignored), so the demo service can stand
// in for a deploy system.
type RollbackRequest struct {
	Baseline string `json:"baseline"`
}

func (s *Service) postRollback(w http.ResponseWriter, r *http.Request) {
	var req RollbackRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, errorJSON{Error: "invalid JSON body: " + err.Error()})
		return
	}
	if err := s.Rollback(req.Baseline); err != nil {
		writeError(w, err)
		return
	}
	s.writeState(w)
}

// decodeJSON strictly decodes one JSON value from the body into dst, or
// answers with an error and returns false.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil && !errors.Is(dec.Decode(new(json.RawMessage)), io.EOF) {
		err = errors.New("unexpected data after the JSON object")
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeJSON(w, http.StatusRequestEntityTooLarge, errorJSON{
			Error: fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit),
		})
	case errors.Is(err, io.EOF):
		writeJSON(w, http.StatusBadRequest, errorJSON{Error: "request body must be a JSON object, got nothing"})
	default:
		writeJSON(w, http.StatusBadRequest, errorJSON{Error: "decoding request body: " + err.Error()})
	}
	return false
}

// writeError answers 400 for invalid input and 500 for anything else.
func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, ErrInvalidVersion) {
		code = http.StatusBadRequest
	}
	writeJSON(w, code, errorJSON{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// allowMethods reports whether r uses one of methods, answering 405 if not.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	methodNotAllowed(w, r, methods...)
	return false
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, methods ...string) {
	allowed := strings.Join(methods, ", ")
	w.Header().Set("Allow", allowed)
	writeJSON(w, http.StatusMethodNotAllowed, errorJSON{
		Error: fmt.Sprintf("method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, allowed),
	})
}
