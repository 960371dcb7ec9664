package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Load generator limits and defaults.
const (
	// MaxRPS is the highest request rate a Load accepts.
	MaxRPS = 100_000
	// MaxConcurrency is the largest number of workers a Load accepts.
	MaxConcurrency = 10_000
	// DefaultConcurrency is the number of workers when Load.Concurrency is 0.
	DefaultConcurrency = 32
)

// ErrInvalidLoad is wrapped by every error rejecting a Load's settings.
var ErrInvalidLoad = errors.New("invalid load settings")

// Load generates GET requests to one URL at a steady rate.
type Load struct {
	// Target is the URL requested, such as "http://127.0.0.1:8080/". Redirects are not followed.
	Target string
	// RPS is the request rate per second, in (0, MaxRPS].
	RPS float64
	// Concurrency is the number of requests that may be in flight at once; 0 means DefaultConcurrency.
	Concurrency int
	// Client sends the requests; nil means a private client whose idle
	// connections are closed when Run returns.
	Client *http.Client
}

// Stats counts what a Load did. Sent - OK - Errors requests were cut short
// because the context ended while they were in flight.
type Stats struct {
	// Sent is the number of requests started.
	Sent int64
	// OK is the number of 2xx responses.
	OK int64
	// Errors is the number of other responses and of failed requests.
	Errors int64
	// Dropped is the number of requests skipped because all workers were busy.
	Dropped int64
}

func (l Load) validate() (*url.URL, error) {
	u, err := url.Parse(l.Target)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: target %q: %w", ErrInvalidLoad, l.Target, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%w: target %q must be an http:// or https:// URL", ErrInvalidLoad, l.Target)
	case u.Host == "":
		return nil, fmt.Errorf("%w: target %q has no host", ErrInvalidLoad, l.Target)
	case !(l.RPS > 0 && l.RPS <= MaxRPS):
		return nil, fmt.Errorf("%w: rps must be > 0 and <= %d, got %g", ErrInvalidLoad, MaxRPS, l.RPS)
	case l.Concurrency < 0 || l.Concurrency > MaxConcurrency:
		return nil, fmt.Errorf("%w: concurrency must be within [0, %d], got %d", ErrInvalidLoad, MaxConcurrency, l.Concurrency)
	}
	return u, nil
}

// Run sends requests to Target at RPS until ctx ends, skipping (and counting
// as dropped) a request when all workers are busy rather than queueing it.
// Requests in flight are cancelled when ctx ends, and Run returns only after
// they have finished. The error is non-nil only for invalid settings.
func (l Load) Run(ctx context.Context) (Stats, error) {
	target, err := l.validate()
	if err != nil {
		return Stats{}, err
	}
	var client http.Client
	if l.Client != nil {
		client = *l.Client
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		defer tr.CloseIdleConnections()
		client = http.Client{Transport: tr, Timeout: MaxLatency + 10*time.Second}
	}
	// Stay on the given URL: a redirect is answered, not followed.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	workers := l.Concurrency
	if workers == 0 {
		workers = DefaultConcurrency
	}
	interval := time.Duration(math.Max(1, float64(time.Second)/l.RPS))

	var ok, failed atomic.Int64
	work := make(chan struct{}) // unbuffered: a send succeeds only if a worker is idle
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-work:
					switch good, err := get(ctx, &client, target.String()); {
					case ctx.Err() != nil && err != nil:
						// Cut short by the end of the run: neither OK nor an error.
					case good:
						ok.Add(1)
					default:
						failed.Add(1)
					}
				}
			}
		})
	}

	var st Stats
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-ticker.C:
			select {
			case work <- struct{}{}:
				st.Sent++
			default:
				st.Dropped++
			}
		}
	}
	wg.Wait()
	st.OK, st.Errors = ok.Load(), failed.Load()
	return st, nil
}

// get requests target and reports whether the answer was 2xx.
func get(ctx context.Context, c *http.Client, target string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	// Drain (bounded) so the connection can be reused.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)); err != nil {
		return false, err
	}
	return resp.StatusCode >= 200 && resp.StatusCode < 300, nil
}
