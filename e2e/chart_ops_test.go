package e2e

import (
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestChartReplicas: several replicas get a PodDisruptionBudget selecting
// exactly the Deployment's pods and a soft anti-affinity spreading them
// over nodes; one replica gets neither, and the user's affinity and
// podDisruptionBudget settings win.
func TestChartReplicas(t *testing.T) {
	t.Parallel()
	soft := func(labels map[string]any) any {
		return map[string]any{"podAntiAffinity": map[string]any{"preferredDuringSchedulingIgnoredDuringExecution": []any{
			map[string]any{"weight": 100, "podAffinityTerm": map[string]any{
				"topologyKey":   "kubernetes.io/hostname",
				"labelSelector": map[string]any{"matchLabels": labels},
			}},
		}}}
	}
	own := map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{
		"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{"key": "pool", "operator": "In", "values": []any{"ops"}}}}},
	}}}
	for _, tc := range []struct {
		name, values string
		pdb          map[string]any // the PodDisruptionBudget's spec without its selector; nil: none
		affinity     any            // nil: the soft anti-affinity when replicas > 1, none otherwise
	}{
		{name: "one replica", values: ""},
		{name: "one replica, budget asked for", values: "podDisruptionBudget: {enabled: true}\n"},
		{name: "two replicas", values: "replicas: 2\n", pdb: map[string]any{"minAvailable": 1}},
		{name: "three replicas, maxUnavailable", values: "replicas: 3\npodDisruptionBudget: {maxUnavailable: 1}\n", pdb: map[string]any{"maxUnavailable": 1}},
		{name: "two replicas, budget off", values: "replicas: 2\npodDisruptionBudget: {enabled: false}\n"},
		{name: "two replicas, own affinity", values: "replicas: 2\naffinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [ops]}]}]}}}\n",
			pdb: map[string]any{"minAvailable": 1}, affinity: own},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := chartRender(t, tc.values)
			d := one(t, objs, "Deployment", chartRelease)
			selector := dig(d, "spec", "selector", "matchLabels").(map[string]any)
			podLabels := dig(d, "spec", "template", "metadata", "labels").(map[string]any)
			for k, v := range selector {
				if podLabels[k] != v {
					t.Fatalf("the pod template's labels %v do not hold the selector %v", podLabels, selector)
				}
			}
			pdbs := find(objs, "PodDisruptionBudget")
			switch {
			case tc.pdb == nil && len(pdbs) > 0:
				t.Errorf("a PodDisruptionBudget: %v", pdbs[0]["spec"])
			case tc.pdb != nil && len(pdbs) != 1:
				t.Errorf("%d PodDisruptionBudgets, want 1", len(pdbs))
			case tc.pdb != nil:
				spec := dig(pdbs[0], "spec").(map[string]any)
				if got := dig(spec, "selector", "matchLabels"); !reflect.DeepEqual(got, selector) {
					t.Errorf("the budget selects %v, the Deployment %v", got, selector)
				}
				delete(spec, "selector")
				if !reflect.DeepEqual(spec, tc.pdb) {
					t.Errorf("budget %v, want %v", spec, tc.pdb)
				}
			}
			want := tc.affinity
			if want == nil && dig(d, "spec", "replicas") != 1 {
				want = soft(selector)
			}
			if got := podSpec(d)["affinity"]; !reflect.DeepEqual(got, want) {
				t.Errorf("affinity\n  %v\nwant\n  %v", got, want)
			}
		})
	}
}

