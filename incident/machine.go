package incident

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/verify"
)

// Errors Next returns for an event it does not accept in the record's state.
var (
	// ErrNoDecision: the incident is not waiting for a go/no-go.
	ErrNoDecision = errors.New("incident is not waiting for a decision")
	// ErrInvalidVote: a vote without who, or a no-go without why.
	ErrInvalidVote = approval.ErrInvalidVote
	// ErrBusy: a rollback step is running; the incident cannot be closed
	// or superseded until it ends.
	ErrBusy = errors.New("a rollback step is running")
	// ErrFinished: the incident is resolved or closed.
	ErrFinished = errors.New("incident is over")
	// ErrShadow: the incident is in shadow mode; nobody is asked for a
	// go/no-go and no executor runs.
	ErrShadow = errors.New("incident is in shadow mode")
	// ErrIgnored: the event does not apply in this state (a late timer, a
	// probe after resolution, a trigger already on the timeline); the
	// driver drops it.
	ErrIgnored = errors.New("event does not apply")
)

// Event is an input of the state machine: something that happened to the
// incident, or the outcome of one of its effects.
type Event interface{ isEvent() }

// Declare opens an incident; it applies only to the zero Record.
type Declare struct {
	ID                int64
	Service, Severity string
	Version, Baseline string
	BaselineWhy       string
	Trigger           string
	Evidence          Evidence
	// Changes are what the bad version and the baseline deployed.
	Changes    []rollout.Change
	DeployedAt time.Time
	// References are the baseline's values by trigger name.
	References map[string]float64
	// RequestedBy, when set, is the person who declared the incident to
	// roll the service back, for a reason no trigger shows; Trigger and
	// Evidence are then empty. The request is the go for the application
	// step.
	RequestedBy *Requester
	// Team are the service's responders, assembled on the incident.
	Team []Responder
	// Mode is the service's mode now (empty: enforce). A person's request
	// (RequestedBy) is always enforced.
	Mode Mode
}

// Restart is Guardian (re)starting with the incident in its store.
type Restart struct{}

// Tick is a time the machine asked for (WakeAt) coming.
type Tick struct{}

// Voted is a person's go or no-go.
type Voted struct{ Vote approval.Vote }

// StepEnded is the outcome of a rollback step (RunStep or AwaitStep).
type StepEnded struct {
	Key     string
	Outcome ActionState // ActionSucceeded, ActionFailed or ActionUnknown
	Output  string
	// Err says what failed, or why the outcome is unknown.
	Err string
}

// Probed is one recovery probe's result.
type Probed struct{ Result verify.Result }

// Reported is the outcome of WriteReport.
type Reported struct {
	Result ReportResult
	// Err, when set, says why the report could not be written; it is
	// tried again later.
	Err string
}

// ReportResult is what writing the report produced.
type ReportResult struct {
	Impact   Impact
	Markdown string
	JSON     string
	// HTML is the HTML report's path; empty when none was written.
	HTML string
	// Invite is the post-mortem invite's path; empty when none was
	// scheduled. PostmortemAt is its start, PostmortemZone its time zone.
	Invite         string
	PostmortemAt   time.Time
	PostmortemZone string
}

// AlsoFired is another trigger firing for the same deploy.
type AlsoFired struct{ Trigger, Summary string }

// Superseded is a newer deploy of the service firing a trigger.
type Superseded struct {
	Version    string
	DeployedAt time.Time
}

// CloseRequested is a person closing the incident.
type CloseRequested struct{ By, Channel, Reason string }

// Observed is what a shadow incident's observation found of its service:
// the deploy its watch judges now (Watching false when no watch is open)
// and the versions serving, most traffic first (none when unknown).
type Observed struct {
	Watching   bool
	Version    string
	DeployedAt time.Time
	Serving    []string
}

// DeliveryFailed is a notification of the incident given up by the outbox.
type DeliveryFailed struct{ Receiver, Type, Err string }

func (DeliveryFailed) isEvent() {}

func (Declare) isEvent()        {}
func (Restart) isEvent()        {}
func (Tick) isEvent()           {}
func (Voted) isEvent()          {}
func (StepEnded) isEvent()      {}
func (Probed) isEvent()         {}
func (Reported) isEvent()       {}
func (AlsoFired) isEvent()      {}
func (Superseded) isEvent()     {}
func (CloseRequested) isEvent() {}
func (Observed) isEvent()       {}

