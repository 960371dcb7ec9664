package embedded

import (
	"context"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"pgregory.net/rapid"
)

type sample struct {
	t int64
	v float64
}

// TestMemStoreMatchesAList appends random float series (stale markers
// among them, across many chunks), truncates at random, and reads them
// back through Select with random ranges and random sequences of Next and
// Seek: every read must agree with a plain list of the samples appended.
// A series read holds a run of its samples, in order, none before the
// retention floor, all those in the query's range among them (the
// engine reads only its own range of what Select returns).
func TestMemStoreMatchesAList(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := newMemStore()
		nSeries := rapid.IntRange(1, 4).Draw(t, "series")
		series := make([]*memSeries, nSeries)
		want := make([][]sample, nSeries)
		for i := range series {
			series[i] = st.seriesFor(labels.FromStrings("__name__", "m", "i", string(rune('a'+i))))
			series[i].refs = 1 // as the scrape cache holds it
		}
		floor := int64(math.MinInt64)
		ts := int64(0)
		for range rapid.IntRange(0, 400).Draw(t, "scrapes") {
			ts += rapid.Int64Range(1, 3000).Draw(t, "gap")
			var batch []pendingSample
			for i, s := range series {
				if rapid.IntRange(0, 9).Draw(t, "skip") == 0 {
					continue
				}
				v := float64(rapid.IntRange(0, 1000).Draw(t, "v"))
				if rapid.IntRange(0, 19).Draw(t, "stale") == 0 {
					v = math.Float64frombits(value.StaleNaN)
				}
				batch = append(batch, pendingSample{s: s, v: v})
				want[i] = append(want[i], sample{ts, v})
			}
			if rejected, err := st.commit(ts, batch); rejected != 0 {
				t.Fatalf("commit at %d rejected %d: %v", ts, rejected, err)
			}
			if rapid.IntRange(0, 29).Draw(t, "truncate") == 0 {
				floor = max(floor, ts-rapid.Int64Range(0, 200_000).Draw(t, "retention"))
				st.truncate(floor)
			}
		}
		mint := rapid.Int64Range(max(floor, -1), ts+1).Draw(t, "mint")
		maxt := rapid.Int64Range(mint-1, ts+1).Draw(t, "maxt")
		q := memQuerier{st: st, mint: mint, maxt: maxt, floor: floor}
		set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
		var it chunkenc.Iterator
		got := map[string]storage.Series{}
		for set.Next() {
			got[set.At().Labels().Get("i")] = set.At()
		}
		for i, s := range series {
			var in []sample
			for _, smp := range want[i] {
				if smp.t >= mint && smp.t <= maxt {
					in = append(in, smp)
				}
			}
			sr, ok := got[s.lset.Get("i")]
			if !ok {
				if len(in) > 0 {
					var spans [][2]int64
					for _, c := range s.chunks {
						spans = append(spans, [2]int64{c.mint, c.maxt})
					}
					t.Fatalf("series %s not selected, want %d samples in [%d, %d] (%v); chunks %v", s.lset, len(in), mint, maxt, in, spans)
				}
				continue
			}
			// The run the series holds.
			it = sr.Iterator(it)
			var run []sample
			for it.Next() == chunkenc.ValFloat {
				ts, v := it.At()
				run = append(run, sample{ts, v})
			}
			if err := it.Err(); err != nil {
				t.Fatal(err)
			}
			start := slices.IndexFunc(want[i], func(smp sample) bool { return len(run) > 0 && smp.t == run[0].t })
			switch {
			case len(run) == 0 || start < 0:
				t.Fatalf("series %s read %v, none of its samples", s.lset, run)
			case run[0].t < floor:
				t.Fatalf("series %s read a sample at %d, before the floor %d", s.lset, run[0].t, floor)
			case start+len(run) > len(want[i]) || !slices.EqualFunc(run, want[i][start:start+len(run)], func(a, b sample) bool {
				return a.t == b.t && math.Float64bits(a.v) == math.Float64bits(b.v)
			}):
				t.Fatalf("series %s read %v, not a run of its samples", s.lset, run)
			case len(in) > 0 && (in[0].t < run[0].t || in[len(in)-1].t > run[len(run)-1].t):
				t.Fatalf("series %s read [%d, %d], not all of [%d, %d]", s.lset, run[0].t, run[len(run)-1].t, mint, maxt)
			}
			in = run
			// A random walk of Next and Seek over the series, checked
			// against the run at each step.
			it = sr.Iterator(it)
			pos := -1 // index in `in` of the current sample
			for step := 0; ; step++ {
				var typ chunkenc.ValueType
				if rapid.Bool().Draw(t, "seek") {
					target := rapid.Int64Range(mint-1000, maxt+1000).Draw(t, "target")
					typ = it.Seek(target)
					if pos < 0 || in[pos].t < target {
						pos = max(pos, 0)
						for pos < len(in) && in[pos].t < target {
							pos++
						}
					}
				} else {
					typ = it.Next()
					pos++
				}
				if pos >= len(in) {
					if typ != chunkenc.ValNone {
						t.Fatalf("step %d: %v at %d, want the end", step, typ, it.AtT())
					}
					break
				}
				if typ != chunkenc.ValFloat {
					t.Fatalf("step %d: %v, want the sample at %d", step, typ, in[pos].t)
				}
				gt, gv := it.At()
				if gt != in[pos].t || math.Float64bits(gv) != math.Float64bits(in[pos].v) {
					t.Fatalf("step %d: (%d, %v), want (%d, %v)", step, gt, gv, in[pos].t, in[pos].v)
				}
			}
			if err := it.Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestMemStoreRejects checks the head's rules: a sample older than the
// latest is out of order; one at the same time is a duplicate unless it
// repeats the latest value, which is ignored.
func TestMemStoreRejects(t *testing.T) {
	st := newMemStore()
	s := st.seriesFor(labels.FromStrings("__name__", "m"))
	if n, err := st.commit(10, []pendingSample{{s: s, v: 1}}); n != 0 {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		t    int64
		v    float64
		want error
	}{
		{9, 1, storage.ErrOutOfOrderSample},
		{10, 2, storage.ErrDuplicateSampleForTimestamp},
		{10, 1, nil},
	} {
		n, err := st.commit(tc.t, []pendingSample{{s: s, v: tc.v}})
		if err != tc.want || (n != 0) != (tc.want != nil) {
			t.Errorf("sample (%d, %v): %d rejected, %v; want %v", tc.t, tc.v, n, err, tc.want)
		}
	}
	if got := s.chunks[0].chunk.NumSamples(); got != 1 {
		t.Errorf("samples stored = %d, want 1", got)
	}
}

// TestMemStoreSameLabelsOneSeries: a body spelling a series twice, or
// exposing one of Guardian's own series, appends to the one series of
// those labels, never to two series a query would see as duplicates.
func TestMemStoreSameLabelsOneSeries(t *testing.T) {
	st := newMemStore()
	a := st.seriesFor(labels.FromStrings("__name__", "up"))
	b := st.seriesFor(labels.FromStrings("__name__", "up"))
	c := st.seriesFor(labels.FromStrings("__name__", "up", "job", "x"))
	if a != b || a == c {
		t.Fatalf("seriesFor: same labels gave %p and %p, other labels %p", a, b, c)
	}
	if st.len() != 2 {
		t.Errorf("series = %d, want 2", st.len())
	}
}

// TestMemStoreHistograms appends native histograms through a counter
// reset, a change of bucket layout and a stale marker, across a chunk
// boundary, and reads every one back.
func TestMemStoreHistograms(t *testing.T) {
	st := newMemStore()
	s := st.seriesFor(labels.FromStrings("__name__", "h"))
	mk := func(count uint64, spans int) *histogram.Histogram {
		h := &histogram.Histogram{Count: count, Sum: float64(count), Schema: 0, ZeroThreshold: 1e-128}
		for i := range spans {
			h.PositiveSpans = append(h.PositiveSpans, histogram.Span{Offset: int32(i), Length: 1})
			h.PositiveBuckets = append(h.PositiveBuckets, int64(count)/int64(spans))
		}
		return h
	}
	var want []*histogram.Histogram
	for i := range 300 {
		h := mk(uint64(10+i), 1)
		switch {
		case i >= 200:
			h = mk(uint64(i), 2) // one more bucket
		case i >= 150:
			h = mk(uint64(i-149), 1) // counter reset
		}
		want = append(want, h)
		if n, err := st.commit(int64(i)*1000, []pendingSample{{s: s, h: h}}); n != 0 {
			t.Fatalf("sample %d: %v", i, err)
		}
	}
	if n, err := st.commit(300_000, []pendingSample{{s: s, v: math.Float64frombits(value.StaleNaN)}}); n != 0 {
		t.Fatal(err)
	}
	if len(s.chunks) < 3 {
		t.Errorf("chunks = %d, want at least 3 (120 samples each at most)", len(s.chunks))
	}
	it := s.snapshot(math.MinInt64, math.MaxInt64, math.MinInt64).Iterator(nil)
	for i, w := range want {
		if typ := it.Next(); typ != chunkenc.ValHistogram {
			t.Fatalf("sample %d: %v, want a histogram", i, typ)
		}
		ts, h := it.AtHistogram(nil)
		if ts != int64(i)*1000 || h.String() != w.String() {
			t.Fatalf("sample %d: %d %v, want %d %v", i, ts, h, i*1000, w)
		}
	}
	if typ := it.Next(); typ != chunkenc.ValHistogram {
		t.Fatalf("stale marker: %v, want a histogram", typ)
	}
	if _, h := it.AtHistogram(nil); !value.IsStaleNaN(h.Sum) {
		t.Errorf("stale marker's sum = %v, want the stale NaN", h.Sum)
	}
	if typ := it.Next(); typ != chunkenc.ValNone {
		t.Errorf("after the stale marker: %v, want the end", typ)
	}
}

// BenchmarkSeriesMemory measures the Go heap a series holds with an
// hour and a quarter of samples at 5 s, the embedded source's retention
// for a service with a 1h watch window: request counters growing by a
// few hundred a scrape, timestamped on the scrape schedule (aligned) or up
// to 20 ms off it.
//
//	go test -run X -bench SeriesMemory ./source/embedded/
func BenchmarkSeriesMemory(b *testing.B) {
	const nSeries, nSamples = 1000, 930
	for _, jitter := range []int64{0, 20} {
		b.Run("jitter="+strconv.FormatInt(jitter, 10)+"ms", func(b *testing.B) {
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				st := newMemStore()
				series := make([]*memSeries, nSeries)
				for i := range series {
					series[i] = st.seriesFor(labels.FromStrings("__name__", "http_requests_total", "version", "v"+strconv.Itoa(i%2), "code", strconv.Itoa(i)))
					series[i].refs = 1
				}
				rnd := rand.New(rand.NewPCG(1, 2))
				values := make([]float64, nSeries)
				batch := make([]pendingSample, nSeries)
				for k := range nSamples {
					t := int64(k) * 5000
					if jitter > 0 {
						t += rnd.Int64N(jitter)
					}
					for i, s := range series {
						values[i] += float64(rnd.IntN(400))
						batch[i] = pendingSample{s: s, v: values[i]}
					}
					st.commit(t, batch)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/nSeries, "B/series")
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/nSeries/nSamples, "B/sample")
				runtime.KeepAlive(series)
			}
		})
	}
}

