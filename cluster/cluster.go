//go:build !nokubernetes

// Package cluster runs Guardian as several replicas on Kubernetes. State
// lives in ConfigMaps written with optimistic concurrency
// (store/kubernetes). Either the replicas elect a leader through a
// coordination.k8s.io Lease (client-go's leader election), only the leader
// evaluates and acts, and followers forward the write API to it; or, with
// shards, the services are split into shards each owned through its own
// Lease (Shards), every replica drives the services of the shards it
// holds, and the write API goes to the owner of the service. Builds with
// -tags nokubernetes leave it out (off.go).
package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/kube"
	"github.com/rollback-guardian/guardian/shard"
	"github.com/rollback-guardian/guardian/store"
	kubestore "github.com/rollback-guardian/guardian/store/kubernetes"
)

// ErrLostLeadership ends Run when another replica took over: the process
// exits and, restarted, joins as a follower.
var ErrLostLeadership = errors.New("lost the leadership")

// Cluster is this replica's part of several: the Lease it campaigns for,
// and the state ConfigMaps.
type Cluster struct {
	cfg    config.Cluster
	client kubernetes.Interface
	store  *kubestore.Store
	log    *zap.Logger

	leading atomic.Bool
	leader  atomic.Pointer[string] // the leader's identity, as in the Lease
	gauge   prometheus.Gauge

	// With shards: the client of the shard Leases (a rate limit of its
	// own), the controller once Run built it, and what to call when the
	// shards this replica drives change.
	shardClient kubernetes.Interface
	reg         prometheus.Registerer
	shards      atomic.Pointer[Shards]
	onChange    func()
}

// identitySep separates a replica's name from its advertised URL in the
// Lease's holder identity.
const identitySep = "|"

// New connects to the API server and the state ConfigMaps of c.
func New(c config.Cluster, log *zap.Logger, reg prometheus.Registerer) (*Cluster, error) {
	rc, err := kube.Config(c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// The state ConfigMaps: every incident transition, notification and
	// saved deploy state is a request, and a replica that takes over
	// hundreds of services reads theirs at once. client-go's default of 5
	// requests a second would throttle it.
	rc.QPS, rc.Burst = 50, 100
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	st, err := kubestore.New(client, c.Namespace, c.StatePrefix)
	if err != nil {
		return nil, err
	}
	cs := &Cluster{cfg: c, client: client, store: st, log: log, reg: reg,
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "guardian_leader", Help: "1 while this replica is the leader."})}
	if c.Shards > 0 {
		// A replica writes about shards/replicas Leases every retry
		// period: client-go's default of 5 requests a second is too few.
		rc := rest.CopyConfig(rc)
		rc.QPS = float32(max(20, c.Shards))
		rc.Burst = 2 * int(rc.QPS)
		if cs.shardClient, err = kubernetes.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
	} else if reg != nil {
		reg.MustRegister(cs.gauge)
	}
	return cs, nil
}

// Sharded reports whether the services are split into shards (shards > 0)
// rather than all driven by one leader.
func (cs *Cluster) Sharded() bool { return cs.cfg.Shards > 0 }

// OnChange sets what to call, with no lock of the Cluster held, every
// time the services this replica drives change (sharded only): f must
// start driving the services it now owns and stop driving, before it
// returns, those it no longer owns. Set it before Run.
func (cs *Cluster) OnChange(f func()) { cs.onChange = f }

// Owns reports whether this replica drives service now: always while
// leading, and, sharded, while it holds the Lease of service's shard.
func (cs *Cluster) Owns(service string) bool {
	if !cs.Sharded() {
		return cs.leading.Load()
	}
	s := cs.shards.Load()
	return s != nil && s.Owns(service)
}

// Owner is the identity (name|URL) of the replica that drives service, as
// this replica last saw the Leases, and false when none does (a shard
// changing hands, or no leader yet).
func (cs *Cluster) Owner(service string) (string, bool) {
	if !cs.Sharded() {
		p := cs.leader.Load()
		if p == nil {
			return "", false
		}
		return *p, true
	}
	s := cs.shards.Load()
	if s == nil {
		return "", false
	}
	return s.Owner(service)
}

// ShardOf returns service's shard, -1 without shards.
func (cs *Cluster) ShardOf(service string) int {
	if !cs.Sharded() {
		return -1
	}
	return shard.ShardOf(service, cs.cfg.Shards)
}

// Shards returns the sharding status as this replica sees it: the
// members, each shard's holder, the shards it owns; nil without shards or
// before Run.
func (cs *Cluster) Shards() *ShardsStatus {
	s := cs.shards.Load()
	if s == nil {
		return nil
	}
	st := s.Snapshot()
	return &st
}

// Store is the state the replicas share: ConfigMaps written with
// optimistic concurrency.
func (cs *Cluster) Store() store.Store { return cs.store }

