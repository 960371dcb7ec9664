package demo

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoadRate(t *testing.T) {
	tests := []struct {
		name   string
		client func(*httptest.Server) *http.Client
	}{
		{"own client", func(*httptest.Server) *http.Client { return nil }},
		{"given client", func(srv *httptest.Server) *http.Client { return srv.Client() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, reg := newService(t, 1)
			srv := httptest.NewServer(s)
			defer srv.Close()

			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			st, err := Load{Target: srv.URL + "/", RPS: 200, Concurrency: 8, Client: tc.client(srv)}.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			served := counter(t, reg, "v1", "200")
			if served < 50 || served > 150 {
				t.Errorf("server counted %v requests, want 200 rps * 0.5s = ~100 (50..150); stats %+v", served, st)
			}
			if float64(st.OK) > served || served > float64(st.Sent) {
				t.Errorf("want OK (%d) <= served (%v) <= Sent (%d)", st.OK, served, st.Sent)
			}
			if st.Errors != 0 {
				t.Errorf("Errors = %d, want 0 from a service without errors", st.Errors)
			}
		})
	}
}

func TestLoadCountsErrors(t *testing.T) {
	s, reg := newService(t, 1)
	if err := s.Deploy(Version{Version: "v1", ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	st, err := Load{Target: srv.URL, RPS: 200, Client: srv.Client()}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A request answered just as the run ends may be counted by the server but cut short at the client.
	served := counter(t, reg, "v1", "500")
	if st.OK != 0 || st.Errors == 0 || float64(st.Errors) > served || served > float64(st.Sent) {
		t.Errorf("stats %+v, server counted %v failures; want OK = 0 and 0 < Errors <= served <= Sent", st, served)
	}
}

func TestLoadDropsWhenWorkersBusy(t *testing.T) {
	s, _ := newService(t, 1)
	if err := s.Deploy(Version{Version: "v1", Latency: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	st, err := Load{Target: srv.URL, RPS: 200, Concurrency: 1, Client: srv.Client()}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// One worker, 50ms per request, 300ms: at most 7 requests can start.
	if st.Sent > 7 || st.Dropped == 0 {
		t.Errorf("stats %+v: want Sent <= 7 and some requests dropped", st)
	}
}

func TestLoadStopsWhenCancelled(t *testing.T) {
	s, _ := newService(t, 1)
	// Requests would hang for a minute unless cancellation reaches them.
	if err := s.Deploy(Version{Version: "v1", Latency: MaxLatency}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var arrived atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == 5 {
			cancel()
		}
		s.ServeHTTP(w, r)
	}))
	defer srv.Close()

	start := time.Now()
	st, err := Load{Target: srv.URL, RPS: 1000, Concurrency: 10, Client: srv.Client()}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Run returned %s after start; in-flight requests were not cancelled", elapsed)
	}
	if st.Sent < 5 || st.OK != 0 || st.Errors != 0 {
		t.Errorf("stats %+v: want >= 5 sent, all cut short (neither OK nor errors)", st)
	}
}

func TestLoadValidation(t *testing.T) {
	tests := []struct {
		name string
		load Load
	}{
		{"empty target", Load{RPS: 1}},
		{"not http", Load{Target: "ftp://127.0.0.1/", RPS: 1}},
		{"no host", Load{Target: "http:///x", RPS: 1}},
		{"bad URL", Load{Target: "http://[::1", RPS: 1}},
		{"zero rps", Load{Target: "http://127.0.0.1/"}},
		{"negative rps", Load{Target: "http://127.0.0.1/", RPS: -1}},
		{"NaN rps", Load{Target: "http://127.0.0.1/", RPS: math.NaN()}},
		{"too many rps", Load{Target: "http://127.0.0.1/", RPS: MaxRPS + 1}},
		{"negative concurrency", Load{Target: "http://127.0.0.1/", RPS: 1, Concurrency: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.load.Run(t.Context())
			if !errors.Is(err, ErrInvalidLoad) {
				t.Errorf("Run() error = %v, want ErrInvalidLoad", err)
			}
		})
	}
}
