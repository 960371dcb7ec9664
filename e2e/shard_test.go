package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/shard"
	"github.com/rollback-guardian/guardian/testenv"
)

// The sharded deployment under test: shardCount shards, shardServices
// services, and the timings every replica uses.
const (
	shardCount    = 16
	shardServices = 300
	// shardLease is lease_duration: a killed replica's shards may be
	// taken after it.
	shardLease = 6 * time.Second
	// shardRetry is retry_period: the replicas read, renew, release and
	// acquire shard Leases once per period.
	shardRetry = time.Second
	// shardTick is the scrape interval and evaluation_interval.
	shardTick = 2 * time.Second
	// shardRPS is every service's traffic, in requests a second.
	shardRPS = 20
)

// shardGlobal is the global section of a sharded replica: %[1]s its
// state directory, %[2]s the directory of the token file, %[3]s the
// kubeconfig, %[4]s its name.
const shardGlobal = `global:
  evaluation_interval: 2s
  state_dir: %[1]s
  auth: {tokens_file: %[2]s/tokens}
  cluster:
    kubeconfig: %[3]s
    namespace: default
    identity: %[4]s
    shards: 16
    lease_duration: 6s
    renew_deadline: 4s
    retry_period: 1s
services:
`

// shardService is service %[1]d on the synthetic server at %[2]s. The
// first service defines the triggers and the rollback (%[3]s and %[4]s),
// the others refer to them (a YAML alias each).
const shardService = `  - name: svc%[1]d
    scrape: {url: "%[2]s/svc/%[1]d/metrics", interval: 2s, timeout: 1500ms}
    watch_window: 10m
    triggers: %[3]s
    approval: {mode: manual}
    rollback: %[4]s
    recovery: {tolerance: 0.5, stable_for: 3s, timeout: 2m}
`

// shardTriggers is the error-rate trigger of every service.
const shardTriggers = `&triggers
      - name: error-rate
        query: >-
          (sum(rate(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.Window}}])) or vector(0))
          / sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))
        window: 10s
        above: 0.05
        for: 2s
        min_requests: 20
        volume_query: 'sum(increase(http_requests_total{version="{{.Version}}"}[{{.Window}}]))'`

// shardRollback is every service's rollback: a command that appends the
// service's name to %[1]s/rollbacks.
const shardRollback = `&rollback
      application:
        command:
          command: [sh, -c, 'echo "$1" >> %[1]s/rollbacks', sh, "{{.Service}}"]
          timeout: 1m`

// shardConfig is the configuration of replica name.
func shardConfig(state, dir, kubeconfig, name, synURL string) string {
	var b strings.Builder
	fmt.Fprintf(&b, shardGlobal, state, dir, kubeconfig, name)
	for i := range shardServices {
		triggers, rollback := "*triggers", "*rollback"
		if i == 0 {
			triggers, rollback = shardTriggers, fmt.Sprintf(shardRollback, dir)
		}
		fmt.Fprintf(&b, shardService, i, synURL, triggers, rollback)
	}
	return b.String()
}

// synthetic stands for many services on one loopback server: GET
// /svc/N/metrics serves service N's http_requests_total by version and
// code. The version that serves takes shardRPS requests a second with its
// error rate; the counters of a version that no longer serves keep their
// value, as a real service's would until its pods go.
type synthetic struct {
	mu    sync.Mutex
	start time.Time
	svcs  []synthService
}

// synthService is one service of a synthetic server.
type synthService struct {
	serving, previous string
	errRate, prevRate float64
	since             time.Duration // when serving began, since start
	// done holds the requests and errors of the versions before serving.
	done map[string][2]float64
}

// newSynthetic returns n services serving v1 with 0.5% errors.
func newSynthetic(n int) *synthetic {
	s := &synthetic{start: time.Now(), svcs: make([]synthService, n)}
	for i := range s.svcs {
		s.svcs[i] = synthService{serving: "v1", errRate: 0.005, done: map[string][2]float64{}}
	}
	return s
}

// deploy makes version, with errRate errors, serve service n's traffic.
func (s *synthetic) deploy(n int, version string, errRate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Since(s.start)
	sv := &s.svcs[n]
	sv.done[sv.serving] = sv.counts(sv.serving, now)
	sv.previous, sv.prevRate = sv.serving, sv.errRate
	sv.serving, sv.errRate, sv.since = version, errRate, now
}

