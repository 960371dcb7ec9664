package watch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The queries of the test service as sent.
const (
	versionQ  = `sum by (version) (rate(requests{service="checkout"}[1m]))`
	errV1     = `err{service="checkout",version="v1"}`
	errV2     = `err{service="checkout",version="v2"}`
	latencyV2 = `latency{service="checkout",version="v2"}`
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// tick is the time of the i-th evaluation, 10s apart.
func tick(i int) time.Time { return t0.Add(time.Duration(i) * 10 * time.Second) }

// fakeSource answers queries from its table: versions for the version
// query, a value per query text, an error per query text.
type fakeSource struct {
	mu       sync.Mutex
	versions map[string]float64
	values   map[string]float64
	errs     map[string]error
	queries  []string
}

func newSource() *fakeSource {
	return &fakeSource{versions: map[string]float64{}, values: map[string]float64{}, errs: map[string]error{}}
}

func (f *fakeSource) Query(_ context.Context, q string, _ time.Time) (source.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	if err := f.errs[q]; err != nil {
		return source.Result{}, err
	}
	if q == versionQ {
		var v model.Vector
		for name, traffic := range f.versions {
			v = append(v, &model.Sample{Metric: model.Metric{"version": model.LabelValue(name)}, Value: model.SampleValue(traffic)})
		}
		return source.Result{Vector: v}, nil
	}
	if x, ok := f.values[q]; ok {
		return source.Result{Vector: model.Vector{{Metric: model.Metric{}, Value: model.SampleValue(x)}}}, nil
	}
	return source.Result{}, nil
}

func (f *fakeSource) set(fn func(*fakeSource)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// metricTrigger is a trigger on err (above 0.05 and 2x its baseline), or
// on latency, with for and severity.
func metricTrigger(t *testing.T, name string, forDur time.Duration, severity string) *trigger.Trigger {
	t.Helper()
	spec := trigger.Spec{Name: name, For: forDur, Severity: severity}
	switch name {
	case "latency":
		spec.Query = `latency{service="{{.Service}}",version="{{.Version}}"}`
		spec.Above = ptr(0.5)
	default:
		spec.Query = `err{service="{{.Service}}",version="{{.Version}}"}`
		spec.Above = ptr(0.05)
		spec.AboveBaseline = &trigger.BaselineLimit{Ratio: 2, Text: "2x"}
	}
	def, err := trigger.FromSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := trigger.New(def)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func ptr(v float64) *float64 { return &v }

// firing is one call of the FiringFunc.
type firing struct {
	deploy   rollout.Event
	verdict  trigger.Verdict
	refs     map[string]float64
	severity string
}

// fixture is a Service over a fakeSource, with what it told.
type fixture struct {
	t        *testing.T
	src      *fakeSource
	reg      *prometheus.Registry
	m        *Metrics
	logs     *observer.ObservedLogs
	svc      *Service
	verdicts []trigger.Verdict
	firings  []firing
	saved    [][]byte
}

type fixtureOpts struct {
	versionQuery bool
	triggers     func(t *testing.T) []trigger.Evaluator
	window       time.Duration
	metrics      *Metrics
	align        func() time.Duration
}

func newFixture(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	f := &fixture{t: t, src: newSource(), reg: prometheus.NewRegistry()}
	f.m = o.metrics
	if f.m == nil {
		f.m = NewMetrics(f.reg)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	f.logs = logs
	cfg := rollout.Config{}
	if o.versionQuery {
		cfg.VersionQuery = `sum by (version) (rate(requests{service="{{.Service}}"}[1m]))`
	}
	det, err := rollout.NewDetector("checkout", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var trs []trigger.Evaluator
	if o.triggers != nil {
		trs = o.triggers(t)
	} else {
		trs = []trigger.Evaluator{metricTrigger(t, "error-rate", 0, "SEV-2"), metricTrigger(t, "latency", time.Minute, "")}
	}
	window := o.window
	if window == 0 {
		window = 10 * time.Minute
	}
	f.svc, err = New(Options{
		Name: "checkout", Detector: det, Triggers: trs, Querier: f.src, Window: window, Interval: time.Second, Align: o.align,
		Metrics: f.m, Logger: zap.New(core),
		OnVerdict: func(_ context.Context, _ rollout.Event, v trigger.Verdict) { f.verdicts = append(f.verdicts, v) },
		OnFiring: func(_ context.Context, d rollout.Event, v trigger.Verdict, refs map[string]float64, severity string) {
			f.firings = append(f.firings, firing{d, v, refs, severity})
		},
		Persist: func(_ context.Context, service string, b []byte) error {
			if service != "checkout" {
				t.Errorf("persisted as %q", service)
			}
			f.saved = append(f.saved, b)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// states returns the verdicts' states, by trigger, of one tick.
func states(vs []trigger.Verdict) map[string]trigger.State {
	out := map[string]trigger.State{}
	for _, v := range vs {
		out[v.Trigger] = v.State
	}
	return out
}
