package query

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// CheckBuckets checks that q, a rendered query of a latency histogram's
// buckets, returns one series per bucket: when it selects classic bucket
// series (a metric name ending in _bucket), the le label must survive to
// its result, so its outermost aggregation must group by le (sum by (le)
// (...)) or keep it (sum without (instance) (...)), and the result must not
// be a quantile (histogram_quantile) or a count. A query of a native
// histogram (no _bucket series) returns the histogram itself and is not
// checked further.
func CheckBuckets(q string) error {
	e, err := Parse(q)
	if err != nil {
		return err
	}
	classic := false
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && strings.HasSuffix(vs.Name, "_bucket") {
			classic = true
		}
		return nil
	})
	if !classic {
		return nil
	}
	if why := dropsLabel(e, "le"); why != "" {
		return fmt.Errorf("the buckets query must return one series per le bucket, but %s: group the buckets by le, e.g. sum by (le) (increase(x_bucket{...}[{{.SinceDeploy}}]))", why)
	}
	return nil
}

// dropsLabel says why the result of e cannot carry label, or "" when it
// can.
func dropsLabel(e parser.Expr, label string) string {
	switch e := e.(type) {
	case *parser.ParenExpr:
		return dropsLabel(e.Expr, label)
	case *parser.StepInvariantExpr:
		return dropsLabel(e.Expr, label)
	case *parser.AggregateExpr:
		switch {
		case e.Op == parser.TOPK || e.Op == parser.BOTTOMK || e.Op == parser.LIMITK || e.Op == parser.LIMIT_RATIO:
			return dropsLabel(e.Expr, label)
		case e.Without && slices.Contains(e.Grouping, label):
			return fmt.Sprintf("its %s aggregation drops %s", e.Op, label)
		case !e.Without && !slices.Contains(e.Grouping, label):
			return fmt.Sprintf("its %s aggregation does not group by %s", e.Op, label)
		}
		return dropsLabel(e.Expr, label)
	case *parser.Call:
		switch e.Func.Name {
		case "histogram_quantile", "histogram_count", "histogram_sum", "histogram_avg",
			"histogram_fraction", "histogram_stddev", "histogram_stdvar", "scalar", "vector", "absent", "absent_over_time":
			return "it returns " + e.Func.Name + "()"
		}
		for _, a := range e.Args {
			if a.Type() == parser.ValueTypeVector || a.Type() == parser.ValueTypeMatrix {
				return dropsLabel(a, label)
			}
		}
	case *parser.MatrixSelector:
		return dropsLabel(e.VectorSelector, label)
	case *parser.SubqueryExpr:
		return dropsLabel(e.Expr, label)
	case *parser.BinaryExpr:
		if e.VectorMatching != nil && e.VectorMatching.On && e.VectorMatching.Card == parser.CardOneToOne &&
			e.LHS.Type() == parser.ValueTypeVector && e.RHS.Type() == parser.ValueTypeVector &&
			!slices.Contains(e.VectorMatching.MatchingLabels, label) {
			return fmt.Sprintf("its %s matches on (%s) without %s", e.Op, strings.Join(e.VectorMatching.MatchingLabels, ", "), label)
		}
		if e.LHS.Type() == parser.ValueTypeVector {
			return dropsLabel(e.LHS, label)
		}
		return dropsLabel(e.RHS, label)
	}
	return ""
}
