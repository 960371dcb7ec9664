package trigger

import (
	"time"

	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// Regressed reports whether the sequential test decided, for the deploy
// it judges now, that the version regressed, and when: the decision
// stands for the deploy, also across a restart (see Latch). Triggers
// without a sequential test never regressed.
func (t *Trigger) Regressed() (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seq == nil || t.seq.decision != sequential.Regressed {
		return time.Time{}, false
	}
	return t.seq.decidedAt, true
}

// Latch restores a regressed decision taken for deploy d before a restart:
// the test of d starts regressed, as it was when Guardian stopped. A later
// Reset forgets it.
func (t *Trigger) Latch(d Deploy, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.latch = &latched{deploy: d, at: at}
	if t.seq != nil && t.seq.deploy.Equal(d) {
		t.seq.decision, t.seq.decidedAt = sequential.Regressed, at
	}
}

// latched is a regressed decision restored after a restart.
type latched struct {
	deploy Deploy
	at     time.Time
}
