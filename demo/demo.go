// Package demo is a small instrumented HTTP service whose live versions, error
// rates and latencies can be changed at run time, plus a load generator to drive
// it. Guardian's tests, benchmarks and `guardian demo` run it in-process; the
// demo-service command runs it as a binary.
package demo

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Limits on the state an admin can set.
const (
	// MaxVersions is the largest number of versions that may be live at once.
	MaxVersions = 16
	// MaxVersionLen is the longest accepted version name, in bytes.
	MaxVersionLen = 128
	// MaxLatency is the longest accepted per-request latency.
	MaxLatency = time.Minute
	// MaxWeight is the largest accepted traffic weight.
	MaxWeight = 1e6
)

// ErrInvalidVersion is wrapped by every error rejecting a version or a set of versions.
var ErrInvalidVersion = errors.New("invalid version")

// Version is one live version of the demo application and how it behaves.
type Version struct {
	// Version is the value of the version label, such as "v2".
	Version string
	// Weight is the version's share of traffic relative to the other live
	// versions; it must be > 0. Deploy sets it to 1.
	Weight float64
	// ErrorRate is the probability in [0, 1] that a request fails with HTTP 500.
	ErrorRate float64
	// Latency is how long a successful request takes, in [0, MaxLatency].
	Latency time.Duration
}

// Validate reports why v cannot be served, wrapping ErrInvalidVersion, or nil.
func (v Version) Validate() error {
	switch {
	case v.Version == "":
		return fmt.Errorf("%w: version name must not be empty", ErrInvalidVersion)
	case len(v.Version) > MaxVersionLen:
		return fmt.Errorf("%w: version name %.20q... is %d bytes long, the maximum is %d",
			ErrInvalidVersion, v.Version, len(v.Version), MaxVersionLen)
	case !utf8.ValidString(v.Version) || strings.IndexFunc(v.Version, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: version name %q must be valid UTF-8 without control characters",
			ErrInvalidVersion, v.Version)
	case !(v.Weight > 0 && v.Weight <= MaxWeight):
		return fmt.Errorf("%w: version %q: weight must be > 0 and <= %g, got %g",
			ErrInvalidVersion, v.Version, float64(MaxWeight), v.Weight)
	case !(v.ErrorRate >= 0 && v.ErrorRate <= 1):
		return fmt.Errorf("%w: version %q: error_rate must be within [0, 1], got %g",
			ErrInvalidVersion, v.Version, v.ErrorRate)
	case v.Latency < 0 || v.Latency > MaxLatency:
		return fmt.Errorf("%w: version %q: latency must be within [0, %s], got %s",
			ErrInvalidVersion, v.Version, MaxLatency, v.Latency)
	}
	return nil
}

func validateVersions(vs []Version) error {
	if len(vs) == 0 {
		return fmt.Errorf("%w: at least one version must be live", ErrInvalidVersion)
	}
	if len(vs) > MaxVersions {
		return fmt.Errorf("%w: %d versions given, at most %d may be live", ErrInvalidVersion, len(vs), MaxVersions)
	}
	seen := make(map[string]bool, len(vs))
	for i, v := range vs {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("versions[%d]: %w", i, err)
		}
		if seen[v.Version] {
			return fmt.Errorf("versions[%d]: %w: version %q is listed twice", i, ErrInvalidVersion, v.Version)
		}
		seen[v.Version] = true
	}
	return nil
}

// Options configures a Service. The zero value is usable.
type Options struct {
	// Registry receives the service's metrics and is served on /metrics; nil means a new registry.
	Registry *prometheus.Registry
	// Seed makes the random choices (version, failure) reproducible; 0 picks a random seed.
	Seed uint64
	// Now returns the current time for duration measurements; nil means time.Now.
	Now func() time.Time
	// Logger logs admin changes; nil means no logging.
	Logger *zap.Logger
}

// Service is the demo application: an http.Handler serving app traffic on every
// path except /metrics, /healthz and /admin/. It starts with one live version,
// "v1", with weight 1, no errors and no latency.
type Service struct {
	now     func() time.Time
	logger  *zap.Logger
	metrics http.Handler

	requests  *prometheus.CounterVec
	durations *prometheus.HistogramVec
	buildInfo *prometheus.GaugeVec

	mu          sync.Mutex // guards the fields below and orders build-info updates
	rng         *rand.Rand
	versions    []Version
	history     map[string]Version // every version ever live, as last set
	totalWeight float64
	healthy     bool
}

// New returns a Service registering its metrics in opts.Registry. It panics if
// the metrics are already registered there, as prometheus.MustRegister does.
func New(opts Options) *Service {
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	seed := opts.Seed
	if seed == 0 {
		var b [8]byte
		_, _ = crand.Read(b[:]) // never fails on supported platforms
		seed = binary.LittleEndian.Uint64(b[:])
	}
	s := &Service{
		now:     now,
		logger:  logger,
		metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "Application requests handled, by version and HTTP status code.",
		}, []string{"version", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Application request duration in seconds, by version.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, []string{"version"}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "app_build_info",
			Help: "Always 1 for each version of the application that is live.",
		}, []string{"version"}),
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		healthy: true,
	}
	reg.MustRegister(s.requests, s.durations, s.buildInfo)
	s.setVersions([]Version{{Version: "v1", Weight: 1}})
	return s
}

