package trigger

import (
	"sync"
	"time"

	"github.com/rollback-guardian/guardian/trigger/sequential"
)

// perDeploy is what a statistical method (the count test, the latency
// test) keeps about the deploy it judges, under its own mutex: the
// pre-deploy baseline snapshot (S), the test in progress (T) and a
// regressed decision restored after a restart (latch). Embedded in the
// method, it gives it begin, reset, regressed and restore.
type perDeploy[S snapshotOf, T testOf] struct {
	mu    sync.Mutex
	snap  S
	state T
	latch *latched
}

// snapshotOf is a method's pre-deploy snapshot of one deploy.
type snapshotOf interface {
	comparable
	deployOf() Deploy
}

// testOf is a method's test of one deploy; its decision is in a decided.
type testOf interface {
	comparable
	deployOf() Deploy
	decisionOf() *decided
}

// decided is a test's decision for its deploy: regressed stays regressed
// for the rest of the deploy.
type decided struct {
	deploy    Deploy
	decision  sequential.Decision
	decidedAt time.Time
}

func (d *decided) deployOf() Deploy     { return d.deploy }
func (d *decided) decisionOf() *decided { return d }

// begin drops the test in progress and the snapshot of another deploy; a
// latched decision stays (it names its deploy).
func (p *perDeploy[S, T]) begin(d Deploy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var noS S
	var noT T
	p.state = noT
	if p.snap != noS && !p.snap.deployOf().Equal(d) {
		p.snap = noS
	}
}

// reset forgets every deploy.
func (p *perDeploy[S, T]) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	var noS S
	var noT T
	p.snap, p.state, p.latch = noS, noT, nil
}

// takeFrom takes over old's state across a config reload.
func (p *perDeploy[S, T]) takeFrom(old *perDeploy[S, T]) {
	old.mu.Lock()
	snap, state, latch := old.snap, old.state, old.latch
	old.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.snap, p.state, p.latch = snap, state, latch
}

// regressed reports whether the test in progress decided regressed, and
// when.
func (p *perDeploy[S, T]) regressed() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var noT T
	if p.state == noT || p.state.decisionOf().decision != sequential.Regressed {
		return time.Time{}, false
	}
	return p.state.decisionOf().decidedAt, true
}

// restore latches a regressed decision taken for d before a restart.
func (p *perDeploy[S, T]) restore(d Deploy, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latch = &latched{deploy: d, at: at}
	var noT T
	if p.state != noT && p.state.deployOf().Equal(d) {
		dec := p.state.decisionOf()
		dec.decision, dec.decidedAt = sequential.Regressed, at
	}
}

// snapshotFor returns the snapshot kept for d; ok is false when there is
// none.
func (p *perDeploy[S, T]) snapshotFor(d Deploy) (s S, ok bool) {
	p.mu.Lock()
	s = p.snap
	p.mu.Unlock()
	var noS S
	return s, s != noS && s.deployOf().Equal(d)
}

// keepSnapshot keeps s.
func (p *perDeploy[S, T]) keepSnapshot(s S) {
	p.mu.Lock()
	p.snap = s
	p.mu.Unlock()
}

// testFor returns the test in progress for d; ok is false when there is
// none.
func (p *perDeploy[S, T]) testFor(d Deploy) (t T, ok bool) {
	p.mu.Lock()
	t = p.state
	p.mu.Unlock()
	var noT T
	return t, t != noT && t.deployOf().Equal(d)
}

// start makes t the test in progress, regressed from the start when a
// decision for its deploy was latched.
func (p *perDeploy[S, T]) start(t T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.latch; l != nil && l.deploy.Equal(t.deployOf()) {
		dec := t.decisionOf()
		dec.decision, dec.decidedAt = sequential.Regressed, l.at
	}
	p.state = t
}

func (s *seqSnapshot) deployOf() Deploy { return s.deploy }
func (s *latSnapshot) deployOf() Deploy { return s.deploy }
