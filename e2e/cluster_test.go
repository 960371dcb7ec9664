package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/demo"
	"github.com/rollback-guardian/guardian/incident"
	kuberollout "github.com/rollback-guardian/guardian/rollout/kubernetes"
	"github.com/rollback-guardian/guardian/testenv"
)

// clusterConfig runs Guardian as one of several replicas: leader election
// and state in the test cluster, deploys learnt from the Deployment, the
// demo service's metrics through the embedded source, and a rollback that
// counts itself then runs kubectl rollout undo. The leader keeps its lease
// unless eight seconds of renewals fail, so that a busy machine (the suite
// runs its tests in parallel) does not take the lease away from a live
// leader; a killed leader's lease lapses after twelve.
const clusterConfig = `global:
  evaluation_interval: 1s
  state_dir: %[1]s
  auth: {tokens_file: %[2]s/tokens}
  cluster:
    kubeconfig: %[3]s
    namespace: default
    identity: %[4]s
    lease_duration: 12s
    renew_deadline: 8s
    retry_period: 1s
services:
  - name: checkout
    scrape: {url: "%[5]s/metrics", interval: 1s, timeout: 900ms}
    deploy:
      kubernetes: {kubeconfig: %[3]s, namespace: default, deployment: checkout}
    watch_window: 10m
    triggers:
      - name: error-rate
        query: >-
          (sum(rate(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.Window}}])) or vector(0))
          / sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))
        window: 10s
        above: 0.05
        for: 2s
        min_requests: 20
        volume_query: 'sum(increase(http_requests_total{version="{{.Version}}"}[{{.Window}}]))'
    approval: {mode: manual}
    rollback:
      application:
        command:
          command: [sh, -c, %[6]q]
          timeout: 2m
    recovery: {tolerance: 0.5, stable_for: 3s, timeout: 2m}
`

// bridge makes the demo service follow the Deployment: the version the
// Deployment's template runs is the one serving, v2 with 20% errors; a
// template whose pods never get ready serves nothing.
func bridge(ctx context.Context, t testing.TB, k *testenv.Kubernetes, svc *demo.Service) {
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		current := ""
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			d, err := k.Client.AppsV1().Deployments("default").Get(ctx, "checkout", metav1.GetOptions{})
			if err != nil {
				continue
			}
			v := kuberollout.VersionOf(d, "")
			if v == current || d.Spec.Template.Annotations[testenv.NeverReadyAnnotation] != "" {
				// Pods that never get ready take no traffic.
				continue
			}
			rate := 0.005
			if v == "v2" {
				rate = 0.20
			}
			if err := svc.Deploy(demo.Version{Version: v, ErrorRate: rate}); err == nil {
				current = v
			}
		}
	}()
}

