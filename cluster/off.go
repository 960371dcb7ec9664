//go:build nokubernetes

// Package cluster would run Guardian as several replicas on Kubernetes; this
// slim build (-tags nokubernetes) leaves it out: config rejects
// global.cluster, and New only fails.
package cluster

import (
	"context"
	"errors"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/store"
)

// ErrLostLeadership ends Run when another replica took over; it never
// happens in a build without Kubernetes.
var ErrLostLeadership = errors.New("lost the leadership")

// Cluster is never built in a build without Kubernetes.
type Cluster struct{}

// New fails: this build has no Kubernetes clustering.
func New(config.Cluster, *zap.Logger, prometheus.Registerer) (*Cluster, error) {
	return nil, config.LeftOutError("Kubernetes clustering (global.cluster)")
}

// Store is nil.
func (*Cluster) Store() store.Store { return nil }

// Run fails.
func (*Cluster) Run(context.Context, string, func(context.Context) error, func(bool)) error {
	return config.LeftOutError("Kubernetes clustering (global.cluster)")
}

// Forward never forwards.
func (*Cluster) Forward(string) (*url.URL, bool, error) { return nil, false, nil }

// Sharded is false.
func (*Cluster) Sharded() bool { return false }

// OnChange does nothing.
func (*Cluster) OnChange(func()) {}

// Owns is true: a single Guardian drives every service.
func (*Cluster) Owns(string) bool { return true }

// Owner is unknown.
func (*Cluster) Owner(string) (string, bool) { return "", false }

// ShardOf is -1.
func (*Cluster) ShardOf(string) int { return -1 }

// ShardsStatus is a replica's view of the shards; never filled in a build
// without Kubernetes.
type ShardsStatus struct {
	Identity string   `json:"identity"`
	Members  []string `json:"members"`
	Holders  []string `json:"holders"`
	Owned    []int    `json:"owned"`
}

// Shards is nil.
func (*Cluster) Shards() *ShardsStatus { return nil }
