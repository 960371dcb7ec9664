package verify

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/rollback-guardian/guardian/demo"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func def(t *testing.T, c trigger.Spec) trigger.Definition {
	t.Helper()
	if c.Name == "" {
		c.Name = "error-rate"
	}
	if c.Query == "" {
		c.Query = `rate(errors{version="{{.Version}}"}[{{.Window}}])`
	}
	d, err := trigger.FromSpec(c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func f(v float64) *float64 { return &v }

// answers returns value for queries containing "errors" and volume for "requests".
func answers(value, volume *float64) trigger.QueryFunc {
	return func(_ context.Context, q string, _ time.Time) (source.Result, error) {
		var v *float64
		switch {
		case strings.Contains(q, "requests"):
			v = volume
		case strings.Contains(q, "errors"):
			v = value
		}
		if v == nil {
			return source.Result{}, nil
		}
		return source.Result{Vector: model.Vector{{Value: model.SampleValue(*v)}}}, nil
	}
}

func TestProbe(t *testing.T) {
	ratio := &trigger.BaselineLimit{Ratio: 2, Text: "2x"}
	for _, tc := range []struct {
		name      string
		trig      trigger.Spec
		ref       *float64
		value     *float64
		volume    *float64
		recovered bool
		why       string
	}{
		{"within tolerance of baseline", trigger.Spec{AboveBaseline: ratio}, f(0.01), f(0.0105), nil, true, "error-rate: 0.0105 is within 10% of the baseline's 0.01"},
		{"above tolerance, no absolute", trigger.Spec{AboveBaseline: ratio}, f(0.01), f(0.02), nil, false, "0.02 is not back: more than 10% over the baseline's 0.01"},
		{"under the absolute threshold", trigger.Spec{Above: f(0.05), AboveBaseline: ratio}, f(0.01), f(0.03), nil, true, "error-rate: 0.03 is below the trigger's 0.05"},
		{"over the absolute threshold", trigger.Spec{Above: f(0.05)}, f(0.01), f(0.2), nil, false, "0.2 is not back: more than 10% over the baseline's 0.01, and above the trigger's 0.05"},
		{"no reference, absolute only", trigger.Spec{Above: f(0.05)}, nil, f(0.01), nil, true, "0.01 is below the trigger's 0.05"},
		{"at the absolute threshold", trigger.Spec{Above: f(0.05)}, nil, f(0.05), nil, true, "0.05 is at the trigger's 0.05, not above it"},
		{"no reference, over the threshold", trigger.Spec{Above: f(0.05)}, nil, f(0.07), nil, false, "0.07 is not back: no baseline value to compare with, and above the trigger's 0.05"},
		{"between two thresholds", trigger.Spec{Above: f(0.9), Below: f(0.1)}, nil, f(0.5), nil, true, "0.5 is between the trigger's 0.1 and 0.9"},
		{"no data", trigger.Spec{Above: f(0.05)}, f(0.01), nil, nil, false, "no data"},
		{"not enough traffic", trigger.Spec{Above: f(0.05), MinRequests: 50, VolumeQuery: `sum(requests{version="{{.Version}}"})`}, f(0.01), f(0), f(10), false, "waiting for traffic: 10 of 50 requests since the rollback"},
		{"enough traffic", trigger.Spec{Above: f(0.05), MinRequests: 50, VolumeQuery: `sum(requests{version="{{.Version}}"})`}, f(0.01), f(0), f(60), true, "within"},
		{"below-type back up", trigger.Spec{Below: f(0.9)}, f(0.99), f(0.985), nil, true, "0.985 is at most 10% under the baseline's 0.99"},
		{"below-type over its threshold", trigger.Spec{Below: f(0.9)}, nil, f(0.95), nil, true, "0.95 is above the trigger's 0.9"},
		{"below-type still low", trigger.Spec{Below: f(0.9)}, f(0.99), f(0.5), nil, false, "0.5 is not back: more than 10% under the baseline's 0.99, and below the trigger's 0.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := New([]trigger.Definition{def(t, tc.trig)}, Options{Tolerance: 0.1})
			refs := map[string]float64{}
			if tc.ref != nil {
				refs["error-rate"] = *tc.ref
			}
			r := v.Probe(context.Background(), time.Unix(3600, 0), Target{Service: "checkout", Bad: "v2", Baseline: "v1", References: refs, Since: time.Unix(0, 0)}, answers(tc.value, tc.volume))
			if r.Recovered != tc.recovered || !strings.Contains(r.Summary(), tc.why) {
				t.Fatalf("recovered %v (%s), want %v with %q", r.Recovered, r.Summary(), tc.recovered, tc.why)
			}
			if len(r.Checks) != 1 || !strings.Contains(r.Checks[0].Query, `version="v1"`) && tc.value != nil && tc.volume == nil {
				t.Fatalf("checks %+v", r.Checks)
			}
		})
	}
}

