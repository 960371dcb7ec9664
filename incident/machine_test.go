package incident

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/verify"
)

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

const (
	appKey = "incident-7/rollback.application"
	dbKey  = "incident-7/rollback.database"
)

func fptr(f float64) *float64     { return &f }
func tptr(t time.Time) *time.Time { return &t }

// rules are a manual policy with both steps configured.
func rules() Rules {
	return Rules{Approval: approval.Policy{Mode: approval.Manual}, StableFor: time.Minute, RecoveryTimeout: 15 * time.Minute,
		ProbeInterval: 5 * time.Second, Application: "command rollback.sh", Database: "command migrate"}
}

// declared is incident 7 as Declare leaves it.
func declared(t *testing.T) Record {
	t.Helper()
	r, effs, err := Next(Record{}, Declare{ID: 7, Service: "checkout", Severity: "SEV-1", Version: "v2", Baseline: "v1",
		Trigger: "error-rate", Evidence: Evidence{Summary: "error-rate 0.2 > 0.05", Value: fptr(0.2), BaselineValue: fptr(0.004)},
		DeployedAt: t0.Add(-time.Minute), References: map[string]float64{"error-rate": 0.004}}, rules(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != Detected || !reflect.DeepEqual(effs, []Effect{Publish{Incident: 7}, WakeAt{Incident: 7, At: t0}}) {
		t.Fatalf("declare: %s %#v", r.State, effs)
	}
	r.Published = len(r.Timeline)
	return r
}

// inState returns incident 7 in state s, with what that state implies
// (a started action while rolling back, and so on), every entry published.
func inState(t *testing.T, s State) Record {
	r := declared(t)
	started := func(key, kind string) {
		r.Actions = map[string]*Action{key: {Key: key, Kind: kind, Executor: "x", State: ActionStarted, StartedAt: t0}}
	}
	switch s {
	case AwaitingApproval, Held:
		r.ApprovalRequestedAt = tptr(t0)
	case RollingBack:
		started(appKey, "rollback.application")
	case Verifying:
		r.VerifyStartedAt = tptr(t0)
	case DBAwaitingApproval:
		r.ApprovalRequestedAt = tptr(t0)
	case DBRollingBack:
		started(dbKey, "rollback.database")
		r.Step = "database"
	case Resolved:
		r.ResolvedAt = tptr(t0)
	case Closed:
		r.ClosedAt = tptr(t0)
	case Shadow:
		r.Mode = ModeShadow
	}
	r.State = s
	return r
}

// sample events, by name.
func events() map[string]Event {
	return map[string]Event{
		"declare":      Declare{ID: 8, Service: "checkout", Version: "v3"},
		"restart":      Restart{},
		"tick":         Tick{},
		"go":           Voted{Vote: approval.Vote{Incident: 7, Approve: true, By: "token:alice", Channel: approval.ChannelAPI}},
		"no-go":        Voted{Vote: approval.Vote{Incident: 7, By: "token:bob", Channel: approval.ChannelCLI, Reason: "load test"}},
		"step-ok":      StepEnded{Outcome: ActionSucceeded, Output: "ok"},
		"step-failed":  StepEnded{Outcome: ActionFailed, Err: "exit status 3"},
		"step-unknown": StepEnded{Outcome: ActionUnknown, Err: "Guardian restarted"},
		"recovered":    Probed{Result: verify.Result{Recovered: true, Checks: []verify.Check{{Trigger: "error-rate", Why: "0.004 within 10% of baseline 0.004"}}}},
		"not-recovered": Probed{Result: verify.Result{Recovered: false, Checks: []verify.Check{
			{Trigger: "error-rate", Why: "0.2 not back: baseline 0.004"}}}},
		"reported":      Reported{Result: ReportResult{Markdown: "/r/incident-7.md", JSON: "/r/incident-7.json"}},
		"report-failed": Reported{Err: "disk full"},
		"also-fired":    AlsoFired{Trigger: "p99-latency", Summary: "p99 1.2s > 0.5s"},
		"superseded":    Superseded{Version: "v3", DeployedAt: t0.Add(time.Hour)},
		"close":         CloseRequested{By: "token:carol", Channel: approval.ChannelCLI, Reason: "fixed forward"},
		"observed":      Observed{Watching: true, Version: "v2", DeployedAt: t0.Add(-time.Minute), Serving: []string{"v2", "v1"}},
		"watch-ended":   Observed{Serving: []string{"v2", "v1"}},
	}
}

// outcome is what Next should do: the next state and the effects' types,
// or the error.
type outcome struct {
	state State
	effs  string // effect type names, comma-separated
	err   error
}

func ok(s State, effs string) outcome { return outcome{state: s, effs: effs} }
func no(err error) outcome            { return outcome{err: err} }

// table is every state × every event: what the machine does.
func table() map[State]map[string]outcome {
	ignoredSteps := map[string]outcome{"step-ok": no(ErrIgnored), "step-failed": no(ErrIgnored), "step-unknown": no(ErrIgnored)}
	ignoredProbes := map[string]outcome{"recovered": no(ErrIgnored), "not-recovered": no(ErrIgnored)}
	ignoredReports := map[string]outcome{"reported": no(ErrIgnored), "report-failed": no(ErrIgnored)}
	noVotes := map[string]outcome{"go": no(ErrNoDecision), "no-go": no(ErrNoDecision)}
	closable := func(s State) map[string]outcome {
		return map[string]outcome{"also-fired": ok(s, "Publish"), "superseded": ok(Closed, "Publish,WriteReport"), "close": ok(Closed, "Publish,WriteReport")}
	}
	merge := func(ms ...map[string]outcome) map[string]outcome {
		out := map[string]outcome{"declare": no(ErrIgnored), "observed": no(ErrIgnored), "watch-ended": no(ErrIgnored)}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	finished := func(s State) map[string]outcome {
		return merge(ignoredSteps, ignoredProbes, noVotes, map[string]outcome{
			"restart": ok(s, "WriteReport"), "tick": no(ErrIgnored),
			"reported": ok(s, "Publish"), "report-failed": ok(s, "WriteReport"),
			"also-fired": no(ErrFinished), "superseded": no(ErrFinished), "close": no(ErrFinished),
		})
	}
	acting := func(s State) map[string]outcome {
		return merge(ignoredProbes, ignoredReports, noVotes, map[string]outcome{
			"restart": ok(s, "Publish,AwaitStep"), "tick": no(ErrIgnored),
			"step-ok": ok(Verifying, "Publish,Probe"), "step-failed": ok(Failed, "Publish"), "step-unknown": ok(Verifying, "Publish,Probe"),
			"also-fired": ok(s, "Publish"), "superseded": no(ErrBusy), "close": no(ErrBusy),
		})
	}
	parked := func(s State) map[string]outcome {
		return merge(ignoredSteps, ignoredProbes, ignoredReports, noVotes, closable(s), map[string]outcome{
			"restart": ok(s, ""), "tick": no(ErrIgnored),
		})
	}
	return map[State]map[string]outcome{
		Detected: merge(ignoredSteps, ignoredProbes, ignoredReports, noVotes, closable(Detected), map[string]outcome{
			"restart": ok(AwaitingApproval, "Publish,AskApproval"), "tick": ok(AwaitingApproval, "Publish,AskApproval"),
		}),
		AwaitingApproval: merge(ignoredSteps, ignoredProbes, ignoredReports, closable(AwaitingApproval), map[string]outcome{
			"restart": ok(AwaitingApproval, ""), "tick": ok(AwaitingApproval, ""),
			"go": ok(RollingBack, "Publish,RunStep"), "no-go": ok(Held, "Publish"),
		}),
		Shadow: merge(ignoredSteps, ignoredProbes, ignoredReports, closable(Shadow), map[string]outcome{
			"restart": ok(Shadow, "Observe"), "tick": no(ErrIgnored), "go": no(ErrShadow), "no-go": no(ErrShadow),
			"observed": ok(Shadow, "Observe"), "watch-ended": ok(Closed, "Publish,WriteReport"),
		}),
		Held:        merge(parked(Held), map[string]outcome{"go": ok(RollingBack, "Publish,RunStep")}),
		RollingBack: acting(RollingBack),
		Verifying: merge(ignoredSteps, ignoredReports, noVotes, closable(Verifying), map[string]outcome{
			"restart": ok(Verifying, "Probe"), "tick": no(ErrIgnored),
			"recovered": ok(Verifying, "Publish,Probe"), "not-recovered": ok(Verifying, "Probe"),
		}),
		DBAwaitingApproval: merge(parked(DBAwaitingApproval), map[string]outcome{
			"go": ok(DBRollingBack, "Publish,RunStep"), "no-go": ok(Escalated, "Publish"),
		}),
		DBRollingBack: acting(DBRollingBack),
		Escalated:     parked(Escalated),
		Failed:        parked(Failed),
		Resolved:      finished(Resolved),
		Closed:        finished(Closed),
	}
}

func effectNames(effs []Effect) string {
	var names []string
	for _, e := range effs {
		names = append(names, strings.TrimPrefix(fmt.Sprintf("%T", e), "incident."))
	}
	return strings.Join(names, ",")
}

// TestTransitionTable checks Next for every state and every event: the
// next state and effects of the accepted ones, the error of the rejected
// ones, and that a rejected event leaves the record as it was.
func TestTransitionTable(t *testing.T) {
	tab := table()
	evs := events()
	for _, s := range States() {
		row, listed := tab[s]
		if !listed {
			t.Errorf("state %s missing from the table", s)
			continue
		}
		names := make([]string, 0, len(evs))
		for name := range evs {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			want, listed := row[name]
			if !listed {
				t.Errorf("%s × %s missing from the table", s, name)
				continue
			}
			t.Run(string(s)+"/"+name, func(t *testing.T) {
				r := inState(t, s)
				ev := evs[name]
				if se, isStep := ev.(StepEnded); isStep {
					se.Key = appKey
					if s == DBRollingBack {
						se.Key = dbKey
					}
					ev = se
				}
				before := r.clone()
				got, effs, err := Next(r, ev, rules(), t0.Add(time.Second))
				if want.err != nil {
					if !errors.Is(err, want.err) {
						t.Fatalf("error %v, want %v", err, want.err)
					}
					if !reflect.DeepEqual(got, before) || effs != nil {
						t.Fatalf("a rejected event changed the record or asked for effects: %s %#v", got.State, effs)
					}
					return
				}
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if got.State != want.state || effectNames(effs) != want.effs {
					t.Fatalf("→ %s [%s], want %s [%s]", got.State, effectNames(effs), want.state, want.effs)
				}
				if !reflect.DeepEqual(r, before) {
					t.Fatal("Next changed its argument")
				}
			})
		}
	}
}

func last(r Record) Entry { return r.Timeline[len(r.Timeline)-1] }

func types(r Record) []event.Type {
	var out []event.Type
	for _, e := range r.Timeline {
		out = append(out, e.Type)
	}
	return out
}

func wantTypes(t *testing.T, got []event.Type, want ...event.Type) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("timeline\n got %v\nwant %v", got, want)
	}
}

// step applies ev, failing the test on an error.
func step(t *testing.T, r Record, ev Event, rl Rules, now time.Time) (Record, []Effect) {
	t.Helper()
	n, effs, err := Next(r, ev, rl, now)
	if err != nil {
		t.Fatalf("%T: %v", ev, err)
	}
	return n, effs
}

func TestManualGoRollbackVerifyResolve(t *testing.T) {
	rl := rules()
	r := declared(t)
	r, effs := step(t, r, Tick{}, rl, t0)
	if r.State != AwaitingApproval || effectNames(effs) != "Publish,AskApproval" {
		t.Fatalf("%s %s", r.State, effectNames(effs))
	}
	req := effs[1].(AskApproval).Request
	if req.Incident != 7 || req.Step != "application" || req.Baseline != "v1" || !req.RequestedAt.Equal(t0) || *req.Value != 0.2 {
		t.Fatalf("request %+v", req)
	}
	if m := last(r).Message; !strings.Contains(m, "guardian approve 7") || !strings.Contains(m, "v2 → v1") {
		t.Fatalf("request message %q", m)
	}
	r, effs = step(t, r, Voted{Vote: approval.Vote{Incident: 7, Approve: true, By: "token:alice", Channel: "cli", Reason: "confirmed"}}, rl, t0.Add(time.Minute))
	if !reflect.DeepEqual(effs[1], RunStep{Step: "application", StepKey: appKey}) {
		t.Fatalf("effects %#v", effs)
	}
	if d := r.Decisions[0]; d.By != "token:alice" || d.Channel != "cli" || d.Reason != "confirmed" || !d.Approved || d.Step != "application" {
		t.Fatalf("decision %+v", d)
	}
	if a := r.Actions[appKey]; a == nil || a.State != ActionStarted || a.Executor != "command rollback.sh" || r.RollbackStartedAt == nil {
		t.Fatalf("action %+v", a)
	}
	r, effs = step(t, r, StepEnded{Key: appKey, Outcome: ActionSucceeded, Output: "done"}, rl, t0.Add(2*time.Minute))
	if r.State != Verifying || !reflect.DeepEqual(effs[1], Probe{Incident: 7, At: t0.Add(2 * time.Minute)}) || r.Actions[appKey].Output != "done" {
		t.Fatalf("%s %#v", r.State, effs)
	}
	rec := Probed{Result: verify.Result{Recovered: true}}
	// Recovered, but not yet for stable_for (1m): probe again in 5s.
	r, effs = step(t, r, rec, rl, t0.Add(3*time.Minute))
	if r.State != Verifying || !reflect.DeepEqual(effs, []Effect{Publish{Incident: 7}, Probe{Incident: 7, At: t0.Add(3*time.Minute + 5*time.Second)}}) {
		t.Fatalf("%s %#v", r.State, effs)
	}
	r, _ = step(t, r, rec, rl, t0.Add(3*time.Minute+30*time.Second))
	if r.State != Verifying {
		t.Fatalf("resolved after 30s of a 1m stable period")
	}
	r, effs = step(t, r, rec, rl, t0.Add(4*time.Minute))
	if r.State != Resolved || !reflect.DeepEqual(effs, []Effect{Publish{Incident: 7}, WriteReport{ReportKey: "incident-7/report", Postmortem: true, At: t0.Add(4 * time.Minute)}}) {
		t.Fatalf("%s %#v", r.State, effs)
	}
	wantTypes(t, types(r), event.IncidentDeclared, event.ApprovalRequested, event.ApprovalGranted, event.RollbackStarted,
		event.RollbackSucceeded, event.RecoveryProgress, event.RecoveryConfirmed, event.IncidentResolved)
	r, effs = step(t, r, Reported{Result: ReportResult{Markdown: "/r/incident-7.md", JSON: "/r/incident-7.json", Invite: "/r/incident-7-postmortem.ics",
		PostmortemAt: t0.Add(24 * time.Hour), PostmortemZone: "Europe/Berlin", Impact: Impact{FailedRequests: fptr(120)}}}, rl, t0.Add(5*time.Minute))
	if effectNames(effs) != "Publish" || *r.Impact.FailedRequests != 120 {
		t.Fatalf("%#v %+v", effs, r.Impact)
	}
	wantTypes(t, types(r)[8:], event.ReportWritten, event.PostmortemScheduled)
	if m := last(r).Message; !strings.Contains(m, "Thu 5 Mar 2026 11:00 CET (Europe/Berlin)") {
		t.Fatalf("invite message %q", m)
	}
	// Exactly once: a second report (after a restart that found it
	// unrecorded, say) is ignored.
	if _, _, err := Next(r, Reported{Result: ReportResult{Markdown: "x"}}, rl, t0.Add(6*time.Minute)); !errors.Is(err, ErrIgnored) {
		t.Fatalf("second report: %v", err)
	}
	r.Published = len(r.Timeline)
	if _, effs, _ := Next(r, Restart{}, rl, t0.Add(6*time.Minute)); effs != nil {
		t.Fatalf("restart after the report: %#v", effs)
	}
}

func TestPolicies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy approval.Policy
		state  State
		effs   string
		by     string
	}{
		{"auto rolls back at once", approval.Policy{Mode: approval.Auto}, RollingBack, "Publish,RunStep", "policy:auto"},
		{"skip above", approval.Policy{Mode: approval.Manual, SkipAbove: fptr(0.1)}, RollingBack, "Publish,RunStep", "policy:skip_approval_above"},
		{"manual asks", approval.Policy{Mode: approval.Manual}, AwaitingApproval, "Publish,AskApproval", ""},
		{"auto_after asks and wakes at the deadline", approval.Policy{Mode: approval.AutoAfter, Timeout: 5 * time.Minute}, AwaitingApproval, "Publish,AskApproval,WakeAt", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rl := rules()
			rl.Approval = tc.policy
			r, effs := step(t, declared(t), Tick{}, rl, t0)
			if r.State != tc.state || effectNames(effs) != tc.effs {
				t.Fatalf("%s [%s]", r.State, effectNames(effs))
			}
			if tc.by != "" {
				if r.Decisions[0].By != tc.by || r.Decisions[0].Channel != "policy" || slices.Contains(types(r), event.ApprovalRequested) {
					t.Fatalf("decisions %+v timeline %v", r.Decisions, types(r))
				}
			}
			if w, isWake := effs[len(effs)-1].(WakeAt); isWake && !w.At.Equal(t0.Add(5*time.Minute)) {
				t.Fatalf("wake at %v", w.At)
			}
		})
	}
}

