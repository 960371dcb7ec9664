package embedded

import (
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// nodes returns the addresses of e's nodes.
func nodes(e parser.Expr) map[string]bool {
	out := map[string]bool{}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if n != nil {
			out[fmt.Sprintf("%p", n)] = true
		}
		return nil
	})
	return out
}

// A copy prints as the original and shares none of its nodes.
func TestCloneExpr(t *testing.T) {
	for _, q := range []string{
		`sum by (version) (rate(http_requests_total[1m]))`,
		`(sum(rate(http_requests_total{version="v2",code=~"5.."}[5m])) or vector(0)) / sum(rate(http_requests_total{version="v2"}[5m]))`,
		`histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{version="v2"}[2m])))`,
		`-sum without (code) (increase(x[10m] offset 1m)) > bool on (a) group_left (b) y`,
		`max_over_time(rate(x[1m])[10m:30s] @ 1700000000)`,
		`topk(3, x @ end()) + 1`,
		`label_replace(x, "a", "$1", "b", "(.*)")`,
		`rate(x[1m + 30s])`,
		`count_values("value", x)`,
	} {
		e, err := parser.NewParser(parser.Options{}).ParseExpr(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		c, ok := cloneExpr(e)
		if !ok {
			t.Errorf("%s: not copied", q)
			continue
		}
		if c.String() != e.String() {
			t.Errorf("copy of %s prints %s, want %s", q, c, e)
		}
		orig := nodes(e)
		for n := range nodes(c) {
			if orig[n] {
				t.Errorf("copy of %s shares node %s", q, n)
			}
		}
	}
}

// A string is kept from its second parse on, answered from the cache
// after that, each time with nodes of its own; a bad string is an error
// each time.
func TestExprCache(t *testing.T) {
	c := newExprCache()
	q := `sum(rate(http_requests_total{code=~"5.."}[1m]))`
	var got []parser.Expr
	for range 4 {
		e, err := c.ParseExpr(q)
		if err != nil {
			t.Fatal(err)
		}
		if e.String() != `sum(rate(http_requests_total{code=~"5.."}[1m]))` {
			t.Fatalf("parsed %s", e)
		}
		got = append(got, e)
	}
	if hits, misses := c.stats(); hits != 2 || misses != 2 {
		t.Errorf("%d hits, %d misses; want 2 and 2 (kept at the second parse)", hits, misses)
	}
	seen := map[string]bool{}
	for _, e := range got {
		for n := range nodes(e) {
			if seen[n] {
				t.Fatalf("node %s returned twice", n)
			}
			seen[n] = true
		}
	}
	for range 2 {
		if _, err := c.ParseExpr(`sum(`); err == nil {
			t.Fatal("bad query parsed")
		}
	}
	if len(c.cur) != 1 {
		t.Errorf("%d expressions kept, want 1", len(c.cur))
	}
}

// A string parsed once is not kept, and the cache holds at most two
// generations, the expressions asked for again moving to the current one.
func TestExprCacheBounds(t *testing.T) {
	c := newExprCache()
	for i := range 3 * exprCacheSize {
		if _, err := c.ParseExpr(fmt.Sprintf("x[%ds]", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.cur)+len(c.prev) != 0 {
		t.Fatalf("%d strings parsed once kept", len(c.cur)+len(c.prev))
	}
	hot := `rate(x[1m])`
	for range 2 {
		_, _ = c.ParseExpr(hot)
	}
	for i := range 3 * exprCacheSize {
		q := fmt.Sprintf("y[%ds]", i+1)
		_, _ = c.ParseExpr(q)
		_, _ = c.ParseExpr(q)
		if i%100 == 0 {
			_, _ = c.ParseExpr(hot)
		}
	}
	if n := len(c.cur) + len(c.prev); n > 2*exprCacheSize {
		t.Errorf("%d expressions kept, more than 2×%d", n, exprCacheSize)
	}
	if _, ok := c.cur[hot]; !ok {
		if _, ok := c.prev[hot]; !ok {
			t.Errorf("%s, asked for all along, was dropped", hot)
		}
	}
}

// Concurrent callers of one string each get an expression of their own
// (run with -race).
func TestExprCacheConcurrent(t *testing.T) {
	c := newExprCache()
	q := `histogram_quantile(0.99, sum by (le) (rate(b{v="2"}[2m])))`
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				e, err := c.ParseExpr(q)
				if err != nil {
					t.Error(err)
					return
				}
				// What the engine does: write into the selectors.
				parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
					if vs, ok := n.(*parser.VectorSelector); ok {
						vs.Series = nil
						vs.SkipHistogramBuckets = true
					}
					return nil
				})
			}
		})
	}
	wg.Wait()
}
