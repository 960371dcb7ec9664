package trigger

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/trigger/changepoint"
	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// Sequential is a trigger's anytime-valid sequential test on counts (see
// package sequential for the statistics). Each evaluation queries the new
// version's errors and requests since it began serving, the baseline
// version's since the deploy ("live", zero once it no longer serves) and,
// once per deploy, the baseline's over BaselineWindow before the deploy
// ("pre_deploy", taken by Snapshot). Its decision maps onto the outcomes:
// regressed → Violated, healthy → OK, inconclusive → NotEnoughEvidence. The
// Definition's Above, when set, is the test's absolute limit on the error
// ratio; Below, AboveBaseline and MinRequests are not used with it.
//
// # Ranges
//
// {{.SinceDeploy}} is, for the baseline's live counts, the time since
// Deploy.At rounded up to a whole second, and for the new version's counts
// that time plus Deploy.Lead: a deploy seen by the version query is seen
// after the new version's first samples (a rate needs two), and a range
// starting at Deploy.At would leave them out, losing the first requests and
// delaying the first judgement by one or two scrape intervals. With a
// lead, the new version is judged from the evaluation at Deploy.At on.
//
// Counting the new version from before the deploy cannot count another
// version's requests as long as each request is counted in series labelled
// with the version that served it and the templates select
// {{.Version}}'s series only (a matcher on the version label, as in
// version="{{.Version}}"): before it served, the new version has no series
// or only zeros. The baseline's counts keep their ranges, so its pre-deploy
// and live counts do not overlap the new version's or each other's (but for
// the rounding of the live range, under a second). One case counts more:
// a redeploy of a version that served within Lead before it, whose earlier
// requests are then counted too, requests of that same version. The lead
// the daemon sets (the version query's longest range plus one evaluation
// interval) is shorter than the time a version must have stopped serving
// before its return counts as a redeploy, so this is rare.
//
// # Counts
//
// Counts come from PromQL's increase(), which handles counter resets but
// extrapolates towards the ends of its range: up to about one scrape
// interval of traffic at the end (from the last scrape to the evaluation
// time) and, at the start, towards the first sample or back to where the
// counter would be zero. Extrapolated counts are not whole numbers and may
// exceed what was scraped: early in a watch, with two or three samples, by
// half or more, which would inflate the test's evidence by as much, while
// its guarantee assumes counts of requests whose outcome was seen. So, when
// the deploy has a lead, the test also reads each count query with
// increase() replaced by last_over_time() (query.CounterValues): for series
// that began inside the range and did not reset, a counter's latest value
// is exactly what was scraped of it. Each count is the smaller of the two
// readings: exact for a fresh version; lower after a counter reset (the
// value restarts; less evidence, never more); and increase()'s for series
// older than the range (a redeploy), whose values count earlier requests.
// Counts are then rounded to the nearest integer.
//
// # Slow burns
//
// With SlowBurn, a change detector (package changepoint) runs beside the
// test over the deploy. At each evaluation the new version's counts since
// the previous one (the increments of the test's counts; a count that went
// down adds nothing until it is passed again) form a tick, at the time
// since the deploy by the evaluation clock, judged against q0: the upper
// end of the baseline's anytime-valid confidence sequence (pre-deploy plus
// live counts, as the test's BaselineUpper, at level 1-Alpha/4), or the
// trigger's Above without a baseline (the smaller of the two with both).
// The detector's possible starts are every 10 s over the first 30 minutes
// (slowBurnWindow); a change after that is still judged, from the last
// start. Its min_effect is halfway between 1 and the test's ratio (1.25
// for 1.5x; 1.25 for a difference), since q0 lies above the baseline's
// rate: a regression by min_effect is a smaller ratio to q0.
//
// The trigger regresses when the test or the detector alarms; it is
// healthy only by the test. Alpha is split so that a false rollback stays
// at most as likely as Alpha: with a baseline, the test runs at Alpha/2,
// the detector at Alpha/4 and the baseline's bound at level 1-Alpha/4.
// Under the null (the new version's rate p_t never above the baseline's
// q, nor above Above), the test alarms with probability at most Alpha/2;
// the bound fails (q above q0 at some evaluation) with probability at most
// Alpha/4, and while it holds, p_t <= q <= q0 at every tick, so the
// detector alarms with probability at most Alpha/4 (changepoint's
// guarantee: a false alarm has probability at most its Alpha plus that of
// the bound failing, Alpha/4 + Alpha/4 here). q0 depends on baseline
// counts and the clock only, never on the new version's counts, as that
// guarantee requires. By the union bound, P(false rollback) <= Alpha/2 +
// Alpha/4 + Alpha/4 = Alpha. Against Above alone, q0 is known: the test
// and the detector take Alpha/2 each. Without a baseline nor Above there
// is no q0, and the detector does not run (nor does the test).
type Sequential struct {
	// Errors and Requests are templates counting the failed (or slow) and
	// all requests of {{.Version}} over {{.SinceDeploy}}.
	Errors, Requests *query.Template
	// Alpha is the false-rollback budget over the whole watch.
	Alpha float64
	// MinEffect is the smallest regression worth acting on: a ratio above 1
	// or a difference of error ratios.
	MinEffect BaselineLimit
	// BaselineWindow is the period before the deploy whose baseline counts
	// are compared with; 0 uses live baseline counts only.
	BaselineWindow time.Duration
	// SlowBurn also runs the change detector (see Slow burns above).
	SlowBurn bool
}

