package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/source"
)

// acceptHeader offers the formats Prometheus 3 asks for by default
// (scrape_protocols), best first: OpenMetrics 1.0.0 and 0.0.1, then the
// Prometheus text format 1.0.0 and 0.0.4, with metric and label names
// unescaped (escaping=allow-utf-8) as Prometheus 3 stores them, so that a
// query reads the same here as against Prometheus. A target that speaks only
// the text format answers with it.
const acceptHeader = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5," +
	"application/openmetrics-text;version=0.0.1;q=0.4," +
	"text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3," +
	"text/plain;version=0.0.4;q=0.2," +
	"*/*;q=0.1"

// fallbackMediaType is how a body is parsed whose Content-Type is missing or
// not an exposition format (Prometheus's fallback_scrape_protocol): as the
// Prometheus text format, which every client library serves.
const fallbackMediaType = "text/plain"

const userAgent = "guardian"

// errNoMetricName fails a scrape exposing a series without a name.
var errNoMetricName = errors.New("series without a metric name")

// health is the outcome of the latest scrape, for logging changes only.
type health int

const (
	healthUnknown health = iota
	healthUp
	healthDown
)

// String returns the health's name.
func (h health) String() string {
	switch h {
	case healthUp:
		return "up"
	case healthDown:
		return "down"
	}
	return "unknown"
}

// cacheEntry is one series of the latest scrapes, keyed by a hash of the
// series as the body spells it (name and labels), so that a series seen
// before is appended without parsing its labels again.
type cacheEntry struct {
	// series is where its samples go: the series of its labels, or the
	// folded series of its metric (see fold).
	series *memSeries
	// last is the entry's latest value when series is a fold.
	last     float64
	lastIter uint32 // latest scrape iteration that had it (its low bits)
	// folded: series is a fold; seen: last is set.
	folded, seen bool
	// dropped: the filter now drops the series (see Source.SetFilter).
	dropped bool
}

// scrapeState is what scrapes keep between runs; Source.scrapeMu guards it.
type scrapeState struct {
	iter uint64
	// cache holds the series of the latest scrapes by the 64-bit xxhash of
	// their spelling: the spellings themselves cost a thousand services
	// about 10 MiB, and two of a target's series sharing a hash (one
	// chance in 10^15 for a thousand series) is not worth them.
	cache   map[uint64]cacheEntry
	symbols *labels.SymbolTable
	// body is the scraped body, from bodies while a scrape runs;
	// lastBody the length of the latest.
	body     *bytes.Buffer
	lastBody int64
	lset     labels.Labels
	health   health
	// folding builds the labels of folded series; reps holds, by metric
	// name, the value each class of a fold's labels takes (see fold).
	folding labels.ScratchBuilder
	reps    map[string]map[string]string

	// cacheFilter is the filter the cache was filled with.
	cacheFilter *Filter
	// dropped is the number of series the latest scrape's filter dropped;
	// live the number of series it appended to, stale markers aside.
	dropped, live int

	// pending are the samples of the scrape under way, committed at its
	// end; from pendings while a scrape runs.
	pending []pendingSample
}

func newScrapeState() scrapeState {
	return scrapeState{
		cache:   make(map[uint64]cacheEntry),
		reps:    map[string]map[string]string{},
		symbols: labels.NewSymbolTable(),
	}
}

// bodies are the buffers scrapes read bodies into, shared by all Sources:
// a thousand Sources each keeping the buffer of its latest body held tens
// of MiB.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// pendings are the buffers of scrapes' pending samples, shared by all
// Sources like bodies.
var pendings = sync.Pool{New: func() any { return new([]pendingSample) }}

// maxPooledPending is the largest buffer put back into pendings.
const maxPooledPending = 1 << 14

// maxPooledBody is the largest buffer put back into bodies.
const maxPooledBody = 1 << 20

