package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/rollback-guardian/guardian/incident"
)

// SchemaVersion is the version of the JSON report's schema.
const SchemaVersion = 1

// jsonReport is the JSON report. Its keys are always present; values not
// reached are null.
type jsonReport struct {
	SchemaVersion int             `json:"schema_version"`
	Title         string          `json:"title"`
	Summary       string          `json:"summary"`
	Incident      incident.Record `json:"incident"`
	// Shadow, for an incident in shadow mode, says Guardian did not act.
	Shadow *jsonShadow `json:"shadow,omitempty"`
	Impact jsonImpact  `json:"impact"`
	// EvidenceQueries are the queries the firing verdict evaluated.
	EvidenceQueries []EvidenceQuery `json:"evidence_queries"`
	// WhatChanged is what the bad version and the baseline deployed;
	// WhatChangedNote says how to tell Guardian when nothing is known.
	WhatChanged     []VersionChange `json:"what_changed"`
	WhatChangedNote string          `json:"what_changed_note,omitempty"`
	Postmortem      *Invite         `json:"postmortem"`
	GeneratedAt     time.Time       `json:"generated_at"`
}

// jsonShadow is what a shadow incident's report says of its mode.
type jsonShadow struct {
	Mode string `json:"mode"`
	// Note is the heading and what Guardian would have done.
	Note string `json:"note"`
}

// jsonImpact holds the intervals in seconds.
type jsonImpact struct {
	DeployToDetection      *float64 `json:"deploy_to_detection_seconds"`
	DetectionToApproval    *float64 `json:"detection_to_approval_seconds"`
	ApprovalToRollbackDone *float64 `json:"approval_to_rollback_done_seconds"`
	Rollback               *float64 `json:"rollback_seconds"`
	RollbackDoneToRecovery *float64 `json:"rollback_done_to_recovery_seconds"`
	TimeToResolve          *float64 `json:"time_to_resolve_seconds"`
	DeployToRecovery       *float64 `json:"deploy_to_recovery_seconds"`
}

func seconds(d *time.Duration) *float64 {
	if d == nil {
		return nil
	}
	s := d.Seconds()
	return &s
}

// JSON renders r as the machine-readable report:
//
//	{"schema_version": 1, "title": ..., "summary": ..., "incident": <Record>,
//	 "impact": {"deploy_to_detection_seconds": ..., ...},
//	 "evidence_queries": [<EvidenceQuery>, ...],
//	 "what_changed": [<VersionChange>, ...], "what_changed_note": ...,
//	 "postmortem": <Invite> or null, "generated_at": ...}
//
// The incident's "impact" holds the measured figures: "kind" ("errors" or
// "latency"), "failed_requests" or "slow_requests" with
// "slower_than_seconds", "note" when the estimate is missing, and the
// "queries" it was computed from; its "evidence" holds the queries as
// evaluated (see incident.Evidence), which "evidence_queries" lists with
// what each measured. A schema version only gains fields; one that changes
// or removes a field is a new version.
//
// Times are in UTC and NaN or infinite values in the record are dropped, so
// the output always encodes.
func JSON(r incident.Record, opts Options) ([]byte, error) {
	if err := checkRecord(r); err != nil {
		return nil, err
	}
	iv := IntervalsOf(r)
	rep := jsonReport{
		SchemaVersion: SchemaVersion,
		Title:         Title(r),
		Summary:       Summary(r, time.UTC),
		Incident:      normalize(r),
		Impact: jsonImpact{
			DeployToDetection:      seconds(iv.DeployToDetection),
			DetectionToApproval:    seconds(iv.DetectionToApproval),
			ApprovalToRollbackDone: seconds(iv.ApprovalToRollbackDone),
			Rollback:               seconds(iv.Rollback),
			RollbackDoneToRecovery: seconds(iv.RollbackDoneToRecovery),
			TimeToResolve:          seconds(iv.TimeToResolve),
			DeployToRecovery:       seconds(iv.DeployToRecovery),
		},
		EvidenceQueries: EvidenceQueries(r),
		WhatChanged:     WhatChanged(r),
		GeneratedAt:     opts.now().UTC(),
	}
	if r.Shadowed() {
		rep.Shadow = &jsonShadow{Mode: string(incident.ModeShadow), Note: ShadowHeading + " " + ShadowText(r, time.UTC)}
	}
	if !anyKnown(rep.WhatChanged) {
		rep.WhatChangedNote = NotToldText
	}
	if rep.EvidenceQueries == nil {
		rep.EvidenceQueries = []EvidenceQuery{}
	}
	if pm := opts.Postmortem; pm != nil {
		c := *pm
		c.Start, c.End = c.Start.UTC(), c.End.UTC()
		rep.Postmortem = &c
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return nil, fmt.Errorf("encoding report of incident %d: %w", r.ID, err)
	}
	return b.Bytes(), nil
}