// SequentialEvidence is what a sequential verdict is based on.
type SequentialEvidence struct {
	// Decision is the test's decision: regressed stays regressed for the
	// rest of the deploy (the test stops at its first crossing), and so does
	// healthy unless the version regresses later.
	Decision sequential.Decision
	// DecidedAt is when Decision was first reached; zero when inconclusive.
	DecidedAt time.Time
	// SinceDeploy is the range of the baseline's live count queries: the
	// time since the deploy, rounded up to a whole second.
	SinceDeploy time.Duration
	// Lead is how far before the deploy the new version's counts start
	// (Deploy.Lead), and NewRange the range of its count queries:
	// SinceDeploy plus Lead, rounded up to a whole second.
	Lead, NewRange time.Duration
	// ErrorsValueQuery and RequestsValueQuery are the new version's count
	// queries with increase() read as counter values (last_over_time), as
	// sent, when they were run; each count is then the smaller of the two
	// readings (see Sequential).
	ErrorsValueQuery, RequestsValueQuery string
	// E is the evidence of a regression at this evaluation (regressed once
	// E >= 1/Alpha) and EHealthy that of health; P is the always-valid
	// p-value min(1, 1/max E) over the deploy so far.
	E, EHealthy, P float64
	// Alpha and MinEffect are the configured test (RatioEffect: MinEffect
	// is a ratio, not a difference); Limit the absolute limit (the
	// trigger's above), if any.
	Alpha       float64
	MinEffect   string
	RatioEffect bool
	Limit       *float64
	// Relative and Absolute say which tests ran: against the baseline,
	// against the limit.
	Relative, Absolute bool
	// New is the new version's counts since the deploy; PreDeploy the
	// baseline's over the baseline window before it, Live the baseline's
	// since the deploy. Counts are rounded as the test uses them.
	New, PreDeploy, Live sequential.Counts
	// NewRate is the new version's error ratio with its anytime-valid
	// confidence interval; BaselineRate the baseline's (NaN when no
	// baseline was compared with).
	NewRate, NewLower, NewUpper                float64
	BaselineRate, BaselineLower, BaselineUpper float64
	// Effect is the estimated regression, the ratio or the difference of
	// error ratios as MinEffect is written, with an anytime-valid interval
	// at level 1-Alpha; NaN without a baseline.
	Effect, EffectLower, EffectUpper float64
	// BaselineRequestsQuery is the baseline's requests query since the
	// deploy as sent (the errors query is Evidence.BaselineQuery), at the
	// evaluation time.
	BaselineRequestsQuery string
	// BaselineWindow is the range of the pre-deploy baseline queries, and
	// PreDeployErrorsQuery and PreDeployRequestsQuery those queries as sent,
	// evaluated at the deploy time (once per deploy); empty when they were
	// not run (no baseline, no baseline window or no deploy time).
	BaselineWindow                               time.Duration
	PreDeployErrorsQuery, PreDeployRequestsQuery string
	// SlowBurn says the change detector ran (Sequential.SlowBurn; E,
	// EHealthy and P are then the test's at its Alpha/2, scaled to Alpha,
	// so that regressed by the test is still E >= 1/Alpha, and its
	// intervals are at its own level). ChangeE is the detector's statistic,
	// an e-value, which alarms once it reaches ChangeThreshold (1 over the
	// detector's share of Alpha); ChangeAlarm says it did during this
	// deploy, first at ChangeAlarmAt. ChangeQ0 is the bound it judged the
	// last tick against (NaN when none was known), ChangeStart the
	// estimated start of the change (time since the deploy) and
	// ChangeRatio the estimated error ratio since then over ChangeQ0.
	SlowBurn                           bool
	ChangeE, ChangeThreshold, ChangeQ0 float64
	ChangeStart                        time.Duration
	ChangeRatio                        float64
	ChangeAlarm                        bool
	ChangeAlarmAt                      time.Time
	// Note says why nothing was judged (no deploy time, nothing since the
	// deploy), when that is the case.
	Note string
}

