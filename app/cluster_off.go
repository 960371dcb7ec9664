//go:build nokubernetes

package app

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/store"
)

// clusterState stands in for several replicas' shared state in a build
// without Kubernetes: config rejects global.cluster, so none is ever built.
type clusterState struct{ store store.Store }

// ErrLostLeadership ends Run when another replica took over; it never
// happens in a build without Kubernetes.
var ErrLostLeadership = errors.New("lost the leadership")

func newClusterState(*config.Cluster, *zap.Logger, prometheus.Registerer) (*clusterState, error) {
	return nil, errLeftOut("Kubernetes clustering (global.cluster)", "nokubernetes")
}

func (a *App) lead(context.Context, string) error {
	return errLeftOut("Kubernetes clustering (global.cluster)", "nokubernetes")
}

// forward never forwards: without a cluster this replica does the work.
func (a *App) forward(*http.Request) (*url.URL, bool, error) { return nil, false, nil }
