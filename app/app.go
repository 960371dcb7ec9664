// Package app is Guardian's composition root: it builds the daemon from its
// configuration, swaps it atomically on reload, and owns the run group.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/cluster"
	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/notify"
	notifyslack "github.com/rollback-guardian/guardian/notify/slack"
	"github.com/rollback-guardian/guardian/plugin"
	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/source/embedded"
	"github.com/rollback-guardian/guardian/source/outage"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/store/bolt"
	"github.com/rollback-guardian/guardian/watch"
	"github.com/rollback-guardian/guardian/web"
)

// Options configure an App.
type Options struct {
	ConfigFile string
	Logger     *zap.Logger
	// Registry receives every guardian_* metric and is served on /metrics.
	Registry *prometheus.Registry
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Listener, when set, replaces listening on global.listen_address.
	Listener net.Listener
	// StatusListener, when set, replaces listening on
	// Web.StatusListenAddress: it serves the status page alone.
	StatusListener net.Listener
	// Web are the HTTP server's --web.* settings (TLS, reload, read auth).
	Web web.Flags
	// OnVerdict, when set, sees every trigger verdict.
	OnVerdict watch.VerdictFunc
	// NoWatch disables reloading on changes of the config file; SIGHUP and
	// POST /-/reload still reload.
	NoWatch bool
	// Fault, when set, is called at the incident driver's fault points
	// (tests crash Guardian there).
	Fault func(point string)
}

// App is the Guardian daemon.
type App struct {
	opts Options
	log  *zap.Logger
	now  func() time.Time
	// incNow is the incidents' clock.
	incNow func() time.Time
	m      *watch.Metrics
	// sched runs every service's ticks on a bounded pool of workers.
	sched *watch.Scheduler
	srcM  *sourceMetrics
	// engines are the PromQL engines the embedded sources share.
	engines  *embedded.Engines
	reloader *config.Reloader
	outages  *outage.Monitor // tells on-call when a metric source is unreachable

	// Durable state and incidents, set up by the first Apply.
	cluster   *cluster.Cluster // nil without global.cluster
	st        store.Store
	outbox    *notify.Outbox
	incidents *incident.Manager

	mu      sync.Mutex // serialises Apply with starting and stopping loops
	state   atomic.Pointer[state]
	running context.Context     // nil until Run starts the loops
	loops   map[*service]func() // each running service's stop
	runners []func()            // each running notify.Runner's stop
	ready   atomic.Bool
	driven  atomic.Int64 // services evaluated here now (len(loops))
	// When replicas share the services out: the services whose incidents
	// and state this replica has taken up (their loops may start), and the
	// wake-up of takeUpLoop.
	taken      map[string]bool
	takeUpKick chan struct{}
}

// state is everything built from one configuration.
type state struct {
	cfg       *config.Config
	tokens    *web.Tokens
	notifiers map[string]notify.Notifier
	services  map[string]*service
	order     []string
}

// New loads the configuration and builds the daemon; it does not start anything.
func New(opts Options) (*App, error) {
	a := NewUnloaded(opts)
	if err := a.Load(); err != nil {
		return nil, err
	}
	return a, nil
}

// NewUnloaded builds the daemon without its configuration: Load or
// WaitValid must succeed before Run. Until then, only Reload may be called
// besides them.
func NewUnloaded(opts Options) *App {
	noTracing()
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		// guardian_build_info: prometheus/common/version's Version (the
		// command sets it), revision and build tags.
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			versioncollector.NewCollector("guardian"))
	}
	// Incidents keep a steady clock unless a test sets one (see
	// incident.SteadyClock); sources are queried at the wall clock's time,
	// the time Prometheus stamps its samples with.
	incidentNow := opts.Now
	if incidentNow == nil {
		incidentNow = incident.SteadyClock()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &App{
		opts:    opts,
		log:     opts.Logger,
		now:     opts.Now,
		incNow:  incidentNow,
		m:       watch.NewMetrics(opts.Registry),
		sched:   watch.NewScheduler(0, opts.Registry),
		srcM:    newSourceMetrics(opts.Registry),
		engines: embedded.NewEngines(),
		loops:   map[*service]func(){},
		taken:   map[string]bool{},

		takeUpKick: make(chan struct{}, 1),
	}
	opts.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "guardian_services_driven",
		Help: "Services this Guardian evaluates now: all of them, or, when replicas share the services out, those of the shards it holds.",
	}, func() float64 { return float64(a.driven.Load()) }))
	a.outages = outage.NewMonitor(outage.Options{Registerer: opts.Registry, Logger: opts.Logger.Named("sources"), Now: opts.Now,
		Store: func() store.Store { return a.st }, Enqueue: func(ctx context.Context, r string, e notify.Event) error { return a.outbox.Enqueue(ctx, r, e) },
		Tracks: a.tracksSource})
	a.reloader = config.NewReloader(opts.ConfigFile, a.Apply, opts.Logger.Named("config"), opts.Registry)
	return a
}