// countTest is the method of a trigger with a Sequential test: it runs
// the test on the counts of the new version and of its baseline. It keeps,
// per deploy, the pre-deploy baseline counts (snap), the test in progress
// (state) and a regressed decision restored after a restart (latch).
type countTest struct {
	def  *Definition // the Trigger's
	test *sequential.Test
	// burnRel and burnAbs are the change detectors of SlowBurn, against
	// the baseline's bound (at Alpha/4) and against Above alone (at
	// Alpha/2); nil without SlowBurn.
	burnRel, burnAbs *changepoint.Detector

	perDeploy[*seqSnapshot, *seqState]
}

var _ method = (*countTest)(nil)

// newCountTest returns the count test of d, which has a Sequential test.
func newCountTest(d *Definition) (*countTest, error) {
	test, err := sequential.New(d.testConfig())
	if err != nil {
		return nil, fmt.Errorf("trigger %q: %w: %w", d.Name, err, ErrInvalidDefinition)
	}
	m := &countTest{def: d, test: test}
	if d.Sequential.SlowBurn {
		a := d.Sequential.Alpha
		if m.burnRel, err = newBurnDetector(*d, a*burnShare); err == nil {
			m.burnAbs, err = newBurnDetector(*d, a*(1-testShare))
		}
		if err != nil {
			return nil, fmt.Errorf("trigger %q: slow_burn: %w: %w", d.Name, err, ErrInvalidDefinition)
		}
	}
	return m, nil
}

// Shares of Alpha with SlowBurn (see Sequential): the test's; with a
// baseline, the detector's and the baseline bound's.
const (
	testShare  = 0.5
	burnShare  = 0.25
	boundShare = 0.25
)

// slowBurnWindow is the span after the deploy in which the change
// detector places the possible starts of a change (the default watch
// window).
const slowBurnWindow = 30 * time.Minute

// newBurnDetector returns the change detector of d at level alpha.
func newBurnDetector(d Definition, alpha float64) (*changepoint.Detector, error) {
	r := 1.5 // for a difference: the default ratio
	if e := d.Sequential.MinEffect; e.IsRatio() {
		r = e.Ratio
	}
	return changepoint.New(changepoint.Config{Alpha: alpha, Window: slowBurnWindow, MinEffect: 1 + (r-1)/2})
}

// seqSnapshot is the baseline's counts over the window before a deploy,
// with the queries that counted them.
type seqSnapshot struct {
	deploy             Deploy
	counts             sequential.Counts // zero when it had no data
	errorsQ, requestsQ string
}

// seqState is a sequential trigger's test of one deploy.
type seqState struct {
	decided
	watch *sequential.Watch
	maxE  float64

	// With SlowBurn: the detector's run (nil when it does not run), the
	// pre-deploy baseline counts its bound starts from, the largest new
	// version's counts seen (the ticks are their increments), its last
	// result and bound, and when it alarmed.
	burn         *changepoint.Run
	burnRelative bool
	pre, seen    sequential.Counts
	burnRes      changepoint.Result
	burnQ0       float64
	burnAt       time.Time
}

// testConfig is the statistics package's view of the definition.
func (d Definition) testConfig() sequential.Config {
	s := d.Sequential
	c := sequential.Config{Alpha: s.Alpha, Limit: d.Above}
	if s.SlowBurn {
		c.Alpha *= testShare
	}
	if s.MinEffect.IsRatio() {
		c.MinEffect.Ratio = s.MinEffect.Ratio
	} else {
		c.MinEffect.Delta = s.MinEffect.Delta
	}
	return c
}

// sequentialFromSpec parses a trigger's sequential settings.
func sequentialFromSpec(name string, c *SequentialSpec) (*Sequential, error) {
	s := &Sequential{Alpha: c.Alpha, MinEffect: c.MinEffect, BaselineWindow: c.BaselineWindow, SlowBurn: c.SlowBurn}
	var err error
	if s.Errors, err = parseTemplate(name+"/sequential.errors", c.Errors); err != nil {
		return nil, fmt.Errorf("trigger %q: sequential.errors: %w", name, err)
	}
	if s.Requests, err = parseTemplate(name+"/sequential.requests", c.Requests); err != nil {
		return nil, fmt.Errorf("trigger %q: sequential.requests: %w", name, err)
	}
	return s, nil
}

// derivedQuery is the value query of a sequential trigger without one: the
// error ratio errors/requests. Rendered without a deploy, {{.SinceDeploy}}
// is {{.Window}}, so recovery checks and impact measurement see the ratio
// over the trigger's window.
func (s *Sequential) derivedQuery(name string) (*query.Template, error) {
	return query.New(name+"/query", "(("+s.Errors.Text()+") or vector(0)) / ("+s.Requests.Text()+")")
}

