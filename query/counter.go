package query

import (
	"strings"

	"github.com/prometheus/common/model"
)

// CounterValues returns CounterValues of the query t renders with v. A
// template of text and plain fields (see Render) whose {{.SinceDeploy}}
// appears only as a range or other duration keeps the rewrite of its last
// Service, Version, Baseline and Window, with the SinceDeploy left open:
// a watch renders the same counts at every evaluation with a growing
// range, and rewriting a query parses it twice.
func (t *Template) CounterValues(v Vars) (string, int, error) {
	q, err := t.Render(v)
	if err != nil {
		return "", 0, err
	}
	if t.segs == nil || v.SinceDeploy <= 0 {
		return CounterValues(q)
	}
	key := v
	key.SinceDeploy = 0
	c := t.counter.Load()
	if c == nil || c.key != key {
		c = t.counterOf(key)
		t.counter.Store(c)
	}
	switch {
	case c.parts == nil:
		return CounterValues(q)
	case c.n == 0:
		return q, 0, nil
	}
	return strings.Join(c.parts, model.Duration(v.SinceDeploy).String()), c.n, nil
}

// counterRewrite is CounterValues of a template's render with key's
// values, split where {{.SinceDeploy}} goes.
type counterRewrite struct {
	key   Vars
	parts []string // nil: rewrite each render
	n     int
}

// sinceMarker stands for {{.SinceDeploy}} in counterOf: a duration that
// model.Duration never prints (it would print 1w4d10h20m54s321ms), so it
// is not a range a template or value holds by chance.
const sinceMarker = "987654321ms"

// counterOf rewrites t's render with key and sinceMarker for SinceDeploy.
// The marker and any SinceDeploy lex alike (one duration token, or part of
// a string or comment) when neither side of it touches a character that
// could join it into a longer token, so the rewrite of a render is this
// one with the marker replaced; otherwise, or when the marker occurs
// anywhere else, the parts are nil.
func (t *Template) counterOf(key Vars) *counterRewrite {
	c := &counterRewrite{key: key}
	d := t.data(key)
	d.SinceDeploy = sinceMarker
	q, fields := t.write(&d)
	if strings.Count(q, sinceMarker) != fields {
		return c
	}
	for i := 0; ; {
		j := strings.Index(q[i:], sinceMarker)
		if j < 0 {
			break
		}
		j += i
		end := j + len(sinceMarker)
		if j > 0 && (joins(q[j-1]) || q[j-1] == ':') || end < len(q) && joins(q[end]) {
			return c
		}
		i = end
	}
	out, n, err := CounterValues(q)
	if err != nil {
		return c
	}
	parts := strings.Split(out, sinceMarker)
	if len(parts) != fields+1 {
		return c
	}
	c.parts, c.n = parts, n
	return c
}

// joins reports whether b next to a duration could make it part of a
// longer token (a number, an identifier, a duration). A colon before it
// could too (a metric name such as a:5m); after it, it is a subquery's.
func joins(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '_' || b == '.' || b >= 0x80
}
