// Package report renders an incident as its report — Markdown for people,
// JSON for programs — measures its impact from the firing trigger's
// queries, schedules its post-mortem as an iCalendar invite, and writes them
// to disk (Writer, the incident driver's report effect).
//
// The impact counts failed requests for an error trigger and slow requests
// for a latency trigger. Which one a trigger is, is declared, not guessed
// from its metric names: a trigger with slower_than (Definition.SlowerThan)
// judges latency, and its sequential errors query counts the requests
// slower than it; the only inference is that a query taking a quantile
// (histogram_quantile) judges latency too. A quantile counts no requests,
// so a threshold latency trigger gets no estimate, only a note saying so
// (see MeasureImpact). The report shows every query the firing verdict
// evaluated, with what it counted, over which range and when
// (EvidenceQueries), and the queries the impact was measured with.
package report

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/incident"
)

// ErrInvalidRecord is wrapped by the errors for a record that cannot be
// reported on (no ID or no service).
var ErrInvalidRecord = errors.New("invalid incident record")

// Options tune a report.
type Options struct {
	// Now returns the generation time; nil means time.Now.
	Now func() time.Time
	// Location is the time zone times are displayed in; nil means UTC.
	Location *time.Location
	// Postmortem, when set, is the scheduled post-mortem the report
	// mentions (see Schedule and NewInvite).
	Postmortem *Invite
	// Charts are the HTML report's charts (see Charts); ChartsNote says
	// why there are none, when there are none.
	Charts     []IncidentChart
	ChartsNote string
}

func (o Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

func (o Options) location() *time.Location {
	if o.Location == nil {
		return time.UTC
	}
	return o.Location
}

func checkRecord(r incident.Record) error {
	switch {
	case r.ID <= 0:
		return fmt.Errorf("%w: incident id %d", ErrInvalidRecord, r.ID)
	case r.Service == "":
		return fmt.Errorf("%w: incident %d has no service", ErrInvalidRecord, r.ID)
	}
	return nil
}

// Intervals are the durations between an incident's milestones; a nil field
// is an interval whose end (or start) was not reached or not recorded.
type Intervals struct {
	// DeployToDetection is the time from the deploy to the detection.
	DeployToDetection *time.Duration
	// DetectionToApproval is the time from the detection to the go.
	DetectionToApproval *time.Duration
	// ApprovalToRollbackDone is the time from the go to the end of the
	// rollback.
	ApprovalToRollbackDone *time.Duration
	// Rollback is how long the rollback ran.
	Rollback *time.Duration
	// RollbackDoneToRecovery is the time from the end of the rollback to
	// the verified recovery.
	RollbackDoneToRecovery *time.Duration
	// TimeToResolve is the time from the detection to the resolution.
	TimeToResolve *time.Duration
	// DeployToRecovery is the impact window: from the deploy to the
	// verified recovery.
	DeployToRecovery *time.Duration
}

// IntervalsOf computes r's intervals from its timestamps.
func IntervalsOf(r incident.Record) Intervals {
	return Intervals{
		DeployToDetection:      span(r.DeployedAt, &r.DetectedAt),
		DetectionToApproval:    span(r.DetectedAt, r.ApprovedAt),
		ApprovalToRollbackDone: span(deref(r.ApprovedAt), r.RollbackDoneAt),
		Rollback:               span(deref(r.RollbackStartedAt), r.RollbackDoneAt),
		RollbackDoneToRecovery: span(deref(r.RollbackDoneAt), r.RecoveredAt),
		TimeToResolve:          span(r.DetectedAt, r.ResolvedAt),
		DeployToRecovery:       span(r.DeployedAt, r.RecoveredAt),
	}
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// span is to-from, nil when either end is missing.
func span(from time.Time, to *time.Time) *time.Duration {
	if from.IsZero() || to == nil || to.IsZero() {
		return nil
	}
	d := to.Sub(from)
	return &d
}

// finite returns *f, or false for nil, NaN and infinities.
func finite(f *float64) (float64, bool) {
	if f == nil || math.IsNaN(*f) || math.IsInf(*f, 0) {
		return 0, false
	}
	return *f, true
}

// fmtNum formats a measured value: three significant digits, whole numbers
// from 1000 up, "n/a" for NaN and infinities (never "NaN").
func fmtNum(f float64) string {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return "n/a"
	case math.Abs(f) >= 1000 && math.Abs(f) < 1e15:
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', 3, 64)
}

// fmtDur formats a duration to the second, e.g. "3m10s".
func fmtDur(d time.Duration) string { return d.Round(time.Second).String() }

// fmtOffset formats a signed offset, e.g. "+3m10s" or "-2m0s".
func fmtOffset(d time.Duration) string {
	if d < 0 {
		return fmtDur(d)
	}
	return "+" + fmtDur(d)
}

const timeLayout = "2006-01-02 15:04:05 MST"

// fmtTime formats t in loc, "not recorded" for the zero time.
func fmtTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "not recorded"
	}
	return t.In(loc).Format(timeLayout)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// oneLine collapses runs of white space, line breaks included, to a space.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// firstLine is s's first non-empty line, marked when more follow.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return strings.TrimSpace(s[:i]) + " (…)"
	}
	return s
}