// Two Guardian processes against one cluster: exactly one acts. The leader
// is killed in the middle of an incident; the other takes the incident over
// from the shared state and the Deployment is rolled back exactly once.
func TestLeaderElectionTakeover(t *testing.T) {
	t.Parallel()
	k, ctx, demoURL, dir := kubeWorld(t, nil)
	script := fmt.Sprintf("echo run >> %s/rollbacks && exec %s --kubeconfig %s rollout undo deployment/checkout -n default",
		dir, filepath.Join(k.BinDir, "kubectl"), k.Kubeconfig)
	procs := make([]*guardianProc, 2)
	for i := range procs {
		cfg := filepath.Join(dir, fmt.Sprintf("guardian-%d.yml", i))
		state := filepath.Join(dir, fmt.Sprintf("state-%d", i))
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(clusterConfig, state, dir, k.Kubeconfig, fmt.Sprintf("guardian-%d", i), demoURL, script)), 0o600); err != nil {
			t.Fatal(err)
		}
		procs[i] = startProc(t, cfg)
	}
	leaderOf := func() (int, error) {
		lease, err := k.Client.CoordinationV1().Leases("default").Get(ctx, "guardian", metav1.GetOptions{})
		if err != nil {
			return -1, err
		}
		id := ""
		if lease.Spec.HolderIdentity != nil {
			id = *lease.Spec.HolderIdentity
		}
		for i := range procs {
			if strings.HasPrefix(id, fmt.Sprintf("guardian-%d|", i)) {
				return i, nil
			}
		}
		return -1, fmt.Errorf("holder %q", id)
	}
	var leader int
	testenv.Eventually(t, 30*time.Second, func() (err error) { leader, err = leaderOf(); return err }, "a leader")
	follower := 1 - leader
	if m := metricValue(t, procs[leader].url, "guardian_leader"); m != "1" {
		t.Fatalf("leader's guardian_leader = %q", m)
	}
	if m := metricValue(t, procs[follower].url, "guardian_leader"); m != "0" {
		t.Fatalf("follower's guardian_leader = %q", m)
	}

	// The leader has learnt v1 from the Deployment; then the bad deploy.
	lead := &stack{t: t, apiURL: procs[leader].url}
	testenv.Eventually(t, 60*time.Second, func() error {
		var st []struct {
			Current string `json:"current_version"`
		}
		if err := lead.getJSON("/api/v1/status", &st); err != nil {
			return err
		}
		if st[0].Current != "v1" {
			return fmt.Errorf("current %q", st[0].Current)
		}
		return nil
	}, "the leader to learn v1")
	s := &stack{t: t, apiURL: procs[follower].url} // the follower serves the shared state and forwards writes
	k.Kubectl(t, "set", "image", "deployment/checkout", "app=checkout:v2", "-n", "default")
	rec := s.waitIncident(1, incident.AwaitingApproval, 120*time.Second)
	if rec.Version != "v2" || rec.Baseline != "v1" {
		t.Fatalf("incident %+v", rec)
	}
	// Exactly one acted: the follower evaluated nothing.
	if n := metricValue(t, procs[follower].url, "guardian_incidents_declared_total"); n != "" && n != "0" {
		t.Fatalf("the follower declared incidents: %s", n)
	}

	// Kill the leader mid-incident; the other takes over.
	procs[leader].stop(syscall.SIGKILL)
	testenv.Eventually(t, 60*time.Second, func() error {
		l, err := leaderOf()
		if err != nil || l != follower {
			return fmt.Errorf("leader %d (%v)", l, err)
		}
		return nil
	}, "the follower to take over")
	// The go, sent to the new leader.
	if code := s.decide(1, "approve", apiToken, `{"reason":"after failover"}`); code != http.StatusOK {
		t.Fatalf("approve: %d", code)
	}
	rec = s.waitIncident(1, incident.Resolved, 180*time.Second)
	b, _ := os.ReadFile(filepath.Join(dir, "rollbacks"))
	if runs := strings.Count(string(b), "run"); runs != 1 {
		t.Fatalf("the rollback ran %d times", runs)
	}
	got, err := k.Client.AppsV1().Deployments("default").Get(ctx, "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := kuberollout.VersionOf(got, ""); v != "v1" || got.Annotations[kuberollout.RevisionAnnotation] != "3" {
		t.Fatalf("deployment on %s at revision %s, want v1 at revision 3", v, got.Annotations[kuberollout.RevisionAnnotation])
	}
}

// metricValue reads an unlabelled sample from a Guardian's /metrics.
func metricValue(t testing.TB, base, name string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && (f[0] == name || strings.HasPrefix(f[0], name+"{")) {
			return f[1]
		}
	}
	return ""
}

// kubeLoopConfig is one Guardian closing the loop on Kubernetes: deploys
// learnt from the Deployment, rollback by the executor given as %[4]s
// (kubeExecutor or helmExecutor).
const kubeLoopConfig = `global:
  evaluation_interval: 1s
  state_dir: %[1]s/state
  auth: {tokens_file: %[1]s/tokens}
services:
  - name: checkout
    scrape: {url: "%[3]s/metrics", interval: 1s, timeout: 900ms}
    deploy:
      kubernetes: {kubeconfig: %[2]s, namespace: default, deployment: checkout}
    watch_window: 10m
    triggers:
      - name: error-rate
        query: >-
          (sum(rate(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.Window}}])) or vector(0))
          / sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))
        window: 10s
        above: 0.05
        for: 2s
        min_requests: 20
        volume_query: 'sum(increase(http_requests_total{version="{{.Version}}"}[{{.Window}}]))'
    approval: {mode: manual}
    rollback:
      application:
        %[4]s
    recovery: {tolerance: 0.5, stable_for: 3s, timeout: 2m}
`

