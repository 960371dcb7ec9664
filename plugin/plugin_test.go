package plugin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/notify/pagerduty"
	"github.com/rollback-guardian/guardian/notify/teams"
)

// Each executor type builds (or, left out of this build, fails with the
// slim build's message); a nil configuration is no executor.
func TestExecutor(t *testing.T) {
	left := map[string]bool{}
	for _, k := range config.LeftOut() {
		left[k] = true
	}
	for _, tc := range []struct {
		key  string
		exec *config.Executor
		name string
	}{
		{"rollback executor command", &config.Executor{Command: &config.CommandExecutor{Command: []string{"true"}}}, "command true"},
		{"rollback executor webhook", &config.Executor{Webhook: &config.WebhookExecutor{URL: "http://127.0.0.1:1/rollback"}}, "webhook"},
		{"rollback executor kubernetes", &config.Executor{Kubernetes: &config.KubernetesExecutor{
			Connection: config.KubernetesConnection{Kubeconfig: "/nonexistent", Namespace: "shop"}, Deployment: "checkout"}}, ""},
		{"rollback executor helm", &config.Executor{Helm: &config.HelmExecutor{
			Connection: config.KubernetesConnection{Kubeconfig: "/nonexistent", Namespace: "shop"}, Release: "checkout"}}, ""},
	} {
		t.Run(tc.key, func(t *testing.T) {
			x, name, err := Executor(tc.exec, zap.NewNop(), t.TempDir())
			switch {
			case left[tc.key]:
				if err == nil || !strings.Contains(err.Error(), "slim build") || x != nil {
					t.Fatalf("left out of this build, yet %v, %v", x, err)
				}
			case tc.name == "":
				// Needs an API server: building may fail on the missing
				// kubeconfig, but never as a slim build.
				if err != nil && strings.Contains(err.Error(), "slim build") {
					t.Fatalf("the full build calls itself slim: %v", err)
				}
			default:
				if err != nil || x == nil || name != tc.name {
					t.Fatalf("%v %q %v", x, name, err)
				}
			}
		})
	}
	if x, name, err := Executor(nil, zap.NewNop(), ""); x != nil || name != "" || err != nil {
		t.Fatalf("nil configuration: %v %q %v", x, name, err)
	}
	if _, _, err := Executor(&config.Executor{}, zap.NewNop(), ""); err == nil {
		t.Fatal("an executor without a type")
	}
	if _, _, err := DeployFeed("checkout", &config.KubernetesDeploy{Kubeconfig: "/nonexistent", Namespace: "shop", Deployment: "checkout"}, zap.NewNop()); err == nil {
		t.Fatal("a deploy feed without a kubeconfig")
	} else if left["deploy.kubernetes"] != strings.Contains(err.Error(), "slim build") {
		t.Fatalf("deploy feed: %v", err)
	}
}

// A configuration with a PagerDuty and a Teams receiver builds both, their
// secrets read from files; a notifier without a receiver type fails.
func TestNotifiersPagerDutyTeams(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"pd-key":    "0123456789abcdef0123456789abcdef\n",
		"teams-url": "https://example.invalid/workflows/abc/triggers/manual/paths/invoke?sig=SECRET\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "guardian.yml")
	if err := os.WriteFile(path, []byte(`
services:
  - name: checkout
    scrape: { url: "http://127.0.0.1:8080/metrics" }
    triggers:
      - name: errors
        query: 'up{version="{{.Version}}"}'
        below: 1
    notify: [pager, channel]
notifiers:
  - name: pager
    pagerduty:
      routing_key_file: pd-key
      templates: { title: "{{.Service}}: {{.Text}}" }
  - name: channel
    teams:
      url_file: teams-url
      templates: { text: "{{.Text}}" }
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := Notifiers(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ns["pager"].(*pagerduty.Notifier); !ok {
		t.Errorf("pager is a %T", ns["pager"])
	}
	if _, ok := ns["channel"].(*teams.Notifier); !ok {
		t.Errorf("channel is a %T", ns["channel"])
	}
	if _, err := Notifiers(&config.Config{Notifiers: []config.Notifier{{Name: "none"}}}, zap.NewNop()); err == nil {
		t.Error("a notifier without a receiver type")
	}
}
