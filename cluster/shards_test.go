//go:build !nokubernetes

package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/rollback-guardian/guardian/shard"
	"github.com/rollback-guardian/guardian/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Short timings for the tests, in client-go's proportions.
const (
	testShards        = 32
	testLeaseDuration = 3 * time.Second
	testRenewDeadline = 2 * time.Second
	testRetryPeriod   = 500 * time.Millisecond
	// slack covers a loaded two-CPU machine: rounds that start late and
	// API calls that take a while.
	slack = 2 * time.Second
)

// event is one change of a replica's driven set for one shard, timed
// under the recorder's lock, so that events of different replicas are
// ordered.
type event struct {
	at    time.Time
	who   string
	shard int
	start bool
}

// recorder receives every replica's OnChange and checks, at every start,
// that no other replica is driving the shard: the safety property.
type recorder struct {
	// stopDelay is how long OnChange takes to stop driving shards that
	// leave the set: they are driven until it returns.
	stopDelay time.Duration

	mu         sync.Mutex
	owned      map[string]map[int]bool
	events     []event
	violations []string
}

func newRecorder() *recorder { return &recorder{owned: map[string]map[int]bool{}} }

func (r *recorder) onChange(who string) func([]int) {
	return func(owned []int) {
		if r.stopDelay > 0 {
			r.mu.Lock()
			stopping := len(owned) < len(r.owned[who])
			for n := range r.owned[who] {
				stopping = stopping || !slices.Contains(owned, n)
			}
			r.mu.Unlock()
			if stopping {
				time.Sleep(r.stopDelay) // the work of stopping, not a synchronisation
			}
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		now := time.Now()
		cur := r.owned[who]
		if cur == nil {
			cur = map[int]bool{}
			r.owned[who] = cur
		}
		next := map[int]bool{}
		for _, n := range owned {
			next[n] = true
		}
		for n := range cur {
			if !next[n] {
				r.events = append(r.events, event{now, who, n, false})
			}
		}
		for n := range next {
			if cur[n] {
				continue
			}
			for other, o := range r.owned {
				if other != who && o[n] {
					r.violations = append(r.violations, fmt.Sprintf("%s: shard %d started by %s while %s drives it", now.Format(time.StampMicro), n, who, other))
				}
			}
			r.events = append(r.events, event{now, who, n, true})
		}
		r.owned[who] = next
	}
}

// owners returns the replica driving each shard, "" for none, and an error
// if a shard has two.
func (r *recorder) owners() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	owners := make([]string, testShards)
	for who, o := range r.owned {
		for n := range o {
			if owners[n] != "" {
				return nil, fmt.Errorf("shard %d driven by %s and %s", n, owners[n], who)
			}
			owners[n] = who
		}
	}
	return owners, nil
}

func (r *recorder) ownedBy(who string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.owned[who]))
}

// eventsSince returns the events at or after t.
func (r *recorder) eventsSince(t time.Time) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if !e.at.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// check fails t if a shard was ever driven by two replicas: at every
// start (violations), and over the whole history, that each shard's
// driving intervals, in time order, never overlap.
func (r *recorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		t.Error(v)
	}
	open := map[int]map[string]time.Time{}
	checked := 0
	for _, e := range r.events {
		if open[e.shard] == nil {
			open[e.shard] = map[string]time.Time{}
		}
		if !e.start {
			delete(open[e.shard], e.who)
			continue
		}
		for other, since := range open[e.shard] {
			t.Errorf("shard %d: %s started at %s while %s drove it since %s",
				e.shard, e.who, e.at.Format(time.StampMicro), other, since.Format(time.StampMicro))
		}
		open[e.shard][e.who] = e.at
		checked++
	}
	if checked == 0 {
		t.Error("no shard was ever driven: nothing checked")
	}
	t.Logf("safety: %d driving intervals checked over %d events", checked, len(r.events))
}

// replica is one Shards controller running in the test.
type replica struct {
	name   string
	s      *Shards
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	cut    *atomic.Int32 // a cutMode: how its requests to the API server fare
}

