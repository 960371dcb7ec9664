// Package scenario generates a known request history for backtests: the
// http_requests_total{service,version,code} counters of a service through
// a day part of deploys (healthy ones, a bad one, a slow burn, a
// low-traffic one and two rollbacks), as OpenMetrics for promtool and as
// samples, with the deploys a backtest should find.
package scenario

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/common/model"
)

// Service is the service the history belongs to.
const Service = "shop"

// Phase is a stretch of time in which one version serves all traffic.
type Phase struct {
	At      time.Duration // since the history's start
	Version string
	RPS     float64
	// The error ratio goes linearly from ErrStart to ErrEnd over the phase.
	ErrStart, ErrEnd float64
}

// History is a generated request history.
type History struct {
	Start  time.Time
	Length time.Duration
	// Step is the scrape interval; samples fall at Start+Offset+k*Step,
	// off the evaluation ticks (multiples of the interval), so that
	// whether a range includes a sample on its left edge never matters.
	Step, Offset time.Duration
	Phases       []Phase
}

// Deploy is a deploy the history holds, and what the scenario's
// configuration should decide about it.
type Deploy struct {
	Version, Baseline string
	Switch            time.Time // when its traffic started
	Verdict           string    // "would roll back", "healthy" or "not enough data"
	// SlowBurn marks the deploy that degrades slowly (it must fire late).
	SlowBurn bool
}

// Default is the standard history, starting at start (which should be on
// a whole minute): 150 minutes at 15 s resolution.
//
//	0m   v1 serves (10 req/s, 0.5% errors)
//	20m  v2, healthy
//	40m  v3, bad: 20% errors
//	48m  v2 again: v3 rolled back
//	60m  v4, a slow burn: errors climb from 1% to 12%
//	88m  v2 again: v4 rolled back
//	100m v5, low traffic (0.05 req/s) with 50% errors: too little to judge
//	120m v6, healthy, serving until the end
func Default(start time.Time) History {
	return History{
		Start: start, Length: 150 * time.Minute, Step: 15 * time.Second, Offset: 7 * time.Second,
		Phases: []Phase{
			{At: 0, Version: "v1", RPS: 10, ErrStart: 0.005, ErrEnd: 0.005},
			{At: 20 * time.Minute, Version: "v2", RPS: 10, ErrStart: 0.005, ErrEnd: 0.005},
			{At: 40 * time.Minute, Version: "v3", RPS: 10, ErrStart: 0.2, ErrEnd: 0.2},
			{At: 48 * time.Minute, Version: "v2", RPS: 10, ErrStart: 0.005, ErrEnd: 0.005},
			{At: 60 * time.Minute, Version: "v4", RPS: 10, ErrStart: 0.01, ErrEnd: 0.12},
			{At: 88 * time.Minute, Version: "v2", RPS: 10, ErrStart: 0.005, ErrEnd: 0.005},
			{At: 100 * time.Minute, Version: "v5", RPS: 0.05, ErrStart: 0.5, ErrEnd: 0.5},
			{At: 120 * time.Minute, Version: "v6", RPS: 10, ErrStart: 0.005, ErrEnd: 0.005},
		},
	}
}

// Deploys are the deploys of the Default history and what Config decides.
func (h History) Deploys() []Deploy {
	at := func(m int) time.Time { return h.Start.Add(time.Duration(m) * time.Minute) }
	return []Deploy{
		{Version: "v2", Baseline: "v1", Switch: at(20), Verdict: "healthy"},
		{Version: "v3", Baseline: "v2", Switch: at(40), Verdict: "would roll back"},
		{Version: "v4", Baseline: "v2", Switch: at(60), Verdict: "would roll back", SlowBurn: true},
		{Version: "v5", Baseline: "v2", Switch: at(100), Verdict: "not enough data"},
		{Version: "v6", Baseline: "v5", Switch: at(120), Verdict: "healthy"},
	}
}

