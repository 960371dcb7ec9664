package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/watch"
)

// VerdictFunc returns Guardian's current judgement of version of service
// (checked against baseline when it is not empty); an error wrapping
// rollout.ErrUnknownService for a service it does not guard.
type VerdictFunc func(ctx context.Context, service, version, baseline string) (watch.VersionVerdict, error)

// FlaggerPayload is the body Flagger POSTs to a canary's webhooks. Guardian
// reads the version (and baseline) to judge from Metadata when the query
// does not give them; the other fields are logged. Fields it does not know
// are ignored: Flagger adds some across versions.
type FlaggerPayload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Phase     string            `json:"phase"`
	Checksum  string            `json:"checksum"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// FlaggerAnswer is the body of the answer to a Flagger webhook: what was
// judged and why.
type FlaggerAnswer struct {
	Hook    string          `json:"hook"`
	Service string          `json:"service"`
	Version string          `json:"version"`
	Verdict watch.Judgement `json:"verdict"`
	// Pass is what the status code says: 200 when true, 412 when false.
	Pass     bool   `json:"pass"`
	Reason   string `json:"reason"`
	Watching string `json:"watching,omitempty"`
	Incident int64  `json:"incident,omitempty"`
}

// flaggerHooks say, by Flagger webhook type, which verdicts answer 200.
// Flagger goes on (or, for rollback, rolls back) on a 2xx answer.
var flaggerHooks = map[string]func(watch.Judgement) bool{
	// Promote only a version Guardian judges healthy.
	"confirm-promotion": func(j watch.Judgement) bool { return j == watch.Healthy },
	// Roll back only a version Guardian judges regressed.
	"rollback": func(j watch.Judgement) bool { return j == watch.Regressed },
	// Go on with the analysis unless the version regressed.
	"rollout":                  notRegressed,
	"pre-rollout":              notRegressed,
	"confirm-rollout":          notRegressed,
	"confirm-traffic-increase": notRegressed,
}

func notRegressed(j watch.Judgement) bool { return j != watch.Regressed }

// FlaggerHooks lists the Flagger webhook types Guardian answers.
const FlaggerHooks = "confirm-promotion, rollback, rollout, pre-rollout, confirm-rollout, confirm-traffic-increase"

// verdictRoutes serves GET /api/v1/services/{service}/verdict and the
// Flagger webhooks POST /api/v1/services/{service}/verdict/flagger/{hook}.
// Both are reads: the read scope under --web.read-auth=api or all. A
// follower forwards them to the leader, which runs the watches.
func (s *Server) verdictRoutes() {
	s.mux.HandleFunc("GET /api/v1/services/{service}/verdict", s.toLeader(s.read(ReadAuthAPI, http.HandlerFunc(s.verdict)).ServeHTTP))
	s.mux.HandleFunc("POST /api/v1/services/{service}/verdict/flagger/{hook}", s.toLeader(s.read(ReadAuthAPI, http.HandlerFunc(s.flaggerHook)).ServeHTTP))
}

// verdict answers 200 with the watch.VersionVerdict of ?version= (and
// ?baseline=), whatever the verdict: Argo Rollouts counts a non-2xx answer
// as a measurement error, not as a failure.
func (s *Server) verdict(w http.ResponseWriter, r *http.Request) {
	version, baseline := r.URL.Query().Get("version"), r.URL.Query().Get("baseline")
	if version == "" {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "the version query parameter is required: ?version=V (and optionally &baseline=B)"})
		return
	}
	vv, ok := s.judge(w, r, version, baseline)
	if ok {
		writeJSON(w, http.StatusOK, vv)
	}
}

// judge asks Options.Verdict, or answers the error and returns false.
func (s *Server) judge(w http.ResponseWriter, r *http.Request, version, baseline string) (watch.VersionVerdict, bool) {
	if err := rollout.ValidVersion(version); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
		return watch.VersionVerdict{}, false
	}
	if baseline != "" {
		if err := rollout.ValidVersion(baseline); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "baseline: " + err.Error()})
			return watch.VersionVerdict{}, false
		}
	}
	if s.opts.Verdict == nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "not ready"})
		return watch.VersionVerdict{}, false
	}
	vv, err := s.opts.Verdict(r.Context(), r.PathValue("service"), version, baseline)
	switch {
	case errors.Is(err, rollout.ErrUnknownService):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
		return vv, false
	case errors.Is(err, incident.ErrNotOwner):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error() + ": retry"})
		return vv, false
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return vv, false
	}
	return vv, true
}

// flaggerHook answers a Flagger webhook: 200 when the verdict passes the
// hook (see flaggerHooks), 412 Precondition Failed when it does not. The
// version is ?version= or the payload's metadata.version; the baseline
// ?baseline= or metadata.baseline.
func (s *Server) flaggerHook(w http.ResponseWriter, r *http.Request) {
	hook := r.PathValue("hook")
	pass, ok := flaggerHooks[hook]
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{Error: "unknown Flagger webhook type " + hook + ": want one of " + FlaggerHooks})
		return
	}
	var p FlaggerPayload
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Error: tooLarge(tooBig.Limit)})
			return
		}
		writeJSON(w, http.StatusBadRequest, apiError{Error: "invalid Flagger payload: " + err.Error()})
		return
	}
	q := r.URL.Query()
	version, baseline := q.Get("version"), q.Get("baseline")
	if version == "" {
		version = strings.TrimSpace(p.Metadata["version"])
	}
	if baseline == "" {
		baseline = strings.TrimSpace(p.Metadata["baseline"])
	}
	if version == "" {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "no version to judge: give ?version=V or the webhook's metadata.version"})
		return
	}
	vv, ok := s.judge(w, r, version, baseline)
	if !ok {
		return
	}
	a := FlaggerAnswer{Hook: hook, Service: vv.Service, Version: version, Verdict: vv.Verdict, Pass: pass(vv.Verdict),
		Reason: vv.Reason, Watching: vv.Watching, Incident: vv.Incident}
	code := http.StatusOK
	if !a.Pass {
		code = http.StatusPreconditionFailed
	}
	s.log.Debug("Flagger webhook answered", zap.String("service", a.Service), zap.String("hook", hook), zap.String("version", version),
		zap.String("canary", p.Namespace+"/"+p.Name), zap.String("phase", p.Phase), zap.String("verdict", string(a.Verdict)), zap.Bool("pass", a.Pass))
	writeJSON(w, code, a)
}
