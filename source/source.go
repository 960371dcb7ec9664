// Package source defines the metric-source seam: an instant PromQL query at a
// given time, answered by a Prometheus server or by the embedded scraper.
package source

import (
	"context"
	"time"

	"github.com/prometheus/common/model"
)

// Result is an instant query's answer: a vector (a scalar becomes one sample
// with no labels) and the warnings the engine returned.
type Result struct {
	Vector   model.Vector
	Warnings []string
}

// Querier runs an instant PromQL query evaluated at ts.
type Querier interface {
	Query(ctx context.Context, query string, ts time.Time) (Result, error)
}

// QueryFunc adapts a function to Querier.
type QueryFunc func(ctx context.Context, query string, ts time.Time) (Result, error)

// Query calls f.
func (f QueryFunc) Query(ctx context.Context, query string, ts time.Time) (Result, error) {
	return f(ctx, query, ts)
}
