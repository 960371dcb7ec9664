package app

import (
	"cmp"
	"fmt"
	"net"

	"github.com/rollback-guardian/guardian/web"
)

// StatusPage returns the status page's settings from the configuration in
// force: the services in configuration order under their public names
// (hidden ones left out), and the maintenance windows, at the App's clock.
func (a *App) StatusPage() web.StatusConfig {
	cfg := a.Config()
	sp := cfg.StatusPage
	out := web.StatusConfig{Title: sp.Title, ShowDetails: sp.ShowDetails, Services: []web.StatusService{}, Now: a.now(),
		PublicURL: sp.ExternalURL, ExternalURL: cmp.Or(a.opts.Web.ExternalURL, cfg.Global.ExternalURL)}
	for _, s := range cfg.Services {
		p := sp.Services[s.Name]
		if p.Hidden {
			continue
		}
		out.Services = append(out.Services, web.StatusService{Name: s.Name, Display: p.Name})
	}
	for _, m := range sp.Maintenance {
		out.Maintenance = append(out.Maintenance, web.MaintenanceWindow{
			Services: m.Services, Start: m.Start.Time, End: m.End.Time, Message: m.Message,
		})
	}
	return out
}

// statusListener is the status page's own listener: Options.StatusListener,
// else one on --web.status-listen-address, else none.
func (a *App) statusListener() (net.Listener, error) {
	if a.opts.StatusListener != nil {
		return a.opts.StatusListener, nil
	}
	addr := a.opts.Web.StatusListenAddress
	if addr == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s (--web.status-listen-address): %w", addr, err)
	}
	return l, nil
}
