package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunPrintsTablesWithNoDoubleDriver(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run([]string{"-services", "500", "-shards", "16,32", "-replicas", "2,4", "-cycles", "1", "-plain", "3"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	var rows, plain int
	for line := range strings.SplitSeq(out.String(), "\n") {
		cells := strings.Split(line, "|")
		switch {
		case strings.HasPrefix(line, "| none"):
			plain++
		case len(cells) == 14 && strings.TrimSpace(cells[1]) != "shards" && !strings.HasPrefix(cells[1], "-"):
			rows++
			if got := strings.TrimSpace(cells[8]); got != "0 of 6 events" {
				t.Errorf("row %q: moves other than the leaver's or to the newcomer: %q", line, got)
			}
			if got := strings.TrimSpace(cells[11]); !strings.HasSuffix(got, "/ 0") {
				t.Errorf("row %q: ticks with a shard driven twice: %q", line, got)
			}
		}
	}
	// Two expiry rules × two shard counts × two replica counts, and the
	// plain row once.
	if rows != 8 || plain != 1 {
		t.Errorf("%d rows and %d plain rows, want 8 and 1:\n%s", rows, plain, out.String())
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-shards", "0"}, {"-replicas", "x"}, {"-expiry", "soon"}, {"-services", "0"}} {
		var out, errs bytes.Buffer
		if code := run(args, &out, &errs); code != 2 {
			t.Errorf("run %q: exit %d, want 2", args, code)
		}
	}
}
