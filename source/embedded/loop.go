package embedded

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// schedule is when a Source's scrape loop scrapes: once as it starts
// (first), then at the times of a grid of the interval whose phase is one
// of scrapePhases, the target's by a hash of its URL. Prometheus spreads
// its targets' scrapes likewise, over every phase of the interval. A
// thousand sources started together scrape in eight groups instead of all
// at once, and the evaluations timed just after the scrapes (NextScrape)
// spread the same way: fewer scrapes and ticks at once, fewer of their
// buffers live together.
type schedule struct {
	first time.Time
	// offset is the grid's phase: the grid times t are those whose Unix
	// time in nanoseconds, minus offset, is a multiple of the interval.
	offset time.Duration
}

// scrapePhases is how many phases of the interval the sources' scrapes
// are spread over. Each scrape or evaluation alone wakes the process (and
// the target) for itself: spread over every phase, a thousand services
// took a fifth more CPU per tick than in eight groups, for 3% less
// resident memory; all at once, 5% less CPU and 7% more memory (the
// footprint benchmark, docs/benchmarks.md).
const scrapePhases = 8

// newSchedule returns the schedule of a loop of s starting at first.
func (s *Source) newSchedule(first time.Time) *schedule {
	phase := time.Duration(xxhash.Sum64String(s.url) % scrapePhases)
	return &schedule{first: first, offset: phase * (s.interval / scrapePhases)}
}

// gridAt returns the first time of sc's grid at or after t.
func (sc *schedule) gridAt(t time.Time, interval time.Duration) time.Time {
	r := (t.UnixNano() - int64(sc.offset)) % int64(interval)
	if r < 0 {
		r += int64(interval)
	}
	if r == 0 {
		return t
	}
	return t.Add(interval - time.Duration(r))
}

// scrapeLoop scrapes a Source on its schedule without a goroutine of its
// own between scrapes: a timer starts each scrape in a goroutine that lives
// as long as the scrape and sets the timer for the next one. A thousand
// idle loops cost a thousand timers, not a thousand goroutines' stacks.
type scrapeLoop struct {
	src *Source
	ctx context.Context
	sc  *schedule

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	// running counts the scrape under way (0 or 1); stop waits for it.
	running sync.WaitGroup
	// unwatch ends the watch of ctx (context.AfterFunc).
	unwatch func() bool
}

// startLoop scrapes s at once and then on sc until ctx is done or stop.
func (s *Source) startLoop(ctx context.Context, sc *schedule) *scrapeLoop {
	l := &scrapeLoop{src: s, ctx: ctx, sc: sc}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = time.AfterFunc(time.Until(sc.first), l.scrape)
	l.unwatch = context.AfterFunc(ctx, l.halt)
	return l
}

// scrape runs one scrape and sets the timer for the next, skipping the
// times a scrape that overran missed.
func (l *scrapeLoop) scrape() {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return
	}
	l.running.Add(1)
	l.mu.Unlock()
	defer l.running.Done()

	if err := l.src.ScrapeOnce(l.ctx); errors.Is(err, ErrClosed) {
		l.halt()
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.timer.Reset(l.src.nextScrape(l.sc, now.Add(time.Nanosecond)).Sub(now))
	}
}

// halt schedules no further scrape; one under way goes on.
func (l *scrapeLoop) halt() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	l.timer.Stop()
}

// stop ends the loop and waits for a scrape under way: cancel the loop's
// context first to cut it short.
func (l *scrapeLoop) stop() {
	l.halt()
	l.unwatch()
	l.running.Wait()
}
