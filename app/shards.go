package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/incident"
	notifyslack "github.com/rollback-guardian/guardian/notify/slack"
	"github.com/rollback-guardian/guardian/source/outage"
	"github.com/rollback-guardian/guardian/watch"
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

// tracksSource says whether this replica tracks and announces a metric
// source's outages: every source, unless the replicas share the services
// out; then the replica that drives the source's first service, which
// queries (or scrapes) it.
func (a *App) tracksSource(s outage.Source) bool {
	return !a.sharded() || len(s.Services) == 0 || a.owns(s.Services[0])
}

// errNotOwner refuses to act on a service another replica drives.
func errNotOwner(service string) error {
	return fmt.Errorf("%w: %s", incident.ErrNotOwner, service)
}

// reshard follows a change of the shards this replica holds; the shard
// controller calls it, and the shard Leases wait for it, so it does only
// what must happen before a lost shard's Lease is released: it stops
// evaluating (and scraping) the services this replica no longer drives
// and lets their incidents go (their effects under way cancelled and
// waited for). Their notifications are forgotten by the outbox as they
// come up. Taking up the services it gained reads the store and may take a
// while: takeUp does it, in the background.
func (a *App) reshard() {
	a.mu.Lock()
	if a.running == nil {
		// Not started, or stopping: startAll starts what this replica
		// owns then, and stopAll stops everything.
		a.mu.Unlock()
		return
	}
	st := a.state.Load()
	lost := 0
	for _, name := range st.order {
		if a.owns(name) {
			continue
		}
		delete(a.taken, name)
		s := st.services[name]
		if _, running := a.loops[s]; running {
			a.stopLoop(s)
			if s.embedded != nil {
				s.embedded.Pause()
			}
			lost++
		}
	}
	a.mu.Unlock()
	a.incidents.LetGo()
	if lost > 0 {
		a.log.Info("stopped driving the services of the shards this replica no longer holds", zap.Int("services", lost))
	}
	a.reshardLater()
}

// takeUpLoop takes up the services this replica gained whenever reshard
// asks, until ctx ends.
func (a *App) takeUpLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.takeUpKick:
		}
		a.takeUp(ctx)
	}
}

// takeUp takes up the services this replica now drives and does not yet:
// their pending notifications and their incidents first, then their saved
// deploy state (one List), and only then it starts evaluating them, so that
// a loop sees its service's open incident and never declares a second one.
// A service lost meanwhile is skipped: starting a loop checks ownership
// under a.mu, which reshard holds while it stops loops.
func (a *App) takeUp(ctx context.Context) {
	a.mu.Lock()
	if a.running == nil {
		a.mu.Unlock()
		return // startAll asks again
	}
	st := a.state.Load()
	var gained []*service
	for _, name := range st.order {
		if a.owns(name) && !a.taken[name] {
			gained = append(gained, st.services[name])
		}
	}
	a.mu.Unlock()
	if len(gained) == 0 {
		return
	}
	select { // the incidents' driver must run to take them up
	case <-a.incidents.Started():
	case <-ctx.Done():
		return
	}
	start := time.Now()
	if err := a.outbox.Resync(ctx); err != nil {
		a.log.Error("taking up the notifications of the services this replica now drives", zap.Error(err))
	}
	if err := a.incidents.TakeUp(ctx); err != nil {
		// The loops would not see the open incidents: retry later.
		a.log.Error("taking up the incidents of the services this replica now drives; retrying", zap.Error(err))
		time.AfterFunc(5*time.Second, a.reshardLater)
		return
	}
	watches := make([]*watch.Service, len(gained))
	for i, s := range gained {
		watches[i] = s.watch
	}
	for name, err := range a.saved().RestoreAll(ctx, watches, a.now()) {
		a.log.Warn("deploy state not restored", zap.String("service", name), zap.Error(err))
	}
	a.mu.Lock()
	started := 0
	if a.running != nil && a.state.Load() == st {
		for _, s := range gained {
			if !a.owns(s.name) {
				continue
			}
			a.taken[s.name] = true
			if _, running := a.loops[s]; !running {
				a.startLoop(s)
				started++
			}
		}
	}
	a.mu.Unlock()
	a.log.Info("took up the services of the shards this replica now holds", zap.Int("services", started),
		zap.Duration("took", time.Since(start)))
	if a.state.Load() != st {
		a.reshardLater() // a reload came in between: take up the new configuration's
	}
}

// reshardLater asks takeUpLoop for another pass.
func (a *App) reshardLater() {
	select {
	case a.takeUpKick <- struct{}{}:
	default:
	}
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
