package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/rollback-guardian/guardian/incident"
)

//go:embed html.tmpl
var htmlTemplate string

var htmlTmpl = template.Must(template.New("report").Parse(htmlTemplate))

// HTML renders r as a self-contained HTML page: the same sections as the
// Markdown report, plus charts (opts.Charts, see Charts) of the triggers
// over the incident with its markers. Styles and charts are inline, there
// are no scripts, and the page loads nothing: it opens without a network.
// The only links are those a person gave (a change's URL).
func HTML(r incident.Record, opts Options) ([]byte, error) {
	if err := checkRecord(r); err != nil {
		return nil, err
	}
	v := htmlView(r, opts)
	var b bytes.Buffer
	if err := htmlTmpl.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("rendering the HTML report of incident %d: %w", r.ID, err)
	}
	return b.Bytes(), nil
}

type htmlFact struct{ Label, Value string }

type htmlChange struct {
	Label string
	Known bool
	Facts []fact
}

type htmlChart struct {
	Trigger string
	Title   string
	Firing  bool
	SVG     template.HTML
	Note    string
	Queries []string
	Step    string
}

type htmlQuery struct{ Label, Query string }

type htmlDecision struct{ Step, Verdict, By, At, Reason string }

type htmlAction struct {
	Title, State string
	Facts        []htmlFact
	Error        string
	Output       string
	OutputNote   string
}

type htmlEntry struct{ At, Offset, Type, Actor, Message string }

type htmlReport struct {
	Title       string
	Facts       []htmlFact
	Team        []htmlFact
	Summary     string
	Shadow      string
	Changes     []htmlChange
	NotTold     string
	ChangeTitle string
	Charts      []htmlChart
	ChartsNote  string
	Intervals   []htmlFact
	ImpactFacts []htmlFact
	ImpactAt    string
	ImpactQs    []string
	Evidence    *htmlEvidence
	Decisions   []htmlDecision
	Actions     []htmlAction
	Zone        string
	Timeline    []htmlEntry
	Resolution  string
	FollowUps   []string
	Generated   string
}

type htmlEvidence struct {
	Trigger, Version, Summary string
	Facts                     []htmlFact
	Conditions                []string
	Queries                   []htmlQuery
}