// versionOf is "checkout v2.4.1", or the service alone.
func versionOf(r incident.Record) string {
	if r.Version == "" {
		return r.Service
	}
	return r.Service + " " + r.Version
}

// headline says what happened to the deploy, e.g. "checkout v2.4.1 rolled
// back to v2.4.0".
func headline(r incident.Record) string {
	to := ""
	if r.Baseline != "" {
		to = " to " + r.Baseline
	}
	var what string
	switch r.State {
	case incident.Resolved:
		what = "rolled back" + to
	case incident.Held:
		what = "rollback" + to + " held (no-go)"
	case incident.Failed:
		what = "rollback" + to + " failed"
	case incident.Escalated:
		what = "rollback" + to + " escalated"
	case incident.Detected:
		what = "detected as bad"
	case incident.AwaitingApproval:
		what = "rollback" + to + " awaiting approval"
	case incident.RollingBack:
		what = "rolling back" + to
	case incident.Verifying:
		what = "rolled back" + to + ", verifying recovery"
	case incident.DBAwaitingApproval:
		what = "rolled back" + to + ", database step awaiting approval"
	case incident.DBRollingBack:
		what = "rolled back" + to + ", rolling back the database"
	default:
		what = "state " + orUnknown(r.State.String())
	}
	if r.Shadowed() {
		what = "detected as bad, shadow mode: Guardian did not act"
	}
	return versionOf(r) + " " + what
}

// ShadowHeading heads the report of an incident in shadow mode.
const ShadowHeading = "Shadow mode: Guardian did not act."

// ShadowText says, for an incident in shadow mode, what Guardian would
// have done and that it did nothing; empty for an enforced incident.
func ShadowText(r incident.Record, loc *time.Location) string {
	if !r.Shadowed() {
		return ""
	}
	if loc == nil {
		loc = time.UTC
	}
	s := "The service is in shadow mode: nobody was asked for a go/no-go and no rollback ran."
	for _, e := range r.Timeline {
		if e.Type == event.ShadowDecision {
			s = fmt.Sprintf("It would have rolled back %s %s → %s at %s; nobody was asked for a go/no-go and no rollback ran.",
				r.Service, orUnknown(r.Version), orUnknown(r.Baseline), fmtTime(e.At, loc))
			break
		}
	}
	return s
}

// Title is the report's title, e.g. "Incident #12 — checkout v2.4.1 rolled
// back to v2.4.0".
func Title(r incident.Record) string {
	return fmt.Sprintf("Incident #%d — %s", r.ID, headline(r))
}

// baselineModeText explains a baseline mode.
func baselineModeText(mode string) string {
	switch mode {
	case "live":
		return "live: the baseline version was still serving and was queried at the same evaluation time"
	case "pre_deploy":
		return "pre_deploy: the baseline version no longer served (rolling update); its value just before the deploy was used"
	case "unavailable":
		return "unavailable: the baseline had no data, so conditions relative to it were not judged"
	case "none", "":
		return "none: the baseline was not consulted"
	}
	return mode
}

