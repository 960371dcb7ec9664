package latency

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// State is what a Watch has judged, to resume it after a restart (see
// Watch.State and Test.Resume). It encodes to JSON.
type State struct {
	// Key identifies the test's configuration and bets; Resume refuses a
	// state of another.
	Key string `json:"key"`
	// Bounds are the bounds judged on (none before the first histogram).
	Bounds    []float64 `json:"bounds"`
	HasLayout bool      `json:"has_layout"`
	// Per bucket: the pre-deploy requests, the bag, and the new version's
	// and the live baseline's requests taken in.
	Pre      []float64 `json:"pre"`
	Bag      []float64 `json:"bag"`
	NewSeen  []float64 `json:"new_seen"`
	LiveSeen []float64 `json:"live_seen"`
	// LogE is each bet's log-evidence.
	LogE    []float64 `json:"log_e"`
	Judged  float64   `json:"judged"`
	Dropped float64   `json:"dropped"`
	// BetBag is the bag the bets in force were computed from (none yet:
	// empty).
	BetBag []float64 `json:"bet_bag"`
	// Guards are the guarded bounds with the quantile each was picked for.
	Guards []GuardState `json:"guards"`
	// Random is the random source's state.
	Random []byte `json:"random"`
}

// GuardState is one guarded bound.
type GuardState struct {
	Quantile float64 `json:"quantile"`
	Bound    float64 `json:"bound"`
}

// ErrState is wrapped by the errors of Resume.
var ErrState = errors.New("invalid latency test state")

func (t *Test) key() string {
	return fmt.Sprintf("latency/1 alpha=%g min_effect=%s quantiles=%v bets=%d", t.cfg.Alpha, t.cfg.MinEffect, t.cfg.Quantiles, len(t.bets))
}

// State returns the watch's state; it shares nothing with the watch.
func (w *Watch) State() State {
	rnd, _ := w.pcg.MarshalBinary() // never fails
	s := State{
		Key: w.t.key(), Bounds: slices.Clone(w.layout), HasLayout: w.hasLayout,
		Pre: slices.Clone(w.pre), Bag: slices.Clone(w.bag), NewSeen: slices.Clone(w.newSeen), LiveSeen: slices.Clone(w.liveSeen),
		LogE: slices.Clone(w.sums), Judged: w.judged, Dropped: w.dropped, Random: rnd,
	}
	if w.cellBag != nil {
		s.BetBag = slices.Clone(w.cellBag)
	}
	for _, g := range w.guards {
		s.Guards = append(s.Guards, GuardState{Quantile: g.quantile, Bound: g.bound})
	}
	return s
}

// Resume returns a watch that continues from s, as if the watch that
// returned it had never stopped.
func (t *Test) Resume(s State) (*Watch, error) {
	if s.Key != t.key() {
		return nil, fmt.Errorf("state of %q, not of this test (%q): start a new watch: %w", s.Key, t.key(), ErrState)
	}
	n := len(s.Bounds) + 1
	if !s.HasLayout {
		n = 0
	}
	finite := func(v []float64) bool {
		return !slices.ContainsFunc(v, func(x float64) bool { return math.IsNaN(x) || math.IsInf(x, 0) })
	}
	nonNegative := func(v []float64) bool { return !slices.ContainsFunc(v, func(x float64) bool { return !(x >= 0) }) }
	switch {
	case !s.HasLayout && len(s.Bounds) > 0:
		return nil, fmt.Errorf("bounds without a layout: %w", ErrState)
	case !slices.IsSorted(s.Bounds) || !nonNegative(s.Bounds) || !finite(s.Bounds):
		return nil, fmt.Errorf("bounds %v are not ascending finite latencies: %w", s.Bounds, ErrState)
	case len(s.Pre) != n || len(s.Bag) != n || len(s.NewSeen) != n || len(s.LiveSeen) != n:
		return nil, fmt.Errorf("counts for %d buckets expected: %w", n, ErrState)
	case !finite(s.Pre) || !finite(s.Bag) || !finite(s.NewSeen) || !finite(s.LiveSeen) ||
		!nonNegative(s.Pre) || !nonNegative(s.Bag) || !nonNegative(s.NewSeen) || !nonNegative(s.LiveSeen):
		return nil, fmt.Errorf("counts must be finite and non-negative: %w", ErrState)
	case len(s.LogE) != len(t.bets) || !finite(s.LogE):
		return nil, fmt.Errorf("%d finite log-evidences expected: %w", len(t.bets), ErrState)
	case !(s.Judged >= 0) || !(s.Dropped >= 0) || math.IsInf(s.Judged, 0) || math.IsInf(s.Dropped, 0):
		return nil, fmt.Errorf("judged and dropped must be finite and non-negative: %w", ErrState)
	case len(s.BetBag) > 0 && (len(s.BetBag) != n || !finite(s.BetBag) || !nonNegative(s.BetBag) || !(sum(s.BetBag) > 0)):
		return nil, fmt.Errorf("the bets' bag must have %d finite non-negative counts, not all 0: %w", n, ErrState)
	}
	w := &Watch{t: t, pcg: &rand.PCG{}}
	if err := w.pcg.UnmarshalBinary(s.Random); err != nil {
		return nil, fmt.Errorf("random source: %v: %w", err, ErrState)
	}
	w.rng = rand.New(w.pcg)
	w.hasLayout = s.HasLayout
	w.layout = slices.Clone(s.Bounds)
	w.pre, w.bag = slices.Clone(s.Pre), slices.Clone(s.Bag)
	w.newSeen, w.liveSeen = slices.Clone(s.NewSeen), slices.Clone(s.LiveSeen)
	w.sums = slices.Clone(s.LogE)
	w.judged, w.dropped = s.Judged, s.Dropped
	if len(s.BetBag) > 0 {
		w.cellBag = slices.Clone(s.BetBag)
		w.bet()
	}
	for _, g := range s.Guards {
		i, ok := slices.BinarySearch(w.layout, g.Bound)
		if !ok {
			return nil, fmt.Errorf("guarded bound %g is not a bound: %w", g.Bound, ErrState)
		}
		w.guards = append(w.guards, guard{quantile: g.Quantile, bound: g.Bound, w: t.seq.Watch(true, w.exceed(w.pre, i))})
	}
	return w, nil
}
