package embedded

import (
	"context"
	"math"
	"slices"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
)

// samplesPerChunk is how many samples a chunk holds before the next one
// is cut, as in Prometheus's head.
const samplesPerChunk = 120

// memStore holds one Source's series in memory: each series' labels and
// its samples in Prometheus's own chunk encodings (XOR for floats, the
// histogram encodings for native histograms), 120 samples to a chunk, the
// chunks older than the retention dropped. A Source's queries select among
// its own hundred or so series, found by metric name.
//
// It replaces a TSDB head, which suits a Prometheus server's millions of
// series but costs a Guardian watching a thousand services about 700 bytes
// a series before its samples (series structures of 200 bytes, a
// 128-byte chunk allocated at the first sample, postings, stripes), and
// makes every query intersect the postings of all the services' series.
//
// Appends come from one scrape at a time (Source.scrapeMu), all of a
// scrape's samples at once under mu, so that a query sees a scrape whole
// or not at all; queries take mu shared while they select series and copy
// the chunk still being appended to, then read their copies without it.
type memStore struct {
	mu     sync.RWMutex
	byName map[string][]*memSeries
	series int
}

func newMemStore() *memStore { return &memStore{byName: map[string][]*memSeries{}} }

// memSeries is one series: its labels and chunks. The store's mu guards
// the fields but lset, which never changes.
type memSeries struct {
	lset labels.Labels
	// chunks are oldest first; the last one is appended to through app.
	chunks []memChunk
	app    chunkenc.Appender
	lastT  int64
	lastV  float64 // the latest float sample, to tell a repeat from a conflict

	// The fields below are the scrape loop's alone.

	// refs counts the scrape cache's entries appending to the series (one
	// for Guardian's own series about each scrape). A series without any
	// and without samples left leaves the store.
	refs int32
	// live: the latest scrape appended to the series, which has no stale
	// marker since.
	live bool
	// folded: the series is the sum of scraped series (see fold), sum its
	// value.
	folded  bool
	sum     float64
	fedIter uint64 // the latest scrape iteration that appended to it
}

// memChunk is one chunk and the timestamps of its first and last sample.
type memChunk struct {
	chunk      chunkenc.Chunk
	mint, maxt int64
}

// pendingSample is a sample of a scrape not yet committed: a float v, or
// a native histogram h or fh, of the series s, or, before the scrape
// resolves folds (Source.resolve), of the cache entry of key (s nil).
type pendingSample struct {
	s   *memSeries
	key uint64
	v   float64
	h   *histogram.Histogram
	fh  *histogram.FloatHistogram
}

// seriesFor returns the series of lset, creating it with a copy of lset (without samples,
// which queries do not see) when the store has none: a body may spell one
// series twice (its labels in another order), and a target may expose a
// series Guardian records itself (up, with no labels). Only the scrape
// loop calls it.
func (st *memStore) seriesFor(lset labels.Labels) *memSeries {
	name := lset.Get(model.MetricNameLabel)
	for _, s := range st.byName[name] {
		if labels.Equal(s.lset, lset) {
			return s
		}
	}
	s := &memSeries{lset: lset.Copy(), lastT: math.MinInt64}
	st.mu.Lock()
	st.byName[name] = append(st.byName[name], s)
	st.series++
	st.mu.Unlock()
	return s
}

// commit appends a scrape's samples at t. It returns the number of
// samples rejected (out of order, or a different value at the timestamp
// of the series' latest one) and the first of those errors.
func (st *memStore) commit(t int64, samples []pendingSample) (rejected int, first error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, p := range samples {
		var err error
		if p.h != nil || p.fh != nil {
			err = p.s.appendHistogram(t, p.h, p.fh)
		} else {
			err = p.s.append(t, p.v)
		}
		if err != nil {
			rejected++
			if first == nil {
				first = err
			}
		}
	}
	return rejected, first
}

