package trigger

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/trigger/latency"
	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// Latency is a trigger's anytime-valid latency test (see package latency
// for the statistics): it decides whether the new version's latency
// distribution is slower than the baseline's, from the bucket counts of a
// Prometheus histogram. Each evaluation queries the new version's buckets
// since it began serving (over {{.SinceDeploy}} plus Deploy.Lead, as the
// sequential test's counts, see Sequential), the baseline's since the
// deploy ("live", empty once it no longer serves) and, once per deploy, the
// baseline's over BaselineWindow before the deploy ("pre_deploy", at the
// deploy time). Its decision maps onto the outcomes as the sequential
// test's does: regressed → Violated, healthy → OK, inconclusive →
// NotEnoughEvidence; an empty answer for the new version is NoData, unless
// the test decided regressed before, which stands for the deploy.
//
// # Buckets
//
// Buckets returns one series per bucket of a classic histogram, each with
// its le label (sum by (le) (increase(x_bucket{...}[{{.SinceDeploy}}]))),
// or one sample holding a native histogram (sum(increase(x{...}[...]))), as
// the Prometheus source returns it. A native histogram is judged at the
// bounds of the pre-deploy baseline histogram's buckets (latency.NativeBounds)
// and needs it: without a pre-deploy histogram it is not judged. The
// embedded source reads the text exposition format, which carries classic
// buckets only.
//
// When the deploy has a lead, the new version's buckets are also read with
// increase() replaced by last_over_time(), and each bucket's count is the
// smaller of the two readings, as the sequential test does for its counts:
// increase() extrapolates and may count requests that were never scraped.
// (A native histogram keeps increase()'s reading.)
//
// # Randomness
//
// The test orders each evaluation's new requests at random. Its seed is
// derived from the service, the version and the deploy time, never from a
// latency, so the same deploy judged again (after a restart) gives the same
// results on the same data.
//
// # Value
//
// The trigger's value query, when not configured, is
// histogram_quantile(q, buckets) with q the highest of Quantiles (0.99 by
// default); rendered without a deploy, {{.SinceDeploy}} is {{.Window}}. A
// verdict's Value and BaselineValue are that quantile computed from the
// bucket counts the test judged (the new version's since the deploy; the
// baseline's before and since it), so a recovery check compares the running
// version's quantile over the window with the baseline's quantile the
// firing verdict saw.
type Latency struct {
	// Buckets is a template returning the bucket counts of {{.Version}}
	// over {{.SinceDeploy}}.
	Buckets *query.Template
	// Alpha is the false-rollback budget over the whole watch.
	Alpha float64
	// MinEffect is the largest regression a healthy version may have, on
	// the shares of requests slower than each guarded bound.
	MinEffect BaselineLimit
	// Quantiles are the baseline quantiles whose bounds are guarded for
	// the healthy decision; empty: latency.DefaultQuantiles.
	Quantiles []float64
	// BaselineWindow is the period before the deploy whose baseline
	// histogram is compared with; 0 uses the live baseline only.
	BaselineWindow time.Duration
}

// LatencyEvidence is what a latency verdict is based on.
type LatencyEvidence struct {
	// Decision is the test's decision: regressed stays regressed for the
	// rest of the deploy, and so does healthy unless the version regresses
	// later.
	Decision sequential.Decision
	// DecidedAt is when Decision was first reached; zero when inconclusive.
	DecidedAt time.Time
	// SinceDeploy is the range of the live baseline's buckets query; Lead
	// and NewRange are as in SequentialEvidence.
	SinceDeploy, Lead, NewRange time.Duration
	// ValueQuery is the new version's buckets query read as counter values
	// (last_over_time), as sent, when it was run (see Latency).
	ValueQuery string
	// E is the evidence of a regression at this evaluation (regressed once
	// E >= 1/Alpha), EShift and EStretch its shares of the bets on a
	// shifted and on a stretched distribution; EHealthy is the smallest
	// evidence of health of the guarded bounds. P is the always-valid
	// p-value min(1, 1/max E) over the deploy so far.
	E, EShift, EStretch, EHealthy, P float64
	// Alpha, MinEffect and Quantiles are the configured test.
	Alpha     float64
	MinEffect string
	Quantiles []float64
	// Quantile is the quantile of the verdict's Value and BaselineValue.
	Quantile float64
	// Judged is the number of the new version's requests judged, Dropped
	// those left out (more than latency.MaxPerCall new at one evaluation).
	Judged, Dropped float64
	// NewRequests are the new version's requests since the deploy,
	// PreDeployRequests and LiveRequests the baseline's before and since
	// the deploy.
	NewRequests, PreDeployRequests, LiveRequests float64
	// Bounds are the bucket bounds judged on.
	Bounds []float64
	// Guards are the guarded bounds of the healthy decision.
	Guards []latency.Guard
	// Native says the buckets came from a native histogram.
	Native bool
	// BaselineWindow is the range of the pre-deploy baseline query, and
	// PreDeployQuery that query as sent, evaluated at the deploy time (once
	// per deploy); empty when it was not run.
	BaselineWindow time.Duration
	PreDeployQuery string
	// Note says why nothing was judged, when that is the case.
	Note string
}