func TestSmoke(t *testing.T) {
	svc := demo.New(demo.Options{Seed: 1})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", svc)
	slow := make(chan struct{})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-slow:
		case <-r.Context().Done():
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(l) }()
	defer func() { close(slow); _ = srv.Close() }()
	base := "http://" + l.Addr().String()
	d := def(t, trigger.Spec{Above: f(0.05)})
	q := answers(f(0.001), nil)
	probe := func(s Smoke) Result {
		v := New([]trigger.Definition{d}, Options{Tolerance: 0.1, Smoke: []Smoke{s}, Client: &http.Client{}})
		defer v.opts.Client.CloseIdleConnections()
		return v.Probe(context.Background(), time.Now(), Target{Service: "checkout", Bad: "v2", Baseline: "v1"}, q)
	}
	for _, tc := range []struct {
		name    string
		smoke   Smoke
		healthy bool
		ok      bool
		detail  string
	}{
		{"healthz ok", Smoke{URL: base + "/healthz"}, true, true, "status 200"},
		{"healthz unhealthy", Smoke{URL: base + "/healthz"}, false, false, "status 503, want 200"},
		{"body contains", Smoke{URL: base + "/healthz", BodyContains: "ok"}, true, true, "status 200"},
		{"body lacks", Smoke{URL: base + "/healthz", BodyContains: "ready"}, true, false, `lacks "ready"`},
		{"expected status", Smoke{URL: base + "/healthz", ExpectStatus: 503}, false, true, "status 503"},
		{"timeout", Smoke{URL: base + "/slow", Timeout: 100 * time.Millisecond}, true, false, "deadline exceeded"},
		{"refused", Smoke{URL: "http://127.0.0.1:1/"}, true, false, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc.SetHealthy(tc.healthy)
			r := probe(tc.smoke)
			if len(r.Smoke) != 1 || r.Smoke[0].OK != tc.ok || r.Recovered != tc.ok || !strings.Contains(r.Smoke[0].Detail, tc.detail) {
				t.Fatalf("%+v, want ok=%v detail %q", r, tc.ok, tc.detail)
			}
		})
	}
	// Smoke checks are not run while the values have not recovered.
	v := New([]trigger.Definition{d}, Options{Smoke: []Smoke{{URL: base + "/healthz"}}})
	if r := v.Probe(context.Background(), time.Now(), Target{Service: "checkout", Bad: "v2", Baseline: "v1"}, answers(f(0.5), nil)); r.Recovered || len(r.Smoke) != 0 {
		t.Fatalf("%+v", r)
	}
}

// Right after the rollback the window still holds data from before the
// incident: no verdict until a whole window has passed.
func TestProbeWaitsForAFullWindow(t *testing.T) {
	v := New([]trigger.Definition{def(t, trigger.Spec{Above: f(0.05), Window: 10 * time.Second})}, Options{})
	since := time.Unix(1000, 0)
	q := answers(f(0.001), nil)
	if r := v.Probe(context.Background(), since.Add(9*time.Second), Target{Service: "checkout", Bad: "v2", Baseline: "v1", Since: since}, q); r.Recovered || !strings.Contains(r.Summary(), "waiting 1s for a full 10s window") {
		t.Fatalf("judged too early: %s", r.Summary())
	}
	if r := v.Probe(context.Background(), since.Add(10*time.Second), Target{Service: "checkout", Bad: "v2", Baseline: "v1", Since: since}, q); !r.Recovered {
		t.Fatalf("not judged after a full window: %s", r.Summary())
	}
}

