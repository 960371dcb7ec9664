package app

import (
	"time"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/trigger"
)

// The functions below turn the configuration's YAML types into the plain
// inputs of the packages that judge and watch, which import no config.

// triggerSpec is a configured trigger as package trigger takes it.
func triggerSpec(c config.Trigger) trigger.Spec {
	s := trigger.Spec{
		Name:          c.Name,
		Query:         c.Query,
		VolumeQuery:   c.VolumeQuery,
		Window:        time.Duration(c.Window),
		Above:         c.Above,
		Below:         c.Below,
		AboveBaseline: baselineLimit(c.AboveBaseline),
		For:           time.Duration(c.For),
		MinRequests:   c.MinRequests,
		OnNoData:      trigger.Policy(c.OnNoData),
		OnQueryError:  trigger.Policy(c.OnQueryError),
		Severity:      c.Severity,
	}
	if c.SlowerThan != nil {
		s.SlowerThan = time.Duration(*c.SlowerThan)
	}
	if q := c.Sequential; q != nil {
		s.Sequential = &trigger.SequentialSpec{
			Errors:         q.Errors,
			Requests:       q.Requests,
			Alpha:          q.Alpha,
			MinEffect:      *baselineLimit(&q.MinEffect),
			BaselineWindow: time.Duration(q.BaselineWindow),
			SlowBurn:       q.SlowBurn,
		}
	}
	if l := c.Latency; l != nil {
		s.Latency = &trigger.LatencySpec{
			Buckets:        l.Buckets,
			Alpha:          l.Alpha,
			MinEffect:      *baselineLimit(&l.MinEffect),
			Quantiles:      l.Quantiles,
			BaselineWindow: time.Duration(l.BaselineWindow),
		}
	}
	return s
}

// baselineLimit converts a baseline-relative limit; nil stays nil.
func baselineLimit(b *config.BaselineLimit) *trigger.BaselineLimit {
	if b == nil {
		return nil
	}
	return &trigger.BaselineLimit{Ratio: b.Ratio, Delta: b.Delta, Text: b.Text}
}

// detectorConfig is a service's deploy detection as package rollout takes it.
func detectorConfig(d config.Deploy) rollout.Config {
	return rollout.Config{VersionQuery: d.VersionQuery, VersionLabel: d.VersionLabel, MinTraffic: d.MinTraffic}
}

// TriggerSpec is a configured trigger as package trigger takes it, as the
// daemon converts it (for tools that judge outside the daemon, such as the
// backtest).
func TriggerSpec(c config.Trigger) trigger.Spec { return triggerSpec(c) }

// DetectorConfig is a service's deploy detection as package rollout takes
// it, as the daemon converts it.
func DetectorConfig(d config.Deploy) rollout.Config { return detectorConfig(d) }
