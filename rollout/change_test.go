package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// What an announcement says a deploy changed is remembered with its
// version: the next deploy's event carries it as its baseline's, and it
// survives a restart (the detector's state).
func TestAnnounceChange(t *testing.T) {
	ts := time.Unix(1_700_000_000, 0)
	d := newDetector(t)
	v1 := Change{Commit: "1111111", Author: "alice", ChangeURL: "https://git.example/pull/1"}
	ev, err := d.AnnounceChange("v1", "", v1, ts)
	if err != nil {
		t.Fatal(err)
	}
	v1.Version = "v1"
	if ev.Change == nil || !reflect.DeepEqual(*ev.Change, v1) || ev.BaselineChange != nil {
		t.Fatalf("first deploy: change %+v baseline %+v", ev.Change, ev.BaselineChange)
	}
	v2 := Change{Commit: "2222222", Author: "bob"}
	ev, err = d.AnnounceChange("v2", "", v2, ts.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	v2.Version = "v2"
	if ev.Baseline != "v1" || ev.Change == nil || !reflect.DeepEqual(*ev.Change, v2) ||
		ev.BaselineChange == nil || !reflect.DeepEqual(*ev.BaselineChange, v1) {
		t.Fatalf("second deploy: %+v change %+v baseline %+v", ev, ev.Change, ev.BaselineChange)
	}
	// Kubernetes adds the images later: merged, the announcement's fields kept.
	d.Describe(Change{Version: "v2", Images: []string{"checkout:v2"}, Chart: "checkout-1.2.0"})
	got := d.ChangeOf("v2")
	if got == nil || got.Commit != "2222222" || got.Author != "bob" || !reflect.DeepEqual(got.Images, []string{"checkout:v2"}) || got.Chart != "checkout-1.2.0" {
		t.Fatalf("merged change %+v", got)
	}
	// A copy: changing it changes nothing remembered.
	got.Images[0] = "changed"
	if d.ChangeOf("v2").Images[0] != "checkout:v2" {
		t.Fatal("ChangeOf returned the remembered slice")
	}
	// An unknown version is not described; nothing is known of it.
	d.Describe(Change{Version: "v9", Commit: "9"})
	if d.ChangeOf("v9") != nil || d.ChangeOf("") != nil {
		t.Fatal("a version never seen was described")
	}

	// Through a restart.
	b, err := json.Marshal(d.State())
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	r := newDetector(t)
	r.Restore(st)
	if c := r.ChangeOf("v1"); c == nil || !reflect.DeepEqual(*c, v1) {
		t.Fatalf("restored v1 change %+v", c)
	}
	// The version query then sees v3: its event carries v2's change as the baseline's.
	if _, err := r.Observe(context.Background(), ts.Add(2*time.Minute), versions(map[string]float64{"v2": 1})); err != nil {
		t.Fatal(err)
	}
	ev2, err := r.Observe(context.Background(), ts.Add(3*time.Minute), versions(map[string]float64{"v2": 1, "v3": 1}))
	if err != nil || ev2 == nil {
		t.Fatalf("v3 not seen: %v %v", ev2, err)
	}
	if ev2.Change != nil || ev2.BaselineChange == nil || ev2.BaselineChange.Commit != "2222222" {
		t.Fatalf("v3: change %+v baseline %+v", ev2.Change, ev2.BaselineChange)
	}
	// The event of a plain Announce carries nothing new.
	ev, err = d.Announce("v4", "", ts)
	if err != nil || ev.Change != nil || ev.BaselineChange == nil || ev.BaselineChange.Version != "v2" {
		t.Fatalf("plain announce: %+v %v", ev, err)
	}
}

func TestChangeValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Change
		want string // "" when valid
	}{
		{"empty", Change{}, ""},
		{"all", Change{Commit: "9f3c2ab", Author: "Dana Scully <dana@example.com>", ChangeURL: "http://git.example/pull/812?tab=files#x"}, ""},
		{"commit with a space", Change{Commit: "abc def"}, "has spaces"},
		{"commit too long", Change{Commit: strings.Repeat("a", MaxCommit+1)}, "longer than 64"},
		{"commit not UTF-8", Change{Commit: "\xff"}, "not valid UTF-8"},
		{"author with a newline", Change{Author: "a\nb"}, "control characters"},
		{"author too long", Change{Author: strings.Repeat("a", MaxAuthor+1)}, "longer than 256"},
		{"url scheme", Change{ChangeURL: "javascript:alert(1)"}, "not an absolute http or https URL"},
		{"url without host", Change{ChangeURL: "https:///x"}, "not an absolute http or https URL"},
		{"url relative", Change{ChangeURL: "pull/1"}, "not an absolute http or https URL"},
		{"url credentials", Change{ChangeURL: "https://user:pw@git.example/"}, "credentials"},
		{"url unparsable", Change{ChangeURL: "https://git.example/%zz"}, "change_url"},
		{"url too long", Change{ChangeURL: "https://git.example/" + strings.Repeat("a", MaxChangeURL)}, "longer than 2048"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid change refused: %v", err)
			case tc.want != "" && (!errors.Is(err, ErrInvalidChange) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err %v, want ErrInvalidChange mentioning %q", err, tc.want)
			}
		})
	}
	d := newDetector(t)
	if _, err := d.AnnounceChange("v1", "", Change{ChangeURL: "ftp://x"}, time.Now()); !errors.Is(err, ErrInvalidChange) || d.Known("v1") {
		t.Fatalf("an invalid change was announced: %v", err)
	}
}