// Load loads the configuration file and applies it, for start-up: its
// error should stop the daemon.
func (a *App) Load() error {
	// LoadInitial applies the configuration through a.Apply.
	_, err := a.reloader.LoadInitial()
	return err
}

// The Slack endpoint serves "/guardian rollback" through App.Rollback.
var _ notifyslack.Rollbacker = (*App)(nil)

// Config returns the configuration in force.
func (a *App) Config() *config.Config { return a.state.Load().cfg }

// Reload asks for a configuration reload (SIGHUP and /-/reload use it).
func (a *App) Reload() <-chan error { return a.reloader.Request() }

// Ready reports whether the daemon is serving and evaluating.
func (a *App) Ready() bool { return a.ready.Load() }

// Apply builds the daemon for cfg, then swaps it in. Everything that can fail
// happens before the live state is touched, so a failed Apply leaves the old
// configuration running. Triggers whose definition did not change keep their
// pending state, services keep their open watch, and the embedded source keeps
// its data while its scrape settings do not change.
func (a *App) Apply(cfg *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.state.Load()
	next, err := a.build(cfg, old)
	if err != nil {
		return err
	}
	if a.st == nil {
		if err := a.openState(cfg, next.notifiers); err != nil {
			// Guardian does not start: the embedded sources just made
			// take their temporary directories with them.
			for _, s := range next.services {
				if s.embedded != nil {
					s.embedded.Stop()
				}
			}
			return err
		}
	} else {
		a.outbox.SetReceivers(next.notifiers)
	}

	// Stop the old loops before their state moves over.
	if old != nil {
		for _, s := range old.services {
			a.stopLoop(s)
		}
		for name, s := range next.services {
			if o, ok := old.services[name]; ok {
				s.watch.TakeOver(o.watch, equalDeploy(o.cfg.Deploy, s.cfg.Deploy))
			}
		}
	}
	a.state.Store(next)
	a.outages.Apply(cfg)
	for _, s := range next.services {
		if s.embedded != nil {
			// A kept source scrapes for the new queries from now on.
			s.embedded.Source().SetFilter(s.filter)
		}
	}

	if old != nil {
		for name, o := range old.services {
			n, kept := next.services[name]
			if o.embedded != nil && (!kept || n.embedded != o.embedded) {
				o.embedded.Stop()
			}
			if !kept {
				a.m.Retire(o.watch, nil)
			} else {
				a.m.Retire(o.watch, n.watch)
			}
		}
		if old.cfg.Global.ListenAddress != cfg.Global.ListenAddress {
			a.log.Warn("listen_address changed: restart Guardian to apply it",
				zap.String("old", old.cfg.Global.ListenAddress), zap.String("new", cfg.Global.ListenAddress))
		}
	}
	if a.running != nil {
		for _, name := range next.order {
			a.startLoop(next.services[name])
		}
		a.stopRunners()
		a.startRunners(next)
		if a.sharded() {
			a.reshardLater() // services added here are taken up there
		}
	}
	a.log.Info("configuration applied", zap.Int("services", len(next.services)))
	return nil
}

func (a *App) build(cfg *config.Config, old *state) (*state, error) {
	tokens, err := web.NewTokens(cfg.Global.Auth.TokensFile)
	if err != nil {
		return nil, err
	}
	notifiers, err := plugin.Notifiers(cfg, a.log, plugin.NotifierEnv{Store: func() store.Store { return a.st }})
	if err != nil {
		return nil, err
	}
	named, err := plugin.Sources(cfg, a.log)
	if err != nil {
		return nil, err
	}
	next := &state{cfg: cfg, tokens: tokens, notifiers: notifiers, services: map[string]*service{}}
	var created []*embedded.Runner
	fail := func(err error) (*state, error) {
		for _, e := range created {
			e.Stop()
		}
		return nil, err
	}
	for _, sc := range cfg.Services {
		var prev *service
		if old != nil {
			prev = old.services[sc.Name]
		}
		s, fresh, err := a.buildService(cfg, sc, named, prev)
		if err != nil {
			return fail(fmt.Errorf("service %s: %w", sc.Name, err))
		}
		if fresh != nil {
			created = append(created, fresh)
		}
		next.services[sc.Name] = s
		next.order = append(next.order, sc.Name)
	}
	return next, nil
}

