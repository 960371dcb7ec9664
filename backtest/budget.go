package backtest

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/model"
	"golang.org/x/time/rate"

	"github.com/rollback-guardian/guardian/source"
)

// RangeQuerier answers instant queries at any past time and range queries;
// source/prometheus's Querier is one.
type RangeQuerier interface {
	source.Querier
	QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) (model.Matrix, error)
}

// budget holds every query of a backtest to a rate and a number in flight,
// and counts them.
type budget struct {
	q       RangeQuerier
	limit   *rate.Limiter
	slots   chan struct{}
	queries atomic.Int64
}

// newBudget allows perSecond queries a second (<= 0: no limit) and
// concurrency at a time (at least 1).
func newBudget(q RangeQuerier, perSecond float64, concurrency int) *budget {
	if concurrency < 1 {
		concurrency = 1
	}
	lim := rate.NewLimiter(rate.Inf, 1)
	if perSecond > 0 {
		lim = rate.NewLimiter(rate.Limit(perSecond), 1)
	}
	return &budget{q: q, limit: lim, slots: make(chan struct{}, concurrency)}
}

func (b *budget) acquire(ctx context.Context) error {
	if err := b.limit.Wait(ctx); err != nil {
		return err
	}
	select {
	case b.slots <- struct{}{}:
		b.queries.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *budget) release() { <-b.slots }

// Query runs an instant query within the budget.
func (b *budget) Query(ctx context.Context, query string, ts time.Time) (source.Result, error) {
	if err := b.acquire(ctx); err != nil {
		return source.Result{}, err
	}
	defer b.release()
	return b.q.Query(ctx, query, ts)
}

// QueryRange runs a range query within the budget.
func (b *budget) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) (model.Matrix, error) {
	if err := b.acquire(ctx); err != nil {
		return nil, err
	}
	defer b.release()
	return b.q.QueryRange(ctx, query, start, end, step)
}

// memo remembers a deploy's instant answers, so the variants of the deploy
// ask each question once. One goroutine uses it.
type memo struct {
	q     source.Querier
	cache map[string]cached
}

type cached struct {
	res source.Result
	err error
}

func newMemo(q source.Querier) *memo { return &memo{q: q, cache: map[string]cached{}} }

func (m *memo) Query(ctx context.Context, query string, ts time.Time) (source.Result, error) {
	key := strconv.FormatInt(ts.UnixMilli(), 10) + "\x00" + query
	if c, ok := m.cache[key]; ok {
		return c.res, c.err
	}
	res, err := m.q.Query(ctx, query, ts)
	if ctx.Err() == nil {
		m.cache[key] = cached{res, err}
	}
	return res, err
}