// latencyTest is the method of a trigger with a Latency test. It keeps,
// per deploy, the pre-deploy baseline histogram (snap), the test in
// progress (state) and a regressed decision restored after a restart
// (latch).
type latencyTest struct {
	def  *Definition // the Trigger's
	test *latency.Test

	perDeploy[*latSnapshot, *latState]
}

var (
	_ method   = (*latencyTest)(nil)
	_ latching = (*latencyTest)(nil)
)

// latSnapshot is the baseline's histogram over the window before a
// deploy, with the query that read it.
type latSnapshot struct {
	deploy Deploy
	hist   buckets // empty when it had no data
	query  string
}

// latState is a latency trigger's test of one deploy.
type latState struct {
	decided
	watch *latency.Watch
	// bounds are the bounds native histograms are read at: the pre-deploy
	// histogram's; nil without one.
	bounds []float64
	pre    latency.Histogram
	maxE   float64
}

// newLatencyTest returns the latency test of d, which has a Latency test.
func newLatencyTest(d *Definition) (*latencyTest, error) {
	test, err := latency.New(d.Latency.testConfig())
	if err != nil {
		return nil, fmt.Errorf("trigger %q: %w: %w", d.Name, err, ErrInvalidDefinition)
	}
	return &latencyTest{def: d, test: test}, nil
}

// testConfig is the statistics package's view of the latency test.
func (l *Latency) testConfig() latency.Config {
	c := latency.Config{Alpha: l.Alpha, Quantiles: l.Quantiles}
	if l.MinEffect.IsRatio() {
		c.MinEffect.Ratio = l.MinEffect.Ratio
	} else {
		c.MinEffect.Delta = l.MinEffect.Delta
	}
	return c
}

// latencyFromSpec parses a trigger's latency settings.
func latencyFromSpec(name string, c *LatencySpec) (*Latency, error) {
	l := &Latency{Alpha: c.Alpha, MinEffect: c.MinEffect, Quantiles: slices.Clone(c.Quantiles), BaselineWindow: c.BaselineWindow}
	var err error
	if l.Buckets, err = parseTemplate(name+"/latency.buckets", c.Buckets); err != nil {
		return nil, fmt.Errorf("trigger %q: latency.buckets: %w", name, err)
	}
	if err := checkBuckets(l.Buckets); err != nil {
		return nil, fmt.Errorf("trigger %q: latency.buckets: %w", name, err)
	}
	return l, nil
}

// checkBuckets renders t with sample values and checks that it returns
// one series per bucket (query.CheckBuckets).
func checkBuckets(t *query.Template) error {
	q, err := t.Render(query.Vars{Service: "service", Version: "v2", Baseline: "v1", Window: DefaultWindow, SinceDeploy: time.Minute})
	if err != nil {
		return err
	}
	return query.CheckBuckets(q)
}

// quantile is the quantile of the value query and of Value: the highest
// of the configured quantiles.
func (l *Latency) quantile() float64 {
	return slices.Max(l.quantiles())
}

// derivedQuery is the value query of a latency trigger without one:
// histogram_quantile of the buckets at the highest guarded quantile.
// Rendered without a deploy, {{.SinceDeploy}} is {{.Window}}, so recovery
// checks and impact measurement see the quantile over the trigger's
// window.
func (l *Latency) derivedQuery(name string) (*query.Template, error) {
	return query.New(name+"/query", "histogram_quantile("+strconv.FormatFloat(l.quantile(), 'g', -1, 64)+", "+l.Buckets.Text()+")")
}

