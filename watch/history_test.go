package watch

import (
	"context"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/trigger"
)

func TestHistoryPoints(t *testing.T) {
	for _, tc := range []struct {
		name           string
		span, interval time.Duration
		want           int
	}{
		{"15 minutes at 1s", 15 * time.Minute, time.Second, 900},
		{"15 minutes at 15s", 15 * time.Minute, 15 * time.Second, 60},
		{"rounds up", time.Minute, 7 * time.Second, 9},
		{"capped", 15 * time.Minute, 100 * time.Millisecond, MaxHistoryPoints},
		{"no interval", time.Minute, 0, MaxHistoryPoints},
		{"interval above span", 10 * time.Second, time.Minute, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := historyPoints(tc.span, tc.interval); got != tc.want {
				t.Errorf("historyPoints(%v, %v) = %d, want %d", tc.span, tc.interval, got, tc.want)
			}
		})
	}
}

// verdict is an evaluation at second i whose value is i.
func verdict(i int) trigger.Verdict {
	v := float64(i)
	return trigger.Verdict{
		At: t0.Add(time.Duration(i) * time.Second), Outcome: trigger.Violated, State: trigger.Pending,
		Evidence: trigger.Evidence{Value: &v, BaselineValue: ptr(0.5), Conditions: []trigger.Check{
			{Name: "above_baseline", Threshold: 1, Skipped: true}, {Name: "above", Threshold: 0.05},
		}},
	}
}

func values(ss []Sample) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = s.Value
	}
	return out
}

func TestHistoryRing(t *testing.T) {
	h := newHistory(time.Hour, 12*time.Minute) // five slots
	if h.limit != 5 || cap(h.buf) != 0 || h.appendTo(nil) != nil {
		t.Fatalf("new ring: %d slots when full, %d allocated, samples %v", h.limit, cap(h.buf), h.appendTo(nil))
	}
	for i := 1; i <= 3; i++ {
		h.add(verdict(i))
	}
	if got := values(h.appendTo(nil)); !equalFloats(got, []float64{1, 2, 3}) {
		t.Fatalf("before wrapping: %v", got)
	}
	for i := 4; i <= 12; i++ {
		h.add(verdict(i))
	}
	got := h.appendTo(nil)
	if !equalFloats(values(got), []float64{8, 9, 10, 11, 12}) {
		t.Fatalf("after wrapping: %v, want the latest five, oldest first", values(got))
	}
	s := got[4]
	if !s.At.Equal(t0.Add(12*time.Second)) || s.Baseline != 0.5 || s.Threshold != 0.05 || s.Outcome != trigger.Violated || s.State != trigger.Pending {
		t.Errorf("sample %+v: want the first judged condition's threshold, the baseline, outcome and state", s)
	}

	// What a verdict lacks is NaN.
	h.add(trigger.Verdict{At: t0.Add(13 * time.Second), Outcome: trigger.NoData})
	last := h.appendTo(nil)[4]
	if !math.IsNaN(last.Value) || !math.IsNaN(last.Baseline) || !math.IsNaN(last.Threshold) || last.Outcome != trigger.NoData {
		t.Errorf("no-data sample %+v", last)
	}

	// A smaller ring takes the latest samples.
	small := newHistory(time.Hour, 30*time.Minute)
	small.copyFrom(h)
	if got := small.appendTo(nil); len(got) != 2 || got[0].Value != 12 || !math.IsNaN(got[1].Value) {
		t.Errorf("copied into two slots: %+v", got)
	}
	h.reset()
	if got := h.appendTo(nil); got != nil {
		t.Errorf("after reset: %v", got)
	}
}

func TestHistorySpan(t *testing.T) {
	h := newHistory(10*time.Second, time.Second)
	for i := 1; i <= 8; i++ {
		h.add(verdict(i))
	}
	// A gap: the service was not evaluated for a while.
	h.add(verdict(15))
	h.add(verdict(16))
	if got := values(h.appendTo(nil)); !equalFloats(got, []float64{7, 8, 15, 16}) {
		t.Errorf("samples within 10s of the latest: %v", got)
	}
}

func TestHistoryRecordsWithoutAllocating(t *testing.T) {
	h := newHistory(DefaultHistorySpan, time.Second)
	v := verdict(1)
	for range MaxHistoryPoints {
		h.add(v)
	}
	if n := testing.AllocsPerRun(1000, func() { h.add(v) }); n != 0 {
		t.Errorf("recording in a full ring allocates %v times", n)
	}
}