func TestAutoAfterDeadline(t *testing.T) {
	for _, tc := range []struct {
		onTimeout approval.OnTimeout
		state     State
		entry     event.Type
	}{
		{approval.TimeoutRollback, RollingBack, event.RollbackStarted},
		{approval.TimeoutHold, Held, event.ApprovalDenied},
	} {
		t.Run(string(tc.onTimeout), func(t *testing.T) {
			rl := rules()
			rl.Approval = approval.Policy{Mode: approval.AutoAfter, Timeout: 5 * time.Minute, OnTimeout: tc.onTimeout}
			r, _ := step(t, declared(t), Tick{}, rl, t0)
			// An early tick (a timer that fired early, a restart) waits on.
			early, effs := step(t, r, Tick{}, rl, t0.Add(4*time.Minute))
			if early.State != AwaitingApproval || !reflect.DeepEqual(effs, []Effect{WakeAt{Incident: 7, At: t0.Add(5 * time.Minute)}}) {
				t.Fatalf("early tick: %s %#v", early.State, effs)
			}
			r, _ = step(t, r, Tick{}, rl, t0.Add(5*time.Minute))
			if r.State != tc.state || last(r).Type != tc.entry || r.Decisions[0].By != "policy:auto_after" {
				t.Fatalf("%s %v %+v", r.State, types(r), r.Decisions)
			}
		})
	}
}

