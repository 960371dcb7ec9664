package incident

import (
	"fmt"
	"slices"
	"time"
)

// Prevention sums up the bad deploys Guardian stopped in a span of time:
// the incidents detected in it whose rollback of the application was
// carried out.
type Prevention struct {
	// Span is how far back it looks from Now.
	Span time.Duration
	Now  time.Time
	// Stopped counts the bad deploys rolled back.
	Stopped int
	// MedianDetection is the median time from a deploy to its detection.
	MedianDetection time.Duration
	// MedianRecovery is the median time from a deploy to the service's
	// recovery (when the probes began to find it recovered), over the
	// Recovered incidents whose recovery was confirmed.
	MedianRecovery time.Duration
	Recovered      int
}

// Prevented sums up recs' bad deploys stopped in the span before now.
// Incidents closed without a rollback, escalated before it or still
// awaiting it do not count.
func Prevented(recs []Record, now time.Time, span time.Duration) Prevention {
	p := Prevention{Span: span, Now: now}
	var detect, recover []time.Duration
	for _, r := range recs {
		if r.RollbackDoneAt == nil || r.DetectedAt.After(now) || !r.DetectedAt.After(now.Add(-span)) {
			continue
		}
		p.Stopped++
		detect = append(detect, max(0, r.DetectedAt.Sub(r.DeployedAt)))
		at := r.RecoveredSince
		if at == nil {
			at = r.RecoveredAt
		}
		if at != nil && r.RecoveredAt != nil {
			recover = append(recover, max(0, at.Sub(r.DeployedAt)))
		}
	}
	p.MedianDetection, p.MedianRecovery, p.Recovered = median(detect), median(recover), len(recover)
	return p
}

// median returns the median of ds (the mean of the middle two for an
// even count); 0 for none.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return (ds[n/2-1] + ds[n/2]) / 2
}

// String says it in a line, such as "12 bad deploys stopped in the last
// 30 days; median detection 41s, median time to recovery 3m10s".
func (p Prevention) String() string {
	span := fmtSpan(p.Span)
	switch p.Stopped {
	case 0:
		return fmt.Sprintf("No bad deploys stopped in the last %s.", span)
	case 1:
		s := fmt.Sprintf("1 bad deploy stopped in the last %s; detected in %s", span, p.MedianDetection.Round(time.Second))
		if p.Recovered == 1 {
			s += fmt.Sprintf(", recovered in %s", p.MedianRecovery.Round(time.Second))
		}
		return s + "."
	}
	s := fmt.Sprintf("%d bad deploys stopped in the last %s; median detection %s", p.Stopped, span, p.MedianDetection.Round(time.Second))
	if p.Recovered > 0 {
		s += fmt.Sprintf(", median time to recovery %s", p.MedianRecovery.Round(time.Second))
	}
	return s + "."
}

// fmtSpan writes whole days as days ("30 days"), other spans as durations.
func fmtSpan(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "day"
	case d > 0 && d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}
