package source

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// refusedDialError dials a loopback port that was just closed, to get the
// error a real connection refusal produces.
func refusedDialError(t *testing.T) error {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err == nil {
		_ = c.Close()
		t.Fatalf("dialing closed port %s succeeded", addr)
	}
	return err
}

func TestReason(t *testing.T) {
	_, parseErr := parser.NewParser(parser.Options{}).ParseExpr("sum(")
	if parseErr == nil {
		t.Fatal("expected a parse error")
	}
	refused := refusedDialError(t)

	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"sentinel timeout", fmt.Errorf("query q: %w", ErrTimeout), ReasonTimeout},
		{"sentinel unavailable", fmt.Errorf("query q: %w", ErrUnavailable), ReasonUnavailable},
		{"sentinel bad query", fmt.Errorf("query q: %w", ErrBadQuery), ReasonBadQuery},
		{"sentinel canceled", fmt.Errorf("query q: %w", ErrCanceled), ReasonCanceled},
		{"sentinel wins over cause", fmt.Errorf("%w: %w", ErrBadQuery, refused), ReasonBadQuery},
		{"context deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), ReasonTimeout},
		{"context canceled", fmt.Errorf("x: %w", context.Canceled), ReasonCanceled},
		{"os deadline", os.ErrDeadlineExceeded, ReasonTimeout},
		{"url error with deadline", &url.Error{Op: "Get", URL: "http://127.0.0.1:1", Err: context.DeadlineExceeded}, ReasonTimeout},
		{"connection refused", &url.Error{Op: "Get", URL: "http://127.0.0.1:1", Err: refused}, ReasonUnavailable},
		{"bare refused errno", fmt.Errorf("x: %w", syscall.ECONNREFUSED), ReasonUnavailable},
		{"dns not found", &net.DNSError{Err: "no such host", Name: "nope.invalid", IsNotFound: true}, ReasonUnavailable},
		{"dns timeout", &net.DNSError{Err: "i/o timeout", Name: "slow.invalid", IsTimeout: true}, ReasonTimeout},
		{"api bad_data", &v1.Error{Type: v1.ErrBadData, Msg: "parse error"}, ReasonBadQuery},
		{"api execution", &v1.Error{Type: v1.ErrExec, Msg: "many-to-many"}, ReasonBadQuery},
		{"api timeout", &v1.Error{Type: v1.ErrTimeout}, ReasonTimeout},
		{"api canceled", &v1.Error{Type: v1.ErrCanceled}, ReasonCanceled},
		{"api 5xx", fmt.Errorf("wrapped: %w", &v1.Error{Type: v1.ErrServer, Msg: "server error: 503"}), ReasonUnavailable},
		{"api unavailable", &v1.Error{Type: "unavailable"}, ReasonUnavailable},
		{"api 4xx without body", &v1.Error{Type: v1.ErrClient, Msg: "client error: 401"}, ReasonOther},
		{"api bad response", &v1.Error{Type: v1.ErrBadResponse, Msg: "invalid character '<' looking for beginning of value"}, ReasonBadResponse},
		{"promql parse", fmt.Errorf("q: %w", parseErr), ReasonBadQuery},
		{"promql timeout", promql.ErrQueryTimeout("query execution"), ReasonTimeout},
		{"promql canceled", promql.ErrQueryCanceled("query execution"), ReasonCanceled},
		{"promql too many samples", promql.ErrTooManySamples("query execution"), ReasonBadQuery},
		{"plain", errors.New("boom"), ReasonOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Reason(tc.err); got != tc.want {
				t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