// Effect is a side effect the driver runs after the transition is saved.
// Each carries its idempotency key: the driver never runs two effects of
// one key at once.
type Effect interface{ Key() string }

// Publish hands the timeline entries not yet published to the outbox.
type Publish struct{ Incident int64 }

// AskApproval asks the go/no-go channels that must be asked (approval.Gate).
type AskApproval struct{ Request approval.Request }

// WakeAt asks for a Tick at At.
type WakeAt struct {
	Incident int64
	At       time.Time
}

// RunStep runs a rollback step's executor; its outcome comes back as StepEnded.
type RunStep struct{ Step, StepKey string }

// AwaitStep waits for a step found running after a restart (it is never run
// a second time); its outcome comes back as StepEnded.
type AwaitStep struct{ Step, StepKey string }

// Probe probes recovery at At; the result comes back as Probed.
type Probe struct {
	Incident int64
	At       time.Time
}

// Observe looks, at At, at the watch and the versions of a shadow
// incident's service; the result comes back as Observed.
type Observe struct {
	Incident int64
	At       time.Time
}

// WriteReport measures the impact and writes the report (and, when
// Postmortem, the post-mortem invite), no earlier than At; the outcome
// comes back as Reported.
type WriteReport struct {
	ReportKey  string
	Postmortem bool
	At         time.Time
}

// Key implements Effect.
func (p Publish) Key() string { return prefix(p.Incident) + "publish" }

// Key implements Effect.
func (a AskApproval) Key() string { return prefix(a.Request.Incident) + "approval." + a.Request.Step }

// Key implements Effect.
func (w WakeAt) Key() string { return prefix(w.Incident) + "wake" }

// Key implements Effect.
func (r RunStep) Key() string { return r.StepKey }

// Key implements Effect.
func (a AwaitStep) Key() string { return a.StepKey }

// Key implements Effect.
func (p Probe) Key() string { return prefix(p.Incident) + "probe" }

// Key implements Effect.
func (o Observe) Key() string { return prefix(o.Incident) + "observe" }

// Key implements Effect.
func (w WriteReport) Key() string { return w.ReportKey }

func prefix(id int64) string { return fmt.Sprintf("incident-%d/", id) }

// Rules are what the machine needs of the service's configuration now.
type Rules struct {
	Approval approval.Policy
	// StableFor is how long recovery must hold; RecoveryTimeout how long
	// to wait for it; ProbeInterval how often to probe.
	StableFor, RecoveryTimeout, ProbeInterval time.Duration
	// Application and Database name the executors of the two steps; empty
	// means none is configured.
	Application, Database string
}

// Next is the incident state machine: it applies ev to r at now under the
// service's rules and returns the new record and the effects to run once it
// is saved. It is pure: no I/O, no clock, no timers. An event the state does
// not accept returns an error wrapping one of ErrNoDecision, ErrInvalidVote,
// ErrShadow, ErrBusy, ErrFinished or ErrIgnored, and r unchanged.
func Next(r Record, ev Event, rules Rules, now time.Time) (Record, []Effect, error) {
	if _, ok := ev.(Declare); !ok && r.ID == 0 {
		return r, nil, fmt.Errorf("%w: no incident", ErrIgnored)
	}
	n := r.clone()
	n.clockWentBack(now)
	var (
		effs []Effect
		err  error
	)
	switch ev := ev.(type) {
	case Declare:
		effs, err = n.declare(ev, now)
	case Restart:
		effs = n.restart(rules, now)
	case Tick:
		effs, err = n.tick(rules, now)
	case Voted:
		effs, err = n.vote(ev.Vote, rules, now)
	case StepEnded:
		effs, err = n.stepEnded(ev, rules, now)
	case Probed:
		effs, err = n.probed(ev.Result, rules, now)
	case Reported:
		effs, err = n.reported(ev, now)
	case AlsoFired:
		effs, err = n.alsoFired(ev, now)
	case Observed:
		effs, err = n.observed(ev, rules, now)
	case Superseded:
		effs, err = n.close(now, "guardian", "", fmt.Sprintf("superseded by the deploy of %s %s at %s: closed without rollback; the new deploy is judged on its own",
			r.Service, ev.Version, ev.DeployedAt.UTC().Format(time.RFC3339)), map[string]string{"superseded_by": ev.Version})
	case DeliveryFailed:
		n.add(now, event.NotificationFailed, "guardian", fmt.Sprintf("the %s notification to %s was given up: %s", ev.Type, ev.Receiver, ev.Err),
			map[string]string{"receiver": ev.Receiver, "event": ev.Type})
	case CloseRequested:
		if ev.Reason == "" || ev.By == "" {
			return r, nil, fmt.Errorf("%w: closing needs who and why", ErrInvalidVote)
		}
		effs, err = n.close(now, ev.By, ev.Channel, fmt.Sprintf("closed by %s: %s", ev.By, ev.Reason), map[string]string{"reason": ev.Reason})
	default:
		err = fmt.Errorf("%w: unknown event %T", ErrIgnored, ev)
	}
	if err != nil {
		return r, nil, err
	}
	if n.Published < len(n.Timeline) && (len(n.Timeline) > len(r.Timeline) || isRestart(ev)) {
		effs = append([]Effect{Publish{Incident: n.ID}}, effs...)
	}
	return n, effs, nil
}

