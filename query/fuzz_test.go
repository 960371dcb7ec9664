package query

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// fuzzTemplates are representative templates: an error ratio, a baseline
// comparison, a sequential count, a version query and a string argument.
var fuzzTemplates = []string{
	`sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}",code=~"5.."}[{{.Window}}])) / sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}"}[{{.Window}}]))`,
	`(sum(rate(errors_total{job="{{.Service}}",version="{{.Version}}"}[{{.Window}}])) or vector(0)) - sum(rate(errors_total{job="{{.Service}}",version!="{{.Baseline}}"}[{{.Window}}]))`,
	`sum(increase(http_requests_total{version="{{.Version}}"}[{{.SinceDeploy}}])) # {{.Baseline}}`,
	`max by (version) (app_build_info{service="{{.Service}}"})`,
	`count_values("{{.Version}}", up{service="{{.Service}}"})`,
}

// FuzzRender renders arbitrary strings as Service, Version and Baseline:
// the query must parse and every matcher or string holding a value must
// hold exactly that value, byte for byte.
func FuzzRender(f *testing.F) {
	for _, s := range [][3]string{
		{"checkout", "v2.4.1", "v2.4.0"},
		{"svc", "v2-\uFFFD", "\uFFFD"},
		{"svc", "v2-\xff\xfe", "\xe2\x82"},
		{"svc", "x`}[30s]) or vector(0)) * 0 #", "v1"},
		{"svc", `x'"} or vector(1) #`, `\`},
		{"a\nb", "\x00", "\\x41\\u0041"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	tmpls := make([]*Template, len(fuzzTemplates))
	for i, text := range fuzzTemplates {
		t, err := New("q", text)
		if err != nil {
			f.Fatal(err)
		}
		if err := t.Check(); err != nil {
			f.Fatalf("Check(%s): %v", text, err)
		}
		tmpls[i] = t
	}
	f.Fuzz(func(t *testing.T, service, version, baseline string) {
		for _, tmpl := range tmpls {
			q, err := tmpl.Render(Vars{Service: service, Version: version, Baseline: baseline, Window: time.Minute, SinceDeploy: 90 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			e, err := Parse(q)
			if err != nil {
				t.Fatalf("rendered query does not parse: %v\n%q", err, q)
			}
			want := map[string]string{"service": service, "job": service}
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				switch n := n.(type) {
				case *parser.VectorSelector:
					for _, m := range n.LabelMatchers {
						w, ok := want[m.Name]
						if m.Name == "version" {
							ok, w = true, version
							if m.Type == labels.MatchNotEqual {
								w = baseline
							}
						}
						if ok && m.Value != w {
							t.Fatalf("matcher %s%s%q, want %q\n%q", m.Name, m.Type, m.Value, w, q)
						}
					}
				case *parser.StringLiteral:
					if n.Val != version {
						t.Fatalf("string %q, want %q\n%q", n.Val, version, q)
					}
				}
				return nil
			})
		}
	})
}

// FuzzCheck: a template Check accepts must, for any value, render a query
// that parses, has the shape of the sample render and holds the value,
// byte for byte, wherever the template put it.
func FuzzCheck(f *testing.F) {
	for _, text := range fuzzTemplates {
		f.Add(text, "v2-\uFFFD")
	}
	f.Add("up{version=`{{.Version}}`}", "x`} or vector(1) #")
	f.Add(`up{version='{{.Version}}'}`, `x'} or vector(1) #`)
	f.Add(`up{job="{{.Service}}-x",version!="{{.Baseline}}"}`, "\xff\\\"")
	f.Add(`label_join(up, "v", "{{.Version}}", "a")`, "$1")
	f.Fuzz(func(t *testing.T, text, value string) {
		tmpl, err := New("q", text)
		if err != nil || tmpl.Check() != nil {
			return
		}
		ms := valueMarkers(text)
		plain, err := tmpl.Render(ms.vars(false))
		if err != nil {
			t.Fatal(err)
		}
		pe, err := Parse(plain)
		if err != nil {
			t.Fatalf("accepted template does not parse with plain values: %v", err)
		}
		q, err := tmpl.Render(Vars{Service: value, Version: value, Baseline: value, Window: time.Minute, SinceDeploy: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		e, err := Parse(q)
		if err != nil {
			t.Fatalf("template %q accepted by Check, but value %q breaks it: %v\n%q", text, value, err, q)
		}
		if structure(e) != structure(pe) {
			t.Fatalf("template %q accepted by Check, but value %q changes its shape:\n%q", text, value, q)
		}
		want, got := stringValues(pe), stringValues(e)
		if len(want) != len(got) {
			t.Fatalf("template %q: value %q changes the strings: %d, want %d", text, value, len(got), len(want))
		}
		r := strings.NewReplacer(ms[0].plain, value, ms[1].plain, value, ms[2].plain, value)
		for i := range want {
			w := r.Replace(want[i])
			if got[i] != w {
				t.Fatalf("template %q, value %q: string %q, want %q", text, value, got[i], w)
			}
		}
	})
}
