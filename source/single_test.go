package source

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

func TestSingle(t *testing.T) {
	ts := time.Unix(1_700_000_000, 0)
	down := errors.New("connection refused")
	sample := func(code string, v float64) *model.Sample {
		m := model.Metric{}
		if code != "" {
			m["code"] = model.LabelValue(code)
		}
		return &model.Sample{Metric: m, Value: model.SampleValue(v)}
	}
	for _, tc := range []struct {
		name    string
		res     Result
		err     error
		value   float64 // NaN: want NaN
		ok      bool
		wantErr []string // substrings of the error; nil: no error
		series  bool     // the error wraps ErrSeriesCount
	}{
		{name: "one sample", res: Result{Vector: model.Vector{sample("", 0.25)}}, value: 0.25, ok: true},
		{name: "one labelled series", res: Result{Vector: model.Vector{sample("500", 3)}}, value: 3, ok: true},
		{name: "empty is no data, not an error", res: Result{}, ok: false},
		{name: "NaN is returned as a value", res: Result{Vector: model.Vector{sample("", math.NaN())}}, value: math.NaN(), ok: true},
		{name: "+Inf is a value", res: Result{Vector: model.Vector{sample("", math.Inf(1))}}, value: math.Inf(1), ok: true},
		{name: "warnings do not matter", res: Result{Vector: model.Vector{sample("", 1)}, Warnings: []string{"partial"}}, value: 1, ok: true},
		{name: "failed query returns its error", err: down, wantErr: []string{"connection refused"}},
		{name: "two series", res: Result{Vector: model.Vector{sample("500", 1), sample("501", 2)}},
			wantErr: []string{`query returned 2 series ({code="500"}, {code="501"}), want 1: aggregate it`}, series: true},
		{name: "five series name three", res: Result{Vector: model.Vector{sample("500", 1), sample("501", 1), sample("502", 1), sample("503", 1), sample("504", 1)}},
			wantErr: []string{"query returned 5 series", `{code="500"}, {code="501"}, {code="502"}, … 2 more`, "with sum() or max()"}, series: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gotQuery string
			var gotTS time.Time
			q := QueryFunc(func(_ context.Context, query string, at time.Time) (Result, error) {
				gotQuery, gotTS = query, at
				return tc.res, tc.err
			})
			v, ok, err := Single(context.Background(), q, "sum(up)", ts)
			if gotQuery != "sum(up)" || !gotTS.Equal(ts) {
				t.Errorf("queried %q at %v", gotQuery, gotTS)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
			} else {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				if errors.Is(err, ErrSeriesCount) != tc.series {
					t.Errorf("errors.Is(err, ErrSeriesCount) = %v, want %v", !tc.series, tc.series)
				}
				if tc.err != nil && !errors.Is(err, tc.err) {
					t.Errorf("error %v does not wrap %v", err, tc.err)
				}
			}
			if ok != tc.ok {
				t.Errorf("ok = %v, want %v", ok, tc.ok)
			}
			if math.IsNaN(tc.value) != math.IsNaN(v) || (!math.IsNaN(v) && v != tc.value) {
				t.Errorf("value = %v, want %v", v, tc.value)
			}
		})
	}
}
