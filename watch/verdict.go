package watch

import (
	"fmt"
	"math"
	"time"

	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// Judgement is Guardian's answer on one version: what a progressive
// delivery controller (Argo Rollouts, Flagger) asks before it promotes or
// aborts a canary.
type Judgement string

// Judgements.
const (
	// Healthy: the version is the open watch's and every trigger has
	// judged it ok for at least the trigger's for (a sequential trigger:
	// its test decided healthy).
	Healthy Judgement = "healthy"
	// Regressed: a trigger fires on the version, or it fired during the
	// watch (the decision stands for the deploy).
	Regressed Judgement = "regressed"
	// Inconclusive: anything else: not enough evidence yet, a trigger that
	// cannot judge, a version Guardian is not watching or a baseline other
	// than the one asked for.
	Inconclusive Judgement = "inconclusive"
)

// VersionVerdict is Guardian's current judgement of a version of a
// service, with the evidence it rests on.
type VersionVerdict struct {
	Service string `json:"service"`
	// Version is the version judged, as asked.
	Version string `json:"version"`
	// Verdict is "healthy", "regressed" or "inconclusive".
	Verdict Judgement `json:"verdict"`
	// Reason says in a sentence why.
	Reason string `json:"reason"`
	// Watching is the version of the open watch, empty when none is open.
	Watching string `json:"watching,omitempty"`
	// Baseline is the version Guardian compares with; RequestedBaseline
	// the one asked for, if any, and BaselineMatches whether they agree.
	Baseline          string `json:"baseline,omitempty"`
	RequestedBaseline string `json:"requested_baseline,omitempty"`
	BaselineMatches   *bool  `json:"baseline_matches,omitempty"`
	// WatchStarted is when the open watch began (the deploy); WatchUntil
	// when it ends.
	WatchStarted *time.Time `json:"watch_started,omitempty"`
	WatchUntil   *time.Time `json:"watch_until,omitempty"`
	// Incident is the incident declared for the version, if any.
	Incident int64 `json:"incident,omitempty"`
	// Triggers are the judgements of the service's triggers on the version
	// (empty when it is not the open watch's).
	Triggers []TriggerVerdict `json:"triggers"`
	// At is when the verdict was given.
	At time.Time `json:"at"`
}

// TriggerVerdict is one trigger's part in a VersionVerdict: its own
// judgement and its last evaluation's evidence. Values that are not
// finite numbers are left out (JSON has none); Evidence says them.
type TriggerVerdict struct {
	Name    string    `json:"name"`
	Verdict Judgement `json:"verdict"`
	Reason  string    `json:"reason"`
	// State is the trigger's state (inactive, pending, firing) and Outcome
	// its last evaluation's (ok, violated, not_enough_evidence, ...).
	State   string `json:"state"`
	Outcome string `json:"last_outcome,omitempty"`
	// EvaluatedAt is when it last evaluated the version.
	EvaluatedAt *time.Time `json:"evaluated_at,omitempty"`
	// Value is the version's value, BaselineValue the baseline's.
	Value         *float64 `json:"value,omitempty"`
	BaselineValue *float64 `json:"baseline_value,omitempty"`
	// Thresholds are the trigger's conditions as last judged.
	Thresholds []Threshold `json:"thresholds,omitempty"`
	// SampleSize is the last volume query's value; MinRequests the least
	// one the trigger judges with.
	SampleSize  *float64 `json:"sample_size,omitempty"`
	MinRequests float64  `json:"min_requests,omitempty"`
	// ForSeconds is the trigger's for; OKSince when its current run of ok
	// evaluations began.
	ForSeconds float64    `json:"for_seconds"`
	OKSince    *time.Time `json:"ok_since,omitempty"`
	// Sequential is a sequential test's decision (inconclusive, regressed,
	// healthy); empty for other triggers.
	Sequential string `json:"sequential_decision,omitempty"`
	// Latency is a latency test's decision (inconclusive, regressed,
	// healthy); empty for other triggers.
	Latency string `json:"latency_decision,omitempty"`
	// Evidence is the last evaluation in words.
	Evidence string `json:"evidence,omitempty"`
}

// Threshold is one judged condition of a trigger.
type Threshold struct {
	// Condition is the condition's name (above, below, above_baseline...).
	Condition string   `json:"condition"`
	Threshold *float64 `json:"threshold,omitempty"`
	Text      string   `json:"text"`
	Breached  bool     `json:"breached"`
	Skipped   bool     `json:"skipped,omitempty"`
}

// definer is a trigger with a Definition (its for).
type definer interface {
	Definition() trigger.Definition
}

// Judge returns Guardian's judgement of version of the service now, from
// the open watch (see Judgement). baseline, when not empty, is the
// baseline the caller compares with: a different one turns healthy into
// inconclusive (a regression stands whatever the baseline).
func (s *Service) Judge(version, baseline string, now time.Time) VersionVerdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	vv := VersionVerdict{Service: s.name, Version: version, RequestedBaseline: baseline, Triggers: []TriggerVerdict{}, At: now.UTC()}
	if s.watch == nil {
		vv.Verdict, vv.Reason = Inconclusive, fmt.Sprintf("no watch is open on %s: Guardian is not judging version %q", s.name, version)
		return vv
	}
	d := s.watch.deploy
	vv.Watching, vv.Baseline = d.Version, d.Baseline
	if d.Version != version {
		vv.Verdict, vv.Reason = Inconclusive, fmt.Sprintf("Guardian is watching version %q of %s, not %q", d.Version, s.name, version)
		return vv
	}
	since, until := d.At.UTC(), s.watch.until.UTC()
	vv.WatchStarted, vv.WatchUntil = &since, &until
	if baseline != "" {
		match := baseline == d.Baseline
		vv.BaselineMatches = &match
	}
	regressed, healthy := 0, 0
	for i, tr := range s.triggers {
		tv := judgeTrigger(tr, s.history[i], version)
		switch tv.Verdict {
		case Regressed:
			regressed++
		case Healthy:
			healthy++
		}
		vv.Triggers = append(vv.Triggers, tv)
	}
	switch {
	case regressed > 0:
		vv.Verdict, vv.Reason = Regressed, fmt.Sprintf("%d of %d triggers judge version %q regressed", regressed, len(s.triggers), version)
	case s.watch.fired:
		vv.Verdict, vv.Reason = Regressed, fmt.Sprintf("a trigger fired on version %q during this watch", version)
	case len(s.triggers) == 0:
		vv.Verdict, vv.Reason = Inconclusive, fmt.Sprintf("%s has no triggers", s.name)
	case healthy < len(s.triggers):
		vv.Verdict, vv.Reason = Inconclusive, fmt.Sprintf("%d of %d triggers judge version %q healthy so far", healthy, len(s.triggers), version)
	case vv.BaselineMatches != nil && !*vv.BaselineMatches:
		vv.Verdict, vv.Reason = Inconclusive, fmt.Sprintf("every trigger judges version %q healthy, but against baseline %q, not %q", version, d.Baseline, baseline)
	default:
		vv.Verdict, vv.Reason = Healthy, fmt.Sprintf("every trigger judges version %q healthy", version)
	}
	return vv
}