// validate checks the sequential settings of d.
func (s *Sequential) validate(d Definition, bad func(string, ...any) error) error {
	switch {
	case s.Errors == nil || s.Requests == nil:
		return bad("sequential needs errors and requests queries")
	case d.Below != nil || d.AboveBaseline != nil:
		return bad("sequential cannot be combined with below or above_baseline")
	case d.MinRequests != 0 || d.VolumeQuery != nil:
		return bad("sequential cannot be combined with min_requests or volume_query")
	case s.BaselineWindow < 0:
		return bad("negative baseline_window %s", s.BaselineWindow)
	case !s.MinEffect.IsRatio() && s.MinEffect.Ratio != 0:
		return bad("min_effect ratio %g is negative", s.MinEffect.Ratio)
	}
	if err := d.testConfig().Validate(); err != nil {
		return bad("%v", err)
	}
	return nil
}

func sequentialEqual(a, b *Sequential) bool {
	if a == nil || b == nil {
		return a == b
	}
	return templateText(a.Errors) == templateText(b.Errors) &&
		templateText(a.Requests) == templateText(b.Requests) &&
		a.Alpha == b.Alpha && a.BaselineWindow == b.BaselineWindow && a.SlowBurn == b.SlowBurn &&
		baselineEqual(&a.MinEffect, &b.MinEffect)
}

// sinceDeploy is the range of the baseline's live count queries at ts: the
// time since the deploy rounded up to a whole second.
func sinceDeploy(d Deploy, ts time.Time) time.Duration {
	return upToSecond(ts.Sub(d.At))
}

// newVersionRange is the range of the new version's count queries at ts:
// the time since Lead before the deploy, rounded up to a whole second, so
// that the new version's first samples are inside it.
func newVersionRange(d Deploy, ts time.Time) time.Duration {
	return upToSecond(ts.Sub(d.At) + max(d.Lead, 0))
}

func upToSecond(d time.Duration) time.Duration {
	r := d.Truncate(time.Second)
	if r < d {
		r += time.Second
	}
	return r
}

// seqVars are the template values of the count queries of version over
// since.
func (m *countTest) seqVars(d Deploy, version string, since time.Duration) query.Vars {
	return query.Vars{Service: d.Service, Version: version, Baseline: d.Baseline, Window: m.def.Window, SinceDeploy: since}
}

func (m *countTest) copyFrom(old method) {
	if o, ok := old.(*countTest); ok {
		m.takeFrom(&o.perDeploy)
	}
}

// snapshot takes the baseline's counts over the baseline window before the
// deploy; value is their ratio.
func (m *countTest) snapshot(ctx context.Context, ec *evalContext) (float64, bool, error) {
	var ev Evidence
	s, err := m.snapshotOf(ctx, ec, &ev)
	if err != nil || s == nil || s.counts.Requests <= 0 {
		return 0, false, err
	}
	return s.counts.Errors / s.counts.Requests, true, nil
}

// takeSnapshot queries the baseline's counts over the baseline window
// before the deploy, at the deploy time.
func (m *countTest) takeSnapshot(ctx context.Context, ec *evalContext, ev *Evidence) (*seqSnapshot, error) {
	d, s := ec.deploy, m.def.Sequential
	vars := m.seqVars(d, d.Baseline, s.BaselineWindow)
	eq, err := s.Errors.Render(vars)
	if err != nil {
		return nil, fmt.Errorf("trigger %q: rendering the baseline errors query for %s: %w", m.def.Name, d.Baseline, err)
	}
	rq, err := s.Requests.Render(vars)
	if err != nil {
		return nil, fmt.Errorf("trigger %q: rendering the baseline requests query for %s: %w", m.def.Name, d.Baseline, err)
	}
	c, _, err := ec.atDeploy().counts(ctx, "pre-deploy baseline", eq, rq, ev)
	if err != nil {
		return nil, err
	}
	return &seqSnapshot{deploy: d, counts: c, errorsQ: eq, requestsQ: rq}, nil
}

// snapshotOf returns the pre-deploy baseline snapshot of the deploy,
// taking it only when Snapshot did not take it yet; nil when there is none
// to take.
func (m *countTest) snapshotOf(ctx context.Context, ec *evalContext, ev *Evidence) (*seqSnapshot, error) {
	d := ec.deploy
	if d.Baseline == "" || m.def.Sequential.BaselineWindow <= 0 || d.At.IsZero() {
		return nil, nil
	}
	if s, ok := m.snapshotFor(d); ok {
		return s, nil
	}
	s, err := m.takeSnapshot(ctx, ec, ev)
	if err != nil {
		return nil, err
	}
	m.keepSnapshot(s)
	return s, nil
}