func TestNoExecutorFails(t *testing.T) {
	rl := rules()
	rl.Application = ""
	r, _ := step(t, inState(t, AwaitingApproval), Voted{Vote: approval.Vote{Approve: true, By: "token:a"}}, rl, t0)
	if r.State != Failed || len(r.Actions) != 0 {
		t.Fatalf("%s %+v", r.State, r.Actions)
	}
	wantTypes(t, types(r)[1:], event.ApprovalGranted, event.RollbackFailed, event.IncidentEscalated)
}

func TestNotRecovered(t *testing.T) {
	bad := Probed{Result: verify.Result{Checks: []verify.Check{{Trigger: "error-rate", Why: "0.2 not back"}}}}
	t.Run("database step asked, never automatic", func(t *testing.T) {
		rl := rules()
		rl.Approval.Mode = approval.Auto
		r, effs := step(t, inState(t, Verifying), bad, rl, t0.Add(15*time.Minute))
		if r.State != DBAwaitingApproval || effectNames(effs) != "Publish,AskApproval" || effs[1].(AskApproval).Request.Step != "database" {
			t.Fatalf("%s %#v", r.State, effs)
		}
		// Under auto, even long after: still waiting for a person.
		if _, _, err := Next(r, Tick{}, rl, t0.Add(48*time.Hour)); !errors.Is(err, ErrIgnored) {
			t.Fatalf("tick: %v", err)
		}
		r, effs = step(t, r, Voted{Vote: approval.Vote{Approve: true, By: "token:dba", Reason: "restore schema"}}, rl, t0.Add(16*time.Minute))
		if r.State != DBRollingBack || !reflect.DeepEqual(effs[1], RunStep{Step: "database", StepKey: dbKey}) {
			t.Fatalf("%s %#v", r.State, effs)
		}
	})
	t.Run("escalated without a database step", func(t *testing.T) {
		rl := rules()
		rl.Database = ""
		r, _ := step(t, inState(t, Verifying), bad, rl, t0.Add(15*time.Minute))
		if r.State != Escalated {
			t.Fatalf("%s", r.State)
		}
		wantTypes(t, types(r)[1:], event.RecoveryFailed, event.IncidentEscalated)
	})
	t.Run("escalated after the database step", func(t *testing.T) {
		r := inState(t, Verifying)
		r.Step = "database"
		r, _ = step(t, r, bad, rules(), t0.Add(15*time.Minute))
		if r.State != Escalated {
			t.Fatalf("%s", r.State)
		}
	})
	t.Run("a break restarts the stable period", func(t *testing.T) {
		rl := rules()
		good := Probed{Result: verify.Result{Recovered: true}}
		r, _ := step(t, inState(t, Verifying), good, rl, t0.Add(time.Minute))
		r, _ = step(t, r, bad, rl, t0.Add(time.Minute+50*time.Second))
		r, _ = step(t, r, good, rl, t0.Add(2*time.Minute))
		r, _ = step(t, r, good, rl, t0.Add(2*time.Minute+59*time.Second))
		if r.State != Verifying || !r.RecoveredSince.Equal(t0.Add(2*time.Minute)) {
			t.Fatalf("%s since %v", r.State, r.RecoveredSince)
		}
		wantTypes(t, types(r)[1:], event.RecoveryProgress, event.RecoveryProgress, event.RecoveryProgress)
	})
}

