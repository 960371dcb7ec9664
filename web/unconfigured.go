package web

import (
	"net/http"
)

// notConfigured is what a Guardian whose configuration does not load
// answers where it would need one.
const notConfigured = "Guardian is not configured: its configuration file does not load (the log says why; guardian check lists every error)"

// NewUnconfigured builds the server of a Guardian waiting for a valid
// configuration (guardian run --config.wait-valid): /-/healthy answers
// 200, for the process is up; /-/ready answers 503; /metrics serves
// opts.Gatherer (guardian_config_last_reload_successful 0 among them) and
// POST /-/reload asks for another attempt, both guarded by opts.Flags as
// usual; every other path answers 503 saying why. It uses opts.Gatherer,
// Logger, Reload, Tokens (usually none yet), Flags and Limits.
func NewUnconfigured(opts Options) *Server {
	s := newServer(opts)
	s.mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "Guardian is not ready. "+notConfigured+".", http.StatusServiceUnavailable)
	})
	s.mux.HandleFunc("POST /-/reload", s.reload)
	s.mux.HandleFunc("PUT /-/reload", s.reload)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: notConfigured})
	})
	return s
}