// End is when the history ends.
func (h History) End() time.Time { return h.Start.Add(h.Length) }

// Series is one counter's samples.
type Series struct {
	Labels map[string]string
	T      []int64 // Unix milliseconds
	V      []float64
}

// Series returns every counter's samples, in time order.
func (h History) Series() []Series {
	type key struct{ version, code string }
	idx := map[key]int{}
	var out []Series
	counters := map[key]float64{}
	for t := h.Offset; t < h.Length; t += h.Step {
		p, frac := h.phaseAt(t)
		e := p.ErrStart + (p.ErrEnd-p.ErrStart)*frac
		n := p.RPS * h.Step.Seconds()
		for _, c := range []struct {
			code string
			add  float64
		}{{"200", n * (1 - e)}, {"500", n * e}} {
			k := key{p.Version, c.code}
			i, ok := idx[k]
			if !ok {
				i = len(out)
				idx[k] = i
				out = append(out, Series{Labels: map[string]string{"service": Service, "version": p.Version, "code": c.code}})
			}
			counters[k] += c.add
			out[i].T = append(out[i].T, h.Start.Add(t).UnixMilli())
			out[i].V = append(out[i].V, counters[k])
		}
	}
	return out
}

// phaseAt is the phase serving at t, and how far through it t is (0..1).
func (h History) phaseAt(t time.Duration) (Phase, float64) {
	i := sort.Search(len(h.Phases), func(i int) bool { return h.Phases[i].At > t }) - 1
	p := h.Phases[i]
	end := h.Length
	if i+1 < len(h.Phases) {
		end = h.Phases[i+1].At
	}
	return p, float64(t-p.At) / float64(end-p.At)
}

// OpenMetrics returns the history as OpenMetrics text, as `promtool tsdb
// create-blocks-from openmetrics` reads it.
func (h History) OpenMetrics() []byte {
	var b bytes.Buffer
	b.WriteString("# HELP http_requests Requests served.\n# TYPE http_requests counter\n")
	for _, s := range h.Series() {
		for i := range s.T {
			fmt.Fprintf(&b, "http_requests_total{code=%q,service=%q,version=%q} %g %d.%03d\n",
				s.Labels["code"], s.Labels["service"], s.Labels["version"], s.V[i], s.T[i]/1000, s.T[i]%1000)
		}
	}
	b.WriteString("# EOF\n")
	return b.Bytes()
}

// Config is a configuration guarding the history's service with a
// Prometheus source at url, evaluating every interval: an error-rate
// trigger (above 5% for 1m, with at least 20 requests a minute) and a
// volume check.
func Config(url string, interval time.Duration) string {
	return fmt.Sprintf(`global:
  evaluation_interval: %s
sources:
  - name: prom
    prometheus:
      url: %s
services:
  - name: %s
    source: prom
    watch_window: 30m
    deploy:
      version_query: 'sum by (version) (rate(http_requests_total{service="{{.Service}}"}[1m]))'
    triggers:
      - name: error-rate
        query: 'sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}",code=~"5.."}[{{.Window}}])) / sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}"}[{{.Window}}]))'
        window: 1m
        above: 0.05
        for: 1m
        min_requests: 20
        volume_query: 'sum(increase(http_requests_total{service="{{.Service}}",version="{{.Version}}"}[{{.Window}}]))'
`, model.Duration(interval), url, Service)
}

// Repeat is the Default history n times over, back to back from start,
// the versions of the k-th copy suffixed "-k" (so the first version of
// every copy after the first is a deploy too): a longer history for
// benchmarks.
func Repeat(start time.Time, n int) History {
	h := Default(start)
	one, phases := h.Length, h.Phases
	h.Phases, h.Length = nil, time.Duration(n)*one
	for k := range n {
		for _, p := range phases {
			p.At += time.Duration(k) * one
			p.Version = fmt.Sprintf("%s-%d", p.Version, k)
			h.Phases = append(h.Phases, p)
		}
	}
	return h
}