// A restart finds a step started: it is never run again, it is awaited,
// and verification starts only when it ended.
func TestRestartAwaitsAStartedStep(t *testing.T) {
	rl := rules()
	r, effs := step(t, inState(t, RollingBack), Restart{}, rl, t0.Add(time.Minute))
	if !reflect.DeepEqual(effs, []Effect{Publish{Incident: 7}, AwaitStep{Step: "application", StepKey: appKey}}) || last(r).Type != event.RollbackResumed {
		t.Fatalf("%#v %v", effs, types(r))
	}
	r, effs = step(t, r, StepEnded{Key: appKey, Outcome: ActionUnknown, Err: "the command outlived Guardian"}, rl, t0.Add(2*time.Minute))
	if r.State != Verifying || r.Actions[appKey].State != ActionUnknown || !r.VerifyStartedAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("%s %+v", r.State, r.Actions[appKey])
	}
	if effectNames(effs) != "Publish,Probe" || !strings.Contains(last(r).Message, "outcome is unknown (the command outlived Guardian)") {
		t.Fatalf("%#v %q", effs, last(r).Message)
	}
	// A late outcome for the same step is ignored.
	if _, _, err := Next(r, StepEnded{Key: appKey, Outcome: ActionSucceeded}, rl, t0.Add(3*time.Minute)); !errors.Is(err, ErrIgnored) {
		t.Fatalf("late outcome: %v", err)
	}
	// Restarts in other cases.
	done := inState(t, RollingBack)
	done.Actions[appKey].State = ActionSucceeded
	if r, effs := step(t, done, Restart{}, rl, t0); r.State != Verifying || effectNames(effs) != "Probe" {
		t.Fatalf("succeeded step: %s %#v", r.State, effs)
	}
	failed := inState(t, RollingBack)
	failed.Actions[appKey].State = ActionFailed
	if r, _ := step(t, failed, Restart{}, rl, t0); r.State != Failed {
		t.Fatalf("failed step: %s", r.State)
	}
	none := inState(t, RollingBack)
	none.Actions = nil
	if r, effs := step(t, none, Restart{}, rl, t0); r.State != RollingBack || !reflect.DeepEqual(effs[len(effs)-1], RunStep{Step: "application", StepKey: appKey}) {
		t.Fatalf("never started: %s %#v", r.State, effs)
	}
}