// evidenceText is the trigger's evidence in one line, e.g. "value 0.079
// against > 0.05 and > 2x baseline v2.4.0 (0.004, live); 1534 requests".
func evidenceText(ev incident.Evidence) string {
	var parts []string
	if v, ok := finite(ev.Value); ok {
		s := "value " + fmtNum(v)
		if len(ev.Conditions) > 0 {
			s += " against " + strings.Join(ev.Conditions, " and ")
		}
		parts = append(parts, s)
	} else if len(ev.Conditions) > 0 {
		parts = append(parts, "conditions "+strings.Join(ev.Conditions, " and "))
	}
	if b, ok := finite(ev.BaselineValue); ok && len(ev.Conditions) == 0 {
		parts = append(parts, "baseline "+fmtNum(b)+" ("+orUnknown(ev.BaselineMode)+")")
	}
	if n, ok := finite(ev.SampleSize); ok {
		parts = append(parts, fmtNum(n)+" requests")
	}
	return strings.Join(parts, "; ")
}

// triggerSentence is "Trigger error-rate fired: <evidence>.".
func triggerSentence(r incident.Record) string {
	if h := r.RequestedBy; h != nil {
		return fmt.Sprintf("No trigger fired: %s asked for the rollback%s because %s.", h.By, via(h.Channel), strings.TrimRight(oneLine(h.Reason), "."))
	}
	name := r.Trigger
	if name == "" {
		name = "(unnamed)"
	}
	switch ev := evidenceText(r.Evidence); {
	case ev != "":
		return "Trigger " + name + " fired: " + ev + "."
	case r.Evidence.Summary != "":
		return "Trigger " + name + " fired: " + oneLine(r.Evidence.Summary) + "."
	}
	return "Trigger " + name + " fired; no evidence was recorded."
}

// via names a channel for a sentence: " via slack".
func via(channel string) string {
	if channel == "" {
		return ""
	}
	return " via " + channel
}

// roleTitle names a responder's role for people.
func roleTitle(role string) string {
	switch role {
	case "incident_commander":
		return "Incident commander"
	case "dba":
		return "DBA"
	case "on_call":
		return "On-call"
	}
	return strings.ReplaceAll(role, "_", " ")
}

// Step names of decisions and the action kinds that go with them.
const (
	stepApplication = "application"
	stepDatabase    = "database"
)

func actionKind(step string) string { return "rollback." + step }

// lastDecision is the latest decision for step.
func lastDecision(r incident.Record, step string) *incident.Decision {
	for i := len(r.Decisions) - 1; i >= 0; i-- {
		if r.Decisions[i].Step == step {
			return &r.Decisions[i]
		}
	}
	return nil
}

