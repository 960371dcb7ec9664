package report

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rollback-guardian/guardian/incident"
)

// valueLabel names the evidence's value: a sequential trigger's error
// ratio, a latency trigger's quantile, or a threshold trigger's value.
func valueLabel(ev incident.Evidence) string {
	switch {
	case ev.Latency != nil:
		return quantileName(ev.Latency.Quantile) + " since the deploy (histogram's unit)"
	case ev.Sequential:
		return "Ratio since the deploy (errors / requests)"
	}
	return "Value"
}

// quantileName writes a quantile as "p99" or "p99.9".
func quantileName(q float64) string {
	return "p" + strconv.FormatFloat(q*100, 'g', 6, 64)
}

// latencyTestText describes the latency test's decision, for example
// "regressed: e 12000 ≥ 1000 (1/alpha), p 8.33e-05, alpha 0.001; 1530
// requests judged vs 90000 of the baseline (pre-deploy 90000, live 0)".
func latencyTestText(le *incident.LatencyEvidence) string {
	var b strings.Builder
	b.WriteString(le.Decision)
	b.WriteString(": e ")
	if x, ok := finite(le.E); ok {
		b.WriteString(fmtNum(x))
		if x >= le.Threshold {
			b.WriteString(" ≥ ")
		} else {
			b.WriteString(" < ")
		}
	} else {
		b.WriteString("not recorded vs ")
	}
	fmt.Fprintf(&b, "%s (1/alpha), p ", fmtNum(le.Threshold))
	if x, ok := finite(le.P); ok {
		b.WriteString(fmtNum(x))
	} else {
		b.WriteString("not recorded")
	}
	fmt.Fprintf(&b, ", alpha %s", strconv.FormatFloat(le.Alpha, 'g', -1, 64))
	if x, ok := finite(le.EHealthy); ok {
		fmt.Fprintf(&b, ", healthy e %s (min_effect %s)", fmtNum(x), le.MinEffect)
	}
	fmt.Fprintf(&b, "; %s requests judged vs %s of the baseline (pre-deploy %s, live %s)",
		fmtNum(le.Judged), fmtNum(le.PreDeployRequests+le.LiveRequests), fmtNum(le.PreDeployRequests), fmtNum(le.LiveRequests))
	if le.Native {
		b.WriteString("; native histogram")
	}
	return b.String()
}

// latencyGuardText describes one guarded bound, for example "bound 0.25
// (baseline p99): 9.1% slower (139/1530) vs 0.9% (810/90000), inconclusive".
func latencyGuardText(g incident.LatencyGuard) string {
	share := func(x, n float64) string {
		if n <= 0 {
			return "no requests"
		}
		return fmtNum(100*x/n) + "% (" + fmtNum(x) + "/" + fmtNum(n) + ")"
	}
	return fmt.Sprintf("bound %s (baseline %s): %s slower vs %s, %s",
		strconv.FormatFloat(g.Bound, 'g', -1, 64), quantileName(g.Quantile),
		share(g.NewSlower, g.NewRequests), share(g.BaselineSlower, g.BaselineRequests), g.Decision)
}