// At little traffic a trigger's window never holds min_requests: it is
// judged over everything since the rollback as soon as that holds enough.
func TestProbeAtLowTraffic(t *testing.T) {
	d := def(t, trigger.Spec{Above: f(0.05), Window: time.Minute, MinRequests: 100,
		VolumeQuery: `sum(increase(requests{version="{{.Version}}"}[{{.Window}}]))`})
	v := New([]trigger.Definition{d}, Options{Tolerance: 0.1})
	since := time.Unix(10_000, 0)
	// 1 request a second: the 1m window holds 60, the time since the
	// rollback as many as its seconds.
	q := func(_ context.Context, qs string, ts time.Time) (source.Result, error) {
		n := 60.0
		if !strings.Contains(qs, "[1m]") {
			n = ts.Sub(since).Seconds()
		}
		if strings.Contains(qs, "requests") {
			return source.Result{Vector: model.Vector{{Value: model.SampleValue(n)}}}, nil
		}
		return source.Result{Vector: model.Vector{{Value: 0.01}}}, nil
	}
	tgt := Target{Service: "checkout", Bad: "v2", Baseline: "v1", Since: since}
	r := v.Probe(context.Background(), since.Add(90*time.Second), tgt, q)
	if r.Recovered || r.Bad || !r.Checks[0].Waiting || !strings.Contains(r.Summary(), "waiting for traffic: 90 of 100 requests since the rollback") {
		t.Fatalf("at 90 requests: %+v %s", r, r.Summary())
	}
	later := v.Probe(context.Background(), since.Add(95*time.Second), tgt, q)
	if later.Status != r.Status || later.Summary() == r.Summary() {
		t.Fatalf("status %q vs %q: the figures changed, not the situation", later.Status, r.Status)
	}
	r = v.Probe(context.Background(), since.Add(2*time.Minute), tgt, q)
	if !r.Recovered || !strings.Contains(r.Summary(), "over the 2m0s since the rollback") || !strings.Contains(r.Checks[0].Query, "[2m]") {
		t.Fatalf("at 120 requests: %+v %s", r, r.Summary())
	}
}

// The version judged is what serves now; the bad version still serving is
// evidence the rollback has not taken effect.
func TestProbeJudgesWhatServes(t *testing.T) {
	v := New([]trigger.Definition{def(t, trigger.Spec{Above: f(0.05)})}, Options{})
	q := answers(f(0.001), nil)
	for _, tc := range []struct {
		name    string
		serving []string
		running string
		bad     bool
	}{
		{"stable serves alone", []string{"1.4.0"}, "1.4.0", false},
		{"bad canary still serving", []string{"1.4.0", "1.6.0"}, "1.4.0", true},
		{"unknown: the baseline", nil, "1.5.1", false},
		{"only the bad version", []string{"1.6.0"}, "1.5.1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := v.Probe(context.Background(), time.Unix(3600, 0), Target{Service: "checkout", Bad: "1.6.0", Baseline: "1.5.1",
				Serving: tc.serving}, q)
			if r.Running != tc.running || r.Bad != tc.bad || r.Recovered == tc.bad {
				t.Fatalf("%+v", r)
			}
			if tc.bad && !strings.Contains(r.Summary(), "1.6.0 still serves") {
				t.Fatalf("summary %s", r.Summary())
			}
		})
	}
}

// Smoke checks run while the triggers only wait for evidence, so that they
// can decide at little traffic.
func TestSmokeRunsWhileWaiting(t *testing.T) {
	ok := httpOK(t)
	d := def(t, trigger.Spec{Above: f(0.05), MinRequests: 50, VolumeQuery: `sum(requests{version="{{.Version}}"})`})
	v := New([]trigger.Definition{d}, Options{Smoke: []Smoke{{URL: ok}}, Client: &http.Client{}})
	defer v.opts.Client.CloseIdleConnections()
	r := v.Probe(context.Background(), time.Unix(3600, 0), Target{Service: "checkout", Bad: "v2", Baseline: "v1"}, answers(f(0.001), f(3)))
	if r.Recovered || r.Bad || !r.SmokePassed() {
		t.Fatalf("%+v", r)
	}
}

// httpOK serves 200 on a loopback URL.
func httpOK(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String() + "/"
}
