package executor_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/internal/testctx"
)

type reading executor.Progress

func (r reading) Progress() executor.Progress { return executor.Progress(r) }

// apiError is a typed read error, as client-go's StatusError is.
type apiError struct{ code int }

func (e *apiError) Error() string { return fmt.Sprintf("the server answered %d", e.code) }

var (
	errTransient = errors.New("connection refused")
	errForbidden = errors.New("forbidden")
	errOwn       = errors.New("own timeout")
)

func TestWait(t *testing.T) {
	w := executor.Waiter{
		Name: "deployment shop/checkout", Interval: time.Millisecond, Timeout: 50 * time.Millisecond, OwnTimeout: errOwn,
		Waiting: "waiting", Retrying: "retrying",
		Final: func(_ context.Context, err error) error {
			if errors.Is(err, errForbidden) {
				return errors.Join(executor.ErrFailed, err)
			}
			return nil
		},
	}
	for _, tc := range []struct {
		name string
		// steps are the readings in turn; the last one repeats.
		steps   []func() (reading, error)
		wantErr error
		wantMsg string
		// logs: how many "waiting" and "retrying" lines.
		waiting, retrying int
	}{
		{
			name: "done after progress and a transient error",
			steps: []func() (reading, error){
				func() (reading, error) { return reading{Msg: "1 of 2"}, nil },
				func() (reading, error) { return reading{Msg: "1 of 2"}, nil },
				func() (reading, error) { return reading{}, errTransient },
				func() (reading, error) { return reading{}, errTransient },
				func() (reading, error) { return reading{Done: true, Msg: "2 of 2"}, nil },
			},
			wantMsg: "2 of 2", waiting: 1, retrying: 1,
		},
		{
			name:    "a failure ends it as it is",
			steps:   []func() (reading, error){func() (reading, error) { return reading{}, executor.ErrFailed }},
			wantErr: executor.ErrFailed,
		},
		{
			name:    "a final error ends it",
			steps:   []func() (reading, error){func() (reading, error) { return reading{}, errForbidden }},
			wantErr: errForbidden,
		},
		{
			name:    "the executor's own timeout",
			steps:   []func() (reading, error){func() (reading, error) { return reading{Msg: "0 of 2"}, nil }},
			wantErr: executor.ErrTimeout, wantMsg: "deployment shop/checkout: rollback timed out after 50ms: 0 of 2", waiting: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			ctx, cancel := context.WithTimeoutCause(context.Background(), 50*time.Millisecond, errOwn)
			defer cancel()
			i := 0
			r, err := executor.Wait(ctx, zap.New(core), w, func(context.Context) (reading, error) {
				step := tc.steps[min(i, len(tc.steps)-1)]
				i++
				return step()
			})
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Wait: %v", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("Wait error = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && r.Msg != tc.wantMsg {
				t.Errorf("last reading %q, want %q", r.Msg, tc.wantMsg)
			}
			if tc.wantErr != nil && tc.wantMsg != "" && !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q, want it to say %q", err, tc.wantMsg)
			}
			if n := logs.FilterMessage("waiting").Len(); n != tc.waiting {
				t.Errorf("%d waiting lines, want %d", n, tc.waiting)
			}
			if n := logs.FilterMessage("retrying").Len(); n != tc.retrying {
				t.Errorf("%d retrying lines, want %d", n, tc.retrying)
			}
		})
	}

	// The last read error stays in the chain, whoever's time ran out. The
	// time runs out at the third read, whatever the machine's speed.
	for _, tc := range []struct {
		name    string
		ctx     func() (context.Context, func())
		want    []error
		wantMsg string
	}{
		{
			name: "own timeout",
			ctx: func() (context.Context, func()) {
				ctx, cancel := context.WithCancelCause(context.Background())
				return ctx, func() { cancel(errOwn) }
			},
			want:    []error{executor.ErrTimeout},
			wantMsg: "deployment shop/checkout: rollback timed out after 50ms: 1 of 2 (last error: the server answered 503)",
		},
		{
			name: "caller's deadline",
			ctx: func() (context.Context, func()) {
				ctx := testctx.NewExpiring()
				return ctx, ctx.Expire
			},
			want:    []error{executor.ErrTimeout, context.DeadlineExceeded},
			wantMsg: "deployment shop/checkout: rollback timed out: context deadline exceeded: 1 of 2 (last error: the server answered 503)",
		},
	} {
		t.Run("last error with "+tc.name, func(t *testing.T) {
			ctx, end := tc.ctx()
			defer end()
			i := 0
			_, err := executor.Wait(ctx, zap.NewNop(), w, func(context.Context) (reading, error) {
				i++
				switch i {
				case 1:
					return reading{Msg: "1 of 2"}, nil
				case 3:
					end()
				}
				return reading{}, &apiError{code: 503}
			})
			if i != 3 {
				t.Errorf("%d reads, want the wait to end at the third", i)
			}
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("error %v does not wrap %v", err, want)
				}
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.code != 503 {
				t.Errorf("errors.As(%v, *apiError) = %v, want the last read error", err, ae)
			}
			if errors.Is(err, executor.ErrFailed) {
				t.Errorf("error %v wraps ErrFailed", err)
			}
			if err == nil || err.Error() != tc.wantMsg {
				t.Errorf("error %q, want %q", err, tc.wantMsg)
			}
		})
	}

	// The caller's context: not the executor's timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := executor.Wait(ctx, zap.NewNop(), w, func(context.Context) (reading, error) { return reading{}, nil })
	if !errors.Is(err, context.Canceled) || errors.Is(err, executor.ErrTimeout) || !strings.Contains(err.Error(), "nothing read yet") {
		t.Errorf("canceled wait: %v", err)
	}
}