// stateFor returns the test of the deploy, starting it (with the
// pre-deploy baseline counts, known before any count of the new version) at
// its first evaluation.
func (m *countTest) stateFor(ctx context.Context, ec *evalContext, ev *Evidence) (*seqState, error) {
	d := ec.deploy
	if st, ok := m.testFor(d); ok {
		return st, nil
	}
	var pre sequential.Counts
	s, err := m.snapshotOf(ctx, ec, ev)
	if err != nil {
		return nil, err
	}
	if s != nil {
		pre = s.counts
	}
	st := &seqState{decided: decided{deploy: d}, watch: m.test.Watch(d.Baseline != "", pre), pre: pre.Clean(), burnQ0: math.NaN()}
	switch {
	case d.Baseline != "" && m.burnRel != nil:
		st.burn, st.burnRelative = m.burnRel.Start(), true
	case m.def.Above != nil && m.burnAbs != nil:
		st.burn = m.burnAbs.Start()
	}
	m.start(st)
	return st, nil
}

// counts runs an errors and a requests query at ec.at. ok is false when
// the requests query returned no data (or NaN); an empty errors result is
// 0 errors (a version without errors often has no error series at all).
func (ec *evalContext) counts(ctx context.Context, what, errorsQ, requestsQ string, ev *Evidence) (sequential.Counts, bool, error) {
	n, nok, err := ec.sample(ctx, what+" requests", requestsQ, ev)
	if err != nil {
		return sequential.Counts{}, false, err
	}
	x, xok, err := ec.sample(ctx, what+" errors", errorsQ, ev)
	if err != nil {
		return sequential.Counts{}, false, err
	}
	if !xok || math.IsNaN(x) {
		x = 0
	}
	if !nok || math.IsNaN(n) {
		return sequential.Counts{Errors: x}, false, nil
	}
	return sequential.Counts{Errors: x, Requests: n}, true, nil
}

// capByValues returns the new version's counts c, read with increase()
// from the errors and requests queries rendered with vars, each lowered to the same query's reading as
// counter values when that is smaller (see Sequential, Counts). Queries
// without increase() keep their count; a value reading without requests
// data leaves c as it is.
func (m *countTest) capByValues(ctx context.Context, ec *evalContext, c sequential.Counts, vars query.Vars, se *SequentialEvidence, ev *Evidence) (sequential.Counts, error) {
	veq, ne, err := m.def.Sequential.Errors.CounterValues(vars)
	if err != nil {
		return c, fmt.Errorf("trigger %q: reading the errors query as counter values: %w", m.def.Name, err)
	}
	vrq, nr, err := m.def.Sequential.Requests.CounterValues(vars)
	if err != nil {
		return c, fmt.Errorf("trigger %q: reading the requests query as counter values: %w", m.def.Name, err)
	}
	if ne == 0 && nr == 0 {
		return c, nil
	}
	se.ErrorsValueQuery, se.RequestsValueQuery = veq, vrq
	v, ok, err := ec.counts(ctx, "new version (counter values)", veq, vrq, ev)
	if err != nil || !ok {
		return c, err
	}
	if ne > 0 {
		c.Errors = min(c.Errors, v.Errors)
	}
	if nr > 0 {
		c.Requests = min(c.Requests, v.Requests)
	}
	return c, nil
}