func isRestart(ev Event) bool { _, ok := ev.(Restart); return ok }

// clone copies r deeply enough that Next never changes its argument.
func (r Record) clone() Record {
	n := r
	n.Timeline = slices.Clone(r.Timeline)
	n.Decisions = slices.Clone(r.Decisions)
	n.References = maps.Clone(r.References)
	if r.Actions != nil {
		n.Actions = make(map[string]*Action, len(r.Actions))
		for k, a := range r.Actions {
			c := *a
			n.Actions[k] = &c
		}
	}
	return n
}

func (r *Record) declare(d Declare, now time.Time) ([]Effect, error) {
	if r.ID != 0 {
		return nil, fmt.Errorf("%w: incident %d is already declared", ErrIgnored, r.ID)
	}
	mode := ModeEnforce
	if d.Mode == ModeShadow && d.RequestedBy == nil {
		mode = ModeShadow
	}
	*r = Record{
		ID: d.ID, Service: d.Service, Severity: d.Severity, State: Detected, Mode: mode,
		Version: d.Version, Baseline: d.Baseline, BaselineWhy: d.BaselineWhy, Trigger: d.Trigger, Evidence: d.Evidence,
		Changes: d.Changes, DeployedAt: d.DeployedAt, DetectedAt: now, Step: executor.StepApplication, References: d.References,
		Team: d.Team,
	}
	if h := d.RequestedBy; h != nil {
		if err := h.validate(); err != nil {
			*r = Record{}
			return nil, err
		}
		r.RequestedBy = h
		r.Evidence = Evidence{Summary: fmt.Sprintf("rollback requested by %s: %s", h.By, h.Reason)}
		data := map[string]string{"baseline": d.Baseline, "reason": h.Reason, "requested_by": h.By}
		if h.Channel != "" {
			data["channel"] = h.Channel
		}
		r.add(now, event.IncidentDeclared, h.By, fmt.Sprintf("%s declared for %s by %s: roll back %s %s → %s: %s",
			d.Severity, d.Service, h.By, d.Service, d.Version, d.Baseline, h.Reason), data)
		return []Effect{WakeAt{Incident: r.ID, At: now}}, nil
	}
	r.Impact.PeakValue = d.Evidence.Value
	r.Impact.BaselineValue = d.Evidence.BaselineValue
	data := map[string]string{"trigger": d.Trigger, "baseline": d.Baseline}
	msg := fmt.Sprintf("%s declared for %s: %s %s is bad (%s)", d.Severity, d.Service, d.Service, d.Version, d.Evidence.Summary)
	if d.BaselineWhy != "" {
		msg += fmt.Sprintf("; baseline %s: %s", d.Baseline, d.BaselineWhy)
		data["baseline_why"] = d.BaselineWhy
	}
	if mode == ModeShadow {
		msg += "; shadow mode: Guardian records what it would do and does not act"
	}
	r.add(now, event.IncidentDeclared, "guardian", msg, data)
	// The go/no-go is decided in the next transition, so that a declared
	// incident is saved before anything is asked or run.
	return []Effect{WakeAt{Incident: r.ID, At: now}}, nil
}

// clockWentBack moves to now the start of every wait that began after now:
// the wall clock was stepped back (across a restart; while Guardian runs
// its steady clock ignores steps). Without it an approval's auto_after, the
// stable period and the recovery timeout would last as much longer as the
// clock went back; with it they restart, which errs toward waiting.
func (r *Record) clockWentBack(now time.Time) {
	for _, t := range []**time.Time{&r.ApprovalRequestedAt, &r.VerifyStartedAt, &r.RecoveredSince} {
		if *t != nil && (*t).After(now) {
			*t = &now
		}
	}
}

