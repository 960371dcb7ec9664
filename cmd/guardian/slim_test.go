package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rollback-guardian/guardian/config"
)

// TestSlimBuild: `guardian check` names each feature a slim build left out
// where the file uses it, with its line and the build tag, and `guardian
// version` says what the build lacks; the full build keeps everything. Run
// it in every flavour: go test -tags nokubernetes ./cmd/guardian/.
func TestSlimBuild(t *testing.T) {
	const file = "../../config/testdata/good/slim.yml"
	nokubernetes := []string{
		"global.cluster: this Guardian is a slim build without Kubernetes clustering (built with -tags nokubernetes); use the full build (line 4)",
		"services[0].deploy.kubernetes: this Guardian is a slim build without Kubernetes deploy detection (built with -tags nokubernetes); use the full build (line 9)",
		"services[0].rollback.application.kubernetes: this Guardian is a slim build without the kubernetes executor (built with -tags nokubernetes); use the full build (line 16)",
		"services[1].rollback.application.helm: this Guardian is a slim build without the helm executor (built with -tags nokubernetes); use the full build (line 27)",
		"services[2].rollback.application.argo_rollouts: this Guardian is a slim build without the argo_rollouts executor (built with -tags nokubernetes); use the full build (line 36)",
	}
	tags := config.SlimTags()
	want, ok := map[string][]string{
		"": nil,
		"nohelm": {
			"services[1].rollback.application.helm: this Guardian is a slim build without the helm executor (built with -tags nohelm); use the full build (line 27)",
		},
		"nokubernetes":        nokubernetes,
		"nohelm,nokubernetes": nokubernetes,
	}[tags]
	if !ok {
		t.Fatalf("no expectations for a build with -tags %s", tags)
	}

	var out, errb bytes.Buffer
	code := run([]string{"check", file}, &out, &errb)
	if len(want) == 0 {
		if code != 0 {
			t.Fatalf("the full build: exit %d\n%s", code, errb.String())
		}
	} else {
		if code != 1 {
			t.Fatalf("a build with -tags %s: exit %d, want 1; stdout %q", tags, code, out.String())
		}
		lines := make([]string, len(want))
		for i, w := range want {
			lines[i] = file + ": " + w
		}
		if got := strings.TrimSpace(errb.String()); got != strings.Join(lines, "\n") {
			t.Errorf("a build with -tags %s:\n%s\nwant:\n%s", tags, got, strings.Join(lines, "\n"))
		}
	}

	out.Reset()
	if code := run([]string{"version"}, &out, &errb); code != 0 {
		t.Fatalf("version: exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	switch {
	case tags == "" && strings.Contains(out.String(), "slim"):
		t.Errorf("the full build's version says it is slim:\n%s", out.String())
	case tags != "" && last != "slim build (-tags "+tags+"), without: "+strings.Join(config.LeftOut(), ", "):
		t.Errorf("a slim build's version does not say what it lacks:\n%s", out.String())
	}
}