// A history allocates as it fills, never past its span's slots, and keeps
// them for the next watch.
func TestHistoryGrows(t *testing.T) {
	h := newHistory(DefaultHistorySpan, 5*time.Second) // 180 slots
	if cap(h.buf) != 0 {
		t.Fatalf("new history: %d slots allocated, want none", cap(h.buf))
	}
	h.add(verdict(1))
	if c := cap(h.buf); c != minHistorySlots {
		t.Errorf("after one sample: %d slots, want %d", c, minHistorySlots)
	}
	for i := 2; i <= 400; i++ {
		h.add(verdict(i))
		if c := cap(h.buf); c > h.limit {
			t.Fatalf("after %d samples: %d slots, more than the span's %d", i, c, h.limit)
		}
	}
	got := values(h.appendTo(nil))
	if len(got) != 180 || got[0] != 221 || got[179] != 400 {
		t.Errorf("full ring: %d samples from %v to %v, want the latest 180 (221 to 400)", len(got), got[0], got[len(got)-1])
	}
	h.reset()
	h.add(verdict(1))
	if c := cap(h.buf); c != h.limit {
		t.Errorf("after a reset: %d slots, want the %d kept", c, h.limit)
	}
}

// A Service records every trigger's evaluations of the open watch, starts
// a new history with each deploy and carries it over a reload.
func TestServiceHistory(t *testing.T) {
	f := newFixture(t, fixtureOpts{versionQuery: true})
	ctx := context.Background()
	f.src.set(func(s *fakeSource) { s.versions["v1"] = 10; s.values[errV1] = 0.01 })
	f.svc.Tick(ctx, tick(0))
	if got := f.svc.History("error-rate"); got != nil {
		t.Fatalf("history before any watch: %v", got)
	}
	f.src.set(func(s *fakeSource) { s.versions["v2"] = 5; s.values[errV2] = 0.2; s.values[latencyV2] = 0.1 })
	for i := 1; i <= 3; i++ {
		f.svc.Tick(ctx, tick(i))
	}
	got := f.svc.History("error-rate")
	if len(got) != 3 || !got[0].At.Equal(tick(1)) || !got[2].At.Equal(tick(3)) {
		t.Fatalf("error-rate history %+v", got)
	}
	if s := got[2]; s.Value != 0.2 || s.Baseline != 0.01 || s.Threshold != 0.05 || s.Outcome != trigger.Violated || s.State != trigger.Firing {
		t.Errorf("last sample %+v", s)
	}
	if lat := f.svc.History("latency"); len(lat) != 3 || lat[0].Value != 0.1 || lat[0].Threshold != 0.5 || !math.IsNaN(lat[0].Baseline) {
		t.Errorf("latency history %+v", lat)
	}
	if got := f.svc.History("nonesuch"); got != nil {
		t.Errorf("unknown trigger: %v", got)
	}

	next := newFixture(t, fixtureOpts{versionQuery: true, metrics: f.m})
	next.svc.TakeOver(f.svc, true)
	if got := next.svc.History("error-rate"); len(got) != 3 || got[2].Value != 0.2 {
		t.Errorf("history after a reload: %+v", got)
	}

	if _, err := f.svc.Announce(ctx, "v3", "v1", tick(4)); err != nil {
		t.Fatal(err)
	}
	if got := f.svc.History("error-rate"); got != nil {
		t.Errorf("a new deploy kept the old history: %+v", got)
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// BenchmarkHistoryMemory measures the memory one trigger's full history
// holds (15 minutes at a 1s evaluation interval: 900 evaluations).
func BenchmarkHistoryMemory(b *testing.B) {
	const triggers = 1000
	hs := make([]*history, triggers)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range hs {
		hs[i] = newHistory(DefaultHistorySpan, time.Second)
		for j := range MaxHistoryPoints {
			hs[i].add(verdict(j))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perTrigger := float64(after.HeapAlloc-before.HeapAlloc) / triggers
	v := verdict(1)
	for i := 0; b.Loop(); i++ {
		hs[i%triggers].add(v)
	}
	b.ReportMetric(perTrigger, "bytes/trigger")
	runtime.KeepAlive(hs)
}

// BenchmarkHistoryRead copies one trigger's full history out, as the
// console does for each trigger at each page view.
func BenchmarkHistoryRead(b *testing.B) {
	h := newHistory(DefaultHistorySpan, time.Second)
	for j := range MaxHistoryPoints {
		h.add(verdict(j))
	}
	for b.Loop() {
		if got := h.appendTo(make([]Sample, 0, h.count)); len(got) != MaxHistoryPoints {
			b.Fatalf("%d samples", len(got))
		}
	}
}
