package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/zap"
)

// acceptHeader asks for the Prometheus text format first and OpenMetrics
// 1.0 second (Prometheus itself prefers OpenMetrics). Both decode, but
// prometheus/common's OpenMetrics decoder is strict where Prometheus is
// lenient: it rejects, for one, the OpenMetrics output of client_golang's own
// Go collector (the gauge go_memstats_alloc_bytes and the counter
// go_memstats_alloc_bytes_total share a family name there), and it is far
// slower. Every common client library serves the text format.
const acceptHeader = "text/plain;version=0.0.4;q=0.5," +
	"application/openmetrics-text;version=1.0.0;q=0.4," +
	"application/openmetrics-text;version=0.0.1;q=0.3," +
	"*/*;q=0.2"

const userAgent = "guardian"

// Series Guardian records about each scrape, as Prometheus does.
var (
	upLabels       = labels.FromStrings(labels.MetricName, "up")
	durationLabels = labels.FromStrings(labels.MetricName, "scrape_duration_seconds")
	samplesLabels  = labels.FromStrings(labels.MetricName, "scrape_samples_scraped")
)

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

// cacheEntry is one series of the latest scrapes, keyed by its name, labels
// and bucket or quantile bound as decoded, so that a series seen before is
// appended without building its labels again.
type cacheEntry struct {
	ref       storage.SeriesRef
	lset      labels.Labels
	firstSeen uint64 // scrape iteration that added the entry
	lastSeen  uint64 // latest scrape iteration that appended to it
}

// scrapeState is what scrapes keep between runs; Source.scrapeMu guards it.
type scrapeState struct {
	iter    uint64
	cache   map[string]*cacheEntry
	body    bytes.Buffer
	family  dto.MetricFamily
	key     []byte
	builder labels.ScratchBuilder
	health  health

	upRef, durationRef, samplesRef storage.SeriesRef
}

func newScrapeState() scrapeState {
	return scrapeState{cache: make(map[string]*cacheEntry)}
}

// ScrapeOnce scrapes the target once and appends its samples at the time
// Options.Now returns, together with up, scrape_duration_seconds and
// scrape_samples_scraped. A failed scrape records up 0 and marks the series of
// the previous scrape stale, as Prometheus does, and returns the error. A
// scrape cut short because ctx is done records nothing. Then samples older
// than the retention are dropped.
func (s *Source) ScrapeOnce(ctx context.Context) error {
	s.scrapeMu.Lock()
	defer s.scrapeMu.Unlock()

	ts := s.now()
	start := time.Now()
	format, scrapeErr := s.fetch(ctx)
	if scrapeErr != nil && ctx.Err() != nil {
		return fmt.Errorf("scraping %s: %w", s.url, scrapeErr)
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("scraping %s: %w", s.url, ErrClosed)
	}
	err := s.ingest(ctx, timestamp.FromTime(ts), format, scrapeErr, start)

	s.scrapes.Inc()
	s.duration.Observe(time.Since(start).Seconds())
	s.series.WithLabelValues(s.target).Set(float64(s.head.NumSeries()))
	if err != nil {
		s.failures.Inc()
		if s.health != healthDown {
			s.logger.Warn("scrape failed", zap.String("url", s.url), zap.Stringer("was", s.health), zap.Error(err))
		}
		s.health = healthDown
		return fmt.Errorf("scraping %s: %w", s.url, err)
	}
	if s.health == healthDown {
		s.logger.Info("scrape recovered", zap.String("url", s.url))
	}
	s.health = healthUp
	return nil
}

// fetch reads the target's body into s.body and returns its format, as its
// Content-Type says (unknown formats are read as Prometheus text).
func (s *Source) fetch(ctx context.Context) (expfmt.Format, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, http.NoBody)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", acceptHeader)
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(s.timeout.Seconds(), 'f', -1, 64))
	resp, err := s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("server returned HTTP status %s", resp.Status)
	}
	s.body.Reset()
	n, err := s.body.ReadFrom(io.LimitReader(resp.Body, s.bodySizeLimit+1))
	if err != nil {
		return "", fmt.Errorf("reading body: %w", err)
	}
	if n > s.bodySizeLimit {
		return "", fmt.Errorf("body exceeds the limit of %d bytes", s.bodySizeLimit)
	}
	return expfmt.ResponseFormat(resp.Header), nil
}

