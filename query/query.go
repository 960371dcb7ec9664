// Package query renders Guardian's PromQL templates. Templates see
// {{.Service}}, {{.Version}}, {{.Baseline}}, {{.Window}} and {{.SinceDeploy}}.
// Label values are escaped for a double-quoted PromQL string (Escape), so
// that any value, whatever bytes it holds (quotes, backslashes, newlines,
// NUL, U+FFFD, invalid UTF-8), yields a query that parses and selects exactly
// that value: a version string can neither inject PromQL nor make the query
// fail. Template.Check refuses templates that put a value anywhere else
// (backticks, single quotes, names, regex matchers), where escaping cannot
// protect it.
package query

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"text/template/parse"
	"time"
	"unicode/utf8"
	"weak"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
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
	*parsedText // shared by the templates of the same name and text
	// counter is CounterValues's rewrite of the last render (counter.go).
	counter atomic.Pointer[counterRewrite]
}

// parsedText is what New makes of a template's name and text; it never
// changes.
type parsedText struct {
	text string
	tmpl *template.Template
	// segs is the template as text and plain field references, when it is
	// nothing else (no pipelines, conditions or other actions): Render
	// then writes them out without executing the template. nil: Render
	// executes it.
	segs []segment
	// uses has bit i set when segs print field i.
	uses uint8
}

// segment is a piece of a template: text, or (field >= 0) one field of
// data printed as it is.
type segment struct {
	text  string
	field int
}

// Fields of data, in order, as segment.field numbers them.
var fieldNames = [...]string{"Service", "Version", "Baseline", "Window", "SinceDeploy"}

const sinceDeployField = 4

// segments returns t's tree as segments, or nil when it holds anything but
// text and {{.Field}} actions naming one of data's fields: what
// text/template prints for those is the text and the field's string, byte
// for byte.
func segments(t *template.Template) []segment {
	if t.Tree == nil || t.Root == nil {
		return nil
	}
	segs := make([]segment, 0, len(t.Root.Nodes))
	for _, n := range t.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			segs = append(segs, segment{text: string(n.Text), field: -1})
		case *parse.ActionNode:
			f := plainField(n.Pipe)
			if f < 0 {
				return nil
			}
			segs = append(segs, segment{field: f})
		default:
			return nil
		}
	}
	return segs
}

// plainField returns the number of the field p prints when p is just
// .Field, else -1.
func plainField(p *parse.PipeNode) int {
	if p == nil || len(p.Decl) > 0 || p.IsAssign || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return -1
	}
	f, ok := p.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok || len(f.Ident) != 1 {
		return -1
	}
	for i, name := range fieldNames {
		if f.Ident[0] == name {
			return i
		}
	}
	return -1
}

func (d *data) field(i int) string {
	switch i {
	case 0:
		return d.Service
	case 1:
		return d.Version
	case 2:
		return d.Baseline
	case 3:
		return d.Window
	}
	return d.SinceDeploy
}

// New parses text as a template. Template syntax errors fail here; fields
// other than Service, Version, Baseline, Window and SinceDeploy fail when
// rendered (Check renders).
//
// Templates of the same name and text share one parse tree (and its
// segments and text) while any of them is in use (a template executes
// safely in parallel): a thousand services with the same triggers keep one
// tree per query, not a thousand.
func New(name, text string) (*Template, error) {
	key := parsedKey{name, text}
	if w, ok := parsed.Load(key); ok {
		if p := w.(weak.Pointer[parsedText]).Value(); p != nil {
			return &Template{parsedText: p}, nil
		}
	}
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parsing template: %w", err)
	}
	p := newParsed(text, t)
	w := weak.Make(p)
	parsed.Store(key, w)
	runtime.AddCleanup(p, func(key parsedKey) { parsed.CompareAndDelete(key, w) }, key)
	return &Template{parsedText: p}, nil
}

func newParsed(text string, t *template.Template) *parsedText {
	p := &parsedText{text: text, tmpl: t, segs: segments(t)}
	for _, s := range p.segs {
		if s.field >= 0 {
			p.uses |= 1 << s.field
		}
	}
	return p
}

// parsed holds a weak pointer to the parsedText of each template name and
// text in use; an entry goes when its parsedText is collected.
var parsed sync.Map // parsedKey → weak.Pointer[parsedText]

