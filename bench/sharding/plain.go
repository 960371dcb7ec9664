package main

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rollback-guardian/guardian/shard"
)

// The plain alternative: every replica renews a membership Lease, reads
// the others', and drives the services whose highest rendezvous weight
// among the members it sees is its own. No shard, no per-service Lease. A
// replica that cannot renew its membership for RenewDeadline stops
// driving anything (the same fencing the shard Leases give).

type plainReplica struct {
	name      string
	state     shard.State
	next      time.Duration
	lastRenew time.Duration
	view      string // sorted members it saw at its last tick, joined by spaces
	driving   bool
}

type plainModel struct {
	timings  shard.Timings
	now      time.Duration
	members  map[string]time.Duration // membership Lease renewals
	replicas []*plainReplica
	hashes   []uint64 // per service
	winners  map[string][]string
	checks   int
	doubled  int // checks that found a service driven twice
	maxTwice int // most services driven twice at one check
}

func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// winner returns the owner of every service for a view, cached.
func (p *plainModel) winner(view string) []string {
	if w, ok := p.winners[view]; ok {
		return w
	}
	members := strings.Fields(view)
	mh := make([]uint64, len(members))
	for i, m := range members {
		mh[i] = mix(hash64(m))
	}
	w := make([]string, len(p.hashes))
	for v, h := range p.hashes {
		best := uint64(0)
		for i, m := range members {
			if x := mix(h ^ mh[i]); x >= best {
				best, w[v] = x, m
			}
		}
	}
	p.winners[view] = w
	return w
}

func (p *plainModel) tick(r *plainReplica) {
	t := p.now
	if r.state == shard.Partitioned {
		if t >= r.lastRenew+p.timings.RenewDeadline {
			r.driving = false
		}
		return
	}
	p.members[r.name] = t
	r.lastRenew = t
	var view []string
	for name, renew := range p.members {
		if t < renew+p.timings.LeaseDuration {
			view = append(view, name)
		}
	}
	slices.Sort(view)
	r.view = strings.Join(view, " ")
	r.driving = true
}

func (p *plainModel) step() bool {
	var next *plainReplica
	for _, r := range p.replicas {
		if (r.state == shard.Running || r.state == shard.Partitioned) && (next == nil || r.next < next.next) {
			next = r
		}
	}
	if next == nil {
		return false
	}
	p.now = next.next
	p.tick(next)
	next.next += p.timings.RetryPeriod
	p.check()
	return true
}

// drivers returns, per service, the replicas driving it now.
func (p *plainModel) drivers() [][]string {
	out := make([][]string, len(p.hashes))
	for _, r := range p.replicas {
		if !r.driving {
			continue
		}
		for v, w := range p.winner(r.view) {
			if w == r.name {
				out[v] = append(out[v], r.name)
			}
		}
	}
	return out
}

func (p *plainModel) check() {
	p.checks++
	twice := 0
	for _, d := range p.drivers() {
		if len(d) > 1 {
			twice++
		}
	}
	if twice > 0 {
		p.doubled++
		p.maxTwice = max(p.maxTwice, twice)
	}
}

func (p *plainModel) running() []string {
	var names []string
	for _, r := range p.replicas {
		if r.state == shard.Running {
			names = append(names, r.name)
		}
	}
	return names
}

// settled: every running replica sees exactly the running replicas, and
// nobody else drives anything.
func (p *plainModel) settled() bool {
	want := slices.Sorted(slices.Values(p.running()))
	key := strings.Join(want, " ")
	for _, r := range p.replicas {
		if r.state == shard.Running && (!r.driving || r.view != key) {
			return false
		}
		if r.state != shard.Running && r.driving {
			return false
		}
	}
	return true
}