// truncate drops the chunks whose samples are all older than mint, and
// forgets the series left without chunks that the scrape loop no longer
// uses. Only the scrape loop calls it.
func (st *memStore) truncate(mint int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for name, list := range st.byName {
		kept := list[:0]
		for _, s := range list {
			n := 0
			for n < len(s.chunks) && s.chunks[n].maxt < mint {
				n++
			}
			if n > 0 {
				s.chunks = slices.Delete(s.chunks, 0, n)
				if len(s.chunks) == 0 {
					s.app = nil
				}
			}
			if len(s.chunks) == 0 && s.refs == 0 {
				st.series--
				continue
			}
			kept = append(kept, s)
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(st.byName, name)
		} else {
			st.byName[name] = kept
		}
	}
}

// len is the number of series in the index.
func (st *memStore) len() int {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.series
}

// kind is the type of the samples the series' last chunk holds.
func (s *memSeries) kind() chunkenc.ValueType {
	if len(s.chunks) == 0 {
		return chunkenc.ValNone
	}
	switch s.chunks[len(s.chunks)-1].chunk.Encoding() {
	case chunkenc.EncHistogram:
		return chunkenc.ValHistogram
	case chunkenc.EncFloatHistogram:
		return chunkenc.ValFloatHistogram
	}
	return chunkenc.ValFloat
}

// inOrder checks that t comes after the series' latest sample, as the head
// does: an older sample is out of order; one at the same time a duplicate,
// ignored (ok false, no error) when it repeats the latest float value.
func (s *memSeries) inOrder(t int64, v float64, float bool) (ok bool, err error) {
	switch {
	case t > s.lastT:
		return true, nil
	case t < s.lastT:
		return false, storage.ErrOutOfOrderSample
	case float && s.kind() == chunkenc.ValFloat && math.Float64bits(v) == math.Float64bits(s.lastV):
		return false, nil
	}
	return false, storage.ErrDuplicateSampleForTimestamp
}

// append appends a float sample. A stale marker in a histogram series is
// appended as a stale histogram, as the head does.
func (s *memSeries) append(t int64, v float64) error {
	if value.IsStaleNaN(v) {
		switch s.kind() {
		case chunkenc.ValHistogram:
			return s.appendHistogram(t, &histogram.Histogram{Sum: v}, nil)
		case chunkenc.ValFloatHistogram:
			return s.appendHistogram(t, nil, &histogram.FloatHistogram{Sum: v})
		}
	}
	if ok, err := s.inOrder(t, v, true); !ok {
		return err
	}
	if s.kind() != chunkenc.ValFloat || s.chunks[len(s.chunks)-1].chunk.NumSamples() >= samplesPerChunk {
		s.cut(t, chunkenc.EncXOR)
	}
	s.app.Append(0, t, v)
	s.chunks[len(s.chunks)-1].maxt = t
	s.lastT, s.lastV = t, v
	return nil
}

// appendHistogram appends a native histogram sample, h or fh, cutting a
// chunk as the head does: on a change of encoding, at 120 samples, or
// once the chunk has its target size and its minimum of samples; the chunk
// encoder may also recode the chunk (a new bucket layout) or ask for a new
// one (a counter reset).
func (s *memSeries) appendHistogram(t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) error {
	if ok, err := s.inOrder(t, 0, false); !ok {
		return err
	}
	enc := chunkenc.EncHistogram
	if h == nil {
		enc = chunkenc.EncFloatHistogram
	}
	var prev chunkenc.Appender
	if n := len(s.chunks); n == 0 || s.chunks[n-1].chunk.Encoding() != enc || histogramChunkFull(s.chunks[n-1].chunk) {
		prev = s.app
		if n == 0 || s.chunks[n-1].chunk.Encoding() != enc {
			prev = nil // no counter reset to detect across encodings
		}
		s.cut(t, enc)
	}
	var (
		c       chunkenc.Chunk
		recoded bool
		app     chunkenc.Appender
		err     error
	)
	if h != nil {
		c, recoded, app, err = s.app.AppendHistogram(prev, 0, t, h, false)
	} else {
		c, recoded, app, err = s.app.AppendFloatHistogram(prev, 0, t, fh, false)
	}
	if err != nil {
		return err
	}
	s.app = app
	switch {
	case c == nil:
	case recoded:
		s.chunks[len(s.chunks)-1].chunk = c
	default:
		s.close()
		s.chunks = append(s.chunks, memChunk{chunk: c, mint: t})
	}
	s.chunks[len(s.chunks)-1].maxt = t
	s.lastT = t
	return nil
}

