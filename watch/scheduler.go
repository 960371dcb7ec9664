package watch

import (
	"container/heap"
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Scheduler runs the ticks of many services on a bounded pool of workers
// instead of a goroutine each: a service's ticks fall every interval from
// its first one, as with a time.Ticker, but they share the workers, so a
// thousand services need far fewer goroutines (and stacks), and at most as
// many ticks as workers run at once. Workers are started as ticks fall and
// find every worker busy: at once up to twice GOMAXPROCS (ticks that
// compute need no more), then one for each tick that waited spawnAfter (a second),
// up to the bound: ticks that wait on the network (a slow remote
// Prometheus, a target slow to answer its scrape) take workers of their
// own instead of stalling every other service.
//
// One service's ticks never overlap: a tick that falls while the service's
// previous one still runs is skipped, and the next is the first of its
// times after that one ends. One slow service holds up only the worker
// running it. When every worker is busy, a due tick waits for the first
// free one, in the order the ticks fell.
//
// Make one with NewScheduler. It runs goroutines only while something is
// scheduled on it, so it needs no stopping of its own.
type Scheduler struct {
	workers int
	delay   prometheus.Histogram
	skipped prometheus.Counter

	mu      sync.Mutex
	pending entries  // scheduled, by time of the next tick
	ready   []*entry // due, waiting for a worker, in the order they fell
	n       int      // scheduled and not stopped
	pool    *pool    // running while n > 0
}

// pool is the goroutines of a Scheduler: the timer loop and the workers.
type pool struct {
	workers int           // started
	idle    int           // waiting for a tick
	work    *sync.Cond    // on Scheduler.mu: a tick is ready, or quit
	wake    chan struct{} // the earliest pending tick changed
	quit    chan struct{} // closed when the pool should end
	done    bool          // quit is closed
	wg      sync.WaitGroup
}

// entry is one scheduled function. It is in one place at a time: pending
// (index ≥ 0), ready (queued), running, or stopped.
type entry struct {
	ctx      context.Context
	cancel   context.CancelFunc
	f        func(context.Context)
	interval time.Duration
	next     time.Time // when the next tick falls
	readyAt  time.Time // when it was queued for a worker
	index    int       // in Scheduler.pending; -1 when not there
	queued   bool      // in Scheduler.ready
	running  bool
	stopped  bool
	ended    chan struct{} // closed when a tick that was running when stopped returns
}

// spawnAfter is how long a due tick waits for a busy pool before a worker
// beyond twice GOMAXPROCS is started for it: longer than a burst of
// computing ticks takes to drain (a thousand services whose scrapes, and
// so ticks, fall within the same half second), shorter than an interval.
const spawnAfter = time.Second

// DefaultWorkers bounds a Scheduler's workers unless NewScheduler is told
// otherwise: enough for the ticks of hundreds of services waiting on a slow
// source at once, a few MiB of stacks at most.
const DefaultWorkers = 256

// NewScheduler returns a scheduler running at most workers ticks at once
// (workers ≤ 0 means DefaultWorkers, at least twice GOMAXPROCS) and
// registers its metrics with reg unless it is nil: how late ticks start and
// how many were skipped.
func NewScheduler(workers int, reg prometheus.Registerer) *Scheduler {
	if workers <= 0 {
		workers = max(DefaultWorkers, 2*runtime.GOMAXPROCS(0))
	}
	s := &Scheduler{
		workers: workers,
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "guardian_tick_delay_seconds",
			Help:    "How late evaluation ticks start after their time: long delays mean every tick worker is busy (slow queries, or too many services for the CPUs).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "guardian_ticks_skipped_total",
			Help: "Evaluation ticks skipped because the service's previous tick still ran at their time.",
		}),
	}
	if reg != nil {
		reg.MustRegister(s.delay, s.skipped)
	}
	return s
}

// started returns how many workers the running pool has started.
func (s *Scheduler) started() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pool == nil {
		return 0
	}
	return s.pool.workers
}

// Workers returns how many ticks may run at once.
func (s *Scheduler) Workers() int { return s.workers }

// Schedule calls f every interval, the first time after delay (at once
// when delay ≤ 0), until ctx ends or stop is called. f gets a context that
// stop cancels. stop cancels it, unschedules f and, when a call of f is
// under way, waits for it to return; it may be called more than once, but
// not from f. Schedule panics if interval is not positive, as
// time.NewTicker does.
func (s *Scheduler) Schedule(ctx context.Context, interval, delay time.Duration, f func(context.Context)) (stop func()) {
	if interval <= 0 {
		panic("watch: non-positive interval for Scheduler.Schedule")
	}
	ctx, cancel := context.WithCancel(ctx)
	e := &entry{ctx: ctx, cancel: cancel, f: f, interval: interval, next: time.Now().Add(max(delay, 0)), index: -1, ended: make(chan struct{})}
	s.mu.Lock()
	s.n++
	if s.pool == nil {
		s.start()
	}
	s.push(e)
	s.mu.Unlock()
	return func() { s.stop(e) }
}

// start starts a pool; s.mu is held.
func (s *Scheduler) start() {
	p := &pool{work: sync.NewCond(&s.mu), wake: make(chan struct{}, 1), quit: make(chan struct{})}
	s.pool = p
	p.wg.Add(1)
	go s.timers(p)
}

