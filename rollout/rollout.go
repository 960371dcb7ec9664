// Package rollout learns of a service's fresh deploys: a version that starts
// serving in the service's metrics, or an announcement through the API or
// from a Kubernetes workload. A version that was never seen is a deploy; so
// is a version seen before that comes back after other versions replaced
// it (a redeploy, typically after a rollback), unless it is the version the
// latest deploy replaced (that is a rollback). The baseline a deploy is
// judged against is what served most just before it — the stable version
// beside a canary — and the event says why.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

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
	// BaselineWhy says why Baseline was chosen, such as "served 95% of
	// the traffic just before the deploy".
	BaselineWhy string `json:",omitempty"`
	// Redeploy: Version served before and came back after other versions
	// replaced it.
	Redeploy bool `json:",omitempty"`
	At       time.Time
	Origin   Origin
	// Traffic is the new version's value in the version query (0 for announcements).
	Traffic float64
	// Change is what is known of what Version deployed (images, chart,
	// commit, author, change URL); BaselineChange the same of Baseline.
	// Nil when nothing is known.
	Change         *Change `json:",omitempty"`
	BaselineChange *Change `json:",omitempty"`
}

// String describes the event for logs and messages.
func (e Event) String() string {
	b := e.Baseline
	if b == "" {
		b = "(none)"
	}
	what := "deployed"
	if e.Redeploy {
		what = "deployed again"
	}
	return fmt.Sprintf("%s %s %s (baseline %s) via %s", e.Service, what, e.Version, b, e.Origin)
}

// Errors of announcements.
var (
	ErrInvalidVersion = errors.New("invalid version")
	ErrUnknownService = errors.New("unknown service")
	// ErrNoTarget: a person's rollback cannot tell which version to go
	// back to, or there is nothing to roll back.
	ErrNoTarget = errors.New("no rollback target")
)

// maxSeen bounds the versions remembered; the oldest are forgotten first.
const maxSeen = 64

// goneAfter is how many observations in a row a version must be missing,
// while others serve, before it counts as replaced: one missing
// observation (a scrape gap) is not a change of version.
const goneAfter = 2

// Detector follows one service's running versions. It is not safe for
// concurrent use; the service loop owns it.
type Detector struct {
	service    string
	tmpl       *query.Template // nil: announcements only
	rng        time.Duration   // the version query's longest range
	label      model.LabelName
	minTraffic float64

	primed  bool
	current string
	seen    map[string]time.Time // version → first seen
	serving []string             // serving at the last observation, sorted
	// traffic is each version's traffic at the last observation.
	traffic map[string]float64
	// missing counts, for versions that served and stopped, the
	// observations in a row without them; replaced holds those missing for
	// goneAfter observations while others served.
	missing  map[string]int
	replaced map[string]bool
	// last is the latest deploy: a return to the version it replaced is a
	// rollback.
	last *Deployed
	// changes is what is known of what each remembered version deployed.
	changes map[string]Change
}

// Deployed names a deploy: Version replaced Baseline.
type Deployed struct {
	Version  string `json:"version"`
	Baseline string `json:"baseline"`
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
		traffic:    map[string]float64{},
		missing:    map[string]int{},
		replaced:   map[string]bool{},
		changes:    map[string]Change{},
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
		// Rendered as Observe renders it; a query that does not parse
		// fails there, and looks back nothing here.
		if qs, err := t.Render(query.Vars{Service: service}); err == nil {
			d.rng, _ = query.MaxRange(qs)
		}
	}
	return d, nil
}

// Current returns the version believed to be serving ("" before the first observation).
func (d *Detector) Current() string { return d.current }

// Serving returns the versions serving at the last observation.
func (d *Detector) Serving() []string { return slices.Clone(d.serving) }

// ServingByTraffic returns the versions serving at the last observation,
// most traffic first (by name for equal traffic).
func (d *Detector) ServingByTraffic() []string {
	out := slices.Clone(d.serving)
	sortByTraffic(out, d.traffic)
	return out
}

// sortByTraffic sorts versions by traffic, most first, then by name, so
// choices are deterministic.
func sortByTraffic(vs []string, traffic map[string]float64) {
	sort.SliceStable(vs, func(i, j int) bool {
		if traffic[vs[i]] != traffic[vs[j]] {
			return traffic[vs[i]] > traffic[vs[j]]
		}
		return vs[i] < vs[j]
	})
}

// HasQuery reports whether the detector watches a version query.
func (d *Detector) HasQuery() bool { return d.tmpl != nil }

