// Package backtest replays a service's history through the daemon's deploy
// detection, triggers and watch: it finds the deploys of a time range from
// the version query's history and judges each, tick by tick at the
// evaluation interval, with instant queries at past times, to tell which
// deploys Guardian would have rolled back, when, and on what evidence. It
// opens no incident, runs no executor and notifies nobody.
package backtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/app"
	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
	"github.com/rollback-guardian/guardian/watch"
)

// Verdicts of a deploy.
const (
	WouldRollBack = "would roll back"
	Healthy       = "healthy"
	NotEnoughData = "not enough data"
)

// maxPoints bounds the steps of one range query (Prometheus refuses more
// than 11,000).
const maxPoints = 10000

// Variant is one configuration of the service's triggers to judge the
// deploys with; the first variant of a backtest is the configuration as
// written.
type Variant struct {
	// Name labels the variant's column, e.g. "current" or
	// "error-rate.above=0.03".
	Name     string
	Triggers []config.Trigger
}

// Options configure a backtest.
type Options struct {
	// Service is the service as configured; its deploy.version_query finds
	// the deploys, its watch_window bounds each deploy's replay.
	Service config.Service
	// Variants judge every deploy; empty means the service's own triggers.
	Variants []Variant
	// Interval is the evaluation interval (global.evaluation_interval).
	Interval time.Duration
	// From and To bound the history replayed.
	From, To time.Time
	// Querier answers the queries: Prometheus, which answers instant
	// queries at past times.
	Querier RangeQuerier
	// Concurrency is how many queries may be in flight (default 2), Rate
	// how many may start a second (<= 0: unlimited).
	Concurrency int
	Rate        float64
	// Progress, when set, is told after each deploy is judged. It may be
	// called from several goroutines, one call at a time.
	Progress func(Progress)
}

// Progress is how far a backtest has got.
type Progress struct {
	Deploy           Deploy // the deploy just judged
	DeploysDone      int
	Deploys          int
	TicksDone, Ticks int
	Queries          int64
	Elapsed          time.Duration
}

// Deploy is one deploy found in the history and how each variant judged it.
type Deploy struct {
	Version     string    `json:"version"`
	Baseline    string    `json:"baseline"`
	BaselineWhy string    `json:"baseline_why,omitempty"`
	At          time.Time `json:"at"`
	// Until is the end of its replay: the end of its watch window, the
	// next deploy or the end of the range, whichever comes first.
	Until time.Time `json:"until"`
	// Cut reports that the range ended before the watch window did.
	Cut   bool `json:"cut,omitempty"`
	Ticks int  `json:"ticks"`
	// Judgements are by variant, in the order of Report.Variants.
	Judgements []Judgement `json:"judgements"`
}

// Judgement is one variant's verdict on a deploy.
type Judgement struct {
	Verdict string `json:"verdict"`
	// FiredAt, Delay and Trigger say when and which trigger fired first.
	FiredAt *time.Time    `json:"fired_at,omitempty"`
	Delay   time.Duration `json:"delay_ns,omitempty"`
	Trigger string        `json:"trigger,omitempty"`
	// Evidence is the firing verdict's summary, or the last judged one.
	Evidence string `json:"evidence,omitempty"`
	// NoData names the triggers that never had enough data to judge.
	NoData []string `json:"no_data,omitempty"`
	// QueryErrors counts the evaluations that failed on a query; Error is
	// the first such failure. (A trigger set to fire on query errors fires
	// on them, as in the daemon.)
	QueryErrors int    `json:"query_errors,omitempty"`
	Error       string `json:"error,omitempty"`
	// Ticks is how many ticks were evaluated (the replay stops at the
	// first firing, when the daemon would open an incident).
	Ticks int `json:"ticks"`
}

// Summary sums up one variant over all deploys.
type Summary struct {
	Variant       string        `json:"variant"`
	Deploys       int           `json:"deploys"`
	Rollbacks     int           `json:"would_roll_back"`
	Healthy       int           `json:"healthy"`
	NotEnoughData int           `json:"not_enough_data"`
	MedianDelay   time.Duration `json:"median_delay_ns"`
	MaxDelay      time.Duration `json:"max_delay_ns"`
	// NeverJudged names triggers that never had enough data in any deploy.
	NeverJudged []string `json:"never_judged,omitempty"`
	// QueryErrors counts the evaluations that failed on a query.
	QueryErrors int `json:"query_errors,omitempty"`
}