// rollback makes service n's previous version serve again.
func (s *synthetic) rollback(n int) {
	s.mu.Lock()
	prev, rate := s.svcs[n].previous, s.svcs[n].prevRate
	s.mu.Unlock()
	s.deploy(n, prev, rate)
}

// counts returns version's requests and errors at now.
func (sv *synthService) counts(version string, now time.Duration) [2]float64 {
	c := sv.done[version]
	if version == sv.serving {
		req := shardRPS * (now - sv.since).Seconds()
		c[0] += req
		c[1] += req * sv.errRate
	}
	return c
}

func (s *synthetic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var n int
	if _, err := fmt.Sscanf(r.URL.Path, "/svc/%d/metrics", &n); err != nil || n < 0 || n >= len(s.svcs) || r.URL.Path != fmt.Sprintf("/svc/%d/metrics", n) {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	now := time.Since(s.start)
	sv := &s.svcs[n]
	versions := []string{sv.serving}
	for v := range sv.done {
		if v != sv.serving {
			versions = append(versions, v)
		}
	}
	slices.Sort(versions)
	counts := make([][2]float64, len(versions))
	for i, v := range versions {
		counts[i] = sv.counts(v, now)
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter")
	for i, v := range versions {
		fmt.Fprintf(bw, "http_requests_total{version=%q,code=\"200\"} %g\n", v, math.Floor(counts[i][0]-counts[i][1]))
		fmt.Fprintf(bw, "http_requests_total{version=%q,code=\"500\"} %g\n", v, math.Floor(counts[i][1]))
	}
	_ = bw.Flush()
}

// followRollbacks plays the rollback of the command executor: when a
// service's name is appended to file, its previous version serves again.
func (s *synthetic) followRollbacks(ctx context.Context, file string) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	handled := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		b, _ := os.ReadFile(file)
		lines := strings.Fields(string(b))
		for _, name := range lines[min(handled, len(lines)):] {
			if n, err := strconv.Atoi(strings.TrimPrefix(name, "svc")); err == nil && n >= 0 && n < len(s.svcs) {
				s.rollback(n)
			}
		}
		handled = max(handled, len(lines))
	}
}

// replicaMetrics is what one replica's /metrics says of the shards.
type replicaMetrics struct {
	// evals sums guardian_evaluations_total by service.
	evals map[string]float64
	// owned is guardian_shards_owned; transitions sums
	// guardian_shard_lease_transitions_total.
	owned, transitions float64
}

// readReplica reads the metrics of the replica at base.
func readReplica(base string) (replicaMetrics, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return replicaMetrics{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return replicaMetrics{}, fmt.Errorf("GET %s/metrics: %s", base, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return replicaMetrics{}, err
	}
	m := replicaMetrics{evals: map[string]float64{}, owned: math.NaN()}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		name, labels, _ := strings.Cut(f[0], "{")
		switch name {
		case "guardian_shards_owned":
			m.owned = v
		case "guardian_shard_lease_transitions_total":
			m.transitions += v
		case "guardian_evaluations_total":
			_, rest, ok := strings.Cut(labels, `service="`)
			svc, _, ok2 := strings.Cut(rest, `"`)
			if ok && ok2 {
				m.evals[svc] += v
			}
		}
	}
	if math.IsNaN(m.owned) {
		return m, fmt.Errorf("%s/metrics has no guardian_shards_owned", base)
	}
	return m, nil
}

// readReplicas reads the metrics of every replica.
func readReplicas(procs []*guardianProc) ([]replicaMetrics, error) {
	ms := make([]replicaMetrics, len(procs))
	for i, p := range procs {
		var err error
		if ms[i], err = readReplica(p.url); err != nil {
			return nil, err
		}
	}
	return ms, nil
}

// awaitEvery calls f every period until it returns nil, and fails t with
// f's last error after timeout. It polls less often than
// testenv.Eventually: each call reads the metrics of 300 services from
// several processes.
func awaitEvery(t testing.TB, timeout, period time.Duration, f func() error, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		<-tick.C
	}
}

// shardServiceNames are the names of the services, in order.
func shardServiceNames() []string {
	svcs := make([]string, shardServices)
	for i := range svcs {
		svcs[i] = fmt.Sprintf("svc%d", i)
	}
	return svcs
}

