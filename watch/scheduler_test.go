package watch

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// ticks records when a scheduled function is called, relative to a start
// time, and how many of its calls ran at once at most.
type ticks struct {
	start time.Time
	hold  time.Duration // each call's duration (on the bubble's clock)

	mu         sync.Mutex
	at         []time.Duration
	running    int
	overlapped int
}

func newTicks(hold time.Duration) *ticks { return &ticks{start: time.Now(), hold: hold} }

func (k *ticks) tick(ctx context.Context) {
	k.mu.Lock()
	k.at = append(k.at, time.Since(k.start))
	k.running++
	k.overlapped = max(k.overlapped, k.running)
	k.mu.Unlock()
	if k.hold > 0 {
		time.Sleep(k.hold)
	}
	k.mu.Lock()
	k.running--
	k.mu.Unlock()
}

func (k *ticks) times() []time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.at)
}

func secs(ss ...float64) []time.Duration {
	d := make([]time.Duration, len(ss))
	for i, s := range ss {
		d[i] = time.Duration(s * float64(time.Second))
	}
	return d
}

// Ticks fall every interval from the first, which comes at once or after
// the delay; a tick that falls while the previous one runs is skipped.
func TestSchedulerTicks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		delay   time.Duration
		hold    time.Duration // how long each tick runs
		want    []time.Duration
		skipped float64
	}{
		{"at once", 0, 0, secs(0, 5, 10, 15, 20), 0},
		{"negative delay", -time.Second, 0, secs(0, 5, 10, 15, 20), 0},
		{"aligned", 2 * time.Second, 0, secs(2, 7, 12, 17, 22), 0},
		{"slower than the interval", 0, 7 * time.Second, secs(0, 10, 20), 2},
		{"as long as the interval", 0, 5 * time.Second, secs(0, 5, 10, 15, 20), 0},
		{"aligned and slow", time.Second, 12 * time.Second, secs(1, 16), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				k := newTicks(tc.hold)
				s := NewScheduler(4, prometheus.NewRegistry())
				stop := s.Schedule(context.Background(), 5*time.Second, tc.delay, k.tick)
				time.Sleep(23 * time.Second)
				stop()
				if got := testutil.ToFloat64(s.skipped); got != tc.skipped {
					t.Errorf("%v ticks skipped, want %v", got, tc.skipped)
				}
				if got := k.times(); !slices.Equal(got, tc.want) {
					t.Errorf("ticks at %v, want %v", got, tc.want)
				}
				if k.overlapped != 1 {
					t.Errorf("%d ticks ran at once", k.overlapped)
				}
			})
		})
	}
}

// stop cancels the tick under way and returns once it returned; no tick
// follows. Another function keeps the scheduler's goroutines running.
func TestSchedulerStopWaitsForTheTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(2, nil)
		other := newTicks(0)
		defer s.Schedule(context.Background(), time.Second, 0, other.tick)()
		started, release := make(chan struct{}), make(chan struct{})
		calls := 0
		stop := s.Schedule(context.Background(), time.Second, 0, func(ctx context.Context) {
			calls++
			if calls > 1 {
				return
			}
			close(started)
			<-ctx.Done()
			<-release
		})
		<-started
		stopped := make(chan struct{})
		go func() {
			stop()
			close(stopped)
		}()
		synctest.Wait()
		select {
		case <-stopped:
			t.Fatal("stop returned while the tick ran")
		default:
		}
		close(release)
		<-stopped
		time.Sleep(time.Minute)
		if calls != 1 {
			t.Errorf("%d calls, want 1", calls)
		}
		stop() // again: nothing to do
	})
}

// A tick that never ends holds up one worker and no other service; with
// as many stuck services as workers, the others wait.
func TestSchedulerSlowServiceHoldsOneWorker(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers int
		want    []time.Duration
	}{
		{"two workers", 2, secs(0, 5, 10)},
		{"one worker", 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := NewScheduler(tc.workers, nil)
				stuck := s.Schedule(context.Background(), time.Second, 0, func(ctx context.Context) { <-ctx.Done() })
				synctest.Wait() // the stuck tick holds its worker
				b, c := newTicks(0), newTicks(0)
				stopB := s.Schedule(context.Background(), 5*time.Second, 0, b.tick)
				stopC := s.Schedule(context.Background(), 5*time.Second, 0, c.tick)
				time.Sleep(12 * time.Second)
				for name, k := range map[string]*ticks{"b": b, "c": c} {
					if got := k.times(); !slices.Equal(got, tc.want) {
						t.Errorf("%s ticks at %v, want %v", name, got, tc.want)
					}
				}
				stuck()
				stopB()
				stopC()
			})
		})
	}
}

