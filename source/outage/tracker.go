// Package outage notices when a metric source stays unreachable and when it
// answers again. A Tracker, pure and fed the time, turns one source's query
// (or scrape) outcomes into the start and the end of an outage; the Monitor
// keeps a Tracker per source of the configuration, exports guardian_source_up
// and queues source.unreachable and source.recovered for the notifiers of the
// services that use the source.
//
// Guardian never rolls back for lack of data: while a source is unreachable
// no trigger can judge the services that use it, and the outage is what
// on-call is told.
package outage

import (
	"time"

	"github.com/rollback-guardian/guardian/source"
)

// Change is what an observation changed.
type Change int

// Changes.
const (
	// Unchanged: nothing to tell.
	Unchanged Change = iota
	// Unreachable: the source has failed for a transport reason for the
	// Tracker's After: the outage begins.
	Unreachable
	// Recovered: the first success after an outage: it ends.
	Recovered
)

// String returns the change's name.
func (c Change) String() string {
	switch c {
	case Unreachable:
		return "unreachable"
	case Recovered:
		return "recovered"
	}
	return "unchanged"
}

// Transition is the outcome of one observation.
type Transition struct {
	Change Change
	// Since is when the failures began: the first failed observation of the
	// outage.
	Since time.Time
	// At is the time of the observation that made the change.
	At time.Time
	// Reason is the reason of the latest failure (source.ReasonUnavailable,
	// ReasonTimeout or ReasonBadResponse); empty for Recovered.
	Reason string
}

// Counts reports whether a failure of this source.Reason is the source
// being unreachable: it could not be reached or answered with a server error
// (unavailable), it did not answer in time (timeout), or what answered was
// not the Prometheus API (bad_response: a proxy's error page, a truncated
// body). A bad query, a cancellation or another failure is not.
func Counts(reason string) bool {
	return reason == source.ReasonUnavailable || reason == source.ReasonTimeout || reason == source.ReasonBadResponse
}

// Tracker follows one source. The source is unreachable once its
// observations have failed for a transport reason (see Counts) continuously
// for After; one success ends it. Failures of other reasons neither prolong
// nor end it. The zero value, with After 0, never declares an outage.
type Tracker struct {
	// After is how long failures must last before the outage begins;
	// 0 turns the Tracker off.
	After time.Duration

	failing bool
	since   time.Time
	down    bool
	reason  string
}

// Observe feeds the outcome of one query or scrape at ts: ok for a success,
// otherwise the failure's source.Reason.
func (t *Tracker) Observe(ok bool, reason string, ts time.Time) Transition {
	switch {
	case ok:
		tr := Transition{}
		if t.down {
			tr = Transition{Change: Recovered, Since: t.since, At: ts}
		}
		*t = Tracker{After: t.After}
		return tr
	case !Counts(reason):
		return Transition{}
	}
	if !t.failing {
		t.failing, t.since = true, ts
	}
	t.reason = reason
	if t.down || t.After <= 0 || ts.Sub(t.since) < t.After {
		return Transition{}
	}
	t.down = true
	return Transition{Change: Unreachable, Since: t.since, At: ts, Reason: reason}
}

// Down reports whether the source is unreachable, and since when.
func (t *Tracker) Down() (since time.Time, down bool) { return t.since, t.down }

// Resume puts the Tracker in an outage that began at since, such as one
// saved before a restart: the next failure does not begin it again and the
// next success ends it.
func (t *Tracker) Resume(since time.Time, reason string) {
	t.failing, t.since, t.down, t.reason = true, since, true, reason
}
