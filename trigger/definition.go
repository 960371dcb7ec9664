package trigger

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/rollback-guardian/guardian/query"
)

// DefaultWindow is the value of {{.Window}} when a trigger sets none.
const DefaultWindow = time.Minute

// ErrInvalidDefinition is wrapped by every error New and Definition.Validate
// return, so callers can tell a bad definition from other failures.
var ErrInvalidDefinition = errors.New("invalid trigger definition")

// Policy says whether an empty result or NaN (on_no_data), or a failed
// query (on_query_error), counts as a violation.
type Policy string

// Policies. An empty Policy is PolicyIgnore.
const (
	PolicyIgnore Policy = "ignore"
	PolicyFire   Policy = "fire"
)

// String returns the policy's name.
func (p Policy) String() string { return string(p) }

// BaselineLimit is a limit relative to the baseline version: a ratio
// (Ratio > 0, written "2x") or a difference (Delta, written "+0.02").
type BaselineLimit struct {
	// Ratio is the ratio when positive.
	Ratio float64
	// Delta is the difference, used when Ratio is 0.
	Delta float64
	// Text is the limit as written, for humans.
	Text string
}

// IsRatio reports whether b is a ratio rather than a difference.
func (b BaselineLimit) IsRatio() bool { return b.Ratio > 0 }

// String returns the limit as written.
func (b BaselineLimit) String() string { return b.Text }

// Spec is a trigger as configured, in plain Go types: query texts, limits
// and durations. FromSpec parses and validates it into a Definition.
type Spec struct {
	// Name identifies the trigger within its service.
	Name string
	// Query is the value query's template text; optional with Sequential,
	// which then derives it (errors/requests).
	Query string
	// VolumeQuery is the sample size query's template text; empty when no
	// minimum-traffic guard is configured.
	VolumeQuery string
	// Window is the value of {{.Window}}; 0 means DefaultWindow.
	Window time.Duration
	// Above, Below and AboveBaseline are the conditions (see Definition).
	Above, Below  *float64
	AboveBaseline *BaselineLimit
	// Sequential configures an anytime-valid sequential test instead.
	Sequential *SequentialSpec
	// Latency configures an anytime-valid test of latency histograms
	// instead.
	Latency *LatencySpec
	// For, MinRequests, OnNoData, OnQueryError, Severity and SlowerThan
	// are as in Definition.
	For                    time.Duration
	MinRequests            float64
	OnNoData, OnQueryError Policy
	Severity               string
	SlowerThan             time.Duration
}

// SequentialSpec configures a trigger's sequential test in plain Go types
// (see Sequential).
type SequentialSpec struct {
	// Errors and Requests are the count queries' template texts.
	Errors, Requests string
	// Alpha is the false-rollback budget over the whole watch.
	Alpha float64
	// MinEffect is the smallest regression worth acting on.
	MinEffect BaselineLimit
	// BaselineWindow is the period before the deploy whose baseline counts
	// are compared with.
	BaselineWindow time.Duration
	// SlowBurn also runs the change detector (see Sequential).
	SlowBurn bool
}

// LatencySpec configures a trigger's latency test in plain Go types (see
// Latency).
type LatencySpec struct {
	// Buckets is the histogram buckets query's template text.
	Buckets string
	// Alpha is the false-rollback budget over the whole watch.
	Alpha float64
	// MinEffect is the largest regression a healthy version may have.
	MinEffect BaselineLimit
	// Quantiles are the baseline quantiles whose bounds are guarded for
	// the healthy decision; empty: latency.DefaultQuantiles.
	Quantiles []float64
	// BaselineWindow is the period before the deploy whose baseline
	// histogram is compared with.
	BaselineWindow time.Duration
}

