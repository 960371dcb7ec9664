package e2e

import (
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

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
	// | full (no tags) | 92.7 MB | 100 | 25000 | 120.4 MiB | ...
	row := regexp.MustCompile(`(?m)^\| full \(no tags\) \| [^|]+ \| ` + services + ` \| [0-9]+ \| ([0-9.]+) MiB \|`).FindStringSubmatch(footprint)
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
