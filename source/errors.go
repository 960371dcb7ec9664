package source

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"syscall"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// Reasons are the values of the reason label of guardian_query_errors_total,
// as returned by Reason.
const (
	// ReasonTimeout is a query that ran out of time, in Guardian or in the server.
	ReasonTimeout = "timeout"
	// ReasonUnavailable is a source that could not be reached or answered with
	// a server error: connection refused, DNS failure, HTTP 5xx.
	ReasonUnavailable = "unavailable"
	// ReasonBadQuery is a query the source rejected: a PromQL parse or
	// evaluation error, an HTTP 400/422 bad_data or execution error, or a
	// result that is not an instant vector or scalar.
	ReasonBadQuery = "bad_query"
	// ReasonBadResponse is a source that answered, but not as the
	// Prometheus API does: an HTML page from a proxy or a login wall, a
	// truncated body, an unexpected HTTP status. Guardian is as blind as
	// when the source is down.
	ReasonBadResponse = "bad_response"
	// ReasonCanceled is a query whose context was canceled.
	ReasonCanceled = "canceled"
	// ReasonOther is any other failure.
	ReasonOther = "other"
)

// Sentinel errors that sources wrap so that callers, and Reason, can branch
// with errors.Is.
var (
	// ErrTimeout marks a query that ran out of time.
	ErrTimeout = errors.New("query timed out")
	// ErrUnavailable marks a source that could not be reached or failed.
	ErrUnavailable = errors.New("source unavailable")
	// ErrBadQuery marks a query the source rejected.
	ErrBadQuery = errors.New("bad query")
	// ErrCanceled marks a query whose context was canceled.
	ErrCanceled = errors.New("query canceled")
)

// Reason classifies a query error into one of the Reason* constants, for the
// reason label of guardian_query_errors_total. It returns "" for a nil error.
//
// The sentinels above win when present; otherwise Reason recognises context
// errors, network errors (net.Error timeouts, *net.OpError, *net.DNSError,
// *url.Error), client_golang's *v1.Error types and PromQL's parse and
// evaluation errors.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	// Explicit classification by a source comes first.
	switch {
	case errors.Is(err, ErrCanceled):
		return ReasonCanceled
	case errors.Is(err, ErrTimeout):
		return ReasonTimeout
	case errors.Is(err, ErrBadQuery):
		return ReasonBadQuery
	case errors.Is(err, ErrUnavailable):
		return ReasonUnavailable
	}

	var apiErr *v1.Error
	if errors.As(err, &apiErr) {
		return apiReason(apiErr.Type)
	}

	var (
		qCanceled promql.ErrQueryCanceled
		qTimeout  promql.ErrQueryTimeout
		netErr    net.Error
	)
	switch {
	case errors.Is(err, context.Canceled), errors.As(err, &qCanceled):
		return ReasonCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &qTimeout), errors.As(err, &netErr) && netErr.Timeout():
		return ReasonTimeout
	case isBadQuery(err):
		return ReasonBadQuery
	case isUnavailable(err):
		return ReasonUnavailable
	}
	return ReasonOther
}

// apiReason maps the errorType of a Prometheus HTTP API error.
func apiReason(t v1.ErrorType) string {
	switch t {
	case v1.ErrTimeout:
		return ReasonTimeout
	case v1.ErrCanceled:
		return ReasonCanceled
	case v1.ErrBadData, v1.ErrExec:
		return ReasonBadQuery
	case v1.ErrBadResponse:
		return ReasonBadResponse
	case v1.ErrServer, "unavailable", "internal":
		// server_error is client_golang's name for an HTTP 5xx without an API
		// body; "unavailable" and "internal" are Prometheus's own error types.
		return ReasonUnavailable
	}
	return ReasonOther
}

func isBadQuery(err error) bool {
	var (
		parseErr  *parser.ParseErr
		parseErrs parser.ParseErrors
		samples   promql.ErrTooManySamples
		series    promql.ErrTooManySeries
		read      promql.ErrTooManySamplesRead
	)
	return errors.As(err, &parseErr) || errors.As(err, &parseErrs) ||
		errors.As(err, &samples) || errors.As(err, &series) || errors.As(err, &read)
}

func isUnavailable(err error) bool {
	var (
		opErr  *net.OpError
		dnsErr *net.DNSError
		urlErr *url.Error
	)
	return errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.As(err, &urlErr) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