// request is the go/no-go wanted for step.
func (r *Record) request(step string, now time.Time) approval.Request {
	at := now
	if r.ApprovalRequestedAt != nil {
		at = *r.ApprovalRequestedAt
	}
	return approval.Request{Incident: r.ID, Service: r.Service, Version: r.Version, Baseline: r.Baseline, Step: step,
		Trigger: r.Trigger, Value: r.Evidence.Value, Summary: r.Evidence.Summary, RequestedAt: at}
}

// decide applies the approval policy to the application step (from
// Detected or AwaitingApproval).
func (r *Record) decide(rules Rules, now time.Time) []Effect {
	if r.Shadowed() {
		if r.State == Detected {
			return r.shadowDecision(rules, now)
		}
		return nil
	}
	if h := r.RequestedBy; h != nil && r.State == Detected {
		// The person who asked for the rollback gave the go.
		r.setState(AwaitingApproval)
		return r.grant(executor.StepApplication, h.By, h.Channel, "rollback requested: "+h.Reason, rules, now)
	}
	req := r.request(executor.StepApplication, now)
	d := approval.Decide(rules.Approval, req, now)
	switch d.Outcome {
	case approval.Go:
		r.setState(AwaitingApproval)
		return r.grant(executor.StepApplication, d.By, approval.ChannelPolicy, d.Reason, rules, now)
	case approval.NoGo:
		r.setState(AwaitingApproval)
		r.hold(d.By, approval.ChannelPolicy, d.Reason,
			fmt.Sprintf("no answer within %s: holding %s on %s, watching goes on", rules.Approval.Timeout, r.Service, r.Version), now)
		return nil
	}
	var effs []Effect
	if r.State == Detected {
		r.setState(AwaitingApproval)
		r.ApprovalRequestedAt = &now
		req.RequestedAt = now
		msg := fmt.Sprintf("go/no-go: roll back %s %s → %s? %s. Approve: guardian approve %d; deny: guardian deny %d --reason ...",
			r.Service, r.Version, r.Baseline, r.Evidence.Summary, r.ID, r.ID)
		if rules.Approval.Mode == approval.AutoAfter {
			msg += fmt.Sprintf(" Without an answer within %s: %s.", rules.Approval.Timeout, onTimeout(rules.Approval))
		}
		r.add(now, event.ApprovalRequested, "guardian", msg, map[string]string{"step": executor.StepApplication, "mode": string(mode(rules.Approval))})
		effs = append(effs, AskApproval{Request: req})
		d = approval.Decide(rules.Approval, req, now)
	}
	if !d.Deadline.IsZero() {
		effs = append(effs, WakeAt{Incident: r.ID, At: d.Deadline})
	}
	return effs
}

func mode(p approval.Policy) approval.Mode {
	if p.Mode == "" {
		return approval.Manual
	}
	return p.Mode
}

func onTimeout(p approval.Policy) approval.OnTimeout {
	if p.OnTimeout == "" {
		return approval.TimeoutRollback
	}
	return p.OnTimeout
}

// grant records a go for step and starts it.
func (r *Record) grant(step, by, channel, reason string, rules Rules, now time.Time) []Effect {
	r.Decisions = append(r.Decisions, Decision{Step: step, Approved: true, By: by, Channel: channel, Reason: reason, At: now})
	data := map[string]string{"step": step}
	if reason != "" {
		data["reason"] = reason
	}
	if step == executor.StepApplication {
		r.ApprovedAt = &now
		r.setState(RollingBack)
		r.add(now, event.ApprovalGranted, by, fmt.Sprintf("go: roll back %s %s → %s%s", r.Service, r.Version, r.Baseline, because(reason)), data)
	} else {
		r.setState(DBRollingBack)
		r.add(now, event.ApprovalGranted, by, fmt.Sprintf("go for the database step of %s%s", r.Service, because(reason)), data)
	}
	return r.startStep(step, rules, now)
}

// hold records a no-go for the application step.
func (r *Record) hold(by, channel, reason, msg string, now time.Time) {
	r.Decisions = append(r.Decisions, Decision{Step: executor.StepApplication, By: by, Channel: channel, Reason: reason, At: now})
	r.setState(Held)
	data := map[string]string{"step": executor.StepApplication}
	if reason != "" {
		data["reason"] = reason
	}
	r.add(now, event.ApprovalDenied, by, msg, data)
}

