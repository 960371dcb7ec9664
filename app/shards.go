package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/incident"
	notifyslack "github.com/rollback-guardian/guardian/notify/slack"
)

// sharded reports whether the replicas share the services out
// (global.cluster.shards): this one then drives only the services of the
// shards it holds.
func (a *App) sharded() bool { return a.cluster != nil && a.cluster.Sharded() }

// owns reports whether this Guardian drives service now: always, unless
// the replicas share the services out.
func (a *App) owns(service string) bool { return !a.sharded() || a.cluster.Owns(service) }

// ownsFunc is the incident manager's and the outbox's Owns: nil (every
// service) unless sharded.
func (a *App) ownsFunc() func(string) bool {
	if !a.sharded() {
		return nil
	}
	return a.owns
}

// errNotOwner refuses to act on a service another replica drives.
func errNotOwner(service string) error {
	return fmt.Errorf("%w: %s", incident.ErrNotOwner, service)
}

// reshard follows a change of the shards this replica holds: it stops
// evaluating (and scraping) the services it no longer drives, hands their
// incidents and notifications over, takes up those of the services it now
// drives, and then starts evaluating them. Loops stop before their
// incidents are let go (a loop declares incidents), and incidents are taken
// up before loops start (a loop must see its service's open incident). It
// returns only once nothing of a lost service runs here: the shard's Lease
// is released after.
func (a *App) reshard() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running == nil {
		// Not started, or stopping: startAll starts what this replica
		// owns then, and stopAll stops everything.
		return
	}
	ctx := a.running
	st := a.state.Load()
	lost, gained := 0, 0
	for _, name := range st.order {
		s := st.services[name]
		if _, running := a.loops[s]; running && !a.owns(name) {
			a.stopLoop(s)
			if s.embedded != nil {
				s.embedded.Pause()
			}
			lost++
		}
	}
	if err := a.outbox.Resync(ctx); err != nil {
		a.log.Error("taking up the notifications of the services this replica now drives", zap.Error(err))
	}
	if err := a.incidents.Reconcile(ctx); err != nil {
		a.log.Error("taking up the incidents of the services this replica now drives", zap.Error(err))
	}
	for _, name := range st.order {
		s := st.services[name]
		if _, running := a.loops[s]; !running && a.owns(name) {
			if err := a.saved().Restore(ctx, s.watch, a.now()); err != nil {
				s.log.Warn("deploy state not restored", zap.Error(err))
			}
			a.startLoop(s)
			gained++
		}
	}
	a.log.Info("services this replica drives changed", zap.Int("started", gained), zap.Int("stopped", lost), zap.Int("driven", len(a.loops)))
}

// forward tells the web server where to send a write request: nowhere
// without a cluster; to the leader when this replica follows it; when
// sharded, to the replica that drives the request's service.
func (a *App) forward(r *http.Request) (*url.URL, bool, error) {
	if a.cluster == nil {
		return nil, false, nil
	}
	service := ""
	if a.sharded() {
		var err error
		if service, err = a.serviceOf(r); err != nil {
			return nil, true, err
		}
	}
	return a.cluster.Forward(service)
}

// serviceOf is the service a write request acts on: its path's service,
// the service of its path's incident, the service of a deploy
// announcement, or what a Slack request names; "" when it names none (it
// is then served here, and refused or answered as not found). It reads and
// restores the body of the requests whose service is in it.
func (a *App) serviceOf(r *http.Request) (string, error) {
	if s := r.PathValue("service"); s != "" {
		return s, nil
	}
	incidentOf := func(id int64) (string, error) {
		rec, err := a.incidents.Get(r.Context(), id)
		if errors.Is(err, incident.ErrNotFound) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("reading incident %d to find its service: %w", id, err)
		}
		return rec.Service, nil
	}
	if v := r.PathValue("id"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return "", nil
		}
		return incidentOf(id)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return "", fmt.Errorf("reading the request: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	switch {
	case r.URL.Path == "/api/v1/deployments":
		var req struct {
			Service string `json:"service"`
		}
		_ = json.Unmarshal(body, &req) // a bad body is refused where it is served
		return req.Service, nil
	case strings.HasPrefix(r.URL.Path, "/api/v1/slack/"):
		id, service := notifyslack.Target(body)
		if id > 0 {
			return incidentOf(id)
		}
		return service, nil
	}
	return "", nil
}

// ownerOf is the identity of the replica that drives service, when the
// replicas share the services out.
func (a *App) ownerOf(service string) (owner string, shard int) {
	if !a.sharded() {
		return "", -1
	}
	owner, _ = a.cluster.Owner(service)
	return owner, a.cluster.ShardOf(service)
}