// ingest appends one scrape's outcome at t (ms) and commits it.
func (s *Source) ingest(ctx context.Context, t int64, format expfmt.Format, scrapeErr error, start time.Time) error {
	s.iter++
	app := s.head.Appender(ctx)
	total := 0
	if scrapeErr == nil {
		total, scrapeErr = s.appendBody(app, format, t)
		if scrapeErr != nil {
			// As Prometheus: a body that does not parse adds nothing.
			if err := app.Rollback(); err != nil {
				s.logger.Debug("rolling back a failed scrape", zap.Error(err))
			}
			app = s.head.Appender(ctx)
		}
	}
	s.appendStaleMarkers(app, t, scrapeErr != nil)

	up := 1.0
	if scrapeErr != nil {
		up = 0
	}
	s.upRef = s.appendReport(app, s.upRef, upLabels, t, up)
	s.durationRef = s.appendReport(app, s.durationRef, durationLabels, t, time.Since(start).Seconds())
	s.samplesRef = s.appendReport(app, s.samplesRef, samplesLabels, t, float64(total))
	if err := app.Commit(); err != nil {
		return errors.Join(scrapeErr, fmt.Errorf("committing samples: %w", err))
	}
	s.truncate(t)
	return scrapeErr
}

// appendBody decodes the body with prometheus/common's expfmt decoders
// (Prometheus text, OpenMetrics 1.0, or delimited protobuf, by Content-Type)
// and appends every sample at t, flattening families into series as
// Prometheus does. It returns the number of samples.
func (s *Source) appendBody(app storage.Appender, format expfmt.Format, t int64) (int, error) {
	if s.body.Len() == 0 {
		return 0, nil
	}
	dec := expfmt.NewDecoder(bytes.NewReader(s.body.Bytes()), format)
	a := appendRun{s: s, app: app, t: t}
	for {
		s.family.Reset()
		if err := dec.Decode(&s.family); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return a.total, fmt.Errorf("decoding body (%s): %w", format, err)
		}
		if err := a.family(&s.family); err != nil {
			return a.total, err
		}
	}
	if a.rejected > 0 {
		s.logger.Debug("samples rejected", zap.Int("count", a.rejected), zap.Error(a.firstRejected))
	}
	return a.total, nil
}

// appendRun appends the samples of one scrape.
type appendRun struct {
	s   *Source
	app storage.Appender
	t   int64

	total, rejected int
	firstRejected   error
}

// Flattening suffixes and labels, as Prometheus names them.
const (
	suffixCount  = "_count"
	suffixSum    = "_sum"
	suffixBucket = "_bucket"
)