// Events not yet published after a crash are handed over at the restart.
func TestRestartPublishesWhatWasLeft(t *testing.T) {
	r := inState(t, Escalated)
	r.Published = 0
	if _, effs := step(t, r, Restart{}, rules(), t0); !reflect.DeepEqual(effs, []Effect{Publish{Incident: 7}}) {
		t.Fatalf("%#v", effs)
	}
}

// A human closes; a newer deploy supersedes; the timeline stays bounded.
func TestCloseSupersedeAndBoundedTimeline(t *testing.T) {
	r := inState(t, Escalated)
	if _, _, err := Next(r, CloseRequested{By: "token:carol"}, rules(), t0); !errors.Is(err, ErrInvalidVote) {
		t.Fatalf("close without reason: %v", err)
	}
	c, effs := step(t, r, CloseRequested{By: "token:carol", Channel: "api", Reason: "fixed forward in v2.1"}, rules(), t0)
	if c.State != Closed || c.ClosedAt == nil || last(c).Actor != "token:carol" || last(c).Data["reason"] != "fixed forward in v2.1" || last(c).Data["channel"] != "api" {
		t.Fatalf("%s %+v", c.State, last(c))
	}
	// No rollback ran: a report, but no post-mortem.
	if w := effs[1].(WriteReport); w.Postmortem {
		t.Fatal("post-mortem scheduled for an incident without rollback")
	}
	s, _ := step(t, inState(t, Held), Superseded{Version: "v3", DeployedAt: t0.Add(time.Hour)}, rules(), t0)
	if s.State != Closed || last(s).Data["superseded_by"] != "v3" || !strings.Contains(last(s).Message, "superseded by the deploy of checkout v3") {
		t.Fatalf("%s %+v", s.State, last(s))
	}
	// Another trigger firing is recorded once, however often it fires.
	n := len(r.Timeline)
	r, _ = step(t, r, AlsoFired{Trigger: "p99-latency", Summary: "1s"}, rules(), t0)
	for range 50 {
		if _, _, err := Next(r, AlsoFired{Trigger: "p99-latency", Summary: "1.1s"}, rules(), t0); !errors.Is(err, ErrIgnored) {
			t.Fatalf("repeat: %v", err)
		}
	}
	if _, _, err := Next(r, AlsoFired{Trigger: "error-rate"}, rules(), t0); !errors.Is(err, ErrIgnored) {
		t.Fatalf("the incident's own trigger: %v", err)
	}
	if len(r.Timeline) != n+1 {
		t.Fatalf("%d entries", len(r.Timeline)-n)
	}
}

