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
		ss, _ := a.statusOf(st.services[name])
		out = append(out, ss)
	}
	return out
}

// statusOf is s's status and whether this replica drives s. When replicas
// share the services out it names the replica that drives s, and for a
// service another replica drives it holds only that: only the owner knows
// the versions and the watch.
func (a *App) statusOf(s *service) (watch.ServiceStatus, bool) {
	if !a.sharded() {
		return s.watch.Status(), true
	}
	ss, driven := watch.ServiceStatus{Name: s.name}, a.owns(s.name)
	if driven {
		ss = s.watch.Status()
	}
	owner, shard := a.ownerOf(s.name)
	ss.Owner, ss.Shard = owner, &shard
	return ss, driven
}
