package app

import (
	"context"
	"html"
	"html/template"

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
		ss, driven := a.statusOf(st.services[name])
		if !driven {
			out = append(out, web.ServiceView{ServiceStatus: ss})
			continue
		}
		ss.Owner, ss.Shard = "", nil // the console names the owner only of another replica's services
		v := web.ServiceView{ServiceStatus: ss, History: map[string][]watch.Sample{}}
		for _, tr := range w.TriggerNames() {
			if h := w.History(tr); h != nil {
				v.History[tr] = h
			}
		}
		out = append(out, v)
	}
	return out
}

// ConsoleCharts draws incident id's charts for the console's incident
// page, as the HTML report does: each trigger's values for the bad version
// and the baseline over the incident, with its markers, from the service's
// metric source; a chart's note says what data is missing.
func (a *App) ConsoleCharts(ctx context.Context, id int64) ([]template.HTML, error) {
	rec, err := a.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	charts := a.IncidentCharts(ctx, rec, a.now())
	out := make([]template.HTML, 0, len(charts))
	for _, c := range charts {
		h := c.SVG() // chart.SVG escapes every text it draws
		if c.Note != "" {
			h += `<figcaption class="note">Gaps: ` + html.EscapeString(c.Note) + `.</figcaption>`
		}
		out = append(out, template.HTML(h))
	}
	return out, nil
}
