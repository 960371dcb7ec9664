// Command sharding simulates Guardian replicas splitting services between
// them through shard Leases (package shard) and prints a Markdown table:
// how evenly the services spread, how many move when a replica joins,
// leaves, crashes or is cut off from the API server, how long until every
// shard is driven again, and whether a shard was ever driven by two
// replicas (checked after every tick of every replica).
//
// Each configuration (shard count × replica count) starts its replicas at
// random phases of the retry period, lets them settle, then runs -cycles
// cycles of six events, each followed by the time it takes to settle: a
// join, another join, a graceful leave, a crash, a partition (the replica
// keeps running but cannot reach the API server) and the partition's heal.
// Time is simulated: Lease timings are client-go's defaults (LeaseDuration
// 15s, RenewDeadline 10s, RetryPeriod 2s) and every replica ticks once per
// RetryPeriod. Services are -services synthetic names (svc-00000, ...) and
// as many random ones; the moves are counted on the synthetic names.
//
// One more row runs plain rendezvous hashing of services onto replicas,
// without shards or per-service Leases, through the same events, for
// comparison.
//
//	go run ./bench/sharding -seed 1
package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rollback-guardian/guardian/shard"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	seed     uint64
	services int
	shards   []int
	replicas []int
	cycles   int
	expiry   []shard.Expiry
	plain    int
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sharding", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", 1, "random seed (replica phases, victims, random service names)")
	services := fs.Int("services", 10000, "number of services (synthetic names, and as many random ones)")
	shardList := fs.String("shards", "64,256,1024", "comma-separated shard counts")
	replicaList := fs.String("replicas", "2,3,5,10,20", "comma-separated replica counts")
	cycles := fs.Int("cycles", 3, "cycles of join, join, leave, crash, partition, heal per configuration")
	expiry := fs.String("expiry", "observed,renew", `how a replica judges a Lease expired, one table each: "observed" (client-go: LeaseDuration after it last saw it change), "renew" (renewTime + LeaseDuration, synchronised clocks)`)
	plain := fs.Int("plain", 10, "replicas for the plain rendezvous row (0: no such row)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o := options{seed: *seed, services: *services, cycles: *cycles, plain: *plain}
	var err error
	if o.shards, err = ints(*shardList); err != nil {
		fmt.Fprintf(stderr, "sharding: -shards: %v\n", err)
		return 2
	}
	if o.replicas, err = ints(*replicaList); err != nil {
		fmt.Fprintf(stderr, "sharding: -replicas: %v\n", err)
		return 2
	}
	for e := range strings.SplitSeq(*expiry, ",") {
		switch e {
		case "observed":
			o.expiry = append(o.expiry, shard.ExpiryObserved)
		case "renew":
			o.expiry = append(o.expiry, shard.ExpiryRenewTime)
		default:
			fmt.Fprintf(stderr, "sharding: -expiry %q: want observed or renew\n", e)
			return 2
		}
	}
	if o.services < 1 || o.cycles < 0 {
		fmt.Fprintln(stderr, "sharding: -services must be positive and -cycles not negative")
		return 2
	}

	synthetic, random := serviceNames(o.services, o.seed)
	start := time.Now()
	for k, expiry := range o.expiry {
		if k > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "Expiry: %s.\n\n", expiryName[expiry])
		fmt.Fprintln(stdout, "| shards | replicas | services per replica, max ÷ mean, at the start (svc-NNNNN / random names) | the same, worst over the events | shards moved per join (ideal: S ÷ replicas) | shards moved per leave / crash / partition | services moved per join / leave / crash | moves not to the newcomer or not from the leaver | settled after join / leave / crash / partition, max | longest a shard went undriven after join / leave / crash / partition | ticks checked / with a shard driven twice | Lease writes/s per replica |")
		fmt.Fprintln(stdout, "|---:|---:|---|---|---|---|---|---|---|---|---|---:|")
		for _, s := range o.shards {
			for _, n := range o.replicas {
				began := time.Now()
				row, err := simulate(o, expiry, s, n, synthetic, random)
				if err != nil {
					fmt.Fprintf(stderr, "sharding: %d shards, %d replicas: %v\n", s, n, err)
					return 1
				}
				fmt.Fprintln(stdout, row)
				fmt.Fprintf(stderr, "sharding: %s, %d shards, %d replicas: %.1fs (%.0fs in all)\n", expiryName[expiry], s, n, time.Since(began).Seconds(), time.Since(start).Seconds())
			}
		}
		if o.plain > 0 && k == 0 {
			row, err := simulatePlain(o, o.plain, synthetic, random)
			if err != nil {
				fmt.Fprintf(stderr, "sharding: plain rendezvous: %v\n", err)
				return 1
			}
			fmt.Fprintln(stdout, row)
		}
	}
	return 0
}