// The rollback executors of kubeLoopConfig.
const (
	kubeExecutor = `kubernetes: {kubeconfig: %[2]s, namespace: default, deployment: checkout, timeout: 2m}`
	helmExecutor = `helm: {kubeconfig: %[2]s, namespace: default, release: checkout, match_app_version: true, timeout: 2m}`
)

// startGuardian runs one Guardian on kubeLoopConfig with the given
// executor and waits until it has learnt v1 from the Deployment.
func startGuardian(t *testing.T, k *testenv.Kubernetes, dir, demoURL, exec string) (*guardianProc, *stack) {
	t.Helper()
	cfg := filepath.Join(dir, "guardian.yml")
	text := fmt.Sprintf(strings.ReplaceAll(kubeLoopConfig, "%[4]s", exec), dir, k.Kubeconfig, demoURL)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, cfg)
	s := &stack{t: t, apiURL: p.url}
	testenv.Eventually(t, 60*time.Second, func() error {
		var st []struct {
			Current string `json:"current_version"`
		}
		if err := s.getJSON("/api/v1/status", &st); err != nil {
			return err
		}
		if st[0].Current != "v1" {
			return fmt.Errorf("current %q", st[0].Current)
		}
		return nil
	}, "Guardian to learn v1 from the Deployment")
	return p, s
}

// approveRollback gives the go for incident 1, waits until it is
// resolved and checks that the Deployment runs v1 again.
func approveRollback(ctx context.Context, t *testing.T, k *testenv.Kubernetes, s *stack) incident.Record {
	t.Helper()
	if code := s.decide(1, "approve", apiToken, `{}`); code != http.StatusOK {
		t.Fatalf("approve: %d", code)
	}
	rec := s.waitIncident(1, incident.Resolved, 180*time.Second)
	got, err := k.Client.AppsV1().Deployments("default").Get(ctx, "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := kuberollout.VersionOf(got, ""); v != "v1" {
		t.Fatalf("deployment on %s after the rollback", v)
	}
	return rec
}

// waitReport waits until incident 1's Markdown report says every one of
// wants.
func waitReport(t *testing.T, dir string, wants ...string) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func() error {
		md, err := os.ReadFile(filepath.Join(dir, "state", "reports", "incident-1.md"))
		if err != nil {
			return err
		}
		for _, want := range wants {
			if !strings.Contains(string(md), want) {
				return fmt.Errorf("report lacks %q", want)
			}
		}
		return nil
	}, "the report")
}

// The closed loop on a real control plane: the Deployment goes from v1 to
// v2, the demo service follows its template, Guardian learns the deploy from
// the Deployment, the trigger fires on v2's errors, the go comes through the
// API, the kubernetes executor rolls back, the Deployment is on the v1
// template again, recovery is confirmed and the report lists the revisions.
func TestKubernetesClosedLoop(t *testing.T) {
	t.Parallel()
	k, ctx, demoURL, dir := kubeWorld(t, nil)
	_, s := startGuardian(t, k, dir, demoURL, kubeExecutor)
	k.Kubectl(t, "set", "image", "deployment/checkout", "app=checkout:v2", "-n", "default")
	rec := s.waitIncident(1, incident.AwaitingApproval, 120*time.Second)
	if rec.Version != "v2" || rec.Baseline != "v1" {
		t.Fatalf("incident %+v", rec)
	}
	if len(rec.Changes) != 2 || !slices.Equal(rec.Changes[0].Images, []string{"checkout:v2"}) || !slices.Equal(rec.Changes[1].Images, []string{"checkout:v1"}) {
		t.Fatalf("what changed: %+v", rec.Changes)
	}
	rec = approveRollback(ctx, t, k, s)
	a := rec.Actions["incident-1/rollback.application"]
	if a == nil || a.State != incident.ActionSucceeded || !strings.Contains(a.Output, "revision 2") || !strings.Contains(a.Output, "revision 1") {
		t.Fatalf("action %+v", a)
	}
	waitReport(t, dir, "revision 2", "template of revision 1", "- **v2 (bad):** image `checkout:v2`")
}