type parsedKey struct{ name, text string }

// Text returns the template as written.
func (t *Template) Text() string { return t.text }

// Render executes the template with v, escaping label values.
func (t *Template) Render(v Vars) (string, error) {
	d := t.data(v)
	if t.segs != nil {
		q, _ := t.write(&d)
		return q, nil
	}
	var b bytes.Buffer
	if err := t.tmpl.Execute(&b, d); err != nil {
		return "", fmt.Errorf("rendering template: %w", err)
	}
	return b.String(), nil
}

// data returns what the template sees for v.
// A template executed by text/template gets every field; one written out
// from its segments only those it prints.
func (t *Template) data(v Vars) data {
	uses := func(f int) bool { return t.segs == nil || t.uses&(1<<f) != 0 }
	var d data
	if uses(0) {
		d.Service = Escape(v.Service)
	}
	if uses(1) {
		d.Version = Escape(v.Version)
	}
	if uses(2) {
		d.Baseline = Escape(v.Baseline)
	}
	switch since := uses(sinceDeployField); {
	case since && v.SinceDeploy > 0:
		d.SinceDeploy = model.Duration(v.SinceDeploy).String()
		if uses(3) {
			d.Window = model.Duration(v.Window).String()
		}
	case since || uses(3):
		d.Window = model.Duration(v.Window).String()
		if since {
			d.SinceDeploy = d.Window
		}
	}
	return d
}