// judge runs the sequential test at ec.at, filling ev and its Sequential.
func (m *countTest) judge(ctx context.Context, ec *evalContext, ev *Evidence) (Outcome, error) {
	d, ts, s := ec.deploy, ec.at, m.def.Sequential
	se := &SequentialEvidence{
		Alpha: s.Alpha, MinEffect: s.MinEffect.Text, Limit: m.def.Above, P: 1,
		NewRate: math.NaN(), NewLower: math.NaN(), NewUpper: math.NaN(),
		BaselineRate: math.NaN(), BaselineLower: math.NaN(), BaselineUpper: math.NaN(),
		Effect: math.NaN(), EffectLower: math.NaN(), EffectUpper: math.NaN(),
	}
	if se.MinEffect == "" {
		se.MinEffect = m.def.testConfig().MinEffect.String()
	}
	se.RatioEffect = s.MinEffect.IsRatio()
	ev.Sequential = se
	switch {
	case d.At.IsZero():
		se.Note = "deploy time unknown"
		return NotEnoughEvidence, nil
	case ts.Before(d.At), ts.Equal(d.At) && d.Lead <= 0:
		se.Note = "nothing since the deploy yet"
		return NotEnoughEvidence, nil
	}
	since, newRange := sinceDeploy(d, ts), newVersionRange(d, ts)
	se.SinceDeploy, se.Lead, se.NewRange = since, max(d.Lead, 0), newRange
	nv := m.seqVars(d, d.Version, newRange)
	eq, err := s.Errors.Render(nv)
	if err == nil {
		ev.Query = eq
		ev.VolumeQuery, err = s.Requests.Render(nv)
	}
	if err != nil {
		return QueryError, fmt.Errorf("trigger %q: rendering the count queries for %s: %w", m.def.Name, d.Version, err)
	}
	st, err := m.stateFor(ctx, ec, ev)
	if err != nil {
		return QueryError, err
	}
	m.mu.Lock()
	if snap := m.snap; snap != nil && snap.deploy.Equal(d) {
		se.BaselineWindow = s.BaselineWindow
		se.PreDeployErrorsQuery, se.PreDeployRequestsQuery = snap.errorsQ, snap.requestsQ
	}
	m.mu.Unlock()
	nc, ok, err := ec.counts(ctx, "new version", eq, ev.VolumeQuery, ev)
	if err == nil && ok && d.Lead > 0 {
		nc, err = m.capByValues(ctx, ec, nc, nv, se, ev)
	}
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
		se.Decision, se.DecidedAt, se.Note = decision, at, "no requests data now"
		ev.Conditions = []Check{{Name: "sequential", Threshold: 1 / s.Alpha, Text: "sequential regressed earlier; no data now", Breached: true}}
		return Violated, nil
	}
	var live sequential.Counts
	if d.Baseline != "" && since > 0 {
		bv := m.seqVars(d, d.Baseline, since)
		beq, err := s.Errors.Render(bv)
		var brq string
		if err == nil {
			brq, err = s.Requests.Render(bv)
		}
		if err != nil {
			return QueryError, fmt.Errorf("trigger %q: rendering the count queries for %s: %w", m.def.Name, d.Baseline, err)
		}
		ev.BaselineQuery, se.BaselineRequestsQuery = beq, brq
		if live, _, err = ec.counts(ctx, "baseline", beq, brq, ev); err != nil {
			return QueryError, err
		}
	}

	if len(ev.Warnings) > 0 {
		// The counts may be partial (a store that did not answer): the test
		// takes no step on them; it judges the next complete answer.
		se.Note, ev.Incomplete = "the source warned that its answer may be incomplete", true
		m.mu.Lock()
		se.Decision, se.DecidedAt = st.decision, st.decidedAt
		m.mu.Unlock()
		if se.Decision == sequential.Regressed {
			ev.Conditions = []Check{{Name: "sequential", Threshold: 1 / s.Alpha, Text: "sequential regressed earlier; incomplete answer now", Breached: true}}
			return Violated, nil
		}
		return NotEnoughEvidence, nil
	}
	res := st.watch.Judge(nc, live)
	// The test's e-values at its share of alpha, scaled to the trigger's.
	scale := m.test.Config().Alpha / s.Alpha
	res.E, res.EHealthy = res.E*scale, res.EHealthy*scale
	burnAlarm := m.observeBurn(st, ts, res.New, live)
	m.mu.Lock()
	st.maxE = max(st.maxE, res.E)
	switch {
	case st.decision == sequential.Regressed:
	case res.Decision == sequential.Regressed, burnAlarm:
		st.decision, st.decidedAt = sequential.Regressed, ts
	case res.Decision == sequential.Healthy && st.decision == sequential.Inconclusive:
		st.decision, st.decidedAt = res.Decision, ts
	}
	se.Decision, se.DecidedAt = st.decision, st.decidedAt
	if st.maxE > 1 {
		se.P = 1 / st.maxE
	}
	if st.burn != nil {
		r := st.burnRes
		se.SlowBurn = true
		se.ChangeE, se.ChangeThreshold, se.ChangeQ0 = r.E, r.Threshold, st.burnQ0
		se.ChangeStart, se.ChangeRatio = r.Start, r.Ratio
		se.ChangeAlarm, se.ChangeAlarmAt = !st.burnAt.IsZero(), st.burnAt
	}
	m.mu.Unlock()

	se.E, se.EHealthy = res.E, res.EHealthy
	se.Relative, se.Absolute = res.Relative, res.Absolute
	se.New, se.Live = res.New, live.Clean()
	se.PreDeploy = sequential.Counts{}
	if res.Relative {
		se.PreDeploy = res.Baseline.Add(sequential.Counts{Errors: -se.Live.Errors, Requests: -se.Live.Requests})
	}
	se.NewRate, se.NewLower, se.NewUpper = res.NewRate, res.NewLower, res.NewUpper
	se.BaselineRate, se.BaselineLower, se.BaselineUpper = res.BaselineRate, res.BaselineLower, res.BaselineUpper
	se.Effect, se.EffectLower, se.EffectUpper = res.Effect, res.EffectLower, res.EffectUpper

	if !math.IsNaN(res.NewRate) {
		v := res.NewRate
		ev.Value = &v
	}
	n := res.New.Requests
	ev.SampleSize = &n
	if res.Relative {
		ev.BaselineMode = BaselineUnavailable
		switch {
		case se.Live.Requests > 0:
			ev.BaselineMode = BaselineLive
		case se.PreDeploy.Requests > 0:
			ev.BaselineMode = BaselinePreDeploy
		}
		if !math.IsNaN(res.BaselineRate) {
			b := res.BaselineRate
			ev.BaselineValue = &b
		}
	}
	ev.Conditions = []Check{{
		Name: "sequential", Threshold: 1 / s.Alpha, Text: seqConditionText(se, d), Breached: se.Decision == sequential.Regressed,
	}}
	if se.SlowBurn {
		ev.Conditions = append(ev.Conditions, Check{
			Name: "slow_burn", Threshold: se.ChangeThreshold, Text: burnConditionText(se), Breached: se.ChangeAlarm,
		})
	}
	switch se.Decision {
	case sequential.Regressed:
		return Violated, nil
	case sequential.Healthy:
		return OK, nil
	}
	return NotEnoughEvidence, nil
}

