package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/backtest"
	"github.com/rollback-guardian/guardian/backtest/scenario"
	"github.com/rollback-guardian/guardian/testenv"
)

func TestBacktestCommand(t *testing.T) {
	h := scenario.Default(time.Now().UTC().Truncate(time.Hour).Add(-4 * time.Hour))
	prom := testenv.StartPrometheusWithHistory(t, h.OpenMetrics())
	cfg := filepath.Join(t.TempDir(), "guardian.yaml")
	if err := os.WriteFile(cfg, []byte(scenario.Config(prom.URL, 15*time.Second)), 0o600); err != nil {
		t.Fatal(err)
	}
	from := strconv.FormatInt(h.Start.Add(time.Minute).Unix(), 10)
	to := h.End().Format(time.RFC3339)

	var out, errb bytes.Buffer
	args := []string{"backtest", "--config", cfg, "--service", scenario.Service, "--from", from, "--to", to, "--set", "error-rate.above=0.15", "--rate", "500"}
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("backtest exited %d: %s", code, errb.String())
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	text := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^DEPLOYED +VERSION +BASELINE +CONFIGURED +ERROR-RATE\.ABOVE=0\.15$`),
		regexp.MustCompile(`(?m)^\S+ +v3 +v2 +would roll back at \d\d:\d\d:\d\d \(\+1m0s, error-rate\) +would roll back at `),
		regexp.MustCompile(`(?m)^\S+ +v4 +v2 +would roll back at \d\d:\d\d:\d\d \(\+\d+m\d+s, error-rate\) +healthy$`),
		regexp.MustCompile(`(?m)^\S+ +v5 +v2 +not enough data +not enough data$`),
		regexp.MustCompile(`(?m)v3 \[configured\]: error-rate v3: 0\.2 > 0\.05; 600 requests; firing \(was pending\)$`),
		regexp.MustCompile(`(?m)^  configured: 5 deploys judged, 2 would roll back, 2 healthy, 1 not enough data; detection delay median \S+, max \S+$`),
		regexp.MustCompile(`(?m)^  error-rate\.above=0\.15: 5 deploys judged, 1 would roll back, 3 healthy, 1 not enough data; detection delay median 1m0s, max 1m0s$`),
		regexp.MustCompile(`(?m)^  \d+ queries, \d+ ticks replayed in `),
	} {
		if !want.MatchString(text) {
			t.Errorf("stdout does not match %s", want)
		}
	}
	if n := strings.Count(errb.String(), " deploys, "); n != 5 || !strings.Contains(errb.String(), "[5/5 deploys, ") {
		t.Errorf("want a progress line per deploy on stderr, got %d:\n%s", n, errb.String())
	}

	out.Reset()
	errb.Reset()
	args = []string{"backtest", "--config", cfg, "--service", scenario.Service, "--from", from, "--to", to, "--format", "json", "--rate", "0", "--concurrency", "4"}
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("backtest --format json exited %d: %s", code, errb.String())
	}
	var rep backtest.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("json output: %v\n%s", err, out.String())
	}
	if len(rep.Deploys) != 5 || rep.Summary[0].Rollbacks != 2 || rep.Deploys[1].Judgements[0].FiredAt == nil || rep.Queries == 0 {
		t.Errorf("json report: %s", out.String())
	}

	// --compare judges with another file's triggers: here the same
	// change as --set above.
	other := filepath.Join(filepath.Dir(cfg), "other.yaml")
	if err := os.WriteFile(other, []byte(strings.Replace(scenario.Config(prom.URL, 15*time.Second), "above: 0.05", "above: 0.15", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	args = []string{"backtest", "--config", cfg, "--service", scenario.Service, "--from", from, "--to", to, "--compare", other, "--format", "json", "--rate", "0"}
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("backtest --compare exited %d: %s", code, errb.String())
	}
	rep = backtest.Report{}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("json output: %v\n%s", err, out.String())
	}
	if len(rep.Variants) != 2 || rep.Variants[1] != "other.yaml" || rep.Deploys[2].Judgements[0].Verdict != backtest.WouldRollBack ||
		rep.Deploys[2].Judgements[1].Verdict != backtest.Healthy || rep.Summary[1].Rollbacks != 1 {
		t.Errorf("--compare report: %s", out.String())
	}
}

func TestBacktestCommandRefusesBadFlags(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "guardian.yaml")
	if err := os.WriteFile(cfg, []byte(scenario.Config("http://127.0.0.1:9", 15*time.Second)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--last", "1h"}, "--service is required"},
		{[]string{"--service", "shop"}, "--last 30d, or --from"},
		{[]string{"--service", "shop", "--last", "1h", "--from", "0"}, "use one"},
		{[]string{"--service", "shop", "--last", "soon"}, "--last \"soon\""},
		{[]string{"--service", "shop", "--from", "yesterday"}, "--from \"yesterday\""},
		{[]string{"--service", "nope", "--last", "1h"}, "no service \"nope\""},
		{[]string{"--service", "shop", "--last", "1h", "--format", "xml"}, "--format \"xml\""},
		{[]string{"--service", "shop", "--last", "1h", "--set", "error-rate.window=2m"}, "unknown field \"window\""},
		{[]string{"--service", "shop", "--last", "1h", "--set", "latency.above=1"}, "no trigger \"latency\""},
		{[]string{"--service", "shop", "--last", "1h", "--concurrency", "0"}, "--concurrency"},
		{[]string{"--service", "shop", "--last", "1h", "--compare", filepath.Join(dir, "missing.yaml")}, "--compare"},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"backtest", "--config", cfg}, c.args...)
		if code := run(args, &out, &errb); code == 0 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errb.String(), c.want)
		}
	}
}
