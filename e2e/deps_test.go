package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// The stages that judge and decide are pure: they link no Kubernetes or
// Helm SDK and do not depend on the configuration's schema (app converts it
// into their own types), so imports point one way.
func TestPurePackagesLinkNoSDK(t *testing.T) {
	t.Parallel()
	const module = "github.com/rollback-guardian/guardian/"
	pure := []string{"trigger", "incident", "approval", "verify", "watch", "event", "rollout"}
	for _, pkg := range pure {
		out, err := exec.Command("go", "list", "-deps", "../"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps ./%s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			switch {
			case strings.HasPrefix(dep, "k8s.io/"), strings.HasPrefix(dep, "helm.sh/"), strings.HasPrefix(dep, "sigs.k8s.io/"):
				t.Errorf("%s links %s", pkg, dep)
			case dep == module+"config", strings.HasPrefix(dep, module+"config/"):
				t.Errorf("%s depends on %s", pkg, dep)
			case strings.HasPrefix(dep, module+"executor/"):
				t.Errorf("%s depends on the executor plugin %s", pkg, dep)
			}
		}
	}
	// And config itself holds plain configuration.
	out, err := exec.Command("go", "list", "-deps", "../config").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./config: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/") || strings.HasPrefix(dep, "helm.sh/") || strings.HasPrefix(dep, module+"executor/") {
			t.Errorf("config links %s", dep)
		}
	}
}
