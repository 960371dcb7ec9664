package incident

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/verify"
)

// retryDelay spaces retries of a step that failed for a passing reason (the
// store, a missing service after a reload).
const retryDelay = 5 * time.Second

// drive moves incident id through its states until it needs a human, is
// resolved, or ctx ends.
func (m *Manager) drive(ctx context.Context, id int64) {
	log := m.log.With(zap.Int64("incident", id))
	for ctx.Err() == nil {
		rec, err := m.Get(ctx, id)
		if err != nil {
			log.Error("loading incident", zap.Error(err))
			sleep(ctx, retryDelay)
			continue
		}
		svc, ok := m.env.Service(rec.Service)
		if !ok {
			log.Warn("service no longer configured; the incident waits", zap.String("service", rec.Service))
			sleep(ctx, retryDelay)
			continue
		}
		switch rec.State {
		case Detected:
			err = m.requestApproval(ctx, rec, svc)
		case AwaitingApproval, DBAwaitingApproval:
			err = m.awaitDecision(ctx, rec, svc)
		case RollingBack, DBRollingBack:
			err = m.rollback(ctx, rec, svc)
		case Verifying:
			err = m.verify(ctx, rec, svc)
		default:
			// Held, escalated, failed or resolved: up to a human. Stop
			// driving unless a decision arrived meanwhile (Decide only
			// starts a driver when none runs).
			m.mu.Lock()
			if r, err := m.Get(ctx, id); err == nil && drivable(r.State) {
				m.mu.Unlock()
				continue
			}
			delete(m.driving, id)
			m.mu.Unlock()
			return
		}
		if err != nil && ctx.Err() == nil {
			log.Error("incident step failed; retrying", zap.String("state", rec.State.String()), zap.Error(err))
			sleep(ctx, retryDelay)
		}
	}
}

