package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/rollback-guardian/guardian/testenv"
)

// chartServerModes are the chart's modes, each with everything it can
// turn on at once, as the other chart tests render them one by one.
var chartServerModes = []struct{ name, values string }{
	{"standalone defaults", ""},
	{"sidecar defaults", "mode: sidecar\n"},
	{"standalone, everything on", chartFullValues("/etc/guardian/auth", "/etc/guardian/secrets") + `
persistence: {enabled: true, storageClass: fast, annotations: {backup: daily}}
serviceMonitor: {enabled: true, labels: {release: prometheus}, tlsConfig: {serverName: guardian}, authorization: {credentials: {name: guardian-read, key: token}}}
monitoring:
  rules: {enabled: true, labels: {release: prometheus}}
  dashboard: {enabled: true, namespace: grafana, annotations: {grafana_folder: Guardian}}
rbac:
  watchNamespaces: [shop, payments]
  deployDetection: true
  rolloutDetection: true
  kubernetesExecutor: true
  argoRollouts: true
  helm: true
  leaderElection: true
  stateConfigMaps: true
  extraRules: [{apiGroups: [""], resources: [services], verbs: [get, create, patch, delete]}]
networkPolicy:
  enabled: true
  allowedNamespaces: [ci]
  prometheus: {namespaceSelector: {matchLabels: {team: monitoring}}, podSelector: {matchLabels: {app: prometheus}}}
  from: [{ipBlock: {cidr: 10.0.0.0/8}}]
web:
  config: {tls_server_config: {cert_file: /etc/guardian/web-tls/tls.crt, key_file: /etc/guardian/web-tls/tls.key}}
  tlsSecret: guardian-tls
  reload: authenticated
  readAuth: all
service: {annotations: {team: sre}}
serviceAccount: {annotations: {iam: guardian}}
extraArgs: [--web.console.refresh=30s]
env: [{name: TZ, value: Europe/Berlin}]
envFrom: [{configMapRef: {name: guardian-env, optional: true}}]
extraVolumes: [{name: scripts, configMap: {name: rollback-scripts, defaultMode: 0555}}]
extraVolumeMounts: [{name: scripts, mountPath: /scripts, readOnly: true}]
podAnnotations: {team: sre}
podLabels: {team: sre}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: ops, effect: NoSchedule}]
topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/name: guardian}}}]
imagePullSecrets: [{name: registry}]
image: {digest: "sha256:0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a", pullPolicy: Always}
`},
	{"standalone, three replicas in cluster mode, existing secrets", `
replicas: 3
podDisruptionBudget: {maxUnavailable: 1}
podMonitor: {enabled: true, labels: {release: prometheus}}
monitoring: {rules: {enabled: true}, dashboard: {enabled: true}}
auth: {existingSecret: api-tokens, existingSecretKey: lines}
secrets: {existingSecret: hooks}
web: {existingSecret: web-config}
serviceAccount: {create: false, name: ops}
rbac: {kubernetesExecutor: true, deployDetection: true, helm: true, helmClusterWide: true}
strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1, maxSurge: 0}}
`},
	{"sidecar, everything on", chartFullValues("/etc/guardian/auth", "/etc/guardian/secrets") + `
mode: sidecar
sidecar: {podSelector: {app: checkout}}
serviceMonitor: {enabled: true, labels: {release: prometheus}}
monitoring: {rules: {enabled: true}, dashboard: {enabled: true}}
web: {config: {basic_auth_users: {prometheus: $2y$10$abcdefghijklmnopqrstuu5Hn0O2.bQQ7K6oQmS4FF5yKUNdGxy2}}}
rbac: {watchNamespaces: [shop], kubernetesExecutor: true, helm: true}
cluster: {enabled: true}
`},
	{"sidecar, slim image with a PodMonitor", `
mode: sidecar
image: {slim: true}
sidecar: {podSelector: {app: checkout}}
service: {enabled: false}
podMonitor: {enabled: true}
serviceAccount: {create: false, name: checkout}
auth: {tokens: {ci: ci-token-0123456789abcdef}}
`},
}

