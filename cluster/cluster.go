//go:build !nokubernetes

// Package cluster runs Guardian as several replicas on Kubernetes: the
// replicas elect a leader through a coordination.k8s.io Lease (client-go's
// leader election), only the leader evaluates and acts, state lives in
// ConfigMaps written with optimistic concurrency (store/kubernetes), and
// followers forward the write API to the leader. Builds with -tags
// nokubernetes leave it out (off.go).
package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/kube"
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
}

// identitySep separates a replica's name from its advertised URL in the
// Lease's holder identity.
const identitySep = "|"

// New connects to the API server and the state ConfigMaps of c.
func New(c config.Cluster, log *zap.Logger, reg prometheus.Registerer) (*Cluster, error) {
	client, err := kube.Client(c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	st, err := kubestore.New(client, c.Namespace, c.StatePrefix)
	if err != nil {
		return nil, err
	}
	cs := &Cluster{cfg: c, client: client, store: st, log: log,
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "guardian_leader", Help: "1 while this replica is the leader."})}
	if reg != nil {
		reg.MustRegister(cs.gauge)
	}
	return cs, nil
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

// Forward tells the web server where to send a write request when this
// replica is a follower: the leader's advertised URL.
func (cs *Cluster) Forward(*http.Request) (*url.URL, bool, error) {
	if cs.leading.Load() {
		return nil, false, nil
	}
	p := cs.leader.Load()
	if p == nil {
		return nil, true, errors.New("no leader elected yet")
	}
	_, adv, ok := strings.Cut(*p, identitySep)
	if !ok {
		return nil, true, fmt.Errorf("leader %q advertises no address", *p)
	}
	u, err := url.Parse(adv)
	if err != nil {
		return nil, true, fmt.Errorf("leader address %q: %w", adv, err)
	}
	return u, true, nil
}

func metav1ObjectMeta(name, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace}
}
