package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin and friends without a system zoneinfo

	"github.com/rollback-guardian/guardian/incident"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// generatedAt is the fixed generation time of the golden reports.
var generatedAt = time.Date(2025, 3, 28, 15, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return generatedAt }

func loadLocation(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}

// golden compares got with testdata/name, rewriting it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test ./report -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test ./report -update and review the diff)\n--- got ---\n%s", path, got)
	}
}

// resolvedInvite schedules the resolved fixture's post-mortem.
func resolvedInvite(t *testing.T) (time.Time, *Invite) {
	t.Helper()
	r := resolved()
	start, err := Schedule(*r.ResolvedAt, postmortem())
	if err != nil {
		t.Fatal(err)
	}
	inv, err := NewInvite(r, start, postmortem())
	if err != nil {
		t.Fatal(err)
	}
	return start, &inv
}

func TestGolden(t *testing.T) {
	_, inv := resolvedInvite(t)
	for _, tc := range []struct {
		name string
		r    incident.Record
		opts Options
	}{
		{"resolved", resolved(), Options{Now: fixedNow, Postmortem: inv}},
		{"held", held(), Options{Now: fixedNow}},
		{"failed", failedRollback(), Options{Now: fixedNow}},
		{"escalated", escalated(), Options{Now: fixedNow, Location: loadLocation(t, "Europe/Berlin")}},
		{"sequential", sequentialResolved(), Options{Now: fixedNow}},
		{"requested", requested(), Options{Now: fixedNow}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md, err := Markdown(tc.r, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".md.golden", md)
			js, err := JSON(tc.r, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(js) {
				t.Fatalf("JSON report is not valid JSON:\n%s", js)
			}
			golden(t, tc.name+".json.golden", js)
		})
	}
	t.Run("resolved invite", func(t *testing.T) {
		start, _ := resolvedInvite(t)
		ics, err := ICS(resolved(), start, postmortem(), generatedAt)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "resolved.ics.golden", ics)
	})
}

func TestMarkdownSections(t *testing.T) {
	_, inv := resolvedInvite(t)
	md, err := Markdown(resolved(), Options{Now: fixedNow, Postmortem: inv})
	if err != nil {
		t.Fatal(err)
	}
	s := string(md)
	for _, want := range []string{
		"# Incident #12 — checkout v2.4.1 rolled back to v2.4.0\n",
		"- **Severity:** SEV-1\n",
		"## Summary\n", "## Impact\n", "## Trigger evidence\n", "## Go/no-go\n",
		"## Actions\n", "## Timeline\n", "## Resolution\n",
		"```promql\n" + errorQuery + "\n```\n",
		"by policy auto\\_after (automatic, no human decision)",
		"Post-mortem scheduled for Mon 2025-03-31 10:00 CEST (Mon 2025-03-31 08:00 UTC), 1h0m0s",
		"- Preliminary root cause: to be determined in the post-mortem.\n",
		"live: the baseline version was still serving",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// Sections come in the documented order.
	last := -1
	for _, h := range []string{"## Summary", "## Impact", "## Trigger evidence", "## Go/no-go", "## Actions", "## Timeline", "## Resolution", "### Follow-ups"} {
		i := strings.Index(s, h)
		if i <= last {
			t.Errorf("section %q at %d, after the previous one at %d", h, i, last)
		}
		last = i
	}
	if strings.Contains(s, "still open") {
		t.Error("a resolved incident is reported as still open")
	}
}

func TestSummaryNamesEvidenceAndOutcome(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    incident.Record
		want []string
	}{
		{"resolved", resolved(), []string{
			"checkout v2.4.1 was deployed at 2025-03-28 14:00:00 UTC and detected as bad at 14:03:10 UTC, 3m10s later.",
			"Trigger error-rate fired: value 0.079 against > 0.05 and > 2x baseline v2.4.0 (0.004, live); 1534 requests.",
			"The rollback to v2.4.0 was approved by policy auto_after (automatic) at 14:08:10 UTC",
			"the application rollback through kubernetes succeeded at 14:09:26 UTC after 1m15s.",
			"Recovery was verified at 14:11:26 UTC and the incident was resolved at 14:11:30 UTC, 8m20s after detection.",
		}},
		{"held", held(), []string{
			"The rollback to v2.4.0 was denied (no-go) by token:alice at 14:04:30 UTC: “known issue | fix in v2.4.2 rolling forward instead”.",
			"No rollback was performed: checkout v2.4.1 is still serving",
		}},
		{"failed", failedRollback(), []string{
			"the application rollback through helm failed at 14:10:01 UTC: helm rollback checkout 41: exit status 1 (…)",
			"The rollback failed: checkout v2.4.1 may still be serving",
		}},
		{"escalated", escalated(), []string{
			"The database step was approved by token:carol at 14:20:05 UTC; the database rollback through command succeeded at 14:21:36 UTC after 1m30s.",
			"escalated to a human",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Summary(tc.r, nil)
			for _, w := range tc.want {
				if !strings.Contains(s, w) {
					t.Errorf("summary lacks %q:\n%s", w, s)
				}
			}
			if strings.Contains(s, "root cause:") && !strings.Contains(s, "to be determined") {
				t.Errorf("summary invents a root cause: %s", s)
			}
		})
	}
}