// TestChartServerValidation is kubeconform run against the real thing:
// every mode of the chart, everything on, is rendered with helm template
// and created with a server-side dry run (strict field validation) in the
// test control plane, whose API server checks each object against its
// OpenAPI schema and its admission, Pod Security included (the release
// namespace warns on anything the restricted standard forbids, and a
// warning fails the test). The Prometheus Operator's kinds are checked
// against its CRDs (testdata/crds). In sidecar mode the container and
// volumes the chart's patch adds are merged into an application's
// Deployment, as kubectl patch would, and that Deployment is checked too.
func TestChartServerValidation(t *testing.T) {
	t.Parallel()
	// Render first: a template error needs no control plane to show.
	type manifest struct {
		name string
		objs []kobj
	}
	var manifests []manifest
	for _, m := range chartServerModes {
		objs := chartRender(t, m.values)
		if cm := find(objs, "ConfigMap"); len(cm) > 0 {
			for _, c := range cm {
				if c.name() == chartRelease+"-sidecar" {
					objs = append(objs, patchedDeployment(t, str(dig(c, "data", "patch.yaml"))))
				}
			}
		}
		manifests = append(manifests, manifest{m.name, objs})
	}

	k := testenv.StartKubernetes(t, testenv.WithoutScheduler())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for name, labels := range map[string]map[string]string{
		chartNamespace: {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted",
			"pod-security.kubernetes.io/warn-version": "latest"},
		"shop": nil, "payments": nil, "grafana": nil,
	} {
		if _, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	crds, err := filepath.Glob("testdata/crds/*.yaml")
	if err != nil || len(crds) != 3 {
		t.Fatalf("CRDs %v (%v): want ServiceMonitor, PodMonitor and PrometheusRule", crds, err)
	}
	for _, f := range crds {
		k.Kubectl(t, "create", "-f", f)
	}
	k.Kubectl(t, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/servicemonitors.monitoring.coreos.com", "crd/podmonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")

	kindsSeen := map[string]bool{}
	for _, m := range manifests {
		t.Run(m.name, func(t *testing.T) {
			var docs bytes.Buffer
			for _, o := range m.objs {
				b, err := yaml.Marshal(map[string]any(o))
				if err != nil {
					t.Fatal(err)
				}
				docs.WriteString("---\n")
				docs.Write(b)
				kindsSeen[o.kind()] = true
			}
			// kubectl splits -f on commas, which t.TempDir() may hold.
			p := filepath.Join(plainTempDir(t), "manifest.yaml")
			if err := os.WriteFile(p, docs.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			cmd := k.Command(ctx, "kubectl", "create", "--dry-run=server", "--validate=strict", "-o", "name", "-f", p)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("the API server refuses the rendered objects: %v\n%s", err, stderr.String())
			}
			if w := strings.TrimSpace(stderr.String()); w != "" {
				t.Errorf("the API server warns:\n%s", w)
			}
			if got := strings.Fields(stdout.String()); len(got) != len(m.objs) {
				t.Errorf("the API server took %d objects of %d: %v", len(got), len(m.objs), got)
			}
		})
	}
	// Every kind the chart can render went through the API server.
	for _, kind := range []string{"ConfigMap", "Secret", "ServiceAccount", "Service", "Deployment", "PersistentVolumeClaim",
		"PodDisruptionBudget", "NetworkPolicy", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
		"ServiceMonitor", "PodMonitor", "PrometheusRule"} {
		if !kindsSeen[kind] {
			t.Errorf("no mode renders a %s", kind)
		}
	}
}

// patchedDeployment applies the chart's sidecar patch to an application's
// Deployment that passes the restricted Pod Security Standard, with a
// strategic merge as kubectl patch does, and returns the result.
func patchedDeployment(t *testing.T, patchYAML string) kobj {
	t.Helper()
	app := demoDeployment("checkout", map[string]string{"app": "checkout"}, "checkout:v1")
	app.TypeMeta = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}
	app.Namespace = chartNamespace
	yes, no := true, false
	app.Spec.Template.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: &yes,
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	app.Spec.Template.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: &no,
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	original, err := json.Marshal(app)
	if err != nil {
		t.Fatal(err)
	}
	var patch map[string]any
	if err := yaml.Unmarshal([]byte(patchYAML), &patch); err != nil {
		t.Fatalf("patch.yaml: %v", err)
	}
	patchJSON, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	merged, err := strategicpatch.StrategicMergePatch(original, patchJSON, appsv1.Deployment{})
	if err != nil {
		t.Fatalf("applying patch.yaml: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(merged, &out); err != nil {
		t.Fatal(err)
	}
	// The server fills status and creationTimestamp itself.
	delete(out, "status")
	if md, ok := out["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	if tm, ok := dig(out, "spec", "template", "metadata").(map[string]any); ok {
		delete(tm, "creationTimestamp")
	}
	if n := len(dig(out, "spec", "template", "spec", "containers").([]any)); n != 2 {
		panic(fmt.Sprintf("the patched Deployment has %d containers, want the application's and Guardian's", n))
	}
	return kobj(out)
}
