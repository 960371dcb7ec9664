package e2e

import (
	"slices"
	"strings"
	"testing"
)

// networkPolicy: rendered in standalone mode only, allowing the HTTP port
// to the release's own pods, the named namespaces and Prometheus.
func TestChartNetworkPolicy(t *testing.T) {
	t.Parallel()
	values := "networkPolicy: {enabled: true, allowedNamespaces: [ci], prometheus: {namespaceSelector: {matchLabels: {team: monitoring}}, podSelector: {matchLabels: {app: prometheus}}}}\n"
	np := one(t, chartRender(t, values), "NetworkPolicy", "guardian")
	ingress, _ := dig(np, "spec", "ingress").([]any)
	if len(ingress) != 1 {
		t.Fatalf("ingress %v", ingress)
	}
	if port := dig(ingress[0], "ports", 0, "port"); port != float64(9095) && port != 9095 {
		t.Fatalf("port %v (%T)", port, port)
	}
	from, _ := dig(ingress[0], "from").([]any)
	if len(from) != 3 {
		t.Fatalf("from %v, want the release's pods, namespace ci and Prometheus", from)
	}
	if ns := str(dig(from[1], "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name")); ns != "ci" {
		t.Errorf("second peer %v", from[1])
	}
	if app := str(dig(from[2], "podSelector", "matchLabels", "app")); app != "prometheus" || str(dig(from[2], "namespaceSelector", "matchLabels", "team")) != "monitoring" {
		t.Errorf("Prometheus peer %v", from[2])
	}
	// In sidecar mode the pods are the application's: no policy.
	if got := find(chartRender(t, "mode: sidecar\n"+values), "NetworkPolicy"); len(got) != 0 {
		t.Fatalf("sidecar mode rendered %d NetworkPolicies", len(got))
	}
}

// web.config: a Secret holding the file, --web.config.file, and HTTPS
// probes when it turns TLS on; web.reload and web.readAuth become flags.
func TestChartWebConfig(t *testing.T) {
	t.Parallel()
	values := "web: {config: {tls_server_config: {cert_file: /etc/guardian/web-tls/tls.crt, key_file: /etc/guardian/web-tls/tls.key}}, tlsSecret: guardian-tls, reload: authenticated, readAuth: api}\n"
	objs := chartRender(t, values)
	one(t, objs, "Secret", "guardian-web")
	c := container(t, podSpec(one(t, objs, "Deployment", "guardian")), "guardian")
	var args []string
	for _, a := range c["args"].([]any) {
		args = append(args, str(a))
	}
	for _, want := range []string{"--web.config.file=/etc/guardian/web/web-config.yml", "--web.reload=authenticated", "--web.read-auth=api"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %v lack %s", args, want)
		}
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		if scheme := str(dig(c, probe, "httpGet", "scheme")); !strings.EqualFold(scheme, "https") {
			t.Errorf("%s scheme %q, want HTTPS", probe, scheme)
		}
	}
}
