package executor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Progress is what a wait saw at one moment.
type Progress struct {
	// Done reports that what is awaited happened.
	Done bool
	// Msg says what is awaited, or what completed.
	Msg string
}

// Reading is one read of a rollback's state, as an executor keeps it.
type Reading interface {
	Progress() Progress
}

// Waiter is the wait loop shared by the executors that roll back through
// an API and then watch the result (kubernetes, argo-rollouts, helm).
type Waiter struct {
	// Name names the object in errors, such as "deployment shop/checkout".
	Name string
	// Interval is the time between reads.
	Interval time.Duration
	// Timeout is the executor's own timeout; OwnTimeout is the cause it
	// gives that context (context.WithTimeoutCause), so that the end of
	// the executor's own time is told from the caller's.
	Timeout    time.Duration
	OwnTimeout error
	// Final returns the wait's error for a read error not worth reading
	// again (Forbidden, NotFound), or nil to read again.
	Final func(ctx context.Context, err error) error
	// Waiting is logged with each new progress message, Retrying with each
	// new read error.
	Waiting, Retrying string
}

// Wait reads check every Interval until it reports done, fails or ctx
// ends, and returns the last reading. An error wrapping ErrFailed ends the
// wait as it is; a Final error ends it as Final says; other errors (the
// API server restarting, say) are logged once and read again. When ctx
// ends, the error says what was awaited (see ContextError).
func Wait[R Reading](ctx context.Context, log *zap.Logger, w Waiter, check func(context.Context) (R, error)) (R, error) {
	var (
		last    R
		lastErr error
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			return last, w.ContextError(ctx, last.Progress().Msg, lastErr)
		}
		r, err := check(ctx)
		switch {
		case err == nil:
			p := r.Progress()
			if p.Done {
				return r, nil
			}
			if p.Msg != last.Progress().Msg {
				log.Info(w.Waiting, zap.String("progress", p.Msg))
			}
			last, lastErr = r, nil
		case ctx.Err() != nil:
			return last, w.ContextError(ctx, last.Progress().Msg, lastErr)
		case errors.Is(err, ErrFailed):
			return r, err
		default:
			if w.Final != nil {
				if ferr := w.Final(ctx, err); ferr != nil {
					return last, ferr
				}
			}
			if lastErr == nil || lastErr.Error() != err.Error() {
				log.Warn(w.Retrying, zap.Error(err))
			}
			lastErr = err
		}
		timer.Reset(w.Interval)
	}
}

// ContextError is the error of a wait or step whose context ended, saying
// what state it was in and the last read error, which it wraps (so that
// errors.Is and errors.As see it): ErrTimeout when the executor's own
// timeout ended it, otherwise the caller's context error (with ErrTimeout
// for a deadline).
func (w Waiter) ContextError(ctx context.Context, state string, lastErr error) error {
	var why error
	switch {
	case w.OwnTimeout != nil && errors.Is(context.Cause(ctx), w.OwnTimeout):
		why = fmt.Errorf("%s: %w after %s", w.Name, ErrTimeout, w.Timeout)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		why = fmt.Errorf("%s: %w: %w", w.Name, ErrTimeout, ctx.Err())
	default:
		why = fmt.Errorf("%s: %w", w.Name, ctx.Err())
	}
	switch {
	case lastErr != nil:
		return fmt.Errorf("%w: %s (last error: %w)", why, state, lastErr)
	case state == "":
		return fmt.Errorf("%w: nothing read yet", why)
	}
	return fmt.Errorf("%w: %s", why, state)
}
