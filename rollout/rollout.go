// Package rollout learns of a service's fresh deploys: a new value of the
// version label in its metrics, or an announcement through the API. The
// version serving before the new one is the baseline it is judged against.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/source"
)

// Origin says how a deploy was learnt.
type Origin int

// Origins of deploy events.
const (
	OriginVersionQuery Origin = iota // a new version label value with traffic
	OriginAPI                        // POST /api/v1/deployments
	OriginKubernetes                 // a new Deployment revision
)

// String returns the origin as used in logs and the `source` metric label.
func (o Origin) String() string {
	switch o {
	case OriginVersionQuery:
		return "version_query"
	case OriginAPI:
		return "api"
	case OriginKubernetes:
		return "kubernetes"
	}
	return fmt.Sprintf("origin(%d)", int(o))
}

// Event is a fresh deploy: Version replaced (or joined) Baseline at At.
type Event struct {
	Service  string
	Version  string
	Baseline string // "" when no earlier version is known
	At       time.Time
	Origin   Origin
	// Traffic is the new version's value in the version query (0 for announcements).
	Traffic float64
}

// String describes the event for logs and messages.
func (e Event) String() string {
	b := e.Baseline
	if b == "" {
		b = "(none)"
	}
	return fmt.Sprintf("%s deployed %s (baseline %s) via %s", e.Service, e.Version, b, e.Origin)
}

// Errors of announcements.
var (
	ErrInvalidVersion = errors.New("invalid version")
	ErrUnknownService = errors.New("unknown service")
)

// maxSeen bounds the versions remembered; the oldest are forgotten first.
const maxSeen = 64

// Detector follows one service's running versions. It is not safe for
// concurrent use; the service loop owns it.
type Detector struct {
	service    string
	tmpl       *query.Template // nil: announcements only
	label      model.LabelName
	minTraffic float64

	primed  bool
	current string
	seen    map[string]time.Time // version → first seen
	serving []string             // serving at the last observation, sorted
}

// Config is how a service's fresh deploys are learnt from its metrics.
type Config struct {
	// VersionQuery is a PromQL template ({{.Service}}) returning one series
	// per running version, labelled with VersionLabel, whose value is its
	// traffic. Empty: deploys are only announced (API, Kubernetes).
	VersionQuery string
	// VersionLabel is the label naming the version; empty means "version".
	VersionLabel string
	// MinTraffic is the value above which a version counts as serving.
	MinTraffic float64
}

// NewDetector builds a detector from the service's deploy settings.
func NewDetector(service string, c Config) (*Detector, error) {
	d := &Detector{
		service:    service,
		label:      model.LabelName(c.VersionLabel),
		minTraffic: c.MinTraffic,
		seen:       map[string]time.Time{},
	}
	if d.label == "" {
		d.label = "version"
	}
	if c.VersionQuery != "" {
		t, err := query.New("version_query", c.VersionQuery)
		if err != nil {
			return nil, fmt.Errorf("service %s: version_query: %w", service, err)
		}
		d.tmpl = t
	}
	return d, nil
}

// Current returns the version believed to be serving ("" before the first observation).
func (d *Detector) Current() string { return d.current }

// Serving returns the versions serving at the last observation.
func (d *Detector) Serving() []string { return slices.Clone(d.serving) }

// HasQuery reports whether the detector watches a version query.
func (d *Detector) HasQuery() bool { return d.tmpl != nil }

// State is what a detector has learnt, in a form that survives a restart.
type State struct {
	Primed  bool                 `json:"primed"`
	Current string               `json:"current"`
	Seen    map[string]time.Time `json:"seen"`
	Serving []string             `json:"serving"`
}

// State returns what d has learnt.
func (d *Detector) State() State {
	st := State{Primed: d.primed, Current: d.current, Serving: slices.Clone(d.serving), Seen: make(map[string]time.Time, len(d.seen))}
	for k, v := range d.seen {
		st.Seen[k] = v
	}
	return st
}

// Restore takes over a state saved before a restart.
func (d *Detector) Restore(st State) {
	d.primed, d.current, d.serving = st.Primed, st.Current, slices.Clone(st.Serving)
	d.seen = make(map[string]time.Time, len(st.Seen))
	for k, v := range st.Seen {
		d.seen[k] = v
	}
}

// CopyStateFrom takes over what old has learnt, so a reload that keeps the
// deploy settings neither forgets versions nor reports a deploy twice.
func (d *Detector) CopyStateFrom(old *Detector) {
	d.primed, d.current, d.serving = old.primed, old.current, slices.Clone(old.serving)
	d.seen = make(map[string]time.Time, len(old.seen))
	for k, v := range old.seen {
		d.seen[k] = v
	}
}