func ints(list string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// serviceNames returns n synthetic names (svc-00000, ...) and n distinct
// random ones: lowercase words of 3 to 12 letters, joined by dashes.
func serviceNames(n int, seed uint64) (synthetic, random []string) {
	rng := rand.New(rand.NewPCG(seed, 0x5e41ce))
	seen := map[string]bool{}
	for i := range n {
		synthetic = append(synthetic, fmt.Sprintf("svc-%05d", i))
		for {
			var b strings.Builder
			for w := range 1 + rng.IntN(3) {
				if w > 0 {
					b.WriteByte('-')
				}
				for range 3 + rng.IntN(10) {
					b.WriteByte(byte('a' + rng.IntN(26)))
				}
			}
			if name := b.String(); !seen[name] {
				seen[name] = true
				random = append(random, name)
				break
			}
		}
	}
	return synthetic, random
}

type eventKind int

const (
	join eventKind = iota
	leave
	crash
	partition
	heal
	kinds
)

var expiryName = map[shard.Expiry]string{
	shard.ExpiryObserved:  "observed (client-go: LeaseDuration after the replica last saw the Lease change)",
	shard.ExpiryRenewTime: "renew time (the Lease's renewTime + LeaseDuration; needs synchronised clocks)",
}

var kindName = [kinds]string{"join", "leave", "crash", "partition", "heal"}

// stats collects one configuration's figures.
type stats struct {
	startSynthetic, startRandom     float64 // max ÷ mean once settled at the start
	balanceSynthetic, balanceRandom float64 // worst max ÷ mean over settled states
	shardsMoved                     [kinds][]int
	ideal                           []float64 // S / replicas after each join
	servicesMoved                   [kinds][]int
	settled                         [kinds]time.Duration
	undriven                        [kinds]time.Duration
	stray                           int // moves not from the leaver / not to the newcomer
	events                          int
}

func (st *stats) balance(owners []string, running []string, perShard ...[]int) {
	for k, counts := range perShard {
		load := map[string]int{}
		for s, o := range owners {
			load[o] += counts[s]
		}
		total, mx := 0, 0
		for _, r := range running {
			total += load[r]
			mx = max(mx, load[r])
		}
		b := float64(mx) / (float64(total) / float64(len(running)))
		if k == 0 {
			st.balanceSynthetic = max(st.balanceSynthetic, b)
		} else {
			st.balanceRandom = max(st.balanceRandom, b)
		}
	}
}

const settleLimit = 10 * time.Minute

func simulate(o options, expiry shard.Expiry, s, n int, synthetic, random []string) (string, error) {
	timings := shard.DefaultTimings()
	rng := rand.New(rand.NewPCG(o.seed, uint64(s)<<32|uint64(n)))
	countSynthetic, countRandom := make([]int, s), make([]int, s)
	for i := range synthetic {
		countSynthetic[shard.ShardOf(synthetic[i], s)]++
		countRandom[shard.ShardOf(random[i], s)]++
	}
	m := shard.NewModel(s, timings, expiry)
	names := 0
	phase := func() time.Duration { return time.Duration(rng.Int64N(int64(timings.RetryPeriod))) }
	newName := func() string { names++; return fmt.Sprintf("guardian-%d", names-1) }
	for range n {
		if err := m.Join(newName(), phase()); err != nil {
			return "", err
		}
	}
	settle := func() error {
		start := m.Now()
		for !m.Settled() {
			if m.Now()-start > settleLimit || !m.Step() {
				return fmt.Errorf("not settled %v after %v", settleLimit, start)
			}
		}
		return nil
	}
	if err := settle(); err != nil {
		return "", err
	}
	var st stats
	st.balance(m.Owners(), m.Running(), countSynthetic, countRandom)
	st.startSynthetic, st.startRandom = st.balanceSynthetic, st.balanceRandom

	// Steady-state write rate: one minute with nothing happening.
	w0, t0 := m.Writes(), m.Now()
	m.Advance(time.Minute)
	writesPerReplica := float64(m.Writes()-w0) / (m.Now() - t0).Seconds() / float64(n)

	var partitioned string
	sequence := []eventKind{join, join, leave, crash, partition, heal}
	for range o.cycles {
		for _, kind := range sequence {
			before := m.Owners()
			t0 := m.Now()
			running := m.Running()
			var who string
			var err error
			switch kind {
			case join:
				who = newName()
				err = m.Join(who, phase())
			case leave:
				who = running[rng.IntN(len(running))]
				err = m.Leave(who)
			case crash:
				who = running[rng.IntN(len(running))]
				err = m.Crash(who)
			case partition:
				who = running[rng.IntN(len(running))]
				partitioned = who
				err = m.Partition(who)
			case heal:
				who = partitioned
				err = m.Heal(who)
			}
			if err != nil {
				return "", err
			}
			if err := settle(); err != nil {
				return "", fmt.Errorf("after %s of %s: %w", kindName[kind], who, err)
			}
			st.events++
			st.settled[kind] = max(st.settled[kind], m.Now()-t0)
			after := m.Owners()
			shards, services := 0, 0
			for i := range after {
				if after[i] == before[i] {
					continue
				}
				shards++
				services += countSynthetic[i]
				switch kind {
				case join, heal:
					if after[i] != who {
						st.stray++
					}
				default:
					if before[i] != who {
						st.stray++
					}
				}
			}
			st.shardsMoved[kind] = append(st.shardsMoved[kind], shards)
			if kind == join {
				st.ideal = append(st.ideal, float64(s)/float64(len(m.Running())))
			}
			st.servicesMoved[kind] = append(st.servicesMoved[kind], services)
			for _, h := range m.Handoffs() {
				if h.At > t0 && h.From != "" {
					st.undriven[kind] = max(st.undriven[kind], h.Undriven)
				}
			}
			st.balance(after, m.Running(), countSynthetic, countRandom)
		}
	}
	violations := len(m.Violations())
	if violations > 0 {
		fmt.Fprintf(os.Stderr, "sharding: %d shards, %d replicas: first double driver %+v\n", s, n, m.Violations()[0])
	}
	return fmt.Sprintf("| %d | %d | %.3f / %.3f | %.3f / %.3f | %s (%.1f) | %s / %s / %s | %s / %s / %s | %d of %d events | %s / %s / %s / %s | %s / %s / %s / %s | %d / %d | %.2f |",
		s, n, st.startSynthetic, st.startRandom, st.balanceSynthetic, st.balanceRandom,
		mean(st.shardsMoved[join]), meanFloat(st.ideal),
		mean(st.shardsMoved[leave]), mean(st.shardsMoved[crash]), mean(st.shardsMoved[partition]),
		mean(st.servicesMoved[join]), mean(st.servicesMoved[leave]), mean(st.servicesMoved[crash]),
		st.stray, st.events,
		secs(st.settled[join]), secs(st.settled[leave]), secs(st.settled[crash]), secs(st.settled[partition]),
		secs(st.undriven[join]), secs(st.undriven[leave]), secs(st.undriven[crash]), secs(st.undriven[partition]),
		m.Checks(), violations, writesPerReplica), nil
}

func mean(xs []int) string {
	if len(xs) == 0 {
		return "–"
	}
	sum := 0
	for _, x := range xs {
		sum += x
	}
	return fmt.Sprintf("%.1f", float64(sum)/float64(len(xs)))
}

func meanFloat(xs []float64) float64 {
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(max(1, len(xs)))
}

func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
}
