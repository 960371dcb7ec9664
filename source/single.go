package source

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// ErrSeriesCount is wrapped by Single's error when a query returned more
// than one series: a query read as one value must aggregate to one series.
var ErrSeriesCount = errors.New("want 1")

// Single runs query at ts through q and returns the value of its one
// sample (see Result.Single). A failed query returns q's error unchanged,
// so that the caller names the query. The result's warnings are dropped: a
// caller that reports them runs the query itself and calls Result.Single.
func Single(ctx context.Context, q Querier, query string, ts time.Time) (value float64, ok bool, err error) {
	res, err := q.Query(ctx, query, ts)
	if err != nil {
		return 0, false, err
	}
	return res.Single()
}

// Single returns the value of the result's one sample (a scalar result is
// one sample too).
//
// ok is false, with no error, when the result is empty: the query selected
// no series, which is "no data", not a failure. A NaN sample is returned as
// it is with ok true, because what NaN means is the caller's call (0/0 with
// no traffic: a trigger judges it as its own outcome, a recovery check as no
// data); check it with math.IsNaN. ±Inf is a value like any other.
//
// More than one series is an error wrapping ErrSeriesCount that reads
// "query returned N series (up to three of them by their labels), want 1:
// aggregate it, ...".
func (r Result) Single() (value float64, ok bool, err error) {
	switch len(r.Vector) {
	case 0:
		return 0, false, nil
	case 1:
		return float64(r.Vector[0].Value), true, nil
	}
	return 0, false, fmt.Errorf("query returned %d series (%s), %w: aggregate it, e.g. with sum() or max()",
		len(r.Vector), seriesList(r.Vector, 3), ErrSeriesCount)
}

// seriesList names up to n series of v by their labels.
func seriesList(v model.Vector, n int) string {
	var b strings.Builder
	for i, s := range v {
		if i == n {
			fmt.Fprintf(&b, ", … %d more", len(v)-n)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s.Metric.String())
	}
	return b.String()
}