// startStep saves the step as started and asks for its executor to run.
func (r *Record) startStep(step string, rules Rules, now time.Time) []Effect {
	name := rules.Application
	if step == executor.StepDatabase {
		name = rules.Database
	}
	key := executor.IdempotencyKey(r.ID, step)
	r.Step = step
	if a, ok := r.Actions[key]; ok && a.State == ActionStarted {
		// Never run a step twice: wait for the one that runs.
		return []Effect{AwaitStep{Step: step, StepKey: key}}
	}
	if name == "" {
		r.setState(Failed)
		r.add(now, event.RollbackFailed, "guardian", fmt.Sprintf("no %s rollback is configured for %s", step, r.Service), nil)
		r.add(now, event.IncidentEscalated, "guardian", "rollback impossible: a human must take over", nil)
		return nil
	}
	if r.Actions == nil {
		r.Actions = map[string]*Action{}
	}
	r.Actions[key] = &Action{Key: key, Kind: "rollback." + step, Executor: name, State: ActionStarted, StartedAt: now}
	if step == executor.StepApplication {
		r.RollbackStartedAt = &now
	}
	r.add(now, event.RollbackStarted, "guardian", fmt.Sprintf("rolling back %s (%s) %s → %s with %s", r.Service, step, r.Version, r.Baseline, name),
		map[string]string{"key": key})
	return []Effect{RunStep{Step: step, StepKey: key}}
}

func (r *Record) restart(rules Rules, now time.Time) []Effect {
	switch r.State {
	case Detected, AwaitingApproval:
		// Channels asked before the restart are not asked again.
		return r.decide(rules, now)
	case RollingBack, DBRollingBack:
		step := executor.StepApplication
		if r.State == DBRollingBack {
			step = executor.StepDatabase
		}
		key := executor.IdempotencyKey(r.ID, step)
		a, ok := r.Actions[key]
		switch {
		case !ok:
			return r.startStep(step, rules, now)
		case a.State == ActionStarted:
			r.add(now, event.RollbackResumed, "guardian",
				fmt.Sprintf("Guardian restarted while the %s rollback was running; it is not run a second time: waiting for it to end", step),
				map[string]string{"key": key})
			return []Effect{AwaitStep{Step: step, StepKey: key}}
		case a.State == ActionFailed:
			r.setState(Failed)
			return nil
		}
		r.Step = step
		return r.verifying(now)
	case Verifying:
		if r.VerifyStartedAt == nil {
			r.VerifyStartedAt = &now
		}
		return []Effect{Probe{Incident: r.ID, At: now}}
	case Shadow:
		// The watch is restored as Guardian starts: look one interval later.
		return []Effect{Observe{Incident: r.ID, At: now.Add(probeInterval(rules))}}
	case Resolved, Closed:
		if r.Report == nil {
			return []Effect{r.writeReport(now)}
		}
	}
	return nil
}

func (r *Record) tick(rules Rules, now time.Time) ([]Effect, error) {
	if r.State != Detected && r.State != AwaitingApproval {
		return nil, fmt.Errorf("%w: tick while %s", ErrIgnored, r.State)
	}
	return r.decide(rules, now), nil
}

func (r *Record) vote(v approval.Vote, rules Rules, now time.Time) ([]Effect, error) {
	if err := v.Validate(); err != nil {
		return nil, err
	}
	if r.Shadowed() {
		return nil, fmt.Errorf("%w: incident %d of %s is in shadow mode: Guardian does not act on it, so there is no go/no-go to give", ErrShadow, r.ID, r.Service)
	}
	switch {
	case r.State == AwaitingApproval && v.Approve, r.State == Held && v.Approve:
		return r.grant(executor.StepApplication, v.By, v.Channel, v.Reason, rules, now), nil
	case r.State == AwaitingApproval:
		r.hold(v.By, v.Channel, v.Reason, fmt.Sprintf("no-go: %s stays on %s, watching goes on%s", r.Service, r.Version, because(v.Reason)), now)
		return nil, nil
	case r.State == DBAwaitingApproval && v.Approve:
		return r.grant(executor.StepDatabase, v.By, v.Channel, v.Reason, rules, now), nil
	case r.State == DBAwaitingApproval:
		r.Decisions = append(r.Decisions, Decision{Step: executor.StepDatabase, By: v.By, Channel: v.Channel, Reason: v.Reason, At: now})
		r.setState(Escalated)
		r.add(now, event.ApprovalDenied, v.By, fmt.Sprintf("no-go for the database step%s", because(v.Reason)),
			map[string]string{"step": executor.StepDatabase, "reason": v.Reason})
		r.add(now, event.IncidentEscalated, "guardian", fmt.Sprintf("%s not recovered and the database step was refused: a human must take over", r.Service), nil)
		return nil, nil
	}
	return nil, fmt.Errorf("%w: incident %d is %s", ErrNoDecision, r.ID, r.State)
}

