package app

import (
	"context"
	"slices"

	"github.com/rollback-guardian/guardian/notify"
)

// startRunners starts the receivers of st that have work of their own
// (notify.Runner), under the running context; a.mu is held.
func (a *App) startRunners(st *state) {
	for name, n := range st.notifiers {
		r, ok := n.(notify.Runner)
		if !ok {
			continue
		}
		ctx, cancel := context.WithCancel(a.running)
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.Run(ctx, a.openEvents(name))
		}()
		a.runners = append(a.runners, func() { cancel(); <-done })
	}
}

// stopRunners stops the running receivers and waits for them; a.mu is held.
func (a *App) stopRunners() {
	for _, stop := range a.runners {
		stop()
	}
	a.runners = nil
}

// openEvents returns the events of the open incidents of the services
// that receiver is configured for now and this replica drives: each
// incident's first and latest, with links and the team as the Publisher
// sets them.
func (a *App) openEvents(receiver string) notify.OpenFunc {
	return func(ctx context.Context) ([]notify.Event, error) {
		recs, err := a.incidents.List(ctx)
		if err != nil {
			return nil, err
		}
		var out []notify.Event
		for _, rec := range recs {
			if !rec.State.Open() || len(rec.Timeline) == 0 || !slices.Contains(a.receivers(rec.Service), receiver) || !a.owns(rec.Service) {
				continue // another replica's, when they share the services out
			}
			links := notify.LinksFor(a.ExternalURL(), rec.ID)
			for _, i := range []int{0, len(rec.Timeline) - 1} {
				e := notify.EventOf(rec, i)
				e.Links = links
				out = append(out, e)
			}
		}
		return out, nil
	}
}