// A broken rollout on a real control plane: v2's pods never become ready,
// so they take no traffic and no metric trigger can judge v2. The
// Deployment controller gives up at the progress deadline; Guardian's
// built-in progress-deadline trigger declares the incident, the go comes
// through the API, the kubernetes executor rolls back to v1's template,
// recovery is confirmed on v1 and the report lists the revisions.
func TestKubernetesBrokenRollout(t *testing.T) {
	t.Parallel()
	k, ctx, demoURL, dir := kubeWorld(t, nil)
	p, s := startGuardian(t, k, dir, demoURL, kubeExecutor)
	patch := `{"spec":{"progressDeadlineSeconds":3,"template":{"metadata":{"annotations":{"` + testenv.NeverReadyAnnotation + `":"true"}},` +
		`"spec":{"containers":[{"name":"app","image":"checkout:v2"}]}}}}`
	k.Kubectl(t, "patch", "deployment/checkout", "-n", "default", "--type=strategic", "-p", patch)

	rec := s.waitIncident(1, incident.AwaitingApproval, 120*time.Second)
	if rec.Version != "v2" || rec.Baseline != "v1" || rec.Trigger != config.ProgressDeadlineTrigger {
		t.Fatalf("incident %+v, want v2 against v1 by %s", rec, config.ProgressDeadlineTrigger)
	}
	if !strings.Contains(rec.Evidence.Summary, "ProgressDeadlineExceeded") || !strings.Contains(rec.Evidence.Summary, "0 of 2 replicas updated") && !strings.Contains(rec.Evidence.Summary, "1 of 2 replicas updated") {
		t.Errorf("evidence %q", rec.Evidence.Summary)
	}
	fired := `guardian_triggers_fired_total{service="checkout",trigger="` + config.ProgressDeadlineTrigger + `"}`
	if v := metricValue(t, p.url, fired); v != "1" {
		t.Errorf("%s = %q, want 1", fired, v)
	}
	rec = approveRollback(ctx, t, k, s)
	// The executor saw 2 of 2 available when it finished; on a loaded
	// machine the simulated cluster has been seen to report 0 available a
	// few seconds later, so the cluster is awaited to show v1 available
	// again rather than read once.
	testenv.Eventually(t, 60*time.Second, func() error {
		got, err := k.Client.AppsV1().Deployments("default").Get(ctx, "checkout", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.AvailableReplicas != 2 {
			return fmt.Errorf("%d of 2 replicas available after the rollback", got.Status.AvailableReplicas)
		}
		return nil
	}, "v1's replicas available after the rollback")
	a := rec.Actions["incident-1/rollback.application"]
	if a == nil || a.State != incident.ActionSucceeded || !strings.Contains(a.Output, "revision 2 → template of revision 1") {
		t.Fatalf("action %+v", a)
	}
	// The metric trigger never judged v2: no traffic, no rollback by it.
	if v := metricValue(t, p.url, `guardian_triggers_fired_total{service="checkout",trigger="error-rate"}`); v != "" && v != "0" {
		t.Errorf("error-rate fired %s times", v)
	}
	waitReport(t, dir, "ProgressDeadlineExceeded", "revision 2", "template of revision 1")
}

// helmChart packages e2e/testdata/checkout-chart with appVersion app into
// dir and returns the archive's path.
func helmChart(t *testing.T, k *testenv.Kubernetes, dir, app string) string {
	t.Helper()
	out := filepath.Join(dir, app)
	k.Helm(t, "package", filepath.Join("testdata", "checkout-chart"), "--app-version", app, "-d", out)
	return filepath.Join(out, "checkout-1.0.0.tgz")
}

// The closed loop through a Helm release: checkout is installed with the
// helm CLI at v1 and upgraded to v2; Guardian learns the deploy from the
// Deployment, the trigger fires on v2's errors, the go comes through the
// API, the helm executor rolls the release back to revision 1 (as revision
// 3, found by its appVersion), the Deployment runs v1 again, recovery is
// confirmed and the report lists the revisions.
func TestHelmClosedLoop(t *testing.T) {
	t.Parallel()
	charts := t.TempDir()
	k, ctx, demoURL, dir := kubeWorld(t, func(t *testing.T, k *testenv.Kubernetes) {
		k.Helm(t, "install", "checkout", helmChart(t, k, charts, "v1"), "--namespace", "default", "--wait", "--timeout", "2m")
	})
	_, s := startGuardian(t, k, dir, demoURL, helmExecutor)
	k.Helm(t, "upgrade", "checkout", helmChart(t, k, charts, "v2"), "--namespace", "default", "--wait", "--timeout", "2m")

	rec := s.waitIncident(1, incident.AwaitingApproval, 120*time.Second)
	if rec.Version != "v2" || rec.Baseline != "v1" || rec.Trigger != "error-rate" {
		t.Fatalf("incident %+v", rec)
	}
	rec = approveRollback(ctx, t, k, s)
	a := rec.Actions["incident-1/rollback.application"]
	if a == nil || a.State != incident.ActionSucceeded || !strings.Contains(a.Output, "revision 2 (chart checkout-1.0.0, app v2) → revision 1 (chart checkout-1.0.0, app v1)") ||
		!strings.Contains(a.Output, "as revision 3") {
		t.Fatalf("action %+v", a)
	}
	history := k.Helm(t, "history", "checkout", "--namespace", "default")
	if !strings.Contains(history, "Rollback to 1") {
		t.Errorf("helm history lacks the rollback:\n%s", history)
	}
	waitReport(t, dir, "helm checkout", "revision 2", "revision 1", "as revision 3")
}

// kubeWorld is a real control plane with the checkout Deployment at v1 (two
// replicas), the demo service under load following the Deployment's
// template, and a directory holding the API token file. A non-nil deploy
// creates the Deployment instead (through a Helm release, say).
func kubeWorld(t *testing.T, deploy func(*testing.T, *testenv.Kubernetes)) (k *testenv.Kubernetes, ctx context.Context, demoURL, dir string) {
	t.Helper()
	k = testenv.StartKubernetes(t)
	if deploy == nil {
		deploy = createCheckout
	}
	deploy(t, k)
	ctx, cancel := context.WithCancel(context.Background())
	svc := demo.New(demo.Options{Seed: 5})
	demoURL = serve(t, svc)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		_, _ = demo.Load{Target: demoURL + "/", RPS: 100, Concurrency: 16}.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-loadDone })
	bridge(ctx, t, k, svc)
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte("ci:"+apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return k, ctx, demoURL, dir
}

// createCheckout creates the checkout Deployment at v1 with two replicas
// and waits until both are available: the tests deploy v2 over a v1 that
// serves. (Without the wait, a loaded machine's fake kubelets had not made
// v1's pods ready when v2 came, and a rollback to v1 then needed new pods
// to become ready within the short progress deadline a test sets.)
func createCheckout(t *testing.T, k *testenv.Kubernetes) {
	replicas := int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "checkout"}},
				Spec:       corev1.PodSpec{NodeName: k.Nodes[0], Containers: []corev1.Container{{Name: "app", Image: "checkout:v1"}}},
			},
		},
	}
	ctx := context.Background()
	if _, err := k.Client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment checkout: %v", err)
	}
	testenv.Eventually(t, 120*time.Second, func() error {
		got, err := k.Client.AppsV1().Deployments("default").Get(ctx, "checkout", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if st := got.Status; st.ObservedGeneration < got.Generation || st.UpdatedReplicas != replicas || st.AvailableReplicas != replicas {
			return fmt.Errorf("v1: %d of %d replicas updated, %d available (generation %d observed %d)",
				st.UpdatedReplicas, replicas, st.AvailableReplicas, got.Generation, st.ObservedGeneration)
		}
		return nil
	}, "checkout v1 available")
}