func TestRepeatsAreCounted(t *testing.T) {
	var r Record
	for i := range 3 {
		r.add(t0.Add(time.Duration(i)*time.Second), event.RecoveryProgress, "guardian", "same", nil)
	}
	r.add(t0.Add(time.Minute), event.RecoveryProgress, "guardian", "other", nil)
	if len(r.Timeline) != 2 || r.Timeline[0].Count != 3 || !r.Timeline[0].LastAt.Equal(t0.Add(2*time.Second)) || r.Timeline[1].Count != 0 {
		t.Fatalf("%+v", r.Timeline)
	}
}

func TestSequenceHasNoGaps(t *testing.T) {
	r := Record{ID: 3, Timeline: []Entry{{Type: event.IncidentDeclared}, {Type: event.RecoveryProgress}, {Type: event.RollbackResumed}, {Type: event.RecoveryProgress}, {Type: event.IncidentResolved}}}
	var got []int
	for i := range r.Timeline {
		got = append(got, r.Sequence(i))
	}
	if !slices.Equal(got, []int{1, 0, 2, 0, 3}) || EventID(3, r.Sequence(4)) != "evt_3_3" {
		t.Fatalf("sequence %v", got)
	}
}

// At the recovery timeout, the evidence decides: waiting for traffic with
// every smoke check passing resolves; waiting without any evidence, or
// evidence that the service is still bad, does not.
func TestRecoveryTimeoutWeighsTheEvidence(t *testing.T) {
	smokeOK := []verify.SmokeResult{{Name: "healthz", OK: true, Detail: "status 200"}}
	waiting := verify.Result{Running: "v1", Status: "error-rate: waiting for traffic",
		Checks: []verify.Check{{Trigger: "error-rate", Waiting: true, Why: "waiting for traffic: 40 of 100 requests since the rollback"}}}
	for _, tc := range []struct {
		name  string
		res   verify.Result
		state State
		text  string
	}{
		{"waiting, smoke passing", func() verify.Result { r := waiting; r.Smoke = smokeOK; return r }(), Resolved, "judged without enough traffic"},
		{"waiting, no smoke check", waiting, DBAwaitingApproval, "no evidence of recovery"},
		{"still bad", verify.Result{Bad: true, Status: "error-rate: not back", Checks: []verify.Check{{Trigger: "error-rate", Why: "0.2 not back"}}},
			DBAwaitingApproval, "0.2 not back"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := step(t, inState(t, Verifying), Probed{Result: tc.res}, rules(), t0.Add(15*time.Minute))
			if r.State != tc.state || !strings.Contains(strings.Join(messages(r), "\n"), tc.text) {
				t.Fatalf("%s %v", r.State, messages(r))
			}
		})
	}
}