// observeBurn feeds the change detector of st, if it runs, the new
// version's counts since the previous evaluation (nc are its cleaned counts
// since the deploy), judged against the bound on the baseline's rate from
// its pre-deploy and live counts (see Sequential); it reports whether the
// detector alarmed now.
func (m *countTest) observeBurn(st *seqState, ts time.Time, nc, live sequential.Counts) bool {
	if st.burn == nil {
		return false
	}
	q0 := 1.0
	if st.burnRelative {
		_, q0 = sequential.Confidence(st.pre.Add(live.Clean()), m.def.Sequential.Alpha*boundShare)
	}
	if l := m.def.Above; l != nil {
		q0 = min(q0, *l)
	}
	tick := changepoint.Tick{
		At:     ts.Sub(st.deploy.At),
		Errors: max(0, nc.Errors-st.seen.Errors), Requests: max(0, nc.Requests-st.seen.Requests),
		Q0: q0,
	}
	r := st.burn.Observe(tick)
	m.mu.Lock()
	defer m.mu.Unlock()
	st.seen = sequential.Counts{Errors: max(st.seen.Errors, nc.Errors), Requests: max(st.seen.Requests, nc.Requests)}
	st.burnRes, st.burnQ0 = r, math.NaN()
	if q0 < 1 {
		st.burnQ0 = q0
	}
	if r.Alarm && st.burnAt.IsZero() {
		st.burnAt = ts
	}
	return r.Alarm
}

// burnConditionText describes the change detector's finding, e.g. "change
// detector alarmed at 12:04:10 (e 4215, need 4000, alpha 0.00025):
// likeliest a change from deploy+2m0s, 2.93x the bound 1.21%" or "change
// detector quiet (e 0.8 < 4000, alpha 0.00025): bound 1.21%".
func burnConditionText(se *SequentialEvidence) string {
	var b strings.Builder
	b.WriteString("change detector ")
	thr := se.ChangeThreshold
	if se.ChangeAlarm {
		fmt.Fprintf(&b, "alarmed at %s (e %s, need %s, alpha %s)", se.ChangeAlarmAt.UTC().Format(time.TimeOnly), fmtNum(se.ChangeE), fmtLimit(thr), fmtLimit(1/thr))
	} else {
		cmp := "<"
		if se.ChangeE >= thr {
			cmp = "≥"
		}
		fmt.Fprintf(&b, "quiet (e %s %s %s, alpha %s)", fmtNum(se.ChangeE), cmp, fmtLimit(thr), fmtLimit(1/thr))
	}
	b.WriteString(burnFinding(se))
	return b.String()
}

// burnFinding describes the detector's estimate: ": likeliest a change
// from deploy+2m0s, 2.93x the bound 1.21%", ": bound 1.21%" when it has no
// evidence yet, or that no bound is known.
func burnFinding(se *SequentialEvidence) string {
	if math.IsNaN(se.ChangeQ0) {
		return ": no bound on the error ratio yet"
	}
	if !(se.ChangeE > 1) {
		return ": bound " + fmtPct(se.ChangeQ0)
	}
	return ": likeliest a change from deploy+" + se.ChangeStart.String() + ", " + fmtNum(se.ChangeRatio) + "x the bound " + fmtPct(se.ChangeQ0)
}

// seqConditionText describes the test's verdict as a condition, e.g.
// "sequential regressed (e 1.04e+04, healthy e 0.001, need 1000, alpha
// 0.001): ratio 5 [1.02, 14.7] vs baseline v1".
func seqConditionText(se *SequentialEvidence, d Deploy) string {
	var b strings.Builder
	b.WriteString("sequential ")
	b.WriteString(se.Decision.String())
	fmt.Fprintf(&b, " (e %s, healthy e %s, need %s, alpha %s)", fmtNum(se.E), fmtNum(se.EHealthy), fmtLimit(1/se.Alpha), fmtLimit(se.Alpha))
	if se.Relative {
		b.WriteString(": ")
		b.WriteString(effectText(se))
		b.WriteString(" vs baseline ")
		b.WriteString(d.Baseline)
	}
	if se.Absolute && se.Limit != nil {
		b.WriteString("; rate ")
		b.WriteString(rateInterval(se.NewRate, se.NewLower, se.NewUpper))
		b.WriteString(" vs limit ")
		b.WriteString(fmtLimit(*se.Limit))
	}
	return b.String()
}