// TestScrapeTimestampsAligned: a scrape within a hundredth of the interval
// of its schedule is timestamped on it, as Prometheus does; one further
// off keeps its own time.
func TestScrapeTimestampsAligned(t *testing.T) {
	tg := newTarget(t, false)
	clk := &clock{t: start}
	s := newSource(t, tg.srv.URL, clk, Options{}, nil) // 1 s interval: 10 ms of tolerance
	// A grid through start.
	s.schedule.Store(&schedule{first: start, offset: time.Duration(start.UnixNano() % int64(s.interval))})
	for _, tc := range []struct {
		at, want time.Duration // after start
	}{
		{0, 0},
		{time.Second + 3*time.Millisecond, time.Second},
		{2*time.Second - 4*time.Millisecond, 2 * time.Second},
		{3*time.Second + 30*time.Millisecond, 3*time.Second + 30*time.Millisecond},
		{4*time.Second + 10*time.Millisecond, 4 * time.Second},
	} {
		clk.Set(start.Add(tc.at))
		if err := s.ScrapeOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		res, err := s.Query(context.Background(), `timestamp(up)`, start.Add(max(tc.at, tc.want)+time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Vector) != 1 || res.Vector[0].Value != model.SampleValue(float64(start.Add(tc.want).UnixMilli())/1000) {
			t.Errorf("scrape at +%s stored at %v, want +%s", tc.at, res.Vector, tc.want)
		}
	}
}