// Observe runs the version query at ts. The first observation only learns
// what is running. Later, a version with traffic that was never seen before
// is a fresh deploy, with the previously current version as its baseline.
// A version seen before that comes back (a rollback) becomes current without
// an event.
func (d *Detector) Observe(ctx context.Context, ts time.Time, q source.Querier) (*Event, error) {
	if d.tmpl == nil {
		return nil, nil
	}
	qs, err := d.tmpl.Render(query.Vars{Service: d.service})
	if err != nil {
		return nil, err
	}
	res, err := q.Query(ctx, qs, ts)
	if err != nil {
		return nil, fmt.Errorf("version query for %s: %w", d.service, err)
	}
	traffic := map[string]float64{}
	for _, s := range res.Vector {
		v := string(s.Metric[d.label])
		f := float64(s.Value)
		if v == "" || math.IsNaN(f) || f <= d.minTraffic {
			continue
		}
		traffic[v] += f
	}
	serving := make([]string, 0, len(traffic))
	for v := range traffic {
		serving = append(serving, v)
	}
	// Most traffic first, then by name, so choices are deterministic.
	sort.Slice(serving, func(i, j int) bool {
		if traffic[serving[i]] != traffic[serving[j]] {
			return traffic[serving[i]] > traffic[serving[j]]
		}
		return serving[i] < serving[j]
	})

	if !d.primed {
		if len(serving) == 0 {
			return nil, nil // nothing serving yet: learn from the first traffic
		}
		d.primed = true
		for _, v := range serving {
			d.remember(v, ts)
		}
		d.current = serving[0]
		d.serving = sortedCopy(serving)
		return nil, nil
	}

	var fresh []string
	for _, v := range serving {
		if _, ok := d.seen[v]; !ok {
			fresh = append(fresh, v)
		}
	}
	for _, v := range serving {
		d.remember(v, ts)
	}
	d.serving = sortedCopy(serving)
	if len(fresh) > 0 {
		ev := &Event{
			Service: d.service, Version: fresh[0], Baseline: d.current,
			At: ts, Origin: OriginVersionQuery, Traffic: traffic[fresh[0]],
		}
		d.current = fresh[0]
		return ev, nil
	}
	if len(serving) > 0 && !slices.Contains(serving, d.current) {
		d.current = serving[0] // the current version stopped serving: e.g. rolled back
	}
	return nil, nil
}

// Known reports whether version was seen before.
func (d *Detector) Known(version string) bool {
	_, ok := d.seen[version]
	return ok
}

// Learn records version as running, without a deploy event: what runs when
// watching starts, or an earlier version coming back (a rollback).
func (d *Detector) Learn(version string, ts time.Time) {
	d.primed = true
	d.remember(version, ts)
	d.current = version
}

// Announce records a deploy announced through the API. An empty baseline
// means the version current until now.
func (d *Detector) Announce(version, baseline string, ts time.Time) (Event, error) {
	if err := ValidVersion(version); err != nil {
		return Event{}, err
	}
	if baseline != "" {
		if err := ValidVersion(baseline); err != nil {
			return Event{}, fmt.Errorf("baseline: %w", err)
		}
	} else if d.current != version {
		baseline = d.current
	}
	if baseline == version {
		return Event{}, fmt.Errorf("%w: version and baseline are both %q", ErrInvalidVersion, version)
	}
	d.primed = true
	if baseline != "" {
		d.remember(baseline, ts)
	}
	d.remember(version, ts)
	d.current = version
	return Event{Service: d.service, Version: version, Baseline: baseline, At: ts, Origin: OriginAPI}, nil
}

// ValidVersion checks a version string from outside: not empty, at most 256
// bytes, printable. (Query templates escape it anyway.)
func ValidVersion(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%w: empty", ErrInvalidVersion)
	case len(v) > 256:
		return fmt.Errorf("%w: longer than 256 bytes", ErrInvalidVersion)
	case strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Errorf("%w: %q has control characters", ErrInvalidVersion, v)
	}
	return nil
}

func (d *Detector) remember(v string, ts time.Time) {
	if _, ok := d.seen[v]; ok {
		return
	}
	d.seen[v] = ts
	if len(d.seen) <= maxSeen {
		return
	}
	oldest, at := "", time.Time{}
	for k, t := range d.seen {
		if k == d.current || k == v {
			continue
		}
		if oldest == "" || t.Before(at) {
			oldest, at = k, t
		}
	}
	delete(d.seen, oldest)
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
