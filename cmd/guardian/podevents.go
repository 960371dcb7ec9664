package main

import (
	"github.com/rollback-guardian/guardian/web"
)

// podEvents records Kubernetes Events on the pod Guardian runs in.
type podEvents interface {
	Warning(reason, message string)
	Normal(reason, message string)
	Stop()
}

// noEvents records nothing: outside Kubernetes, or in a build without it.
type noEvents struct{}

func (noEvents) Warning(string, string) {}
func (noEvents) Normal(string, string)  {}
func (noEvents) Stop()                  {}

// The reasons of the Events guardian run --config.wait-valid records.
const (
	reasonConfigInvalid = "GuardianConfigInvalid"
	reasonConfigLoaded  = "GuardianConfigLoaded"
)

// configEvents are WaitValid's callbacks recording an Event on each failed
// attempt and one once the configuration loads.
func configEvents(ev podEvents) (onFailure func(error), onLoaded func()) {
	onFailure = func(err error) {
		// A URL in the error may carry credentials.
		ev.Warning(reasonConfigInvalid, "Guardian's configuration does not load; Guardian waits for a valid one, "+
			"and the pod's other containers are unaffected: "+web.RedactURLs(err.Error()))
	}
	onLoaded = func() {
		ev.Normal(reasonConfigLoaded, "Guardian's configuration loaded: Guardian runs")
	}
	return onFailure, onLoaded
}
