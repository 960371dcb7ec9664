package report

import (
	"time"

	"github.com/rollback-guardian/guardian/incident"
)

// Names of the evidence's queries (EvidenceQuery.Name).
const (
	// A threshold trigger's value query for the bad version, its volume
	// query, and its value query for the baseline version.
	queryValue    = "value"
	queryVolume   = "volume"
	queryBaseline = "baseline"
	// A sequential trigger's count queries: the bad version's since the
	// deploy, the baseline's over the baseline window before the deploy,
	// and the baseline's since the deploy (live).
	queryErrors            = "errors"
	queryRequests          = "requests"
	queryPreDeployErrors   = "pre_deploy_errors"
	queryPreDeployRequests = "pre_deploy_requests"
	queryBaselineErrors    = "baseline_errors"
	queryBaselineRequests  = "baseline_requests"
	// A latency trigger's buckets queries: the bad version's since the
	// deploy, the baseline's over the baseline window before the deploy,
	// and the baseline's since the deploy (live).
	queryBuckets          = "buckets"
	queryPreDeployBuckets = "pre_deploy_buckets"
	queryBaselineBuckets  = "baseline_buckets"
)

// EvidenceQuery is one query the firing verdict evaluated, as sent.
type EvidenceQuery struct {
	// Name says what it measured: "value", "volume" or "baseline" for a
	// threshold trigger; "errors" and "requests" (the bad version since
	// the deploy), "pre_deploy_errors" and "pre_deploy_requests" (the
	// baseline over the baseline window before the deploy),
	// "baseline_errors" and "baseline_requests" (the baseline since the
	// deploy) for a sequential one; "buckets", "pre_deploy_buckets" and
	// "baseline_buckets" for a latency one.
	Name string `json:"name"`
	// Version is the version it was rendered for.
	Version string `json:"version,omitempty"`
	// RangeSeconds is the range a count query covers (the time since the
	// deploy, or the baseline window); nil for a threshold trigger's
	// queries, whose window is in the query.
	RangeSeconds *float64 `json:"range_seconds,omitempty"`
	// EvaluatedAt is when it was evaluated, when recorded.
	EvaluatedAt *time.Time `json:"evaluated_at,omitempty"`
	Query       string     `json:"query"`
}

// EvidenceQueries lists the queries r's firing verdict evaluated, in the
// order the report shows them; a query that was not run is left out.
func EvidenceQueries(r incident.Record) []EvidenceQuery {
	ev := r.Evidence
	var deployed *time.Time
	if !r.DeployedAt.IsZero() {
		deployed = &r.DeployedAt
	}
	var out []EvidenceQuery
	add := func(name, version string, rng *float64, at *time.Time, q string) {
		if q == "" {
			return
		}
		out = append(out, EvidenceQuery{Name: name, Version: version, RangeSeconds: rng, EvaluatedAt: utcPtr(at), Query: q})
	}
	if ev.Latency != nil {
		since, window := finitePtr(ev.SinceDeploySeconds), finitePtr(ev.BaselineWindowSeconds)
		add(queryBuckets, r.Version, since, ev.EvaluatedAt, ev.Query)
		add(queryPreDeployBuckets, r.Baseline, window, deployed, ev.Latency.PreDeployQuery)
		add(queryBaselineBuckets, r.Baseline, since, ev.EvaluatedAt, ev.BaselineQuery)
		return out
	}
	if !ev.Sequential {
		add(queryValue, r.Version, nil, ev.EvaluatedAt, ev.Query)
		at := ev.EvaluatedAt
		if ev.BaselineMode == "pre_deploy" {
			at = deployed
		}
		add(queryBaseline, r.Baseline, nil, at, ev.BaselineQuery)
		add(queryVolume, r.Version, nil, ev.EvaluatedAt, ev.VolumeQuery)
		return out
	}
	since, window := finitePtr(ev.SinceDeploySeconds), finitePtr(ev.BaselineWindowSeconds)
	add(queryErrors, r.Version, since, ev.EvaluatedAt, ev.Query)
	add(queryRequests, r.Version, since, ev.EvaluatedAt, ev.VolumeQuery)
	add(queryPreDeployErrors, r.Baseline, window, deployed, ev.PreDeployErrorsQuery)
	add(queryPreDeployRequests, r.Baseline, window, deployed, ev.PreDeployRequestsQuery)
	add(queryBaselineErrors, r.Baseline, since, ev.EvaluatedAt, ev.BaselineQuery)
	add(queryBaselineRequests, r.Baseline, since, ev.EvaluatedAt, ev.BaselineRequestsQuery)
	return out
}

// queryLabel is the Markdown report's heading of q, e.g. "Errors of v2.4.0
// over the 30m0s before the deploy (baseline_window), evaluated at the
// deploy time 2025-03-28 14:00:00 UTC". A latency trigger's errors are
// its slow requests.
func queryLabel(q EvidenceQuery, r incident.Record, loc *time.Location) string {
	v := orUnknown(q.Version)
	errors := "Errors"
	if r.Impact.Kind == KindLatency {
		errors = "Slow requests"
	}
	rng := ""
	if q.RangeSeconds != nil {
		rng = fmtDur(time.Duration(*q.RangeSeconds * float64(time.Second)))
	}
	since := func(what string, live bool) string {
		s := what + " of " + v + " since the deploy"
		switch {
		case rng != "" && live:
			s += " (" + rng + ", live)"
		case rng != "":
			s += " (" + rng + ")"
		case live:
			s += " (live)"
		}
		return s
	}
	before := func(what string) string {
		if rng == "" {
			return what + " of " + v + " over the baseline window before the deploy"
		}
		return what + " of " + v + " over the " + rng + " before the deploy (baseline_window)"
	}
	var s string
	switch q.Name {
	case queryValue:
		s = "Query (" + v + ")"
	case queryBaseline:
		s = "Baseline query (" + v + ")"
	case queryVolume:
		s = "Volume query (sample size of " + v + ")"
	case queryErrors:
		s = since(errors, false)
	case queryRequests:
		s = since("Requests", false)
	case queryPreDeployErrors:
		s = before(errors)
	case queryPreDeployRequests:
		s = before("Requests")
	case queryBaselineErrors:
		s = since(errors, true)
	case queryBaselineRequests:
		s = since("Requests", true)
	case queryBuckets:
		s = since("Latency buckets", false)
	case queryPreDeployBuckets:
		s = before("Latency buckets")
	case queryBaselineBuckets:
		s = since("Latency buckets", true)
	default:
		s = orUnknown(q.Name) + " query (" + v + ")"
	}
	switch {
	case q.EvaluatedAt == nil:
	case !r.DeployedAt.IsZero() && q.EvaluatedAt.Equal(r.DeployedAt):
		s += ", evaluated at the deploy time " + fmtTime(*q.EvaluatedAt, loc)
	default:
		s += ", evaluated at " + fmtTime(*q.EvaluatedAt, loc)
	}
	return s
}
