// Package prometheus answers Guardian's queries with the HTTP API of a
// Prometheus-compatible server (Prometheus, Thanos, Mimir, VictoriaMetrics).
package prometheus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/source"
)

// DefaultTimeout bounds a query when the source configures no timeout.
const DefaultTimeout = 10 * time.Second

// Querier runs instant queries against a Prometheus HTTP API.
type Querier struct {
	url     string
	timeout time.Duration
	client  *http.Client
	api     v1.API
	logger  *zap.Logger
}

var _ source.Querier = (*Querier)(nil)

// New builds a Querier for cfg. The HTTP client comes from prometheus/common's
// HTTP client config, so basic auth, authorization, OAuth2, TLS, proxies and
// custom headers such as X-Scope-OrgID apply to every request.
func New(cfg config.PrometheusSource, logger *zap.Logger) (*Querier, error) {
	if cfg.URL == "" {
		return nil, errors.New("prometheus source: url is required")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	httpCfg := cfg.HTTPClientConfig
	if err := httpCfg.Validate(); err != nil {
		return nil, fmt.Errorf("prometheus source %s: http client config: %w", cfg.URL, err)
	}
	hc, err := commoncfg.NewClientFromConfig(httpCfg, "guardian")
	if err != nil {
		return nil, fmt.Errorf("prometheus source %s: creating http client: %w", cfg.URL, err)
	}
	c, err := api.NewClient(api.Config{Address: cfg.URL, Client: hc})
	if err != nil {
		return nil, fmt.Errorf("prometheus source %s: %w", cfg.URL, err)
	}
	timeout := time.Duration(cfg.Timeout)
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Querier{
		url:     cfg.URL,
		timeout: timeout,
		client:  hc,
		api:     v1.NewAPI(c),
		logger:  logger.With(zap.String("source", cfg.URL)),
	}, nil
}

// Query runs query as an instant query evaluated at ts. The query is bounded
// by the source's timeout, both in Guardian (through ctx) and in the server
// (through the API's timeout parameter). A scalar result becomes one sample
// with no labels; a range vector or string result is an error wrapping
// source.ErrBadQuery. Errors wrap a source sentinel where one applies, so
// source.Reason classifies them.
func (q *Querier) Query(ctx context.Context, query string, ts time.Time) (source.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()

	val, warnings, infos, err := q.api.Query(ctx, query, ts, v1.WithTimeout(q.timeout))
	if len(warnings) > 0 || len(infos) > 0 {
		q.logger.Debug("query annotations", zap.String("query", query),
			zap.Strings("warnings", warnings), zap.Strings("infos", infos))
	}
	if err != nil {
		return source.Result{Warnings: warnings}, fmt.Errorf("prometheus %s: query %q: %w", q.url, query, classify(ctx, err))
	}
	vec, err := toVector(val)
	if err != nil {
		return source.Result{Warnings: warnings}, fmt.Errorf("prometheus %s: query %q: %w", q.url, query, err)
	}
	return source.Result{Vector: vec, Warnings: warnings}, nil
}

// Close releases idle HTTP connections. The Querier must not be used after.
func (q *Querier) Close() error {
	q.client.CloseIdleConnections()
	return nil
}

// toVector converts an instant query's value to a vector.
func toVector(v model.Value) (model.Vector, error) {
	switch v := v.(type) {
	case model.Vector:
		return v, nil
	case *model.Scalar:
		return model.Vector{{Metric: model.Metric{}, Value: v.Value, Timestamp: v.Timestamp}}, nil
	case nil:
		return nil, fmt.Errorf("%w: empty response", source.ErrBadQuery)
	default:
		return nil, fmt.Errorf("%w: query must return an instant vector or scalar, got %s", source.ErrBadQuery, v.Type())
	}
}

// classify adds the source sentinel that err stands for, keeping err in the
// chain. Prometheus answers a server-side timeout with HTTP 503 and a JSON
// body; client_golang reports that as a bare server_error, so the body's
// errorType is consulted.
func classify(ctx context.Context, err error) error {
	var sentinel error
	var apiErr *v1.Error
	if errors.As(err, &apiErr) && apiErr.Type == v1.ErrBadResponse && strings.HasPrefix(apiErr.Msg, "unexpected value type") {
		// client_golang cannot decode a string result; the query is at fault.
		return fmt.Errorf("%w: query must return an instant vector or scalar: %w", source.ErrBadQuery, err)
	}
	if apiErr != nil && apiErr.Detail != "" {
		var body struct {
			ErrorType v1.ErrorType `json:"errorType"`
		}
		if json.Unmarshal([]byte(apiErr.Detail), &body) == nil {
			switch body.ErrorType {
			case v1.ErrTimeout:
				sentinel = source.ErrTimeout
			case v1.ErrCanceled:
				sentinel = source.ErrCanceled
			case v1.ErrBadData, v1.ErrExec:
				sentinel = source.ErrBadQuery
			}
		}
	}
	if sentinel == nil {
		// Our own deadline, hit while the request was in flight.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && source.Reason(err) != source.ReasonBadQuery {
			sentinel = source.ErrTimeout
		} else {
			switch source.Reason(err) {
			case source.ReasonTimeout:
				sentinel = source.ErrTimeout
			case source.ReasonCanceled:
				sentinel = source.ErrCanceled
			case source.ReasonBadQuery:
				sentinel = source.ErrBadQuery
			case source.ReasonUnavailable:
				sentinel = source.ErrUnavailable
			}
		}
	}
	if sentinel == nil {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// QueryRange runs query as a range query from start to end at every step,
// as Prometheus's /api/v1/query_range does: the value at each step is what
// an instant query at that time returns. It is bounded by the source's
// timeout like Query; errors wrap a source sentinel where one applies.
func (q *Querier) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) (model.Matrix, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()

	val, warnings, infos, err := q.api.QueryRange(ctx, query, v1.Range{Start: start, End: end, Step: step}, v1.WithTimeout(q.timeout))
	if len(warnings) > 0 || len(infos) > 0 {
		q.logger.Debug("query annotations", zap.String("query", query),
			zap.Strings("warnings", warnings), zap.Strings("infos", infos))
	}
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: range query %q: %w", q.url, query, classify(ctx, err))
	}
	m, ok := val.(model.Matrix)
	if !ok {
		if val == nil {
			return nil, fmt.Errorf("prometheus %s: range query %q: %w: empty response", q.url, query, source.ErrBadQuery)
		}
		return nil, fmt.Errorf("prometheus %s: range query %q: %w: got %s, not a matrix", q.url, query, source.ErrBadQuery, val.Type())
	}
	return m, nil
}
