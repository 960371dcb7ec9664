//go:build !nokubernetes

package app

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
	kubestore "github.com/rollback-guardian/guardian/store/kubernetes"
)

// clusterState is what several replicas share: the Lease they elect a
// leader with, and the state ConfigMaps. Builds with -tags nokubernetes
// have a stand-in (cluster_off.go).
type clusterState struct {
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

func newClusterState(c *config.Cluster, log *zap.Logger, reg prometheus.Registerer) (*clusterState, error) {
	client, err := kubeClient(c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	st, err := kubestore.New(client, c.Namespace, c.StatePrefix)
	if err != nil {
		return nil, err
	}
	cs := &clusterState{cfg: *c, client: client, store: st, log: log,
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "guardian_leader", Help: "1 while this replica is the leader."})}
	if reg != nil {
		reg.MustRegister(cs.gauge)
	}
	return cs, nil
}

// ErrLostLeadership ends Run when another replica took over: the process
// exits and, restarted, joins as a follower.
var ErrLostLeadership = errors.New("lost the leadership")

// lead campaigns for the Lease; while leading it does the work, and it
// serves (forwarding the write API) as a follower otherwise.
func (a *App) lead(ctx context.Context, listen string) error {
	cs := a.cluster
	name := cmp.Or(cs.cfg.Identity, os.Getenv("POD_NAME"))
	if name == "" {
		name, _ = os.Hostname()
	}
	adv := cs.cfg.AdvertiseURL
	if adv == "" {
		host, port, _ := net.SplitHostPort(listen)
		if ip := os.Getenv("POD_IP"); ip != "" {
			host = ip
		}
		adv = "http://" + net.JoinHostPort(host, port)
	}
	identity := name + identitySep + adv
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
				if err := a.work(lctx); err != nil && lctx.Err() == nil {
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
	a.ready.Store(true) // a follower serves too: it forwards the write API
	le.Run(ctx)
	a.ready.Store(false)
	if p := workErr.Load(); p != nil {
		return *p
	}
	if ctx.Err() == nil {
		cs.log.Warn("lost the leadership: exiting so that a restart joins as a follower")
		return ErrLostLeadership
	}
	return nil
}

// forward tells the web server where to send a write request when this
// replica is a follower.
func (a *App) forward(*http.Request) (*url.URL, bool, error) {
	cs := a.cluster
	if cs == nil || cs.leading.Load() {
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
