package watch

import (
	"math"
	"time"

	"github.com/rollback-guardian/guardian/trigger"
)

// History bounds: each trigger keeps its evaluations of the last
// DefaultHistorySpan, at most MaxHistoryPoints of them.
const (
	DefaultHistorySpan = 15 * time.Minute
	MaxHistoryPoints   = 900
)

// Sample is one evaluation of a trigger, as the console draws it. A value
// that the evaluation did not have (no data, no baseline, no threshold) is
// NaN.
type Sample struct {
	// At is the evaluation time.
	At time.Time
	// Value is the new version's value.
	Value float64
	// Baseline is the baseline version's value.
	Baseline float64
	// Threshold is the limit of the trigger's first judged condition
	// (baseline×factor for above_baseline).
	Threshold float64
	Outcome   trigger.Outcome
	State     trigger.State
}

// sample is a Sample as the ring stores it: no pointers, so a full ring
// costs the garbage collector nothing to scan.
type sample struct {
	at                         int64 // Unix nanoseconds
	value, baseline, threshold float64
	outcome                    uint8
	state                      uint8
}

// history is a ring of one trigger's latest evaluations. It grows as it
// fills, doubling up to limit slots, then wraps: a watch that has run for a
// few minutes holds a few minutes of samples, not a full span's. Once full,
// recording never allocates. Callers hold the Service's mu.
//
// While it grows, the ring is linear: next == count == len(buf).
type history struct {
	span  time.Duration
	limit int // slots when full
	buf   []sample
	next  int // where the next sample goes
	count int
}

// minHistorySlots is a history's first allocation.
const minHistorySlots = 16

func newHistory(span, interval time.Duration) *history {
	if span <= 0 {
		span = DefaultHistorySpan
	}
	return &history{span: span, limit: historyPoints(span, interval)}
}

// historyPoints is how many evaluations of one trigger span holds at one
// every interval, at most MaxHistoryPoints.
func historyPoints(span, interval time.Duration) int {
	if interval <= 0 {
		return MaxHistoryPoints
	}
	n := int((span + interval - 1) / interval)
	return max(1, min(n, MaxHistoryPoints))
}

// add records verdict v.
func (h *history) add(v trigger.Verdict) {
	h.put(sample{
		at:    v.At.UnixNano(),
		value: nan(v.Evidence.Value), baseline: nan(v.Evidence.BaselineValue), threshold: threshold(v),
		outcome: uint8(v.Outcome), state: uint8(v.State),
	})
}

// put records s, growing the ring while it is not full.
func (h *history) put(s sample) {
	if n := len(h.buf); n < h.limit {
		if n == cap(h.buf) {
			grown := make([]sample, n, min(h.limit, max(minHistorySlots, 2*n)))
			copy(grown, h.buf)
			h.buf = grown
		}
		h.buf = append(h.buf, s)
		h.count = len(h.buf)
		h.next = h.count % h.limit
		return
	}
	h.buf[h.next] = s
	h.next = (h.next + 1) % len(h.buf)
	h.count = min(h.count+1, len(h.buf))
}

// threshold is the limit of v's first judged condition, NaN without one.
func threshold(v trigger.Verdict) float64 {
	for _, c := range v.Evidence.Conditions {
		if !c.Skipped {
			return c.Threshold
		}
	}
	return math.NaN()
}

func nan(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// appendTo appends the samples within span of the latest one to dst,
// oldest first.
func (h *history) appendTo(dst []Sample) []Sample {
	if h.count == 0 {
		return dst
	}
	latest := h.buf[(h.next-1+len(h.buf))%len(h.buf)].at
	from := latest - int64(h.span)
	for i := range h.count {
		s := h.buf[(h.next-h.count+i+len(h.buf))%len(h.buf)]
		if s.at <= from {
			continue
		}
		dst = append(dst, Sample{
			At: time.Unix(0, s.at).UTC(), Value: s.value, Baseline: s.baseline, Threshold: s.threshold,
			Outcome: trigger.Outcome(s.outcome), State: trigger.State(s.state),
		})
	}
	return dst
}

// reset forgets every sample, keeping the slots for the next watch.
func (h *history) reset() { h.buf, h.next, h.count = h.buf[:0], 0, 0 }

// copyFrom takes old's samples, the latest ones when h holds fewer.
func (h *history) copyFrom(old *history) {
	h.reset()
	for i := range old.count {
		h.put(old.buf[(old.next-old.count+i+len(old.buf))%len(old.buf)])
	}
}

// History returns the evaluations of the trigger named name in the last
// history span (see Options.HistorySpan) of the open watch, or of the
// latest watch when none is open, oldest first; nil for an unknown trigger
// or before any evaluation. A new deploy starts a new history.
func (s *Service) History(name string) []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, tr := range s.triggers {
		if tr.Name() == name {
			h := s.history[i]
			if h.count == 0 {
				return nil
			}
			return h.appendTo(make([]Sample, 0, h.count))
		}
	}
	return nil
}
