package embedded

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/rollback-guardian/guardian/config"
	querytmpl "github.com/rollback-guardian/guardian/query"
)

// Filter keeps, at scrape time, only the series whose metric name one of
// a service's queries selects: a service exposing hundreds of runtime
// series its triggers never read does not pay for storing them. The nil
// *Filter keeps every series.
type Filter struct {
	names map[string]struct{}
	// folds are the metric names whose series are folded at scrape time
	// (see fold); the other names' series are kept as scraped.
	folds map[string]*fold
}

// fold says how a scrape folds the series of one metric name that a
// service's queries read only as sums of rates or increases, grouped by
// some labels (sum by (version) (rate(x[5m])), histogram_quantile over sum
// by (le) (rate(x_bucket[5m])), and so on): series that no query can tell
// apart are stored as one, their sum, with every counter reset of each
// compensated, so that those queries give what they give over the series
// as scraped. A Guardian watching a thousand services stored, for instance,
// a request counter by method it never reads by method.
//
// Two series are told apart when they differ in a label a query groups by,
// or matches with a value that depends on the deploy (version="{{.Version}}"):
// keep, stored as scraped; or when a fixed matcher on a label matches one
// and not the other (code=~"5.."): classes, where the folded series takes
// the first value seen in its class, which every query's matchers treat
// as they treat the class. Every other label is dropped.
//
// The folded queries give what they give over the series as scraped (the
// series of one target share their timestamps), with two exceptions, each
// worth at most one scrape interval of one series' increase: PromQL takes a
// new series' first sample as its start, as the fold does, but rate and
// increase extrapolate that series from its own first sample; and they do
// not extrapolate a counter back past zero, which a series starting or
// restarting at a window's first sample is near, while the fold's sum is
// not. Queries reading the counters' values, such as the sequential test's
// last_over_time() over a fresh version, read the folded sum, which
// counts every increase since the version appeared, resets compensated.
type fold struct {
	keep    map[string]struct{}
	classes map[string][]*labels.Matcher
}

// NewFilter returns a filter keeping the series of these metric names.
func NewFilter(names ...string) *Filter {
	f := &Filter{names: make(map[string]struct{}, len(names))}
	for _, n := range names {
		f.names[n] = struct{}{}
	}
	return f
}

// Keeps reports whether series named name are kept.
func (f *Filter) Keeps(name string) bool {
	if f == nil {
		return true
	}
	_, ok := f.names[name]
	return ok
}