// family appends the series of one metric family: counters, gauges and
// untyped metrics as they are; summaries as name{quantile}, name_sum and
// name_count; histograms (also gauge histograms) as name_bucket{le},
// name_sum and name_count, with an le="+Inf" bucket added when missing. The
// quantile and le values are normalised as Prometheus 3 does ("1" becomes
// "1.0"). Native histogram parts are ignored.
func (a *appendRun) family(mf *dto.MetricFamily) error {
	name := mf.GetName()
	for _, m := range mf.GetMetric() {
		var err error
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			err = a.sample(m, name, "", "", 0, m.GetCounter().GetValue())
		case dto.MetricType_GAUGE:
			err = a.sample(m, name, "", "", 0, m.GetGauge().GetValue())
		case dto.MetricType_SUMMARY:
			sm := m.GetSummary()
			for _, q := range sm.GetQuantile() {
				if err = a.sample(m, name, "", model.QuantileLabel, q.GetQuantile(), q.GetValue()); err != nil {
					return err
				}
			}
			if err = a.sample(m, name, suffixSum, "", 0, sm.GetSampleSum()); err == nil {
				err = a.sample(m, name, suffixCount, "", 0, float64(sm.GetSampleCount()))
			}
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			h := m.GetHistogram()
			count := float64(h.GetSampleCount())
			if f := h.GetSampleCountFloat(); f > 0 {
				count = f
			}
			inf := false
			for _, b := range h.GetBucket() {
				v := float64(b.GetCumulativeCount())
				if f := b.GetCumulativeCountFloat(); f > 0 {
					v = f
				}
				inf = inf || math.IsInf(b.GetUpperBound(), +1)
				if err = a.sample(m, name, suffixBucket, model.BucketLabel, b.GetUpperBound(), v); err != nil {
					return err
				}
			}
			if !inf {
				if err = a.sample(m, name, suffixBucket, model.BucketLabel, math.Inf(+1), count); err != nil {
					return err
				}
			}
			if err = a.sample(m, name, suffixSum, "", 0, h.GetSampleSum()); err == nil {
				err = a.sample(m, name, suffixCount, "", 0, count)
			}
		default: // untyped
			err = a.sample(m, name, "", "", 0, m.GetUntyped().GetValue())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sample appends one series' value. The series is looked up in the cache by
// a key built from its name, labels and bucket/quantile bound in a reused
// buffer, so a series seen before costs neither label construction nor
// allocation.
func (a *appendRun) sample(m *dto.Metric, name, suffix, extraName string, extraValue, v float64) error {
	s := a.s
	a.total++
	key := append(s.key[:0], name...)
	key = append(key, suffix...)
	for _, lp := range m.GetLabel() {
		key = append(key, model.SeparatorByte)
		key = append(key, lp.GetName()...)
		key = append(key, model.SeparatorByte)
		key = append(key, lp.GetValue()...)
	}
	if extraName != "" {
		key = append(key, model.SeparatorByte, model.SeparatorByte)
		key = binary.LittleEndian.AppendUint64(key, math.Float64bits(extraValue))
	}
	s.key = key

	e, cached := s.cache[string(key)]
	if cached && e.lastSeen == s.iter {
		a.reject(key, storage.ErrDuplicateSampleForTimestamp)
		return nil
	}
	if !cached {
		b := &s.builder
		b.Reset()
		b.Add(labels.MetricName, name+suffix)
		for _, lp := range m.GetLabel() {
			if lp.GetValue() != "" {
				b.Add(lp.GetName(), lp.GetValue())
			}
		}
		if extraName != "" {
			b.Add(extraName, labels.FormatOpenMetricsFloat(extraValue))
		}
		b.Sort()
		e = &cacheEntry{lset: b.Labels(), firstSeen: s.iter}
	}
	ref, err := a.app.Append(e.ref, e.lset, a.t, v)
	if err != nil {
		if errors.Is(err, storage.ErrOutOfOrderSample) || errors.Is(err, storage.ErrDuplicateSampleForTimestamp) ||
			errors.Is(err, storage.ErrOutOfBounds) || errors.Is(err, storage.ErrTooOldSample) {
			a.reject(key, err)
			return nil
		}
		return fmt.Errorf("appending series %s: %w", e.lset, err)
	}
	e.ref = ref
	e.lastSeen = s.iter
	if !cached {
		s.cache[string(key)] = e
	}
	return nil
}

// reject counts a sample the head refused, as Prometheus does, without
// failing the scrape.
func (a *appendRun) reject(key []byte, err error) {
	a.rejected++
	if a.firstRejected == nil {
		a.firstRejected = fmt.Errorf("series %q: %w", key, err)
	}
}

// appendStaleMarkers ends the series that the previous scrape had and this
// one has not (all of them when this scrape failed), with Prometheus's stale
// marker, so that instant queries stop seeing them at once.
func (s *Source) appendStaleMarkers(app storage.Appender, t int64, failed bool) {
	stale := math.Float64frombits(value.StaleNaN)
	for key, e := range s.cache {
		if !failed && e.lastSeen == s.iter {
			continue
		}
		if e.firstSeen < s.iter {
			if _, err := app.Append(e.ref, e.lset, t, stale); err != nil {
				s.logger.Debug("appending stale marker", zap.Stringer("series", e.lset), zap.Error(err))
			}
		}
		delete(s.cache, key)
	}
}

// appendReport appends one of Guardian's per-scrape series.
func (s *Source) appendReport(app storage.Appender, ref storage.SeriesRef, lset labels.Labels, t int64, v float64) storage.SeriesRef {
	ref, err := app.Append(ref, lset, t, v)
	if err != nil {
		// The target exposes a series of the same name and no labels.
		s.logger.Debug("appending scrape report", zap.Stringer("series", lset), zap.Error(err))
		return 0
	}
	return ref
}

// truncate moves the retention floor to t minus the retention and, once a
// quarter of the retention has passed since the last time, drops older
// samples from the head. Queries never see samples below the floor.
func (s *Source) truncate(t int64) {
	mint := t - s.retention.Milliseconds()
	if mint > s.floor.Load() {
		s.floor.Store(mint)
	}
	hmin := s.head.MinTime()
	if hmin == math.MaxInt64 || mint <= hmin || mint-hmin < s.retention.Milliseconds()/4 {
		return
	}
	if err := s.head.Truncate(mint); err != nil {
		s.logger.Warn("truncating the embedded tsdb head", zap.Error(err))
	}
}
