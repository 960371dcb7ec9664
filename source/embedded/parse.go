package embedded

import (
	"hash/maphash"
	"slices"
	"sync"

	"github.com/prometheus/prometheus/promql/parser"
)

// exprCache is the engines' PromQL parser: it keeps the expressions of the
// query strings asked for again and again (a trigger's query for a version
// and window renders the same string at every evaluation) and answers them
// with a copy instead of parsing them anew, which costs the lexer's and
// parser's work and compiles every regular expression matcher again.
//
// The engine writes into the expression it evaluates (the series each
// selector selected, step-invariant wrappers), so every caller gets its own
// copy of the nodes; the label matchers, read-only once compiled, are
// shared. A string is kept from its second parse on: strings that change
// at every evaluation (a range reaching back to the deploy) are parsed
// each time and do not take the places of the ones that come back. The
// cache holds at most 2×exprCacheSize expressions: when the current
// generation is full it becomes the previous one, whose expressions are
// moved back to the current one as they are asked for. Safe for concurrent
// use.
type exprCache struct {
	parser.Parser // parses on a miss, and the other methods

	mu         sync.Mutex
	cur, prev  map[string]parser.Expr
	seen       map[uint64]struct{} // hashes of strings parsed once
	seed       maphash.Seed
	hits, miss uint64
}

// exprCacheSize is the expressions of one generation of an exprCache, and
// a tenth of the hashes of strings seen once that it remembers.
const exprCacheSize = 1024

func newExprCache() *exprCache {
	return &exprCache{
		Parser: parser.NewParser(parser.Options{}),
		cur:    map[string]parser.Expr{},
		seen:   map[uint64]struct{}{},
		seed:   maphash.MakeSeed(),
	}
}

// ParseExpr implements parser.Parser.
func (c *exprCache) ParseExpr(input string) (parser.Expr, error) {
	c.mu.Lock()
	e, ok := c.cur[input]
	if !ok {
		if e, ok = c.prev[input]; ok {
			c.keepLocked(input, e)
		}
	}
	if ok {
		c.hits++
		c.mu.Unlock()
		if cp, ok := cloneExpr(e); ok {
			return cp, nil
		}
		return c.Parser.ParseExpr(input)
	}
	c.miss++
	c.mu.Unlock()

	e, err := c.Parser.ParseExpr(input)
	if err != nil {
		return e, err
	}
	cp, ok := cloneExpr(e)
	if !ok {
		return e, nil // a node this cache cannot copy: never kept
	}
	h := maphash.String(c.seed, input)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, again := c.seen[h]; again {
		delete(c.seen, h)
		c.keepLocked(input, cp)
	} else {
		if len(c.seen) >= 10*exprCacheSize {
			clear(c.seen)
		}
		c.seen[h] = struct{}{}
	}
	return e, nil
}

// keepLocked puts e in the current generation, turning it over when full.
func (c *exprCache) keepLocked(input string, e parser.Expr) {
	if len(c.cur) >= exprCacheSize {
		c.prev, c.cur = c.cur, make(map[string]parser.Expr, exprCacheSize)
	}
	c.cur[input] = e
	delete(c.prev, input)
}

// stats returns the parses answered from the cache and the others.
func (c *exprCache) stats() (hits, misses uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.miss
}

// cloneExpr copies e's nodes (not its label matchers, which are not
// written to); false when e holds a node it does not know.
func cloneExpr(e parser.Expr) (parser.Expr, bool) {
	ok := true
	var cp func(parser.Expr) parser.Expr
	dur := func(d *parser.DurationExpr) *parser.DurationExpr {
		if d == nil {
			return nil
		}
		return cp(d).(*parser.DurationExpr)
	}
	ts := func(p *int64) *int64 {
		if p == nil {
			return nil
		}
		v := *p
		return &v
	}
	cp = func(e parser.Expr) parser.Expr {
		switch n := e.(type) {
		case nil:
			return nil
		case *parser.AggregateExpr:
			c := *n
			c.Expr, c.Param = cp(n.Expr), cp(n.Param)
			c.Grouping = slices.Clone(n.Grouping)
			return &c
		case *parser.BinaryExpr:
			c := *n
			c.LHS, c.RHS = cp(n.LHS), cp(n.RHS)
			if n.VectorMatching != nil {
				vm := *n.VectorMatching
				vm.MatchingLabels, vm.Include = slices.Clone(vm.MatchingLabels), slices.Clone(vm.Include)
				c.VectorMatching = &vm
			}
			return &c
		case *parser.DurationExpr:
			c := *n
			c.LHS, c.RHS = cp(n.LHS), cp(n.RHS)
			return &c
		case *parser.Call:
			c := *n
			c.Args = make(parser.Expressions, len(n.Args))
			for i, a := range n.Args {
				c.Args[i] = cp(a)
			}
			return &c
		case *parser.MatrixSelector:
			c := *n
			c.VectorSelector = cp(n.VectorSelector)
			c.RangeExpr = dur(n.RangeExpr)
			return &c
		case *parser.SubqueryExpr:
			c := *n
			c.Expr = cp(n.Expr)
			c.RangeExpr, c.OriginalOffsetExpr, c.StepExpr = dur(n.RangeExpr), dur(n.OriginalOffsetExpr), dur(n.StepExpr)
			c.Timestamp = ts(n.Timestamp)
			return &c
		case *parser.NumberLiteral:
			c := *n
			return &c
		case *parser.StringLiteral:
			c := *n
			return &c
		case *parser.ParenExpr:
			c := *n
			c.Expr = cp(n.Expr)
			return &c
		case *parser.UnaryExpr:
			c := *n
			c.Expr = cp(n.Expr)
			return &c
		case *parser.StepInvariantExpr:
			c := *n
			c.Expr = cp(n.Expr)
			return &c
		case *parser.VectorSelector:
			c := *n
			c.OriginalOffsetExpr = dur(n.OriginalOffsetExpr)
			c.Timestamp = ts(n.Timestamp)
			c.LabelMatchers = slices.Clone(n.LabelMatchers)
			c.Series, c.UnexpandedSeriesSet = nil, nil
			return &c
		default:
			ok = false
			return e
		}
	}
	out := cp(e)
	return out, ok
}
