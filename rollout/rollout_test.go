package rollout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/source"
)

// versions answers the version query with the given traffic per version.
func versions(traffic map[string]float64) source.Querier {
	return source.QueryFunc(func(_ context.Context, q string, _ time.Time) (source.Result, error) {
		if !strings.Contains(q, `service="checkout"`) {
			return source.Result{}, fmt.Errorf("template not rendered: %s", q)
		}
		var v model.Vector
		for name, f := range traffic {
			v = append(v, &model.Sample{Metric: model.Metric{"version": model.LabelValue(name)}, Value: model.SampleValue(f)})
		}
		return source.Result{Vector: v}, nil
	})
}

func newDetector(t *testing.T) *Detector {
	t.Helper()
	d, err := NewDetector("checkout", Config{VersionQuery: `sum by (version) (rate(http_requests_total{service="{{.Service}}"}[1m]))`})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestObserve(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	type step struct {
		traffic     map[string]float64
		wantEvent   string // "version<-baseline" or ""
		wantCurrent string
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"first observation only learns", []step{
			{map[string]float64{"v1": 10}, "", "v1"},
			{map[string]float64{"v1": 10}, "", "v1"},
		}},
		{"nothing serving at start waits for traffic", []step{
			{map[string]float64{}, "", ""},
			{map[string]float64{"v1": 0}, "", ""},
			{map[string]float64{"v1": 3}, "", "v1"},
		}},
		{"rolling update", []step{
			{map[string]float64{"v1": 10}, "", "v1"},
			{map[string]float64{"v1": 8, "v2": 2}, "v2<-v1", "v2"},
			{map[string]float64{"v1": 0, "v2": 10}, "", "v2"},
			{map[string]float64{"v2": 10}, "", "v2"},
		}},
		{"canary keeps baseline serving", []step{
			{map[string]float64{"v1": 100}, "", "v1"},
			{map[string]float64{"v1": 95, "v2": 5}, "v2<-v1", "v2"},
			{map[string]float64{"v1": 95, "v2": 5}, "", "v2"},
		}},
		{"rollback to a known version is not a deploy", []step{
			{map[string]float64{"v1": 10}, "", "v1"},
			{map[string]float64{"v2": 10}, "v2<-v1", "v2"},
			{map[string]float64{"v1": 10}, "", "v1"},
			{map[string]float64{"v3": 10}, "v3<-v1", "v3"},
		}},
		{"a version rolled back and deployed again is a deploy", []step{
			{traffic: map[string]float64{"v1": 10}, wantCurrent: "v1"},
			{map[string]float64{"v1": 8, "v2": 2}, "v2<-v1", "v2"},
			{map[string]float64{"v2": 10}, "", "v2"},
			{map[string]float64{"v2": 10}, "", "v2"},
			{map[string]float64{"v1": 2, "v2": 8}, "", "v1"}, // the rollback to v1: no deploy
			{map[string]float64{"v1": 10}, "", "v1"},
			{map[string]float64{"v1": 10}, "", "v1"},
			{map[string]float64{"v1": 8, "v2": 2}, "v2<-v1 again", "v2"},
		}},
		{"a version missing for one observation has not changed", []step{
			{traffic: map[string]float64{"v1": 5, "v2": 5}, wantCurrent: "v1"},
			{map[string]float64{"v1": 5}, "", "v1"},
			{map[string]float64{"v1": 5, "v2": 5}, "", "v1"},
			{map[string]float64{}, "", "v1"},
			{map[string]float64{}, "", "v1"},
			{map[string]float64{}, "", "v1"},
			{map[string]float64{"v1": 5, "v2": 5}, "", "v1"},
		}},
		{"a canary is judged against the stable version beside it", []step{
			{traffic: map[string]float64{"1.4.0": 95, "1.5.1": 5}, wantCurrent: "1.4.0"},
			{map[string]float64{"1.4.0": 95, "1.5.1": 3, "1.6.0": 2}, "1.6.0<-1.4.0", "1.6.0"},
			{map[string]float64{"1.4.0": 95, "1.6.0": 5}, "", "1.6.0"},
			{map[string]float64{"1.4.0": 95, "1.6.0": 5, "2.0.0": 1}, "2.0.0<-1.4.0", "2.0.0"},
		}},
		{"a version that no longer serves is not the baseline", []step{
			{traffic: map[string]float64{"1.4.0": 95, "1.7.1": 5}, wantCurrent: "1.4.0"},
			{map[string]float64{"1.4.0": 100}, "", "1.4.0"},
			{map[string]float64{"1.4.0": 100}, "", "1.4.0"},
			{map[string]float64{"1.4.0": 95, "1.8.0": 5}, "1.8.0<-1.4.0", "1.8.0"},
		}},
		{"canary v1 → v3 → v1 → v4 beside a stable v1", []step{
			{traffic: map[string]float64{"v1": 100}, wantCurrent: "v1"},
			{map[string]float64{"v1": 95, "v3": 5}, "v3<-v1", "v3"},
			{map[string]float64{"v1": 100}, "", "v1"},
			{map[string]float64{"v1": 100}, "", "v1"},
			{map[string]float64{"v1": 95, "v4": 5}, "v4<-v1", "v4"},
			{map[string]float64{"v1": 100}, "", "v1"},
			{map[string]float64{"v1": 100}, "", "v1"},
			{map[string]float64{"v1": 95, "v3": 5}, "v3<-v1 again", "v3"},
		}},
		{"NaN and zero traffic do not count", []step{
			{map[string]float64{"v1": 10}, "", "v1"},
			{map[string]float64{"v1": 10, "v2": math.NaN()}, "", "v1"},
			{map[string]float64{"v1": 10, "v2": 0}, "", "v1"},
			{map[string]float64{"v1": 10, "v2": 0.1}, "v2<-v1", "v2"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDetector(t)
			for i, s := range tc.steps {
				ts := t0.Add(time.Duration(i) * time.Second)
				ev, err := d.Observe(context.Background(), ts, versions(s.traffic))
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				got := ""
				if ev != nil {
					got = ev.Version + "<-" + ev.Baseline
					if ev.Redeploy {
						got += " again"
					}
					if ev.Baseline != "" && ev.BaselineWhy == "" {
						t.Errorf("step %d: no reason for baseline %s", i, ev.Baseline)
					}
					if !ev.At.Equal(ts) || ev.Origin != OriginVersionQuery || ev.Service != "checkout" {
						t.Errorf("step %d: event %+v", i, ev)
					}
				}
				if got != s.wantEvent {
					t.Errorf("step %d: event %q, want %q", i, got, s.wantEvent)
				}
				if d.Current() != s.wantCurrent {
					t.Errorf("step %d: current %q, want %q", i, d.Current(), s.wantCurrent)
				}
			}
		})
	}
}

// The event says why its baseline was chosen, and the state that decides
// returns and redeploys survives a restart.
func TestBaselineWhyAndState(t *testing.T) {
	ctx := context.Background()
	t0 := time.Unix(1_700_000_000, 0)
	d := newDetector(t)
	steps := []map[string]float64{{"v1": 95, "v2": 5}, {"v1": 95, "v3": 5}}
	var ev *Event
	for i, tr := range steps {
		var err error
		if ev, err = d.Observe(ctx, t0.Add(time.Duration(i)*time.Second), versions(tr)); err != nil {
			t.Fatal(err)
		}
	}
	if ev == nil || ev.Baseline != "v1" || ev.BaselineWhy != "served 95% of the traffic just before the deploy" {
		t.Fatalf("event %+v", ev)
	}
	if got := d.ServingByTraffic(); len(got) != 2 || got[0] != "v1" || got[1] != "v3" {
		t.Fatalf("serving by traffic %v", got)
	}
	// v3 is replaced by v1 alone, twice; a restarted detector still knows
	// that v1 coming back was the rollback and v3 coming back a redeploy.
	for i := range 2 {
		if _, err := d.Observe(ctx, t0.Add(time.Duration(2+i)*time.Second), versions(map[string]float64{"v1": 100})); err != nil {
			t.Fatal(err)
		}
	}
	r := newDetector(t)
	r.Restore(d.State())
	ev, err := r.Observe(ctx, t0.Add(5*time.Second), versions(map[string]float64{"v1": 95, "v3": 5}))
	if err != nil || ev == nil || ev.Version != "v3" || !ev.Redeploy || ev.Baseline != "v1" {
		t.Fatalf("after a restart: %+v %v", ev, err)
	}
	if !r.Returns("v1") || r.Returns("v3") {
		t.Fatal("returns")
	}
}

func TestObserveMinTraffic(t *testing.T) {
	d, err := NewDetector("checkout", Config{VersionQuery: `sum by (v) (x{service="{{.Service}}"})`, VersionLabel: "v", MinTraffic: 1})
	if err != nil {
		t.Fatal(err)
	}
	q := func(m map[string]float64) source.Querier {
		return source.QueryFunc(func(context.Context, string, time.Time) (source.Result, error) {
			var v model.Vector
			for k, f := range m {
				v = append(v, &model.Sample{Metric: model.Metric{"v": model.LabelValue(k)}, Value: model.SampleValue(f)})
			}
			return source.Result{Vector: v}, nil
		})
	}
	ctx := context.Background()
	if _, err := d.Observe(ctx, time.Now(), q(map[string]float64{"a": 5})); err != nil {
		t.Fatal(err)
	}
	if ev, _ := d.Observe(ctx, time.Now(), q(map[string]float64{"a": 5, "b": 0.5})); ev != nil {
		t.Fatalf("b below min_traffic counted as a deploy: %v", ev)
	}
	if ev, _ := d.Observe(ctx, time.Now(), q(map[string]float64{"a": 5, "b": 2})); ev == nil || ev.Version != "b" || ev.Baseline != "a" {
		t.Fatalf("event %v, want b<-a", ev)
	}
}

func TestRange(t *testing.T) {
	for _, tc := range []struct {
		name, query string
		want        time.Duration
	}{
		{"announcements only", "", 0},
		{"rate", `sum by (version) (rate(http_requests_total{service="{{.Service}}"}[1m]))`, time.Minute},
		{"longest range with its offset", `sum by (version) (rate(a[30s])) or sum by (version) (rate(b[1m] offset 1m))`, 2 * time.Minute},
		{"a gauge", `max by (version) (app_build_info)`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewDetector("checkout", Config{VersionQuery: tc.query})
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Range(); got != tc.want {
				t.Fatalf("Range() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestObserveQueryError(t *testing.T) {
	d := newDetector(t)
	boom := errors.New("connection refused")
	_, err := d.Observe(context.Background(), time.Now(), source.QueryFunc(func(context.Context, string, time.Time) (source.Result, error) {
		return source.Result{}, boom
	}))
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want wrapped %v", err, boom)
	}
}

func TestAnnounce(t *testing.T) {
	ts := time.Unix(1_700_000_000, 0)
	d := newDetector(t)
	if _, err := d.Observe(context.Background(), ts, versions(map[string]float64{"v1": 1})); err != nil {
		t.Fatal(err)
	}
	ev, err := d.Announce("v2", "", ts)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Baseline != "v1" || ev.Origin != OriginAPI || d.Current() != "v2" {
		t.Fatalf("event %+v current %s", ev, d.Current())
	}
	// The version query then sees v2: already known, so no second event.
	if ev, _ := d.Observe(context.Background(), ts, versions(map[string]float64{"v1": 1, "v2": 1})); ev != nil {
		t.Fatalf("announced version reported again: %v", ev)
	}
	ev, err = d.Announce("v3", "v1", ts)
	if err != nil || ev.Baseline != "v1" {
		t.Fatalf("explicit baseline: %+v %v", ev, err)
	}
	for _, tc := range []struct{ version, baseline string }{
		{"", ""}, {"v4", "v4"}, {strings.Repeat("x", 300), ""}, {"v\n5", ""}, {"v5", "b\x00"},
	} {
		if _, err := d.Announce(tc.version, tc.baseline, ts); !errors.Is(err, ErrInvalidVersion) {
			t.Errorf("Announce(%q, %q) err %v, want ErrInvalidVersion", tc.version, tc.baseline, err)
		}
	}
}

func TestCopyStateFrom(t *testing.T) {
	old := newDetector(t)
	ctx := context.Background()
	_, _ = old.Observe(ctx, time.Now(), versions(map[string]float64{"v1": 1}))
	_, _ = old.Observe(ctx, time.Now(), versions(map[string]float64{"v2": 1}))
	d := newDetector(t)
	d.CopyStateFrom(old)
	if ev, _ := d.Observe(ctx, time.Now(), versions(map[string]float64{"v2": 1})); ev != nil {
		t.Fatalf("reloaded detector reported a known version: %v", ev)
	}
	if d.Current() != "v2" {
		t.Fatalf("current %q", d.Current())
	}
}

func TestSeenIsBounded(t *testing.T) {
	d := newDetector(t)
	ts := time.Unix(0, 0)
	for i := range 3 * maxSeen {
		if _, err := d.Announce(fmt.Sprintf("v%d", i), "", ts.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.seen) > maxSeen {
		t.Fatalf("remembers %d versions, want at most %d", len(d.seen), maxSeen)
	}
	if _, ok := d.seen[d.Current()]; !ok {
		t.Fatal("forgot the current version")
	}
}
