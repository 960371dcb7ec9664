package query

import (
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