// ScrapeOnce scrapes the target once and appends its samples at the time
// Options.Now returns, together with up, scrape_duration_seconds and
// scrape_samples_scraped. A failed scrape records up 0 and marks the series of
// the previous scrape stale, as Prometheus does, and returns the error. A
// scrape cut short because ctx is done records nothing. Then samples older
// than the retention are dropped.
//
// Options.OnScrape is told the outcome, unless the scrape was cut short or
// the source is closed.
func (s *Source) ScrapeOnce(ctx context.Context) error {
	err := s.scrapeOnce(ctx)
	if s.onScrape != nil && ctx.Err() == nil && !errors.Is(err, ErrClosed) {
		s.onScrape(ctx, err)
	}
	return err
}

func (s *Source) scrapeOnce(ctx context.Context) error {
	s.scrapeMu.Lock()
	defer s.scrapeMu.Unlock()

	// Timestamped under inflightMu: a query that found no scrape under way
	// (awaitScrape) was for a time before this one's, and reads none of
	// its samples (the store keeps no isolation).
	s.inflightMu.Lock()
	ts := s.aligned(s.now())
	p := &inflightScrape{at: ts, done: make(chan struct{})}
	s.inflight = p
	s.inflightMu.Unlock()
	defer func() {
		s.inflightMu.Lock()
		s.inflight = nil
		s.inflightMu.Unlock()
		close(p.done)
	}()
	start := time.Now()
	s.body = bodies.Get().(*bytes.Buffer)
	defer func() {
		if s.body.Cap() <= maxPooledBody {
			s.body.Reset()
			bodies.Put(s.body)
		}
		s.body = nil
	}()
	contentType, scrapeErr := s.fetch(ctx)
	if scrapeErr != nil && ctx.Err() != nil {
		return fmt.Errorf("scraping %s: %w", s.shown, scrapeErr)
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("scraping %s: %w", s.shown, ErrClosed)
	}
	err := s.ingest(timestamp.FromTime(ts), contentType, scrapeErr, start)

	s.stats.scrapes.Add(1)
	s.stats.observe(time.Since(start).Seconds())
	s.stats.series.Store(int64(s.numSeries()))
	s.stats.dropped.Store(int64(s.dropped))
	if err != nil {
		s.stats.failures.Add(1)
		if s.health != healthDown {
			s.logger.Warn("scrape failed", zap.String("url", s.shown), zap.Stringer("was", s.health), zap.Error(err))
		}
		s.health = healthDown
		return fmt.Errorf("scraping %s: %w", s.shown, err)
	}
	if s.health == healthDown {
		s.logger.Info("scrape recovered", zap.String("url", s.shown))
	}
	s.health = healthUp
	return nil
}

// aligned returns t moved to the scrape loop's schedule (see NextScrape)
// when it is that close to it, as Prometheus
// does (--scrape.timestamp-tolerance): a timestamp a few milliseconds off
// its schedule costs two bytes in a chunk, one on it a bit. The tolerance
// is a hundredth of the interval, at most 25 ms: a rate over a minute moves
// by 0.04% at most.
func (s *Source) aligned(t time.Time) time.Time {
	sc := s.schedule.Load()
	if sc == nil {
		return t
	}
	tol := min(s.interval/100, maxTimestampTolerance)
	at := s.nextScrape(sc, t.Add(-tol))
	if d := t.Sub(at); d >= -tol && d <= tol {
		return at
	}
	return t
}

// maxTimestampTolerance bounds how far aligned moves a scrape's timestamp.
const maxTimestampTolerance = 25 * time.Millisecond

// fetch reads the target's body into s.body and returns its Content-Type.
func (s *Source) fetch(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, http.NoBody)
	if err != nil {
		return "", s.unquote(err)
	}
	req.Header.Set("Accept", acceptHeader)
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(s.timeout.Seconds(), 'f', -1, 64))
	resp, err := s.client.Do(req)
	if err != nil {
		return "", s.unquote(err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return "", statusError{code: resp.StatusCode, status: resp.Status}
	}
	s.body.Reset()
	// Room for the body at once: its announced length, or the previous
	// body's and an eighth, rather than the doublings of a growing
	// buffer (pooled buffers are dropped at every collection).
	want := resp.ContentLength
	if want < 0 {
		want = s.lastBody + s.lastBody/8
	}
	s.body.Grow(int(min(want, s.bodySizeLimit)) + bytes.MinRead)
	n, err := s.body.ReadFrom(io.LimitReader(resp.Body, s.bodySizeLimit+1))
	if err != nil {
		return "", fmt.Errorf("reading body: %w", err)
	}
	if n > s.bodySizeLimit {
		return "", fmt.Errorf("body exceeds the limit of %d bytes", s.bodySizeLimit)
	}
	s.lastBody = n
	return resp.Header.Get("Content-Type"), nil
}

