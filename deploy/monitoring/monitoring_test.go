// Package monitoring holds Guardian's own alerting rules (alerts.yaml) and
// Grafana dashboard (dashboard.json); its tests check them.
package monitoring

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/rollback-guardian/guardian/testenv"
)

var update = flag.Bool("update", false, "refresh the Helm chart's copies of alerts.yaml and dashboard.json")

// chartFiles is where the Helm chart holds its copies: Helm reads only
// files inside the chart.
const chartFiles = "../helm/guardian/files"

// The chart installs these rules and this dashboard from its own copies,
// which must be these files byte for byte.
func TestChartCopies(t *testing.T) {
	for _, name := range []string{"alerts.yaml", "dashboard.json"} {
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		copyPath := filepath.Join(chartFiles, name)
		if *update {
			if err := os.WriteFile(copyPath, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		const refresh = "refresh the chart's copy with\n  go test ./deploy/monitoring -run TestChartCopies -update"
		got, err := os.ReadFile(copyPath)
		switch {
		case err != nil:
			t.Errorf("%v: %s", err, refresh)
		case !bytes.Equal(got, want):
			t.Errorf("deploy/helm/guardian/files/%s differs from deploy/monitoring/%s: %s", name, name, refresh)
		}
	}
}

// The rules pass promtool's checks and its unit tests (alerts_test.yaml).
func TestAlertRules(t *testing.T) {
	promtool := testenv.Require(t, "promtool")
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Grafana's variables, replaced by values that make each query plain PromQL.
var promql = parser.NewParser(parser.Options{})

var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "${datasource}", "x", "$job", "guardian", "$service", "checkout")

// The dashboard is valid JSON, every panel has a query and every query
// parses with Prometheus's parser.
func TestDashboard(t *testing.T) {
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Annotations struct {
			List []struct {
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	data, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if d.Title != "Guardian" || len(d.Panels) < 10 {
		t.Fatalf("dashboard %q with %d panels", d.Title, len(d.Panels))
	}
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, a := range d.Annotations.List {
		exprs = append(exprs, a.Expr)
	}
	for _, e := range exprs {
		if _, err := promql.ParseExpr(grafanaVars.Replace(e)); err != nil {
			t.Errorf("query %q: %v", e, err)
		}
	}
	checkNames(t, "dashboard.json", exprs)
}

// The rules' expressions name only metrics Guardian exports.
func TestAlertMetricsExist(t *testing.T) {
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	data, err := os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs) < 8 {
		t.Fatalf("%d rules", len(exprs))
	}
	checkNames(t, "alerts.yaml", exprs)
}

// checkNames fails for each guardian_* metric in exprs that no Go source
// of Guardian defines.
func checkNames(t *testing.T, file string, exprs []string) {
	t.Helper()
	defined := exportedNames(t)
	for _, e := range exprs {
		expr, err := promql.ParseExpr(grafanaVars.Replace(e))
		if err != nil {
			continue // reported by the caller
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok || !strings.HasPrefix(vs.Name, "guardian_") {
				return nil
			}
			name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(vs.Name, "_bucket"), "_sum"), "_count")
			if !slices.Contains(defined, name) && !slices.Contains(defined, vs.Name) {
				t.Errorf("%s: %s is not a metric Guardian exports", file, vs.Name)
			}
			return nil
		})
	}
}

// exportedNames lists the metric names the repository's Go code defines
// (Name: "guardian_..." in client_golang's options, prometheus.NewDesc(
// "guardian_...", ...) for the metrics written at gathering, or the watch
// metrics' add(counterKind, "guardian_...", ...)), and guardian_build_info
// from the version collector.
func exportedNames(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`(?:Name:\s+|\b[a-z]+Kind,\s+|NewDesc\(\s*)"(guardian_[a-z_]+)"`)
	names := []string{"guardian_build_info"}
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".cache" || d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllSubmatch(src, -1) {
			names = append(names, string(m[1]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 20 {
		t.Fatalf("found only %d metric names in the sources", len(names))
	}
	return names
}
