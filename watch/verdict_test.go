package watch

import (
	"context"
	"encoding/json"
	"math"
	"testing"
)

// Judge follows the open watch: inconclusive until every trigger has been
// ok for its for, healthy then, regressed once one fires (and for the rest
// of the watch); other versions and other baselines are never healthy.
func TestJudge(t *testing.T) {
	f := newFixture(t, fixtureOpts{}) // error-rate (for 0), latency (for 1m)
	ctx := context.Background()
	f.svc.Learn(ctx, "v1", t0)

	if got := f.svc.Judge("v2", "", tick(0)); got.Verdict != Inconclusive || got.Watching != "" {
		t.Fatalf("no watch open: %+v", got)
	}
	if _, err := f.svc.Announce(ctx, "v2", "", tick(1)); err != nil {
		t.Fatal(err)
	}
	got := f.svc.Judge("v2", "", tick(1))
	if got.Verdict != Inconclusive || got.WatchStarted == nil || !got.WatchStarted.Equal(tick(1)) || got.Baseline != "v1" ||
		len(got.Triggers) != 2 || got.Triggers[0].Reason != "not evaluated on this version yet" {
		t.Fatalf("before any evaluation: %+v", got)
	}

	f.src.set(func(s *fakeSource) { s.values[errV1] = 0.01; s.values[errV2] = 0.012; s.values[latencyV2] = 0.1 })
	f.svc.Tick(ctx, tick(2))
	got = f.svc.Judge("v2", "", tick(2))
	if got.Verdict != Inconclusive || got.Triggers[0].Verdict != Healthy || got.Triggers[1].Verdict != Inconclusive {
		t.Fatalf("latency ok for 0s of 1m: %+v", got)
	}
	er := got.Triggers[0]
	if er.Value == nil || *er.Value != 0.012 || er.BaselineValue == nil || *er.BaselineValue != 0.01 || len(er.Thresholds) != 2 ||
		er.Outcome != "ok" || er.EvaluatedAt == nil || !er.EvaluatedAt.Equal(tick(2)) {
		t.Errorf("error-rate evidence: %+v", er)
	}
	if lt := got.Triggers[1]; lt.ForSeconds != 60 || lt.OKSince == nil || !lt.OKSince.Equal(tick(2)) {
		t.Errorf("latency: %+v", lt)
	}

	for i := 3; i <= 8; i++ { // ok from tick 2 to tick 8: 60s
		f.svc.Tick(ctx, tick(i))
	}
	if got = f.svc.Judge("v2", "", tick(8)); got.Verdict != Healthy {
		t.Fatalf("ok for a minute: %+v", got)
	}
	if got = f.svc.Judge("v2", "v1", tick(8)); got.Verdict != Healthy || got.BaselineMatches == nil || !*got.BaselineMatches {
		t.Errorf("same baseline: %+v", got)
	}
	if got = f.svc.Judge("v2", "v0", tick(8)); got.Verdict != Inconclusive || got.BaselineMatches == nil || *got.BaselineMatches {
		t.Errorf("another baseline: %+v", got)
	}
	if got = f.svc.Judge("v3", "", tick(8)); got.Verdict != Inconclusive || got.Watching != "v2" || len(got.Triggers) != 0 {
		t.Errorf("another version: %+v", got)
	}

	// A latency breach breaks the ok run: pending, not healthy.
	f.src.set(func(s *fakeSource) { s.values[latencyV2] = 0.9 })
	f.svc.Tick(ctx, tick(9))
	if got = f.svc.Judge("v2", "", tick(9)); got.Verdict != Inconclusive || got.Triggers[1].State != "pending" {
		t.Fatalf("latency pending: %+v", got)
	}
	// The error rate fires: regressed, whatever the baseline asked.
	f.src.set(func(s *fakeSource) { s.values[errV2] = 0.3; s.values[latencyV2] = 0.1 })
	f.svc.Tick(ctx, tick(10))
	if got = f.svc.Judge("v2", "v0", tick(10)); got.Verdict != Regressed || got.Triggers[0].Verdict != Regressed {
		t.Fatalf("error rate firing: %+v", got)
	}
	// It resolves: the deploy stays regressed for the rest of the watch.
	f.src.set(func(s *fakeSource) { s.values[errV2] = 0.01 })
	for i := 11; i <= 20; i++ {
		f.svc.Tick(ctx, tick(i))
	}
	if got = f.svc.Judge("v2", "", tick(20)); got.Verdict != Regressed {
		t.Fatalf("after the trigger resolved: %+v", got)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Fatalf("encoding the verdict: %v", err)
	}
}

// Values that are not finite stay out of the JSON.
func TestJudgeNonFinite(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	f.svc.Learn(ctx, "v1", t0)
	if _, err := f.svc.Announce(ctx, "v2", "", tick(1)); err != nil {
		t.Fatal(err)
	}
	f.src.set(func(s *fakeSource) {
		s.values[errV1] = 0.01
		s.values[errV2] = math.Inf(1)
		s.values[latencyV2] = math.NaN()
	})
	f.svc.Tick(ctx, tick(2))
	got := f.svc.Judge("v2", "", tick(2))
	if got.Triggers[0].Value != nil || got.Triggers[1].Value != nil {
		t.Errorf("non-finite values kept: %+v", got.Triggers)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Fatalf("encoding the verdict: %v", err)
	}
	if got.Verdict != Regressed {
		t.Errorf("an infinite error rate: %s", got.Verdict)
	}
}
