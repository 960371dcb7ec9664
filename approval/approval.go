// Package approval is the go/no-go stage: a service's approval policy as a
// pure decision (Decide), and the seam through which people answer — a
// Vote carries who decided, through which channel (the API, the CLI, a chat
// button, the web console) and why; a Gate is a channel that must be asked
// actively when a go/no-go is wanted.
package approval

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Mode is how a service's rollback is approved.
type Mode string

// Approval modes.
const (
	// Manual waits for a person (the default).
	Manual Mode = "manual"
	// Auto rolls back at once.
	Auto Mode = "auto"
	// AutoAfter waits Timeout for a person, then does OnTimeout.
	AutoAfter Mode = "auto_after"
)

// String returns the mode's name.
func (m Mode) String() string { return string(m) }

// OnTimeout is what AutoAfter does when nobody answered in time.
type OnTimeout string

// What AutoAfter does at its deadline.
const (
	// TimeoutRollback gives the go (the default).
	TimeoutRollback OnTimeout = "rollback"
	// TimeoutHold gives the no-go: the incident is held.
	TimeoutHold OnTimeout = "hold"
)

// Steps a go/no-go is asked for.
const (
	StepApplication = "application"
	StepDatabase    = "database"
)

// Policy is a service's go/no-go policy.
type Policy struct {
	Mode Mode
	// Timeout is how long AutoAfter waits for a person.
	Timeout time.Duration
	// OnTimeout is what AutoAfter does then (default TimeoutRollback).
	OnTimeout OnTimeout
	// SkipAbove, when set, gives the go at once when the firing trigger's
	// value is above it (an outage-class value), whatever the mode.
	SkipAbove *float64
}

// Request is one go/no-go that is wanted.
type Request struct {
	Incident int64
	Service  string
	// Version is the bad version; Baseline the version to go back to.
	Version, Baseline string
	// Step is StepApplication or StepDatabase.
	Step string
	// Trigger names the trigger that fired; Value is its value (nil when
	// it has none, such as a stalled rollout); Summary its evidence.
	Trigger string
	Value   *float64
	Summary string
	// RequestedAt is when the go/no-go was first asked (AutoAfter's
	// deadline counts from it).
	RequestedAt time.Time
}

// Outcome is what a policy decides.
type Outcome int

// Outcomes of Decide.
const (
	// Wait for a person (until Decision.Deadline, when set).
	Wait Outcome = iota
	// Go: roll back.
	Go
	// NoGo: hold.
	NoGo
)

// String names the outcome.
func (o Outcome) String() string {
	switch o {
	case Go:
		return "go"
	case NoGo:
		return "no-go"
	}
	return "wait"
}

// Decision is a policy's answer to a Request.
type Decision struct {
	Outcome Outcome
	// By names the policy that decided, such as "policy:auto"; empty with Wait.
	By string
	// Reason says why, in words.
	Reason string
	// Deadline, with Wait, is when the policy decides by itself (AutoAfter);
	// zero means a person must answer.
	Deadline time.Time
}

// Decide applies policy p to request r at now. It is pure: time is a
// parameter. The database step always waits for a person, whatever the
// policy.
func Decide(p Policy, r Request, now time.Time) Decision {
	if r.Step == StepDatabase {
		return Decision{Outcome: Wait, Reason: "the database step is high-risk and never automatic"}
	}
	switch {
	case p.Mode == Auto:
		return Decision{Outcome: Go, By: "policy:auto", Reason: "approval mode is auto"}
	case p.SkipAbove != nil && r.Value != nil && *r.Value > *p.SkipAbove:
		return Decision{Outcome: Go, By: "policy:skip_approval_above",
			Reason: fmt.Sprintf("%s is %.4g, above skip_approval_above %.4g", r.Trigger, *r.Value, *p.SkipAbove)}
	case p.Mode == AutoAfter:
		deadline := r.RequestedAt.Add(p.Timeout)
		if now.Before(deadline) {
			return Decision{Outcome: Wait, Deadline: deadline,
				Reason: fmt.Sprintf("without an answer within %s: %s", p.Timeout, p.onTimeout())}
		}
		if p.onTimeout() == TimeoutHold {
			return Decision{Outcome: NoGo, By: "policy:auto_after", Reason: "no answer in time; on_timeout is hold"}
		}
		return Decision{Outcome: Go, By: "policy:auto_after", Reason: fmt.Sprintf("no answer within %s", p.Timeout)}
	}
	return Decision{Outcome: Wait, Reason: "approval mode is manual"}
}

func (p Policy) onTimeout() OnTimeout {
	if p.OnTimeout == "" {
		return TimeoutRollback
	}
	return p.OnTimeout
}

// Channels a vote can come through.
const (
	ChannelAPI    = "api"
	ChannelCLI    = "cli"
	ChannelPolicy = "policy"
	// ChannelSlack is a Slack button or the /guardian slash command.
	ChannelSlack = "slack"
)

// Vote is a person's go or no-go, as a channel delivers it.
type Vote struct {
	Incident int64
	// Approve is the go; false is the no-go.
	Approve bool
	// By names who decided, as authenticated by the channel, such as
	// "token:alice".
	By string
	// Channel names the way the vote came: ChannelAPI, ChannelCLI, ...
	Channel string
	// Reason says why; a no-go needs one.
	Reason string
}

// ErrInvalidVote is wrapped by Vote.Validate's errors.
var ErrInvalidVote = errors.New("invalid decision")

// MaxReason bounds a vote's reason, in bytes.
const MaxReason = 2000

// Validate checks that the vote names who decided and, for a no-go, why.
func (v Vote) Validate() error {
	switch {
	case strings.TrimSpace(v.By) == "":
		return fmt.Errorf("%w: who decided is unknown", ErrInvalidVote)
	case !v.Approve && strings.TrimSpace(v.Reason) == "":
		return fmt.Errorf("%w: a no-go needs a reason", ErrInvalidVote)
	case len(v.Reason) > MaxReason:
		return fmt.Errorf("%w: the reason is longer than %d characters", ErrInvalidVote, MaxReason)
	}
	return nil
}

// Gate is a go/no-go channel that must be asked actively (a chat message
// with buttons, say). Its answers come back as Votes through the channel's
// own endpoint. The API and the CLI need no Gate: they read the pending
// requests from the incident API.
type Gate interface {
	Request(ctx context.Context, r Request) error
}

// Gates asks every gate; it returns the errors of those that failed,
// joined, after asking all of them.
type Gates []Gate

// Request implements Gate.
func (g Gates) Request(ctx context.Context, r Request) error {
	var errs []error
	for _, gate := range g {
		if err := gate.Request(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