// sortedActions are r's actions by start time, then key.
func sortedActions(r incident.Record) []*incident.Action {
	out := make([]*incident.Action, 0, len(r.Actions))
	for k, a := range r.Actions {
		if a == nil {
			continue
		}
		if a.Key == "" {
			c := *a
			c.Key = k
			a = &c
		}
		out = append(out, a)
	}
	slices.SortStableFunc(out, func(a, b *incident.Action) int {
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

// lastAction is the latest action of kind.
func lastAction(r incident.Record, kind string) *incident.Action {
	var last *incident.Action
	for _, a := range sortedActions(r) {
		if a.Kind == kind {
			last = a
		}
	}
	return last
}

// byText is "alice" or "policy auto_after (automatic)".
func byText(by string) string {
	if p, ok := strings.CutPrefix(by, "policy:"); ok {
		return "policy " + p + " (automatic)"
	}
	return orUnknown(by)
}

// clock formats t relative to ref: the time of day when both fall on the
// same date in loc, the full time otherwise.
func clock(t, ref time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "an unrecorded time"
	}
	ty, tm, td := t.In(loc).Date()
	ry, rm, rd := ref.In(loc).Date()
	if !ref.IsZero() && ty == ry && tm == rm && td == rd {
		return t.In(loc).Format("15:04:05 MST")
	}
	return fmtTime(t, loc)
}

// stepSentence says what was decided and done for one step, "" when
// nothing was.
func stepSentence(r incident.Record, step string, loc *time.Location) string {
	ref := r.DetectedAt
	what := "the rollback"
	if r.Baseline != "" && step == stepApplication {
		what += " to " + r.Baseline
	}
	if step == stepDatabase {
		what = "the database step"
	}
	var parts []string
	if d := lastDecision(r, step); d != nil {
		if d.Approved {
			parts = append(parts, what+" was approved by "+byText(d.By)+" at "+clock(d.At, ref, loc))
		} else {
			s := what + " was denied (no-go) by " + byText(d.By) + " at " + clock(d.At, ref, loc)
			if d.Reason != "" {
				s += ": “" + oneLine(d.Reason) + "”"
			}
			parts = append(parts, s)
		}
	}
	if a := lastAction(r, actionKind(step)); a != nil {
		s := "the " + step + " rollback through " + orUnknown(a.Executor)
		switch a.State {
		case incident.ActionSucceeded:
			s += " succeeded"
			if a.FinishedAt != nil {
				s += " at " + clock(*a.FinishedAt, ref, loc)
				if !a.StartedAt.IsZero() {
					s += " after " + fmtDur(a.FinishedAt.Sub(a.StartedAt))
				}
			}
		case incident.ActionFailed:
			s += " failed"
			if a.FinishedAt != nil {
				s += " at " + clock(*a.FinishedAt, ref, loc)
			}
			if a.Error != "" {
				s += ": " + firstLine(a.Error)
			}
		default:
			s += " started at " + clock(a.StartedAt, ref, loc) + " and has not finished"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return ""
	}
	return capitalize(strings.Join(parts, "; ")) + "."
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// outcomeSentence says where the incident ended up.
func outcomeSentence(r incident.Record, loc *time.Location) string {
	ref := r.DetectedAt
	switch r.State {
	case incident.Resolved:
		s := ""
		if r.RecoveredAt != nil {
			s = "Recovery was verified at " + clock(*r.RecoveredAt, ref, loc) + " and the incident"
		} else {
			s = "The incident"
		}
		if r.ResolvedAt == nil {
			return s + " is resolved."
		}
		s += " was resolved at " + clock(*r.ResolvedAt, ref, loc)
		if d := span(r.DetectedAt, r.ResolvedAt); d != nil {
			s += ", " + fmtDur(*d) + " after detection"
		}
		return s + "."
	case incident.Held:
		return "No rollback was performed: " + versionOf(r) + " is still serving and the incident stays open until a human acts."
	case incident.Failed:
		return "The rollback failed: " + versionOf(r) + " may still be serving and the incident needs a human."
	case incident.Escalated:
		return "The service did not recover after the rollback; the incident was escalated to a human and stays open."
	case incident.Closed:
		s := "The incident was closed without resolution"
		if r.ClosedAt != nil {
			s += " at " + clock(*r.ClosedAt, ref, loc)
		}
		for i := len(r.Timeline) - 1; i >= 0; i-- {
			if e := r.Timeline[i]; e.Type == event.IncidentClosed {
				s += ": " + strings.TrimSuffix(oneLine(e.Message), ".")
				break
			}
		}
		return s + "."
	}
	return "The incident is still in progress (state " + orUnknown(r.State.String()) + ")."
}

// Summary is the report's summary paragraph as plain text: what happened,
// why (the trigger's evidence), what was done and the outcome. Times are
// shown in loc (UTC when nil).
func Summary(r incident.Record, loc *time.Location) string {
	if loc == nil {
		loc = time.UTC
	}
	var s []string
	if r.Shadowed() {
		s = append(s, ShadowHeading+" "+ShadowText(r, loc))
	}
	detected := clock(r.DetectedAt, r.DeployedAt, loc)
	if r.DeployedAt.IsZero() {
		s = append(s, fmt.Sprintf("%s was detected as bad at %s.", versionOf(r), fmtTime(r.DetectedAt, loc)))
	} else {
		d := "a while"
		if p := span(r.DeployedAt, &r.DetectedAt); p != nil {
			d = fmtDur(*p)
		}
		s = append(s, fmt.Sprintf("%s was deployed at %s and detected as bad at %s, %s later.",
			versionOf(r), fmtTime(r.DeployedAt, loc), detected, d))
	}
	s = append(s, triggerSentence(r))
	for _, step := range []string{stepApplication, stepDatabase} {
		if t := stepSentence(r, step, loc); t != "" {
			s = append(s, t)
		}
	}
	if lastDecision(r, stepApplication) == nil && lastAction(r, actionKind(stepApplication)) == nil &&
		(r.State == incident.Detected || r.State == incident.AwaitingApproval) {
		s = append(s, "The rollback awaits a go/no-go decision.")
	}
	s = append(s, outcomeSentence(r, loc))
	return strings.Join(s, " ")
}
