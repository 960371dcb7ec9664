package query

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

func TestRenderEscapesLabelValues(t *testing.T) {
	tmpl, err := New("q", `sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}",code=~"5.."}[{{.Window}}]))`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, version string
	}{
		{"plain", "v2.4.1"},
		{"quote injection", `v2"} or vector(1) or foo{a="`},
		{"backslash", `v2\`},
		{"newline", "v2\n"},
		{"single quote", "it's"},
		{"control", "v2\x00\x7f"},
		{"unicode", "v2-ünï"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := tmpl.Render(Vars{Service: "checkout", Version: tc.version, Window: 90 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			e, err := Parse(q)
			if err != nil {
				t.Fatalf("rendered query does not parse: %v\n%s", err, q)
			}
			// The version must come back, unchanged, as one matcher's value.
			var got []string
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					for _, m := range vs.LabelMatchers {
						if m.Name == "version" {
							got = append(got, m.Value)
						}
					}
				}
				return nil
			})
			if len(got) != 1 || got[0] != tc.version {
				t.Fatalf("version matchers %q, want [%q]\n%s", got, tc.version, q)
			}
			if !strings.Contains(q, "[1m30s]") {
				t.Fatalf("window not rendered as PromQL duration: %s", q)
			}
		})
	}
}

func TestInjectionStaysInsideMatcher(t *testing.T) {
	tmpl, err := New("q", `up{version="{{.Version}}"}`)
	if err != nil {
		t.Fatal(err)
	}
	q, err := tmpl.Render(Vars{Version: `x"} or vector(1) #`})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Parse(q)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.Type(), "vector"; string(got) != want {
		t.Fatalf("type %s, want %s", got, want)
	}
	if _, ok := e.(*parser.VectorSelector); !ok {
		t.Fatalf("injection changed the query into %T: %s", e, e)
	}
}

func TestNewRejectsUnknownField(t *testing.T) {
	tmpl, err := New("q", `up{v="{{.Verison}}"}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Check(); err == nil {
		t.Fatal("want error for unknown field .Verison")
	}
}

func TestCheckRejectsBadPromQL(t *testing.T) {
	tmpl, err := New("q", `sum(rate(x[{{.Window}}])`)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Check(); err == nil || !strings.Contains(err.Error(), "invalid PromQL") {
		t.Fatalf("got %v, want invalid PromQL", err)
	}
}

func TestCheckRejectsSingleQuotedValues(t *testing.T) {
	tmpl, err := New("q", `up{version='{{.Version}}'}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Check(); err == nil || !strings.Contains(err.Error(), "double quotes") {
		t.Fatalf("got %v, want a double-quotes error", err)
	}
}

func TestMaxRange(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want time.Duration
	}{
		{`up`, 0},
		{`rate(x[1m])`, time.Minute},
		{`rate(x[1m]) / rate(y[5m] offset 1m)`, 6 * time.Minute},
		{`max_over_time(rate(x[1m])[10m:30s])`, 10 * time.Minute},
	} {
		got, err := MaxRange(tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.q, err)
		}
		if got != tc.want {
			t.Errorf("MaxRange(%s) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestSinceDeploy(t *testing.T) {
	tmpl, err := New("q", `sum(increase(http_requests_total{version="{{.Version}}"}[{{.SinceDeploy}}]))`)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	for _, tc := range []struct {
		name string
		vars Vars
		want string
	}{
		{"time since the deploy", Vars{Version: "v2", Window: time.Minute, SinceDeploy: 95 * time.Second}, "[1m35s]"},
		{"whole hours", Vars{Version: "v2", Window: time.Minute, SinceDeploy: 2 * time.Hour}, "[2h]"},
		{"no deploy: the window", Vars{Version: "v2", Window: 2 * time.Minute}, "[2m]"},
		{"negative: the window", Vars{Version: "v2", Window: 30 * time.Second, SinceDeploy: -time.Second}, "[30s]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := tmpl.Render(tc.vars)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(q, tc.want) {
				t.Fatalf("rendered %s, want range %s", q, tc.want)
			}
			if _, err := Parse(q); err != nil {
				t.Fatalf("rendered query does not parse: %v", err)
			}
		})
	}
}

func TestCounterValues(t *testing.T) {
	for _, tc := range []struct {
		name, q, want string
		calls         int
	}{
		{"no increase", `sum(rate(x[5m]))`, `sum(rate(x[5m]))`, 0},
		{"one", `sum(increase(x{version="v2"}[1m]))`, `sum(last_over_time(x{version="v2"}[1m]))`, 1},
		{"errors or zero", `sum(increase(x{version="v2",code=~"5.."}[90s])) or vector(0)`,
			`sum(last_over_time(x{version="v2",code=~"5.."}[90s])) or vector(0)`, 1},
		{"difference, spaces and a comment", "sum(increase (c{v=\"a\"}[1m]))\n# increase(\n- sum( increase(b{le=\"0.5\"}[1m]))",
			"sum(last_over_time (c{v=\"a\"}[1m]))\n# increase(\n- sum( last_over_time(b{le=\"0.5\"}[1m]))", 2},
		{"names and values that say increase", `sum(increase(increase{increase="increase("}[1m]))`,
			`sum(last_over_time(increase{increase="increase("}[1m]))`, 1},
		{"odd bytes kept", `sum(increase(x{version="\xff\uFFFD\"q"}[1m]))`, `sum(last_over_time(x{version="\xff\uFFFD\"q"}[1m]))`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := CounterValues(tc.q)
			if err != nil || got != tc.want || n != tc.calls {
				t.Fatalf("CounterValues(%q) = %q, %d, %v; want %q, %d", tc.q, got, n, err, tc.want, tc.calls)
			}
		})
	}
	if _, _, err := CounterValues(`sum(increase(x[1m])`); err == nil {
		t.Fatal("a query that does not parse: no error")
	}
}

// Templates of the same name and text share their parse tree, segments and
// text, and render alike; another text or name has its own.
func TestNewSharesParseTree(t *testing.T) {
	text := `sum(rate(x{version="{{.Version}}"}[{{.Window}}]))`
	a, err := New("shared", text)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New("shared", text)
	if err != nil {
		t.Fatal(err)
	}
	if a.tmpl != b.tmpl || a.parsedText != b.parsedText {
		t.Error("same name and text: two parse trees")
	}
	if a == b {
		t.Error("same name and text: one Template (its counter rewrite is its own)")
	}
	for _, other := range []struct{ name, text string }{{"shared", text + " > 0"}, {"other", text}} {
		c, err := New(other.name, other.text)
		if err != nil {
			t.Fatal(err)
		}
		if c.tmpl == a.tmpl {
			t.Errorf("%q %q shares the parse tree of %q %q", other.name, other.text, "shared", text)
		}
	}
	for _, tpl := range []*Template{a, b} {
		got, err := tpl.Render(Vars{Version: "v2", Window: time.Minute})
		if want := `sum(rate(x{version="v2"}[1m]))`; err != nil || got != want {
			t.Errorf("Render = %q, %v; want %q", got, err, want)
		}
	}
}