// Run campaigns for the Lease until ctx ends. While leading it runs work
// (evaluate, act, notify); it reports itself ready to serve as a follower
// too, which forwards the write API to the leader (Forward). Losing the
// lead ends Run with ErrLostLeadership: the process exits and, restarted,
// joins as a follower. listen is this replica's listen address, advertised
// to the others unless advertise_url says otherwise.
func (cs *Cluster) Run(ctx context.Context, listen string, work func(ctx context.Context) error, ready func(bool)) error {
	identity := Identity(cs.cfg, listen)
	if cs.Sharded() {
		return cs.runShards(ctx, identity, work, ready)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1ObjectMeta(cs.cfg.LeaseName, cs.cfg.Namespace),
		Client:     cs.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	var workErr atomic.Pointer[error]
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   time.Duration(cs.cfg.LeaseDuration),
		RenewDeadline:   time.Duration(cs.cfg.RenewDeadline),
		RetryPeriod:     time.Duration(cs.cfg.RetryPeriod),
		ReleaseOnCancel: true,
		Name:            "guardian",
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				cs.leading.Store(true)
				cs.gauge.Set(1)
				cs.log.Info("leading: evaluating and acting", zap.String("identity", identity))
				if err := work(lctx); err != nil && lctx.Err() == nil {
					workErr.Store(&err)
				}
			},
			OnStoppedLeading: func() {
				cs.leading.Store(false)
				cs.gauge.Set(0)
			},
			OnNewLeader: func(id string) {
				cs.leader.Store(&id)
				if id != identity {
					cs.log.Info("following", zap.String("leader", id))
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	ready(true) // a follower serves too: it forwards the write API
	le.Run(ctx)
	ready(false)
	if p := workErr.Load(); p != nil {
		return *p
	}
	if ctx.Err() == nil {
		cs.log.Warn("lost the leadership: exiting so that a restart joins as a follower")
		return ErrLostLeadership
	}
	return nil
}

// Identity returns this replica's identity in the Leases: its name
// (c.Identity, else $POD_NAME, else the host name) and the URL the other
// replicas reach it at (c.AdvertiseURL, else http://$POD_IP:<listen port>),
// joined by "|".
func Identity(c config.Cluster, listen string) string {
	name := cmp.Or(c.Identity, os.Getenv("POD_NAME"))
	if name == "" {
		name, _ = os.Hostname()
	}
	adv := c.AdvertiseURL
	if adv == "" {
		host, port, _ := net.SplitHostPort(listen)
		if ip := os.Getenv("POD_IP"); ip != "" {
			host = ip
		}
		adv = "http://" + net.JoinHostPort(host, port)
	}
	return name + identitySep + adv
}

// runShards runs work and the shard Leases side by side until ctx ends:
// work starts the services' loops and the incidents' driver, which act
// only for the services Owns names, and OnChange's function follows the
// changes.
func (cs *Cluster) runShards(ctx context.Context, identity string, work func(ctx context.Context) error, ready func(bool)) error {
	s, err := NewShards(cs.shardClient, ShardsConfig{
		Namespace:     cs.cfg.Namespace,
		Prefix:        cs.cfg.LeaseName + "-shard-",
		Identity:      identity,
		Shards:        cs.cfg.Shards,
		LeaseDuration: time.Duration(cs.cfg.LeaseDuration),
		RenewDeadline: time.Duration(cs.cfg.RenewDeadline),
		RetryPeriod:   time.Duration(cs.cfg.RetryPeriod),
		OnChange: func([]int) {
			if cs.onChange != nil {
				cs.onChange()
			}
		},
	}, cs.log, cs.reg)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	cs.shards.Store(s)
	cs.log.Info("sharded: driving the services of the shards this replica holds",
		zap.String("identity", identity), zap.Int("shards", cs.cfg.Shards))
	ready(true)
	defer ready(false)
	// The Leases are released only once work has stopped driving every
	// service: Shards.Run tells OnChange it owns nothing before it
	// releases them.
	var g run.Group
	wctx, stopWork := context.WithCancel(ctx)
	g.Add(func() error { return work(wctx) }, func(error) { stopWork() })
	sctx, stopShards := context.WithCancel(ctx)
	g.Add(func() error { return s.Run(sctx) }, func(error) { stopShards() })
	return g.Run()
}

// Forward tells the web server where to send a write request for service
// ("" for one that names none: it goes to the leader, or is served here
// when sharded): nowhere when this replica drives it, else the advertised
// URL of the replica that does.
func (cs *Cluster) Forward(service string) (*url.URL, bool, error) {
	if cs.Sharded() {
		if service == "" || cs.Owns(service) {
			return nil, false, nil
		}
		id, ok := cs.Owner(service)
		if !ok {
			return nil, true, fmt.Errorf("service %q's shard %d is changing hands: retry", service, cs.ShardOf(service))
		}
		return advertised(id)
	}
	if cs.leading.Load() {
		return nil, false, nil
	}
	p := cs.leader.Load()
	if p == nil {
		return nil, true, errors.New("no leader elected yet")
	}
	return advertised(*p)
}

// advertised is the URL in a replica's identity.
func advertised(id string) (*url.URL, bool, error) {
	_, adv, ok := strings.Cut(id, identitySep)
	if !ok {
		return nil, true, fmt.Errorf("replica %q advertises no address", id)
	}
	u, err := url.Parse(adv)
	if err != nil {
		return nil, true, fmt.Errorf("replica address %q: %w", adv, err)
	}
	return u, true, nil
}

func metav1ObjectMeta(name, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace}
}