// Announce records a deploy announced through the API.
func (a *App) Announce(ctx context.Context, service, version, baseline string) (rollout.Event, error) {
	st := a.state.Load()
	s, ok := st.services[service]
	if !ok {
		return rollout.Event{}, fmt.Errorf("%w %q", rollout.ErrUnknownService, service)
	}
	if !a.owns(service) {
		return rollout.Event{}, errNotOwner(service)
	}
	return s.watch.Announce(ctx, version, baseline, a.now())
}

// startLoop starts evaluating s, and scraping it with the embedded
// source, unless another replica drives it; a.mu is held.
func (a *App) startLoop(s *service) {
	if !a.owns(s.name) || a.sharded() && !a.taken[s.name] {
		return // another replica's, or not taken up yet (takeUp starts it)
	}
	if s.embedded != nil {
		s.embedded.Start(a.running)
	}
	if _, ok := a.loops[s]; !ok {
		a.driven.Add(1)
	}
	a.loops[s] = s.watch.Start(a.running, a.now, s.kwatch)
}

// stopLoop stops evaluating s and waits for its loop; a.mu is held.
func (a *App) stopLoop(s *service) {
	if stop, ok := a.loops[s]; ok {
		stop()
		delete(a.loops, s)
		a.driven.Add(-1)
	}
}

// Run serves HTTP, watches the configuration and evaluates every service
// until ctx ends or one of them fails.
func (a *App) Run(ctx context.Context) error {
	st := a.state.Load()
	slackHandler, err := notifyslack.NewHandler(notifyslack.HandlerOptions{
		Config: a.Config, Incidents: a, Logger: a.log.Named("slack"), Registerer: a.opts.Registry, Now: a.now,
	})
	if err != nil {
		a.stopAll()
		if cerr := a.st.Close(); cerr != nil {
			a.log.Warn("closing the state file", zap.Error(cerr))
		}
		return err
	}
	l := a.opts.Listener
	if l == nil {
		l, err = net.Listen("tcp", st.cfg.Global.ListenAddress)
		if err != nil {
			a.stopAll()
			if cerr := a.st.Close(); cerr != nil {
				a.log.Warn("closing the state file", zap.Error(cerr))
			}
			return fmt.Errorf("listening on %s: %w", st.cfg.Global.ListenAddress, err)
		}
	}
	srv := web.New(web.Options{
		Gatherer:  a.opts.Registry,
		Logger:    a.log.Named("web"),
		Ready:     a.Ready,
		Reload:    a.Reload,
		Tokens:    func() *web.Tokens { return a.state.Load().tokens },
		Deployer:  a,
		Status:    func() any { return a.Status() },
		Incidents: a,
		Forward:   a.forward,
		Flags:     a.opts.Web,
		Slack:     slackHandler,

		StatusPage: a.StatusPage,
		Services:   a.Console,
		Charts:     a.ConsoleCharts,
		Verdict:    a.Verdict,
	})
	sl, err := a.statusListener()
	if err != nil {
		_ = l.Close()
		a.stopAll()
		if cerr := a.st.Close(); cerr != nil {
			a.log.Warn("closing the state file", zap.Error(cerr))
		}
		return err
	}
	a.log.Info("Guardian started", zap.String("listen", l.Addr().String()), zap.String("config", a.opts.ConfigFile))

	var g run.Group
	actor(ctx, &g, func(ctx context.Context) error { <-ctx.Done(); return nil })
	actor(ctx, &g, func(ctx context.Context) error { return srv.Serve(ctx, l) })
	if sl != nil {
		a.log.Info("serving the status page", zap.String("listen", sl.Addr().String()))
		actor(ctx, &g, func(ctx context.Context) error { return srv.ServeStatus(ctx, sl) })
	}
	actor(ctx, &g, a.reloader.Run)
	if !a.opts.NoWatch {
		actor(ctx, &g, a.reloader.Watch)
	}
	if a.cluster == nil {
		actor(ctx, &g, a.work)
	} else {
		actor(ctx, &g, func(ctx context.Context) error { return a.cluster.Run(ctx, l.Addr().String(), a.work, a.ready.Store) })
	}
	err = g.Run()
	if cerr := a.st.Close(); cerr != nil {
		a.log.Warn("closing the state file", zap.Error(cerr))
	}
	a.log.Info("Guardian stopped")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// work is what the leader does (every Guardian without a cluster section):
// evaluate the services, drive the incidents, deliver the notifications.
func (a *App) work(ctx context.Context) error {
	var g run.Group
	actor(ctx, &g, a.incidents.Run)
	actor(ctx, &g, a.outbox.Run)
	if a.sharded() {
		actor(ctx, &g, a.takeUpLoop)
		a.reshardLater()
	}
	actor(ctx, &g, func(ctx context.Context) error {
		a.startAll(ctx)
		<-ctx.Done()
		a.stopAll()
		return nil
	})
	return g.Run()
}

// actor adds f to g as an actor of its own context: when one actor
// returns, the group cancels the others.
func actor(parent context.Context, g *run.Group, f func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(parent)
	g.Add(func() error { return f(ctx) }, func(error) { cancel() })
}

func (a *App) startAll(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.running = ctx
	st := a.state.Load()
	for _, name := range st.order {
		s := st.services[name]
		if a.sharded() {
			break // takeUp restores and starts the services of the shards held
		}
		if err := a.saved().Restore(ctx, s.watch, a.now()); err != nil {
			s.log.Warn("deploy state not restored", zap.Error(err))
		}
	}
	for _, name := range st.order {
		a.startLoop(st.services[name])
	}
	a.startRunners(st)
	a.ready.Store(true)
}

func (a *App) stopAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ready.Store(false)
	a.stopRunners()
	clear(a.taken)
	st := a.state.Load()
	for _, s := range st.services {
		a.stopLoop(s)
		if s.embedded != nil {
			s.embedded.Stop()
		}
	}
	a.running = nil
}

