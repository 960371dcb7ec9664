package incident

import (
	"math"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/trigger"
)

func TestEvidenceFromSequential(t *testing.T) {
	v := trigger.Verdict{
		Trigger: "errors", At: t0,
		Evidence: trigger.Evidence{
			Query: "errors new", VolumeQuery: "requests new", BaselineQuery: "errors live",
			Value: fptr(0.05), BaselineValue: fptr(math.NaN()),
			Sequential: &trigger.SequentialEvidence{
				SinceDeploy: 3*time.Minute + 5*time.Second, BaselineWindow: 30 * time.Minute,
				BaselineRequestsQuery: "requests live",
				PreDeployErrorsQuery:  "errors before", PreDeployRequestsQuery: "requests before",
			},
		},
	}
	ev := EvidenceFrom(v)
	if !ev.Sequential || ev.Query != "errors new" || ev.VolumeQuery != "requests new" || ev.BaselineQuery != "errors live" ||
		ev.BaselineRequestsQuery != "requests live" || ev.PreDeployErrorsQuery != "errors before" || ev.PreDeployRequestsQuery != "requests before" {
		t.Errorf("queries %+v", ev)
	}
	if ev.SinceDeploySeconds == nil || *ev.SinceDeploySeconds != 185 || ev.BaselineWindowSeconds == nil || *ev.BaselineWindowSeconds != 1800 {
		t.Errorf("ranges %v %v", ev.SinceDeploySeconds, ev.BaselineWindowSeconds)
	}
	if ev.EvaluatedAt == nil || !ev.EvaluatedAt.Equal(t0) || ev.BaselineValue != nil || *ev.Value != 0.05 {
		t.Errorf("evaluated at %v, baseline %v (NaN dropped), value %v", ev.EvaluatedAt, ev.BaselineValue, ev.Value)
	}

	// A threshold verdict has none of the sequential fields.
	th := EvidenceFrom(trigger.Verdict{Trigger: "error-rate", At: t0, Evidence: trigger.Evidence{Query: "ratio", BaselineMode: trigger.BaselinePreDeploy}})
	if th.Sequential || th.SinceDeploySeconds != nil || th.BaselineWindowSeconds != nil || th.BaselineMode != "pre_deploy" {
		t.Errorf("threshold evidence %+v", th)
	}
}