// TestChartPodMonitor: the PodMonitor scrapes Guardian's container on the
// pods the chart runs (standalone) or on the application's pods (sidecar),
// in the release namespace, with the scheme Guardian serves.
func TestChartPodMonitor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, values string
		selector     map[string]any
		scheme       string
	}{
		{"standalone", "podMonitor: {enabled: true, labels: {release: prometheus}}\n",
			map[string]any{"app.kubernetes.io/name": "guardian", "app.kubernetes.io/instance": chartRelease}, "http"},
		{"sidecar", "mode: sidecar\nsidecar: {podSelector: {app: checkout}}\npodMonitor: {enabled: true, labels: {release: prometheus}}\n",
			map[string]any{"app": "checkout"}, "http"},
		{"TLS", "web: {tlsSecret: guardian-tls}\npodMonitor: {enabled: true, labels: {release: prometheus}, tlsConfig: {serverName: guardian}}\n",
			map[string]any{"app.kubernetes.io/name": "guardian", "app.kubernetes.io/instance": chartRelease}, "https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := chartRender(t, tc.values)
			pm := one(t, objs, "PodMonitor", chartRelease)
			if pm.namespace() != chartNamespace || str(dig(pm, "metadata", "labels", "release")) != "prometheus" {
				t.Errorf("PodMonitor in %q with labels %v", pm.namespace(), dig(pm, "metadata", "labels"))
			}
			if got := dig(pm, "spec", "selector", "matchLabels"); !reflect.DeepEqual(got, tc.selector) {
				t.Errorf("selects %v, want %v", got, tc.selector)
			}
			if got := dig(pm, "spec", "namespaceSelector", "matchNames"); !reflect.DeepEqual(got, []any{chartNamespace}) {
				t.Errorf("namespaces %v", got)
			}
			ep := dig(pm, "spec", "podMetricsEndpoints", 0).(map[string]any)
			if ep["port"] != "http" || ep["path"] != "/metrics" || ep["scheme"] != tc.scheme {
				t.Errorf("endpoint %v: want port http, path /metrics, scheme %s", ep, tc.scheme)
			}
			keep := map[string]any{"sourceLabels": []any{"__meta_kubernetes_pod_container_name"}, "regex": "guardian", "action": "keep"}
			if got := dig(ep, "relabelings", 0); !reflect.DeepEqual(got, keep) {
				t.Errorf("relabelings %v: want only Guardian's container kept", ep["relabelings"])
			}
			if strings.Contains(tc.values, "tlsConfig") && dig(ep, "tlsConfig", "serverName") != "guardian" {
				t.Errorf("tlsConfig %v", ep["tlsConfig"])
			}
			// The port the endpoint names is Guardian's container's.
			if strings.Contains(tc.values, "sidecar") {
				return
			}
			c := container(t, podSpec(one(t, objs, "Deployment", chartRelease)), "guardian")
			if dig(c, "ports", 0, "name") != "http" {
				t.Errorf("Guardian's port is named %v", dig(c, "ports", 0, "name"))
			}
		})
	}
}

// TestChartResourcesFitFootprint: the default memory request covers the
// VmRSS docs/benchmarks.md measured for the number of services values.yaml
// says it is sized for, and the limit is twice the request; a larger
// measurement (or a smaller default) fails here until the values are sized
// again.
func TestChartResourcesFitFootprint(t *testing.T) {
	t.Parallel()
	values, err := os.ReadFile(chartPath + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`These values are for up to ([0-9]+) services`).FindSubmatch(values)
	if m == nil {
		t.Fatal("values.yaml does not say how many services its resources are for")
	}
	services := string(m[1])

	bench, err := os.ReadFile("../docs/benchmarks.md")
	if err != nil {
		t.Fatal(err)
	}
	_, footprint, ok := strings.Cut(string(bench), "## Footprint")
	if !ok {
		t.Fatal("docs/benchmarks.md has no Footprint section")
	}
	// The first (newest) table's row, whatever count columns come
	// between the services and the VmRSS:
	// | full (no tags) | 97.3 MB | 100 | 25000 | 10700 | 130.1 MiB | ...
	row := regexp.MustCompile(`(?m)^\| full \(no tags\) \| [^|]+ \| ` + services + ` \|(?: [0-9]+ \|)+ \**([0-9.]+) MiB\** \|`).FindStringSubmatch(footprint)
	if row == nil {
		t.Fatalf("no full-build row for %s services in the Footprint table", services)
	}
	vmrss, err := strconv.ParseFloat(row[1], 64)
	if err != nil {
		t.Fatal(err)
	}

	c := container(t, podSpec(one(t, chartRender(t, ""), "Deployment", chartRelease)), "guardian")
	request := resource.MustParse(str(dig(c, "resources", "requests", "memory")))
	limit := resource.MustParse(str(dig(c, "resources", "limits", "memory")))
	if mib := float64(request.Value()) / (1 << 20); mib < vmrss {
		t.Errorf("memory request %s (%.0f MiB) is below the %.1f MiB measured with %s services", request.String(), mib, vmrss, services)
	}
	if limit.Value() != 2*request.Value() {
		t.Errorf("memory limit %s, want twice the request %s", limit.String(), request.String())
	}
}