// effectText formats the effect and its interval: "ratio 5.07 [1.9, 13.4]"
// or "difference +0.04 [+0.01, +0.09]".
func effectText(se *SequentialEvidence) string {
	if se.RatioEffect {
		return "ratio " + fmtNum(se.Effect) + " [" + fmtNum(se.EffectLower) + ", " + fmtNum(se.EffectUpper) + "]"
	}
	return "difference " + fmtSigned(se.Effect) + " [" + fmtSigned(se.EffectLower) + ", " + fmtSigned(se.EffectUpper) + "]"
}

func fmtSigned(f float64) string {
	if f >= 0 {
		return "+" + fmtNum(f)
	}
	return fmtNum(f)
}

// rateInterval formats an error ratio and its interval as percentages.
func rateInterval(r, lo, hi float64) string {
	return fmtPct(r) + " [" + fmtPct(lo) + ", " + fmtPct(hi) + "]"
}

func fmtPct(f float64) string {
	if math.IsNaN(f) {
		return "NaN"
	}
	return fmtNum(f*100) + "%"
}

// fmtCounts formats counts as "31/612" and their ratio as "5.07%".
func fmtCounts(c sequential.Counts) (string, string) {
	r := "no requests"
	if c.Requests > 0 {
		r = fmtPct(c.Errors / c.Requests)
	}
	return fmtNum(c.Errors) + "/" + fmtNum(c.Requests), r
}

// sequentialSummary writes the one-line description of a sequential
// verdict (after "name version: "), for example
//
//	regressed: 31/612 errors (5.07%) in 2m30s vs baseline v1 180/18000 (1%, pre_deploy); ratio 5.07 [1.9, 13.4]; e 1.2e+04 ≥ 1000 (p 8.33e-05, alpha 0.001)
func sequentialSummary(b *strings.Builder, v Verdict) {
	se := v.Evidence.Sequential
	b.WriteString(se.Decision.String())
	if se.Decision != sequential.Inconclusive && !se.DecidedAt.IsZero() && !se.DecidedAt.Equal(v.At) {
		b.WriteString(" since ")
		b.WriteString(se.DecidedAt.UTC().Format(time.TimeOnly))
	}
	b.WriteString(": ")
	if se.Note != "" {
		b.WriteString(se.Note)
		return
	}
	counts, rate := fmtCounts(se.New)
	fmt.Fprintf(b, "%s errors (%s) in %s", counts, rate, se.SinceDeploy)
	if se.Lead > 0 {
		fmt.Fprintf(b, " (counted from %s before the deploy)", se.Lead)
	}
	switch {
	case se.Relative:
		counts, rate = fmtCounts(se.PreDeploy.Add(se.Live))
		mode := v.Evidence.BaselineMode.String()
		if se.Live.Requests > 0 && se.PreDeploy.Requests > 0 {
			mode += "+pre_deploy"
		}
		fmt.Fprintf(b, " vs baseline %s %s (%s, %s)", v.Deploy.Baseline, counts, rate, mode)
	case !se.Absolute:
		b.WriteString("; baseline unknown and no limit (above) to test against")
		return
	}
	if se.Absolute && se.Limit != nil {
		b.WriteString(", limit ")
		b.WriteString(fmtPct(*se.Limit))
	}
	b.WriteString("; ")
	if se.Relative {
		b.WriteString(effectText(se))
	} else {
		b.WriteString("rate ")
		b.WriteString(rateInterval(se.NewRate, se.NewLower, se.NewUpper))
	}
	thr := 1 / se.Alpha
	switch se.Decision {
	case sequential.Healthy:
		fmt.Fprintf(b, "; healthy e %s (need %s): any regression < %s", fmtNum(se.EHealthy), fmtLimit(thr), se.MinEffect)
		if !se.Relative {
			b.WriteString(", rate < limit")
		}
	default:
		cmp := "<"
		if se.E >= thr {
			cmp = "≥"
		}
		fmt.Fprintf(b, "; e %s %s %s (p %s, alpha %s)", fmtNum(se.E), cmp, fmtLimit(thr), fmtNum(se.P), fmtLimit(se.Alpha))
		if se.Decision == sequential.Inconclusive {
			fmt.Fprintf(b, ", healthy e %s", fmtNum(se.EHealthy))
		}
	}
	if se.SlowBurn {
		b.WriteString("; ")
		b.WriteString(burnConditionText(se))
	}
}
