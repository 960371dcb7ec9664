package embedded

import (
	"fmt"
	"slices"
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
	add := func(text string) error {
		if text == "" || all {
			return nil
		}
		t, err := querytmpl.New("q", text)
		if err != nil {
			return err
		}
		// The names do not depend on the values: any will do.
		q, err := t.Render(querytmpl.Vars{Service: sc.Name, Version: "v", Baseline: "b", Window: time.Minute, SinceDeploy: time.Minute})
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
		return nil
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
	return NewFilter(names...), nil
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