// Range is the longest range (with its offset) the version query looks
// back; 0 without a version query. A version it sees first has served for
// up to about this long (plus one evaluation interval): a rate over it
// needs two samples of the version.
func (d *Detector) Range() time.Duration { return d.rng }

// State is what a detector has learnt, in a form that survives a restart.
type State struct {
	Primed   bool                 `json:"primed"`
	Current  string               `json:"current"`
	Seen     map[string]time.Time `json:"seen"`
	Serving  []string             `json:"serving"`
	Traffic  map[string]float64   `json:"traffic,omitempty"`
	Missing  map[string]int       `json:"missing,omitempty"`
	Replaced []string             `json:"replaced,omitempty"`
	Last     *Deployed            `json:"last_deploy,omitempty"`
	// Changes are what is known of the remembered versions.
	Changes map[string]Change `json:"changes,omitempty"`
}

// State returns what d has learnt.
func (d *Detector) State() State {
	st := State{Primed: d.primed, Current: d.current, Serving: slices.Clone(d.serving), Seen: maps.Clone(d.seen)}
	if len(d.traffic) > 0 {
		st.Traffic = maps.Clone(d.traffic)
	}
	if len(d.missing) > 0 {
		st.Missing = maps.Clone(d.missing)
	}
	st.Replaced = slices.Sorted(maps.Keys(d.replaced))
	if d.last != nil {
		l := *d.last
		st.Last = &l
	}
	if len(d.changes) > 0 {
		st.Changes = make(map[string]Change, len(d.changes))
		for v, c := range d.changes {
			st.Changes[v] = c.clone()
		}
	}
	return st
}

// Restore takes over a state saved before a restart.
func (d *Detector) Restore(st State) {
	d.primed, d.current, d.serving = st.Primed, st.Current, slices.Clone(st.Serving)
	d.seen = maps.Clone(st.Seen)
	if d.seen == nil {
		d.seen = map[string]time.Time{}
	}
	d.traffic, d.missing, d.replaced = map[string]float64{}, map[string]int{}, map[string]bool{}
	maps.Copy(d.traffic, st.Traffic)
	maps.Copy(d.missing, st.Missing)
	for _, v := range st.Replaced {
		d.replaced[v] = true
	}
	d.last = nil
	if st.Last != nil {
		l := *st.Last
		d.last = &l
	}
	d.changes = map[string]Change{}
	for v, c := range st.Changes {
		d.changes[v] = c.clone()
	}
}

// CopyStateFrom takes over what old has learnt, so a reload that keeps the
// deploy settings neither forgets versions nor reports a deploy twice.
func (d *Detector) CopyStateFrom(old *Detector) { d.Restore(old.State()) }

// Observe runs the version query at ts. The first observation only learns
// what is running. Later, a version that starts serving is a fresh deploy
// when it was never seen, or when it was replaced by other versions and is
// not the version the latest deploy replaced (see Returns); its baseline is
// the version that served most at the previous observation. A version that
// comes back to replace the latest deploy (a rollback) becomes current
// without an event.
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
	sortByTraffic(serving, traffic)

	if !d.primed {
		if len(serving) == 0 {
			return nil, nil // nothing serving yet: learn from the first traffic
		}
		d.primed = true
		for _, v := range serving {
			d.remember(v, ts)
		}
		d.current = serving[0]
		d.serving, d.traffic = sortedCopy(serving), traffic
		return nil, nil
	}

	before, beforeTraffic := d.serving, d.traffic
	var starting []string // serving now, not at the last observation
	for _, v := range serving {
		if !slices.Contains(before, v) {
			starting = append(starting, v)
		}
	}
	// Versions that stopped serving: missing once is a gap, missing for
	// goneAfter observations while others serve is a replacement.
	for v := range d.missing {
		if _, ok := traffic[v]; ok {
			delete(d.missing, v)
		} else if len(serving) > 0 {
			d.missing[v]++
		}
	}
	for _, v := range before {
		if _, ok := traffic[v]; !ok && len(serving) > 0 && d.missing[v] == 0 {
			d.missing[v] = 1
		}
	}
	for v, n := range d.missing {
		if n >= goneAfter {
			d.replaced[v] = true
			delete(d.missing, v)
		}
	}
	d.serving, d.traffic = sortedCopy(serving), traffic

	var ev *Event
	for _, v := range starting {
		_, known := d.seen[v]
		switch {
		case known && !d.replaced[v]:
			continue // back after a gap, or after no traffic at all: no change
		case known && d.Returns(v):
			d.replaced[v] = false
			delete(d.replaced, v)
			d.current = v // a rollback
			continue
		}
		if ev == nil {
			ev = &Event{Service: d.service, Version: v, At: ts, Origin: OriginVersionQuery, Traffic: traffic[v], Redeploy: known}
		}
	}
	for _, v := range serving {
		d.remember(v, ts)
	}
	if ev != nil {
		delete(d.replaced, ev.Version)
		ev.Baseline, ev.BaselineWhy = d.baselineFor(ev.Version, before, beforeTraffic)
		ev.Change, ev.BaselineChange = d.ChangeOf(ev.Version), d.ChangeOf(ev.Baseline)
		d.current = ev.Version
		d.last = &Deployed{Version: ev.Version, Baseline: ev.Baseline}
		return ev, nil
	}
	if len(serving) > 0 && !slices.Contains(serving, d.current) {
		d.current = serving[0] // the current version stopped serving: e.g. rolled back
	}
	return nil, nil
}