// Definition is one trigger as the engine sees it: parsed templates and
// typed limits. Build it with FromSpec, or by hand in tests.
type Definition struct {
	// Name identifies the trigger within its service.
	Name string
	// Query yields the judged value for the new version; the same template
	// rendered with Version set to the baseline yields the baseline value.
	Query *query.Template
	// VolumeQuery yields the sample size (traffic) of the new version; nil
	// when no minimum-traffic guard is configured.
	VolumeQuery *query.Template
	// Window is the value of {{.Window}}.
	Window time.Duration
	// Above is breached when the value is strictly greater.
	Above *float64
	// Below is breached when the value is strictly smaller.
	Below *float64
	// AboveBaseline is breached when the value is strictly greater than
	// baseline*Ratio (Ratio > 0) or baseline+Delta (otherwise).
	AboveBaseline *BaselineLimit
	// Sequential, when set, judges the trigger with an anytime-valid
	// sequential test on counts instead: Above is then the test's absolute
	// limit, and Query (derived from its counts when not given) serves
	// recovery checks and impact measurement only.
	Sequential *Sequential
	// Latency, when set, judges the trigger with an anytime-valid test of
	// the new version's latency histogram against the baseline's instead;
	// Query (derived from its buckets when not given) serves recovery
	// checks and impact measurement only. It excludes the conditions and
	// Sequential.
	Latency *Latency
	// For is how long the conditions must stay breached before the trigger
	// fires; 0 fires at the first violation.
	For time.Duration
	// MinRequests is the least VolumeQuery value for a verdict; 0 disables the guard.
	MinRequests float64
	// OnNoData says whether an empty result or a NaN value counts as a
	// violation ("fire") or not ("ignore", also when empty).
	OnNoData Policy
	// OnQueryError says whether a failed query counts as a violation
	// ("fire") or not ("ignore", also when empty).
	OnQueryError Policy
	// Severity is the incident severity a firing trigger asks for.
	Severity string
	// SlowerThan, when positive, declares a latency trigger: what it judges
	// is requests slower than this (a sequential test's Errors then count
	// the requests slower than it, e.g. a histogram's count minus its
	// bucket at that bound), so an incident's impact is told in slow
	// requests, not failed ones. It does not change a verdict.
	SlowerThan time.Duration
}

// FromSpec builds a Definition from its specification: it parses and
// checks the query templates, applies the default window and validates the
// result.
func FromSpec(c Spec) (Definition, error) {
	d := Definition{
		Name:          c.Name,
		Window:        c.Window,
		Above:         c.Above,
		Below:         c.Below,
		AboveBaseline: c.AboveBaseline,
		For:           c.For,
		MinRequests:   c.MinRequests,
		OnNoData:      c.OnNoData,
		OnQueryError:  c.OnQueryError,
		Severity:      c.Severity,
		SlowerThan:    c.SlowerThan,
	}
	if d.Window == 0 {
		d.Window = DefaultWindow
	}
	var err error
	if c.Sequential != nil {
		if d.Sequential, err = sequentialFromSpec(c.Name, c.Sequential); err != nil {
			return Definition{}, err
		}
	}
	if c.Latency != nil {
		if d.Latency, err = latencyFromSpec(c.Name, c.Latency); err != nil {
			return Definition{}, err
		}
	}
	switch {
	case c.Query != "" || d.Sequential == nil && d.Latency == nil:
		if d.Query, err = parseTemplate(c.Name+"/query", c.Query); err != nil {
			return Definition{}, fmt.Errorf("trigger %q: query: %w", c.Name, err)
		}
	case d.Sequential != nil:
		if d.Query, err = d.Sequential.derivedQuery(c.Name); err != nil {
			return Definition{}, fmt.Errorf("trigger %q: deriving the query: %w", c.Name, err)
		}
	default:
		if d.Query, err = d.Latency.derivedQuery(c.Name); err != nil {
			return Definition{}, fmt.Errorf("trigger %q: deriving the query: %w", c.Name, err)
		}
	}
	if c.VolumeQuery != "" {
		if d.VolumeQuery, err = parseTemplate(c.Name+"/volume_query", c.VolumeQuery); err != nil {
			return Definition{}, fmt.Errorf("trigger %q: volume_query: %w", c.Name, err)
		}
	}
	if err := d.Validate(); err != nil {
		return Definition{}, err
	}
	return d, nil
}

func parseTemplate(name, text string) (*query.Template, error) {
	t, err := query.New(name, text)
	if err != nil {
		return nil, err
	}
	if err := t.Check(); err != nil {
		return nil, err
	}
	return t, nil
}

