//go:build nokubernetes

package main

import "go.uber.org/zap"

// newPodEvents records nothing: this build does not talk to the
// Kubernetes API.
func newPodEvents(log *zap.Logger) podEvents {
	log.Debug("no Kubernetes Events: a build with -tags nokubernetes")
	return noEvents{}
}
