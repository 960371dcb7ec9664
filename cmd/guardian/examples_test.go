package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollback-guardian/guardian/config"
)

// TestCheckExamples: every example configuration under examples/ (one per
// executor and per notifier) passes `guardian check` without a warning. A
// slim build refuses those using a feature it left out, saying so.
func TestCheckExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, f := range files {
		covered[strings.TrimSuffix(filepath.Base(f), ".yaml")] = true
		t.Run(filepath.Base(f), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run([]string{"check", f}, &out, &errb)
			if config.SlimTags() != "" && code == 1 && strings.Contains(errb.String(), "this Guardian is a slim build without") {
				return
			}
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, errb.String())
			}
			if !strings.Contains(out.String(), f+": OK (") || strings.Contains(out.String(), "warning") {
				t.Fatalf("stdout %q, stderr %q", out.String(), errb.String())
			}
		})
	}
	for _, want := range []string{
		"kubernetes", "helm", "argo-rollouts", "command", "webhook",
		"notify-webhook", "notify-alertmanager", "notify-slack", "notify-pagerduty", "notify-teams", "notify-statuspage",
	} {
		if !covered[want] {
			t.Errorf("examples/%s.yaml is missing", want)
		}
	}
}
