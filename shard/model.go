package shard

import (
	"errors"
	"fmt"
	"time"
)

// Timings are the timings of the shard Leases, named as in client-go's
// leader election.
type Timings struct {
	// LeaseDuration is how long a Lease stays valid after its last
	// renewal: another replica may take it only after that.
	LeaseDuration time.Duration
	// RenewDeadline is how long after its last successful renewal a holder
	// goes on driving a shard's services when it cannot renew. It must be
	// shorter than LeaseDuration, by more than RetryPeriod.
	RenewDeadline time.Duration
	// RetryPeriod is the time between two ticks of a replica: each tick
	// renews what it holds and calls Desired.
	RetryPeriod time.Duration
}

// DefaultTimings returns client-go's usual leader-election timings:
// LeaseDuration 15s, RenewDeadline 10s, RetryPeriod 2s.
func DefaultTimings() Timings {
	return Timings{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
}

// Expiry is how a replica decides that a Lease it reads has expired.
type Expiry int

const (
	// ExpiryRenewTime: the Lease's renewTime plus LeaseDuration is past.
	// Exact, but only with synchronised clocks.
	ExpiryRenewTime Expiry = iota
	// ExpiryObserved: LeaseDuration has passed since this replica last saw
	// the Lease change, as client-go's leader election judges it; immune
	// to clock skew, up to a RetryPeriod slower.
	ExpiryObserved
)

// State is the state of a replica in a Model.
type State int

// The states of a replica.
const (
	Running     State = iota // ticks: reads, renews, acquires, releases
	Partitioned              // cannot reach the API server; drives its shards until RenewDeadline
	Crashed                  // gone at once, without releasing anything
	Left                     // left gracefully: released everything
)

// Handoff is one acquisition of a shard in a Model.
type Handoff struct {
	At    time.Duration
	Shard int
	// From is the previous replica to drive the shard, "" for the first.
	From, To string
	// Undriven is how long no replica drove the shard before To took it
	// (since the start of the model for the first acquisition).
	Undriven time.Duration
}

// Violation is a moment at which more than one replica drove a shard.
type Violation struct {
	At       time.Duration
	Shard    int
	Replicas []string
}

// Model simulates replicas that each run a Lease controller calling
// Desired at every RetryPeriod, against an API server holding one Lease
// per shard and one membership Lease per replica (a replica's members are
// those whose membership Lease it does not consider expired; it deletes
// the expired ones). Writes are
// atomic and instant; a replica's tick (read everything, renew, release,
// acquire) happens at one instant. A replica drives a shard's services
// from its acquisition until it releases it, crashes, leaves, or
// RenewDeadline passes since its last successful renewal. Time is simulated
// and starts at 0.
type Model struct {
	timings  Timings
	expiry   Expiry
	now      time.Duration
	version  uint64
	shards   []record
	members  map[string]record
	replicas []*replica
	byName   map[string]*replica

	lastDriver []string
	driveEnd   []time.Duration

	writes     int
	checks     int
	handoffs   []Handoff
	violations []Violation
}

type record struct {
	holder  string
	renew   time.Duration
	version uint64
}

type seen struct {
	version uint64
	at      time.Duration
}

type replica struct {
	name       string
	state      State
	next       time.Duration
	held       map[int]time.Duration // shard → last successful renewal
	seen       []seen
	seenMember map[string]seen
}

// ErrReplica is returned for an event on a replica that cannot take it.
var ErrReplica = errors.New("replica cannot take this event")

// NewModel returns a model of shards Leases, all free, and no replica.
func NewModel(shards int, t Timings, e Expiry) *Model {
	return &Model{
		timings:    t,
		expiry:     e,
		shards:     make([]record, shards),
		members:    map[string]record{},
		byName:     map[string]*replica{},
		lastDriver: make([]string, shards),
		driveEnd:   make([]time.Duration, shards),
	}
}

// Now returns the simulated time.
func (m *Model) Now() time.Duration { return m.now }

// Join starts a replica whose first tick comes after phase.
func (m *Model) Join(name string, phase time.Duration) error {
	if _, ok := m.byName[name]; ok || name == "" {
		return fmt.Errorf("joining %q: %w: the name is taken or empty", name, ErrReplica)
	}
	r := &replica{
		name: name, next: m.now + phase, held: map[int]time.Duration{},
		seen: make([]seen, len(m.shards)), seenMember: map[string]seen{},
	}
	m.replicas = append(m.replicas, r)
	m.byName[name] = r
	return nil
}

func (m *Model) replica(name string, want State, event string) (*replica, error) {
	r, ok := m.byName[name]
	if !ok || r.state != want {
		return nil, fmt.Errorf("%s %q: %w", event, name, ErrReplica)
	}
	return r, nil
}

// Leave makes a running replica leave gracefully: it stops driving its
// shards, releases their Leases and deletes its membership Lease.
func (m *Model) Leave(name string) error {
	r, err := m.replica(name, Running, "leaving")
	if err != nil {
		return err
	}
	for s := range r.held {
		m.stop(r, s, m.now)
		m.write(s, "")
	}
	clear(r.held)
	delete(m.members, name)
	m.writes++
	r.state = Left
	return nil
}

// Crash stops a running or partitioned replica at once, releasing nothing.
func (m *Model) Crash(name string) error {
	r, ok := m.byName[name]
	if !ok || (r.state != Running && r.state != Partitioned) {
		return fmt.Errorf("crashing %q: %w", name, ErrReplica)
	}
	for s := range r.held {
		m.stop(r, s, min(m.now, r.held[s]+m.timings.RenewDeadline))
	}
	clear(r.held)
	r.state = Crashed
	return nil
}

// Partition cuts a running replica off the API server: it keeps ticking
// but every read and write fails.
func (m *Model) Partition(name string) error {
	r, err := m.replica(name, Running, "partitioning")
	if err != nil {
		return err
	}
	r.state = Partitioned
	return nil
}

// Heal reconnects a partitioned replica.
func (m *Model) Heal(name string) error {
	r, err := m.replica(name, Partitioned, "healing")
	if err != nil {
		return err
	}
	r.state = Running
	return nil
}

// Step runs the next tick, at whatever time it is due, and reports whether
// there was one (there is none when no replica is running or partitioned).
func (m *Model) Step() bool {
	r := m.nextReplica()
	if r == nil {
		return false
	}
	m.Advance(r.next - m.now)
	return true
}

func (m *Model) nextReplica() *replica {
	var next *replica
	for _, r := range m.replicas {
		if (r.state == Running || r.state == Partitioned) && (next == nil || r.next < next.next) {
			next = r
		}
	}
	return next
}

// Advance runs every tick due in the next d, in time order, checking after
// each that no shard has two drivers.
func (m *Model) Advance(d time.Duration) {
	end := m.now + d
	for {
		next := m.nextReplica()
		if next == nil || next.next > end {
			break
		}
		m.now = next.next
		m.tick(next)
		next.next += m.timings.RetryPeriod
		m.check()
	}
	m.now = end
}

func (m *Model) tick(r *replica) {
	t := m.now
	rd := m.timings.RenewDeadline
	if r.state == Partitioned {
		for s, last := range r.held {
			if t >= last+rd {
				m.stop(r, s, last+rd)
				delete(r.held, s)
			}
		}
		return
	}
	for s, rec := range m.shards {
		if rec.version != r.seen[s].version {
			r.seen[s] = seen{rec.version, t}
		}
	}
	for name, rec := range m.members {
		if rec.version != r.seenMember[name].version {
			r.seenMember[name] = seen{rec.version, t}
		}
	}
	// Shards it no longer holds (it could not renew in time): forget them.
	for s, last := range r.held {
		if m.shards[s].holder != r.name || t >= last+rd {
			m.stop(r, s, min(t, last+rd))
			delete(r.held, s)
		}
	}
	m.version++
	m.members[r.name] = record{holder: r.name, renew: t, version: m.version}
	m.writes++
	for s := range r.held {
		m.write(s, r.name)
		r.held[s] = t
	}
	// A Lease still in its name that it stopped driving (after a
	// partition shorter than LeaseDuration): release it, and let Desired
	// decide who takes it.
	for s, rec := range m.shards {
		if _, ok := r.held[s]; !ok && rec.holder == r.name {
			m.write(s, "")
		}
	}

	// Members whose membership Lease expired are deleted, so that a
	// replica starting later does not take them for live while it waits
	// out a LeaseDuration of its own.
	members := []string{r.name}
	for name, rec := range m.members {
		switch {
		case name == r.name:
		case m.expired(rec, r.seenMember[name], t):
			delete(m.members, name)
			m.writes++
		default:
			members = append(members, name)
		}
	}
	holders := make([]string, len(m.shards))
	for s, rec := range m.shards {
		if rec.holder != "" && !m.expired(rec, r.seen[s], t) {
			holders[s] = rec.holder
		}
	}
	acquire, release := Desired(r.name, members, holders)
	for _, s := range release {
		m.stop(r, s, t)
		delete(r.held, s)
		m.write(s, "")
	}
	for _, s := range acquire {
		m.start(r, s)
	}
	for s := range r.held {
		r.seen[s] = seen{m.shards[s].version, t}
	}
}

func (m *Model) expired(rec record, sn seen, t time.Duration) bool {
	if m.expiry == ExpiryObserved {
		return t >= sn.at+m.timings.LeaseDuration
	}
	return t >= rec.renew+m.timings.LeaseDuration
}

func (m *Model) write(s int, holder string) {
	m.version++
	m.shards[s] = record{holder: holder, renew: m.now, version: m.version}
	m.writes++
}

// start makes r acquire shard s now and records the handoff, and a
// violation if another replica still drives s.
func (m *Model) start(r *replica, s int) {
	var others []string
	for _, q := range m.replicas {
		if q == r {
			continue
		}
		if last, ok := q.held[s]; ok && q.state == Partitioned && m.now >= last+m.timings.RenewDeadline {
			m.stop(q, s, last+m.timings.RenewDeadline)
			delete(q.held, s)
		}
		if m.driving(q, s) {
			others = append(others, q.name)
		}
	}
	if len(others) > 0 {
		m.violations = append(m.violations, Violation{At: m.now, Shard: s, Replicas: append(others, r.name)})
	}
	h := Handoff{At: m.now, Shard: s, From: m.lastDriver[s], To: r.name, Undriven: m.now - m.driveEnd[s]}
	m.handoffs = append(m.handoffs, h)
	m.write(s, r.name)
	r.held[s] = m.now
}

func (m *Model) stop(r *replica, s int, at time.Duration) {
	m.lastDriver[s] = r.name
	m.driveEnd[s] = at
}

func (m *Model) driving(r *replica, s int) bool {
	last, ok := r.held[s]
	return ok && (r.state == Running || r.state == Partitioned) && m.now < last+m.timings.RenewDeadline
}

func (m *Model) check() {
	m.checks++
	count := make([]int, len(m.shards))
	for _, r := range m.replicas {
		for s := range r.held {
			if m.driving(r, s) {
				count[s]++
			}
		}
	}
	for s, c := range count {
		if c > 1 {
			var who []string
			for _, r := range m.replicas {
				if m.driving(r, s) {
					who = append(who, r.name)
				}
			}
			m.violations = append(m.violations, Violation{At: m.now, Shard: s, Replicas: who})
		}
	}
}

// Owners returns the replica driving each shard now, "" for none.
func (m *Model) Owners() []string {
	owners := make([]string, len(m.shards))
	for _, r := range m.replicas {
		for s := range r.held {
			if m.driving(r, s) {
				owners[s] = r.name
			}
		}
	}
	return owners
}

// Running returns the running replicas, in the order they joined.
func (m *Model) Running() []string {
	var names []string
	for _, r := range m.replicas {
		if r.state == Running {
			names = append(names, r.name)
		}
	}
	return names
}

// Settled reports whether every shard is driven by a running replica and
// Assign over the running replicas would move none of them.
func (m *Model) Settled() bool {
	owners := m.Owners()
	for _, o := range owners {
		if o == "" || m.byName[o].state != Running {
			return false
		}
	}
	target := Assign(m.Running(), owners)
	for s := range owners {
		if target[s] != owners[s] {
			return false
		}
	}
	return true
}

// Writes returns the number of Lease writes so far: renewals, acquisitions,
// releases, membership renewals and deletions.
func (m *Model) Writes() int { return m.writes }

// Checks returns how many times the model checked for double drivers (after
// every tick).
func (m *Model) Checks() int { return m.checks }

// Handoffs returns every acquisition so far, in time order.
func (m *Model) Handoffs() []Handoff { return m.handoffs }

// Violations returns every moment a shard had two drivers; a correct
// controller has none.
func (m *Model) Violations() []Violation { return m.violations }