// unquote replaces the URL a *url.Error quotes with the shown one, keeping
// the error's type: source.Reason tells a timeout by it (net.Error).
func (s *Source) unquote(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		c := *uerr
		c.URL = s.shown
		return &c
	}
	return err
}

// redact returns a scrape URL for logs, errors and metric labels: user
// info and query, which may carry credentials, show as "<secret>"; scheme,
// host and path stay.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	if u.User != nil {
		r.User = url.User("<secret>")
	}
	s := r.String()
	if u.RawQuery != "" {
		s += "?<secret>"
	}
	return strings.Replace(s, "%3Csecret%3E@", "<secret>@", 1)
}

// statusError is a scrape answered with a status other than 200 OK. A 5xx
// is the target failing: it is source.ErrUnavailable.
type statusError struct {
	code   int
	status string
}

func (e statusError) Error() string { return "server returned HTTP status " + e.status }

// Is reports a 5xx as source.ErrUnavailable.
func (e statusError) Is(target error) bool {
	return target == source.ErrUnavailable && e.code >= 500
}

// ingest appends one scrape's outcome at t (ms) and commits it.
func (s *Source) ingest(t int64, contentType string, scrapeErr error, start time.Time) error {
	s.iter++
	buf := pendings.Get().(*[]pendingSample)
	s.pending = (*buf)[:0]
	total := 0
	if scrapeErr == nil {
		total, scrapeErr = s.appendBody(contentType)
		if scrapeErr != nil {
			// As Prometheus: a body that does not parse adds nothing.
			s.pending = s.pending[:0]
		}
	}
	s.resolve()
	s.appendStaleMarkers(scrapeErr != nil)

	up := 1.0
	if scrapeErr != nil {
		up = 0
	}
	s.pending = append(s.pending,
		pendingSample{s: s.upSeries, v: up},
		pendingSample{s: s.durSeries, v: time.Since(start).Seconds()},
		pendingSample{s: s.samplesSeries, v: float64(total)})
	if rejected, err := s.store.commit(t, s.pending); rejected > 0 {
		// As Prometheus: counted and logged, not failing the scrape.
		s.logger.Debug("samples rejected", zap.Int("count", rejected), zap.Error(err))
	}
	clear(s.pending)
	if cap(s.pending) <= maxPooledPending {
		*buf = s.pending[:0]
		pendings.Put(buf)
	}
	s.pending = nil
	s.truncate(t)
	return scrapeErr
}

