package query

import (
	"strings"
	"testing"
)

func TestCheckBuckets(t *testing.T) {
	for _, tc := range []struct {
		name, q, err string
	}{
		{"sum by le", `sum by (le) (increase(http_request_duration_seconds_bucket{version="v2"}[5m]))`, ""},
		{"sum without instance", `sum without (instance) (increase(x_bucket[5m]))`, ""},
		{"raw rate", `rate(x_bucket[5m])`, ""},
		{"native", `sum(increase(http_request_duration_seconds{version="v2"}[5m]))`, ""},
		{"sum", `sum(increase(x_bucket[5m]))`, "does not group by le"},
		{"sum by code", `sum by (code) (increase(x_bucket[5m]))`, "does not group by le"},
		{"without le", `sum without (le) (increase(x_bucket[5m]))`, "drops le"},
		{"quantile", `histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))`, "histogram_quantile"},
		{"on without le", `sum by (le) (x_bucket) / on (job) sum by (job) (y)`, "matches on (job) without le"},
		{"parenthesised", `(sum by (le, job) (increase(x_bucket[5m])))`, ""},
		{"bad promql", `sum by (le) (`, "invalid PromQL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckBuckets(tc.q)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("CheckBuckets(%s) = %v, want nil", tc.q, err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("CheckBuckets(%s) = %v, want an error containing %q", tc.q, err, tc.err)
			}
		})
	}
}
