package app

import (
	"github.com/rollback-guardian/guardian/watch"
	"github.com/rollback-guardian/guardian/web"
)

// Console returns what the web console shows of every service: its status
// and each trigger's recent evaluations, in configuration order.
func (a *App) Console() []web.ServiceView {
	st := a.state.Load()
	out := make([]web.ServiceView, 0, len(st.order))
	for _, name := range st.order {
		w := st.services[name].watch
		v := web.ServiceView{ServiceStatus: w.Status(), History: map[string][]watch.Sample{}}
		for _, tr := range w.TriggerNames() {
			if h := w.History(tr); h != nil {
				v.History[tr] = h
			}
		}
		out = append(out, v)
	}
	return out
}
