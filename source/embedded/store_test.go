package embedded

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
)

// newShared returns a Source of url keeping its samples in stores' head
// of dir; the test closes it unless it does so itself.
func newShared(t *testing.T, stores *Stores, dir, url string, clk *clock, opts Options) *Source {
	t.Helper()
	opts.Stores, opts.Dir, opts.Now = stores, dir, clk.Now
	s, err := New(config.Scrape{URL: url, Interval: config.Duration(time.Second)}, opts, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestSharedHeadIsolatesSources scrapes two real targets exposing the same
// metric names into one head: each Source's queries see its own series
// only, without the label that tells them apart.
func TestSharedHeadIsolatesSources(t *testing.T) {
	ta, tb := newTarget(t, false), newTarget(t, true)
	ta.serve()
	for range 3 {
		tb.serve()
	}
	stores, dir, clk := NewStores(), t.TempDir(), &clock{t: start}
	a := newShared(t, stores, dir, ta.srv.URL, clk, Options{})
	b := newShared(t, stores, dir, tb.srv.URL, clk, Options{})
	if a.store != b.store || stores.Len() != 1 {
		t.Fatalf("%d heads for two Sources of one directory, want one", stores.Len())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("chunk directories under %s = %v, want one", dir, entries)
	}
	for i := range 3 {
		clk.Set(start.Add(time.Duration(i) * time.Second))
		for _, s := range []*Source{a, b} {
			if err := s.ScrapeOnce(context.Background()); err != nil {
				t.Fatalf("scrape: %v", err)
			}
		}
	}
	at := start.Add(2 * time.Second)
	for _, tc := range []struct {
		s    *Source
		want float64
	}{{a, 19}, {b, 57}} {
		if got := single(t, tc.s, `sum(http_requests_total{code="200"})`, at); got != tc.want {
			t.Errorf("source %s: sum(http_requests_total{code=\"200\"}) = %v, want %v", tc.s.id, got, tc.want)
		}
		if got := single(t, tc.s, `count(up)`, at); got != 1 {
			t.Errorf("source %s: count(up) = %v, want 1", tc.s.id, got)
		}
		if got, want := single(t, tc.s, `count({__name__=~".+"})`, at), float64(tc.s.numSeries()); got != want {
			t.Errorf("source %s: %v series, want the %v it scraped", tc.s.id, got, want)
		}
		for _, smpl := range query(t, tc.s, `http_requests_total`, at) {
			if _, ok := smpl.Metric[sourceLabel]; ok {
				t.Errorf("source %s: a series shows %s: %v", tc.s.id, sourceLabel, smpl.Metric)
			}
		}
		// The label is not the queries': to them, no series has it.
		if v := query(t, tc.s, `up{`+sourceLabel+`!=""}`, at); len(v) != 0 {
			t.Errorf("source %s: up{%s!=\"\"} = %v, want nothing", tc.s.id, sourceLabel, v)
		}
		if got := single(t, tc.s, `count(up{`+sourceLabel+`=""})`, at); got != 1 {
			t.Errorf("source %s: count(up{%s=\"\"}) = %v, want 1", tc.s.id, sourceLabel, got)
		}
	}

	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := single(t, b, `sum(http_requests_total{code="200"})`, at); got != 57 {
		t.Errorf("after the other Source closed: %v, want 57", got)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if stores.Len() != 0 {
		t.Errorf("%d heads open after the last Source closed, want none", stores.Len())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the last Close left %v under %s", entries, dir)
	}
}

// TestSharedHeadRetentionPerSource: each Source of a shared head sees its
// own retention, and the head keeps the longest.
func TestSharedHeadRetentionPerSource(t *testing.T) {
	tg := newTarget(t, false)
	stores, dir, clk := NewStores(), t.TempDir(), &clock{t: start}
	short := newShared(t, stores, dir, tg.srv.URL, clk, Options{Retention: 30 * time.Second})
	long := newShared(t, stores, dir, tg.srv.URL, clk, Options{Retention: 2 * time.Minute})
	at := func(sec int) time.Time { return start.Add(time.Duration(sec) * time.Second) }
	scrape := func(from, to int, srcs ...*Source) {
		t.Helper()
		for i := from; i <= to; i++ {
			clk.Set(at(i))
			for _, s := range srcs {
				if err := s.ScrapeOnce(context.Background()); err != nil {
					t.Fatalf("scrape at %ds: %v", i, err)
				}
			}
		}
	}
	scrape(0, 199, short, long)
	last := at(199)
	if got := single(t, short, `count_over_time(up[5m])`, last); got != 31 {
		t.Errorf("30s retention: %v samples of up within 5m, want 31 (169s..199s)", got)
	}
	if got := single(t, long, `count_over_time(up[5m])`, last); got != 121 {
		t.Errorf("2m retention: %v samples of up within 5m, want 121 (79s..199s)", got)
	}
	// The head dropped what no Source keeps (it truncates once a quarter
	// of the longest retention has passed).
	if mint, oldest := short.store.head.MinTime(), at(199-120-30).UnixMilli(); mint < oldest {
		t.Errorf("head's oldest sample at %v, want at or after %v", time.UnixMilli(mint).UTC(), time.UnixMilli(oldest).UTC())
	}

	// Once the long retention's Source is gone, the head keeps 30s.
	if err := long.Close(); err != nil {
		t.Fatal(err)
	}
	scrape(200, 260, short)
	if mint, oldest := short.store.head.MinTime(), at(260-30-8).UnixMilli(); mint < oldest {
		t.Errorf("head's oldest sample at %v after the long retention's Source closed, want at or after %v", time.UnixMilli(mint).UTC(), time.UnixMilli(oldest).UTC())
	}
	if got := single(t, short, `count_over_time(up[5m])`, at(260)); got != 31 {
		t.Errorf("30s retention: %v samples of up within 5m, want 31", got)
	}
}