func (r *Record) stepEnded(e StepEnded, rules Rules, now time.Time) ([]Effect, error) {
	a, ok := r.Actions[e.Key]
	if !r.State.acting() || !ok || a.State != ActionStarted {
		return nil, fmt.Errorf("%w: step %s ended while %s", ErrIgnored, e.Key, r.State)
	}
	step := r.Step
	a.FinishedAt, a.Output = &now, e.Output
	data := map[string]string{"key": e.Key}
	switch e.Outcome {
	case ActionSucceeded:
		a.State = ActionSucceeded
		r.add(now, event.RollbackSucceeded, "guardian", fmt.Sprintf("%s rollback of %s done in %s; verifying recovery",
			step, r.Service, now.Sub(a.StartedAt).Round(time.Millisecond)), data)
	case ActionUnknown:
		a.State, a.Error = ActionUnknown, e.Err
		r.add(now, event.RollbackUnknown, "guardian", fmt.Sprintf("the %s rollback of %s ended while Guardian was not watching it; its outcome is unknown (%s): verifying whether it took effect",
			step, r.Service, e.Err), data)
	default:
		a.State, a.Error = ActionFailed, e.Err
		r.setState(Failed)
		r.add(now, event.RollbackFailed, "guardian", fmt.Sprintf("the %s rollback of %s failed: %s", step, r.Service, e.Err), data)
		r.add(now, event.IncidentEscalated, "guardian", fmt.Sprintf("%s is still on %s: a human must take over", r.Service, r.Version), nil)
		return nil, nil
	}
	if step == executor.StepApplication {
		r.RollbackDoneAt = &now
	}
	return r.verifying(now), nil
}

// verifying starts verification of the step just run.
func (r *Record) verifying(now time.Time) []Effect {
	r.setState(Verifying)
	r.VerifyStartedAt = &now
	r.RecoveredSince, r.Recovering, r.VerifyStatus = nil, false, ""
	return []Effect{Probe{Incident: r.ID, At: now}}
}

func (r *Record) probed(res verify.Result, rules Rules, now time.Time) ([]Effect, error) {
	if r.State != Verifying {
		return nil, fmt.Errorf("%w: probe while %s", ErrIgnored, r.State)
	}
	// Progress: the verdict flipped, or what it waits for changed.
	if res.Recovered != r.Recovering || res.Status != r.VerifyStatus {
		msg := "values back toward baseline: " + res.Summary()
		switch {
		case !res.Recovered && r.Recovering:
			msg = "not recovered again: " + res.Summary()
		case !res.Recovered:
			msg = "not recovered yet: " + res.Summary()
		}
		r.Recovering, r.VerifyStatus = res.Recovered, res.Status
		r.add(now, event.RecoveryProgress, "guardian", msg, nil)
	}
	if res.Running != "" {
		r.Running = res.Running
	}
	if !res.Recovered {
		r.RecoveredSince = nil
	} else if r.RecoveredSince == nil {
		r.RecoveredSince = &now
	}
	if res.Recovered && now.Sub(*r.RecoveredSince) >= rules.StableFor {
		return r.resolve(now, fmt.Sprintf("%s recovered on %s: %s", r.Service, r.running(), res.Summary())), nil
	}
	start := now
	if r.VerifyStartedAt != nil {
		start = *r.VerifyStartedAt
	}
	if !now.Before(start.Add(rules.RecoveryTimeout)) {
		if !res.Bad && res.SmokePassed() {
			// Too little traffic to judge the triggers, but nothing says the
			// service is still bad and the smoke checks pass.
			return r.resolve(now, fmt.Sprintf("%s recovered on %s within %s, judged without enough traffic for the triggers: every smoke check passes and nothing shows it still bad (%s)",
				r.Service, r.running(), rules.RecoveryTimeout, res.Summary())), nil
		}
		return r.notRecovered(res, rules, now), nil
	}
	return []Effect{Probe{Incident: r.ID, At: now.Add(probeInterval(rules))}}, nil
}