// cutMode is how a replica's requests to the API server fare.
type cutMode int32

const (
	connected   cutMode = iota
	partitioned         // every request fails at once
	stuck               // every request hangs until its context ends
)

type cutTransport struct {
	cut *atomic.Int32
	rt  http.RoundTripper
}

var errPartitioned = errors.New("partitioned from the API server (test)")

func (c cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	switch cutMode(c.cut.Load()) {
	case partitioned:
		return nil, errPartitioned
	case stuck:
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	return c.rt.RoundTrip(r)
}

// group is the replicas of one subtest, sharing one Lease prefix.
type group struct {
	t        *testing.T
	k        *testenv.Kubernetes
	prefix   string
	rec      *recorder
	replicas map[string]*replica
}

func newGroup(t *testing.T, k *testenv.Kubernetes, prefix string) *group {
	g := &group{t: t, k: k, prefix: prefix, rec: newRecorder(), replicas: map[string]*replica{}}
	t.Cleanup(func() {
		for _, r := range g.replicas {
			r.stop(false)
		}
		g.rec.check(t)
	})
	return g
}

func (g *group) start(name string) *replica { return g.startWith(name, testShards) }

func (g *group) startWith(name string, shards int) *replica {
	g.t.Helper()
	cut := &atomic.Int32{}
	rc := rest.CopyConfig(g.k.Config)
	rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return cutTransport{cut, rt} }
	client, err := k8s.NewForConfig(rc)
	if err != nil {
		g.t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	id := name + "|http://" + name + ".test:9095"
	s, err := NewShards(client, ShardsConfig{
		Namespace: "default", Prefix: g.prefix, Identity: id, Shards: shards,
		LeaseDuration: testLeaseDuration, RenewDeadline: testRenewDeadline, RetryPeriod: testRetryPeriod,
		OnChange: g.rec.onChange(id),
	}, zaptest.NewLogger(g.t).Named(name), reg)
	if err != nil {
		g.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{name: id, s: s, reg: reg, cancel: cancel, done: make(chan error, 1), cut: cut}
	go func() { r.done <- s.Run(ctx) }()
	g.replicas[id] = r
	return r
}

// stop ends r's Run: a graceful leave, or a crash that releases nothing.
func (r *replica) stop(crash bool) {
	if r.done == nil {
		return
	}
	r.s.crash.Store(crash)
	r.cancel()
	<-r.done
	r.done = nil
}

func (g *group) stopped(r *replica, crash bool) {
	r.stop(crash)
	delete(g.replicas, r.name)
}

// settled reports whether every shard is driven by exactly one of the
// running replicas and their counts are ⌊S/N⌋ or ⌈S/N⌉.
func (g *group) settled() error {
	owners, err := g.rec.owners()
	if err != nil {
		return err
	}
	count := map[string]int{}
	for n, o := range owners {
		if o == "" {
			return fmt.Errorf("shard %d undriven", n)
		}
		if g.replicas[o] == nil {
			return fmt.Errorf("shard %d driven by %s, which is not running", n, o)
		}
		count[o]++
	}
	lo := testShards / len(g.replicas)
	hi := (testShards + len(g.replicas) - 1) / len(g.replicas)
	for name := range g.replicas {
		if c := count[name]; c < lo || c > hi {
			return fmt.Errorf("%s drives %d shards, want %d to %d (counts %v)", name, c, lo, hi, count)
		}
	}
	return nil
}

func (g *group) awaitSettled(timeout time.Duration, what string) {
	g.t.Helper()
	testenv.Eventually(g.t, timeout, g.settled, what)
}

// lastStart returns when the last of shards started on a replica other
// than from, among events.
func lastStart(events []event, shards []int, from string) (time.Time, map[int]string) {
	want := map[int]bool{}
	for _, n := range shards {
		want[n] = true
	}
	var last time.Time
	to := map[int]string{}
	for _, e := range events {
		if e.start && want[e.shard] && e.who != from {
			to[e.shard] = e.who
			if e.at.After(last) {
				last = e.at
			}
		}
	}
	return last, to
}

func TestShards(t *testing.T) {
	k := testenv.StartKubernetes(t)
	names := []string{"guardian-0", "guardian-1", "guardian-2"}
	// Settling from nothing: a replica waits out a LeaseDuration for
	// nothing, but replicas starting together acquire over a few rounds.
	settle := testLeaseDuration + 4*testRetryPeriod + slack

	t.Run("ThreeReplicasSplitEveryShard", func(t *testing.T) {
		g := newGroup(t, k, "balance-")
		for _, n := range names {
			g.start(n)
		}
		g.awaitSettled(settle, "three replicas to split 32 shards")

		// The Leases say what the replicas believe.
		owners, _ := g.rec.owners()
		testenv.Eventually(t, 4*testRetryPeriod, func() error {
			list, err := k.Client.CoordinationV1().Leases("default").List(context.Background(),
				metav1.ListOptions{LabelSelector: LabelLease + "=shard," + LabelShardSet + "=balance"})
			if err != nil {
				return err
			}
			if len(list.Items) != testShards {
				return fmt.Errorf("%d shard Leases, want %d", len(list.Items), testShards)
			}
			for _, l := range list.Items {
				var n int
				if _, err := fmt.Sscanf(l.Name, "balance-%d", &n); err != nil {
					return fmt.Errorf("lease %s: %w", l.Name, err)
				}
				if h := holderOf(&l); h != owners[n] {
					return fmt.Errorf("lease %s held by %q, driven by %q", l.Name, h, owners[n])
				}
			}
			return nil
		}, "the shard Leases to name the drivers")

		// Owns, Owner and Snapshot agree with the drivers on every replica.
		testenv.Eventually(t, 4*testRetryPeriod, func() error {
			for i := range 50 {
				svc := fmt.Sprintf("svc-%03d", i)
				want := owners[shard.ShardOf(svc, testShards)]
				for name, r := range g.replicas {
					if got := r.s.Owns(svc); got != (name == want) {
						return fmt.Errorf("%s.Owns(%s) = %v, driver %s", name, svc, got, want)
					}
					if got, ok := r.s.Owner(svc); !ok || got != want {
						return fmt.Errorf("%s.Owner(%s) = %q, %v, want %q", name, svc, got, ok, want)
					}
				}
			}
			for name, r := range g.replicas {
				snap := r.s.Snapshot()
				if !slices.Equal(snap.Holders, owners) || len(snap.Members) != 3 || !slices.Equal(snap.Owned, g.rec.ownedBy(name)) {
					return fmt.Errorf("%s's snapshot %+v, drivers %v", name, snap, owners)
				}
			}
			return nil
		}, "every replica's view to match the drivers")

		for name, r := range g.replicas {
			if got, want := testutil.ToFloat64(r.s.owned), float64(len(g.rec.ownedBy(name))); got != want {
				t.Errorf("%s: guardian_shards_owned = %v, want %v", name, got, want)
			}
			if n, err := testutil.GatherAndCount(r.reg, "guardian_shards_owned", "guardian_shard_lease_transitions_total", "guardian_shard_lease_errors_total"); err != nil || n != 5 {
				t.Errorf("%s: %d series registered (%v), want 5", name, n, err)
			}
			if got := testutil.ToFloat64(r.s.transitions.WithLabelValues("acquire")); got < float64(len(g.rec.ownedBy(name))) {
				t.Errorf("%s: %v acquisitions counted, drives %d", name, got, len(g.rec.ownedBy(name)))
			}
		}
	})

	t.Run("CrashIsTakenOverAfterExpiry", func(t *testing.T) {
		g := newGroup(t, k, "crash-")
		for _, n := range names {
			g.start(n)
		}
		g.awaitSettled(settle, "three replicas to settle")
		victim := g.replicas[names[1]+"|http://"+names[1]+".test:9095"]
		before := map[string][]int{}
		for name := range g.replicas {
			before[name] = g.rec.ownedBy(name)
		}
		lost := before[victim.name]
		crashed := time.Now()
		g.stopped(victim, true)
		g.awaitSettled(testLeaseDuration+2*testRetryPeriod+2*slack, "the survivors to take the crashed replica's shards")

		last, to := lastStart(g.rec.eventsSince(crashed), lost, victim.name)
		took := last.Sub(crashed)
		t.Logf("crash: %d shards taken over %s after the crash (LeaseDuration %s + 2·RetryPeriod %s = %s)",
			len(lost), took.Round(time.Millisecond), testLeaseDuration, testRetryPeriod, testLeaseDuration+2*testRetryPeriod)
		if len(to) != len(lost) {
			t.Errorf("%d of the crashed replica's %d shards were taken over", len(to), len(lost))
		}
		if lo := testLeaseDuration - 2*testRetryPeriod; took < lo {
			t.Errorf("taken over %s after the crash: before the Leases could expire (%s)", took, lo)
		}
		if hi := testLeaseDuration + 2*testRetryPeriod + slack; took > hi {
			t.Errorf("taken over %s after the crash, want at most %s", took, hi)
		}
		// Its membership Lease is deleted once expired for twice its
		// duration, counted from when the survivors last saw it change.
		testenv.Eventually(t, testLeaseDuration+2*testRetryPeriod+slack, func() error {
			list, err := k.Client.CoordinationV1().Leases("default").List(context.Background(),
				metav1.ListOptions{LabelSelector: LabelLease + "=member," + LabelShardSet + "=crash"})
			if err != nil {
				return err
			}
			for _, l := range list.Items {
				if holderOf(&l) == victim.name {
					return fmt.Errorf("membership Lease %s of the crashed replica still there", l.Name)
				}
			}
			if len(list.Items) != 2 {
				return fmt.Errorf("%d membership Leases, want the 2 survivors'", len(list.Items))
			}
			return nil
		}, "the crashed replica's membership Lease to be deleted")

		// Only the crashed replica's shards moved: the survivors stopped
		// nothing and started only its shards.
		for _, e := range g.rec.eventsSince(crashed) {
			if e.who == victim.name {
				continue
			}
			if !e.start || !slices.Contains(lost, e.shard) {
				t.Errorf("after the crash %s %s shard %d, which was not the crashed replica's", e.who, map[bool]string{true: "started", false: "stopped"}[e.start], e.shard)
			}
		}
	})

	for _, tc := range []struct {
		name   string
		prefix string
		mode   cutMode
	}{
		{"PartitionedReplicaStopsBeforeOthersTakeOver", "partition-", partitioned},
		{"ReplicaStuckOnTheAPIServerStopsBeforeOthersTakeOver", "stuck-", stuck},
	} {
		t.Run(tc.name, func(t *testing.T) { testCutOff(t, k, tc.prefix, tc.mode, names, settle) })
	}

	t.Run("GracefulLeaveHandsOverAtOnce", func(t *testing.T) {
		g := newGroup(t, k, "leave-")
		for _, n := range names {
			g.start(n)
		}
		g.awaitSettled(settle, "three replicas to settle")
		leaver := g.replicas[names[2]+"|http://"+names[2]+".test:9095"]
		lost := g.rec.ownedBy(leaver.name)
		left := time.Now()
		g.stopped(leaver, false)
		g.awaitSettled(2*testRetryPeriod+slack, "the others to take the leaver's shards")
		last, to := lastStart(g.rec.eventsSince(left), lost, leaver.name)
		took := last.Sub(left)
		t.Logf("leave: %d shards handed over %s after the leave began (2·RetryPeriod = %s)", len(lost), took.Round(time.Millisecond), 2*testRetryPeriod)
		if len(to) != len(lost) {
			t.Errorf("%d of the leaver's %d shards were taken", len(to), len(lost))
		}
		if hi := 2*testRetryPeriod + slack; took > hi {
			t.Errorf("handed over %s after the leave, want at most %s", took, hi)
		}
		for _, e := range g.rec.eventsSince(left) {
			if e.who != leaver.name && (!e.start || !slices.Contains(lost, e.shard)) {
				t.Errorf("after the leave %s changed shard %d, which was not the leaver's", e.who, e.shard)
			}
		}
	})

	t.Run("JoinMovesOnlyTheNewcomersShare", func(t *testing.T) {
		g := newGroup(t, k, "join-")
		// Replicas take a while to stop driving what they give up: the
		// newcomer must not start before they have.
		g.rec.stopDelay = testRetryPeriod
		for _, n := range names {
			g.start(n)
		}
		g.awaitSettled(settle, "three replicas to settle")
		joined := time.Now()
		newcomer := g.start("guardian-3")
		g.awaitSettled(4*testRetryPeriod+slack, "the newcomer to take its share")
		events := g.rec.eventsSince(joined)
		var last time.Time
		moved := 0
		for _, e := range events {
			switch {
			case e.who == newcomer.name && e.start:
				moved++
				if e.at.After(last) {
					last = e.at
				}
			case e.who == newcomer.name:
				t.Errorf("the newcomer stopped shard %d", e.shard)
			case e.start:
				t.Errorf("after the join %s started shard %d: only the newcomer should", e.who, e.shard)
			}
		}
		t.Logf("join: %d shards moved to the newcomer, settled %s after it started (S/(N+1) = %d)",
			moved, last.Sub(joined).Round(time.Millisecond), testShards/4)
		if lo, hi := testShards/4, (testShards+3)/4; moved < lo || moved > hi {
			t.Errorf("%d shards moved, want %d to %d", moved, lo, hi)
		}
	})

	t.Run("OtherShardCountAcquiresNothing", func(t *testing.T) {
		g := newGroup(t, k, "count-")
		for _, n := range names[:2] {
			g.start(n)
		}
		g.awaitSettled(settle, "two replicas to settle")
		settledAt := time.Now()
		odd := g.startWith("guardian-16", 16)
		delete(g.replicas, odd.name) // not counted in settled; stopped at cleanup below
		t.Cleanup(func() { odd.stop(false) })
		testenv.EventuallyTrue(t, testLeaseDuration+4*testRetryPeriod+slack, func() bool {
			for _, r := range g.replicas {
				if testutil.ToFloat64(r.s.errs) == 0 {
					return false
				}
			}
			return testutil.ToFloat64(odd.s.errs) > 0
		}, "every replica to report the other number of shards")
		if err := g.settled(); err != nil {
			t.Errorf("the replicas with 32 shards lost their split: %v", err)
		}
		for _, e := range g.rec.eventsSince(settledAt) {
			t.Errorf("shard %d changed hands (%s) while a replica with another number of shards was live", e.shard, e.who)
		}
		if snap := odd.s.Snapshot(); len(snap.Owned) != 0 || len(snap.Members) != 1 {
			t.Errorf("the replica with 16 shards: %+v, want no shards and itself as the only member", snap)
		}
	})
}

func TestShardsConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ShardsConfig
		want string
	}{
		{"no namespace", ShardsConfig{Identity: "a"}, "no namespace"},
		{"no identity", ShardsConfig{Namespace: "ns"}, "no identity"},
		{"negative shards", ShardsConfig{Namespace: "ns", Identity: "a", Shards: -1}, "must be positive"},
		{"renew deadline too long", ShardsConfig{Namespace: "ns", Identity: "a", RenewDeadline: 20 * time.Second}, "need lease duration > renew deadline"},
		{"bad prefix", ShardsConfig{Namespace: "ns", Identity: "a", Prefix: "Guardian_"}, `prefix "Guardian_"`},
		{"defaults", ShardsConfig{Namespace: "ns", Identity: "a"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.cfg.withDefaults()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			case tc.want == "":
				if c.Shards != shard.DefaultShards || c.Prefix != DefaultShardPrefix || c.LeaseDuration != 15*time.Second ||
					c.RenewDeadline != 10*time.Second || c.RetryPeriod != 2*time.Second {
					t.Errorf("defaults %+v", c)
				}
			}
		})
	}
}

