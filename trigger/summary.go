package trigger

import (
	"math"
	"strconv"
	"strings"
)

// Summary returns the verdict as one line for on-call, for example
//
//	error-rate v2: 0.2 > 0.05 and > 2x baseline v1 (0.005, live); 1534 requests; firing (was pending)
//	errors v2: regressed: 15/300 errors (5%) in 5m0s vs baseline v1 1800/180000 (1%, pre_deploy); ratio 5 [1.02, 14.7]; e 10420 ≥ 1000 (p 9.6e-05, alpha 0.001); firing (was inactive)
func (v Verdict) Summary() string {
	var b strings.Builder
	b.WriteString(v.Trigger)
	if v.Deploy.Version != "" {
		b.WriteByte(' ')
		b.WriteString(v.Deploy.Version)
	}
	b.WriteString(": ")
	ev := v.Evidence
	judged := v.Outcome == OK || v.Outcome == Violated || v.Outcome == NotEnoughEvidence
	switch {
	case ev.Detail != "":
		b.WriteString(ev.Detail)
	case ev.Sequential != nil && judged:
		sequentialSummary(&b, v)
	case ev.Latency != nil && judged:
		latencySummary(&b, v)
	default:
		v.thresholdSummary(&b)
	}
	b.WriteString("; ")
	b.WriteString(v.State.String())
	if v.Changed {
		b.WriteString(" (was ")
		b.WriteString(v.Previous.String())
		b.WriteByte(')')
	}
	return b.String()
}

// thresholdSummary describes a verdict of the threshold conditions, or one
// that could not judge.
func (v Verdict) thresholdSummary(b *strings.Builder) {
	ev := v.Evidence
	counted := func(policy string) string {
		if v.Breach {
			return " (counts as a violation: " + policy + " fire)"
		}
		return " (ignored)"
	}
	switch v.Outcome {
	case OK, Violated:
		b.WriteString(fmtValue(ev.Value))
		judged := 0
		for _, c := range ev.Conditions {
			if c.Skipped {
				continue
			}
			if judged > 0 {
				b.WriteString(" and")
			}
			judged++
			b.WriteByte(' ')
			if !c.Breached {
				b.WriteString("not ")
			}
			b.WriteString(c.Text)
		}
		for _, c := range ev.Conditions {
			if c.Skipped {
				b.WriteString(", not judged: ")
				b.WriteString(c.Text)
			}
		}
		if ev.SampleSize != nil {
			b.WriteString("; ")
			b.WriteString(fmtNum(*ev.SampleSize))
			b.WriteString(" requests")
		}
	case NotEnoughEvidence:
		b.WriteString(fmtValue(ev.Value))
		b.WriteString(" not judged: ")
		switch {
		case ev.Incomplete:
			b.WriteString("the source warned that its answer may be incomplete (")
			b.WriteString(ev.Warnings[0])
			b.WriteString(")")
		case ev.MinRequests > 0 && ev.SampleSize == nil:
			b.WriteString("no traffic data, min_requests ")
			b.WriteString(fmtLimit(ev.MinRequests))
		case ev.MinRequests > 0 && *ev.SampleSize < ev.MinRequests:
			b.WriteString(fmtNum(*ev.SampleSize))
			b.WriteString(" requests < min_requests ")
			b.WriteString(fmtLimit(ev.MinRequests))
		default:
			if v.Deploy.Baseline == "" {
				b.WriteString("baseline unknown")
			} else {
				b.WriteString("baseline ")
				b.WriteString(v.Deploy.Baseline)
				b.WriteString(" unavailable")
			}
		}
	case NoData:
		b.WriteString("no data")
		b.WriteString(counted("on_no_data"))
	case NaN:
		b.WriteString("value is NaN")
		b.WriteString(counted("on_no_data"))
	case QueryError:
		b.WriteString("query failed")
		if v.Breach {
			b.WriteString(counted("on_query_error"))
		} else {
			b.WriteString(" (state kept)")
		}
		if v.Err != nil {
			b.WriteString(": ")
			b.WriteString(v.Err.Error())
		}
	}
}

// baselineText describes an above_baseline condition, e.g.
// "> 2x baseline v1 (0.005, live)" or "> baseline v1 + 0.02 (unavailable)".
func baselineText(ratio, delta float64, version string, base *float64, mode BaselineMode) string {
	var b strings.Builder
	b.WriteString("> ")
	if ratio > 0 {
		b.WriteString(fmtLimit(ratio))
		b.WriteString("x ")
	}
	b.WriteString("baseline")
	if version != "" {
		b.WriteByte(' ')
		b.WriteString(version)
	}
	if ratio <= 0 {
		if delta < 0 {
			b.WriteString(" - ")
			b.WriteString(fmtLimit(-delta))
		} else {
			b.WriteString(" + ")
			b.WriteString(fmtLimit(delta))
		}
	}
	b.WriteString(" (")
	switch {
	case base != nil:
		b.WriteString(fmtNum(*base))
		b.WriteString(", ")
		b.WriteString(mode.String())
	case version == "":
		b.WriteString("unknown")
	default:
		b.WriteString("unavailable")
	}
	b.WriteByte(')')
	return b.String()
}

// fmtLimit formats a configured limit exactly as a number.
func fmtLimit(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// fmtValue formats a measured value, "no value" for nil.
func fmtValue(f *float64) string {
	if f == nil {
		return "no value"
	}
	return fmtNum(*f)
}

// fmtNum formats a measured value for humans: three significant digits,
// whole numbers from 1000 up.
func fmtNum(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.Abs(f) >= 1000 && math.Abs(f) < 1e15:
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', 3, 64)
}
