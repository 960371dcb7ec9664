package trigger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/source"
)

// The rendered queries of the test definitions for deploy d below.
const (
	valueQ    = `err_ratio{service="checkout",version="v2"}`
	baselineQ = `err_ratio{service="checkout",version="v1"}`
	volumeQ   = `requests{service="checkout",version="v2"}`
)

var (
	t0       = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	deployAt = t0.Add(-5 * time.Minute)
	d        = Deploy{Service: "checkout", Version: "v2", Baseline: "v1", At: deployAt}
	step     = 10 * time.Second
	errDown  = errors.New("connection refused")
)

// tick returns the time of the i-th evaluation.
func tick(i int) time.Time { return t0.Add(time.Duration(i) * step) }

func f64(v float64) *float64 { return &v }

func tmpl(t testing.TB, text string) *query.Template {
	t.Helper()
	q, err := query.New("test", text)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// def returns a definition with the error-rate query, modified by mods.
func def(t testing.TB, mods ...func(*Definition)) Definition {
	t.Helper()
	dd := Definition{
		Name:   "error-rate",
		Query:  tmpl(t, `err_ratio{service="{{.Service}}",version="{{.Version}}"}`),
		Window: time.Minute,
	}
	for _, m := range mods {
		m(&dd)
	}
	return dd
}

func above(v float64) func(*Definition) { return func(d *Definition) { d.Above = f64(v) } }
func below(v float64) func(*Definition) { return func(d *Definition) { d.Below = f64(v) } }
func ratio(r float64) func(*Definition) {
	return func(d *Definition) {
		d.AboveBaseline = &BaselineLimit{Ratio: r, Text: fmt.Sprintf("%gx", r)}
	}
}
func delta(x float64) func(*Definition) {
	return func(d *Definition) { d.AboveBaseline = &BaselineLimit{Delta: x, Text: fmt.Sprintf("+%g", x)} }
}
func forDur(f time.Duration) func(*Definition) { return func(d *Definition) { d.For = f } }
func minRequests(n float64) func(*Definition) {
	return func(dd *Definition) {
		dd.MinRequests = n
		q, err := query.New("volume", `requests{service="{{.Service}}",version="{{.Version}}"}`)
		if err != nil {
			panic(err)
		}
		dd.VolumeQuery = q
	}
}
func onNoData(p Policy) func(*Definition) {
	return func(d *Definition) { d.OnNoData = p }
}
func onQueryError(p Policy) func(*Definition) {
	return func(d *Definition) { d.OnQueryError = p }
}

func newTrigger(t testing.TB, dd Definition) *Trigger {
	t.Helper()
	tr, err := New(dd)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// answer is a canned reply to one query at one time.
type answer func(ts time.Time) (source.Result, error)

func value(v float64) answer {
	res := source.Result{Vector: model.Vector{{Metric: model.Metric{}, Value: model.SampleValue(v)}}}
	return func(time.Time) (source.Result, error) { return res, nil }
}

func none(time.Time) (source.Result, error) { return source.Result{}, nil }

func nan(ts time.Time) (source.Result, error) { return value(math.NaN())(ts) }

func failing(time.Time) (source.Result, error) { return source.Result{}, errDown }

func series(n int) answer {
	return func(time.Time) (source.Result, error) {
		var v model.Vector
		for i := range n {
			v = append(v, &model.Sample{Metric: model.Metric{"code": model.LabelValue(fmt.Sprint(500 + i))}, Value: 1})
		}
		return source.Result{Vector: v}, nil
	}
}

// at answers with a at time ts and with otherwise at any other time.
func at(ts time.Time, a, otherwise answer) answer {
	return func(q time.Time) (source.Result, error) {
		if q.Equal(ts) {
			return a(q)
		}
		return otherwise(q)
	}
}

// seq answers the i-th evaluation tick with as[i]; later ticks repeat the last.
func seq(as ...answer) answer {
	return func(ts time.Time) (source.Result, error) {
		i := int(ts.Sub(t0) / step)
		i = max(0, min(i, len(as)-1))
		return as[i](ts)
	}
}

// fake is an in-memory source: canned answers per query, and a call log.
// Unknown queries fail, so that a test notices a query it did not expect.
type fake struct {
	answers map[string]answer
	mu      sync.Mutex
	calls   map[string][]time.Time
}

func newFake(answers map[string]answer) *fake {
	return &fake{answers: answers, calls: map[string][]time.Time{}}
}

func (f *fake) query(_ context.Context, q string, ts time.Time) (source.Result, error) {
	f.mu.Lock()
	f.calls[q] = append(f.calls[q], ts)
	f.mu.Unlock()
	a, ok := f.answers[q]
	if !ok {
		return source.Result{}, fmt.Errorf("unexpected query %s", q)
	}
	return a(ts)
}

// callsAt counts the calls of q evaluated at ts.
func (f *fake) callsAt(q string, ts time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls[q] {
		if c.Equal(ts) {
			n++
		}
	}
	return n
}

// run evaluates tr at ticks 0..n-1 and returns the verdicts.
func run(tr *Trigger, q QueryFunc, n int) []Verdict {
	vs := make([]Verdict, n)
	for i := range n {
		vs[i] = tr.Eval(context.Background(), tick(i), d, q)
	}
	return vs
}

func states(vs []Verdict) []State {
	s := make([]State, len(vs))
	for i, v := range vs {
		s[i] = v.State
	}
	return s
}
