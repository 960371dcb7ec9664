package app

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/rollout"
)

// describingExecutor is a rollback executor that tells what versions run,
// as the Kubernetes executor does from its workload's revisions.
type describingExecutor struct {
	executor.Executor
	changes []rollout.Change
	err     error
	asked   []string
}

func (d *describingExecutor) Describe(_ context.Context, versions ...string) ([]rollout.Change, error) {
	d.asked = append(d.asked, versions...)
	return d.changes, d.err
}

// A deploy that did not say what it changed takes what the rollback
// executor can tell; what the deploy said is kept; a failure changes
// nothing.
func TestDescribeDeploy(t *testing.T) {
	ex := &describingExecutor{changes: []rollout.Change{
		{Version: "v2", Images: []string{"checkout:v2"}}, {Version: "v1", Images: []string{"checkout:v1"}},
	}}
	a := &App{log: zap.NewNop()}
	a.state.Store(&state{services: map[string]*service{"checkout": {appExec: ex}}})
	ctx := context.Background()

	d := a.describeDeploy(ctx, rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1"})
	if d.Change == nil || d.Change.Images[0] != "checkout:v2" || d.BaselineChange == nil || d.BaselineChange.Images[0] != "checkout:v1" {
		t.Fatalf("described %+v / %+v", d.Change, d.BaselineChange)
	}
	said := &rollout.Change{Version: "v2", Commit: "9f3c2ab"}
	d = a.describeDeploy(ctx, rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1", Change: said})
	if d.Change != said || d.BaselineChange == nil || d.BaselineChange.Version != "v1" {
		t.Fatalf("described %+v / %+v", d.Change, d.BaselineChange)
	}
	ex.asked = nil
	if d := a.describeDeploy(ctx, rollout.Event{Service: "checkout", Version: "v2", Change: said}); d.BaselineChange != nil || len(ex.asked) != 0 {
		t.Fatalf("asked %v with nothing to learn", ex.asked)
	}
	ex.err = errors.New("forbidden")
	if d := a.describeDeploy(ctx, rollout.Event{Service: "checkout", Version: "v2", Baseline: "v1"}); d.Change != nil || d.BaselineChange != nil {
		t.Fatalf("a failed describe changed the deploy: %+v", d)
	}
	if d := a.describeDeploy(ctx, rollout.Event{Service: "cart", Version: "v2"}); d.Change != nil {
		t.Fatal("a service not configured described")
	}
}
