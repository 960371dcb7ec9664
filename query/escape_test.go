package query

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

// versionValues returns the values of the matchers on label in q, and of
// its string literals, in the order they appear.
func matcherValues(t testing.TB, q, label string) []string {
	t.Helper()
	e, err := Parse(q)
	if err != nil {
		t.Fatalf("rendered query does not parse: %v\n%q", err, q)
	}
	var got []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			for _, m := range n.LabelMatchers {
				if m.Name == label {
					got = append(got, m.Value)
				}
			}
		case *parser.StringLiteral:
			got = append(got, n.Val)
		}
		return nil
	})
	return got
}

// The lexer reads invalid UTF-8 and U+FFFD alike as an error, so both must
// be escaped, and the escapes must unquote to the very same bytes.
func TestRenderSelectsOddBytesExactly(t *testing.T) {
	tmpl, err := New("q", `sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}",code=~"5.."}[{{.Window}}]))`+
		` / sum(rate(http_requests_total{service="{{.Service}}",version="{{.Baseline}}"}[{{.Window}}]))`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, value string }{
		{"replacement character", "v2-\uFFFD"},
		{"only a replacement character", "\uFFFD"},
		{"invalid byte", "v2-\xff"},
		{"truncated rune", "v2-\xe2\x82"},
		{"surrogate encoded in UTF-8", "v\xed\xa0\x80"},
		{"overlong encoding", "\xc0\xaf"},
		{"NUL and DEL", "\x00v\x7f"},
		{"C1 control", "v\u0085"},
		{"line separator", "v\u2028"},
		{"backslash before an escape", `v\xff\u0041`},
		{"quotes and backticks", "x`\"'"},
		{"newline", "a\nb\r"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := tmpl.Render(Vars{Service: tc.value, Version: tc.value, Baseline: tc.value, Window: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			for _, label := range []string{"service", "version"} {
				got := matcherValues(t, q, label)
				if len(got) != 2 || got[0] != tc.value || got[1] != tc.value {
					t.Fatalf("%s matchers %q, want the value %q twice\n%s", label, got, tc.value, q)
				}
			}
		})
	}
}

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v2.4.1", "v2.4.1"},
		{`a"b\c`, `a\"b\\c`},
		{"\uFFFD", `\uFFFD`},
		{"a\xffb", `a\xffb`},
		{"\xe2\x82", `\xe2\x82`},
		{"ü€🚀", "ü€🚀"},
		{"\n\r\t\x00\x7f", `\n\r\t\x00\x7f`},
		{"'`", "'`"},
	} {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCheckRefusesValuesOutsideDoubleQuotes(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"backticks", "sum(rate(http_requests_total{version=`{{.Version}}`}[{{.Window}}]))", "double quotes"},
		{"single quotes", `sum(rate(http_requests_total{version='{{.Version}}'}[{{.Window}}]))`, "double quotes"},
		{"bare label value", `up{version={{.Version}}}`, "double quotes"},
		{"metric name", `{{.Service}}_requests_total`, "double quotes"},
		{"label name", `up{ {{.Service}}="x"}`, "double quotes"},
		{"quoted label name", `up{"{{.Service}}"="x"}`, "label name"},
		{"grouping label", `sum by ("{{.Version}}") (up)`, "label name"},
		{"regex matcher", `up{version=~"{{.Version}}"}`, "regex"},
		{"negative regex matcher", `up{version!~"{{.Version}}|x"}`, "regex"},
		{"label_replace regex", `label_replace(up, "v", "$1", "version", "{{.Version}}")`, "regex"},
		{"label_replace replacement", `label_replace(up, "v", "{{.Version}}", "version", ".*")`, "replacement"},
		{"backtick baseline", "up{version=`{{.Baseline}}`}", "{{.Baseline}}"},
		{"only label values in a selector", `sum({version="{{.Version}}"})`, "empty label value"},
		{"only a quoted metric name", `{"{{.Service}}"}`, "empty label value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := New("q", tc.text)
			if err != nil {
				t.Fatal(err)
			}
			err = tmpl.Check()
			if err == nil {
				t.Fatalf("Check accepted %s", tc.text)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestCheckAcceptsDoubleQuotedValues(t *testing.T) {
	for _, text := range []string{
		`sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}",code=~"5.."}[{{.Window}}]))`,
		`up{version!="{{.Baseline}}"}`,
		`{__name__="up",version="{{.Version}}"}`,
		`up{job="{{.Service}}-canary"}`,
		`count_values("{{.Version}}", up)`,
		`label_replace(vector(0), "version", "x", "", "") # {{.Version}}`,
		`sum(rate(x{version="{{.Version}}"}[{{.SinceDeploy}}])) or vector(0)`,
		`up`,
	} {
		tmpl, err := New("q", text)
		if err != nil {
			t.Fatal(err)
		}
		if err := tmpl.Check(); err != nil {
			t.Errorf("Check(%s): %v", text, err)
		}
	}
}

// A scraped version closing a backtick string turned a bad version's error
// ratio into 0. Check refuses the template; this shows why.
func TestBacktickInjection(t *testing.T) {
	tmpl, err := New("q", "sum(rate(http_requests_total{version=`{{.Version}}`,code=~\"5..\"}[30s])) or vector(0)")
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Check(); err == nil || !strings.Contains(err.Error(), "double quotes") {
		t.Fatalf("Check: %v, want a double-quotes error", err)
	}
}
