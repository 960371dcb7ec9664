// Package query renders Guardian's PromQL templates. Templates see
// {{.Service}}, {{.Version}}, {{.Baseline}}, {{.Window}} and {{.SinceDeploy}};
// label values are escaped for a PromQL string literal so a version string
// cannot inject PromQL.
package query

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// Vars are the values a template may use.
type Vars struct {
	Service  string
	Version  string
	Baseline string
	Window   time.Duration
	// SinceDeploy is the range of "since the deploy" queries, such as
	// sum(increase(x[{{.SinceDeploy}}])): the time from the deploy to the
	// evaluation (the caller rounds it, usually up to a whole second). When
	// it is not positive (no deploy, as for recovery checks or a bare
	// render) {{.SinceDeploy}} renders as {{.Window}}, so the same template
	// yields the count over the trigger's window.
	SinceDeploy time.Duration
}

// data is what the template sees: escaped label values and PromQL durations.
type data struct {
	Service, Version, Baseline, Window, SinceDeploy string
}

// Template is a parsed PromQL template.
type Template struct {
	text string
	tmpl *template.Template
}

// New parses text as a template. Template syntax errors fail here; fields
// other than Service, Version, Baseline, Window and SinceDeploy fail when
// rendered (Check renders).
func New(name, text string) (*Template, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parsing template: %w", err)
	}
	return &Template{text: text, tmpl: t}, nil
}

// Text returns the template as written.
func (t *Template) Text() string { return t.text }

// Render executes the template with v, escaping label values.
func (t *Template) Render(v Vars) (string, error) {
	var b bytes.Buffer
	d := data{
		Service:     Escape(v.Service),
		Version:     Escape(v.Version),
		Baseline:    Escape(v.Baseline),
		Window:      model.Duration(v.Window).String(),
		SinceDeploy: model.Duration(v.Window).String(),
	}
	if v.SinceDeploy > 0 {
		d.SinceDeploy = model.Duration(v.SinceDeploy).String()
	}
	if err := t.tmpl.Execute(&b, d); err != nil {
		return "", fmt.Errorf("rendering template: %w", err)
	}
	return b.String(), nil
}

// Check renders the template with sample values, including hostile ones,
// and parses the result as PromQL, so that a config with a broken query is
// rejected at load time rather than at the first deploy.
func (t *Template) Check() error {
	shape := ""
	for i, v := range []Vars{
		{Service: "svc", Version: "v2", Baseline: "v1", Window: time.Minute, SinceDeploy: 5 * time.Minute},
		{Service: `a"b'c`, Version: `x'"} or vector(1) #`, Baseline: "\\\n'", Window: 90 * time.Second, SinceDeploy: 17 * time.Second},
	} {
		q, err := t.Render(v)
		if err != nil {
			return err
		}
		e, err := Parse(q)
		if err != nil {
			if i > 0 {
				return fmt.Errorf("label values must be inside double quotes: %w", err)
			}
			return err
		}
		s := structure(e)
		if i > 0 && s != shape {
			return fmt.Errorf("label values must be inside double quotes: a hostile value changes the query")
		}
		shape = s
	}
	return nil
}

// structure describes e's node types, without literal values.
func structure(e parser.Expr) string {
	var b strings.Builder
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		fmt.Fprintf(&b, "%T;", n)
		return nil
	})
	return b.String()
}

var promqlParser = parser.NewParser(parser.Options{})

// Parse parses q as a PromQL expression.
func Parse(q string) (parser.Expr, error) {
	e, err := promqlParser.ParseExpr(q)
	if err != nil {
		return nil, fmt.Errorf("invalid PromQL: %w", err)
	}
	return e, nil
}

// Escape escapes s for use inside a double-quoted PromQL string literal:
// backslashes, double quotes and control characters. (PromQL rejects \' inside
// double quotes, so templates must put label values in double quotes; Check
// enforces that.)
func Escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

// MaxRange returns the longest range selector or subquery range (plus its
// offset) in q, so the embedded source can keep just enough history.
func MaxRange(q string) (time.Duration, error) {
	e, err := Parse(q)
	if err != nil {
		return 0, err
	}
	var longest time.Duration
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		var d time.Duration
		switch n := n.(type) {
		case *parser.MatrixSelector:
			d = n.Range
			if vs, ok := n.VectorSelector.(*parser.VectorSelector); ok {
				d += vs.OriginalOffset
			}
		case *parser.SubqueryExpr:
			d = n.Range + n.OriginalOffset
		case *parser.VectorSelector:
			d = n.OriginalOffset
		}
		if d > longest {
			longest = d
		}
		return nil
	})
	return longest, nil
}
