package watch

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/rollback-guardian/guardian/rollout"
)

// The watch's deploy carries what the deploy changed: from the
// announcement, and from a workload watcher with the baseline's images,
// merged with what was announced of the same versions. The saved state
// keeps it for a restart.
func TestDeployCarriesChanges(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	f.svc.Learn(ctx, "v1", t0)
	last := func() savedState {
		t.Helper()
		var st savedState
		if err := json.Unmarshal(f.saved[len(f.saved)-1], &st); err != nil || st.Watch == nil {
			t.Fatalf("saved state %s: %v", f.saved[len(f.saved)-1], err)
		}
		return st
	}
	ev, err := f.svc.AnnounceChange(ctx, "v2", "", rollout.Change{Commit: "2222222", Author: "bob"}, tick(1))
	if err != nil || ev.Change == nil || ev.Change.Commit != "2222222" || ev.BaselineChange != nil {
		t.Fatalf("AnnounceChange = %+v, %v", ev, err)
	}
	if d := last().Watch.Deploy; d.Change == nil || d.Change.Author != "bob" {
		t.Fatalf("saved deploy %+v", d)
	}
	if _, err := f.svc.AnnounceChange(ctx, "v9", "", rollout.Change{ChangeURL: "file:///etc/passwd"}, tick(1)); err == nil {
		t.Fatal("an invalid change was announced")
	}
	// Kubernetes then rolls to v3; it knows v2's images too.
	f.svc.Deployed(ctx, rollout.Event{Service: "checkout", Version: "v3", Baseline: "v2", At: tick(2), Origin: rollout.OriginKubernetes,
		Change:         &rollout.Change{Version: "v3", Images: []string{"checkout:v3"}},
		BaselineChange: &rollout.Change{Version: "v2", Images: []string{"checkout:v2"}}})
	d := last().Watch.Deploy
	if d.Version != "v3" || d.Change == nil || !slices.Equal(d.Change.Images, []string{"checkout:v3"}) ||
		d.BaselineChange == nil || d.BaselineChange.Commit != "2222222" || !slices.Equal(d.BaselineChange.Images, []string{"checkout:v2"}) {
		t.Fatalf("saved deploy %+v: change %+v baseline %+v", d, d.Change, d.BaselineChange)
	}
}

// A person's rollback carries what is known of both versions too.
func TestRollbackTargetCarriesChanges(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	if _, err := f.svc.AnnounceChange(ctx, "v1", "", rollout.Change{Commit: "1111111"}, tick(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AnnounceChange(ctx, "v2", "", rollout.Change{Commit: "2222222"}, tick(1)); err != nil {
		t.Fatal(err)
	}
	d, _, err := f.svc.RollbackTarget("", tick(2))
	if err != nil || d.Change == nil || d.Change.Commit != "2222222" || d.BaselineChange == nil || d.BaselineChange.Commit != "1111111" {
		t.Fatalf("rollback target %+v (%v)", d, err)
	}
	if _, err := f.svc.AnnounceChange(ctx, "v3", "", rollout.Change{Commit: "3333333"}, tick(3)); err != nil {
		t.Fatal(err)
	}
	// To a version other than the watch's baseline: that version's change.
	d, _, err = f.svc.RollbackTarget("v1", tick(4))
	if err != nil || d.Change == nil || d.Change.Commit != "3333333" || d.BaselineChange == nil || d.BaselineChange.Commit != "1111111" {
		t.Fatalf("rollback target %+v (%v)", d, err)
	}
}