// write writes the segments of t with d, and returns how many of them
// are {{.SinceDeploy}}.
func (t *Template) write(d *data) (string, int) {
	n, since := 0, 0
	for _, s := range t.segs {
		n += len(s.text)
		if s.field >= 0 {
			n += len(d.field(s.field))
		}
		if s.field == sinceDeployField {
			since++
		}
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range t.segs {
		if s.field >= 0 {
			b.WriteString(d.field(s.field))
		} else {
			b.WriteString(s.text)
		}
	}
	return b.String(), since
}

// Check renders the template with sample values and parses the result as
// PromQL, so that a config with a broken query is rejected at load time
// rather than at the first deploy. It also makes sure that no label value
// can change what the query selects: {{.Service}}, {{.Version}} and
// {{.Baseline}} may only appear inside double-quoted strings (Render escapes
// values for those, and only for those), as (part of) the value of a label
// matcher with = or !=, or as a string argument that PromQL takes
// literally. A value in backticks or single quotes, outside any string, in a
// label name, in a regex matcher (=~, !~) or in label_replace's replacement
// or regex is refused: there a value's quotes, backslashes, regex or $
// characters would change the query. Finally Check renders hostile values
// (quotes of every kind, backslashes, newlines, NUL, invalid UTF-8, U+FFFD,
// a PromQL injection) and requires the same query shape with each value
// coming back byte for byte, and empty values, which must not break the
// query either ({version="{{.Version}}"} alone does: a selector needs a
// metric name or a matcher that cannot be empty).
func (t *Template) Check() error {
	markers := valueMarkers(t.text)
	plain, err := t.Render(markers.vars(false))
	if err != nil {
		return err
	}
	if err := markers.checkTokens(plain); err != nil {
		return err
	}
	q, err := t.Render(Vars{Service: "svc", Version: "v2", Baseline: "v1", Window: time.Minute, SinceDeploy: 5 * time.Minute})
	if err != nil {
		return err
	}
	if _, err := Parse(q); err != nil {
		return err
	}
	pe, err := Parse(plain)
	if err != nil {
		return fmt.Errorf("%s: %w", errOutsideQuotes, err)
	}
	plainValues, err := markers.checkValues(pe)
	if err != nil {
		return err
	}
	empty, err := t.Render(Vars{Window: time.Minute, SinceDeploy: 5 * time.Minute})
	if err != nil {
		return err
	}
	if _, err := Parse(empty); err != nil {
		return fmt.Errorf("an empty label value breaks the query (a selector needs a metric name, or a matcher besides the label values): %w", err)
	}
	hostile, err := t.Render(markers.vars(true))
	if err != nil {
		return err
	}
	he, err := Parse(hostile)
	if err != nil {
		return fmt.Errorf("%s: a hostile value breaks the query: %w", errOutsideQuotes, err)
	}
	if structure(he) != structure(pe) {
		return fmt.Errorf("%s: a hostile value changes the query", errOutsideQuotes)
	}
	hostileValues := stringValues(he)
	if len(hostileValues) != len(plainValues) {
		return fmt.Errorf("%s: a hostile value changes the query", errOutsideQuotes)
	}
	for i, v := range plainValues {
		if want := markers.replace(v); hostileValues[i] != want {
			return fmt.Errorf("%s: a hostile value comes back as %q instead of %q", errOutsideQuotes, hostileValues[i], want)
		}
	}
	return nil
}

// errOutsideQuotes starts the errors of templates that put label values
// where escaping does not protect them.
const errOutsideQuotes = "label values must be inside double quotes"

// marker stands for one template field while Check looks where the field
// ends up: plain is letters and digits only, so it lexes the same in any
// position; hostile contains everything that could break out of a string.
type marker struct {
	field, plain, hostile string
}

type markerSet []marker

// valueMarkers returns a marker for each label value field, none of them
// occurring in text.
func valueMarkers(text string) markerSet {
	var ms markerSet
	for _, f := range []string{"Service", "Version", "Baseline"} {
		plain := "guardianvalue" + strings.ToLower(f)
		for n := 0; strings.Contains(text, plain); n++ {
			plain = fmt.Sprintf("guardianvalue%s%d", strings.ToLower(f), n)
		}
		ms = append(ms, marker{
			field: "{{." + f + "}}",
			plain: plain,
			hostile: "x\\\"'`\n\t\x00\xff\xe2\x82\uFFFD\u2028" + plain +
				"\"}) or vector(1) # `}[30s]) or vector(0)) * 0 # ' $1 .* (|) \\",
		})
	}
	return ms
}

func (ms markerSet) vars(hostile bool) Vars {
	v := Vars{Window: time.Minute, SinceDeploy: 5 * time.Minute}
	pick := func(m marker) string {
		if hostile {
			return m.hostile
		}
		return m.plain
	}
	v.Service, v.Version, v.Baseline = pick(ms[0]), pick(ms[1]), pick(ms[2])
	return v
}

// replace turns plain markers in s into hostile ones.
func (ms markerSet) replace(s string) string {
	var pairs []string
	for _, m := range ms {
		pairs = append(pairs, m.plain, m.hostile)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// in returns the markers in s.
func (ms markerSet) in(s string) []marker {
	var found []marker
	for _, m := range ms {
		if strings.Contains(s, m.plain) {
			found = append(found, m)
		}
	}
	return found
}

// count returns how often markers occur in s.
func (ms markerSet) count(s string) int {
	n := 0
	for _, m := range ms {
		n += strings.Count(s, m.plain)
	}
	return n
}

// checkTokens requires each marker in q to be inside a double-quoted
// string token (or a comment).
func (ms markerSet) checkTokens(q string) error {
	l := parser.Lex(q)
	var it parser.Item
	for l.NextItem(&it); it.Typ != parser.EOF && it.Typ != parser.ERROR; l.NextItem(&it) {
		found := ms.in(it.Val)
		if len(found) == 0 || it.Typ == parser.COMMENT {
			continue
		}
		f := found[0].field
		switch {
		case it.Typ != parser.STRING:
			return fmt.Errorf("%s, as in label=\"%s\": %s is outside any string", errOutsideQuotes, f, f)
		case it.Val[0] == '`':
			return fmt.Errorf("%s: %s is inside backticks, where a value's backtick would end the string", errOutsideQuotes, f)
		case it.Val[0] == '\'':
			return fmt.Errorf("%s: %s is inside single quotes", errOutsideQuotes, f)
		}
	}
	return nil
}

// stringValues returns the values of the query's label matchers and its
// string literals, in a fixed order.
func stringValues(e parser.Expr) []string {
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			for _, m := range n.LabelMatchers {
				out = append(out, m.Value)
			}
		case *parser.StringLiteral:
			out = append(out, n.Val)
		}
		return nil
	})
	return out
}