func TestTimelineOrder(t *testing.T) {
	r := resolved()
	// Entries appended out of order (say, after a restart) are reported in
	// time order, equal times in their recorded order.
	tl := r.Timeline
	tl[0], tl[len(tl)-1] = tl[len(tl)-1], tl[0]
	md, err := Markdown(r, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(string(md), "\n") {
		if strings.HasPrefix(l, "| 2025-") {
			rows = append(rows, l)
		}
	}
	want := []string{
		"| 2025-03-28 14:00:00 UTC | -3m10s | deploy.seen |",
		"| 2025-03-28 14:02:40 UTC | -30s | trigger.pending |",
		"| 2025-03-28 14:03:10 UTC | +0s | incident.declared |",
		"| 2025-03-28 14:03:10 UTC | +0s | approval.requested |",
		"| 2025-03-28 14:08:10 UTC | +5m0s | approval.granted |",
		"| 2025-03-28 14:08:11 UTC | +5m1s | rollback.started |",
		"| 2025-03-28 14:09:26 UTC | +6m16s | rollback.succeeded |",
		"| 2025-03-28 14:11:26 UTC | +8m16s | recovery.confirmed |",
		"| 2025-03-28 14:11:30 UTC | +8m20s | incident.resolved |",
	}
	if len(rows) != len(want) {
		t.Fatalf("got %d timeline rows, want %d:\n%s", len(rows), len(want), strings.Join(rows, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(rows[i], want[i]) {
			t.Errorf("row %d = %q, want prefix %q", i, rows[i], want[i])
		}
	}
	if r.Timeline[0].Type != "incident.resolved" {
		t.Error("Markdown reordered the caller's timeline")
	}
}

func dur(d time.Duration) *time.Duration { return &d }

func TestIntervals(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    incident.Record
		want Intervals
	}{
		{"resolved", resolved(), Intervals{
			DeployToDetection:      dur(sec(3, 10)),
			DetectionToApproval:    dur(sec(5, 0)),
			ApprovalToRollbackDone: dur(sec(1, 16)),
			Rollback:               dur(sec(1, 15)),
			RollbackDoneToRecovery: dur(sec(2, 0)),
			TimeToResolve:          dur(sec(8, 20)),
			DeployToRecovery:       dur(sec(11, 26)),
		}},
		{"held", held(), Intervals{DeployToDetection: dur(sec(3, 10))}},
		{"failed", failedRollback(), Intervals{DeployToDetection: dur(sec(3, 10)), DetectionToApproval: dur(sec(1, 50))}},
		{"unknown deploy time", func() incident.Record { r := resolved(); r.DeployedAt = time.Time{}; return r }(), Intervals{
			DetectionToApproval:    dur(sec(5, 0)),
			ApprovalToRollbackDone: dur(sec(1, 16)),
			Rollback:               dur(sec(1, 15)),
			RollbackDoneToRecovery: dur(sec(2, 0)),
			TimeToResolve:          dur(sec(8, 20)),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := IntervalsOf(tc.r)
			check := func(name string, g, w *time.Duration) {
				switch {
				case g == nil && w == nil:
				case g == nil || w == nil:
					t.Errorf("%s = %v, want %v", name, fmtPtr(g), fmtPtr(w))
				case *g != *w:
					t.Errorf("%s = %v, want %v", name, *g, *w)
				}
			}
			check("DeployToDetection", got.DeployToDetection, tc.want.DeployToDetection)
			check("DetectionToApproval", got.DetectionToApproval, tc.want.DetectionToApproval)
			check("ApprovalToRollbackDone", got.ApprovalToRollbackDone, tc.want.ApprovalToRollbackDone)
			check("Rollback", got.Rollback, tc.want.Rollback)
			check("RollbackDoneToRecovery", got.RollbackDoneToRecovery, tc.want.RollbackDoneToRecovery)
			check("TimeToResolve", got.TimeToResolve, tc.want.TimeToResolve)
			check("DeployToRecovery", got.DeployToRecovery, tc.want.DeployToRecovery)
		})
	}
}

func fmtPtr(d *time.Duration) string {
	if d == nil {
		return "nil"
	}
	return d.String()
}

func TestJSONImpactSeconds(t *testing.T) {
	js, err := JSON(resolved(), Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		SchemaVersion int                 `json:"schema_version"`
		Impact        map[string]*float64 `json:"impact"`
		Postmortem    *Invite             `json:"postmortem"`
		GeneratedAt   time.Time           `json:"generated_at"`
		Incident      incident.Record     `json:"incident"`
	}
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"deploy_to_detection_seconds":       190,
		"detection_to_approval_seconds":     300,
		"approval_to_rollback_done_seconds": 76,
		"rollback_seconds":                  75,
		"rollback_done_to_recovery_seconds": 120,
		"time_to_resolve_seconds":           500,
		"deploy_to_recovery_seconds":        686,
	}
	if len(got.Impact) != len(want) {
		t.Errorf("impact has %d keys, want %d: %v", len(got.Impact), len(want), got.Impact)
	}
	for k, w := range want {
		if g := got.Impact[k]; g == nil || *g != w {
			t.Errorf("impact.%s = %v, want %v", k, g, w)
		}
	}
	if got.SchemaVersion != 1 || !got.GeneratedAt.Equal(generatedAt) || got.Postmortem != nil {
		t.Errorf("schema_version %d, generated_at %v, postmortem %v", got.SchemaVersion, got.GeneratedAt, got.Postmortem)
	}
	if got.Incident.ID != 12 || len(got.Incident.Timeline) != len(resolved().Timeline) {
		t.Errorf("incident does not round-trip: id %d, %d entries", got.Incident.ID, len(got.Incident.Timeline))
	}
}

func TestJSONKeepsKeysWhenNotReached(t *testing.T) {
	js, err := JSON(held(), Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema_version", "title", "summary", "incident", "impact", "postmortem", "generated_at"} {
		if _, ok := got[k]; !ok {
			t.Errorf("key %q missing", k)
		}
	}
	var impact map[string]*float64
	if err := json.Unmarshal(got["impact"], &impact); err != nil {
		t.Fatal(err)
	}
	if v, ok := impact["time_to_resolve_seconds"]; !ok || v != nil {
		t.Errorf("time_to_resolve_seconds = %v (present %v), want null", v, ok)
	}
	if string(got["postmortem"]) != "null" {
		t.Errorf("postmortem = %s, want null", got["postmortem"])
	}
}

func TestMissingTimestampsSayNotReached(t *testing.T) {
	md, err := Markdown(held(), Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	s := string(md)
	for _, want := range []string{
		"| Deploy → detection | 3m10s |",
		"| Detection → approval | not reached |",
		"| Approval → rollback done | not reached |",
		"| Rollback (started → done) | not reached |",
		"| Rollback done → recovery | not reached |",
		"| Time to resolve (detection → resolved) | not reached |",
		"| Impact window (deploy → recovery) | not reached |",
		"- **Resolved:** not reached\n",
		"No rollback action was started.",
		"- The incident is still open (state held)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, bad := range []string{"0001-01-01", "-2562047h"} {
		if strings.Contains(s, bad) {
			t.Errorf("report shows a zero time as %q", bad)
		}
	}

	r := held()
	r.DeployedAt = time.Time{}
	md, err = Markdown(r, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "| Deploy → detection | unknown (deploy time not recorded) |") ||
		!strings.Contains(string(md), "- **Deployed:** not recorded") || strings.Contains(string(md), "0001-01-01") {
		t.Errorf("unknown deploy time not reported as such:\n%s", md)
	}
}

// unescapedPipes counts the | of a table row that are not escaped.
func unescapedPipes(row string) int {
	n := 0
	for i := 0; i < len(row); i++ {
		switch row[i] {
		case '\\':
			i++
		case '|':
			n++
		}
	}
	return n
}

func TestEscaping(t *testing.T) {
	md, err := Markdown(held(), Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	s := string(md)
	wantReason := `known issue \| fix in v2.4.2<br>rolling forward instead`
	if !strings.Contains(s, "Reason: "+wantReason+"\n") {
		t.Errorf("go/no-go reason not escaped as %q", wantReason)
	}
	if !strings.Contains(s, "| approval.denied | token:alice | no-go: checkout stays on v2.4.1: "+wantReason+"<br>step=application |\n") {
		t.Errorf("timeline cell not escaped as %q", wantReason)
	}
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "rolling forward") {
			t.Errorf("the reason's line break escaped the Markdown structure: %q", l)
		}
		if strings.HasPrefix(l, "| 2025-") && unescapedPipes(l) != 6 {
			t.Errorf("timeline row has %d cell separators, want 6: %q", unescapedPipes(l), l)
		}
	}
}

func TestEsc(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain v2.4.1 text", "plain v2.4.1 text"},
		{"a|b", `a\|b`},
		{"line1\nline2\r\nline3\rline4", "line1<br>line2<br>line3<br>line4"},
		{"*bold* _it_ `code` [link](x) <b> ~s~ &amp; \\", `\*bold\* \_it\_ \` + "`" + `code\` + "`" + ` \[link\](x) \<b> \~s\~ \&amp; \\`},
		{"# heading", `\# heading`},
		{"> quote", `\> quote`},
		{"- item", `\- item`},
		{"12. item", `12\. item`},
		{"1) item", `1\) item`},
		{"v1.2", "v1.2"},
		{"a > b - c", "a > b - c"},
		{"bell\x07 and tab\t", "bell and tab "},
		{"bad \xff utf8", "bad \uFFFD utf8"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := esc(tc.in); got != tc.want {
				t.Errorf("esc(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCodeBlockFence(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain", "up{job=\"x\"}", "```promql\nup{job=\"x\"}\n```\n"},
		{"triple backticks inside", "a\n```\nb", "````promql\na\n```\nb\n````\n"},
		{"crlf and trailing newlines", "a\r\nb\n\n", "```promql\na\nb\n```\n"},
		{"escape sequences dropped", "\x1b[31mred\x1b[0m", "```promql\n[31mred[0m\n```\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			codeBlock(&b, "promql", tc.in)
			if b.String() != tc.want {
				t.Errorf("got %q, want %q", b.String(), tc.want)
			}
		})
	}
}

func TestNaNNeverAppears(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	r := resolved()
	r.Evidence.Value = &nan
	r.Evidence.BaselineValue = &inf
	r.Evidence.SampleSize = &nan
	r.Impact = incident.Impact{PeakValue: &nan, BaselineValue: &nan, FailedRequests: &inf}
	md, err := Markdown(r, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	js, err := JSON(r, Options{Now: fixedNow})
	if err != nil {
		t.Fatalf("JSON with NaN values: %v", err)
	}
	for name, out := range map[string][]byte{"markdown": md, "json": js} {
		for _, bad := range []string{"NaN", "Inf"} {
			if bytes.Contains(out, []byte(bad)) {
				t.Errorf("%s report contains %q", name, bad)
			}
		}
	}
	if !bytes.Contains(md, []byte("- **Peak value:** unknown")) || !bytes.Contains(md, []byte("- **Estimated failed requests:** unknown")) {
		t.Errorf("non-finite impact not reported as unknown:\n%s", md)
	}
	if *r.Evidence.SampleSize == *r.Evidence.SampleSize {
		t.Error("JSON changed the caller's record")
	}
	// A zero baseline gives no ratio rather than +Inf.
	r = resolved()
	r.Impact.BaselineValue = f64(0)
	md, err = Markdown(r, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(md, []byte("- **Peak value:** 0.21 vs baseline 0\n")) {
		t.Errorf("zero baseline: %s", md)
	}
}

func TestInvalidRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    incident.Record
	}{
		{"no id", incident.Record{Service: "checkout"}},
		{"no service", incident.Record{ID: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Markdown(tc.r, Options{}); !errors.Is(err, ErrInvalidRecord) {
				t.Errorf("Markdown: %v, want ErrInvalidRecord", err)
			}
			if _, err := JSON(tc.r, Options{}); !errors.Is(err, ErrInvalidRecord) {
				t.Errorf("JSON: %v, want ErrInvalidRecord", err)
			}
			if _, err := Write(t.TempDir(), tc.r, Options{}, nil); !errors.Is(err, ErrInvalidRecord) {
				t.Errorf("Write: %v, want ErrInvalidRecord", err)
			}
		})
	}
}

func TestLocation(t *testing.T) {
	md, err := Markdown(resolved(), Options{Now: fixedNow, Location: loadLocation(t, "America/New_York")})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| Time (America/New\\_York) |", "| 2025-03-28 10:03:10 EDT | +0s | incident.declared |", "- **Detected:** 2025-03-28 10:03:10 EDT"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestLongOutputKeepsTail(t *testing.T) {
	r := resolved()
	a := r.Actions["incident-12/rollback.application"]
	a.Output = strings.Repeat("ü", maxOutput) + "\nLAST LINE"
	md, err := Markdown(r, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(md, []byte("LAST LINE\n```")) || !bytes.Contains(md, []byte("bytes omitted, see the JSON report")) {
		t.Error("long output not cut to its tail with a note")
	}
	if !bytes.Equal(bytes.ToValidUTF8(md, nil), md) {
		t.Error("cutting the output split a UTF-8 sequence")
	}
	js, err := JSON(r, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ Incident incident.Record }
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if back.Incident.Actions["incident-12/rollback.application"].Output != a.Output {
		t.Error("JSON report does not keep the full output")
	}
}
