package embedded

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
)

// The metrics by target expose as client_golang's vectors did: counters,
// a histogram of the scrape durations, and the gauges of the targets whose
// source is open; a closed source's counters stay.
func TestMetricsExposition(t *testing.T) {
	reg := prometheus.NewRegistry()
	up, down := newTarget(t, false), newTarget(t, false)
	down.status.Store(500)
	var sources []*Source
	for _, tg := range []*target{up, down} {
		s, err := New(config.Scrape{URL: tg.srv.URL}, Options{}, zap.NewNop(), reg)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, s)
		for range 2 {
			_ = s.ScrapeOnce(context.Background())
		}
	}
	upStats := sources[0].stats
	wantSeries, wantDropped := upStats.series.Load(), upStats.dropped.Load()
	if wantSeries < 4 {
		t.Fatalf("%d series kept, want the target's and Guardian's own", wantSeries)
	}
	expo := func(gauges bool) string {
		var b strings.Builder
		fmt.Fprintf(&b, `# HELP guardian_scrape_failures_total Failed scrapes of a service's metrics endpoint by the embedded source.
# TYPE guardian_scrape_failures_total counter
guardian_scrape_failures_total{target=%[1]q} 2
guardian_scrape_failures_total{target=%[2]q} 0
# HELP guardian_scrapes_total Scrapes of a service's metrics endpoint by the embedded source.
# TYPE guardian_scrapes_total counter
guardian_scrapes_total{target=%[1]q} 2
guardian_scrapes_total{target=%[2]q} 2
`, down.srv.URL, up.srv.URL)
		if gauges {
			fmt.Fprintf(&b, `# HELP guardian_embedded_series Series the embedded source's latest scrape appended to (a folded series counted once), Guardian's own up, scrape_duration_seconds and scrape_samples_scraped included.
# TYPE guardian_embedded_series gauge
guardian_embedded_series{target=%[1]q} 3
guardian_embedded_series{target=%[2]q} %[3]d
# HELP guardian_embedded_series_dropped Series of the latest scrape the embedded source dropped because no query of the service selects their metric name.
# TYPE guardian_embedded_series_dropped gauge
guardian_embedded_series_dropped{target=%[1]q} 0
guardian_embedded_series_dropped{target=%[2]q} %[4]d
`, down.srv.URL, up.srv.URL, wantSeries, wantDropped)
		}
		return b.String()
	}
	names := []string{"guardian_scrapes_total", "guardian_scrape_failures_total", "guardian_embedded_series", "guardian_embedded_series_dropped"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expo(true)), names...); err != nil {
		t.Error(err)
	}
	// Every scrape is in the histogram, each under the bounds of its
	// duration and above.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	hists := 0
	for _, mf := range mfs {
		if mf.GetName() != "guardian_scrape_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			hists++
			h := m.GetHistogram()
			bs := h.GetBucket()
			if h.GetSampleCount() != 2 || len(bs) != len(scrapeBuckets) || h.GetSampleSum() <= 0 {
				t.Errorf("%v: %d scrapes in %d buckets, sum %v; want 2 in %d, a sum above 0", m.GetLabel(), h.GetSampleCount(), len(bs), h.GetSampleSum(), len(scrapeBuckets))
				continue
			}
			for i, b := range bs {
				if b.GetUpperBound() != scrapeBuckets[i] || (i > 0 && b.GetCumulativeCount() < bs[i-1].GetCumulativeCount()) || b.GetCumulativeCount() > 2 {
					t.Errorf("%v: bucket %d: le %v, %d cumulated", m.GetLabel(), i, b.GetUpperBound(), b.GetCumulativeCount())
				}
			}
			if last := bs[len(bs)-1].GetCumulativeCount(); last != 2 {
				t.Errorf("%v: %d scrapes under 10 s, want 2", m.GetLabel(), last)
			}
		}
	}
	if hists != 2 {
		t.Errorf("%d guardian_scrape_duration_seconds histograms, want 2", hists)
	}
	for _, s := range sources {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expo(false)), names...); err != nil {
		t.Errorf("after Close: %v", err)
	}
}

func TestObserveBuckets(t *testing.T) {
	var ts targetStats
	for _, d := range []float64{0, .001, .0011, 10, 11} {
		ts.observe(d)
	}
	want := [14]uint64{0: 2, 1: 1, 12: 1, 13: 1}
	if ts.counts != want {
		t.Errorf("counts %v, want %v (le is inclusive)", ts.counts, want)
	}
}