// appendBody parses the body with Prometheus's own parsers (textparse: the
// OpenMetrics or Prometheus text format, or protobuf, by Content-Type) and
// appends every sample at t, as Prometheus's scrape loop does without
// honor_timestamps: timestamps in the body are ignored, metadata and
// comments skipped, OpenMetrics _created series of counters, histograms and
// summaries skipped, native histograms appended as such. It returns the
// number of samples.
func (s *Source) appendBody(contentType string) (int, error) {
	s.dropped = 0
	if f := s.filter.Load(); f != s.cacheFilter {
		s.refilter(f)
	}
	if s.body.Len() == 0 {
		return 0, nil
	}
	p, err := textparse.New(s.body.Bytes(), contentType, s.symbols, textparse.ParserOptions{
		// Guardian's queries read classic histograms; keep them when a
		// protobuf histogram has native buckets too.
		KeepClassicOnClassicAndNativeHistograms: true,
		OpenMetricsSkipSTSeries:                 true,
		FallbackContentType:                     fallbackMediaType,
	})
	if p == nil {
		return 0, fmt.Errorf("decoding body: %w", err)
	}
	if err != nil {
		s.logger.Debug("unexpected Content-Type, parsing as Prometheus text",
			zap.String("content_type", contentType), zap.Error(err))
	}

	total := 0
	for {
		entry, err := p.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return total, fmt.Errorf("decoding body (Content-Type %q): %w", contentType, err)
		}
		var (
			series []byte
			v      float64
			h      *histogram.Histogram
			fh     *histogram.FloatHistogram
		)
		switch entry {
		case textparse.EntrySeries:
			series, _, v = p.Series()
		case textparse.EntryHistogram:
			series, _, h, fh = p.Histogram()
		default: // TYPE, HELP, UNIT and comments: Guardian keeps no metadata.
			continue
		}
		total++
		if err := s.appendSample(p, series, v, h, fh); err != nil {
			if errors.Is(err, storage.ErrDuplicateSampleForTimestamp) {
				// As Prometheus: counted and logged, not failing the scrape.
				s.logger.Debug("sample rejected", zap.Error(err))
				continue
			}
			return total, err
		}
	}
	return total, nil
}

// appendSample adds the parser's current sample, a float v or a native
// histogram h or fh, of the series spelled series in the body, to the
// scrape's pending samples, unless the filter drops its metric name
// (counted in s.dropped). A series seen before is found in the cache
// without parsing its labels.
func (s *Source) appendSample(p textparse.Parser, series []byte, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram) error {
	key := xxhash.Sum64(series)
	e, cached := s.cache[key]
	if cached && e.dropped {
		s.dropped++
		return nil
	}
	if cached && e.lastIter == uint32(s.iter) {
		// The body has the same series twice.
		return fmt.Errorf("series %s: %w", series, storage.ErrDuplicateSampleForTimestamp)
	}
	if !cached {
		if name, ok := metricNameOf(series); ok && !s.cacheFilter.keepsBytes(name) {
			s.dropped++
			return nil
		}
		lset, err := s.parseLabels(p)
		if err != nil {
			return fmt.Errorf("series %s: %w", series, err)
		}
		name := lset.Get(model.MetricNameLabel)
		if !s.cacheFilter.Keeps(name) {
			s.dropped++
			return nil
		}
		e = cacheEntry{}
		if fd := s.cacheFilter.foldOf(name); fd != nil && h == nil && fh == nil {
			e.series, e.folded = s.store.seriesFor(s.foldLabels(name, lset, fd)), true
			e.series.folded = true
		} else {
			e.series = s.store.seriesFor(lset.WithoutEmpty())
		}
		e.series.refs++
	}
	e.lastIter = uint32(s.iter)
	s.cache[key] = e
	s.pending = append(s.pending, pendingSample{key: key, v: v, h: h, fh: fh})
	return nil
}

// foldLabels returns the labels of the folded series lset, a series of
// metric name, is summed into (see fold): its name, the labels fd keeps,
// and for each of fd's classes the value of lset's class (the first value
// seen in it).
func (s *Source) foldLabels(name string, lset labels.Labels, fd *fold) labels.Labels {
	b := &s.folding
	b.Reset()
	lset.Range(func(l labels.Label) {
		if _, keep := fd.keep[l.Name]; keep || l.Name == model.MetricNameLabel {
			b.Add(l.Name, l.Value)
		}
	})
	reps := s.reps[name]
	if reps == nil {
		reps = map[string]string{}
		s.reps[name] = reps
	}
	for label, ms := range fd.classes {
		v := lset.Get(label)
		var verdicts uint64
		for i, m := range ms {
			if m.Matches(v) {
				verdicts |= 1 << (i % 64)
			}
		}
		class := label + "\xff" + strconv.FormatUint(verdicts, 16)
		rep, ok := reps[class]
		if !ok {
			rep = strings.Clone(v)
			reps[class] = rep
		}
		if rep != "" {
			b.Add(label, rep)
		}
	}
	b.Sort()
	return b.Labels()
}