// BenchmarkShardsRound measures one round of a replica that holds every
// shard: one List and a renewal of each shard Lease, one after the other,
// on a real API server. A replica of N holds S/N.
func BenchmarkShardsRound(b *testing.B) {
	k := testenv.StartKubernetes(b)
	rc := rest.CopyConfig(k.Config)
	rc.QPS = -1 // no client-side rate limit: measure the API server
	client, err := k8s.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	for _, shards := range []int{64, 256} {
		b.Run(fmt.Sprint("shards=", shards), func(b *testing.B) {
			s, err := NewShards(client, ShardsConfig{
				Namespace: "default", Prefix: fmt.Sprintf("bench%d-", shards), Identity: "bench|http://bench:9095", Shards: shards,
			}, zaptest.NewLogger(b), nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			s.round(ctx) // creates every Lease
			if got := len(s.Snapshot().Owned); got != shards {
				b.Fatalf("holds %d shards after the first round, want %d", got, shards)
			}
			before := testutil.ToFloat64(s.errs)
			for b.Loop() {
				s.round(ctx)
			}
			if testutil.ToFloat64(s.errs) != before || len(s.Snapshot().Owned) != shards {
				b.Fatalf("rounds failed: %v errors, %d shards held", testutil.ToFloat64(s.errs)-before, len(s.Snapshot().Owned))
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(shards+2), "µs/request")
		})
	}
}

// testCutOff cuts one of three settled replicas off the API server
// (requests failing or hanging) while it keeps running: it must stop
// driving within RenewDeadline, before the others take its shards after
// expiry; healed, it takes its share back.
func testCutOff(t *testing.T, k *testenv.Kubernetes, prefix string, mode cutMode, names []string, settle time.Duration) {
	g := newGroup(t, k, prefix)
	for _, n := range names {
		g.start(n)
	}
	g.awaitSettled(settle, "three replicas to settle")
	victim := g.replicas[names[0]+"|http://"+names[0]+".test:9095"]
	lost := g.rec.ownedBy(victim.name)
	cut := time.Now()
	victim.cut.Store(int32(mode))
	// It keeps running, cut off: it must stop driving within
	// RenewDeadline, and the others take its shards after expiry.
	testenv.EventuallyTrue(t, testRenewDeadline+slack, func() bool { return len(g.rec.ownedBy(victim.name)) == 0 },
		"the partitioned replica to stop driving")
	var stoppedAt time.Time
	for _, e := range g.rec.eventsSince(cut) {
		if e.who == victim.name && !e.start {
			stoppedAt = e.at
		}
	}
	testenv.Eventually(t, testLeaseDuration+2*testRetryPeriod+2*slack, func() error {
		owners, err := g.rec.owners()
		if err != nil {
			return err
		}
		for _, n := range lost {
			if owners[n] == "" {
				return fmt.Errorf("shard %d undriven", n)
			}
		}
		return nil
	}, "the others to take the partitioned replica's shards")
	last, _ := lastStart(g.rec.eventsSince(cut), lost, victim.name)
	first := last
	for _, e := range g.rec.eventsSince(cut) {
		if e.start && e.who != victim.name && e.at.Before(first) {
			first = e.at
		}
	}
	t.Logf("%s: the cut-off replica stopped driving %s after the cut (RenewDeadline %s); the others started %s to %s after the cut (margin before the first: %s)",
		strings.TrimSuffix(prefix, "-"), stoppedAt.Sub(cut).Round(time.Millisecond), testRenewDeadline, first.Sub(cut).Round(time.Millisecond),
		last.Sub(cut).Round(time.Millisecond), first.Sub(stoppedAt).Round(time.Millisecond))
	if got := testutil.ToFloat64(victim.s.transitions.WithLabelValues("lost")); got != float64(len(lost)) {
		t.Errorf("the partitioned replica counted %v shards lost, want %d", got, len(lost))
	}
	if testutil.ToFloat64(victim.s.errs) == 0 {
		t.Error("the partitioned replica counted no Lease errors")
	}

	// Healed, it rejoins and takes its share back, still without two
	// drivers for any shard (checked at cleanup).
	victim.cut.Store(int32(connected))
	g.awaitSettled(settle, "the healed replica to take its share back")
}