// histogramChunkFull tells whether a histogram chunk takes no more samples.
func histogramChunkFull(c chunkenc.Chunk) bool {
	n := c.NumSamples()
	return n >= samplesPerChunk ||
		(n >= chunkenc.MinSamplesPerHistogramChunk && len(c.Bytes()) >= chunkenc.TargetBytesPerHistogramChunk)
}

// cut closes the last chunk and starts an empty one of encoding enc at t.
func (s *memSeries) cut(t int64, enc chunkenc.Encoding) {
	s.close()
	var c chunkenc.Chunk
	if enc == chunkenc.EncXOR {
		// Room for the first few samples: NewXORChunk takes 128 bytes at
		// once, more than a thousand services' young series need.
		c, _ = chunkenc.FromData(enc, make([]byte, 2, 32))
	} else {
		c, _ = chunkenc.NewEmptyChunk(enc)
	}
	app, err := c.Appender()
	if err != nil { // an empty chunk has an appender
		panic(err)
	}
	s.chunks = append(s.chunks, memChunk{chunk: c, mint: t, maxt: t})
	s.app = app
}

// close trims the last chunk's bytes to their length: it takes no more
// samples.
func (s *memSeries) close() {
	n := len(s.chunks)
	if n == 0 {
		return
	}
	c := s.chunks[n-1].chunk
	b := c.Bytes()
	if cap(b)-len(b) < 16 {
		return
	}
	if nc, err := chunkenc.FromData(c.Encoding(), slices.Clone(b)); err == nil {
		s.chunks[n-1].chunk = nc
	}
}

// snapshot returns the series' chunks overlapping [mint, maxt] for a
// query: the closed ones as they are (never written again) and a copy of
// the one still appended to; a first chunk reaching back before floor,
// the retention floor, is copied without its samples older than that
// (queries never see them, whether or not truncation dropped them yet).
// Samples of those chunks outside [mint, maxt] are left in: the engine
// reads only its own ranges. Nil when no chunk overlaps. Call with the
// store's mu held.
func (s *memSeries) snapshot(mint, maxt, floor int64) *memSnapshot {
	first := len(s.chunks)
	for i, c := range s.chunks {
		if c.maxt >= mint {
			first = i
			break
		}
	}
	last := first
	for last < len(s.chunks) && s.chunks[last].mint <= maxt {
		last++
	}
	if first == last {
		return nil
	}
	chunks := slices.Clone(s.chunks[first:last])
	if last == len(s.chunks) {
		open := &chunks[len(chunks)-1]
		if c, err := chunkenc.FromData(open.chunk.Encoding(), slices.Clone(open.chunk.Bytes())); err == nil {
			open.chunk = c
		}
	}
	if chunks[0].mint < floor {
		trimmed := trimChunk(chunks[0].chunk, floor)
		chunks = append(trimmed, chunks[1:]...)
		if len(chunks) == 0 {
			return nil
		}
	}
	return &memSnapshot{lset: s.lset, chunks: chunks}
}

// trimChunk returns c's samples at or after floor, encoded anew.
func trimChunk(c chunkenc.Chunk, floor int64) []memChunk {
	tmp := &memSeries{lastT: math.MinInt64}
	it := c.Iterator(nil)
	for typ := it.Seek(floor); typ != chunkenc.ValNone; typ = it.Next() {
		switch typ {
		case chunkenc.ValFloat:
			t, v := it.At()
			_ = tmp.append(t, v)
		case chunkenc.ValHistogram:
			t, h := it.AtHistogram(nil)
			_ = tmp.appendHistogram(t, h, nil)
		case chunkenc.ValFloatHistogram:
			t, fh := it.AtFloatHistogram(nil)
			_ = tmp.appendHistogram(t, nil, fh)
		}
	}
	return tmp.chunks
}