// normalize copies r with its times in UTC, non-finite numbers dropped and
// an empty timeline as [], leaving r untouched.
func normalize(r incident.Record) incident.Record {
	c := r
	c.DeployedAt, c.DetectedAt = utc(r.DeployedAt), utc(r.DetectedAt)
	c.ApprovedAt = utcPtr(r.ApprovedAt)
	c.RollbackStartedAt = utcPtr(r.RollbackStartedAt)
	c.RollbackDoneAt = utcPtr(r.RollbackDoneAt)
	c.RecoveredAt = utcPtr(r.RecoveredAt)
	c.ResolvedAt = utcPtr(r.ResolvedAt)
	c.ApprovalRequestedAt = utcPtr(r.ApprovalRequestedAt)
	c.VerifyStartedAt = utcPtr(r.VerifyStartedAt)
	if r.References != nil {
		c.References = make(map[string]float64, len(r.References))
		for k, v := range r.References {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				c.References[k] = v
			}
		}
	}
	c.Evidence.Value = finitePtr(r.Evidence.Value)
	c.Evidence.BaselineValue = finitePtr(r.Evidence.BaselineValue)
	c.Evidence.SampleSize = finitePtr(r.Evidence.SampleSize)
	c.Evidence.EvaluatedAt = utcPtr(r.Evidence.EvaluatedAt)
	c.Evidence.SinceDeploySeconds = finitePtr(r.Evidence.SinceDeploySeconds)
	c.Evidence.BaselineWindowSeconds = finitePtr(r.Evidence.BaselineWindowSeconds)
	c.Impact.PeakValue = finitePtr(r.Impact.PeakValue)
	c.Impact.BaselineValue = finitePtr(r.Impact.BaselineValue)
	c.Impact.FailedRequests = finitePtr(r.Impact.FailedRequests)
	c.Impact.SlowRequests = finitePtr(r.Impact.SlowRequests)
	c.Impact.SlowerThanSeconds = finitePtr(r.Impact.SlowerThanSeconds)
	c.Impact.MeasuredAt = utcPtr(r.Impact.MeasuredAt)
	if r.Decisions != nil {
		c.Decisions = make([]incident.Decision, len(r.Decisions))
		for i, d := range r.Decisions {
			d.At = utc(d.At)
			c.Decisions[i] = d
		}
	}
	if r.Actions != nil {
		c.Actions = make(map[string]*incident.Action, len(r.Actions))
		for k, a := range r.Actions {
			if a == nil {
				c.Actions[k] = nil
				continue
			}
			ac := *a
			ac.StartedAt = utc(a.StartedAt)
			ac.FinishedAt = utcPtr(a.FinishedAt)
			c.Actions[k] = &ac
		}
	}
	c.Timeline = make([]incident.Entry, len(r.Timeline))
	for i, e := range r.Timeline {
		e.At = utc(e.At)
		c.Timeline[i] = e
	}
	return c
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := utc(*t)
	return &u
}

func finitePtr(f *float64) *float64 {
	if f == nil || math.IsNaN(*f) || math.IsInf(*f, 0) {
		return nil
	}
	v := *f
	return &v
}