func probeInterval(rules Rules) time.Duration {
	if rules.ProbeInterval <= 0 {
		return 5 * time.Second
	}
	return rules.ProbeInterval
}

// resolve confirms the recovery and resolves the incident.
func (r *Record) resolve(now time.Time, confirmed string) []Effect {
	r.RecoveredAt = &now
	r.add(now, event.RecoveryConfirmed, "guardian", confirmed, nil)
	r.setState(Resolved)
	r.ResolvedAt = &now
	r.add(now, event.IncidentResolved, "guardian", fmt.Sprintf("incident #%d resolved: %s rolled back %s → %s and stable", r.ID, r.Service, r.Version, r.running()), nil)
	return []Effect{r.writeReport(now)}
}

// running is the version serving after the rollback, as verification saw
// it (the baseline until it says).
func (r *Record) running() string {
	if r.Running != "" {
		return r.Running
	}
	return r.Baseline
}

func (r *Record) notRecovered(res verify.Result, rules Rules, now time.Time) []Effect {
	why := res.Summary()
	if !res.Bad {
		why = "no evidence of recovery: too little traffic for the triggers and no smoke check passing (" + why + ")"
	}
	r.add(now, event.RecoveryFailed, "guardian", fmt.Sprintf("%s not recovered within %s: %s", r.Service, rules.RecoveryTimeout, why), nil)
	if r.Step == executor.StepApplication && rules.Database != "" {
		r.setState(DBAwaitingApproval)
		r.ApprovalRequestedAt = &now
		r.add(now, event.ApprovalRequested, "guardian",
			fmt.Sprintf("the application rollback alone did not restore %s: run the database step (%s)? It is high-risk and never automatic. Approve: guardian approve %d",
				r.Service, rules.Database, r.ID),
			map[string]string{"step": executor.StepDatabase})
		return []Effect{AskApproval{Request: r.request(executor.StepDatabase, now)}}
	}
	r.setState(Escalated)
	r.add(now, event.IncidentEscalated, "guardian", fmt.Sprintf("%s did not recover after the rollback: a human must take over", r.Service), nil)
	return nil
}

// writeReport is the report effect; a post-mortem is scheduled when a
// rollback step ran.
func (r *Record) writeReport(at time.Time) WriteReport {
	return WriteReport{ReportKey: ReportKey(r.ID), Postmortem: len(r.Actions) > 0, At: at}
}

// reportRetry spaces attempts to write a report that failed.
const reportRetry = time.Minute

func (r *Record) reported(e Reported, now time.Time) ([]Effect, error) {
	if r.State.Open() {
		return nil, fmt.Errorf("%w: report while %s", ErrIgnored, r.State)
	}
	if r.Report != nil {
		return nil, fmt.Errorf("%w: report already written", ErrIgnored)
	}
	if e.Err != "" {
		w := r.writeReport(now.Add(reportRetry))
		return []Effect{w}, nil
	}
	res := e.Result
	r.Report = &ReportFiles{Key: ReportKey(r.ID), WrittenAt: now, Markdown: res.Markdown, JSON: res.JSON, HTML: res.HTML, Invite: res.Invite}
	r.Impact = res.Impact
	for _, en := range ReportEntries(*r, res, now) {
		r.add(en.At, en.Type, en.Actor, en.Message, en.Data)
	}
	return nil, nil
}

// ReportEntries are the timeline entries that record a written report (and
// invite): the report itself shows them, so its writer needs them first.
func ReportEntries(r Record, res ReportResult, now time.Time) []Entry {
	out := []Entry{{At: now, Type: event.ReportWritten, Actor: "guardian", Message: "incident report written to " + res.Markdown,
		Data: map[string]string{"markdown": res.Markdown, "json": res.JSON}}}
	if res.HTML != "" {
		out[0].Data["html"] = res.HTML
	}
	if res.Invite != "" {
		loc, err := time.LoadLocation(res.PostmortemZone)
		if err != nil {
			loc = time.UTC
		}
		out = append(out, Entry{At: now, Type: event.PostmortemScheduled, Actor: "guardian",
			Message: fmt.Sprintf("post-mortem of incident #%d scheduled for %s (%s), invite %s", r.ID,
				res.PostmortemAt.In(loc).Format("Mon 2 Jan 2006 15:04 MST"), res.PostmortemZone, res.Invite),
			Data: map[string]string{"start": res.PostmortemAt.UTC().Format(time.RFC3339), "invite": res.Invite, "report": res.Markdown}})
	}
	return out
}

