package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// Defaults applied where the YAML is decoded.
const (
	DefaultEvaluationInterval = Duration(5 * time.Second)
	DefaultListenAddress      = "127.0.0.1:9095"
	DefaultStateDir           = "./data"
	DefaultQueryTimeout       = Duration(10 * time.Second)
	DefaultSourceAlertAfter   = Duration(2 * time.Minute)
	DefaultScrapeInterval     = Duration(5 * time.Second)
	// DefaultMaxScrapeTimeout caps the default scrape timeout, which is
	// otherwise the scrape interval.
	DefaultMaxScrapeTimeout  = Duration(10 * time.Second)
	DefaultWatchWindow       = Duration(30 * time.Minute)
	DefaultVersionLabel      = "version"
	DefaultTriggerWindow     = Duration(time.Minute)
	DefaultSeverity          = "SEV-1"
	DefaultPrometheusTimeout = Duration(10 * time.Second)
)

func (c *Config) setDefaults() {
	c.Global = Global{
		EvaluationInterval: DefaultEvaluationInterval,
		ListenAddress:      DefaultListenAddress,
		StateDir:           DefaultStateDir,
		QueryTimeout:       DefaultQueryTimeout,
		SourceAlertAfter:   DefaultSourceAlertAfter,
		Postmortem: Postmortem{
			Delay: Duration(12 * time.Hour), BusinessDays: true, At: "10:00", TimeZone: "UTC",
			Duration: Duration(time.Hour),
		},
	}
	c.StatusPage = StatusPage{Title: DefaultStatusPageTitle}
}

func (s *Service) setDefaults() {
	s.WatchWindow = DefaultWatchWindow
	s.Deploy.VersionLabel = DefaultVersionLabel
	s.Approval.Mode = ApprovalManual
	s.Mode = ModeEnforce
	s.Recovery = Recovery{Tolerance: 0.1, StableFor: Duration(time.Minute), Timeout: Duration(15 * time.Minute)}
}

func (c *Cluster) setDefaults() {
	c.LeaseName = "guardian"
	c.StatePrefix = "guardian"
	c.LeaseDuration = Duration(15 * time.Second)
	c.RenewDeadline = Duration(10 * time.Second)
	c.RetryPeriod = Duration(2 * time.Second)
}

func (s *Smoke) setDefaults() {
	s.Method = "GET"
	s.ExpectStatus = 200
	s.Timeout = Duration(5 * time.Second)
}

// setDefaults sets the interval; the timeout's default depends on the
// interval and is applied after decoding.
func (s *Scrape) setDefaults() {
	s.Interval = DefaultScrapeInterval
}

// Defaults of a trigger's sequential test.
const (
	DefaultSequentialAlpha = 0.001
	DefaultMinEffect       = "1.5x"
	DefaultBaselineWindow  = Duration(30 * time.Minute)
)

func (s *Sequential) setDefaults() {
	s.Alpha = DefaultSequentialAlpha
	s.MinEffect = BaselineLimit{Ratio: 1.5, Text: DefaultMinEffect}
	s.BaselineWindow = DefaultBaselineWindow
}

// DefaultLatencyQuantiles are the baseline quantiles a latency test
// guards by default.
var DefaultLatencyQuantiles = []float64{0.5, 0.9, 0.99}

func (l *Latency) setDefaults() {
	l.Alpha = DefaultSequentialAlpha
	l.MinEffect = BaselineLimit{Ratio: 1.5, Text: DefaultMinEffect}
	l.Quantiles = slices.Clone(DefaultLatencyQuantiles)
	l.BaselineWindow = DefaultBaselineWindow
}

func (t *Trigger) setDefaults() {
	t.Window = DefaultTriggerWindow
	t.OnNoData = PolicyIgnore
	t.OnQueryError = PolicyIgnore
	t.Severity = DefaultSeverity
}

// setDefaults applies prometheus/common's client defaults, which its own
// UnmarshalYAML would apply were HTTPClientConfig not inlined.
func (p *PrometheusSource) setDefaults() {
	p.Timeout = DefaultPrometheusTimeout
	p.HTTPClientConfig = commoncfg.DefaultHTTPClientConfig
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d as Prometheus does ("1m30s", "2d").
func (d Duration) String() string { return model.Duration(d).String() }

// MarshalYAML writes d as a Prometheus duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML parses a Prometheus duration such as "30s", "1h30m" or "2d".
// Negative durations are rejected.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a duration, got %s", describe(n))
	}
	if strings.HasPrefix(n.Value, "-") {
		return fmt.Errorf("invalid duration %q: must not be negative", n.Value)
	}
	md, err := model.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("invalid duration %q", n.Value)
	}
	*d = Duration(md)
	return nil
}

// ParseBaselineLimit parses a ratio ("2x", "1.5x") or a delta ("+0.02").
func ParseBaselineLimit(s string) (BaselineLimit, error) {
	bad := fmt.Errorf("invalid baseline limit %q: want a ratio like 2x or a delta like +0.02", s)
	switch {
	case strings.HasSuffix(s, "x"):
		r, err := strconv.ParseFloat(strings.TrimSuffix(s, "x"), 64)
		if err != nil || r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
			return BaselineLimit{}, bad
		}
		return BaselineLimit{Ratio: r, Text: s}, nil
	case strings.HasPrefix(s, "+"):
		v, err := strconv.ParseFloat(s[1:], 64)
		if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) || strings.HasPrefix(s[1:], "+") {
			return BaselineLimit{}, bad
		}
		return BaselineLimit{Delta: v, Text: s}, nil
	}
	return BaselineLimit{}, bad
}

// IsRatio reports whether b is a ratio rather than a delta.
func (b BaselineLimit) IsRatio() bool { return b.Ratio > 0 }

// Threshold returns the limit for a baseline value: baseline×Ratio for a
// ratio, baseline+Delta for a delta.
func (b BaselineLimit) Threshold(baseline float64) float64 {
	if b.IsRatio() {
		return baseline * b.Ratio
	}
	return baseline + b.Delta
}

// String returns the limit as written.
func (b BaselineLimit) String() string { return b.Text }

// MarshalYAML writes the limit as written.
func (b BaselineLimit) MarshalYAML() (any, error) { return b.Text, nil }

// UnmarshalYAML parses a ratio ("2x") or a delta ("+0.02").
func (b *BaselineLimit) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a baseline limit like 2x or +0.02, got %s", describe(n))
	}
	v, err := ParseBaselineLimit(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// String returns the policy's name.
func (p NoDataPolicy) String() string { return string(p) }

// UnmarshalYAML accepts "ignore" or "fire".
func (p *NoDataPolicy) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		switch v := NoDataPolicy(n.Value); v {
		case PolicyIgnore, PolicyFire:
			*p = v
			return nil
		}
		return fmt.Errorf("invalid policy %q: want ignore or fire", n.Value)
	}
	return fmt.Errorf("want ignore or fire, got %s", describe(n))
}