// TestChartMonitoring: the PrometheusRule holds deploy/monitoring's rules,
// GuardianDown selecting the job Prometheus gives the chart's scrape, and
// the dashboard ConfigMap holds deploy/monitoring's dashboard with the label
// Grafana's sidecar looks for.
func TestChartMonitoring(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../deploy/monitoring/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const up = `up{job="guardian"}`
	if !strings.Contains(string(raw), up) {
		t.Fatalf("alerts.yaml has no %s", up)
	}
	groups := func(t *testing.T, alerts string) any {
		t.Helper()
		var f map[string]any
		if err := yaml.Unmarshal([]byte(alerts), &f); err != nil {
			t.Fatal(err)
		}
		return f["groups"]
	}
	for _, tc := range []struct{ name, values, job string }{
		// The release is named guardian, and so is the ServiceMonitor's
		// job: the rules are alerts.yaml's as they are.
		{"with the ServiceMonitor", "serviceMonitor: {enabled: true}\n", "guardian"},
		{"with the PodMonitor", "podMonitor: {enabled: true}\n", chartNamespace + "/guardian"},
		{"a job of one's own", "podMonitor: {enabled: true}\nmonitoring: {rules: {job: guardian-prod}}\n", "guardian-prod"},
		{"without the chart's monitors", "fullnameOverride: g\n", "guardian"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := chartRender(t, tc.values, "--set", "monitoring.rules.enabled=true", "--set", "monitoring.rules.labels.release=prometheus")
			rule := one(t, objs, "PrometheusRule", "")
			if rule.namespace() != chartNamespace || str(dig(rule, "metadata", "labels", "release")) != "prometheus" {
				t.Errorf("PrometheusRule in %q with labels %v", rule.namespace(), dig(rule, "metadata", "labels"))
			}
			want := groups(t, strings.Replace(string(raw), up, `up{job="`+tc.job+`"}`, 1))
			if got := dig(rule, "spec", "groups"); !reflect.DeepEqual(got, want) {
				t.Errorf("the PrometheusRule's groups differ from alerts.yaml's (job %s):\n%v\nwant\n%v", tc.job, got, want)
			}
		})
	}
	if rules := find(chartRender(t, "serviceMonitor: {enabled: true}\n"), "PrometheusRule"); len(rules) != 0 {
		t.Error("a PrometheusRule by default")
	}

	dashboard, err := os.ReadFile("../deploy/monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, values, namespace string }{
		{"in the release namespace", "", chartNamespace},
		{"in Grafana's namespace", "monitoring: {dashboard: {namespace: grafana, annotations: {grafana_folder: Guardian}}}\n", "grafana"},
	} {
		t.Run("dashboard "+tc.name, func(t *testing.T) {
			cm := one(t, chartRender(t, tc.values, "--set", "monitoring.dashboard.enabled=true"), "ConfigMap", "guardian-dashboard")
			if cm.namespace() != tc.namespace || str(dig(cm, "metadata", "labels", "grafana_dashboard")) != "1" {
				t.Errorf("dashboard ConfigMap in %q with labels %v", cm.namespace(), dig(cm, "metadata", "labels"))
			}
			if got := str(dig(cm, "data", "guardian.json")); got != strings.TrimSuffix(string(dashboard), "\n") {
				t.Errorf("guardian.json is not deploy/monitoring/dashboard.json (%d bytes, want %d)", len(got), len(dashboard))
			}
			if strings.Contains(tc.values, "grafana_folder") && str(dig(cm, "metadata", "annotations", "grafana_folder")) != "Guardian" {
				t.Errorf("annotations %v", dig(cm, "metadata", "annotations"))
			}
		})
	}
}

// TestChartSidecarReadiness: a pod is Ready only when all its containers
// are, so in sidecar mode Guardian's readiness must not depend on its
// configuration: the probe asks /-/healthy, which Guardian answers while
// it waits for a valid configuration (--config.wait-valid, which the
// sidecar runs with; TestSidecarBadConfig runs that), rather than /-/ready.
// Standalone, the probe stays /-/ready and Guardian exits on a bad
// configuration.
func TestChartSidecarReadiness(t *testing.T) {
	t.Parallel()
	patchContainer := func(t *testing.T, values string) map[string]any {
		var patch map[string]any
		cm := one(t, chartRender(t, values), "ConfigMap", "guardian-sidecar")
		if err := yaml.Unmarshal([]byte(str(dig(cm, "data", "patch.yaml"))), &patch); err != nil {
			t.Fatal(err)
		}
		return container(t, dig(patch, "spec", "template", "spec").(map[string]any), "guardian")
	}
	hasArg := func(c map[string]any, arg string) bool {
		for _, a := range c["args"].([]any) {
			if a == arg {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		name, values string
		scheme       any
	}{
		{"sidecar", "mode: sidecar\n", nil},
		{"sidecar with TLS", "mode: sidecar\nweb: {tlsSecret: guardian-tls}\n", "HTTPS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := patchContainer(t, tc.values)
			if got := dig(c, "readinessProbe", "httpGet", "path"); got != "/-/healthy" {
				t.Errorf("readiness probe on %v: the application's pod would not be Ready while Guardian waits for a valid configuration", got)
			}
			if got := dig(c, "readinessProbe", "httpGet", "scheme"); got != tc.scheme {
				t.Errorf("readiness probe scheme %v, want %v", got, tc.scheme)
			}
			if !hasArg(c, "--config.wait-valid") {
				t.Errorf("args %v: without --config.wait-valid a bad configuration restarts the container", c["args"])
			}
			if dig(c, "env", 3, "name") != "POD_UID" {
				t.Errorf("env %v lacks POD_UID, the pod the Events are recorded on", c["env"])
			}
		})
	}
	t.Run("standalone", func(t *testing.T) {
		c := container(t, podSpec(one(t, chartRender(t, ""), "Deployment", chartRelease)), "guardian")
		if got := dig(c, "readinessProbe", "httpGet", "path"); got != "/-/ready" {
			t.Errorf("standalone readiness probe on %v, want /-/ready", got)
		}
		if hasArg(c, "--config.wait-valid") {
			t.Error("standalone runs with --config.wait-valid")
		}
	})
}
