package query

import (
	"bytes"
	"testing"
	"time"
)

// TestRenderWritesWhatTheTemplateWould renders templates with and without
// the shortcut for plain {{.Field}} templates: both give the same query,
// or both fail.
func TestRenderWritesWhatTheTemplateWould(t *testing.T) {
	vars := []Vars{
		{Service: "checkout", Version: "v2", Baseline: "v1", Window: time.Minute, SinceDeploy: 95 * time.Second},
		{Service: "a\"b", Version: "x\\y\n\xff\uFFFD", Baseline: "", Window: 90 * time.Second},
		{},
	}
	for _, tc := range []struct {
		name, text string
		plain      bool // rendered without executing the template
	}{
		{"fields", `sum(increase(x{service="{{.Service}}",version="{{.Version}}"}[{{.SinceDeploy}}])) / sum(y{v="{{.Baseline}}"}[{{.Window}}])`, true},
		{"spaces and trim markers", `x{v="{{ .Version }}"}  {{- .Window -}}  [{{.SinceDeploy}}]`, true},
		{"text only", `vector(1)`, true},
		{"field at both ends", `{{.Service}}{{.Version}}`, true},
		{"empty", ``, true},
		{"comment", `x{v="{{.Version}}"}{{/* note */}}`, true},
		{"condition", `x{v="{{if .Baseline}}{{.Baseline}}{{else}}{{.Version}}{{end}}"}`, false},
		{"pipeline", `x{v="{{.Version | printf "%s-%s" .Service}}"}`, false},
		{"variable", `{{$v := .Version}}x{v="{{$v}}"}`, false},
		{"dot", `x{v="{{.}}"}`, false},
		{"unknown field", `x{v="{{.Cluster}}"}`, false},
		{"nested field", `x{v="{{.Version.Foo}}"}`, false},
		{"call", `x{v="{{printf "%q" .Version}}"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := New("q", tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if got := tmpl.segs != nil; got != tc.plain {
				t.Fatalf("rendered without executing: %v, want %v", got, tc.plain)
			}
			executed := &Template{parsedText: &parsedText{text: tmpl.text, tmpl: tmpl.tmpl}}
			for _, v := range vars {
				got, gerr := tmpl.Render(v)
				want, werr := executed.Render(v)
				if got != want || (gerr == nil) != (werr == nil) {
					t.Fatalf("Render(%+v) = %q, %v; executing the template gives %q, %v", v, got, gerr, want, werr)
				}
			}
		})
	}
}

// TestRenderShortcutMatchesExecute checks the shortcut against
// text/template directly, on the data Render builds.
func TestRenderShortcutMatchesExecute(t *testing.T) {
	tmpl, err := New("q", fuzzTemplates[0])
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.segs == nil {
		t.Fatal("a template of fields and text is executed")
	}
	v := Vars{Service: `s"1`, Version: "v\\2", Window: 2 * time.Minute}
	var b bytes.Buffer
	if err := tmpl.tmpl.Execute(&b, data{Service: Escape(v.Service), Version: Escape(v.Version), Window: "2m", SinceDeploy: "2m"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := tmpl.Render(v); got != b.String() {
		t.Fatalf("Render = %q, executing gives %q", got, b.String())
	}
}

func BenchmarkRender(b *testing.B) {
	tmpl, err := New("q", fuzzTemplates[0])
	if err != nil {
		b.Fatal(err)
	}
	v := Vars{Service: "checkout", Version: "v2.4.1", Window: time.Minute}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tmpl.Render(v); err != nil {
			b.Fatal(err)
		}
	}
}