// Names returns the names kept, sorted; nil for the nil filter (all).
func (f *Filter) Names() []string {
	if f == nil {
		return nil
	}
	out := make([]string, 0, len(f.names))
	for n := range f.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// keepsBytes is Keeps for a name in bytes, without allocating.
func (f *Filter) keepsBytes(name []byte) bool {
	if f == nil {
		return true
	}
	_, ok := f.names[string(name)]
	return ok
}

// FilterFor returns the filter of service sc's embedded source: the metric
// names of every query the service runs on it (its triggers' query,
// volume_query, sequential errors and requests and latency buckets, which the incident
// report's charts and estimates and the recovery checks reuse, and
// deploy.version_query). It is nil (keep everything) when one of them
// selects series without naming their metric, say {job="x"} or
// {__name__=~"http_.*"}: which names it reads is then unknown.
func FilterFor(sc config.Service) (*Filter, error) {
	var names []string
	all := false
	folds := newFoldSet()
	add := func(text string) error {
		if text == "" || all {
			return nil
		}
		t, err := querytmpl.New("q", text)
		if err != nil {
			return err
		}
		// The names do not depend on the values: any will do. Rendered twice
		// with other values, a query shows which matchers depend on them.
		q, err := t.Render(querytmpl.Vars{Service: sc.Name, Version: "v", Baseline: "b", Window: time.Minute, SinceDeploy: time.Minute})
		if err != nil {
			return err
		}
		q2, err := t.Render(querytmpl.Vars{Service: sc.Name, Version: "w", Baseline: "c", Window: 2 * time.Minute, SinceDeploy: 3 * time.Minute})
		if err != nil {
			return err
		}
		ns, ok, err := metricNames(q)
		if err != nil {
			return err
		}
		if !ok {
			all = true
		}
		names = append(names, ns...)
		return folds.add(q, q2)
	}
	if err := add(sc.Deploy.VersionQuery); err != nil {
		return nil, fmt.Errorf("deploy.version_query: %w", err)
	}
	for _, tc := range sc.Triggers {
		texts := []string{tc.Query, tc.VolumeQuery}
		if sq := tc.Sequential; sq != nil {
			texts = append(texts, sq.Errors, sq.Requests)
		}
		if l := tc.Latency; l != nil {
			texts = append(texts, l.Buckets)
		}
		for _, text := range texts {
			if err := add(text); err != nil {
				return nil, fmt.Errorf("trigger %s: %w", tc.Name, err)
			}
		}
	}
	if all {
		return nil, nil
	}
	f := NewFilter(names...)
	f.folds = folds.result()
	return f, nil
}

// foldSet gathers, query by query, how the series of each metric name can
// be folded.
type foldSet struct {
	folds  map[string]*fold
	cannot map[string]bool // names some query reads otherwise
}

func newFoldSet() *foldSet {
	return &foldSet{folds: map[string]*fold{}, cannot: map[string]bool{}}
}

// add records the selectors of q, the same query as q2 rendered with
// other values.
func (fs *foldSet) add(q, q2 string) error {
	sels, err := foldSelectors(q)
	if err != nil {
		return err
	}
	sels2, err := foldSelectors(q2)
	if err != nil {
		return err
	}
	if len(sels) != len(sels2) {
		// The values change the query's shape: fold nothing it reads.
		for _, sel := range append(sels, sels2...) {
			fs.cannot[sel.name] = true
		}
		return nil
	}
	for i, sel := range sels {
		if sel.name == "" {
			continue // the filter keeps everything then
		}
		if sel.grouping == nil || sels2[i].name != sel.name {
			fs.cannot[sel.name] = true
			continue
		}
		fd := fs.folds[sel.name]
		if fd == nil {
			fd = &fold{keep: map[string]struct{}{}, classes: map[string][]*labels.Matcher{}}
			fs.folds[sel.name] = fd
		}
		for _, l := range sel.grouping {
			fd.keep[l] = struct{}{}
		}
		for j, m := range sel.matchers {
			if m.Name == model.MetricNameLabel {
				continue
			}
			if j >= len(sels2[i].matchers) || sels2[i].matchers[j].String() != m.String() {
				fd.keep[m.Name] = struct{}{} // its value depends on the deploy
				continue
			}
			fd.classes[m.Name] = append(fd.classes[m.Name], intern(m))
		}
	}
	return nil
}

// interned holds the matchers of folds by their text: a thousand services
// with the same trigger each compiled its code=~"5.." anew.
var interned sync.Map

// intern returns the matcher of m's text first seen.
func intern(m *labels.Matcher) *labels.Matcher {
	got, _ := interned.LoadOrStore(m.String(), m)
	return got.(*labels.Matcher)
}

// result returns the folds of the names no query reads but as sums of
// rates or increases.
func (fs *foldSet) result() map[string]*fold {
	out := map[string]*fold{}
	for name, fd := range fs.folds {
		if fs.cannot[name] {
			continue
		}
		for l := range fd.keep {
			delete(fd.classes, l)
		}
		out[name] = fd
	}
	return out
}

// foldSelector is a selector of a query: its metric name ("" when it
// names none), its matchers, and the labels of the sum by (...) it is
// read through, rate or increase in between; grouping is nil when it is
// read any other way.
type foldSelector struct {
	name     string
	matchers []*labels.Matcher
	grouping []string
}

// foldSelectors returns q's selectors in the order they appear.
func foldSelectors(q string) ([]foldSelector, error) {
	e, err := querytmpl.Parse(q)
	if err != nil {
		return nil, err
	}
	var out []foldSelector
	parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		sel := foldSelector{name: vs.Name, matchers: vs.LabelMatchers}
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				sel.name = m.Value
			}
		}
		sel.grouping = sumOfRates(path)
		out = append(out, sel)
		return nil
	})
	return out, nil
}