// With the default bound, ticks waiting on the network (here, forever)
// take workers of their own and the other services tick on time; ticks
// that return at once, spread over the interval, share one worker.
func TestSchedulerWorkersOnDemand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(0, nil)
		var stops []func()
		for range 20 {
			stops = append(stops, s.Schedule(context.Background(), time.Second, 0, func(ctx context.Context) { <-ctx.Done() }))
		}
		time.Sleep(spawnAfter)
		synctest.Wait()
		if got := s.started(); got != 20 {
			t.Errorf("%d workers for 20 blocked ticks after %s, want 20", got, spawnAfter)
		}
		live := newTicks(0)
		stops = append(stops, s.Schedule(context.Background(), 5*time.Second, 0, live.tick))
		time.Sleep(12 * time.Second)
		// Its first tick waits spawnAfter for a worker of its own, which then
		// has nothing else to do.
		if got, want := live.times(), []time.Duration{spawnAfter, 5 * time.Second, 10 * time.Second}; !slices.Equal(got, want) {
			t.Errorf("a live service beside 20 blocked ones ticks at %v, want %v", got, want)
		}
		for _, stop := range stops {
			stop()
		}

		for i := range 50 {
			stops = append(stops, s.Schedule(context.Background(), time.Second, time.Duration(i)*10*time.Millisecond, func(context.Context) {}))
		}
		time.Sleep(3 * time.Second)
		if got := s.started(); got != 1 {
			t.Errorf("%d workers for 50 instant ticks spread over the interval, want 1", got)
		}
		for _, stop := range stops {
			stop()
		}
	})
}

// stop drops a tick that waits for a worker: it never runs.
func TestSchedulerStopWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(1, nil)
		stuck := s.Schedule(context.Background(), time.Second, 0, func(ctx context.Context) { <-ctx.Done() })
		synctest.Wait()
		waiting, other := newTicks(0), newTicks(0)
		stopWaiting := s.Schedule(context.Background(), 5*time.Second, 0, waiting.tick)
		stopOther := s.Schedule(context.Background(), 5*time.Second, time.Second, other.tick)
		time.Sleep(2 * time.Second) // both due, neither run
		stopWaiting()
		stuck()
		time.Sleep(5 * time.Second)
		stopOther()
		if got := waiting.times(); len(got) != 0 {
			t.Errorf("stopped while waiting, ticked at %v", got)
		}
		if got, want := other.times(), secs(2, 6); !slices.Equal(got, want) {
			t.Errorf("the other ticked at %v, want %v", got, want)
		}
		var m dto.Metric
		if err := s.delay.Write(&m); err != nil {
			t.Fatal(err)
		}
		// The stuck tick and the other's second started on time, its first
		// a second late.
		if n, sum := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(); n != 3 || sum != 1 {
			t.Errorf("tick delays: %d, %vs in all; want 3, 1s", n, sum)
		}
	})
}

// When its context ends, a function is no longer called; stop still
// returns.
func TestSchedulerContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		k := newTicks(0)
		stop := NewScheduler(1, nil).Schedule(ctx, 5*time.Second, 0, k.tick)
		time.Sleep(7 * time.Second)
		cancel()
		time.Sleep(time.Minute)
		stop()
		if got, want := k.times(), secs(0, 5); !slices.Equal(got, want) {
			t.Errorf("ticks at %v, want %v", got, want)
		}
	})
}

// A scheduler whose last function stopped ends its goroutines (synctest
// fails the test otherwise) and starts them again for the next one.
func TestSchedulerRestarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(3, nil)
		for range 2 {
			a, b := newTicks(0), newTicks(0)
			stopA := s.Schedule(context.Background(), 5*time.Second, 0, a.tick)
			stopB := s.Schedule(context.Background(), 5*time.Second, time.Second, b.tick)
			time.Sleep(7 * time.Second)
			stopA()
			time.Sleep(10 * time.Second)
			stopB()
			if got, want := a.times(), secs(0, 5); !slices.Equal(got, want) {
				t.Errorf("a ticks at %v, want %v", got, want)
			}
			if got, want := b.times(), secs(1, 6, 11, 16); !slices.Equal(got, want) {
				t.Errorf("b ticks at %v, want %v", got, want)
			}
		}
	})
}

func TestSchedulerWorkers(t *testing.T) {
	if got, want := NewScheduler(0, nil).Workers(), max(DefaultWorkers, 2*runtime.GOMAXPROCS(0)); got != want {
		t.Errorf("default workers %d, want %d", got, want)
	}
	if got := NewScheduler(3, nil).Workers(); got != 3 {
		t.Errorf("workers %d, want 3", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("a zero interval did not panic")
		}
	}()
	NewScheduler(1, nil).Schedule(context.Background(), 0, 0, func(context.Context) {})
}

func TestNextTick(t *testing.T) {
	last := time.Unix(1000, 0)
	for _, tc := range []struct {
		name string
		now  time.Duration // after last
		want time.Duration // after last
	}{
		{"before the next", 2 * time.Second, 5 * time.Second},
		{"at the next", 5 * time.Second, 5 * time.Second},
		{"after the next", 6 * time.Second, 10 * time.Second},
		{"at a later one", 15 * time.Second, 15 * time.Second},
		{"long after", 51 * time.Second, 55 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextTick(last, 5*time.Second, last.Add(tc.now)); !got.Equal(last.Add(tc.want)) {
				t.Errorf("next tick %v after last, want %v", got.Sub(last), tc.want)
			}
		})
	}
}