// Validate reports the first problem that would make the definition
// meaningless: a missing query, no condition at all (an empty AND would
// always be violated), a minimum-traffic guard without a volume query,
// negative durations, NaN limits, an unknown policy, or a sequential test
// that is invalid or combined with conditions it replaces, and the same of
// a latency test. (A sequential or latency definition may leave Query nil:
// New derives it.)
func (d Definition) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("trigger %q: %s: %w", d.Name, fmt.Sprintf(format, a...), ErrInvalidDefinition)
	}
	if d.Sequential != nil && d.Name != "" {
		if err := d.Sequential.validate(d, bad); err != nil {
			return err
		}
	}
	if d.Latency != nil && d.Name != "" {
		if err := d.Latency.validate(d, bad); err != nil {
			return err
		}
	}
	switch {
	case d.Name == "":
		return fmt.Errorf("trigger without a name: %w", ErrInvalidDefinition)
	case d.Query == nil && d.Sequential == nil && d.Latency == nil:
		return bad("no query")
	case d.Above == nil && d.Below == nil && d.AboveBaseline == nil && d.Sequential == nil && d.Latency == nil:
		return bad("no condition: set above, below or above_baseline")
	case d.Above != nil && math.IsNaN(*d.Above):
		return bad("above is NaN")
	case d.Below != nil && math.IsNaN(*d.Below):
		return bad("below is NaN")
	case d.AboveBaseline != nil && (math.IsNaN(d.AboveBaseline.Ratio) || math.IsNaN(d.AboveBaseline.Delta)):
		return bad("above_baseline is NaN")
	case d.AboveBaseline != nil && d.AboveBaseline.Ratio < 0:
		return bad("above_baseline ratio %g is negative", d.AboveBaseline.Ratio)
	case d.Window < 0:
		return bad("negative window %s", d.Window)
	case d.For < 0:
		return bad("negative for %s", d.For)
	case d.SlowerThan < 0:
		return bad("negative slower_than %s", d.SlowerThan)
	case d.MinRequests < 0 || math.IsNaN(d.MinRequests):
		return bad("min_requests %g must be a non-negative number", d.MinRequests)
	case d.MinRequests > 0 && d.VolumeQuery == nil:
		return bad("min_requests needs a volume_query")
	}
	for _, p := range []struct {
		field  string
		policy Policy
	}{{"on_no_data", d.OnNoData}, {"on_query_error", d.OnQueryError}} {
		switch p.policy {
		case "", PolicyIgnore, PolicyFire:
		default:
			return bad("%s: unknown policy %q (want ignore or fire)", p.field, p.policy)
		}
	}
	return nil
}

// Equal reports whether d and o judge the same way: same name, query and
// volume query texts, window, limits, sequential and latency tests, for, min_requests
// and policies (an empty policy equals "ignore"). Severity, SlowerThan and
// the limits' original text are not compared: they do not change a
// verdict, so editing them keeps a trigger's pending state across a reload.
func (d Definition) Equal(o Definition) bool {
	return d.Name == o.Name &&
		templateText(d.Query) == templateText(o.Query) &&
		(d.VolumeQuery == nil) == (o.VolumeQuery == nil) &&
		templateText(d.VolumeQuery) == templateText(o.VolumeQuery) &&
		d.Window == o.Window &&
		floatPtrEqual(d.Above, o.Above) &&
		floatPtrEqual(d.Below, o.Below) &&
		baselineEqual(d.AboveBaseline, o.AboveBaseline) &&
		sequentialEqual(d.Sequential, o.Sequential) &&
		latencyEqual(d.Latency, o.Latency) &&
		d.For == o.For &&
		d.MinRequests == o.MinRequests &&
		policy(d.OnNoData) == policy(o.OnNoData) &&
		policy(d.OnQueryError) == policy(o.OnQueryError)
}

func templateText(t *query.Template) string {
	if t == nil {
		return ""
	}
	return t.Text()
}

func floatPtrEqual(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func baselineEqual(a, b *BaselineLimit) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Ratio == b.Ratio && (a.Ratio > 0 || a.Delta == b.Delta)
}

// policy normalises an empty policy to ignore.
func policy(p Policy) Policy {
	if p == "" {
		return PolicyIgnore
	}
	return p
}
