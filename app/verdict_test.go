package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/jsonpath"

	"github.com/rollback-guardian/guardian/demo"
	"github.com/rollback-guardian/guardian/testenv"
	"github.com/rollback-guardian/guardian/watch"
)

// judgeConfig watches checkout with an error-rate trigger that fires after
// 3s over 5% and a traffic trigger.
const judgeConfig = `global:
  evaluation_interval: 1s
  state_dir: %[1]s/data
services:
  - name: checkout
    scrape: {url: "%[2]s/metrics", interval: 1s}
    deploy: {version_query: 'sum by (version) (rate(http_requests_total[10s]))'}
    watch_window: 10m
    triggers:
      - name: error-rate
        query: '(sum(rate(http_requests_total{version="{{.Version}}",code="500"}[{{.Window}}])) or vector(0)) / sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))'
        window: 10s
        above: 0.05
        for: 3s
      - name: traffic
        query: 'sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))'
        window: 10s
        below: %[3]s
        for: 5s
`

// argoGet fetches the verdict as Argo Rollouts' web metric provider does
// (a GET with the template's headers) and applies the README's jsonPath
// with client-go's jsonpath, as Argo does; it returns the phase the
// README's conditions give and the decoded answer.
func argoGet(t *testing.T, url string) (string, watch.VersionVerdict) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	var data any
	if err := json.Unmarshal(b, &data); err != nil {
		t.Fatal(err)
	}
	jp := jsonpath.New("metrics")
	if err := jp.Parse("{$.verdict}"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := jp.Execute(&out, data); err != nil {
		t.Fatal(err)
	}
	var vv watch.VersionVerdict
	if err := json.Unmarshal(b, &vv); err != nil {
		t.Fatal(err)
	}
	switch out.String() { // successCondition, failureCondition
	case "healthy":
		return "Successful", vv
	case "regressed":
		return "Failed", vv
	}
	return "Inconclusive", vv
}

// flaggerPost posts Flagger's webhook payload to hook and returns the status.
func flaggerPost(t *testing.T, base, hook, version string) int {
	t.Helper()
	body := fmt.Sprintf(`{"name":"checkout","namespace":"shop","phase":"Progressing","checksum":"6d5b8c7f9","metadata":{"version":%q}}`, version)
	resp, err := http.Post(base+"/api/v1/services/checkout/verdict/flagger/"+hook, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// A healthy version becomes healthy once its triggers have been ok for
// their for; a bad one regressed. Argo's web provider and Flagger's
// webhooks read the answers as the README says.
func TestVerdictHealthyAndBadVersions(t *testing.T) {
	f := startWith(t, judgeConfig)
	verdictURL := func(v string) string { return f.base + "/api/v1/services/checkout/verdict?version=" + v }

	if err := f.demo.Deploy(demo.Version{Version: "v2"}); err != nil {
		t.Fatal(err)
	}
	// The traffic trigger's for (5s) has not passed since the deploy.
	if phase, vv := argoGet(t, verdictURL("v2")); phase != "Inconclusive" {
		t.Fatalf("v2 just deployed: %s %+v", phase, vv)
	}
	var vv watch.VersionVerdict
	testenv.Eventually(t, 30*time.Second, func() error {
		var phase string
		if phase, vv = argoGet(t, verdictURL("v2")); phase != "Successful" {
			return fmt.Errorf("%s: %s", vv.Verdict, vv.Reason)
		}
		return nil
	}, "v2 to be judged healthy")
	if vv.Watching != "v2" || vv.Baseline != "v1" || vv.WatchStarted == nil || len(vv.Triggers) != 2 {
		t.Fatalf("healthy verdict: %+v", vv)
	}
	for _, tr := range vv.Triggers {
		if tr.Verdict != watch.Healthy || tr.Value == nil || tr.OKSince == nil || len(tr.Thresholds) != 1 {
			t.Errorf("trigger %+v", tr)
		}
	}
	if phase, vv := argoGet(t, verdictURL("v2")+"&baseline=v0"); phase != "Inconclusive" || vv.BaselineMatches == nil || *vv.BaselineMatches {
		t.Errorf("v2 against another baseline: %s %+v", phase, vv)
	}
	if got := flaggerPost(t, f.base, "confirm-promotion", "v2"); got != 200 {
		t.Errorf("confirm-promotion of healthy v2: %d", got)
	}
	if got := flaggerPost(t, f.base, "rollback", "v2"); got != 412 {
		t.Errorf("rollback of healthy v2: %d", got)
	}

	if err := f.demo.Deploy(demo.Version{Version: "v3", ErrorRate: 0.5}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		var phase string
		if phase, vv = argoGet(t, verdictURL("v3")); phase != "Failed" {
			return fmt.Errorf("%s: %s", vv.Verdict, vv.Reason)
		}
		return nil
	}, "v3 to be judged regressed")
	er := vv.Triggers[0]
	if er.Name != "error-rate" || er.Value == nil || *er.Value <= 0.05 || len(er.Thresholds) != 1 || *er.Thresholds[0].Threshold != 0.05 {
		t.Errorf("error-rate evidence: %+v", er)
	}
	if got := flaggerPost(t, f.base, "rollback", "v3"); got != 200 {
		t.Errorf("rollback of bad v3: %d", got)
	}
	if got := flaggerPost(t, f.base, "confirm-promotion", "v3"); got != 412 {
		t.Errorf("confirm-promotion of bad v3: %d", got)
	}
	if phase, vv := argoGet(t, verdictURL("v2")); phase != "Inconclusive" || vv.Watching != "v3" {
		t.Errorf("v2 once v3 is watched: %s %+v", phase, vv)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, vv = argoGet(t, verdictURL("v3")); vv.Incident == 0 {
			return fmt.Errorf("no incident in %+v", vv)
		}
		return nil
	}, "the incident declared for v3 in its verdict")

	// v4 replaces v3: v3 is no longer watched, but its incident still
	// says it regressed.
	if err := f.demo.Deploy(demo.Version{Version: "v4"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if _, vv = argoGet(t, verdictURL("v4")); vv.Watching != "v4" {
			return fmt.Errorf("watching %q", vv.Watching)
		}
		return nil
	}, "v4 to be watched")
	if phase, vv := argoGet(t, verdictURL("v3")); phase != "Failed" || vv.Incident == 0 || vv.Watching != "v4" {
		t.Errorf("v3 once v4 is watched: %s %+v", phase, vv)
	}

	resp, err := http.Get(f.base + "/api/v1/services/nope/verdict?version=v2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("unknown service: %d", resp.StatusCode)
	}
}