// drivable reports whether Guardian has work to do in state s.
func drivable(s State) bool {
	switch s {
	case Detected, AwaitingApproval, DBAwaitingApproval, RollingBack, DBRollingBack, Verifying:
		return true
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// transition updates the record under the lock and publishes what it added.
func (m *Manager) transition(ctx context.Context, id int64, f func(r *Record, now time.Time) error) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, err := m.updateLocked(ctx, id, func(r *Record) error { return f(r, m.now()) })
	if err != nil {
		return rec, err
	}
	m.publishLocked(ctx, id)
	return rec, nil
}

// errMoved means the record is no longer in the state a step expected
// (someone decided meanwhile); the driver re-reads it.
var errMoved = errors.New("incident moved on")

// requestApproval asks for the go/no-go, or decides by policy.
func (m *Manager) requestApproval(ctx context.Context, rec Record, svc Service) error {
	_, err := m.transition(ctx, rec.ID, func(r *Record, now time.Time) error {
		if r.State != Detected {
			return errUnchanged
		}
		a := svc.Approval
		value := r.Evidence.Value
		switch {
		case a.Mode == config.ApprovalAuto:
			r.setState(AwaitingApproval)
			return m.decideLocked(r, true, "policy:auto", "approval mode is auto", now)
		case a.SkipApprovalAbove != nil && value != nil && *value > *a.SkipApprovalAbove:
			r.setState(AwaitingApproval)
			return m.decideLocked(r, true, "policy:skip_approval_above",
				fmt.Sprintf("%s is %.4g, above skip_approval_above %.4g", r.Trigger, *value, *a.SkipApprovalAbove), now)
		}
		r.setState(AwaitingApproval)
		r.ApprovalRequestedAt = &now
		msg := fmt.Sprintf("go/no-go: roll back %s %s → %s? %s. Approve: guardian approve %d; deny: guardian deny %d --reason ...",
			r.Service, r.Version, r.Baseline, r.Evidence.Summary, r.ID, r.ID)
		if a.Mode == config.ApprovalAutoAfter {
			msg += fmt.Sprintf(" Without an answer within %s: %s.", a.Timeout, a.OnTimeout)
		}
		r.add(now, "approval.requested", "guardian", msg, map[string]string{"step": executor.StepApplication, "mode": a.Mode})
		return nil
	})
	return err
}

// awaitDecision waits for a human; with auto_after, the policy decides at
// the deadline (never for the database step).
func (m *Manager) awaitDecision(ctx context.Context, rec Record, svc Service) error {
	var deadline <-chan time.Time
	if rec.State == AwaitingApproval && svc.Approval.Mode == config.ApprovalAutoAfter && rec.ApprovalRequestedAt != nil {
		wait := rec.ApprovalRequestedAt.Add(time.Duration(svc.Approval.Timeout)).Sub(m.now())
		t := time.NewTimer(max(wait, 0))
		defer t.Stop()
		deadline = t.C
	}
	m.mu.Lock()
	wake := m.wake[rec.ID]
	m.mu.Unlock()
	select {
	case <-ctx.Done():
		return nil
	case <-wake:
		return nil
	case <-deadline:
	}
	_, err := m.transition(ctx, rec.ID, func(r *Record, now time.Time) error {
		if r.State != AwaitingApproval {
			return errUnchanged
		}
		if svc.Approval.OnTimeout == "hold" {
			r.Decisions = append(r.Decisions, Decision{Step: executor.StepApplication, By: "policy:auto_after", Reason: "no answer in time; on_timeout is hold", At: now})
			r.setState(Held)
			r.add(now, "approval.denied", "policy:auto_after", fmt.Sprintf("no answer within %s: holding %s on %s, watching goes on", svc.Approval.Timeout, r.Service, r.Version), nil)
			m.m.decisions.WithLabelValues(r.Service, executor.StepApplication, "denied", "policy").Inc()
			return nil
		}
		return m.decideLocked(r, true, "policy:auto_after", fmt.Sprintf("no answer within %s", svc.Approval.Timeout), now)
	})
	return err
}

// rollback runs the step's executor once: the action is saved as started
// before the executor runs, and a started action found after a restart is
// never run again; verification tells whether it took effect.
func (m *Manager) rollback(ctx context.Context, rec Record, svc Service) error {
	step := executor.StepApplication
	exe, name := svc.Application, svc.ApplicationName
	if rec.State == DBRollingBack {
		step, exe, name = executor.StepDatabase, svc.Database, svc.DatabaseName
	}
	key := executor.IdempotencyKey(rec.ID, step)
	if a, ok := rec.Actions[key]; ok {
		// A restart found this action: it ran, or may have.
		_, err := m.transition(ctx, rec.ID, func(r *Record, now time.Time) error {
			if r.State != rec.State {
				return errUnchanged
			}
			switch a.State {
			case ActionFailed:
				r.setState(Failed)
				return nil
			case ActionStarted:
				r.add(now, "rollback.resumed", "guardian",
					fmt.Sprintf("Guardian restarted while the %s rollback was running; it is not run a second time: verifying whether it took effect", step), map[string]string{"key": key})
			}
			r.Step = step
			r.setState(Verifying)
			r.VerifyStartedAt = &now
			return nil
		})
		return err
	}
	if exe == nil {
		_, err := m.transition(ctx, rec.ID, func(r *Record, now time.Time) error {
			r.setState(Failed)
			r.add(now, "rollback.failed", "guardian", fmt.Sprintf("no %s rollback is configured for %s", step, r.Service), nil)
			r.add(now, "incident.escalated", "guardian", "rollback impossible: a human must take over", nil)
			return nil
		})
		return err
	}
	started, err := m.transition(ctx, rec.ID, func(r *Record, now time.Time) error {
		if r.State != rec.State {
			return errMoved
		}
		if r.Actions == nil {
			r.Actions = map[string]*Action{}
		}
		r.Actions[key] = &Action{Key: key, Kind: "rollback." + step, Executor: name, State: ActionStarted, StartedAt: now}
		r.Step = step
		if step == executor.StepApplication {
			r.RollbackStartedAt = &now
		}
		r.add(now, "rollback.started", "guardian", fmt.Sprintf("rolling back %s (%s) %s → %s with %s", r.Service, step, r.Version, r.Baseline, name), map[string]string{"key": key})
		return nil
	})
	if errors.Is(err, errMoved) {
		return nil
	}
	if err != nil {
		return err
	}
	res, runErr := exe.Rollback(ctx, executor.Target{
		Incident: started.ID, Service: started.Service, Version: started.Version, Baseline: started.Baseline,
		Step: step, IdempotencyKey: key, Reason: started.Evidence.Summary,
	})
	if ctx.Err() != nil && runErr != nil {
		return nil // shutting down: the action stays started, and is not run again
	}
	result := "succeeded"
	if runErr != nil {
		result = "failed"
	}
	m.m.rollbacks.WithLabelValues(started.Service, step, result).Inc()
	_, err = m.transition(ctx, rec.ID, func(r *Record, now time.Time) error {
		a := r.Actions[key]
		a.FinishedAt, a.Output = &now, res.Output
		if runErr != nil {
			a.State, a.Error = ActionFailed, runErr.Error()
			r.setState(Failed)
			r.add(now, "rollback.failed", "guardian", fmt.Sprintf("the %s rollback of %s failed: %v", step, r.Service, runErr), map[string]string{"key": key})
			r.add(now, "incident.escalated", "guardian", fmt.Sprintf("%s is still on %s: a human must take over", r.Service, r.Version), nil)
			return nil
		}
		a.State = ActionSucceeded
		if step == executor.StepApplication {
			r.RollbackDoneAt = &now
		}
		r.add(now, "rollback.succeeded", "guardian", fmt.Sprintf("%s rollback of %s done in %s; verifying recovery", step, r.Service, now.Sub(a.StartedAt).Round(time.Millisecond)), map[string]string{"key": key})
		r.setState(Verifying)
		r.VerifyStartedAt = &now
		return nil
	})
	return err
}

// verify probes recovery every interval until it holds for stable_for (then
// the incident is resolved) or the timeout passes (then the database step is
// proposed, once, or the incident is escalated).
func (m *Manager) verify(ctx context.Context, rec Record, svc Service) error {
	rc := svc.Recovery
	start := m.now()
	if rec.VerifyStartedAt != nil {
		start = *rec.VerifyStartedAt
	}
	deadline := start.Add(time.Duration(rc.Timeout))
	interval := svc.Interval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var (
		stab    verify.Stability
		lastOK  = false
		lastRes verify.Result
	)
	for {
		now := m.now()
		res := svc.Verifier.Probe(ctx, now, start, rec.Service, rec.Baseline, rec.References, svc.Query)
		if ctx.Err() != nil {
			return nil
		}
		lastRes = res
		stable := stab.Observe(now, res.Recovered)
		if res.Recovered != lastOK {
			lastOK = res.Recovered
			typ, msg := "recovery.progress", "values back toward baseline: "+res.Summary()
			if !res.Recovered {
				msg = "not recovered again: " + res.Summary()
			}
			if _, err := m.transition(ctx, rec.ID, func(r *Record, now time.Time) error {
				r.add(now, typ, "guardian", msg, nil)
				return nil
			}); err != nil {
				return err
			}
		}
		if res.Recovered && stable >= time.Duration(rc.StableFor) {
			return m.resolve(ctx, rec.ID, res)
		}
		if !now.Before(deadline) {
			return m.notRecovered(ctx, rec.ID, svc, lastRes)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *Manager) resolve(ctx context.Context, id int64, res verify.Result) error {
	rec, err := m.transition(ctx, id, func(r *Record, now time.Time) error {
		r.RecoveredAt = &now
		r.add(now, "recovery.confirmed", "guardian", fmt.Sprintf("%s recovered on %s: %s", r.Service, r.Baseline, res.Summary()), nil)
		r.setState(Resolved)
		r.ResolvedAt = &now
		r.add(now, "incident.resolved", "guardian", fmt.Sprintf("incident #%d resolved: %s rolled back %s → %s and stable", r.ID, r.Service, r.Version, r.Baseline), nil)
		return nil
	})
	if err != nil || m.hook == nil {
		return err
	}
	impact, entries := m.hook(ctx, rec)
	_, err = m.transition(ctx, id, func(r *Record, _ time.Time) error {
		r.Impact = impact
		r.Timeline = append(r.Timeline, entries...)
		return nil
	})
	return err
}

func (m *Manager) notRecovered(ctx context.Context, id int64, svc Service, res verify.Result) error {
	_, err := m.transition(ctx, id, func(r *Record, now time.Time) error {
		r.add(now, "recovery.failed", "guardian", fmt.Sprintf("%s not recovered within %s: %s", r.Service, svc.Recovery.Timeout, res.Summary()), nil)
		if r.Step == executor.StepApplication && svc.Database != nil {
			r.setState(DBAwaitingApproval)
			r.ApprovalRequestedAt = &now
			r.add(now, "approval.requested", "guardian",
				fmt.Sprintf("the application rollback alone did not restore %s: run the database step (%s)? It is high-risk and never automatic. Approve: guardian approve %d", r.Service, svc.DatabaseName, r.ID),
				map[string]string{"step": executor.StepDatabase})
			return nil
		}
		r.setState(Escalated)
		r.add(now, "incident.escalated", "guardian", fmt.Sprintf("%s did not recover after the rollback: a human must take over", r.Service), nil)
		return nil
	})
	return err
}
