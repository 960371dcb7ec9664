package web

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// TestUnconfigured: a Guardian waiting for a valid configuration is
// healthy, not ready, serves its metrics, takes reload requests from
// loopback, and says why at every other path.
func TestUnconfigured(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "guardian_config_last_reload_successful", Help: "h"})
	reg.MustRegister(g)
	reloadErr := errors.New("loading config /etc/guardian/config.yaml: services[0]: unknown field bogus")
	reloads := 0
	s := NewUnconfigured(Options{Gatherer: reg, Logger: zap.NewNop(), Reload: func() <-chan error {
		reloads++
		ch := make(chan error, 1)
		ch <- reloadErr
		return ch
	}})
	h := s.Handler()
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/-/healthy", http.StatusOK, "Healthy"},
		{"GET", "/-/ready", http.StatusServiceUnavailable, "not configured"},
		{"GET", "/metrics", http.StatusOK, "guardian_config_last_reload_successful 0"},
		{"GET", "/api/v1/status", http.StatusServiceUnavailable, "not configured"},
		{"POST", "/api/v1/deployments", http.StatusServiceUnavailable, "not configured"},
		{"GET", "/", http.StatusServiceUnavailable, "not configured"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			w := do(t, h, tc.method, tc.path, "", "")
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.body) {
				t.Errorf("%d %q, want %d with %q", w.Code, w.Body.String(), tc.code, tc.body)
			}
		})
	}
	t.Run("reload from loopback", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/-/reload", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "unknown field bogus") || reloads != 1 {
			t.Errorf("%d %q after %d reloads, want 500 with the error", w.Code, w.Body.String(), reloads)
		}
	})
}
