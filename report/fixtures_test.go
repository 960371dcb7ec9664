package report

import (
	"fmt"
	"time"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/rollout"
)

// t0 is the deploy time of the fixtures: Friday 2025-03-28 14:00 UTC, the
// Friday before Europe/Berlin switches to summer time.
var t0 = time.Date(2025, 3, 28, 14, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func atp(d time.Duration) *time.Time { t := at(d); return &t }

func f64(f float64) *float64 { return &f }

func sec(m, s int) time.Duration { return time.Duration(m)*time.Minute + time.Duration(s)*time.Second }

const (
	errorQuery    = `sum(rate(http_requests_total{service="checkout",version="v2.4.1",code=~"5.."}[1m])) / sum(rate(http_requests_total{service="checkout",version="v2.4.1"}[1m]))`
	baselineQuery = `sum(rate(http_requests_total{service="checkout",version="v2.4.0",code=~"5.."}[1m])) / sum(rate(http_requests_total{service="checkout",version="v2.4.0"}[1m]))`
	volumeQuery   = `sum(increase(http_requests_total{service="checkout",version="v2.4.1"}[1m]))`
)

// base is an incident detected 3m10s after the deploy, before any decision.
func base() incident.Record {
	return incident.Record{
		ID:       12,
		Service:  "checkout",
		Severity: "SEV-1",
		State:    incident.AwaitingApproval,
		Version:  "v2.4.1",
		Baseline: "v2.4.0",
		Trigger:  "error-rate",
		Evidence: incident.Evidence{
			Summary:       "error-rate v2.4.1: 0.079 > 0.05 and > 2x baseline v2.4.0 (0.004, live); 1534 requests; firing (was pending)",
			Query:         errorQuery,
			Value:         f64(0.079),
			BaselineQuery: baselineQuery,
			BaselineValue: f64(0.004),
			BaselineMode:  "live",
			Conditions:    []string{"> 0.05", "> 2x baseline v2.4.0 (0.004, live)"},
			VolumeQuery:   volumeQuery,
			SampleSize:    f64(1534),
		},
		DeployedAt: t0,
		DetectedAt: at(sec(3, 10)),
		Impact:     incident.Impact{PeakValue: f64(0.079), BaselineValue: f64(0.004)},
		Timeline: []incident.Entry{
			{At: t0, Type: "deploy.seen", Actor: "guardian", Message: "checkout v2.4.1 deployed, baseline v2.4.0", Data: map[string]string{"source": "version_label"}},
			{At: at(sec(2, 40)), Type: "trigger.pending", Actor: "guardian", Message: "error-rate v2.4.1: 0.061 > 0.05 and > 2x baseline v2.4.0 (0.004, live); pending"},
			{At: at(sec(3, 10)), Type: "incident.declared", Actor: "guardian", Message: "SEV-1: roll back checkout v2.4.1 → v2.4.0: 5xx 7.9% > 5%, baseline 0.4%"},
			{At: at(sec(3, 10)), Type: "approval.requested", Actor: "guardian", Message: "go/no-go for the application rollback (auto after 5m)"},
		},
	}
}

// resolved: auto-approved by policy, rolled back with kubernetes, recovered.
func resolved() incident.Record {
	r := base()
	r.State = incident.Resolved
	r.Changes = []rollout.Change{
		{Version: "v2.4.1", Images: []string{"registry.example/checkout:v2.4.1", "registry.example/envoy:1.29"}, Chart: "checkout-1.8.0",
			Commit: "9f3c2ab", Author: "Dana Scully <dana@example.com>", ChangeURL: "https://git.example/checkout/pull/812"},
		{Version: "v2.4.0", Images: []string{"registry.example/checkout:v2.4.0", "registry.example/envoy:1.29"}, Chart: "checkout-1.7.3"},
	}
	r.ApprovedAt = atp(sec(8, 10))
	r.RollbackStartedAt = atp(sec(8, 11))
	r.RollbackDoneAt = atp(sec(9, 26))
	r.RecoveredAt = atp(sec(11, 26))
	r.ResolvedAt = atp(sec(11, 30))
	r.Impact = incident.Impact{PeakValue: f64(0.21), BaselineValue: f64(0.004), FailedRequests: f64(1843)}
	r.Decisions = []incident.Decision{{Step: "application", Approved: true, By: "policy:auto_after", Reason: "no answer within 5m0s", At: at(sec(8, 10))}}
	r.Actions = map[string]*incident.Action{
		"incident-12/rollback.application": {
			Key: "incident-12/rollback.application", Kind: "rollback.application", Executor: "kubernetes",
			State: incident.ActionSucceeded, StartedAt: at(sec(8, 11)), FinishedAt: atp(sec(9, 26)),
			Output: "deployment.apps/checkout rolled back to revision 41 (v2.4.0)\nWaiting for deployment \"checkout\" rollout to finish: 2 of 4 updated replicas are available...\ndeployment \"checkout\" successfully rolled out\n",
		},
	}
	r.Timeline = append(r.Timeline,
		incident.Entry{At: at(sec(8, 10)), Type: "approval.granted", Actor: "policy:auto_after", Message: "no answer within 5m0s"},
		incident.Entry{At: at(sec(8, 11)), Type: "rollback.started", Actor: "guardian", Message: "kubernetes: roll back shop/checkout to v2.4.0"},
		incident.Entry{At: at(sec(9, 26)), Type: "rollback.succeeded", Actor: "guardian", Message: "shop/checkout serves v2.4.0"},
		incident.Entry{At: at(sec(11, 26)), Type: "recovery.confirmed", Actor: "guardian", Message: "error rate 0.004 within 10% of baseline for 1m; smoke checks passed"},
		incident.Entry{At: at(sec(11, 30)), Type: "incident.resolved", Actor: "guardian", Message: "checkout back on v2.4.0"},
	)
	return r
}

// sequentialResolved is resolved, but fired by a sequential trigger
// counting requests slower than 0.5 s, and its impact measured.
func sequentialResolved() incident.Record {
	r := resolved()
	r.Trigger = "slow-requests"
	evaluated := at(sec(3, 5))
	const (
		slow     = `sum(increase(http_request_duration_seconds_count{version="%s"}[%s])) - sum(increase(http_request_duration_seconds_bucket{version="%s",le="0.5"}[%s]))`
		requests = `sum(increase(http_requests_total{version="%s"}[%s]))`
	)
	q := func(tmpl, version, rng string) string { return fmt.Sprintf(tmpl, version, rng, version, rng) }
	r.Evidence = incident.Evidence{
		Summary:       "slow-requests v2.4.1: regressed: 1480/18500 errors (8%) in 3m5s vs baseline v2.4.0 190/19000 (1%, live+pre_deploy); ratio 8 [4.1, 15.6]; e 2.1e+05 ≥ 1000 (p 4.76e-06, alpha 0.001); firing (was inactive)",
		Query:         q(slow, "v2.4.1", "3m5s"),
		Value:         f64(0.08),
		BaselineQuery: q(slow, "v2.4.0", "3m5s"),
		BaselineValue: f64(0.01),
		BaselineMode:  "live",
		Conditions:    []string{"sequential regressed (e 2.1e+05, healthy e 0.001, need 1000, alpha 0.001): ratio 8 [4.1, 15.6] vs baseline v2.4.0"},
		VolumeQuery:   fmt.Sprintf(requests, "v2.4.1", "3m5s"),
		SampleSize:    f64(18500),
		EvaluatedAt:   &evaluated, Sequential: true, SinceDeploySeconds: f64(185), BaselineWindowSeconds: f64(1800),
		BaselineRequestsQuery:  fmt.Sprintf(requests, "v2.4.0", "3m5s"),
		PreDeployErrorsQuery:   q(slow, "v2.4.0", "30m"),
		PreDeployRequestsQuery: fmt.Sprintf(requests, "v2.4.0", "30m"),
	}
	r.Impact = incident.Impact{
		PeakValue: f64(0.09), BaselineValue: f64(0.01), Kind: "latency", SlowRequests: f64(3728), SlowerThanSeconds: f64(0.5),
		Queries:    []string{fmt.Sprintf(requests, "v2.4.1", "9m27s"), q(slow, "v2.4.1", "9m27s")},
		MeasuredAt: r.RollbackDoneAt,
	}
	return r
}

// heldReason has a pipe and a line break, as people write them.
const heldReason = "known issue | fix in v2.4.2\nrolling forward instead"

// held: a human said no-go.
func held() incident.Record {
	r := base()
	r.State = incident.Held
	r.Decisions = []incident.Decision{{Step: "application", Approved: false, By: "token:alice", Reason: heldReason, At: at(sec(4, 30))}}
	r.Timeline = append(r.Timeline,
		incident.Entry{At: at(sec(4, 30)), Type: "approval.denied", Actor: "token:alice", Message: "no-go: checkout stays on v2.4.1: " + heldReason, Data: map[string]string{"step": "application", "reason": heldReason}},
		incident.Entry{At: at(sec(4, 30)), Type: "incident.held", Actor: "guardian", Message: "rollback held; checkout v2.4.1 keeps serving"},
	)
	return r
}

// failedRollback: approved by a human, the helm rollback failed.
func failedRollback() incident.Record {
	r := base()
	r.State = incident.Failed
	r.Evidence.BaselineMode = "pre_deploy"
	r.Evidence.Conditions = []string{"> 0.05", "> 2x baseline v2.4.0 (0.004, pre_deploy)"}
	r.Evidence.Summary = "error-rate v2.4.1: 0.079 > 0.05 and > 2x baseline v2.4.0 (0.004, pre_deploy); 1534 requests; firing (was pending)"
	r.ApprovedAt = atp(sec(5, 0))
	r.RollbackStartedAt = atp(sec(5, 1))
	r.Decisions = []incident.Decision{{Step: "application", Approved: true, By: "token:bob", Reason: "go", At: at(sec(5, 0))}}
	r.Actions = map[string]*incident.Action{
		"incident-12/rollback.application": {
			Key: "incident-12/rollback.application", Kind: "rollback.application", Executor: "helm",
			State: incident.ActionFailed, StartedAt: at(sec(5, 1)), FinishedAt: atp(sec(10, 1)),
			Output: "Rollback was not successful\n```\nhelm history shows ``` in notes\n",
			Error:  "helm rollback checkout 41: exit status 1\nError: UPGRADE FAILED: timed out waiting for the condition",
		},
	}
	r.Timeline = append(r.Timeline,
		incident.Entry{At: at(sec(5, 0)), Type: "approval.granted", Actor: "token:bob", Message: "go"},
		incident.Entry{At: at(sec(5, 1)), Type: "rollback.started", Actor: "guardian", Message: "helm: rollback checkout to revision 41"},
		incident.Entry{At: at(sec(10, 1)), Type: "rollback.failed", Actor: "guardian", Message: "helm rollback checkout 41: exit status 1"},
	)
	return r
}

// escalated: the application rollback did not restore service, the database
// step was approved by a human and ran, and the service still did not
// recover.
func escalated() incident.Record {
	r := base()
	r.State = incident.Escalated
	r.ApprovedAt = atp(sec(3, 40))
	r.RollbackStartedAt = atp(sec(3, 41))
	r.RollbackDoneAt = atp(sec(4, 50))
	r.Impact = incident.Impact{PeakValue: f64(0.31), BaselineValue: f64(0.004), FailedRequests: f64(5210)}
	r.Decisions = []incident.Decision{
		{Step: "application", Approved: true, By: "token:carol", At: at(sec(3, 40))},
		{Step: "database", Approved: true, By: "token:carol", Reason: "v2.4.0 fails on schema 57; migrate down", At: at(sec(20, 5))},
	}
	r.Actions = map[string]*incident.Action{
		"incident-12/rollback.application": {
			Key: "incident-12/rollback.application", Kind: "rollback.application", Executor: "kubernetes",
			State: incident.ActionSucceeded, StartedAt: at(sec(3, 41)), FinishedAt: atp(sec(4, 50)),
			Output: "deployment.apps/checkout rolled back\n",
		},
		"incident-12/rollback.database": {
			Key: "incident-12/rollback.database", Kind: "rollback.database", Executor: "command",
			State: incident.ActionSucceeded, StartedAt: at(sec(20, 6)), FinishedAt: atp(sec(21, 36)),
			Output: "./migrate down 1\nmigrating 57_add_cart_index down... ok\n",
		},
	}
	r.Timeline = append(r.Timeline,
		incident.Entry{At: at(sec(3, 40)), Type: "approval.granted", Actor: "token:carol", Message: "go"},
		incident.Entry{At: at(sec(3, 41)), Type: "rollback.started", Actor: "guardian", Message: "kubernetes: roll back shop/checkout to v2.4.0"},
		incident.Entry{At: at(sec(4, 50)), Type: "rollback.succeeded", Actor: "guardian", Message: "shop/checkout serves v2.4.0"},
		incident.Entry{At: at(sec(19, 50)), Type: "recovery.failed", Actor: "guardian", Message: "error rate 0.29 not within 10% of baseline 0.004 after 15m"},
		incident.Entry{At: at(sec(19, 50)), Type: "approval.requested", Actor: "guardian", Message: "go/no-go for the database step (never automatic)", Data: map[string]string{"step": "database"}},
		incident.Entry{At: at(sec(20, 5)), Type: "approval.granted", Actor: "token:carol", Message: "v2.4.0 fails on schema 57; migrate down", Data: map[string]string{"step": "database"}},
		incident.Entry{At: at(sec(20, 6)), Type: "rollback.started", Actor: "guardian", Message: "command: ./migrate down 1", Data: map[string]string{"step": "database"}},
		incident.Entry{At: at(sec(21, 36)), Type: "rollback.succeeded", Actor: "guardian", Message: "database rolled back", Data: map[string]string{"step": "database"}},
		incident.Entry{At: at(sec(36, 36)), Type: "incident.escalated", Actor: "guardian", Message: "not recovered after the database step; paging the service owner"},
	)
	return r
}

// postmortem is the post-mortem config of the fixtures.
func postmortem() PostmortemConfig {
	return PostmortemConfig{
		BusinessDays: true,
		At:           "10:00",
		TimeZone:     "Europe/Berlin",
		Organizer:    "Release Manager <release-manager@example.com>",
		Attendees:    []string{"alice@example.com", "Bob Builder <bob@example.com>", "sre-oncall@example.com"},
		ReportURL:    "https://guardian.example.com/incidents/12",
	}
}

// requested: a person asked for the rollback (no trigger fired); the
// service's team was assembled on declare.
func requested() incident.Record {
	r := resolved()
	r.Trigger, r.Evidence = "", incident.Evidence{Summary: "rollback requested by token:ana: orders are written twice"}
	r.Impact = incident.Impact{}
	r.RequestedBy = &incident.Requester{By: "token:ana", Channel: "cli", Reason: "orders are written twice"}
	r.Team = []incident.Responder{
		{Role: "incident_commander", Name: "Ana Silva", Email: "ana@example.com", Slack: "U0ANA"},
		{Role: "dba", Name: "Bo Chen", Email: "bo@example.com"},
		{Role: "on_call", Name: "Payments on-call", Slack: "S0PAY"},
	}
	r.Decisions = []incident.Decision{{Step: "application", Approved: true, By: "token:ana", Channel: "cli", Reason: "rollback requested: orders are written twice", At: at(sec(3, 10))}}
	r.Timeline[2] = incident.Entry{At: at(sec(3, 10)), Type: "incident.declared", Actor: "token:ana",
		Message: "SEV-1 declared for checkout by token:ana: roll back checkout v2.4.1 → v2.4.0: orders are written twice"}
	r.Timeline[3] = incident.Entry{At: at(sec(3, 10)), Type: "approval.granted", Actor: "token:ana", Message: "rollback requested: orders are written twice"}
	return r
}