// memQuerier reads a memStore between mint and maxt, nothing before
// floor (the retention floor, at most mint).
type memQuerier struct {
	st                *memStore
	mint, maxt, floor int64
}

// Select implements storage.Querier.
func (q memQuerier) Select(_ context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
	}
	if mint > maxt {
		return storage.EmptySeriesSet()
	}
	var out []storage.Series
	q.st.mu.RLock()
	q.st.each(ms, func(s *memSeries) {
		if snap := s.snapshot(mint, maxt, q.floor); snap != nil {
			out = append(out, snap)
		}
	})
	q.st.mu.RUnlock()
	if sortSeries {
		slices.SortFunc(out, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	}
	return &seriesList{series: out}
}

// each calls f with every indexed series ms match; a metric name matched
// for equality narrows the search to that name's series. Call with mu
// held.
func (st *memStore) each(ms []*labels.Matcher, f func(*memSeries)) {
	visit := func(list []*memSeries) {
	next:
		for _, s := range list {
			for _, m := range ms {
				if !m.Matches(s.lset.Get(m.Name)) {
					continue next
				}
			}
			f(s)
		}
	}
	for _, m := range ms {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			visit(st.byName[m.Value])
			return
		}
	}
	for _, list := range st.byName {
		visit(list)
	}
}

// LabelValues implements storage.Querier: the values of name among the
// series ms match, sorted.
func (q memQuerier) LabelValues(_ context.Context, name string, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	q.st.mu.RLock()
	q.st.each(ms, func(s *memSeries) {
		if v := s.lset.Get(name); v != "" && s.overlaps(q.mint, q.maxt) {
			seen[v] = struct{}{}
		}
	})
	q.st.mu.RUnlock()
	return sortedKeys(seen), nil, nil
}

// LabelNames implements storage.Querier: the label names of the series ms
// match, sorted.
func (q memQuerier) LabelNames(_ context.Context, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	q.st.mu.RLock()
	q.st.each(ms, func(s *memSeries) {
		if s.overlaps(q.mint, q.maxt) {
			s.lset.Range(func(l labels.Label) { seen[l.Name] = struct{}{} })
		}
	})
	q.st.mu.RUnlock()
	return sortedKeys(seen), nil, nil
}

// Close implements storage.Querier.
func (memQuerier) Close() error { return nil }

// overlaps tells whether the series has samples in [mint, maxt].
func (s *memSeries) overlaps(mint, maxt int64) bool {
	for _, c := range s.chunks {
		if c.maxt >= mint && c.mint <= maxt {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// seriesList is a storage.SeriesSet of series already selected.
type seriesList struct {
	series []storage.Series
	i      int
}

func (l *seriesList) Next() bool {
	if l.i >= len(l.series) {
		return false
	}
	l.i++
	return true
}
func (l *seriesList) At() storage.Series                { return l.series[l.i-1] }
func (l *seriesList) Err() error                        { return nil }
func (l *seriesList) Warnings() annotations.Annotations { return nil }
func (l *memSnapshot) Labels() labels.Labels            { return l.lset }

// Iterator implements storage.Series: the chunk's own iterator for one
// chunk, Prometheus's chain of them for several.
func (l *memSnapshot) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	if len(l.chunks) == 1 {
		return l.chunks[0].chunk.Iterator(it)
	}
	its := make([]chunkenc.Iterator, len(l.chunks))
	for i, c := range l.chunks {
		its[i] = c.chunk.Iterator(nil)
	}
	return storage.ChainSampleIteratorFromIterators(it, its)
}

// memSnapshot is a series as a query reads it: its chunks, in order.
type memSnapshot struct {
	lset   labels.Labels
	chunks []memChunk
}