func htmlView(r incident.Record, opts Options) htmlReport {
	loc := opts.location()
	at := func(t time.Time) string {
		s := fmtTime(t, loc)
		if !t.IsZero() && !r.DetectedAt.IsZero() {
			s += " (detection " + fmtOffset(t.Sub(r.DetectedAt)) + ")"
		}
		return s
	}
	v := htmlReport{
		Title:       Title(r),
		Summary:     Summary(r, loc),
		Shadow:      ShadowText(r, loc),
		ChangeTitle: WhatChangedTitle,
		Zone:        loc.String(),
		Resolution:  resolutionText(r, loc),
		Generated:   fmtTime(opts.now(), loc),
	}
	// Facts, as in the Markdown header.
	add := func(fs *[]htmlFact, label, value string) { *fs = append(*fs, htmlFact{label, value}) }
	add(&v.Facts, "Severity", orUnknown(r.Severity))
	add(&v.Facts, "State", orUnknown(r.State.String()))
	if r.Shadowed() {
		add(&v.Facts, "Mode", "shadow")
	}
	add(&v.Facts, "Service", r.Service)
	add(&v.Facts, "Version", orUnknown(r.Version)+" (bad) → "+orUnknown(r.Baseline)+" (baseline)")
	if h := r.RequestedBy; h != nil {
		add(&v.Facts, "Requested by", h.By+via(h.Channel)+": "+oneLine(h.Reason))
	} else {
		add(&v.Facts, "Trigger", orUnknown(r.Trigger))
	}
	add(&v.Facts, "Deployed", fmtTime(r.DeployedAt, loc))
	add(&v.Facts, "Detected", fmtTime(r.DetectedAt, loc))
	if r.ResolvedAt != nil {
		add(&v.Facts, "Resolved", fmtTime(*r.ResolvedAt, loc))
	} else {
		add(&v.Facts, "Resolved", "not reached")
	}
	for _, p := range r.Team {
		s := p.Name
		if p.Email != "" {
			s += " <" + p.Email + ">"
		}
		add(&v.Team, roleTitle(p.Role), s)
	}

	// What changed.
	vcs := WhatChanged(r)
	if anyKnown(vcs) {
		for _, c := range vcs {
			v.Changes = append(v.Changes, htmlChange{Label: c.label(), Known: c.Known, Facts: c.facts()})
		}
	} else {
		v.NotTold = NotToldText
	}

	// Charts.
	for _, c := range opts.Charts {
		title := c.Trigger
		if c.Firing {
			title += " (fired)"
		}
		v.Charts = append(v.Charts, htmlChart{
			Trigger: c.Trigger, Title: title, Firing: c.Firing, SVG: template.HTML(c.SVG()), //nolint:gosec // chart.SVG escapes every text it draws
			Note: c.Note, Queries: c.Queries, Step: fmtDur(c.Step),
		})
	}
	if len(v.Charts) == 0 {
		v.ChartsNote = opts.ChartsNote
		if v.ChartsNote == "" {
			v.ChartsNote = "No chart: the metric source was not queried for this report."
		}
	}

	// Impact.
	iv := IntervalsOf(r)
	deployMissing := "not reached"
	if r.DeployedAt.IsZero() {
		deployMissing = "unknown (deploy time not recorded)"
	}
	row := func(label string, d *time.Duration, missing string) {
		s := missing
		if d != nil {
			s = fmtDur(*d)
		}
		add(&v.Intervals, label, s)
	}
	row("Deploy → detection", iv.DeployToDetection, deployMissing)
	row("Detection → approval", iv.DetectionToApproval, "not reached")
	row("Approval → rollback done", iv.ApprovalToRollbackDone, "not reached")
	row("Rollback (started → done)", iv.Rollback, "not reached")
	row("Rollback done → recovery", iv.RollbackDoneToRecovery, "not reached")
	row("Time to resolve (detection → resolved)", iv.TimeToResolve, "not reached")
	row("Impact window (deploy → recovery)", iv.DeployToRecovery, deployMissing)
	peakLabel, peakText := peakLine(r)
	add(&v.ImpactFacts, peakLabel, peakText)
	label, n := requestsEstimate(r)
	add(&v.ImpactFacts, label, n)
	if imp := r.Impact; len(imp.Queries) > 0 {
		if imp.MeasuredAt != nil {
			v.ImpactAt = fmtTime(*imp.MeasuredAt, loc)
		}
		v.ImpactQs = imp.Queries
	}

	// Evidence.
	if r.RequestedBy == nil {
		ev := r.Evidence
		e := &htmlEvidence{Trigger: orUnknown(r.Trigger), Version: versionOf(r), Summary: oneLine(ev.Summary), Conditions: ev.Conditions}
		value := valueLabel(ev)
		if x, ok := finite(ev.Value); ok {
			add(&e.Facts, value, fmtNum(x))
		} else {
			add(&e.Facts, value, "not recorded")
		}
		if le := ev.Latency; le != nil {
			add(&e.Facts, "Latency test", latencyTestText(le))
			for _, g := range le.Guards {
				add(&e.Facts, "Guarded bound", latencyGuardText(g))
			}
		}
		if b, ok := finite(ev.BaselineValue); ok {
			add(&e.Facts, "Baseline value ("+orUnknown(r.Baseline)+")", fmtNum(b))
		}
		if ev.BaselineMode != "" {
			add(&e.Facts, "Baseline mode", baselineModeText(ev.BaselineMode))
		}
		if x, ok := finite(ev.SampleSize); ok {
			add(&e.Facts, "Sample size", fmtNum(x)+" requests")
		}
		for _, q := range EvidenceQueries(r) {
			e.Queries = append(e.Queries, htmlQuery{Label: queryLabel(q, r, loc), Query: q.Query})
		}
		v.Evidence = e
	}

	// Go/no-go.
	for _, d := range r.Decisions {
		hd := htmlDecision{Step: stepTitle(d.Step), Verdict: "no-go", At: at(d.At), Reason: d.Reason}
		if d.Approved {
			hd.Verdict = "go"
		}
		if p, ok := strings.CutPrefix(d.By, "policy:"); ok {
			hd.By = "policy " + p + " (automatic, no human decision)"
		} else {
			hd.By = orUnknown(d.By)
		}
		v.Decisions = append(v.Decisions, hd)
	}

	// Actions.
	for _, a := range sortedActions(r) {
		ha := htmlAction{Title: actionTitle(a.Kind), State: orUnknown(string(a.State)), Error: a.Error}
		add(&ha.Facts, "Key", a.Key)
		add(&ha.Facts, "Executor", orUnknown(a.Executor))
		add(&ha.Facts, "Started", at(a.StartedAt))
		if a.FinishedAt != nil {
			add(&ha.Facts, "Finished", at(*a.FinishedAt))
			if d := span(a.StartedAt, a.FinishedAt); d != nil {
				add(&ha.Facts, "Duration", fmtDur(*d))
			}
		} else {
			add(&ha.Facts, "Finished", "not reached")
		}
		if a.Output != "" {
			out, omitted := tail(a.Output, maxOutput)
			ha.Output = out
			if omitted > 0 {
				ha.OutputNote = fmt.Sprintf("last %d bytes; %d bytes omitted, see the JSON report", len(out), omitted)
			}
		}
		v.Actions = append(v.Actions, ha)
	}

	// Timeline.
	entries := slices.Clone(r.Timeline)
	slices.SortStableFunc(entries, func(a, b incident.Entry) int { return a.At.Compare(b.At) })
	ref := r.DetectedAt
	if ref.IsZero() && len(entries) > 0 {
		ref = entries[0].At
	}
	for _, e := range entries {
		msg := e.Message
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(e.Data)) {
			if x := e.Data[k]; x == "" || !strings.Contains(e.Message, x) {
				kv = append(kv, k+"="+x)
			}
		}
		if len(kv) > 0 {
			if msg != "" {
				msg += "\n"
			}
			msg += strings.Join(kv, ", ")
		}
		if e.Count > 1 {
			msg += fmt.Sprintf(" (%d times", e.Count)
			if e.LastAt != nil {
				msg += ", last at " + fmtTime(*e.LastAt, loc)
			}
			msg += ")"
		}
		off := ""
		if !e.At.IsZero() {
			off = fmtOffset(e.At.Sub(ref))
		}
		v.Timeline = append(v.Timeline, htmlEntry{At: fmtTime(e.At, loc), Offset: off, Type: string(e.Type), Actor: e.Actor, Message: msg})
	}

	// Follow-ups.
	if pm := opts.Postmortem; pm != nil {
		v.FollowUps = append(v.FollowUps, postmortemLine(pm, loc))
	} else if r.State == incident.Resolved {
		v.FollowUps = append(v.FollowUps, "Post-mortem: not scheduled yet.")
	} else {
		v.FollowUps = append(v.FollowUps, "Post-mortem: to be scheduled once the incident is closed.")
	}
	v.FollowUps = append(v.FollowUps, "Preliminary root cause: to be determined in the post-mortem.")
	if r.State.Open() {
		v.FollowUps = append(v.FollowUps, "The incident is still open (state "+orUnknown(r.State.String())+"): a human must act on it and close it.")
	}
	return v
}

// peakLine is the impact's peak: its label and text, as the Markdown
// report shows them.
func peakLine(r incident.Record) (string, string) {
	label := "Peak value"
	peak, hasPeak := finite(r.Impact.PeakValue)
	if !hasPeak {
		label = "Value at detection"
		peak, hasPeak = finite(r.Evidence.Value)
	}
	base, hasBase := finite(r.Impact.BaselineValue)
	if !hasBase {
		base, hasBase = finite(r.Evidence.BaselineValue)
	}
	switch {
	case hasPeak && hasBase:
		s := fmtNum(peak) + " vs baseline " + fmtNum(base)
		if base > 0 {
			s += " (" + fmtNum(peak/base) + "x)"
		}
		return label, s
	case hasPeak:
		return label, fmtNum(peak) + " (baseline unknown)"
	}
	return "Peak value", "unknown"
}
