package kubernetes_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/rollback-guardian/guardian/executor/kubernetes"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		// want are substrings of the error, one per expected problem; none
		// means valid.
		want []string
	}{
		{name: "deployment", yaml: "deployment: checkout"},
		{name: "statefulset with namespace and timeout", yaml: "namespace: shop\nstatefulset: db\ntimeout: 2m"},
		{name: "daemonset to a revision", yaml: "daemonset: agent\nto_revision: 3"},
		{name: "version label", yaml: "deployment: checkout\nversion_label: app.kubernetes.io/version"},
		{name: "version annotation", yaml: "deployment: checkout\nversion_annotation: example.com/version"},
		{name: "blue-green fixed", yaml: "blue_green: {service: web, previous: blue}"},
		{name: "blue-green values", yaml: "blue_green: {service: web, selector_label: slot, values: {v1.4.0: blue, v1.5.0: green}}"},
		{name: "blue-green template", yaml: "blue_green: {service: web, value_template: 'v-{{.Baseline}}'}"},
		{name: "blue-green baseline", yaml: "blue_green: {service: web}"},
		{
			name: "no target",
			yaml: "namespace: shop",
			want: []string{"no target, want one of deployment, statefulset, daemonset or blue_green"},
		},
		{
			name: "two targets",
			yaml: "deployment: a\ndaemonset: b\nblue_green: {service: web}",
			want: []string{
				"daemonset: conflicts with deployment (want exactly one target)",
				"blue_green: conflicts with deployment (want exactly one target)",
			},
		},
		{
			name: "bad names",
			yaml: "namespace: Shop_1\ndeployment: Check_out",
			want: []string{"namespace: a lowercase RFC 1123 label", "deployment: a lowercase RFC 1123 subdomain"},
		},
		{
			name: "negative revision",
			yaml: "deployment: checkout\nto_revision: -1",
			want: []string{"to_revision: must be positive (0: the previous revision), got -1"},
		},
		{
			name: "revision and version label",
			yaml: "deployment: checkout\nto_revision: 2\nversion_label: version",
			want: []string{"version_label: conflicts with to_revision (want at most one)"},
		},
		{
			name: "label and annotation",
			yaml: "deployment: checkout\nversion_label: version\nversion_annotation: version",
			want: []string{"version_annotation: conflicts with version_label (want at most one)"},
		},
		{
			name: "bad version label",
			yaml: "deployment: checkout\nversion_label: 'not a label'",
			want: []string{"version_label: name part must consist of alphanumeric characters"},
		},
		{
			name: "revision options with blue-green",
			yaml: "blue_green: {service: web}\nto_revision: 2\nversion_label: version",
			want: []string{"to_revision: not used with blue_green", "version_label: not used with blue_green"},
		},
		{
			name: "blue-green without service",
			yaml: "blue_green: {selector_label: color}",
			want: []string{"blue_green.service: missing"},
		},
		{
			name: "blue-green bad values",
			yaml: "blue_green: {service: web_1, selector_label: 'a b', previous: 'not/valid', values: {v1: ''}, value_template: '{{.Nope}}'}",
			want: []string{
				"blue_green.service: a DNS-1035 label",
				"blue_green.selector_label: name part must consist",
				"blue_green.previous: a valid label must be",
				`blue_green.values["v1"]: empty label value`,
				`blue_green.value_template: template: argument:1:2: executing "argument" at <.Nope>: map has no entry for key "Nope"`,
				"blue_green.values: conflicts with previous (want at most one of previous, values, value_template)",
				"blue_green.value_template: conflicts with previous",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c kubernetes.Config
			dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
			dec.KnownFields(true)
			if err := dec.Decode(&c); err != nil {
				t.Fatalf("decoding: %v", err)
			}
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tc.want) {
				t.Errorf("got %d problems, want %d:\n%s", len(got), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%s", w, err)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := kubernetes.Config{BlueGreen: &kubernetes.BlueGreen{Service: "web"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Timeout != model.Duration(10*time.Minute) {
		t.Errorf("timeout = %s, want 10m", c.Timeout)
	}
	if c.BlueGreen.SelectorLabel != "color" {
		t.Errorf("selector_label = %q, want color", c.BlueGreen.SelectorLabel)
	}
	if c.Kind() != kubernetes.KindBlueGreen || c.Kind().String() != "blue_green" || c.TargetName() != "web" {
		t.Errorf("kind %s, name %q", c.Kind(), c.TargetName())
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://127.0.0.1:6443"}
- name: b
  cluster: {server: "https://127.0.0.2:6443"}
users:
- name: u
  user: {token: abc}
contexts:
- name: one
  context: {cluster: a, user: u, namespace: shop}
- name: two
  context: {cluster: b, user: u}
current-context: one
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a pod, whatever runs the test

	for _, tc := range []struct {
		name    string
		cfg     kubernetes.Config
		want    string // the executor's String()
		wantErr string
	}{
		{
			name: "current context's namespace",
			cfg:  kubernetes.Config{Connection: kubernetes.Connection{Kubeconfig: kubeconfig}, Deployment: "checkout"},
			want: "deployment shop/checkout",
		},
		{
			name: "configured namespace wins",
			cfg:  kubernetes.Config{Connection: kubernetes.Connection{Kubeconfig: kubeconfig, Namespace: "web"}, StatefulSet: "db"},
			want: "statefulset web/db",
		},
		{
			name: "other context without a namespace",
			cfg:  kubernetes.Config{Connection: kubernetes.Connection{Kubeconfig: kubeconfig, Context: "two"}, BlueGreen: &kubernetes.BlueGreen{Service: "web"}},
			want: "service default/web",
		},
		{
			name:    "unknown context",
			cfg:     kubernetes.Config{Connection: kubernetes.Connection{Kubeconfig: kubeconfig, Context: "three"}, DaemonSet: "agent"},
			wantErr: `context "three" does not exist`,
		},
		{
			name:    "missing kubeconfig",
			cfg:     kubernetes.Config{Connection: kubernetes.Connection{Kubeconfig: filepath.Join(dir, "nope")}, Deployment: "checkout"},
			wantErr: "kubeconfig " + filepath.Join(dir, "nope"),
		},
		{
			name:    "invalid config",
			cfg:     kubernetes.Config{Connection: kubernetes.Connection{Kubeconfig: kubeconfig}},
			wantErr: "kubernetes executor: no target",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := kubernetes.New(tc.cfg, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.String() != tc.want {
				t.Errorf("executor is %q, want %q", e, tc.want)
			}
		})
	}
}

func TestRESTConfigContext(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters:
- {name: a, cluster: {server: "https://127.0.0.1:6443"}}
- {name: b, cluster: {server: "https://127.0.0.2:6443"}}
users:
- {name: u, user: {token: abc}}
contexts:
- {name: one, context: {cluster: a, user: u}}
- {name: two, context: {cluster: b, user: u, namespace: prod}}
current-context: one
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// $KUBECONFIG is honoured when no path is configured.
	t.Setenv("KUBECONFIG", kubeconfig)
	rc, ns, err := kubernetes.RESTConfig(kubernetes.Connection{Context: "two"})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != "https://127.0.0.2:6443" || ns != "prod" || rc.BearerToken != "abc" {
		t.Errorf("host %q, namespace %q, token %q", rc.Host, ns, rc.BearerToken)
	}
	if rc.UserAgent == "" || rc.Timeout == 0 {
		t.Errorf("user agent %q, timeout %s: want both set", rc.UserAgent, rc.Timeout)
	}
}

func TestRESTConfigInClusterFallback(t *testing.T) {
	if _, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token"); err == nil {
		t.Skip("running in a pod: the in-cluster configuration would be used")
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: a, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: one, context: {cluster: a, user: u, namespace: shop}}]
current-context: one
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// A pod's environment without a mounted token: the in-cluster
	// configuration fails and $KUBECONFIG is used.
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	t.Setenv("KUBECONFIG", kubeconfig)
	rc, ns, err := kubernetes.RESTConfig(kubernetes.Connection{})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != "https://127.0.0.1:6443" || ns != "shop" {
		t.Errorf("host %q, namespace %q: want the kubeconfig's", rc.Host, ns)
	}
	// Neither works: the error says why for both.
	t.Setenv("KUBECONFIG", filepath.Join(dir, "missing"))
	t.Setenv("HOME", dir)
	_, _, err = kubernetes.RESTConfig(kubernetes.Connection{})
	if err == nil || !strings.Contains(err.Error(), "in-cluster configuration: ") || !strings.Contains(err.Error(), "; kubeconfig: ") {
		t.Fatalf("RESTConfig() error = %v, want both reasons", err)
	}
}