// While it waits, verification says so on the timeline, once per change of
// what it waits for (not per new figure), and records the version it found
// serving.
func TestRecoveryProgress(t *testing.T) {
	rl := rules()
	r := inState(t, Verifying)
	probe := func(status, why string, recovered bool, at time.Duration) {
		t.Helper()
		r, _ = step(t, r, Probed{Result: verify.Result{Running: "1.4.0", Recovered: recovered, Status: status,
			Checks: []verify.Check{{Trigger: "error-rate", Waiting: !recovered, Why: why}}}}, rl, t0.Add(at))
	}
	probe("error-rate: waiting for a full window", "waiting 50s for a full 1m window", false, 10*time.Second)
	probe("error-rate: waiting for a full window", "waiting 40s for a full 1m window", false, 20*time.Second)
	probe("error-rate: waiting for traffic", "waiting for traffic: 71 of 100 requests since the rollback", false, time.Minute)
	probe("error-rate: waiting for traffic", "waiting for traffic: 80 of 100 requests since the rollback", false, 70*time.Second)
	probe("recovered on 1.4.0", "0.001 within 10% of baseline 0.004", true, 2*time.Minute)
	probe("recovered on 1.4.0", "0.001 within 10% of baseline 0.004", true, 3*time.Minute)
	if r.State != Resolved || r.Running != "1.4.0" {
		t.Fatalf("%s running %q", r.State, r.Running)
	}
	got := messages(r)[1:]
	if len(got) != 5 || !strings.Contains(got[0], "waiting 50s") || !strings.Contains(got[1], "71 of 100") ||
		!strings.Contains(got[2], "values back") || !strings.Contains(got[3], "recovered on 1.4.0") || !strings.Contains(got[4], "v2 → 1.4.0") {
		t.Fatalf("timeline:\n%s", strings.Join(got, "\n"))
	}
}