// enqueue queues e for a worker, starting one when none is idle and
// fewer than twice GOMAXPROCS run; s.mu is held.
func (s *Scheduler) enqueue(p *pool, e *entry, now time.Time) {
	e.queued, e.readyAt = true, now
	s.ready = append(s.ready, e)
	if p.idle > len(s.ready)-1 {
		p.work.Signal()
		return
	}
	if p.workers < min(s.workers, 2*runtime.GOMAXPROCS(0)) {
		s.spawn(p)
	}
}

// spawn starts a worker; s.mu is held.
func (s *Scheduler) spawn(p *pool) {
	p.workers++
	p.wg.Add(1)
	go s.worker(p)
}

// spawnForWaiting starts a worker for each ready tick that waited
// spawnAfter with no worker free, up to the bound, and returns how long
// until the next one would have (-1: none waits); s.mu is held.
func (s *Scheduler) spawnForWaiting(p *pool, now time.Time) time.Duration {
	waiting := len(s.ready) - p.idle // ready ticks no idle worker is about to take
	for i := 0; i < waiting && p.workers < s.workers; i++ {
		since := now.Sub(s.ready[len(s.ready)-waiting+i].readyAt)
		if since < spawnAfter {
			return spawnAfter - since
		}
		s.spawn(p)
	}
	return -1
}

// push adds e to the pending ticks; s.mu is held.
func (s *Scheduler) push(e *entry) {
	heap.Push(&s.pending, e)
	if e.index == 0 {
		select {
		case s.pool.wake <- struct{}{}:
		default:
		}
	}
}

// stop is Schedule's stop for e; the last one ends the pool and waits for
// its goroutines.
func (s *Scheduler) stop(e *entry) {
	e.cancel()
	s.mu.Lock()
	if e.stopped {
		s.mu.Unlock()
		return
	}
	e.stopped = true
	switch {
	case e.index >= 0:
		heap.Remove(&s.pending, e.index)
	case e.queued:
		for i, r := range s.ready {
			if r == e {
				s.ready = append(s.ready[:i], s.ready[i+1:]...)
				break
			}
		}
		e.queued = false
	}
	running := e.running
	s.mu.Unlock()
	if running {
		<-e.ended
	}

	s.mu.Lock()
	s.n--
	var p *pool
	if s.n == 0 {
		p, s.pool = s.pool, nil
		p.done = true
		close(p.quit)
		p.work.Broadcast()
	}
	s.mu.Unlock()
	if p != nil {
		p.wg.Wait()
	}
}

// timers moves the ticks that fall from pending to ready, in time, until
// p ends.
func (s *Scheduler) timers(p *pool) {
	defer p.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		for len(s.pending) > 0 && !s.pending[0].next.After(now) {
			e := heap.Pop(&s.pending).(*entry)
			if e.ctx.Err() != nil {
				continue // ended with its context: stop is still to come
			}
			s.enqueue(p, e, now)
		}
		wait := s.spawnForWaiting(p, now)
		if len(s.pending) > 0 && (wait < 0 || s.pending[0].next.Sub(now) < wait) {
			wait = s.pending[0].next.Sub(now)
		}
		s.mu.Unlock()
		if wait >= 0 {
			t.Reset(wait)
		} else {
			t.Stop()
		}
		select {
		case <-t.C:
		case <-p.wake:
		case <-p.quit:
			return
		}
	}
}

// worker runs ready ticks until p ends.
func (s *Scheduler) worker(p *pool) {
	defer p.wg.Done()
	for {
		e := s.take(p)
		if e == nil {
			return
		}
		if e.ctx.Err() == nil {
			e.f(e.ctx)
		}
		s.done(e)
	}
}

// take waits for a ready tick and marks it running; it returns nil when
// p ends.
func (s *Scheduler) take(p *pool) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.ready) == 0 && !p.done {
		p.idle++
		p.work.Wait()
		p.idle--
	}
	if p.done {
		return nil
	}
	e := s.ready[0]
	s.ready[0] = nil
	s.ready = s.ready[1:]
	e.queued, e.running = false, true
	s.delay.Observe(max(time.Since(e.next), 0).Seconds())
	return e
}

// done schedules the next tick of e, whose tick returned, unless it
// stopped (then stop is told) or its context ended.
func (s *Scheduler) done(e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.running = false
	switch {
	case e.stopped:
		close(e.ended)
	case e.ctx.Err() == nil:
		next := nextTick(e.next, e.interval, time.Now())
		if skipped := next.Sub(e.next)/e.interval - 1; skipped > 0 {
			s.skipped.Add(float64(skipped))
		}
		e.next = next
		s.push(e)
	}
}

// nextTick returns the first of last+interval, last+2×interval, ... at or
// after now: the ticks that fell while the last one ran are skipped.
func nextTick(last time.Time, interval time.Duration, now time.Time) time.Time {
	next := last.Add(interval)
	if next.Before(now) {
		next = next.Add((now.Sub(next) + interval - 1) / interval * interval)
	}
	return next
}

// entries is a heap of entries by time of their next tick.
type entries []*entry

func (h entries) Len() int           { return len(h) }
func (h entries) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h entries) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *entries) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entries) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
