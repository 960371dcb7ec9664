package watch

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

// histSource answers a latency trigger's buckets queries: 1000 requests
// of each version, the share slow (over 0.5 s) set per version.
type histSource struct {
	mu   sync.Mutex
	slow map[string]float64 // version → share of requests over 0.5 s
}

func (s *histSource) Query(_ context.Context, q string, _ time.Time) (source.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v, p := range s.slow {
		if strings.Contains(q, `version="`+v+`"`) {
			var out model.Vector
			for _, b := range []struct {
				le    string
				count float64
			}{{"0.1", 500 * (1 - p)}, {"0.5", 1000 * (1 - p)}, {"2.5", 1000 - 100*p}, {"+Inf", 1000}} {
				out = append(out, &model.Sample{Metric: model.Metric{"le": model.LabelValue(b.le)}, Value: model.SampleValue(b.count)})
			}
			return source.Result{Vector: out}, nil
		}
	}
	return source.Result{}, nil
}

// A latency trigger's regressed decision is told by Judge, saved with the
// watch and stands after a restart, whatever the buckets read then.
func TestLatencyRegressedSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	latTrigger := func(t *testing.T) []trigger.Evaluator {
		def, err := trigger.FromSpec(trigger.Spec{Name: "latency", Latency: &trigger.LatencySpec{
			Buckets: `sum by (le) (increase(req_bucket{version="{{.Version}}"}[{{.SinceDeploy}}]))`,
			Alpha:   0.001, MinEffect: trigger.BaselineLimit{Ratio: 1.5, Text: "1.5x"}, BaselineWindow: 30 * time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := trigger.New(def)
		if err != nil {
			t.Fatal(err)
		}
		return []trigger.Evaluator{tr}
	}
	f := newFixture(t, fixtureOpts{triggers: latTrigger})
	f.svc.querier = &histSource{slow: map[string]float64{"v1": 0.01, "v2": 0.3}}
	f.svc.Learn(ctx, "v1", t0)
	if _, err := f.svc.Announce(ctx, "v2", "v1", tick(1)); err != nil {
		t.Fatal(err)
	}
	if vs := f.svc.Tick(ctx, tick(2)); len(vs) != 1 || vs[0].State != trigger.Firing {
		t.Fatalf("verdicts %+v", vs)
	}
	vv := f.svc.Judge("v2", "v1", tick(2))
	if vv.Verdict != Regressed || len(vv.Triggers) != 1 || vv.Triggers[0].Latency != "regressed" || vv.Triggers[0].Sequential != "" {
		t.Fatalf("judgement %+v", vv)
	}
	saved := f.saved[len(f.saved)-1]
	if !strings.Contains(string(saved), `"regressed":{"latency":`) {
		t.Fatalf("saved %s", saved)
	}
	// Restarted; v2's latencies now look like v1's.
	g := newFixture(t, fixtureOpts{triggers: latTrigger})
	g.svc.querier = &histSource{slow: map[string]float64{"v1": 0.01, "v2": 0.01}}
	if err := g.svc.Restore(saved, tick(3)); err != nil {
		t.Fatal(err)
	}
	vs := g.svc.Tick(ctx, tick(3))
	if len(vs) != 1 || vs[0].State != trigger.Firing || !strings.Contains(vs[0].Summary(), "regressed") {
		t.Fatalf("after the restart: %s", fmt.Sprint(vs))
	}
}