// Report is a backtest's result.
type Report struct {
	Service  string        `json:"service"`
	From     time.Time     `json:"from"`
	To       time.Time     `json:"to"`
	Interval time.Duration `json:"interval_ns"`
	Variants []string      `json:"variants"`
	Deploys  []Deploy      `json:"deploys"`
	Summary  []Summary     `json:"summary"`
	// Queries is how many queries the backtest sent; Ticks how many
	// evaluation ticks it replayed over all deploys and variants.
	Queries int64         `json:"queries"`
	Ticks   int           `json:"ticks"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Run backtests the service.
func Run(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	if err := o.check(); err != nil {
		return nil, err
	}
	if len(o.Variants) == 0 {
		o.Variants = []Variant{{Name: "current", Triggers: o.Service.Triggers}}
	}
	for _, v := range o.Variants {
		if _, err := evaluators(v.Triggers); err != nil {
			return nil, fmt.Errorf("variant %s: %w", v.Name, err)
		}
	}
	b := newBudget(o.Querier, o.Rate, o.Concurrency)
	events, err := FindDeploys(ctx, o.Service, b, o.From, o.To, o.Interval)
	if err != nil {
		return nil, err
	}
	rep := &Report{Service: o.Service.Name, From: o.From, To: o.To, Interval: o.Interval}
	for _, v := range o.Variants {
		rep.Variants = append(rep.Variants, v.Name)
	}
	window := time.Duration(o.Service.WatchWindow)
	if window <= 0 {
		window = time.Duration(config.DefaultWatchWindow)
	}
	totalTicks := 0
	for i, ev := range events {
		d := Deploy{Version: ev.Version, Baseline: ev.Baseline, BaselineWhy: ev.BaselineWhy, At: ev.At, Until: ev.At.Add(window)}
		if i+1 < len(events) && events[i+1].At.Before(d.Until) {
			d.Until = events[i+1].At // the next deploy replaces the watch
		}
		if d.Until.After(o.To) {
			d.Until, d.Cut = o.To.Add(time.Nanosecond), true // the last tick at To is judged
		}
		for ts := d.At; ts.Before(d.Until); ts = ts.Add(o.Interval) {
			d.Ticks++
		}
		totalTicks += d.Ticks * len(o.Variants)
		rep.Deploys = append(rep.Deploys, d)
	}

	// Judge the deploys, up to Concurrency at a time (the budget holds the
	// queries to it as well).
	conc := max(o.Concurrency, 1)
	jobs := make(chan int)
	var mu sync.Mutex
	var firstErr error
	done, ticksDone := 0, 0
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				d := &rep.Deploys[i]
				m := newMemo(b)
				for _, v := range o.Variants {
					j, err := judge(ctx, o.Service, v.Triggers, *d, o.Interval, m)
					if err != nil {
						mu.Lock()
						firstErr = cmpErr(firstErr, err)
						mu.Unlock()
						return
					}
					d.Judgements = append(d.Judgements, j)
				}
				mu.Lock()
				done++
				ticksDone += d.Ticks * len(o.Variants)
				if o.Progress != nil {
					o.Progress(Progress{Deploy: *d, DeploysDone: done, Deploys: len(rep.Deploys), TicksDone: ticksDone, Ticks: totalTicks,
						Queries: b.queries.Load(), Elapsed: time.Since(start)})
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for i := range rep.Deploys {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return nil, firstErr
	}
	for _, d := range rep.Deploys {
		for _, j := range d.Judgements {
			rep.Ticks += j.Ticks
		}
	}
	rep.Summary = summarise(rep)
	rep.Queries = b.queries.Load()
	rep.Elapsed = time.Since(start)
	return rep, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func (o *Options) check() error {
	switch {
	case o.Querier == nil:
		return errors.New("backtest: no querier")
	case o.Interval <= 0:
		return errors.New("backtest: the evaluation interval must be positive")
	case !o.From.Before(o.To):
		return fmt.Errorf("backtest: the range must start before it ends (from %s, to %s)", o.From.Format(time.RFC3339), o.To.Format(time.RFC3339))
	case o.Service.Deploy.VersionQuery == "":
		return fmt.Errorf("backtest: service %s has no deploy.version_query to find its deploys with", o.Service.Name)
	}
	return nil
}

// FindDeploys returns the deploys of svc between from and to: its version
// query's history, fetched with range queries at every interval, fed tick
// by tick to the daemon's deploy detector, which sees what it would have
// seen live. The first tick only learns what is running.
func FindDeploys(ctx context.Context, svc config.Service, q RangeQuerier, from, to time.Time, interval time.Duration) ([]rollout.Event, error) {
	det, err := rollout.NewDetector(svc.Name, app.DetectorConfig(svc.Deploy))
	if err != nil {
		return nil, err
	}
	qs, err := renderVersionQuery(svc)
	if err != nil {
		return nil, err
	}
	var events []rollout.Event
	for chunk := from; !chunk.After(to); chunk = chunk.Add(maxPoints * interval) {
		end := chunk.Add((maxPoints - 1) * interval)
		if end.After(to) {
			end = to
		}
		m, err := q.QueryRange(ctx, qs, chunk, end, interval)
		if err != nil {
			return nil, fmt.Errorf("service %s: version query history: %w", svc.Name, err)
		}
		at := byTime(m)
		for ts := chunk; !ts.After(end); ts = ts.Add(interval) {
			ev, err := det.Observe(ctx, ts, fixed(at[ts.UnixMilli()]))
			if err != nil {
				return nil, err
			}
			if ev != nil {
				events = append(events, *ev)
			}
		}
	}
	return events, nil
}

// byTime turns a matrix into the vector at each step, by Unix millisecond.
func byTime(m model.Matrix) map[int64]model.Vector {
	at := map[int64]model.Vector{}
	for _, s := range m {
		for _, p := range s.Values {
			t := int64(p.Timestamp)
			at[t] = append(at[t], &model.Sample{Metric: s.Metric, Value: p.Value, Timestamp: p.Timestamp})
		}
	}
	return at
}

func renderVersionQuery(svc config.Service) (string, error) {
	tmpl, err := query.New("version_query", svc.Deploy.VersionQuery)
	if err != nil {
		return "", fmt.Errorf("service %s: version_query: %w", svc.Name, err)
	}
	return tmpl.Render(query.Vars{Service: svc.Name})
}

// versions answers the version query with the deploy's version serving,
// and passes every other query on.
type versions struct {
	source.Querier
	query   string
	serving model.Vector
}

func (v *versions) Query(ctx context.Context, qs string, ts time.Time) (source.Result, error) {
	if qs == v.query {
		return source.Result{Vector: v.serving}, nil
	}
	return v.Querier.Query(ctx, qs, ts)
}

// fixed answers every query with one vector: the version query's value at
// the tick being observed.
type fixed model.Vector

func (f fixed) Query(context.Context, string, time.Time) (source.Result, error) {
	return source.Result{Vector: model.Vector(f)}, nil
}

// evaluators builds the daemon's triggers from their configuration.
func evaluators(cfg []config.Trigger) ([]trigger.Evaluator, error) {
	out := make([]trigger.Evaluator, 0, len(cfg))
	for _, tc := range cfg {
		def, err := trigger.FromSpec(app.TriggerSpec(tc))
		if err != nil {
			return nil, err
		}
		tr, err := trigger.New(def)
		if err != nil {
			return nil, err
		}
		out = append(out, tr)
	}
	return out, nil
}

// judge replays one deploy through a watch like the daemon's: the watch
// opens at the deploy's tick and every trigger is evaluated at each tick
// until the deploy's replay ends or a trigger fires.
func judge(ctx context.Context, svc config.Service, triggers []config.Trigger, d Deploy, interval time.Duration, q source.Querier) (Judgement, error) {
	evs, err := evaluators(triggers)
	if err != nil {
		return Judgement{}, err
	}
	// The watch's own detector learns the deploy as the daemon's does, in
	// the tick: its version query is answered with the baseline serving
	// one tick before the deploy, then the new version.
	dc := app.DetectorConfig(svc.Deploy)
	det, err := rollout.NewDetector(svc.Name, dc)
	if err != nil {
		return Judgement{}, err
	}
	label := model.LabelName(cmp.Or(dc.VersionLabel, "version"))
	versionQuery, err := renderVersionQuery(svc)
	if err != nil {
		return Judgement{}, err
	}
	serving := func(v string) model.Vector {
		return model.Vector{{Metric: model.Metric{label: model.LabelValue(v)}, Value: model.SampleValue(math.Inf(1))}}
	}
	vq := &versions{Querier: q, query: versionQuery, serving: serving(d.Version)}
	w, err := watch.New(watch.Options{
		Name: svc.Name, Detector: det, Triggers: evs, Querier: vq,
		Window: d.Until.Sub(d.At), Interval: interval, Metrics: watch.NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		return Judgement{}, err
	}
	if d.Baseline != "" {
		if _, err := det.Observe(ctx, d.At.Add(-interval), fixed(serving(d.Baseline))); err != nil {
			return Judgement{}, err
		}
	} else if _, err := w.AnnounceChange(ctx, d.Version, "", rollout.Change{}, d.At); err != nil {
		// No baseline (nothing served just before): the deploy is told
		// to the watch directly.
		return Judgement{}, fmt.Errorf("deploy of %s at %s: %w", d.Version, d.At.Format(time.RFC3339), err)
	}
	judged := map[string]bool{}
	last := map[string]string{}
	j := Judgement{}
	for ts := d.At; ts.Before(d.Until); ts = ts.Add(interval) {
		vs := w.Tick(ctx, ts)
		if err := ctx.Err(); err != nil {
			return Judgement{}, err
		}
		j.Ticks++
		for _, v := range vs {
			if v.Outcome == trigger.QueryError {
				if j.QueryErrors++; v.Err != nil && j.Error == "" {
					j.Error = v.Err.Error()
				}
			}
			if v.Outcome == trigger.OK || v.Outcome == trigger.Violated {
				judged[v.Trigger] = true
				last[v.Trigger] = v.Summary()
			}
			if v.State == trigger.Firing && j.FiredAt == nil {
				at := ts
				j.Verdict, j.FiredAt, j.Delay, j.Trigger, j.Evidence = WouldRollBack, &at, ts.Sub(d.At), v.Trigger, v.Summary()
			}
		}
		if j.FiredAt != nil {
			break // the daemon opens an incident here
		}
	}
	for _, tc := range triggers {
		if !judged[tc.Name] {
			j.NoData = append(j.NoData, tc.Name)
		}
	}
	if j.FiredAt != nil {
		return j, nil
	}
	j.Verdict = Healthy
	if len(j.NoData) == len(triggers) {
		j.Verdict = NotEnoughData
	}
	for _, tc := range triggers {
		if e, ok := last[tc.Name]; ok {
			j.Evidence = e
			break
		}
	}
	return j, nil
}

// summarise sums up each variant.
func summarise(rep *Report) []Summary {
	out := make([]Summary, len(rep.Variants))
	for i, name := range rep.Variants {
		s := Summary{Variant: name, Deploys: len(rep.Deploys)}
		var delays []time.Duration
		neverJudged := map[string]int{}
		for _, d := range rep.Deploys {
			j := d.Judgements[i]
			switch j.Verdict {
			case WouldRollBack:
				s.Rollbacks++
				delays = append(delays, j.Delay)
			case Healthy:
				s.Healthy++
			default:
				s.NotEnoughData++
			}
			s.QueryErrors += j.QueryErrors
			for _, n := range j.NoData {
				neverJudged[n]++
			}
		}
		for n, c := range neverJudged {
			if c == len(rep.Deploys) {
				s.NeverJudged = append(s.NeverJudged, n)
			}
		}
		sort.Strings(s.NeverJudged)
		if len(delays) > 0 {
			sort.Slice(delays, func(a, b int) bool { return delays[a] < delays[b] })
			s.MedianDelay = median(delays)
			s.MaxDelay = delays[len(delays)-1]
		}
		out[i] = s
	}
	return out
}

func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