// sumOfRates returns the grouping labels (not nil, possibly empty) when
// path, a selector's ancestors from the root, ends in sum by (labels) of
// rate or increase of a range of the selector, parentheses allowed; nil
// otherwise.
func sumOfRates(path []parser.Node) []string {
	up := func() parser.Node {
		for len(path) > 0 {
			n := path[len(path)-1]
			path = path[:len(path)-1]
			switch n.(type) {
			case *parser.ParenExpr, parser.Expressions:
				continue
			}
			return n
		}
		return nil
	}
	if _, ok := up().(*parser.MatrixSelector); !ok {
		return nil
	}
	call, ok := up().(*parser.Call)
	if !ok || call.Func == nil || (call.Func.Name != "rate" && call.Func.Name != "increase") {
		return nil
	}
	agg, ok := up().(*parser.AggregateExpr)
	if !ok || agg.Op != parser.SUM || agg.Without {
		return nil
	}
	return append([]string{}, agg.Grouping...)
}

// foldOf returns how the series named name are folded; nil: kept as
// scraped.
func (f *Filter) foldOf(name string) *fold {
	if f == nil {
		return nil
	}
	return f.folds[name]
}

// equal tells whether two folds fold alike.
func (fd *fold) equal(o *fold) bool {
	if fd == nil || o == nil {
		return fd == o
	}
	if len(fd.keep) != len(o.keep) || len(fd.classes) != len(o.classes) {
		return false
	}
	for l := range fd.keep {
		if _, ok := o.keep[l]; !ok {
			return false
		}
	}
	for l, ms := range fd.classes {
		if !slices.EqualFunc(ms, o.classes[l], func(a, b *labels.Matcher) bool { return a.String() == b.String() }) {
			return false
		}
	}
	return true
}

// metricNames returns the metric names q's selectors select; ok is false
// when a selector selects series without naming one metric (no name, or
// a __name__ matcher other than equality).
func metricNames(q string) (names []string, ok bool, err error) {
	e, err := querytmpl.Parse(q)
	if err != nil {
		return nil, false, err
	}
	ok = true
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, isVS := n.(*parser.VectorSelector)
		if !isVS {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name != model.MetricNameLabel {
				continue
			}
			if m.Type != labels.MatchEqual || (name != "" && name != m.Value) {
				ok = false
				return nil
			}
			name = m.Value
		}
		if name == "" {
			ok = false
			return nil
		}
		names = append(names, name)
		return nil
	})
	return names, ok, nil
}

// metricNameOf returns the metric name a series spelled series in a body
// starts with, as the parsers spell it (text formats: name{labels} or
// name; protobuf: the name, then labels after a separator byte); ok is
// false when the series does not start with a plain name (a quoted UTF-8
// name, or a protobuf series with labels sorted before __name__), and its
// labels must be parsed to find it.
func metricNameOf(series []byte) (name []byte, ok bool) {
	i := 0
	for i < len(series) && isNameByte(series[i], i == 0) {
		i++
	}
	if i == 0 {
		return nil, false
	}
	if i < len(series) {
		switch series[i] {
		case '{', ' ', '\t', model.SeparatorByte:
		default:
			return nil, false
		}
	}
	return series[:i], true
}

// isNameByte reports whether b may be in a legacy metric name (first: at
// its start).
func isNameByte(b byte, first bool) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '_' || b == ':' || !first && b >= '0' && b <= '9'
}