func messages(r Record) []string {
	var out []string
	for _, e := range r.Timeline {
		out = append(out, e.Message)
	}
	return out
}

// The wall clock stepped back an hour (seen across a restart): the waits
// that began "in the future" start again at the new now, so the approval
// timeout, the stable period and the recovery timeout last what they say
// rather than an hour more; and no wait ends early.
func TestClockSteppedBack(t *testing.T) {
	back := t0.Add(-time.Hour)
	t.Run("auto_after", func(t *testing.T) {
		rl := rules()
		rl.Approval = approval.Policy{Mode: approval.AutoAfter, Timeout: 5 * time.Minute}
		r, _ := step(t, declared(t), Tick{}, rl, t0)
		r, effs := step(t, r, Tick{}, rl, back)
		if r.State != AwaitingApproval || !reflect.DeepEqual(effs, []Effect{WakeAt{Incident: 7, At: back.Add(5 * time.Minute)}}) {
			t.Fatalf("after the step back: %s %#v", r.State, effs)
		}
		if r, _ = step(t, r, Tick{}, rl, back.Add(4*time.Minute)); r.State != AwaitingApproval {
			t.Fatalf("approved early: %s", r.State)
		}
		if r, _ = step(t, r, Tick{}, rl, back.Add(5*time.Minute)); r.State != RollingBack {
			t.Fatalf("not approved at the timeout: %s", r.State)
		}
	})
	t.Run("verifying", func(t *testing.T) {
		rl := rules()
		r := inState(t, Verifying)
		recovered := verify.Result{Recovered: true, Status: "ok"}
		r, _ = step(t, r, Probed{Result: recovered}, rl, t0.Add(30*time.Second))
		r, _ = step(t, r, Probed{Result: recovered}, rl, back)
		if r.State != Verifying || !r.RecoveredSince.Equal(back) || !r.VerifyStartedAt.Equal(back) {
			t.Fatalf("after the step back: %s, recovered since %v, verifying since %v", r.State, r.RecoveredSince, r.VerifyStartedAt)
		}
		if r, _ = step(t, r, Probed{Result: recovered}, rl, back.Add(rl.StableFor-time.Second)); r.State != Verifying {
			t.Fatalf("resolved before the stable period: %s", r.State)
		}
		if r, _ = step(t, r, Probed{Result: recovered}, rl, back.Add(rl.StableFor)); r.State != Resolved {
			t.Fatalf("not resolved after the stable period: %s", r.State)
		}
	})
}

// The steady clock follows the monotonic clock, not steps of the wall clock.
func TestSteadyClock(t *testing.T) {
	var elapsed time.Duration
	clock := steady(t0, func(time.Time) time.Duration { return elapsed })
	elapsed = 90 * time.Second
	if got := clock(); !got.Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("clock() = %s", got)
	}
	real := SteadyClock()
	a := real()
	if b := real(); b.Before(a) {
		t.Fatalf("the steady clock went back: %s after %s", b, a)
	}
}
