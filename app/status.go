package app

import "github.com/rollback-guardian/guardian/watch"

// Status returns every service's status (its watch stage's), in
// configuration order.
func (a *App) Status() []watch.ServiceStatus {
	st := a.state.Load()
	out := make([]watch.ServiceStatus, 0, len(st.order))
	for _, name := range st.order {
		out = append(out, st.services[name].watch.Status())
	}
	return out
}
