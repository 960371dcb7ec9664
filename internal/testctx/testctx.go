// Package testctx has contexts for tests that must end a wait at a chosen
// step rather than at a wall-clock time, which a loaded machine may reach
// before or after that step.
package testctx

import (
	"context"
	"sync"
)

// Expiring is a context whose deadline passes when Expire is called: its
// Err is then context.DeadlineExceeded, as a context.WithDeadline's is.
type Expiring struct {
	context.Context
	done chan struct{}
	once sync.Once
}

// NewExpiring returns a context that has not expired yet.
func NewExpiring() *Expiring {
	return &Expiring{Context: context.Background(), done: make(chan struct{})}
}

// Expire makes the deadline pass; calling it again does nothing.
func (e *Expiring) Expire() { e.once.Do(func() { close(e.done) }) }

// Done is closed by Expire.
func (e *Expiring) Done() <-chan struct{} { return e.done }

// Err is context.DeadlineExceeded once Expire was called, nil before.
func (e *Expiring) Err() error {
	select {
	case <-e.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
