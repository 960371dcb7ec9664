package query

import (
	"testing"
	"time"
)

// TestTemplateCounterValues: the template's rewrite is CounterValues of
// its render, whatever the template, values and range, in any order of
// renders; the rewrite is kept for templates with SinceDeploy as a plain
// duration.
func TestTemplateCounterValues(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		kept       bool
	}{
		{"errors", `sum(increase(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.SinceDeploy}}]))`, true},
		{"two ranges", `sum(increase(a{v="{{.Version}}"}[{{.SinceDeploy}}])) / sum(increase(b{v="{{.Version}}"}[{{.SinceDeploy}}] offset 1m))`, true},
		{"no increase", `sum(reqs{version="{{.Version}}"}) + 0 * count_over_time(up[{{.SinceDeploy}}])`, true},
		{"window too", `sum(increase(a{v="{{.Version}}"}[{{.Window}}])) + sum(increase(a{v="{{.Baseline}}"}[{{.SinceDeploy}}:{{.Window}}]))`, true},
		{"in a string", `sum(increase(a{v="{{.Version}}",since="{{.SinceDeploy}}"}[1m]))`, true},
		{"in a name", `sum(increase(a:{{.SinceDeploy}}{v="{{.Version}}"}[1m]))`, false},
		{"joined", `sum(increase(a{v="{{.Version}}"}[{{.SinceDeploy}}5m]))`, false},
		{"offset", `sum(increase(a{v="{{.Version}}"}[1m] offset {{.SinceDeploy}}))`, true},
		{"comment", `sum(increase(a{v="{{.Version}}"}[{{.SinceDeploy}}])) # over {{.SinceDeploy}}`, true},
		{"marker in the template", `sum(increase(a{v="{{.Version}}"}[{{.SinceDeploy}}])) + sum(increase(a[987654321ms]))`, false},
		{"no range", `sum(a{v="{{.Version}}"})`, true},
		{"executed", `sum(increase(a{v="{{if .Version}}{{.Version}}{{end}}"}[{{.SinceDeploy}}]))`, false},
		{"invalid", `sum(increase(a{v="{{.Version}}"}[{{.SinceDeploy}}])`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := New("q", tc.text)
			if err != nil {
				t.Fatal(err)
			}
			vars := []Vars{
				{Service: "svc", Version: "v2", Baseline: "v1", Window: time.Minute, SinceDeploy: 5*time.Minute + 20*time.Second},
				{Service: "svc", Version: "v2", Baseline: "v1", Window: time.Minute, SinceDeploy: time.Second},
				{Service: "svc", Version: "v2", Baseline: "v1", Window: time.Minute, SinceDeploy: 26*time.Hour + 1500*time.Millisecond},
				{Service: "svc", Version: "v2", Baseline: "v1", Window: time.Minute},
				{Service: "svc", Version: `v3"987654321ms`, Baseline: "v1", Window: time.Minute, SinceDeploy: 90 * time.Second},
				{Service: "svc", Version: "v3", Baseline: "v2", Window: 2 * time.Minute, SinceDeploy: 90 * time.Second},
				{Service: "svc", Version: "v2", Baseline: "v1", Window: time.Minute, SinceDeploy: 7 * 24 * time.Hour},
			}
			for _, v := range vars {
				q, err := tmpl.Render(v)
				if err != nil {
					t.Fatal(err)
				}
				want, wn, werr := CounterValues(q)
				got, gn, gerr := tmpl.CounterValues(v)
				if got != want || gn != wn || (gerr == nil) != (werr == nil) {
					t.Fatalf("CounterValues(%+v) = %q, %d, %v; of the render %q, %d, %v", v, got, gn, gerr, want, wn, werr)
				}
			}
			v := vars[0]
			tmpl.CounterValues(v)
			if c := tmpl.counter.Load(); (c != nil && c.parts != nil) != tc.kept {
				t.Fatalf("rewrite kept: %v, want %v", c != nil && c.parts != nil, tc.kept)
			}
		})
	}
}

func BenchmarkTemplateCounterValues(b *testing.B) {
	tmpl, err := New("q", `sum(increase(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.SinceDeploy}}]))`)
	if err != nil {
		b.Fatal(err)
	}
	v := Vars{Service: "svc", Version: "v2", Window: time.Minute}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		v.SinceDeploy = time.Duration(i%3600+1) * time.Second
		if _, _, err := tmpl.CounterValues(v); err != nil {
			b.Fatal(err)
		}
	}
}