// checkValues requires every marker of the parsed plain render to be in a
// label matcher's value with = or !=, or in a string literal PromQL takes
// literally, and returns the strings stringValues finds.
func (ms markerSet) checkValues(e parser.Expr) ([]string, error) {
	var err error
	parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
		if err != nil {
			return err
		}
		switch n := n.(type) {
		case *parser.VectorSelector:
			for _, m := range n.LabelMatchers {
				found := ms.in(m.Value)
				if len(found) == 0 {
					continue
				}
				if m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp {
					err = fmt.Errorf("%s is in a regex matcher (%s%s\"...\"), where its regex characters would change what it selects: compare it with = or !=", found[0].field, m.Name, m.Type)
					return err
				}
			}
		case *parser.StringLiteral:
			found := ms.in(n.Val)
			if len(found) == 0 {
				break
			}
			if c, ok := parent(path).(*parser.Call); ok && c.Func.Name == "label_replace" {
				switch argIndex(c, n) {
				case 2:
					err = fmt.Errorf("%s is label_replace's replacement, where $ expands", found[0].field)
					return err
				case 4:
					err = fmt.Errorf("%s is label_replace's regex: its regex characters would change what it matches", found[0].field)
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	values := stringValues(e)
	inValues := 0
	for _, v := range values {
		inValues += ms.count(v)
	}
	if printed := e.String(); inValues != ms.count(printed) {
		// The markers left over are in names: quoted label names, grouping
		// labels.
		f := "a label value"
		if found := ms.in(printed); len(found) > 0 {
			f = found[0].field
		}
		return nil, fmt.Errorf("%s is a label name: a label value may only be a label matcher's value or a string argument, as in label=\"%s\"", f, f)
	}
	return values, nil
}

func parent(path []parser.Node) parser.Node {
	if len(path) == 0 {
		return nil
	}
	return path[len(path)-1]
}

func argIndex(c *parser.Call, n parser.Node) int {
	for i, a := range c.Args {
		if parser.Node(a) == n {
			return i
		}
	}
	return -1
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

// Escape escapes s for use inside a double-quoted PromQL string literal, so
// that the literal unquotes to exactly s, byte for byte: backslashes, double
// quotes and control characters are escaped, and so is what PromQL's lexer
// refuses in a string, which reads invalid UTF-8 and U+FFFD alike as an
// error: each byte of invalid UTF-8 becomes \xNN (which unquotes to that
// byte) and U+FFFD becomes \uFFFD. Every other character is kept. (PromQL
// rejects \' inside double quotes and has no escapes in backticks, so
// templates must put label values in double quotes; Check enforces that.)
func Escape(s string) string {
	if plainValue(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == utf8.RuneError:
			b.WriteString(`\uFFFD`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// plainValue reports whether s has nothing Escape changes: printable
// ASCII other than backslash and double quote.
func plainValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' || c == '"' {
			return false
		}
	}
	return true
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

// CounterValues returns q with each call of increase() replaced by
// last_over_time() over the same range, and the number of calls replaced
// (0: q unchanged). For a counter whose series all begin inside the range
// and do not reset there, the latest value is exactly the increase seen so
// far, where increase() extrapolates towards the ends of its range and may
// count more than was scraped. The rest of q is kept byte for byte (its
// escaped label values included), so the result parses wherever q does.
func CounterValues(q string) (string, int, error) {
	e, err := Parse(q)
	if err != nil {
		return "", 0, err
	}
	calls := 0
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if c, ok := n.(*parser.Call); ok && c.Func.Name == "increase" {
			calls++
		}
		return nil
	})
	if calls == 0 {
		return q, 0, nil
	}
	var b strings.Builder
	last, replaced := 0, 0
	l := parser.Lex(q)
	var it, prev parser.Item
	for l.NextItem(&it); it.Typ != parser.EOF && it.Typ != parser.ERROR; l.NextItem(&it) {
		if it.Typ == parser.COMMENT {
			continue
		}
		if it.Typ == parser.LEFT_PAREN && prev.Typ == parser.IDENTIFIER && prev.Val == "increase" {
			b.WriteString(q[last:int(prev.Pos)])
			b.WriteString("last_over_time")
			last = int(prev.Pos) + len(prev.Val)
			replaced++
		}
		prev = it
	}
	b.WriteString(q[last:])
	out := b.String()
	if replaced != calls {
		return "", 0, fmt.Errorf("rewriting increase() in %q: found %d calls, replaced %d", q, calls, replaced)
	}
	if _, err := Parse(out); err != nil {
		return "", 0, fmt.Errorf("rewriting increase() in %q: %w", q, err)
	}
	return out, replaced, nil
}