// evaluatedOnce measures a window of at least three evaluation intervals
// that ends once every service was evaluated, and checks that each was
// evaluated by exactly one of procs: its guardian_evaluations_total rose
// on one replica only. It returns the index in procs of each service's
// evaluator. A window in which a shard Lease changed hands may see a
// service evaluated by its old owner and then by its new one: such a
// window is measured again, up to three times.
func evaluatedOnce(t *testing.T, procs []*guardianProc) map[string]int {
	t.Helper()
	names := shardServiceNames()
	for attempt := 1; ; attempt++ {
		before, err := readReplicas(procs)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var after []replicaMetrics
		awaitEvery(t, 60*time.Second, 500*time.Millisecond, func() error {
			var err error
			if after, err = readReplicas(procs); err != nil {
				return err
			}
			var missing []string
			for _, svc := range names {
				evaluated := false
				for i := range procs {
					evaluated = evaluated || after[i].evals[svc] > before[i].evals[svc]
				}
				if !evaluated {
					missing = append(missing, svc)
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("%d services evaluated by no replica since the window began, among them %s", len(missing), missing[0])
			}
			if time.Since(start) < 3*shardTick {
				return fmt.Errorf("window of %s only", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}, "every service evaluated in the window")
		moved := false
		for i := range procs {
			moved = moved || after[i].transitions != before[i].transitions
		}
		evaluator := map[string]int{}
		var twice []string
		for _, svc := range names {
			var by []int
			for i := range procs {
				if after[i].evals[svc] > before[i].evals[svc] {
					by = append(by, i)
				}
			}
			evaluator[svc] = by[0]
			if len(by) > 1 {
				twice = append(twice, fmt.Sprintf("%s by %v", svc, by))
			}
		}
		switch {
		case len(twice) > 0 && moved && attempt < 3:
			t.Logf("a shard Lease changed hands in the window of %s (%d services evaluated by two replicas): measuring again", time.Since(start).Round(time.Millisecond), len(twice))
			continue
		case len(twice) > 0:
			t.Fatalf("in a window of %s, %d services were evaluated by more than one replica (shard Leases moved: %t): %v",
				time.Since(start).Round(time.Millisecond), len(twice), moved, twice[:min(10, len(twice))])
		}
		t.Logf("window of %s: each of the %d services evaluated by exactly one of %d replicas", time.Since(start).Round(time.Millisecond), len(names), len(procs))
		return evaluator
	}
}

// shardStatus is an entry of /api/v1/status with its owner.
type shardStatus struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
	Shard *int   `json:"shard"`
}

// owners reads /api/v1/status from s and returns the index in procs of
// each service's owner, after checking that the owner is a replica's
// identity (its name in names, "|", its URL) and the holder of the
// service's shard Lease, and that the shard is the service's.
func owners(ctx context.Context, s *stack, k *testenv.Kubernetes, procs []*guardianProc, names []string) (map[string]int, error) {
	var st []shardStatus
	if err := s.getJSON("/api/v1/status", &st); err != nil {
		return nil, err
	}
	if len(st) != shardServices {
		return nil, fmt.Errorf("status lists %d services, want %d", len(st), shardServices)
	}
	leases, err := k.Client.CoordinationV1().Leases("default").List(ctx, metav1.ListOptions{LabelSelector: "guardian.io/lease=shard"})
	if err != nil {
		return nil, err
	}
	holders := map[string]string{}
	for _, l := range leases.Items {
		if l.Spec.HolderIdentity != nil {
			holders[l.Name] = *l.Spec.HolderIdentity
		}
	}
	out := map[string]int{}
	for _, e := range st {
		i := -1
		for j, p := range procs {
			if e.Owner == names[j]+"|"+p.url {
				i = j
			}
		}
		if i < 0 {
			return nil, fmt.Errorf("service %s: owner %q is none of the replicas", e.Name, e.Owner)
		}
		n := shard.ShardOf(e.Name, shardCount)
		if e.Shard == nil || *e.Shard != n {
			return nil, fmt.Errorf("service %s: status says shard %v, want %d", e.Name, e.Shard, n)
		}
		lease := fmt.Sprintf("guardian-shard-%d", n)
		if h := holders[lease]; h != e.Owner {
			return nil, fmt.Errorf("service %s: status says owner %q, Lease %s is held by %q", e.Name, e.Owner, lease, h)
		}
		out[e.Name] = i
	}
	return out, nil
}

// replicaName is replica i's configured identity.
func replicaName(i int) string { return fmt.Sprintf("guardian-%d", i) }

// announceTo announces a deploy of service through the replica at base,
// which forwards it to the service's owner. A shard changing hands has no
// owner for a moment: the announcement is sent again while the answer is
// 502 or 503.
func announceTo(t *testing.T, base, service, version, baseline string) {
	t.Helper()
	body := fmt.Sprintf(`{"service":%q,"version":%q,"baseline":%q}`, service, version, baseline)
	testenv.Eventually(t, 30*time.Second, func() error {
		req, _ := http.NewRequest("POST", base+"/api/v1/deployments", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
			return nil
		case http.StatusBadGateway, http.StatusServiceUnavailable:
			return fmt.Errorf("announce %s %s through %s: %d %s", service, version, base, resp.StatusCode, b)
		}
		t.Fatalf("announce %s %s through %s: %d %s", service, version, base, resp.StatusCode, b)
		return nil
	}, "the announcement of "+service+" "+version)
}

// incidentsOf lists the incidents through s, by service.
func incidentsOf(s *stack) (map[string][]incident.Record, error) {
	var recs []incident.Record
	if err := s.getJSON("/api/v1/incidents", &recs); err != nil {
		return nil, err
	}
	out := map[string][]incident.Record{}
	for _, r := range recs {
		out[r.Service] = append(out[r.Service], r)
	}
	return out, nil
}

// Three replicas split 300 services into 16 shards on a real control
// plane: each service is evaluated by exactly one replica, the one its
// status names and whose shard Lease it holds, and every replica holds
// some shards. Deploys are announced through any replica. A bad deploy
// opens an incident on its owner, which is then killed: the survivors take
// its services over within the Lease duration and a tick, the incident
// resumes on the new owner, is approved through the other survivor and
// resolved, and the rollback ran exactly once.
func TestShardedReplicas(t *testing.T) {
	t.Parallel()
	k := testenv.StartKubernetes(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte("ci:"+apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	syn := newSynthetic(shardServices)
	synURL := serve(t, syn)
	rollbacks := filepath.Join(dir, "rollbacks")
	go syn.followRollbacks(ctx, rollbacks)

	procs := make([]*guardianProc, 3)
	for i := range procs {
		cfg := filepath.Join(dir, fmt.Sprintf("guardian-%d.yml", i))
		text := shardConfig(filepath.Join(dir, fmt.Sprintf("state-%d", i)), dir, k.Kubeconfig, replicaName(i), synURL)
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		procs[i] = startProc(t, cfg)
	}
	stacks, names := make([]*stack, len(procs)), make([]string, len(procs))
	for i, p := range procs {
		stacks[i], names[i] = &stack{t: t, apiURL: p.url}, replicaName(i)
	}

	// The replicas share the shards: ⌊16/3⌋ or ⌈16/3⌉ each, all held.
	awaitEvery(t, 60*time.Second, 500*time.Millisecond, func() error {
		ms, err := readReplicas(procs)
		if err != nil {
			return err
		}
		sum, owned := 0.0, make([]float64, len(ms))
		for i, m := range ms {
			sum, owned[i] = sum+m.owned, m.owned
		}
		if sum != shardCount || slices.Min(owned) < float64(shardCount/len(procs)) {
			return fmt.Errorf("shards owned %v", owned)
		}
		return nil
	}, "the replicas to share the shards")
	var owner map[string]int
	testenv.Eventually(t, 30*time.Second, func() (err error) { owner, err = owners(ctx, stacks[0], k, procs, names); return err }, "the status to name every service's owner")

	// A healthy deploy of every service, announced through every replica
	// in turn: each service's owner watches it from now on.
	for n := range shardServices {
		syn.deploy(n, "v2", 0.005)
		announceTo(t, procs[n%len(procs)].url, fmt.Sprintf("svc%d", n), "v2", "v1")
	}
	evaluator := evaluatedOnce(t, procs)
	perReplica := make([]int, len(procs))
	for svc, i := range evaluator {
		if owner[svc] != i {
			t.Errorf("%s evaluated by %s, owned by %s", svc, replicaName(i), replicaName(owner[svc]))
		}
		perReplica[i]++
	}
	t.Logf("services evaluated per replica: %v", perReplica)

	// A bad deploy of a service owned by replica R, announced through
	// another replica.
	const bad = "svc0"
	r := owner[bad]
	survivors := slices.Delete(slices.Clone(procs), r, r+1)
	survivorStacks := slices.Delete(slices.Clone(stacks), r, r+1)
	survivorNames := slices.Delete(slices.Clone(names), r, r+1)
	syn.deploy(0, "v3", 0.20)
	announceTo(t, survivors[0].url, bad, "v3", "v2")
	var rec incident.Record
	testenv.Eventually(t, 90*time.Second, func() error {
		incs, err := incidentsOf(survivorStacks[0])
		if err != nil {
			return err
		}
		if len(incs[bad]) != 1 || incs[bad][0].State != incident.AwaitingApproval {
			return fmt.Errorf("incidents of %s: %+v", bad, incs[bad])
		}
		rec = incs[bad][0]
		return nil
	}, "an incident on "+bad+" awaiting approval")
	if rec.Version != "v3" || rec.Baseline != "v2" {
		t.Fatalf("incident %d: %s against %s, want v3 against v2", rec.ID, rec.Version, rec.Baseline)
	}
	for i, p := range procs {
		want := "0"
		if i == r {
			want = "1"
		}
		if got := metricValue(t, p.url, "guardian_incidents_declared_total"); got != want && (want != "0" || got != "") {
			t.Errorf("%s declared %q incidents, want %s", replicaName(i), got, want)
		}
	}

	// Kill R mid-incident: the survivors take its services over.
	was, err := readReplicas(survivors)
	if err != nil {
		t.Fatal(err)
	}
	var orphans []string
	for svc, i := range owner {
		if i == r {
			orphans = append(orphans, svc)
		}
	}
	procs[r].stop(syscall.SIGKILL)
	killed := time.Now()
	bound := shardLease + 2*shardRetry + shardTick + 15*time.Second
	awaitEvery(t, bound, 250*time.Millisecond, func() error {
		ms, err := readReplicas(survivors)
		if err != nil {
			return err
		}
		left := 0
		for _, svc := range orphans {
			if ms[0].evals[svc] <= was[0].evals[svc] && ms[1].evals[svc] <= was[1].evals[svc] {
				left++
			}
		}
		if left > 0 {
			return fmt.Errorf("%d of %s's %d services not evaluated by a survivor yet", left, replicaName(r), len(orphans))
		}
		if sum := ms[0].owned + ms[1].owned; sum != shardCount {
			return fmt.Errorf("the survivors own %g shards", sum)
		}
		return nil
	}, "the survivors to take over "+replicaName(r)+"'s services")
	took := time.Since(killed)
	t.Logf("the %d services of %s, killed, evaluated again by the survivors %s after the kill (lease duration %s, retry period %s, tick %s)",
		len(orphans), replicaName(r), took.Round(10*time.Millisecond), shardLease, shardRetry, shardTick)

	// After the takeover every service is evaluated by exactly one
	// survivor, the owner the status names.
	evaluator = evaluatedOnce(t, survivors)
	testenv.Eventually(t, 30*time.Second, func() (err error) {
		owner, err = owners(ctx, survivorStacks[0], k, survivors, survivorNames)
		return err
	}, "the status to name the survivors as owners")
	for svc, i := range evaluator {
		if owner[svc] != i {
			t.Errorf("after the takeover, %s evaluated by %s, owned by %s", svc, survivorNames[i], survivorNames[owner[svc]])
		}
	}

	// The incident resumes on the new owner: the go, sent to the other
	// survivor, is forwarded to it.
	other := 1 - owner[bad]
	testenv.Eventually(t, 30*time.Second, func() error {
		switch code := survivorStacks[other].decide(rec.ID, "approve", apiToken, `{"reason":"after the takeover"}`); code {
		case http.StatusOK:
			return nil
		case http.StatusBadGateway, http.StatusServiceUnavailable:
			return fmt.Errorf("approve: %d", code)
		default:
			t.Fatalf("approve through the replica that does not own %s: %d", bad, code)
			return nil
		}
	}, "the approval to reach "+bad+"'s new owner")
	rec = survivorStacks[other].waitIncident(rec.ID, incident.Resolved, 120*time.Second)
	if a := rec.Actions[fmt.Sprintf("incident-%d/rollback.application", rec.ID)]; a == nil || a.State != incident.ActionSucceeded {
		t.Errorf("rollback action %+v", a)
	}
	b, err := os.ReadFile(rollbacks)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(b)); !slices.Equal(got, []string{bad}) {
		t.Fatalf("rollbacks run: %q, want %s once", got, bad)
	}
	incs, err := incidentsOf(survivorStacks[other])
	if err != nil {
		t.Fatal(err)
	}
	if len(incs) != 1 || len(incs[bad]) != 1 {
		t.Fatalf("incidents by service: %v, want one, on %s", incs, bad)
	}
}