// validate checks the latency settings of d.
func (l *Latency) validate(d Definition, bad func(string, ...any) error) error {
	switch {
	case l.Buckets == nil:
		return bad("latency needs a buckets query")
	case d.Sequential != nil:
		return bad("latency cannot be combined with sequential")
	case d.Above != nil || d.Below != nil || d.AboveBaseline != nil:
		return bad("latency cannot be combined with above, below or above_baseline")
	case d.MinRequests != 0 || d.VolumeQuery != nil:
		return bad("latency cannot be combined with min_requests or volume_query")
	case l.BaselineWindow < 0:
		return bad("negative baseline_window %s", l.BaselineWindow)
	case !l.MinEffect.IsRatio() && l.MinEffect.Ratio != 0:
		return bad("min_effect ratio %g is negative", l.MinEffect.Ratio)
	}
	if err := l.testConfig().Validate(); err != nil {
		return bad("%v", err)
	}
	return nil
}

func latencyEqual(a, b *Latency) bool {
	if a == nil || b == nil {
		return a == b
	}
	return templateText(a.Buckets) == templateText(b.Buckets) &&
		a.Alpha == b.Alpha && a.BaselineWindow == b.BaselineWindow &&
		baselineEqual(&a.MinEffect, &b.MinEffect) &&
		slices.Equal(a.quantiles(), b.quantiles())
}

// quantiles returns the guarded quantiles as the test uses them: sorted,
// without duplicates, the defaults when none are configured.
func (l *Latency) quantiles() []float64 {
	q := slices.Clone(l.Quantiles)
	if len(q) == 0 {
		q = slices.Clone(latency.DefaultQuantiles)
	}
	slices.Sort(q)
	return slices.Compact(q)
}

// vars are the template values of the buckets query of version over
// since.
func (m *latencyTest) vars(d Deploy, version string, since time.Duration) query.Vars {
	return query.Vars{Service: d.Service, Version: version, Baseline: d.Baseline, Window: m.def.Window, SinceDeploy: since}
}

// seed is the test's random seed for deploy d: a hash of its service,
// version and time, so that judging the same deploy again gives the same
// results.
func seed(d Deploy) uint64 {
	h := fnv.New64a()
	h.Write([]byte(d.Service))
	h.Write([]byte{0})
	h.Write([]byte(d.Version))
	h.Write([]byte{0})
	_ = binary.Write(h, binary.LittleEndian, d.At.UnixNano())
	return h.Sum64()
}

func (m *latencyTest) copyFrom(old method) {
	if o, ok := old.(*latencyTest); ok {
		m.takeFrom(&o.perDeploy)
	}
}

// snapshot takes the baseline's histogram over the baseline window before
// the deploy; value is its quantile (see Latency).
func (m *latencyTest) snapshot(ctx context.Context, ec *evalContext) (float64, bool, error) {
	var ev Evidence
	s, err := m.snapshotOf(ctx, ec, &ev)
	if err != nil || s == nil {
		return 0, false, err
	}
	h, _ := s.hist.histogram(nil)
	v := histogramQuantile(m.def.Latency.quantile(), h)
	return v, !math.IsNaN(v), nil
}

// snapshotOf returns the pre-deploy baseline snapshot of the deploy,
// taking it only when snapshot did not take it yet; nil when there is none
// to take.
func (m *latencyTest) snapshotOf(ctx context.Context, ec *evalContext, ev *Evidence) (*latSnapshot, error) {
	d, l := ec.deploy, m.def.Latency
	if d.Baseline == "" || l.BaselineWindow <= 0 || d.At.IsZero() {
		return nil, nil
	}
	if s, ok := m.snapshotFor(d); ok {
		return s, nil
	}
	q, err := l.Buckets.Render(m.vars(d, d.Baseline, l.BaselineWindow))
	if err != nil {
		return nil, fmt.Errorf("trigger %q: rendering the pre-deploy buckets query for %s: %w", m.def.Name, d.Baseline, err)
	}
	b, _, err := ec.atDeploy().buckets(ctx, "pre-deploy baseline", q, ev)
	if err != nil {
		return nil, err
	}
	s := &latSnapshot{deploy: d, hist: b, query: q}
	m.keepSnapshot(s)
	return s, nil
}

