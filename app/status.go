package app

import "github.com/rollback-guardian/guardian/watch"

// Status returns every service's status (its watch stage's), in
// configuration order; when replicas share the services out, with the
// replica that drives each, and only the names of those another replica
// drives.
func (a *App) Status() []watch.ServiceStatus {
	st := a.state.Load()
	out := make([]watch.ServiceStatus, 0, len(st.order))
	for _, name := range st.order {
		if !a.sharded() {
			out = append(out, st.services[name].watch.Status())
			continue
		}
		ss := watch.ServiceStatus{Name: name}
		if a.owns(name) {
			ss = st.services[name].watch.Status()
		}
		owner, shard := a.ownerOf(name)
		ss.Owner, ss.Shard = owner, &shard
		out = append(out, ss)
	}
	return out
}