func simulatePlain(o options, n int, synthetic, random []string) (string, error) {
	timings := shard.DefaultTimings()
	rng := rand.New(rand.NewPCG(o.seed, 0x91a1))
	p := &plainModel{timings: timings, members: map[string]time.Duration{}, winners: map[string][]string{}}
	for _, s := range synthetic {
		p.hashes = append(p.hashes, hash64(s))
	}
	names := 0
	startReplica := func() *plainReplica {
		r := &plainReplica{name: fmt.Sprintf("guardian-%d", names), next: p.now + time.Duration(rng.Int64N(int64(timings.RetryPeriod)))}
		names++
		p.replicas = append(p.replicas, r)
		return r
	}
	for range n {
		startReplica()
	}
	settle := func() error {
		start := p.now
		for !p.settled() {
			if p.now-start > settleLimit || !p.step() {
				return fmt.Errorf("plain rendezvous not settled %v after %v", settleLimit, start)
			}
		}
		return nil
	}
	if err := settle(); err != nil {
		return "", err
	}
	owner := func() []string {
		out := make([]string, len(p.hashes))
		for v, d := range p.drivers() {
			if len(d) == 1 {
				out[v] = d[0]
			}
		}
		return out
	}
	balance := func(names []string) float64 {
		hashes := p.hashes
		p.hashes = nil
		for _, s := range names {
			p.hashes = append(p.hashes, hash64(s))
		}
		saved := p.winners
		p.winners = map[string][]string{}
		load := map[string]int{}
		for _, o := range owner() {
			load[o]++
		}
		p.hashes, p.winners = hashes, saved
		mx := 0
		for _, r := range p.running() {
			mx = max(mx, load[r])
		}
		return float64(mx) / (float64(len(names)) / float64(len(p.running())))
	}
	balSynthetic, balRandom := balance(synthetic), balance(random)
	startSynthetic, startRandom := balSynthetic, balRandom
	// At the start every replica drives every service until it sees the
	// others: count only what the events do.
	coldChecks, coldDoubled, coldMax := p.checks, p.doubled, p.maxTwice
	p.checks, p.doubled, p.maxTwice = 0, 0, 0

	var (
		moved    [kinds][]int
		settled  [kinds]time.Duration
		stray    int
		events   int
		isolated *plainReplica
	)
	sequence := []eventKind{join, join, leave, crash, partition, heal}
	for range o.cycles {
		for _, kind := range sequence {
			before := owner()
			t0 := p.now
			var running []*plainReplica
			for _, r := range p.replicas {
				if r.state == shard.Running {
					running = append(running, r)
				}
			}
			var who *plainReplica
			switch kind {
			case join:
				who = startReplica()
			case leave:
				who = running[rng.IntN(len(running))]
				who.state, who.driving = shard.Left, false
				delete(p.members, who.name)
			case crash:
				who = running[rng.IntN(len(running))]
				who.state, who.driving = shard.Crashed, false
			case partition:
				who = running[rng.IntN(len(running))]
				who.state = shard.Partitioned
				isolated = who
			case heal:
				who = isolated
				who.state = shard.Running
			}
			if err := settle(); err != nil {
				return "", fmt.Errorf("after %s of %s: %w", kindName[kind], who.name, err)
			}
			events++
			settled[kind] = max(settled[kind], p.now-t0)
			after := owner()
			count := 0
			for v := range after {
				if after[v] == before[v] {
					continue
				}
				count++
				if (kind == join || kind == heal) && after[v] != who.name || (kind != join && kind != heal) && before[v] != who.name {
					stray++
				}
			}
			moved[kind] = append(moved[kind], count)
			b1, b2 := balance(synthetic), balance(random)
			balSynthetic, balRandom = max(balSynthetic, b1), max(balRandom, b2)
		}
	}
	fmt.Fprintf(os.Stderr, "sharding: plain rendezvous at the start: %d ticks, %d with a service driven twice, up to %d services\n", coldChecks, coldDoubled, coldMax)
	return fmt.Sprintf("| none: rendezvous per service | %d | %.3f / %.3f | %.3f / %.3f | – | – | %s / %s / %s | %d of %d events | %s / %s / %s / %s | – | %d / %d (up to %d services driven twice) | %.2f |",
		n, startSynthetic, startRandom, balSynthetic, balRandom,
		mean(moved[join]), mean(moved[leave]), mean(moved[crash]),
		stray, events,
		secs(settled[join]), secs(settled[leave]), secs(settled[crash]), secs(settled[partition]),
		p.checks, p.doubled, p.maxTwice, 1/timings.RetryPeriod.Seconds()), nil
}
