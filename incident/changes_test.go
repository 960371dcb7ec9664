package incident

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/rollout"
)

// What the deploy changed, as the detector knew it, is on the incident
// and persisted with it; what is unknown is left out.
func TestDeclareCarriesChanges(t *testing.T) {
	h := newHarness(t, nil, approval.Policy{Mode: approval.Manual}, false)
	d, v := firing()
	d.Change = &rollout.Change{Version: "v2", Commit: "9f3c2ab", Author: "alice", ChangeURL: "https://git.example/pull/812", Images: []string{"checkout:v2"}}
	d.BaselineChange = &rollout.Change{Version: "v1", Images: []string{"checkout:v1"}, Chart: "checkout-1.7.3"}
	rec, created, err := h.m.Declare(context.Background(), d, v, nil, "SEV-1")
	if err != nil || !created {
		t.Fatalf("declare: %v %v", err, created)
	}
	want := []rollout.Change{*d.Change, *d.BaselineChange}
	if !reflect.DeepEqual(rec.Changes, want) {
		t.Fatalf("changes %+v, want %+v", rec.Changes, want)
	}
	// As stored: read back and through JSON.
	got, err := h.m.Get(context.Background(), rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	var back Record
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back.Changes, want) {
		t.Fatalf("stored changes %+v (%v)", back.Changes, err)
	}

	for _, tc := range []struct {
		name string
		d    rollout.Event
		want int
	}{
		{"nothing known", rollout.Event{Version: "v2"}, 0},
		{"an empty change", rollout.Event{Version: "v2", Change: &rollout.Change{Version: "v2"}}, 0},
		{"the baseline's only", rollout.Event{Version: "v2", BaselineChange: &rollout.Change{Version: "v1", Commit: "1"}}, 1},
	} {
		if got := ChangesOf(tc.d); len(got) != tc.want {
			t.Errorf("%s: %d changes, want %d", tc.name, len(got), tc.want)
		}
	}
}

func TestReportEntriesHTML(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	res := ReportResult{Markdown: "/r/incident-1.md", JSON: "/r/incident-1.json", HTML: "/r/incident-1.html"}
	e := ReportEntries(Record{ID: 1}, res, now)
	if len(e) != 1 || e[0].Data["html"] != res.HTML || e[0].Data["markdown"] != res.Markdown {
		t.Fatalf("entries %+v", e)
	}
	res.HTML = ""
	if e := ReportEntries(Record{ID: 1}, res, now); len(e) != 1 {
		t.Fatalf("entries %+v", e)
	} else if _, ok := e[0].Data["html"]; ok {
		t.Fatal("an html entry without an HTML report")
	}
	// The record keeps the HTML report's path.
	r := Record{ID: 1, State: Resolved}
	if _, err := r.reported(Reported{Result: ReportResult{HTML: "/r/incident-1.html"}}, now); err != nil || r.Report == nil || r.Report.HTML != "/r/incident-1.html" {
		t.Fatalf("report files %+v (%v)", r.Report, err)
	}
}