// judgeTrigger judges one trigger's part. Callers hold the Service's mu.
func judgeTrigger(tr trigger.Evaluator, h *history, version string) TriggerVerdict {
	tv := TriggerVerdict{Name: tr.Name(), Verdict: Inconclusive, State: trigger.Inactive.String()}
	var forDur time.Duration
	if d, ok := tr.(definer); ok {
		forDur = d.Definition().For
	}
	tv.ForSeconds = forDur.Seconds()
	v, ok := tr.Last()
	if !ok || v.Deploy.Version != version {
		tv.Reason = "not evaluated on this version yet"
		return tv
	}
	at := v.At.UTC()
	tv.State, tv.Outcome, tv.EvaluatedAt, tv.Evidence = v.State.String(), v.Outcome.String(), &at, v.Summary()
	tv.Value, tv.BaselineValue, tv.SampleSize = finite(v.Evidence.Value), finite(v.Evidence.BaselineValue), finite(v.Evidence.SampleSize)
	tv.MinRequests = v.Evidence.MinRequests
	for _, c := range v.Evidence.Conditions {
		th := c.Threshold
		tv.Thresholds = append(tv.Thresholds, Threshold{Condition: c.Name, Threshold: finite(&th), Text: c.Text, Breached: c.Breached, Skipped: c.Skipped})
	}
	if lat := v.Evidence.Latency; lat != nil {
		tv.Latency = lat.Decision.String()
		switch {
		case lat.Decision == sequential.Regressed || v.State == trigger.Firing:
			tv.Verdict, tv.Reason = Regressed, "the latency test decided the version regressed"
		case lat.Decision == sequential.Healthy:
			tv.Verdict, tv.Reason = Healthy, "the latency test decided the version is healthy"
		default:
			tv.Reason = "the latency test has not decided yet"
		}
		return tv
	}
	if seq := v.Evidence.Sequential; seq != nil {
		tv.Sequential = seq.Decision.String()
		switch {
		case seq.Decision == sequential.Regressed || v.State == trigger.Firing:
			tv.Verdict, tv.Reason = Regressed, "the sequential test decided the version regressed"
		case seq.Decision == sequential.Healthy:
			tv.Verdict, tv.Reason = Healthy, "the sequential test decided the version is healthy"
		default:
			tv.Reason = "the sequential test has not decided yet"
		}
		return tv
	}
	if v.State == trigger.Firing {
		tv.Verdict, tv.Reason = Regressed, "firing"
		return tv
	}
	okSince, ok := h.okSince()
	if !ok || v.Outcome != trigger.OK {
		tv.Reason = fmt.Sprintf("last outcome %s: not judged ok", v.Outcome)
		if v.State == trigger.Pending {
			tv.Reason = "pending: its conditions are breached"
		}
		return tv
	}
	tv.OKSince = &okSince
	if okFor := v.At.Sub(okSince); okFor < forDur {
		tv.Reason = fmt.Sprintf("ok for %s of the %s its for asks", okFor.Round(time.Second), forDur)
		return tv
	}
	tv.Verdict, tv.Reason = Healthy, "ok"
	if forDur > 0 {
		tv.Reason = fmt.Sprintf("ok for at least %s", forDur)
	}
	return tv
}

// okSince returns when the latest unbroken run of ok evaluations began;
// false when the latest evaluation is not ok. A run longer than the
// history reaches back to its oldest sample.
func (h *history) okSince() (time.Time, bool) {
	var since int64
	for i := range h.count {
		s := h.buf[(h.next-1-i+2*len(h.buf))%len(h.buf)]
		if trigger.Outcome(s.outcome) != trigger.OK {
			break
		}
		since = s.at
	}
	if since == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, since).UTC(), true
}

// finite returns a copy of *p when it is a finite number, else nil.
func finite(p *float64) *float64 {
	if p == nil || math.IsNaN(*p) || math.IsInf(*p, 0) {
		return nil
	}
	f := *p
	return &f
}