// refilter moves the cache to filter f: the series f drops end at this
// scrape; those whose metric f folds otherwise are parsed again.
func (s *Source) refilter(f *Filter) {
	for key, e := range s.cache {
		name := e.series.lset.Get(model.MetricNameLabel)
		e.dropped = !f.Keeps(name)
		if !e.dropped && !f.foldOf(name).equal(s.cacheFilter.foldOf(name)) {
			delete(s.cache, key)
			e.series.refs--
			delete(s.reps, name)
			continue
		}
		s.cache[key] = e
	}
	s.cacheFilter = f
}

// resolve turns the scrape's pending samples of cache entries into
// samples of series: an entry's own series, or the folded series it adds
// to, once whatever its entries add.
func (s *Source) resolve() {
	out := s.pending[:0]
	for _, p := range s.pending {
		if p.s != nil {
			out = append(out, p)
			continue
		}
		e := s.cache[p.key]
		sr := e.series
		if !e.folded || p.h != nil || p.fh != nil {
			sr.fedIter = s.iter
			out = append(out, pendingSample{s: sr, v: p.v, h: p.h, fh: p.fh})
			continue
		}
		var delta float64
		switch {
		case math.IsNaN(p.v):
		case !e.seen:
			// A new series starts the fold, or is counted from its next
			// sample on, as rate counts it.
			if sr.lastT == math.MinInt64 {
				delta = p.v
			}
		case p.v >= e.last:
			delta = p.v - e.last
		default: // a counter reset
			delta = p.v
		}
		if !math.IsNaN(p.v) {
			e.last, e.seen = p.v, true
			s.cache[p.key] = e
		}
		sr.sum += delta
		if sr.fedIter != s.iter {
			sr.fedIter = s.iter
			out = append(out, pendingSample{s: sr})
		}
	}
	for i := range out {
		if p := &out[i]; p.s.folded && p.h == nil && p.fh == nil {
			p.v = p.s.sum
		}
	}
	clear(s.pending[len(out):])
	s.pending = out
}

// parseLabels returns the labels of the parser's current sample and checks
// them as Prometheus 3 does with its default UTF-8 name validation. (The head
// drops labels with empty values.)
func (s *Source) parseLabels(p textparse.Parser) (labels.Labels, error) {
	p.Labels(&s.lset)
	lset := s.lset
	if !lset.Has(model.MetricNameLabel) {
		return labels.EmptyLabels(), errNoMetricName
	}
	if !lset.IsValid(model.UTF8Validation) {
		return labels.EmptyLabels(), fmt.Errorf("invalid metric name or label names: %s", lset)
	}
	return lset, nil
}

// appendStaleMarkers ends the series that the previous scrape appended to
// and this one did not (all of them when this scrape failed), with
// Prometheus's stale marker, so that instant queries stop seeing them at
// once. After a successful scrape it forgets the cache entries the scrape
// did not use.
func (s *Source) appendStaleMarkers(failed bool) {
	stale := math.Float64frombits(value.StaleNaN)
	s.live = 0
	for _, list := range s.store.byName {
		for _, sr := range list {
			if sr == s.upSeries || sr == s.durSeries || sr == s.samplesSeries {
				continue
			}
			// A body that did not parse added nothing.
			fed := !failed && sr.fedIter == s.iter
			if sr.live && !fed {
				s.pending = append(s.pending, pendingSample{s: sr, v: stale})
			}
			sr.live = fed
			if fed {
				s.live++
			}
		}
	}
	if failed {
		return
	}
	for key, e := range s.cache {
		if e.lastIter != uint32(s.iter) {
			delete(s.cache, key)
			e.series.refs--
		}
	}
}

// truncate moves the retention floor to t minus the retention and drops
// the samples older than it. Queries never see samples below the floor.
func (s *Source) truncate(t int64) {
	mint := t - s.retention.Milliseconds()
	if mint > s.floor.Load() {
		s.floor.Store(mint)
	}
	s.store.truncate(mint)
}

// numSeries is the number of series the latest scrape appended to, its
// report series included.
func (s *Source) numSeries() int { return s.live + 3 }
