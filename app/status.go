package app

import "github.com/rollback-guardian/guardian/watch"

// The status of each service is its watch stage's.
type (
	// ServiceStatus is what Guardian knows of one service right now.
	ServiceStatus = watch.ServiceStatus
	// WatchStatus is an open watch window after a deploy.
	WatchStatus = watch.WatchStatus
	// TriggerStatus is one trigger's state and its last evidence.
	TriggerStatus = watch.TriggerStatus
)

// Status returns every service's status, in configuration order.
func (a *App) Status() []ServiceStatus {
	st := a.state.Load()
	out := make([]ServiceStatus, 0, len(st.order))
	for _, name := range st.order {
		out = append(out, st.services[name].watch.Status())
	}
	return out
}