func (r *Record) alsoFired(e AlsoFired, now time.Time) ([]Effect, error) {
	if !r.State.Open() {
		return nil, fmt.Errorf("%w: incident is %s", ErrFinished, r.State)
	}
	if e.Trigger == r.Trigger {
		return nil, fmt.Errorf("%w: %s is the incident's trigger", ErrIgnored, e.Trigger)
	}
	for _, en := range r.Timeline {
		if en.Type == event.TriggerFired && en.Data["trigger"] == e.Trigger {
			return nil, fmt.Errorf("%w: %s already on the timeline", ErrIgnored, e.Trigger)
		}
	}
	r.add(now, event.TriggerFired, "guardian", fmt.Sprintf("%s also firing: %s", e.Trigger, e.Summary), map[string]string{"trigger": e.Trigger})
	return nil, nil
}

// close ends an open incident without resolution.
func (r *Record) close(now time.Time, by, channel, msg string, data map[string]string) ([]Effect, error) {
	switch {
	case !r.State.Open():
		return nil, fmt.Errorf("%w: incident %d is %s", ErrFinished, r.ID, r.State)
	case r.State.acting():
		return nil, fmt.Errorf("%w: incident %d is %s", ErrBusy, r.ID, r.State)
	}
	if channel != "" {
		data["channel"] = channel
	}
	r.setState(Closed)
	r.ClosedAt = &now
	r.add(now, event.IncidentClosed, by, msg, data)
	return []Effect{r.writeReport(now)}, nil
}

func because(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

func (r *Record) setState(s State) { r.State = s }

// shadowDecision records, for an incident in shadow mode, what Guardian
// would have done under the service's rules now, and starts observing.
// Nobody is asked and nothing runs.
func (r *Record) shadowDecision(rules Rules, now time.Time) []Effect {
	r.setState(Shadow)
	how := "at once (approval policy: " + string(mode(rules.Approval)) + ")"
	if d := approval.Decide(rules.Approval, r.request(executor.StepApplication, now), now); d.Outcome != approval.Go {
		how = "after a go/no-go (approval policy: " + string(mode(rules.Approval)) + ")"
	}
	with := "with " + rules.Application
	if rules.Application == "" {
		with = "but no rollback.application is configured, so it would have failed"
	}
	data := map[string]string{"decision": "rollback", "version": r.Version, "baseline": r.Baseline, "approval": string(mode(rules.Approval))}
	if rules.Application != "" {
		data["executor"] = rules.Application
	}
	r.add(now, event.ShadowDecision, "guardian", fmt.Sprintf("Guardian would have rolled back %s %s → %s at %s, %s, %s; in shadow mode it did nothing and observes until the watch ends or the version changes",
		r.Service, r.Version, r.Baseline, now.UTC().Format(time.RFC3339), how, with), data)
	return []Effect{Observe{Incident: r.ID, At: now.Add(probeInterval(rules))}}
}

// observed closes a shadow incident once its deploy is no longer watched or
// no longer serves, and otherwise observes again one interval later.
func (r *Record) observed(o Observed, rules Rules, now time.Time) ([]Effect, error) {
	if r.State != Shadow {
		return nil, fmt.Errorf("%w: observation while %s", ErrIgnored, r.State)
	}
	var msg string
	data := map[string]string{}
	switch {
	case !o.Watching:
		msg = fmt.Sprintf("the watch of %s %s ended", r.Service, r.Version)
		data["reason"] = "watch_ended"
	case o.Version != r.Version || !o.DeployedAt.Equal(r.DeployedAt):
		msg = fmt.Sprintf("%s %s was deployed at %s, replacing %s", r.Service, o.Version, o.DeployedAt.UTC().Format(time.RFC3339), r.Version)
		data["reason"], data["version"] = "version_changed", o.Version
	case len(o.Serving) > 0 && !slices.Contains(o.Serving, r.Version):
		msg = fmt.Sprintf("%s no longer serves %s (serving %s)", r.Service, r.Version, strings.Join(o.Serving, ", "))
		data["reason"], data["version"] = "version_changed", o.Serving[0]
	default:
		return []Effect{Observe{Incident: r.ID, At: now.Add(probeInterval(rules))}}, nil
	}
	return r.close(now, "guardian", "", fmt.Sprintf("shadow incident closed: %s; Guardian did not act", msg), data)
}