// baselineFor is the baseline of a deploy of version: of the versions that
// served at the previous observation, the one with the most traffic;
// failing that, the version current until now.
func (d *Detector) baselineFor(version string, before []string, traffic map[string]float64) (string, string) {
	var total float64
	cands := make([]string, 0, len(before))
	for _, v := range before {
		if v != version {
			cands = append(cands, v)
		}
		total += traffic[v]
	}
	if len(cands) == 0 {
		if d.current != "" && d.current != version {
			return d.current, "the version serving until the deploy"
		}
		return "", ""
	}
	sortByTraffic(cands, traffic)
	b := cands[0]
	switch {
	case len(before) == 1 || total <= 0:
		return b, "the only version serving just before the deploy"
	default:
		return b, fmt.Sprintf("served %.0f%% of the traffic just before the deploy", 100*traffic[b]/total)
	}
}

// Returns reports whether version coming back is a rollback: it is the
// version the latest deploy replaced (or, without a deploy on record, a
// version seen before).
func (d *Detector) Returns(version string) bool {
	if d.last == nil {
		_, known := d.seen[version]
		return known
	}
	return version == d.last.Baseline
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
	delete(d.replaced, version)
	d.current = version
}

// Announce records a deploy announced through the API. An empty baseline
// means the version current until now.
func (d *Detector) Announce(version, baseline string, ts time.Time) (Event, error) {
	return d.AnnounceChange(version, baseline, Change{}, ts)
}

// AnnounceChange is Announce with what the deploy changed (c.Version is
// taken as version): it is remembered with the version, merged with what
// was known of it, and the event carries it and what is known of the
// baseline.
func (d *Detector) AnnounceChange(version, baseline string, c Change, ts time.Time) (Event, error) {
	explicit := baseline
	if err := c.Validate(); err != nil {
		return Event{}, err
	}
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
	_, known := d.seen[version]
	d.remember(version, ts)
	delete(d.replaced, version)
	d.current = version
	d.last = &Deployed{Version: version, Baseline: baseline}
	why := "given with the announcement"
	if explicit == "" {
		why = "the version current until the announcement"
	}
	c.Version = version
	d.Describe(c)
	return Event{Service: d.service, Version: version, Baseline: baseline, BaselineWhy: why, Redeploy: known, At: ts, Origin: OriginAPI,
		Change: d.ChangeOf(version), BaselineChange: d.ChangeOf(baseline)}, nil
}

// Describe remembers what c.Version deployed, merged with what was known
// of it: a field c leaves empty keeps its value. A version that is not
// remembered (see Known) is not described.
func (d *Detector) Describe(c Change) {
	if c.Version == "" || c.Empty() {
		return
	}
	if _, ok := d.seen[c.Version]; !ok {
		return
	}
	old := d.changes[c.Version]
	d.changes[c.Version] = old.merge(c)
}

// ChangeOf returns what is known of what version deployed, nil when
// nothing is.
func (d *Detector) ChangeOf(version string) *Change {
	c, ok := d.changes[version]
	if !ok || version == "" {
		return nil
	}
	c = c.clone()
	return &c
}

// ValidVersion checks a version string from outside: not empty, at most 256
// bytes, valid UTF-8 (no series can carry anything else: Prometheus refuses
// such label values, so the version could never be judged), printable.
// (Query templates escape any value, U+FFFD included, anyway.)
func ValidVersion(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%w: empty", ErrInvalidVersion)
	case len(v) > 256:
		return fmt.Errorf("%w: longer than 256 bytes", ErrInvalidVersion)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %q is not valid UTF-8, which no series can carry", ErrInvalidVersion, v)
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
	delete(d.changes, oldest)
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
