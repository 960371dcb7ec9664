package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/zap/zaptest"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/executor"
	helmexec "github.com/rollback-guardian/guardian/executor/helm"
	kubeexec "github.com/rollback-guardian/guardian/executor/kubernetes"
	kubestore "github.com/rollback-guardian/guardian/store/kubernetes"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/web"
)

// The Helm chart in deploy/helm/guardian, rendered with the real helm CLI
// and judged document by document; its config.yaml goes through Guardian's
// own loader; TestChartInstall installs it into a real control plane.

const (
	chartPath      = "../deploy/helm/guardian"
	chartRelease   = "guardian"
	chartNamespace = "guardian-system"
	// chartKubeVersion is the cluster version `helm template` and `helm lint`
	// assume (a helm built with `go install` would otherwise assume 1.20,
	// older than the chart's kubeVersion).
	chartKubeVersion = "1.37.0"
)

// helmCLI returns the helm binary: the one the Kubernetes test environment
// builds into .cache/k8s/*/bin, or helm on PATH. Missing, it skips the test,
// or fails it when CI is set.
func helmCLI(t testing.TB) string {
	t.Helper()
	if dir, err := testenv.KubernetesBinDir(); err == nil {
		if p := filepath.Join(dir, "helm"); isExecutable(p) {
			return p
		}
	}
	matches, _ := filepath.Glob("../.cache/k8s/*/bin/helm")
	sort.Strings(matches)
	for i := len(matches) - 1; i >= 0; i-- {
		if abs, err := filepath.Abs(matches[i]); err == nil && isExecutable(abs) {
			return abs
		}
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("helm is required in CI but was found neither in .cache/k8s/*/bin nor on PATH (.ci/run builds it)")
	}
	t.Skip("helm not found in .cache/k8s/*/bin or on PATH (run `make test`, which builds it)")
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// chartValues writes a values file and returns its path.
func chartValues(t testing.TB, values string) string {
	t.Helper()
	p := filepath.Join(plainTempDir(t), "values.yaml")
	if err := os.WriteFile(p, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// plainTempDir is a temporary directory whose path has no commas or spaces,
// unlike t.TempDir's, which holds the test's name: helm splits -f on commas.
func plainTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "guardian-chart-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// runHelm runs helm with args and returns its standard output, or the error
// with what helm printed.
func runHelm(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helmCLI(t), args...)
	// Keep helm away from the user's repositories, cache and plugins.
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// kobj is one rendered Kubernetes object.
type kobj map[string]any

func (o kobj) kind() string { return str(o["kind"]) }
func (o kobj) name() string { return str(dig(o, "metadata", "name")) }
func (o kobj) namespace() string {
	return str(dig(o, "metadata", "namespace"))
}

// chartRender runs `helm template` with the given values and returns the
// objects in order.
func chartRender(t testing.TB, values string, extra ...string) []kobj {
	t.Helper()
	objs, err := chartRenderErr(t, values, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func chartRenderErr(t testing.TB, values string, extra ...string) ([]kobj, error) {
	t.Helper()
	args := append([]string{"template", chartRelease, chartPath, "--namespace", chartNamespace, "--kube-version", chartKubeVersion,
		"-f", chartValues(t, values)}, extra...)
	out, err := runHelm(t, args...)
	if err != nil {
		return nil, err
	}
	return decodeObjects(t, out), nil
}

func decodeObjects(t testing.TB, out []byte) []kobj {
	t.Helper()
	var objs []kobj
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		// Into a plain map: yaml.v3 gives nested mappings the type of the
		// outermost one, and the helpers expect map[string]any.
		var o map[string]any
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, out)
		}
		if o != nil {
			objs = append(objs, kobj(o))
		}
	}
	return objs
}

// find returns the objects of a kind.
func find(objs []kobj, kind string) []kobj {
	var r []kobj
	for _, o := range objs {
		if o.kind() == kind {
			r = append(r, o)
		}
	}
	return r
}

// one returns the single object of a kind and name ("" matches any name).
func one(t testing.TB, objs []kobj, kind, name string) kobj {
	t.Helper()
	var r []kobj
	for _, o := range find(objs, kind) {
		if name == "" || o.name() == name {
			r = append(r, o)
		}
	}
	if len(r) != 1 {
		t.Fatalf("want one %s %q, got %d among %s", kind, name, len(r), kinds(objs))
	}
	return r[0]
}

func kinds(objs []kobj) []string {
	var r []string
	for _, o := range objs {
		r = append(r, o.kind()+"/"+o.name())
	}
	return r
}

// dig walks maps by key and lists by int index; nil when a step is missing.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				if o, isObj := v.(kobj); isObj {
					m = o
				} else {
					return nil
				}
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// podSpec returns a Deployment's pod spec.
func podSpec(d kobj) map[string]any {
	s, _ := dig(d, "spec", "template", "spec").(map[string]any)
	return s
}

// container returns the named container of a pod spec.
func container(t testing.TB, spec map[string]any, name string) map[string]any {
	t.Helper()
	cs, _ := spec["containers"].([]any)
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	t.Fatalf("no container %q in %v", name, spec["containers"])
	return nil
}

// renderedConfig returns config.yaml from the chart's ConfigMap.
func renderedConfig(t testing.TB, objs []kobj) string {
	t.Helper()
	cm := one(t, objs, "ConfigMap", chartRelease)
	cfg := str(dig(cm, "data", "config.yaml"))
	if cfg == "" {
		t.Fatalf("ConfigMap %s has no config.yaml: %v", cm.name(), cm["data"])
	}
	return cfg
}

// loadRendered writes the rendered config.yaml into dir and loads it with
// Guardian's own loader, which is what `guardian check` runs.
func loadRendered(t testing.TB, objs []kobj, dir string) (*config.Config, error) {
	t.Helper()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(renderedConfig(t, objs)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.LoadFile(p)
	return cfg, err
}

func TestChartLint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, values string }{
		{"standalone defaults", ""},
		{"sidecar", "mode: sidecar\nsidecar: {podSelector: {app: checkout}}\n"},
		{"everything on", chartFullValues("/etc/guardian/auth", "/etc/guardian/secrets") + `
replicas: 1
persistence: {enabled: true, storageClass: fast}
serviceMonitor: {enabled: true, labels: {release: prometheus}}
podDisruptionBudget: {enabled: true}
monitoring: {rules: {enabled: true}, dashboard: {enabled: true}}
rbac:
  watchNamespaces: [shop, payments]
  deployDetection: true
  kubernetesExecutor: true
  argoRollouts: true
  helm: true
  leaderElection: true
  stateConfigMaps: true
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runHelm(t, "lint", "--strict", chartPath, "--namespace", chartNamespace, "--kube-version", chartKubeVersion,
				"-f", chartValues(t, tc.values))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(out, []byte("0 chart(s) failed")) {
				t.Fatalf("helm lint did not report success:\n%s", out)
			}
		})
	}
}

func TestChartModes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		values string
		want   []string // kind/name of every object, sorted
	}{
		{
			name:   "standalone defaults",
			values: "",
			want:   []string{"ConfigMap/guardian", "Deployment/guardian", "Service/guardian", "ServiceAccount/guardian"},
		},
		{
			name:   "sidecar",
			values: "mode: sidecar\n",
			// The Role lets Guardian record Events on its pod (sidecar.events).
			want: []string{"ConfigMap/guardian", "ConfigMap/guardian-sidecar", "Role/guardian-local", "RoleBinding/guardian-local", "ServiceAccount/guardian"},
		},
		{
			name:   "sidecar with a pod selector and a ServiceMonitor",
			values: "mode: sidecar\nsidecar: {podSelector: {app: checkout}}\nserviceMonitor: {enabled: true}\npodDisruptionBudget: {enabled: true}\n",
			// No PodDisruptionBudget: the pods are the application's.
			want: []string{"ConfigMap/guardian", "ConfigMap/guardian-sidecar", "Role/guardian-local", "RoleBinding/guardian-local",
				"Service/guardian", "ServiceAccount/guardian", "ServiceMonitor/guardian"},
		},
		{
			name:   "standalone with tokens, persistence and ServiceMonitor",
			values: "auth: {tokens: {ci: 0123456789abcdef0123}}\npersistence: {enabled: true}\nserviceMonitor: {enabled: true}\npodDisruptionBudget: {enabled: true}\n",
			// No PodDisruptionBudget: with one replica it would block every drain.
			want: []string{"ConfigMap/guardian", "Deployment/guardian", "PersistentVolumeClaim/guardian",
				"Secret/guardian", "Service/guardian", "ServiceAccount/guardian", "ServiceMonitor/guardian"},
		},
		{
			name:   "two replicas with a PodMonitor",
			values: "replicas: 2\npodMonitor: {enabled: true}\n",
			want: []string{"ConfigMap/guardian", "Deployment/guardian", "PodDisruptionBudget/guardian", "PodMonitor/guardian",
				"Role/guardian-local", "RoleBinding/guardian-local", "Service/guardian", "ServiceAccount/guardian"},
		},
		{
			name:   "two replicas without a PodDisruptionBudget",
			values: "replicas: 2\npodDisruptionBudget: {enabled: false}\n",
			want: []string{"ConfigMap/guardian", "Deployment/guardian", "Role/guardian-local", "RoleBinding/guardian-local",
				"Service/guardian", "ServiceAccount/guardian"},
		},
		{
			name:   "sidecar with a PodMonitor",
			values: "mode: sidecar\nsidecar: {podSelector: {app: checkout}}\nservice: {enabled: false}\npodMonitor: {enabled: true}\n",
			want: []string{"ConfigMap/guardian", "ConfigMap/guardian-sidecar", "PodMonitor/guardian", "Role/guardian-local",
				"RoleBinding/guardian-local", "ServiceAccount/guardian"},
		},
		{
			name:   "existing secrets and service account",
			values: "auth: {existingSecret: api-tokens}\nsecrets: {existingSecret: hooks}\nserviceAccount: {create: false, name: ops}\n",
			want:   []string{"ConfigMap/guardian", "Deployment/guardian", "Service/guardian"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := kinds(chartRender(t, tc.values))
			sort.Strings(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("rendered %v, want %v", got, tc.want)
			}
		})
	}
}

// chartFullValues sets a service, tokens and secret files with the given
// mount paths (a test points them at a temporary directory).
func chartFullValues(authPath, secretsPath string) string {
	return fmt.Sprintf(`
auth:
  mountPath: %[1]s
  tokens:
    ci: ci-token-0123456789abcdef
    oncall: oncall-token-0123456789abcdef
secrets:
  mountPath: %[2]s
  files:
    webhook-hmac: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    prometheus-password: hunter2hunter2
config:
  sources:
    - name: prom
      prometheus:
        url: http://prometheus.monitoring:9090
        basic_auth:
          username: guardian
          password_file: %[2]s/prometheus-password
  services:
    - name: checkout
      source: prom
      deploy:
        version_query: 'sum by (version) (rate(http_requests_total{service="{{.Service}}"}[1m]))'
      triggers:
        - name: error-rate
          query: >-
            (sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}",code=~"5.."}[{{.Window}}])) or vector(0))
            / sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}"}[{{.Window}}]))
          above: 0.05
          above_baseline: 2x
          for: 30s
      approval: {mode: auto_after, timeout: 5m}
      rollback:
        application:
          webhook:
            url: http://deployer.shop:8080/rollback
            secret_file: %[2]s/webhook-hmac
      notify: [oncall]
  notifiers:
    - name: oncall
      webhook:
        url: https://hooks.example.invalid/guardian
        secret_file: %[2]s/webhook-hmac
`, authPath, secretsPath)
}

func TestChartConfigLoads(t *testing.T) {
	t.Parallel()
	t.Run("defaults", func(t *testing.T) {
		cfg, err := loadRendered(t, chartRender(t, ""), t.TempDir())
		if err != nil {
			t.Fatalf("the default values' config.yaml does not load: %v", err)
		}
		if cfg.Global.ListenAddress != "0.0.0.0:9095" || cfg.Global.StateDir != "/var/lib/guardian" {
			t.Errorf("listen_address %q, state_dir %q: want 0.0.0.0:9095 and /var/lib/guardian", cfg.Global.ListenAddress, cfg.Global.StateDir)
		}
		if cfg.Global.Auth.TokensFile != "" {
			t.Errorf("tokens_file %q without tokens", cfg.Global.Auth.TokensFile)
		}
	})

	t.Run("services, tokens and secret files", func(t *testing.T) {
		// The Secret's files are put where the pod would mount them, so that
		// the loader reads the very bytes the chart renders.
		dir := plainTempDir(t)
		authDir, secretsDir := filepath.Join(dir, "auth"), filepath.Join(dir, "secrets")
		objs := chartRender(t, chartFullValues(authDir, secretsDir)+"containerPort: 9100\n")
		secret := one(t, objs, "Secret", chartRelease)
		data := map[string][]byte{}
		for k, v := range dig(secret, "data").(map[string]any) {
			b, err := base64.StdEncoding.DecodeString(str(v))
			if err != nil {
				t.Fatalf("Secret key %s: %v", k, err)
			}
			data[k] = b
		}
		// The volumes project the tokens into auth and the files into secrets.
		vols := map[string]map[string]any{}
		for _, v := range podSpec(one(t, objs, "Deployment", chartRelease))["volumes"].([]any) {
			vols[str(dig(v, "name"))] = v.(map[string]any)
		}
		write := func(volume, mountDir string) {
			items, _ := dig(vols[volume], "secret", "items").([]any)
			if len(items) == 0 {
				t.Fatalf("volume %s projects no keys: %v", volume, vols[volume])
			}
			for _, it := range items {
				key, path := str(dig(it, "key")), str(dig(it, "path"))
				if err := os.MkdirAll(mountDir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(mountDir, path), data[key], 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		write("guardian-auth", authDir)
		write("guardian-secrets", secretsDir)

		cfg, err := loadRendered(t, objs, filepath.Join(dir))
		if err != nil {
			t.Fatalf("config.yaml rendered from full values does not load: %v\n%s", err, renderedConfig(t, objs))
		}
		if got, want := cfg.Global.Auth.TokensFile, filepath.Join(authDir, "tokens"); got != want {
			t.Errorf("tokens_file %q, want %q", got, want)
		}
		if cfg.Global.ListenAddress != "0.0.0.0:9100" {
			t.Errorf("listen_address %q, want 0.0.0.0:9100", cfg.Global.ListenAddress)
		}
		if len(cfg.Services) != 1 || cfg.Services[0].Rollback.Application == nil || cfg.Services[0].Rollback.Application.Webhook == nil {
			t.Fatalf("services not as written: %+v", cfg.Services)
		}
		if cfg.Services[0].Rollback.Application.Webhook.Secret == "" || cfg.Notifiers[0].Webhook.Secret == "" {
			t.Error("webhook secrets were not read from the mounted Secret")
		}
		toks, err := web.ParseTokens(data["tokens"])
		if err != nil || len(toks) != 2 {
			t.Errorf("the rendered tokens file holds %d tokens, err %v: want 2", len(toks), err)
		}
	})

	t.Run("cluster mode", func(t *testing.T) {
		for _, tc := range []struct {
			name, values, lease, prefix string
			shards                      int
		}{
			{"two replicas share the services out", "replicas: 2\n", "guardian", "guardian", 64},
			{"three replicas", "replicas: 3\n", "guardian", "guardian", 64},
			{"five replicas", "replicas: 5\n", "guardian", "guardian", 128},
			{"ten replicas", "replicas: 10\n", "guardian", "guardian", 256},
			{"shards set", "replicas: 4\ncluster: {shards: 32}\n", "guardian", "guardian", 32},
			{"leader election asked for", "replicas: 2\ncluster: {shards: 0}\n", "guardian", "guardian", 0},
			{"one replica in cluster mode leads", "cluster: {enabled: true}\n", "guardian", "guardian", 0},
			{"config keys win", "cluster: {enabled: true}\nconfig: {global: {cluster: {lease_name: guardian-shop}}}\n", "guardian-shop", "guardian", 0},
			{"config's shards win", "replicas: 3\nconfig: {global: {cluster: {shards: 16}}}\n", "guardian", "guardian", 16},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg, err := loadRendered(t, chartRender(t, tc.values), t.TempDir())
				if err != nil {
					t.Fatalf("config.yaml in cluster mode does not load: %v", err)
				}
				c := cfg.Global.Cluster
				if c == nil || c.LeaseName != tc.lease || c.StatePrefix != tc.prefix || c.Namespace != chartNamespace || c.Shards != tc.shards {
					t.Fatalf("global.cluster %+v: want lease %q, state prefix %q, namespace %s, %d shards", c, tc.lease, tc.prefix, chartNamespace, tc.shards)
				}
			})
		}
		cfg, err := loadRendered(t, chartRender(t, ""), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Global.Cluster != nil {
			t.Fatalf("one replica: global.cluster %+v: want none", cfg.Global.Cluster)
		}
	})

	t.Run("an unknown key in config fails the chart's schema and guardian's loader", func(t *testing.T) {
		const values = "config: {global: {evaluation_intervall: 5s}}\n"
		// values.schema.json holds the configuration's schema: helm refuses
		// the key, naming it (TestChartValidatesConfig).
		if _, err := chartRenderErr(t, values); err == nil || !strings.Contains(err.Error(), "evaluation_intervall") {
			t.Fatalf("want helm to refuse evaluation_intervall, got %v", err)
		}
		// Past the schema, the chart passes config through untouched:
		// Guardian's strictness reaches the user (and `guardian check` on
		// the rendered file says why).
		_, err := loadRendered(t, chartRender(t, values, "--skip-schema-validation"), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "evaluation_intervall") {
			t.Fatalf("want an unknown-field error naming evaluation_intervall, got %v", err)
		}
	})
}

// TestChartValidatesConfig: values.schema.json checks config with
// Guardian's configuration schema (config/schema.json, generated from the
// configuration's types, without the required keys the chart fills in):
// an unknown key or a bad value fails `helm template`, naming it, and
// every example configuration renders.
func TestChartValidatesConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		set  []string
		want []string // in helm's error
	}{
		{"unknown global key", []string{"config.global.bogus=1"},
			[]string{"at '/config/global'", "additional properties 'bogus' not allowed"}},
		{"unknown trigger key", []string{"config.services[0].name=a", "config.services[0].triggers[0].name=t", "config.services[0].triggers[0].abov=1"},
			[]string{"at '/config/services/0/triggers/0'", "additional properties 'abov' not allowed"}},
		{"unknown executor", []string{"config.services[0].name=a", "config.services[0].rollback.application.kubectl.deployment=a"},
			[]string{"at '/config/services/0/rollback/application'", "'kubectl' not allowed"}},
		{"bad service mode", []string{"config.services[0].name=a", "config.services[0].mode=dry-run"},
			[]string{"at '/config/services/0/mode'", "'enforce', 'shadow'"}},
		{"bad duration", []string{"config.global.evaluation_interval=5 seconds"},
			[]string{"at '/config/global/evaluation_interval'"}},
		{"a string for a number", []string{"config.services[0].name=a", "config.services[0].triggers[0].name=t", "config.services[0].triggers[0].above=high"},
			[]string{"at '/config/services/0/triggers/0/above'", "want number"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			_, err := chartRenderErr(t, "", args...)
			if err == nil {
				t.Fatal("helm template succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q: %v", w, err)
				}
			}
		})
	}

	t.Run("valid keys render", func(t *testing.T) {
		objs := chartRender(t, "", "--set", "config.global.evaluation_interval=10s", "--set", "config.status_page.title=Acme")
		if cfg := renderedConfig(t, objs); !strings.Contains(cfg, "evaluation_interval: 10s") || !strings.Contains(cfg, "title: Acme") {
			t.Fatalf("config.yaml does not hold the values:\n%s", cfg)
		}
	})

	examples, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(examples) < 11 {
		t.Fatalf("want the example configurations, got %v (%v)", examples, err)
	}
	for _, f := range examples {
		t.Run("example "+filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var cfg map[string]any
			if err := yaml.Unmarshal(b, &cfg); err != nil {
				t.Fatal(err)
			}
			values, err := yaml.Marshal(map[string]any{"config": cfg})
			if err != nil {
				t.Fatal(err)
			}
			chartRender(t, string(values))
		})
	}
}

func TestChartRejectsBadValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, values, want string }{
		{"unknown mode", "mode: daemonset\n", "mode"},
		{"short token", "auth: {tokens: {ci: short}}\n", "tokens"},
		{"token name with a colon", "auth: {tokens: {\"a:b\": 0123456789abcdef0123}}\n", "a:b"},
		{"several replicas on one state volume", "replicas: 2\npersistence: {enabled: true}\n", "replicas > 1"},
		{"a secret file named tokens beside auth tokens", "auth: {tokens: {ci: 0123456789abcdef0123}}\nsecrets: {files: {tokens: x}}\n", "tokens"},
		{"unknown top-level value", "replica: 2\n", "replica"},
		{"unknown rbac flag", "rbac: {kubernetes: true}\n", "kubernetes"},
		{"slim image in cluster mode", "image: {slim: true}\nreplicas: 2\n", "image.slim: cluster mode"},
		{"slim image with a Kubernetes rbac flag", "image: {slim: true}\nrbac: {deployDetection: true}\n", "image.slim: rbac.deployDetection"},
		{"slim image with global.cluster", "image: {slim: true}\nconfig: {global: {cluster: {namespace: shop}}}\n", "image.slim: config.global.cluster"},
		{"slim image with deploy.kubernetes", "image: {slim: true}\nconfig: {services: [{name: a}, {name: b, deploy: {kubernetes: {namespace: shop, deployment: b}}}]}\n",
			"image.slim: config.services[1].deploy.kubernetes"},
		{"slim image with the helm executor", "mode: sidecar\nimage: {slim: true}\nconfig: {services: [{name: a, rollback: {database: {helm: {release: a}}}}]}\n",
			"image.slim: config.services[0].rollback.database.helm"},
		{"slim not a boolean", "image: {slim: \"yes\"}\n", "slim"},
		{"a digest that is not sha256 and 64 hex digits", "image: {digest: \"sha256:0123\"}\n", "/image/digest"},
		{"rbac.helm with no namespace to grant it in", "rbac: {helm: true}\n", "rbac.helmClusterWide=true"},
		{"a PodMonitor beside the ServiceMonitor", "podMonitor: {enabled: true}\nserviceMonitor: {enabled: true}\n", "choose one"},
		{"a sidecar PodMonitor without a pod selector", "mode: sidecar\npodMonitor: {enabled: true}\n", "sidecar.podSelector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := chartRenderErr(t, tc.values)
			if err == nil {
				t.Fatal("helm template succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not mention %q: %v", tc.want, err)
			}
		})
	}
}

// TestChartSlimImage: image.slim runs the <tag>-slim image (built with
// -tags nokubernetes) in either mode, a digest still names the image, and
// the default is the full image.
func TestChartSlimImage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, values, want string }{
		{"full by default", "mode: sidecar\n", "ghcr.io/rollback-guardian/guardian:0.1.0"},
		{"slim sidecar", "mode: sidecar\nimage: {slim: true}\n", "ghcr.io/rollback-guardian/guardian:0.1.0-slim"},
		{"slim standalone with a tag", "image: {slim: true, tag: v2.0.0}\n", "ghcr.io/rollback-guardian/guardian:v2.0.0-slim"},
		{"a digest names the image", "image: {slim: true, digest: \"sha256:" + strings.Repeat("0a", 32) + "\"}\n",
			"ghcr.io/rollback-guardian/guardian@sha256:" + strings.Repeat("0a", 32)},
		{"a digest wins over a tag", "image: {tag: v2.0.0, digest: \"sha256:" + strings.Repeat("1b", 32) + "\"}\n",
			"ghcr.io/rollback-guardian/guardian@sha256:" + strings.Repeat("1b", 32)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := chartRender(t, tc.values)
			var spec map[string]any
			if strings.HasPrefix(tc.values, "mode: sidecar") {
				var patch map[string]any
				if err := yaml.Unmarshal([]byte(str(dig(one(t, objs, "ConfigMap", "guardian-sidecar"), "data", "patch.yaml"))), &patch); err != nil {
					t.Fatal(err)
				}
				spec = dig(patch, "spec", "template", "spec").(map[string]any)
			} else {
				spec = podSpec(one(t, objs, "Deployment", chartRelease))
			}
			if got := str(container(t, spec, "guardian")["image"]); got != tc.want {
				t.Errorf("image %q, want %q", got, tc.want)
			}
		})
	}
}

// wantHardened asserts the container's security context and probes.
func wantHardened(t *testing.T, c map[string]any) {
	t.Helper()
	// A sidecar waits for a valid configuration and must not gate its pod's
	// readiness on it (TestChartSidecarReadiness).
	ready := "/-/ready"
	if slices.Contains(c["args"].([]any), any("--config.wait-valid")) {
		ready = "/-/healthy"
	}
	for _, tc := range []struct {
		path []any
		want any
	}{
		{[]any{"securityContext", "runAsNonRoot"}, true},
		{[]any{"securityContext", "runAsUser"}, 65532},
		{[]any{"securityContext", "readOnlyRootFilesystem"}, true},
		{[]any{"securityContext", "allowPrivilegeEscalation"}, false},
		{[]any{"securityContext", "capabilities", "drop"}, []any{"ALL"}},
		{[]any{"securityContext", "seccompProfile", "type"}, "RuntimeDefault"},
		{[]any{"livenessProbe", "httpGet", "path"}, "/-/healthy"},
		{[]any{"livenessProbe", "httpGet", "port"}, "http"},
		{[]any{"readinessProbe", "httpGet", "path"}, ready},
		{[]any{"readinessProbe", "httpGet", "port"}, "http"},
		{[]any{"ports", 0, "name"}, "http"},
		{[]any{"ports", 0, "containerPort"}, 9095},
		{[]any{"args", 0}, "run"},
		{[]any{"args", 1}, "--config.file=/etc/guardian/config/config.yaml"},
	} {
		if got := dig(c, tc.path...); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("container %v = %#v, want %#v", tc.path, got, tc.want)
		}
	}
	if dig(c, "securityContext", "capabilities", "add") != nil {
		t.Error("capabilities are added")
	}
	if dig(c, "resources", "limits", "memory") == nil {
		t.Error("no memory limit")
	}
	// Every writable path is a volume: the config directory (mounted whole, so
	// the ..data symlink swap reaches Guardian), the state and /tmp.
	mounts := map[string]string{}
	for _, m := range c["volumeMounts"].([]any) {
		mounts[str(dig(m, "mountPath"))] = str(dig(m, "name"))
		if dig(m, "subPath") != nil {
			t.Errorf("mount %v uses subPath: ConfigMap and Secret updates would not reach Guardian", m)
		}
	}
	for path, name := range map[string]string{"/etc/guardian/config": "guardian-config", "/var/lib/guardian": "guardian-state", "/tmp": "guardian-tmp"} {
		if mounts[path] != name {
			t.Errorf("%s is mounted from %q, want %q", path, mounts[path], name)
		}
	}
}

func TestChartHardenedPod(t *testing.T) {
	t.Parallel()
	t.Run("standalone", func(t *testing.T) {
		d := one(t, chartRender(t, ""), "Deployment", chartRelease)
		spec := podSpec(d)
		wantHardened(t, container(t, spec, "guardian"))
		for _, tc := range []struct {
			path []any
			want any
		}{
			{[]any{"securityContext", "runAsNonRoot"}, true},
			{[]any{"securityContext", "runAsUser"}, 65532},
			{[]any{"securityContext", "seccompProfile", "type"}, "RuntimeDefault"},
			{[]any{"serviceAccountName"}, "guardian"},
		} {
			if got := dig(spec, tc.path...); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("pod %v = %#v, want %#v", tc.path, got, tc.want)
			}
		}
		if got := dig(d, "spec", "replicas"); got != 1 {
			t.Errorf("replicas %v, want 1", got)
		}
	})
	t.Run("sidecar patch", func(t *testing.T) {
		objs := chartRender(t, "mode: sidecar\n")
		var patch map[string]any
		if err := yaml.Unmarshal([]byte(str(dig(one(t, objs, "ConfigMap", "guardian-sidecar"), "data", "patch.yaml"))), &patch); err != nil {
			t.Fatalf("patch.yaml does not parse: %v", err)
		}
		wantHardened(t, container(t, dig(patch, "spec", "template", "spec").(map[string]any), "guardian"))
	})
}

func TestChartPodSettings(t *testing.T) {
	t.Parallel()
	spec := podSpec(one(t, chartRender(t, `
image: {repository: registry.example/guardian, tag: v1.2.3, pullPolicy: Always}
extraArgs: [--config.watch=false]
env: [{name: TZ, value: Europe/Berlin}]
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 1, podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app.kubernetes.io/name: guardian}}}}]}}
resources: {requests: {cpu: 10m}}
logLevel: debug
`), "Deployment", chartRelease))
	c := container(t, spec, "guardian")
	for _, tc := range []struct {
		got, want any
	}{
		{c["image"], "registry.example/guardian:v1.2.3"},
		{c["imagePullPolicy"], "Always"},
		{c["args"], []any{"run", "--config.file=/etc/guardian/config/config.yaml", "--log.level=debug", "--log.format=json", "--config.watch=false"}},
		// POD_NAME, POD_NAMESPACE and POD_IP (a replica's identity and the
		// address the others forward the write API to), POD_UID (the pod
		// Events are recorded on), then env.
		{dig(c, "env", 0, "valueFrom", "fieldRef", "fieldPath"), "metadata.name"},
		{dig(c, "env", 1, "valueFrom", "fieldRef", "fieldPath"), "metadata.namespace"},
		{dig(c, "env", 2, "valueFrom", "fieldRef", "fieldPath"), "status.podIP"},
		{dig(c, "env", 3, "valueFrom", "fieldRef", "fieldPath"), "metadata.uid"},
		{dig(c, "env", 4), map[string]any{"name": "TZ", "value": "Europe/Berlin"}},
		// Helm merges maps with the defaults: the memory request and limit stay.
		{c["resources"], map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "160Mi"}, "limits": map[string]any{"memory": "320Mi"}}},
		{dig(spec, "nodeSelector", "kubernetes.io/os"), "linux"},
		{dig(spec, "tolerations", 0, "key"), "kwok.x-k8s.io/node"},
		{dig(spec, "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", 0, "weight"), 1},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("got %#v, want %#v", tc.got, tc.want)
		}
	}
}

// TestChartRestartsOnlyForSecrets: config changes are hot-reloaded, so they
// leave the pod template alone; a changed token or key changes its checksum
// annotation, which rolls the pods.
func TestChartRestartsOnlyForSecrets(t *testing.T) {
	t.Parallel()
	template := func(values string) any {
		return dig(one(t, chartRender(t, values), "Deployment", chartRelease), "spec", "template")
	}
	base := template("auth: {tokens: {ci: 0123456789abcdef0123}}\n")
	sum := str(dig(base, "metadata", "annotations", "checksum/guardian-secret"))
	if len(sum) != 64 {
		t.Fatalf("checksum annotation %q: want a sha256", sum)
	}
	if got := template("auth: {tokens: {ci: 0123456789abcdef0123}}\nconfig: {global: {evaluation_interval: 10s}}\n"); !reflect.DeepEqual(got, base) {
		t.Error("a config change altered the pod template: pods would restart instead of reloading")
	}
	changed := template("auth: {tokens: {ci: 0123456789abcdef0124}}\n")
	if str(dig(changed, "metadata", "annotations", "checksum/guardian-secret")) == sum {
		t.Error("a changed token left the checksum annotation alone: pods would keep the old token")
	}
	if a := dig(template(""), "metadata", "annotations"); a != nil {
		t.Errorf("annotations %v without a chart Secret", a)
	}
}

func TestChartSecrets(t *testing.T) {
	t.Parallel()
	t.Run("existing secrets", func(t *testing.T) {
		objs := chartRender(t, "auth: {existingSecret: api-tokens, existingSecretKey: lines}\nsecrets: {existingSecret: hooks}\n")
		if s := find(objs, "Secret"); len(s) != 0 {
			t.Fatalf("rendered %v beside existing secrets", kinds(s))
		}
		vols := podSpec(one(t, objs, "Deployment", chartRelease))["volumes"].([]any)
		want := map[string]any{
			"guardian-auth":    map[string]any{"secretName": "api-tokens", "items": []any{map[string]any{"key": "lines", "path": "tokens"}}},
			"guardian-secrets": map[string]any{"secretName": "hooks"},
		}
		for _, v := range vols {
			if w, ok := want[str(dig(v, "name"))]; ok {
				if got := dig(v, "secret"); !reflect.DeepEqual(got, w) {
					t.Errorf("volume %s: %#v, want %#v", dig(v, "name"), got, w)
				}
				delete(want, str(dig(v, "name")))
			}
		}
		if len(want) > 0 {
			t.Errorf("missing volumes %v", want)
		}
		cfg := renderedConfig(t, objs)
		if !strings.Contains(cfg, "tokens_file: /etc/guardian/auth/tokens") {
			t.Errorf("config does not point at the mounted tokens:\n%s", cfg)
		}
	})
	t.Run("tokens file", func(t *testing.T) {
		s := one(t, chartRender(t, "auth: {tokens: {ci: 0123456789abcdef0123, oncall: fedcba98765432100123}}\n"), "Secret", chartRelease)
		b, _ := base64.StdEncoding.DecodeString(str(dig(s, "data", "tokens")))
		if got, want := string(b), "ci:0123456789abcdef0123\noncall:fedcba98765432100123\n"; got != want {
			t.Errorf("tokens file %q, want %q", got, want)
		}
	})
}

// rbacRule is one (scope, API group, resource, verb) that the chart grants.
type rbacRule struct{ scope, group, resource, verb string }

func (r rbacRule) String() string {
	return fmt.Sprintf("%s %s/%s %s", r.scope, r.group, r.resource, r.verb)
}

// granted flattens the rendered Roles and ClusterRoles into rules (scope
// "cluster" or the Role's namespace), checking that each is bound to the
// chart's ServiceAccount and nothing else.
func granted(t *testing.T, objs []kobj, sa string) []rbacRule {
	t.Helper()
	bound := map[string]bool{}
	for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
		for _, b := range find(objs, kind) {
			subjects, _ := dig(b, "subjects").([]any)
			want := []any{map[string]any{"kind": "ServiceAccount", "name": sa, "namespace": chartNamespace}}
			if !reflect.DeepEqual(subjects, want) {
				t.Errorf("%s %s binds %v, want only the ServiceAccount %s", kind, b.name(), subjects, sa)
			}
			bound[str(dig(b, "roleRef", "kind"))+"/"+b.namespace()+"/"+str(dig(b, "roleRef", "name"))] = true
		}
	}
	var rules []rbacRule
	for _, kind := range []string{"Role", "ClusterRole"} {
		for _, r := range find(objs, kind) {
			if !bound[kind+"/"+r.namespace()+"/"+r.name()] {
				t.Errorf("%s %s/%s is not bound", kind, r.namespace(), r.name())
			}
			scope := r.namespace()
			if kind == "ClusterRole" {
				scope = "cluster"
			}
			for _, rule := range dig(r, "rules").([]any) {
				for _, g := range dig(rule, "apiGroups").([]any) {
					for _, res := range dig(rule, "resources").([]any) {
						for _, v := range dig(rule, "verbs").([]any) {
							rules = append(rules, rbacRule{scope, str(g), str(res), str(v)})
						}
					}
				}
				if dig(rule, "resourceNames") != nil || dig(rule, "nonResourceURLs") != nil {
					t.Errorf("unexpected rule fields in %v", rule)
				}
			}
		}
	}
	for _, r := range rules {
		if r.group == "*" || r.resource == "*" || r.verb == "*" {
			t.Errorf("wildcard rule %s", r)
		}
	}
	return rules
}

// expand builds rules from scope, group, resources and verbs.
func expand(scope, group string, resources, verbs []string) []rbacRule {
	var r []rbacRule
	for _, res := range resources {
		for _, v := range verbs {
			r = append(r, rbacRule{scope, group, res, v})
		}
	}
	return r
}

func ruleSet(rules ...[]rbacRule) []string {
	set := map[string]bool{}
	for _, rs := range rules {
		for _, r := range rs {
			set[r.String()] = true
		}
	}
	var out []string
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func TestChartRBAC(t *testing.T) {
	t.Parallel()
	// Exactly what the code uses: rollout/kubernetes's informer,
	// executor/kubernetes and executor/argorollouts's API calls, client-go's
	// leader election and store/kubernetes.
	var (
		getPatch  = []string{"get", "patch"}
		list      = []string{"list"}
		detection = func(s string) []rbacRule {
			return expand(s, "apps", []string{"deployments"}, []string{"list", "watch"})
		}
		kubernetes = func(s string) []rbacRule {
			return slices.Concat(
				expand(s, "apps", []string{"deployments", "statefulsets", "daemonsets"}, getPatch),
				expand(s, "apps", []string{"replicasets", "controllerrevisions"}, list),
				expand(s, "", []string{"services"}, getPatch),
				// A blue-green switch waits for the Service's endpoints to be the new pods.
				expand(s, "", []string{"pods"}, list),
				expand(s, "discovery.k8s.io", []string{"endpointslices"}, list))
		}
		rolloutDetection = func(s string) []rbacRule {
			return expand(s, "argoproj.io", []string{"rollouts"}, []string{"list", "watch"})
		}
		argo = func(s string) []rbacRule {
			return slices.Concat(
				expand(s, "argoproj.io", []string{"rollouts"}, getPatch),
				expand(s, "argoproj.io", []string{"rollouts/status"}, []string{"patch"}),
				expand(s, "apps", []string{"replicasets"}, list))
		}
		helmRules = func(s string) []rbacRule {
			return expand(s, "", []string{"secrets"}, []string{"get", "list", "create", "update", "delete"})
		}
		leases      = expand(chartNamespace, "coordination.k8s.io", []string{"leases"}, []string{"get", "create", "update"})
		shardLeases = expand(chartNamespace, "coordination.k8s.io", []string{"leases"}, []string{"get", "list", "create", "update", "delete"})
		configMaps  = expand(chartNamespace, "", []string{"configmaps"}, []string{"get", "list", "create", "update", "delete"})
		// client-go's event recorder creates an Event, then patches its count.
		events = expand(chartNamespace, "", []string{"events"}, []string{"create", "patch"})
	)
	for _, tc := range []struct {
		name   string
		values string
		want   []string
		sa     string
	}{
		{name: "nothing by default", values: ""},
		{name: "deploy detection", values: "rbac: {deployDetection: true}\n", want: ruleSet(detection("cluster"))},
		{name: "rollout detection", values: "rbac: {rolloutDetection: true}\n", want: ruleSet(rolloutDetection("cluster"))},
		{name: "kubernetes executor", values: "rbac: {kubernetesExecutor: true}\n", want: ruleSet(kubernetes("cluster"))},
		{name: "argo rollouts", values: "rbac: {argoRollouts: true}\n", want: ruleSet(argo("cluster"))},
		{name: "helm in the watched namespaces", values: "rbac: {helm: true, watchNamespaces: [orders]}\n", want: ruleSet(helmRules("orders"))},
		{name: "helm cluster-wide when asked", values: "rbac: {helm: true, helmClusterWide: true}\n", want: ruleSet(helmRules("cluster"))},
		{
			name:   "helm cluster-wide beside namespaced workload rules",
			values: "rbac: {helm: true, helmClusterWide: true, kubernetesExecutor: true, watchNamespaces: [shop]}\n",
			want:   ruleSet(helmRules("cluster"), kubernetes("shop")),
		},
		{name: "leader election", values: "rbac: {leaderElection: true}\n", want: ruleSet(leases)},
		{name: "cluster mode", values: "cluster: {enabled: true}\n", want: ruleSet(leases, configMaps)},
		{name: "two replicas imply cluster mode, sharded", values: "replicas: 2\n", want: ruleSet(shardLeases, configMaps)},
		{name: "two replicas electing a leader", values: "replicas: 2\ncluster: {shards: 0}\n", want: ruleSet(leases, configMaps)},
		{name: "sidecar replicas are the application's; Events on its pod", values: "mode: sidecar\nreplicas: 2\n", want: ruleSet(events)},
		{name: "sidecar without Events", values: "mode: sidecar\nsidecar: {events: false}\n"},
		{name: "slim sidecar: no Events", values: "mode: sidecar\nimage: {slim: true}\n"},
		{name: "state in ConfigMaps", values: "rbac: {stateConfigMaps: true}\n", want: ruleSet(configMaps)},
		{
			name:   "kubernetes executor in two namespaces",
			values: "rbac: {kubernetesExecutor: true, watchNamespaces: [shop, payments]}\n",
			want:   ruleSet(kubernetes("shop"), kubernetes("payments")),
		},
		{
			name:   "extra rules",
			values: "rbac: {helm: true, watchNamespaces: [orders], extraRules: [{apiGroups: [\"\"], resources: [configmaps], verbs: [get, update]}]}\n",
			want:   ruleSet(helmRules("orders"), expand("orders", "", []string{"configmaps"}, []string{"get", "update"})),
		},
		{
			name: "everything, bound to an existing service account",
			values: "serviceAccount: {create: false, name: ops}\nrbac: {deployDetection: true, rolloutDetection: true, kubernetesExecutor: true, argoRollouts: true, helm: true, " +
				"leaderElection: true, stateConfigMaps: true, watchNamespaces: [shop]}\n",
			want: ruleSet(detection("shop"), rolloutDetection("shop"), kubernetes("shop"), argo("shop"), helmRules("shop"), leases, configMaps),
			sa:   "ops",
		},
		{name: "rbac off", values: "rbac: {create: false, kubernetesExecutor: true, leaderElection: true}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa := tc.sa
			if sa == "" {
				sa = "guardian"
			}
			got := ruleSet(granted(t, chartRender(t, tc.values), sa))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("granted\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// TestChartSidecarTemplate includes the chart as a dependency of an
// application's chart, the documented way to add the container to one's own
// pod, and compares the result with the standalone container.
func TestChartSidecarTemplate(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	files := map[string]string{
		"Chart.yaml": "apiVersion: v2\nname: checkout\nversion: 1.0.0\ndependencies:\n  - name: guardian\n    version: \">=0.0.0\"\n",
		"values.yaml": "guardian:\n  mode: sidecar\n  auth:\n    tokens: {ci: 0123456789abcdef0123}\n" +
			"  serviceAccount: {create: false, name: checkout}\n  rbac: {kubernetesExecutor: true, watchNamespaces: [shop]}\n",
		"templates/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout
spec:
  selector:
    matchLabels: {app: checkout}
  template:
    metadata:
      labels: {app: checkout}
      annotations:
        {{- include "guardian.sidecar.annotations" .Subcharts.guardian | nindent 8 }}
    spec:
      serviceAccountName: checkout
      containers:
        - name: app
          image: checkout:v1
        {{- include "guardian.sidecar" .Subcharts.guardian | nindent 8 }}
      volumes:
        - name: data
          emptyDir: {}
        {{- include "guardian.sidecar.volumes" .Subcharts.guardian | nindent 8 }}
`,
	}
	for name, content := range files {
		p := filepath.Join(parent, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.CopyFS(filepath.Join(parent, "charts", "guardian"), os.DirFS(chartPath)); err != nil {
		t.Fatal(err)
	}
	out, err := runHelm(t, "template", "shop", parent, "--namespace", "shop", "--kube-version", chartKubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeObjects(t, out)
	if got := kinds(find(objs, "Deployment")); !slices.Equal(got, []string{"Deployment/checkout"}) {
		t.Fatalf("Deployments %v: the subchart in sidecar mode must render none", got)
	}
	d := one(t, objs, "Deployment", "checkout")
	spec := podSpec(d)
	g := container(t, spec, "guardian")
	wantHardened(t, g)
	container(t, spec, "app")
	var volumes []string
	for _, v := range spec["volumes"].([]any) {
		volumes = append(volumes, str(dig(v, "name")))
	}
	if want := []string{"data", "guardian-config", "guardian-state", "guardian-tmp", "guardian-auth"}; !slices.Equal(volumes, want) {
		t.Errorf("volumes %v, want %v", volumes, want)
	}
	if str(dig(d, "spec", "template", "metadata", "annotations", "checksum/guardian-secret")) == "" {
		t.Error("no secret checksum annotation")
	}
	// The included container is the one the subchart's own patch carries,
	// and its ConfigMap and Secret are rendered beside it.
	var patch map[string]any
	if err := yaml.Unmarshal([]byte(str(dig(one(t, objs, "ConfigMap", "shop-guardian-sidecar"), "data", "patch.yaml"))), &patch); err != nil {
		t.Fatal(err)
	}
	if p := container(t, dig(patch, "spec", "template", "spec").(map[string]any), "guardian"); !reflect.DeepEqual(p, g) {
		t.Errorf("included container differs from the patch's:\n%v\n%v", g, p)
	}
	one(t, objs, "ConfigMap", "shop-guardian")
	one(t, objs, "Secret", "shop-guardian")
	if rb := one(t, objs, "RoleBinding", "shop-guardian"); !reflect.DeepEqual(dig(rb, "subjects", 0, "name"), "checkout") {
		t.Errorf("RoleBinding subjects %v: want the application's ServiceAccount checkout", dig(rb, "subjects"))
	}
}

// TestChartREADMEDocumentsEveryValue: every value in values.yaml has a
// row in the README's values table (itself or a map above it, such as
// config or securityContext), and every row names a value that exists.
func TestChartREADMEDocumentsEveryValue(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(chartPath, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	var leaves []string
	exists := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		exists[prefix] = true
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, x := range m {
				walk(strings.TrimPrefix(prefix+"."+k, "."), x)
			}
			return
		}
		leaves = append(leaves, prefix)
	}
	walk("", values)

	readme, err := os.ReadFile(filepath.Join(chartPath, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "## Values\n")
	if !ok {
		t.Fatal("README.md has no ## Values section")
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(table, "\n") {
		if key, ok := strings.CutPrefix(line, "| `"); ok {
			key, _, _ = strings.Cut(key, "`")
			documented[key] = true
			if !exists[key] {
				t.Errorf("README documents %q, which values.yaml does not have", key)
			}
		}
	}
	sort.Strings(leaves)
	for _, leaf := range leaves {
		found := false
		for p := leaf; p != ""; {
			if documented[p] {
				found = true
				break
			}
			i := strings.LastIndex(p, ".")
			if i < 0 {
				break
			}
			p = p[:i]
		}
		if !found {
			t.Errorf("value %s is not in the README's values table", leaf)
		}
	}
	if len(documented) < 40 {
		t.Errorf("only %d rows in the values table", len(documented))
	}
}

// TestDockerfile reads the Dockerfile by hand (no container engine runs
// here): a static, trimmed, versioned build on golang:1.26, a distroless
// non-root final stage running `guardian run`, and a .dockerignore that
// keeps every package the binary needs in the build context.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines into instructions.
	var instrs []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		instrs = append(instrs, cur.String())
		cur.Reset()
	}
	var stages [][]string
	args := map[string]string{}
	for _, in := range instrs {
		if strings.HasPrefix(in, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if name, val, ok := strings.Cut(strings.TrimPrefix(in, "ARG "), "="); ok {
				args[name] = val
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) != 2 {
		t.Fatalf("want a build and a final stage, got %d stages", len(stages))
	}
	build, final := strings.Join(stages[0], "\n"), stages[1]
	from := strings.ReplaceAll(stages[0][0], "${GO_VERSION}", args["GO_VERSION"])
	for _, want := range []string{"golang:1.26 AS build", "CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.version=${VERSION}"`, "./cmd/guardian"} {
		if !strings.Contains(from+"\n"+build, want) {
			t.Errorf("build stage lacks %q", want)
		}
	}
	wantFinal := []string{
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532",
		`ENTRYPOINT ["/guardian"]`,
		`CMD ["run", "--config.file", "/etc/guardian/config.yaml"]`,
	}
	for _, want := range wantFinal {
		if !slices.Contains(final, want) {
			t.Errorf("final stage lacks %q: %q", want, final)
		}
	}
	if !slices.Contains(final, "COPY --from=build /out/guardian /guardian") {
		t.Errorf("final stage does not copy the binary: %q", final)
	}
	// TAGS reaches go build, and the slim builds the header documents
	// link neither client-go's API types and clientset nor the Helm SDK.
	if !slices.Contains(stages[0], `ARG TAGS=""`) || !strings.Contains(build, `go build -trimpath -tags "${TAGS}" `) {
		t.Errorf("the build stage does not pass ARG TAGS to go build -tags:\n%s", build)
	}
	documented := regexp.MustCompile(`--build-arg TAGS=(\S+) -t guardian:slim`).FindAllSubmatch(b, -1)
	if len(documented) == 0 {
		t.Error("the header does not document the slim image (--build-arg TAGS=... -t guardian:slim)")
	}
	for _, m := range documented {
		tags := string(m[1])
		deps, err := exec.Command("go", "list", "-tags", tags, "-deps", "../cmd/guardian").Output()
		if err != nil {
			t.Fatalf("go list -tags %s: %v", tags, err)
		}
		for _, dep := range strings.Fields(string(deps)) {
			if strings.HasPrefix(dep, "helm.sh/") || strings.HasPrefix(dep, "k8s.io/api/") || strings.HasPrefix(dep, "k8s.io/client-go/kubernetes") {
				t.Errorf("the slim image (-tags %s) links %s", tags, dep)
				break
			}
		}
	}

	// -X main.version needs the variable.
	src, err := os.ReadFile("../cmd/guardian/root.go")
	if err != nil || !bytes.Contains(src, []byte("var version = ")) {
		t.Errorf("cmd/guardian has no `var version` for -X main.version (err %v)", err)
	}

	// No package that the binary needs is ignored.
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(ignore), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimPrefix(l, "/"))
		}
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "../cmd/guardian").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, _ := filepath.Abs("..")
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module outside the repository
		}
		for _, p := range patterns {
			for prefix := rel; prefix != "."; prefix = filepath.Dir(prefix) {
				if ok, _ := filepath.Match(p, prefix); ok {
					t.Errorf(".dockerignore pattern %q leaves out %s, which the binary needs", p, rel)
				}
			}
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, f); ok {
				t.Errorf(".dockerignore leaves out %s", f)
			}
		}
	}
}

// TestChartInstall installs the chart into a real control plane (the API
// server validates every object; kwok stands in for the kubelets, so pods
// become Ready although no image is pulled), then acts with the token of
// the chart's ServiceAccount: the kubernetes executor rolls a Deployment
// back and switches a blue-green Service, the leader election and the
// ConfigMap store work, and writes outside the granted rules are forbidden.
// Last, sidecar mode's patch adds Guardian to an application's pod.
func TestChartInstall(t *testing.T) {
	t.Parallel()
	k := testenv.StartKubernetes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	admin := k.Client

	// Guardian's namespace enforces the restricted Pod Security Standard:
	// a pod that is not non-root, unprivileged and seccomp-confined is
	// refused by the API server.
	for name, labels := range map[string]map[string]string{
		chartNamespace: {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"},
		"shop":         nil,
		"payments":     nil,
	} {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The guarded workloads: checkout deployed at v1, then v2; a blue-green
	// pair behind the Service web, which selects green.
	checkout := demoDeployment("checkout", map[string]string{"app": "checkout"}, "checkout:v1")
	createDeployment(ctx, t, admin, "shop", checkout)
	waitRollout(t, admin, "shop", "checkout")
	setImage(ctx, t, admin, "shop", "checkout", "checkout:v2")
	waitRollout(t, admin, "shop", "checkout")
	for _, color := range []string{"blue", "green"} {
		createDeployment(ctx, t, admin, "shop", demoDeployment("web-"+color, map[string]string{"app": "web", "color": color}, "web:"+color))
	}
	if _, err := admin.CoreV1().Services("shop").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web", "color": "green"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createDeployment(ctx, t, admin, "payments", demoDeployment("ledger", map[string]string{"app": "ledger"}, "ledger:v1"))
	// A StatefulSet at revision 2, rolled back through its ControllerRevisions.
	cart := demoDeployment("cart", map[string]string{"app": "cart"}, "cart:v1")
	if _, err := admin.AppsV1().StatefulSets("shop").Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "cart"},
		Spec:       appsv1.StatefulSetSpec{Replicas: cart.Spec.Replicas, Selector: cart.Spec.Selector, Template: cart.Spec.Template, ServiceName: "cart"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, admin, "shop", "cart", "")
	patchImage := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":%q}]}}}}`, "cart:v2")
	if _, err := admin.AppsV1().StatefulSets("shop").Patch(ctx, "cart", types.StrategicMergePatchType, []byte(patchImage), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStatefulSet(t, admin, "shop", "cart", "cart:v2")

	values := chartValues(t, `
replicas: 2
podDisruptionBudget: {enabled: true}
auth:
  tokens: {ci: ci-token-0123456789abcdef}
secrets:
  files: {webhook-hmac: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}
rbac:
  watchNamespaces: [shop]
  kubernetesExecutor: true
  deployDetection: true
config:
  notifiers:
    - name: oncall
      webhook:
        url: https://hooks.example.invalid/guardian
        secret_file: /etc/guardian/secrets/webhook-hmac
`)
	abs, err := filepath.Abs(chartPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("install", func(t *testing.T) {
		k.Helm(t, "install", chartRelease, abs, "--namespace", chartNamespace, "-f", values, "--wait", "--timeout", "3m")
		d, err := admin.AppsV1().Deployments(chartNamespace).Get(ctx, chartRelease, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Status.ReadyReplicas != 2 || d.Status.AvailableReplicas != 2 {
			t.Fatalf("guardian Deployment: %d ready, %d available of 2", d.Status.ReadyReplicas, d.Status.AvailableReplicas)
		}
		pods, err := admin.CoreV1().Pods(chartNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=guardian"})
		if err != nil {
			t.Fatal(err)
		}
		ready := 0
		for _, p := range pods.Items {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready != 2 {
			t.Fatalf("%d of %d guardian pods Ready, want 2", ready, len(pods.Items))
		}
		if _, err := admin.PolicyV1().PodDisruptionBudgets(chartNamespace).Get(ctx, chartRelease, metav1.GetOptions{}); err != nil {
			t.Errorf("PodDisruptionBudget: %v", err)
		}
		// The namespace's policy is enforced: a pod with no security context
		// is refused, so the guardian pods above passed it.
		_, err = admin.CoreV1().Pods(chartNamespace).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "unconfined"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
			t.Errorf("an unconfined pod in %s: %v, want refused by PodSecurity", chartNamespace, err)
		}
	})
	if t.Failed() {
		return
	}

	kubeconfig := k.ServiceAccountKubeconfig(t, chartNamespace, chartRelease)
	sa, err := kubernetes.NewForConfig(k.ServiceAccountConfig(t, chartNamespace, chartRelease))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("kubernetes executor rolls back a Deployment", func(t *testing.T) {
		ex, err := kubeexec.New(kubeexec.Config{Connection: kubeexec.Connection{Kubeconfig: kubeconfig, Namespace: "shop"}, Deployment: "checkout", Timeout: model.Duration(2 * time.Minute)},
			zaptest.NewLogger(t), kubeexec.WithPollInterval(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		res, err := ex.Rollback(ctx, executor.Target{Incident: 1, Service: "checkout", Version: "v2", Baseline: "v1",
			Step: executor.StepApplication, IdempotencyKey: executor.IdempotencyKey(1, executor.StepApplication)})
		if err != nil {
			t.Fatalf("rollback with the chart's ServiceAccount: %v (output %q)", err, res.Output)
		}
		d, err := admin.AppsV1().Deployments("shop").Get(ctx, "checkout", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "checkout:v1" {
			t.Fatalf("checkout runs %s after the rollback, want checkout:v1", img)
		}
	})

	t.Run("kubernetes executor rolls back a StatefulSet", func(t *testing.T) {
		ex, err := kubeexec.New(kubeexec.Config{Connection: kubeexec.Connection{Kubeconfig: kubeconfig, Namespace: "shop"}, StatefulSet: "cart",
			Timeout: model.Duration(2 * time.Minute)}, zaptest.NewLogger(t), kubeexec.WithPollInterval(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		res, err := ex.Rollback(ctx, executor.Target{Incident: 3, Service: "cart", Version: "v2", Baseline: "v1",
			Step: executor.StepApplication, IdempotencyKey: executor.IdempotencyKey(3, executor.StepApplication)})
		if err != nil {
			t.Fatalf("rollback with the chart's ServiceAccount: %v (output %q)", err, res.Output)
		}
		waitStatefulSet(t, admin, "shop", "cart", "cart:v1")
	})

	t.Run("kubernetes executor switches a blue-green Service", func(t *testing.T) {
		waitRollout(t, admin, "shop", "web-blue")
		waitRollout(t, admin, "shop", "web-green")
		// The Service serves green first, so the switch has to wait for the
		// endpoints to change (listing pods and EndpointSlices as it does).
		testenv.Eventually(t, time.Minute, func() error {
			eps, err := admin.DiscoveryV1().EndpointSlices("shop").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
			if err != nil {
				return err
			}
			for _, sl := range eps.Items {
				for _, ep := range sl.Endpoints {
					if ep.TargetRef != nil && strings.HasPrefix(ep.TargetRef.Name, "web-green-") && ep.Conditions.Ready != nil && *ep.Conditions.Ready {
						return nil
					}
				}
			}
			return errors.New("no ready green endpoint")
		}, "web's endpoints on green")
		ex, err := kubeexec.New(kubeexec.Config{Connection: kubeexec.Connection{Kubeconfig: kubeconfig, Namespace: "shop"}, Timeout: model.Duration(2 * time.Minute),
			BlueGreen: &kubeexec.BlueGreen{Service: "web", Previous: "blue"}},
			zaptest.NewLogger(t), kubeexec.WithPollInterval(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		res, err := ex.Rollback(ctx, executor.Target{Incident: 2, Service: "web", Version: "green", Baseline: "blue",
			Step: executor.StepApplication, IdempotencyKey: executor.IdempotencyKey(2, executor.StepApplication)})
		if err != nil {
			t.Fatalf("blue-green switch with the chart's ServiceAccount: %v (output %q)", err, res.Output)
		}
		svc, err := admin.CoreV1().Services("shop").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c := svc.Spec.Selector["color"]; c != "blue" {
			t.Fatalf("web selects color=%s, want blue", c)
		}
	})

	t.Run("leader election and state ConfigMaps", func(t *testing.T) {
		// The Lease, as client-go's leader election takes and releases it.
		lctx, lcancel := context.WithTimeout(ctx, time.Minute)
		defer lcancel()
		var led atomic.Bool
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Name: chartRelease, Namespace: chartNamespace},
				Client:     sa.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: "chart-test"},
			},
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { led.Store(true); lcancel() },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		le.Run(lctx)
		if !led.Load() {
			t.Fatal("never became leader with the chart's ServiceAccount")
		}
		lease, err := admin.CoordinationV1().Leases(chartNamespace).Get(ctx, chartRelease, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "" {
			t.Errorf("lease holder %v after release, want empty", lease.Spec.HolderIdentity)
		}

		// The state store, as the leader writes it.
		st, err := kubestore.New(sa, chartNamespace, chartRelease)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		rev, err := st.Put(ctx, "incidents", "1", []byte(`{"state":"detected"}`), 0)
		if err != nil {
			t.Fatalf("put: %v", err)
		}
		if _, err := st.Put(ctx, "incidents", "1", []byte(`{"state":"resolved"}`), rev); err != nil {
			t.Fatalf("update: %v", err)
		}
		if kvs, err := st.List(ctx, "incidents"); err != nil || len(kvs) != 1 {
			t.Fatalf("list: %d values, %v", len(kvs), err)
		}
		if id, err := st.NextID(ctx, "incidents"); err != nil || id != 1 {
			t.Fatalf("next id %d, %v", id, err)
		}
		if err := st.Delete(ctx, "incidents", "1"); err != nil {
			t.Fatalf("delete: %v", err)
		}
	})

	t.Run("writes outside the rules are forbidden", func(t *testing.T) {
		patch := []byte(`{"metadata":{"annotations":{"guardian-test":"x"}}}`)
		for _, tc := range []struct {
			name string
			do   func() error
		}{
			{"delete the Deployment it guards", func() error {
				return sa.AppsV1().Deployments("shop").Delete(ctx, "checkout", metav1.DeleteOptions{})
			}},
			{"patch a Deployment outside the watched namespaces", func() error {
				_, err := sa.AppsV1().Deployments("payments").Patch(ctx, "ledger", types.MergePatchType, patch, metav1.PatchOptions{})
				return err
			}},
			{"create a pod", func() error {
				_, err := sa.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}, metav1.CreateOptions{})
				return err
			}},
			{"read a Secret", func() error {
				_, err := sa.CoreV1().Secrets("shop").List(ctx, metav1.ListOptions{})
				return err
			}},
			{"write a ConfigMap outside its namespace", func() error {
				_, err := sa.CoreV1().ConfigMaps("shop").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
				return err
			}},
			{"take a Lease outside its namespace", func() error {
				_, err := sa.CoordinationV1().Leases("shop").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
				return err
			}},
			{"delete a Lease outside its namespace", func() error {
				// Sharded replicas delete their own membership Leases, in
				// the release namespace only.
				return sa.CoordinationV1().Leases("shop").Delete(ctx, chartRelease, metav1.DeleteOptions{})
			}},
			{"grant itself more", func() error {
				_, err := sa.RbacV1().Roles("shop").Patch(ctx, chartRelease, types.MergePatchType,
					[]byte(`{"rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}`), metav1.PatchOptions{})
				return err
			}},
			{"delete its own pods", func() error {
				return sa.CoreV1().Pods(chartNamespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.do(); !apierrors.IsForbidden(err) {
					t.Fatalf("want Forbidden, got %v", err)
				}
			})
		}
	})

	t.Run("helm executor rolls back a release with the chart's rules", func(t *testing.T) {
		// A second Guardian release whose ServiceAccount may only do what
		// the helm executor needs for a Deployment's release in orders:
		// rbac.helm and the extraRules the chart's README gives.
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "orders"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		const release = "helm-guardian"
		values := chartValues(t, `
auth:
  tokens: {ci: ci-token-0123456789abcdef}
rbac:
  watchNamespaces: [orders]
  helm: true
  extraRules:
    - apiGroups: [apps]
      resources: [deployments]
      verbs: [get, create, patch, delete]
    - apiGroups: [""]
      resources: [services]
      verbs: [get, create, patch, delete]
    - apiGroups: [apps]
      resources: [replicasets]
      verbs: [list]
`)
		k.Helm(t, "install", release, abs, "--namespace", chartNamespace, "-f", values, "--wait", "--timeout", "3m")
		charts := plainTempDir(t)
		k.Helm(t, "install", "orders", helmChart(t, k, charts, "v1"), "--namespace", "orders", "--wait", "--timeout", "2m")
		k.Helm(t, "upgrade", "orders", helmChart(t, k, charts, "v2"), "--namespace", "orders", "--wait", "--timeout", "2m")

		ex, err := helmexec.New(helmexec.Config{Connection: kubeexec.Connection{Kubeconfig: k.ServiceAccountKubeconfig(t, chartNamespace, release), Namespace: "orders"},
			Release: "orders", Timeout: model.Duration(2 * time.Minute)}, zaptest.NewLogger(t), helmexec.WithPollInterval(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		res, err := ex.Rollback(ctx, executor.Target{Incident: 5, Service: "orders", Version: "v2", Baseline: "v1",
			Step: executor.StepApplication, IdempotencyKey: executor.IdempotencyKey(5, executor.StepApplication)})
		if err != nil {
			t.Fatalf("helm rollback with the chart's ServiceAccount: %v (output %q)", err, res.Output)
		}
		d, err := admin.AppsV1().Deployments("orders").Get(ctx, "orders", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "checkout:v1" {
			t.Fatalf("orders runs %s after the rollback, want checkout:v1", img)
		}
		// And no more: the same rules do not reach other namespaces.
		hsa, err := kubernetes.NewForConfig(k.ServiceAccountConfig(t, chartNamespace, release))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hsa.CoreV1().Secrets("shop").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("reading shop's Secrets: %v, want Forbidden", err)
		}
		if err := hsa.AppsV1().Deployments("shop").Delete(ctx, "checkout", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("deleting shop's Deployment: %v, want Forbidden", err)
		}
	})

	t.Run("sidecar patch adds Guardian to an application's pod", func(t *testing.T) {
		sidecarValues := chartValues(t, "mode: sidecar\nauth: {tokens: {ci: ci-token-0123456789abcdef}}\nsidecar: {podSelector: {app: checkout}}\n")
		k.Helm(t, "install", "checkout-guardian", abs, "--namespace", "shop", "-f", sidecarValues, "--wait", "--timeout", "2m")
		cm, err := admin.CoreV1().ConfigMaps("shop").Get(ctx, "checkout-guardian-sidecar", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		k.Kubectl(t, "--namespace", "shop", "patch", "deployment", "checkout", "--patch", cm.Data["patch.yaml"])
		waitRollout(t, admin, "shop", "checkout")
		pods, err := admin.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{LabelSelector: "app=checkout"})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range pods.Items {
			var names []string
			for _, c := range p.Spec.Containers {
				names = append(names, c.Name)
			}
			sort.Strings(names)
			if p.DeletionTimestamp != nil || !slices.Equal(names, []string{"app", "guardian"}) {
				continue
			}
			found = true
			if p.Spec.ServiceAccountName != "checkout-guardian" {
				t.Errorf("pod %s runs as %s, want the chart's ServiceAccount checkout-guardian", p.Name, p.Spec.ServiceAccountName)
			}
		}
		if !found {
			t.Fatalf("no checkout pod with the guardian container among %d", len(pods.Items))
		}
		// The sidecar Service selects the application's pods on Guardian's port.
		svc, err := admin.CoreV1().Services("shop").Get(ctx, "checkout-guardian", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if svc.Spec.Selector["app"] != "checkout" || svc.Spec.Ports[0].TargetPort.IntValue() != 9095 {
			t.Errorf("sidecar Service selector %v, target port %v", svc.Spec.Selector, svc.Spec.Ports[0].TargetPort)
		}
	})
}

// demoDeployment is a one-replica Deployment of image with labels.
func demoDeployment(name string, labels map[string]string, image string) *appsv1.Deployment {
	one := int32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
		},
	}
}

func createDeployment(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string, d *appsv1.Deployment) {
	t.Helper()
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment %s/%s: %v", ns, d.Name, err)
	}
}

func setImage(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name, image string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":%q}]}}}}`, image)
	if _, err := c.AppsV1().Deployments(ns).Patch(context.Background(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("setting the image of %s/%s: %v", ns, name, err)
	}
}

// waitStatefulSet waits until the StatefulSet's rollout is complete and,
// unless image is empty, its template runs image.
func waitStatefulSet(t *testing.T, c kubernetes.Interface, ns, name, image string) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, func() error {
		s, err := c.AppsV1().StatefulSets(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := s.Status
		if img := s.Spec.Template.Spec.Containers[0].Image; image != "" && img != image {
			return fmt.Errorf("template image %s, want %s", img, image)
		}
		if st.ObservedGeneration < s.Generation || st.UpdateRevision != st.CurrentRevision || st.ReadyReplicas != *s.Spec.Replicas {
			return fmt.Errorf("generation %d observed %d, revision %s current %s, %d ready", s.Generation, st.ObservedGeneration,
				st.UpdateRevision, st.CurrentRevision, st.ReadyReplicas)
		}
		return nil
	}, "rollout of statefulset "+ns+"/"+name)
}

// waitRollout waits until the Deployment's rollout is complete.
func waitRollout(t *testing.T, c kubernetes.Interface, ns, name string) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, func() error {
		d, err := c.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := *d.Spec.Replicas
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.AvailableReplicas != want || s.Replicas != want {
			return fmt.Errorf("generation %d observed %d, %d updated, %d available, %d total of %d", d.Generation, s.ObservedGeneration,
				s.UpdatedReplicas, s.AvailableReplicas, s.Replicas, want)
		}
		return nil
	}, "rollout of deployment "+ns+"/"+name)
}