// SetVersions replaces the live versions, all at once. Versions that are no
// longer live stop serving and lose their app_build_info series; their request
// counters stay exported, as they would in a process that was not restarted.
func (s *Service) SetVersions(vs []Version) error {
	if err := validateVersions(vs); err != nil {
		return err
	}
	s.setVersions(vs)
	s.logger.Info("live versions changed", zap.Any("versions", vs))
	return nil
}

// Deploy makes v the only live version, with weight 1, as at the end of a rolling update.
func (s *Service) Deploy(v Version) error {
	v.Weight = 1
	if err := v.Validate(); err != nil {
		return err
	}
	s.setVersions([]Version{v})
	s.logger.Info("deployed", zap.String("version", v.Version),
		zap.Float64("error_rate", v.ErrorRate), zap.Duration("latency", v.Latency))
	return nil
}

func (s *Service) setVersions(vs []Version) {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := make(map[string]bool, len(vs))
	total := 0.0
	for _, v := range vs {
		live[v.Version] = true
		total += v.Weight
	}
	for _, old := range s.versions {
		if !live[old.Version] {
			s.buildInfo.DeleteLabelValues(old.Version)
		}
	}
	for _, v := range vs {
		s.buildInfo.WithLabelValues(v.Version).Set(1)
		// Both codes from the start, at 0, as Prometheus's instrumentation
		// guidelines advise: a 500 counter created at the first error
		// counts nothing of that error in increase() until its second
		// scrape, which delays what an error rate shows.
		for _, code := range []int{http.StatusOK, http.StatusInternalServerError} {
			s.requests.WithLabelValues(v.Version, strconv.Itoa(code))
		}
	}
	s.versions = append([]Version(nil), vs...)
	s.totalWeight = total
	if s.history == nil {
		s.history = map[string]Version{}
	}
	for _, v := range vs {
		s.history[v.Version] = v
	}
}

// Rollback makes version, served before, the only live version again, with
// the error rate and latency it had: what a deploy system's rollback does.
// Rolling back to the version already live is a no-op, so a repeated
// rollback request is harmless.
func (s *Service) Rollback(version string) error {
	s.mu.Lock()
	v, ok := s.history[version]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q was never deployed here", ErrInvalidVersion, version)
	}
	return s.Deploy(v)
}

// Versions returns a copy of the live versions.
func (s *Service) Versions() []Version {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Version(nil), s.versions...)
}

// SetHealthy sets whether /healthz answers 200 (true) or 503 (false).
func (s *Service) SetHealthy(healthy bool) {
	s.mu.Lock()
	changed := s.healthy != healthy
	s.healthy = healthy
	s.mu.Unlock()
	if changed {
		s.logger.Info("health changed", zap.Bool("healthy", healthy))
	}
}

// Healthy reports what /healthz answers: true for 200, false for 503.
func (s *Service) Healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy
}

// ServeHTTP routes /metrics, /healthz and /admin/ and treats every other path as app traffic.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/metrics":
		if allowMethods(w, r, http.MethodGet, http.MethodHead) {
			s.metrics.ServeHTTP(w, r)
		}
	case p == "/healthz":
		if allowMethods(w, r, http.MethodGet, http.MethodHead) {
			s.serveHealth(w)
		}
	case p == "/admin" || strings.HasPrefix(p, "/admin/"):
		s.serveAdmin(w, r)
	default:
		s.serveApp(w, r)
	}
}

func (s *Service) serveHealth(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.Healthy() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("unhealthy\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// pick chooses the version that serves a request and whether the request fails.
func (s *Service) pick() (Version, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	chosen := s.versions[len(s.versions)-1]
	x := s.rng.Float64() * s.totalWeight
	for _, v := range s.versions {
		if x < v.Weight {
			chosen = v
			break
		}
		x -= v.Weight
	}
	return chosen, s.rng.Float64() < chosen.ErrorRate
}

// serveApp answers one app request. A request whose context ends while it
// waits out the version's latency gets no response and is not counted.
func (s *Service) serveApp(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	v, fail := s.pick()
	code := http.StatusOK
	if fail {
		code = http.StatusInternalServerError
	} else if v.Latency > 0 {
		t := time.NewTimer(v.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	// Count before answering, so a client that has its answer sees it counted.
	s.requests.WithLabelValues(v.Version, strconv.Itoa(code)).Inc()
	s.durations.WithLabelValues(v.Version).Observe(math.Max(0, s.now().Sub(start).Seconds()))

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Version", v.Version)
	w.WriteHeader(code)
	if fail {
		_, _ = fmt.Fprintf(w, "%s: injected failure\n", v.Version)
		return
	}
	_, _ = fmt.Fprintf(w, "hello from %s\n", v.Version)
}
