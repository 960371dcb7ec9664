package executor

import (
	"context"
	"errors"
)

// ErrUnknown means a rollback step ended (or was never found running) but
// its outcome cannot be learnt: the caller should check its effect instead.
// Attach returns it, for instance, for a command whose process outlived the
// Guardian that started it.
var ErrUnknown = errors.New("rollback outcome unknown")

// Attacher is implemented by executors whose rollback can outlive the
// Guardian that started it, such as a command in its own process group.
// After a restart, Attach finds the rollback started under t.IdempotencyKey,
// waits for it to end (honouring ctx), and reports its outcome as Rollback
// would, or an error wrapping ErrUnknown when the outcome cannot be learnt.
// It never starts the rollback.
type Attacher interface {
	Attach(ctx context.Context, t Target) (Result, error)
}