// ErrLostLeadership ends Run when another replica took over: the process
// exits and, restarted, joins as a follower.
var ErrLostLeadership = cluster.ErrLostLeadership

// saved keeps the services' learnt state in the state store.
func (a *App) saved() watch.StoreState {
	return watch.StoreState{Store: func() store.Store { return a.st }}
}

// openState opens the state file under state_dir and builds the outbox and
// the incident manager over it. state_dir is read once: changing it needs a
// restart.
func (a *App) openState(cfg *config.Config, notifiers map[string]notify.Notifier) error {
	var st store.Store
	if cfg.Global.Cluster != nil {
		cs, err := cluster.New(*cfg.Global.Cluster, a.log.Named("cluster"), a.opts.Registry)
		if err != nil {
			return err
		}
		a.cluster, st = cs, cs.Store()
		cs.OnChange(a.reshard)
	} else {
		dir, err := stateDir(cfg)
		if err != nil {
			return err
		}
		if st, err = bolt.Open(filepath.Join(dir, "guardian.db"), a.log.Named("store")); err != nil {
			return err
		}
	}
	raw := st
	st, err := store.Instrumented(raw, a.opts.Registry)
	if err != nil {
		_ = raw.Close()
		return err
	}
	ob, err := notify.NewOutbox(st, notifiers, notify.OutboxOptions{Logger: a.log.Named("outbox"), Registerer: a.opts.Registry, Now: a.now,
		OnGiveUp: a.notificationGivenUp, Owns: a.ownsFunc()})
	if err != nil {
		_ = st.Close()
		return err
	}
	a.st, a.outbox = st, ob
	a.incidents = incident.NewManager(incident.Options{
		Store: st, Env: a, Publisher: notify.Publisher{Outbox: ob, Receivers: a.receivers, ExternalURL: a.ExternalURL}, Reporter: reporter{a},
		Logger: a.log.Named("incident"), Registry: a.opts.Registry, Now: a.incNow, Fault: a.opts.Fault, Owns: a.ownsFunc(),
	})
	return nil
}

// stateDir returns an absolute state directory, creating it.
func stateDir(cfg *config.Config) (string, error) {
	d, err := filepath.Abs(cfg.Global.StateDir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(d, 0o750); err != nil {
		return "", fmt.Errorf("creating state_dir: %w", err)
	}
	return d, nil
}