// stateFor returns the test of the deploy, starting it (with the
// pre-deploy baseline histogram) at its first evaluation.
func (m *latencyTest) stateFor(ctx context.Context, ec *evalContext, ev *Evidence) (*latState, error) {
	d := ec.deploy
	if st, ok := m.testFor(d); ok {
		return st, nil
	}
	s, err := m.snapshotOf(ctx, ec, ev)
	if err != nil {
		return nil, err
	}
	st := &latState{decided: decided{deploy: d}}
	if s != nil {
		st.bounds = s.hist.bounds()
		st.pre, _ = s.hist.histogram(st.bounds)
	}
	st.watch = m.test.Watch(st.pre, seed(d))
	m.start(st)
	return st, nil
}

// buckets is a buckets query's answer: a classic histogram, or the
// buckets of a native one.
type buckets struct {
	classic latency.Histogram
	native  []latency.NativeBucket
	// isNative says the answer was a native histogram.
	isNative bool
}

// bounds returns the bounds a native histogram is read at: the bounds of
// b's buckets.
func (b buckets) bounds() []float64 {
	if b.isNative {
		return latency.NativeBounds(b.native)
	}
	var out []float64
	for _, x := range b.classic {
		if x.UpperBound >= 0 && !math.IsInf(x.UpperBound, 1) {
			out = append(out, x.UpperBound)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// histogram returns b as cumulative buckets, a native histogram read at
// bounds; ok is false for a native histogram without bounds to read it
// at.
func (b buckets) histogram(bounds []float64) (latency.Histogram, bool) {
	if !b.isNative {
		return b.classic, true
	}
	if len(bounds) == 0 {
		return nil, len(b.native) == 0
	}
	return latency.FromNative(b.native, bounds), true
}

// readBuckets reads a buckets query's answer: one sample per le bucket, or
// one native histogram sample. ok is false for an empty answer.
func readBuckets(v model.Vector) (buckets, bool, error) {
	if len(v) == 0 {
		return buckets{}, false, nil
	}
	var b buckets
	seen := map[float64]model.Metric{}
	for _, s := range v {
		if s.Histogram != nil {
			if len(v) > 1 {
				return buckets{}, false, fmt.Errorf("buckets query returned %d series with a native histogram among them, %w: aggregate it, e.g. with sum()", len(v), ErrSeriesCount)
			}
			b.isNative = true
			for _, nb := range s.Histogram.Buckets {
				b.native = append(b.native, latency.NativeBucket{Lower: float64(nb.Lower), Upper: float64(nb.Upper), Count: float64(nb.Count)})
			}
			return b, true, nil
		}
		le, ok := s.Metric[model.BucketLabel]
		if !ok {
			return buckets{}, false, fmt.Errorf("buckets query returned a series without an le label (%s): it must return one series per histogram bucket, e.g. sum by (le) (increase(x_bucket{...}[{{.SinceDeploy}}]))", s.Metric)
		}
		bound, err := strconv.ParseFloat(string(le), 64)
		if err != nil {
			return buckets{}, false, fmt.Errorf("buckets query returned le=%q, not a number: %w", le, err)
		}
		if other, dup := seen[bound]; dup {
			return buckets{}, false, fmt.Errorf("buckets query returned two series with le=%q (%s, %s), %w per bucket: aggregate them by le, e.g. sum by (le) (...)", le, other, s.Metric, ErrSeriesCount)
		}
		seen[bound] = s.Metric
		b.classic = append(b.classic, latency.Bucket{UpperBound: bound, Count: float64(s.Value)})
	}
	return b, true, nil
}

// buckets runs a buckets query at ec.at.
func (ec *evalContext) buckets(ctx context.Context, what, q string, ev *Evidence) (buckets, bool, error) {
	res, err := ec.run(ctx, q)
	ev.Warnings = append(ev.Warnings, res.Warnings...)
	if err != nil {
		return buckets{}, false, fmt.Errorf("trigger %q: %s buckets query at %s: %w", ec.trigger, what, ec.at.UTC().Format(time.RFC3339), err)
	}
	b, ok, err := readBuckets(res.Vector)
	if err != nil {
		return buckets{}, false, fmt.Errorf("trigger %q: %s %w", ec.trigger, what, err)
	}
	return b, ok, nil
}

// capByValues lowers each bucket of the new version's classic histogram
// h, read with increase() from the buckets query rendered with vars, to
// the same query's reading as counter values when that is smaller (see
// Latency).
func (m *latencyTest) capByValues(ctx context.Context, ec *evalContext, h latency.Histogram, vars query.Vars, le *LatencyEvidence, ev *Evidence) (latency.Histogram, error) {
	vq, n, err := m.def.Latency.Buckets.CounterValues(vars)
	if err != nil {
		return h, fmt.Errorf("trigger %q: reading the buckets query as counter values: %w", m.def.Name, err)
	}
	if n == 0 {
		return h, nil
	}
	le.ValueQuery = vq
	vb, ok, err := ec.buckets(ctx, "new version (counter values)", vq, ev)
	if err != nil || !ok || vb.isNative {
		return h, err
	}
	byBound := make(map[float64]float64, len(vb.classic))
	for _, x := range vb.classic {
		byBound[x.UpperBound] = x.Count
	}
	out := slices.Clone(h)
	for i, x := range out {
		if v, ok := byBound[x.UpperBound]; ok && v < x.Count {
			out[i].Count = v
		}
	}
	return out, nil
}

// judge runs the latency test at ec.at, filling ev and its Latency.
func (m *latencyTest) judge(ctx context.Context, ec *evalContext, ev *Evidence) (Outcome, error) {
	d, ts, l := ec.deploy, ec.at, m.def.Latency
	cfg := m.test.Config()
	le := &LatencyEvidence{
		Alpha: l.Alpha, MinEffect: l.MinEffect.Text, Quantiles: slices.Clone(cfg.Quantiles), Quantile: l.quantile(), P: 1,
	}
	if le.MinEffect == "" {
		le.MinEffect = cfg.MinEffect.String()
	}
	ev.Latency = le
	switch {
	case d.At.IsZero():
		le.Note = "deploy time unknown"
		return NotEnoughEvidence, nil
	case ts.Before(d.At), ts.Equal(d.At) && d.Lead <= 0:
		le.Note = "nothing since the deploy yet"
		return NotEnoughEvidence, nil
	}
	since, newRange := sinceDeploy(d, ts), newVersionRange(d, ts)
	le.SinceDeploy, le.Lead, le.NewRange = since, max(d.Lead, 0), newRange
	nv := m.vars(d, d.Version, newRange)
	nq, err := l.Buckets.Render(nv)
	if err != nil {
		return QueryError, fmt.Errorf("trigger %q: rendering the buckets query for %s: %w", m.def.Name, d.Version, err)
	}
	ev.Query = nq
	st, err := m.stateFor(ctx, ec, ev)
	if err != nil {
		return QueryError, err
	}
	m.mu.Lock()
	if snap := m.snap; snap != nil && snap.deploy.Equal(d) {
		le.BaselineWindow, le.PreDeployQuery = l.BaselineWindow, snap.query
	}
	m.mu.Unlock()
	nb, ok, err := ec.buckets(ctx, "new version", nq, ev)
	if err != nil {
		return QueryError, err
	}
	if !ok {
		// A version that regressed and then stopped reporting has not
		// recovered: the test's decision stands.
		m.mu.Lock()
		decision, at := st.decision, st.decidedAt
		m.mu.Unlock()
		if decision != sequential.Regressed {
			return NoData, nil
		}
		le.Decision, le.DecidedAt, le.Note = decision, at, "no buckets data now"
		ev.Conditions = []Check{{Name: "latency", Threshold: 1 / l.Alpha, Text: "latency regressed earlier; no data now", Breached: true}}
		return Violated, nil
	}
	le.Native = nb.isNative
	newH, readable := nb.histogram(st.bounds)
	if nb.isNative && !readable {
		le.Note = "a native histogram is judged at the bounds of the baseline's pre-deploy histogram, and there is none"
		return m.held(st, le, ev)
	}
	if !nb.isNative && d.Lead > 0 {
		if newH, err = m.capByValues(ctx, ec, newH, nv, le, ev); err != nil {
			return QueryError, err
		}
	}
	var liveH latency.Histogram
	if d.Baseline != "" && since > 0 {
		bq, err := l.Buckets.Render(m.vars(d, d.Baseline, since))
		if err != nil {
			return QueryError, fmt.Errorf("trigger %q: rendering the buckets query for %s: %w", m.def.Name, d.Baseline, err)
		}
		ev.BaselineQuery = bq
		lb, _, err := ec.buckets(ctx, "baseline", bq, ev)
		if err != nil {
			return QueryError, err
		}
		liveH, _ = lb.histogram(st.bounds) // unreadable: no live baseline
	}

	if len(ev.Warnings) > 0 {
		// The buckets may be partial: the test takes no step on them.
		le.Note, ev.Incomplete = "the source warned that its answer may be incomplete", true
		return m.held(st, le, ev)
	}
	res := st.watch.Decide(newH, liveH)
	m.mu.Lock()
	st.maxE = max(st.maxE, res.E)
	switch {
	case st.decision == sequential.Regressed:
	case res.Decision == sequential.Regressed,
		res.Decision == sequential.Healthy && st.decision == sequential.Inconclusive:
		st.decision, st.decidedAt = res.Decision, ts
	}
	le.Decision, le.DecidedAt = st.decision, st.decidedAt
	if st.maxE > 1 {
		le.P = 1 / st.maxE
	}
	pre := st.pre
	m.mu.Unlock()

	le.E, le.EShift, le.EStretch, le.EHealthy = res.E, res.EShift, res.EStretch, res.EHealthy
	le.Judged, le.Dropped, le.Bounds, le.Guards = res.Judged, res.Dropped, res.Bounds, res.Guards
	le.NewRequests, le.PreDeployRequests, le.LiveRequests = total(newH), total(pre), total(liveH)
	if v := histogramQuantile(le.Quantile, newH); !math.IsNaN(v) {
		ev.Value = &v
	}
	judged := res.Judged
	ev.SampleSize = &judged
	if d.Baseline != "" {
		ev.BaselineMode = BaselineUnavailable
		switch {
		case le.LiveRequests > 0:
			ev.BaselineMode = BaselineLive
		case le.PreDeployRequests > 0:
			ev.BaselineMode = BaselinePreDeploy
		}
		if v := histogramQuantile(le.Quantile, addHistograms(pre, liveH)); !math.IsNaN(v) {
			ev.BaselineValue = &v
		}
	}
	ev.Conditions = []Check{{
		Name: "latency", Threshold: 1 / l.Alpha, Text: latencyConditionText(le, d, ev), Breached: le.Decision == sequential.Regressed,
	}}
	switch le.Decision {
	case sequential.Regressed:
		return Violated, nil
	case sequential.Healthy:
		return OK, nil
	}
	return NotEnoughEvidence, nil
}

// held is the outcome of an evaluation that takes no step: the decision
// so far, regressed standing.
func (m *latencyTest) held(st *latState, le *LatencyEvidence, ev *Evidence) (Outcome, error) {
	m.mu.Lock()
	le.Decision, le.DecidedAt = st.decision, st.decidedAt
	m.mu.Unlock()
	if le.Decision == sequential.Regressed {
		ev.Conditions = []Check{{Name: "latency", Threshold: 1 / le.Alpha, Text: "latency regressed earlier; " + le.Note + " now", Breached: true}}
		return Violated, nil
	}
	return NotEnoughEvidence, nil
}

// total returns the requests of a cumulative histogram: its largest
// count.
func total(h latency.Histogram) float64 {
	t := 0.0
	for _, b := range h {
		if b.Count > t && !math.IsInf(b.Count, 1) {
			t = b.Count
		}
	}
	return t
}

// addHistograms returns the sum of two cumulative histograms at the
// bounds both have (the +Inf bucket counting every request); either alone
// when the other is empty.
func addHistograms(a, b latency.Histogram) latency.Histogram {
	switch {
	case total(a) <= 0:
		return b
	case total(b) <= 0:
		return a
	}
	at := map[float64]float64{}
	for _, x := range b {
		at[x.UpperBound] = x.Count
	}
	out := latency.Histogram{{UpperBound: math.Inf(1), Count: total(a) + total(b)}}
	for _, x := range a {
		if v, ok := at[x.UpperBound]; ok && !math.IsInf(x.UpperBound, 1) {
			out = append(out, latency.Bucket{UpperBound: x.UpperBound, Count: x.Count + v})
		}
	}
	return out
}

// histogramQuantile estimates quantile q of a cumulative histogram as
// PromQL's histogram_quantile does: linear interpolation inside the bucket
// holding it (from 0 for the first bucket), the highest finite bound when
// it falls in the +Inf bucket. NaN without requests.
func histogramQuantile(q float64, h latency.Histogram) float64 {
	bs := slices.Clone(h)
	bs = slices.DeleteFunc(bs, func(b latency.Bucket) bool { return math.IsNaN(b.UpperBound) || b.UpperBound < 0 })
	slices.SortFunc(bs, func(a, b latency.Bucket) int {
		switch {
		case a.UpperBound < b.UpperBound:
			return -1
		case a.UpperBound > b.UpperBound:
			return 1
		}
		return 0
	})
	n := total(bs)
	if !(n > 0) || len(bs) == 0 {
		return math.NaN()
	}
	rank := q * n
	lower, below := 0.0, 0.0
	for _, b := range bs {
		c := max(b.Count, below) // counts that decrease are raised, as the test does
		if c >= rank {
			if math.IsInf(b.UpperBound, 1) {
				return lower
			}
			if c == below {
				return b.UpperBound
			}
			return lower + (b.UpperBound-lower)*(rank-below)/(c-below)
		}
		lower, below = b.UpperBound, c
	}
	return lower
}

// latencyConditionText describes the test's verdict as a condition, e.g.
// "latency regressed (e 1.04e+04, healthy e 0.001, need 1000, alpha
// 0.001): p99 0.412 vs baseline v1 0.108".
func latencyConditionText(le *LatencyEvidence, d Deploy, ev *Evidence) string {
	var b strings.Builder
	b.WriteString("latency ")
	b.WriteString(le.Decision.String())
	fmt.Fprintf(&b, " (e %s, healthy e %s, need %s, alpha %s)", fmtNum(le.E), fmtNum(le.EHealthy), fmtLimit(1/le.Alpha), fmtLimit(le.Alpha))
	if ev.Value != nil {
		fmt.Fprintf(&b, ": %s %s", quantileName(le.Quantile), fmtNum(*ev.Value))
		if ev.BaselineValue != nil {
			fmt.Fprintf(&b, " vs baseline %s %s", d.Baseline, fmtNum(*ev.BaselineValue))
		}
	}
	return b.String()
}

// quantileName writes a quantile as "p99", "p99.9" or "p50".
func quantileName(q float64) string {
	return "p" + strconv.FormatFloat(q*100, 'g', 6, 64)
}

// latencySummary writes the one-line description of a latency verdict
// (after "name version: "), for example
//
//	regressed: p99 0.412 vs baseline v1 0.108 (pre_deploy+live); 1530 requests in 2m0s vs 54000; e 1.2e+04 ≥ 1000 (p 8.33e-05, alpha 0.001)
func latencySummary(b *strings.Builder, v Verdict) {
	le, ev := v.Evidence.Latency, v.Evidence
	b.WriteString(le.Decision.String())
	if le.Decision != sequential.Inconclusive && !le.DecidedAt.IsZero() && !le.DecidedAt.Equal(v.At) {
		b.WriteString(" since ")
		b.WriteString(le.DecidedAt.UTC().Format(time.TimeOnly))
	}
	b.WriteString(": ")
	if le.Note != "" {
		b.WriteString(le.Note)
		return
	}
	fmt.Fprintf(b, "%s %s", quantileName(le.Quantile), fmtValue(ev.Value))
	if v.Deploy.Baseline != "" {
		mode := ev.BaselineMode.String()
		if le.LiveRequests > 0 && le.PreDeployRequests > 0 {
			mode += "+pre_deploy"
		}
		fmt.Fprintf(b, " vs baseline %s %s (%s)", v.Deploy.Baseline, fmtValue(ev.BaselineValue), mode)
	}
	fmt.Fprintf(b, "; %s requests in %s", fmtNum(le.NewRequests), le.SinceDeploy)
	if le.Lead > 0 {
		fmt.Fprintf(b, " (counted from %s before the deploy)", le.Lead)
	}
	if v.Deploy.Baseline != "" {
		fmt.Fprintf(b, " vs %s", fmtNum(le.PreDeployRequests+le.LiveRequests))
	}
	thr := 1 / le.Alpha
	switch le.Decision {
	case sequential.Healthy:
		fmt.Fprintf(b, "; healthy e %s (need %s): slower shares < %s baseline's at", fmtNum(le.EHealthy), fmtLimit(thr), le.MinEffect)
		for i, g := range le.Guards {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, " %s (%s)", fmtLimit(g.Bound), quantileName(g.Quantile))
		}
	default:
		cmp := "<"
		if le.E >= thr {
			cmp = "≥"
		}
		fmt.Fprintf(b, "; e %s %s %s (p %s, alpha %s)", fmtNum(le.E), cmp, fmtLimit(thr), fmtNum(le.P), fmtLimit(le.Alpha))
		if le.Decision == sequential.Inconclusive {
			fmt.Fprintf(b, ", healthy e %s", fmtNum(le.EHealthy))
		}
	}
}
