package trigger

import (
	"time"
)

// latching is a method whose regressed decision stands for its deploy once
// taken (the sequential count test, the latency test): Trigger.Regressed
// and Trigger.Latch reach it.
type latching interface {
	regressed() (time.Time, bool)
	restore(d Deploy, at time.Time)
}

var _ latching = (*countTest)(nil)

// Regressed reports whether the sequential or latency test decided, for
// the deploy it judges now, that the version regressed, and when: the
// decision stands for the deploy, also across a restart (see Latch).
// Triggers without such a test never regressed.
func (t *Trigger) Regressed() (time.Time, bool) {
	if l, ok := t.m.(latching); ok {
		return l.regressed()
	}
	return time.Time{}, false
}

// Latch restores a regressed decision taken for deploy d before a restart:
// the test of d starts regressed, as it was when Guardian stopped. A later
// Reset forgets it.
func (t *Trigger) Latch(d Deploy, at time.Time) {
	if l, ok := t.m.(latching); ok {
		l.restore(d, at)
	}
}

// latched is a regressed decision restored after a restart.
type latched struct {
	deploy Deploy
	at     time.Time
}
