// Package shard decides which Guardian replica drives which service when
// several replicas split the services between them. It is pure: no
// Kubernetes, no clock, no I/O. A controller that owns one
// coordination.k8s.io Lease per shard calls Desired at every retry period
// and acquires or releases the Leases it names; Model (model.go) plays such
// controllers against simulated Leases, for the tests and for the
// simulation in bench/sharding.
//
// # Services to shards
//
// ShardOf maps a service name to one of a fixed number of shards with a
// hash that never changes across processes, versions or platforms (FNV-1a
// 64 followed by a 64-bit finaliser, reduced to the shard range by a
// multiply-shift), so every replica computes the same shard for a service.
// Changing the number of shards moves almost every service: it is a
// deployment-wide setting, not a per-replica one.
//
// # Shards to replicas
//
// Assign gives each shard a target replica from the live members and the
// current Lease holders. Each member's quota is ⌊S/N⌋ or ⌈S/N⌉ shards (S
// shards, N members; the members already holding more than ⌊S/N⌋ get the
// ⌈S/N⌉ places first), so the shard counts never differ by more than one. A member keeps the shards
// it already holds, up to its quota, preferring its highest rendezvous
// weights; every other shard goes to the member with the highest rendezvous
// (highest-random-weight) weight for it among those with room. Because it
// starts from the holders:
//
//   - when a member leaves or dies, no other member is over its new quota,
//     so only the leaver's shards move;
//   - when a member joins, only members over their new quota give up
//     shards, the ones they weigh least, and the newcomer takes them:
//     about S/(N+1) shards move, all to the newcomer.
//
// Desired turns the target into actions for one replica: release the
// shards it holds that are no longer its own (after it has stopped driving
// their services), and acquire the shards that are its own and free. It
// never asks to take a Lease someone else holds: a shard changes hands only
// through a release or a Lease expiry, so the Lease, not this package, keeps
// two replicas from driving one service.
//
// # The number of shards
//
// DefaultShards is 256. More shards balance better, up to a point: the
// services a replica drives vary with its shard count (⌊S/N⌋ or ⌈S/N⌉)
// and with the services per shard. At 10,000 services on 10 replicas the
// simulation (bench/sharding, seeds 1 to 8) puts the most loaded replica at
// 1.10–1.15 times the mean with 64 shards (6 or 7 shards each: 7/6.4 = 1.09
// from the shard counts alone), 1.04–1.08 with 256 and 1.03–1.06 with
// 1,024, where plain rendezvous of services onto replicas gives 1.03–1.08:
// past 256 shards, what is left is the spread of services over replicas.
// But every held Lease is an API-server write at every renewal: client-go's
// leader election (LeaseDuration 15s, RenewDeadline 10s, RetryPeriod 2s)
// renews every RetryPeriod, so a replica holding S/N shards writes
// (S/N + 1)/2 times a second, its membership Lease included, and the
// deployment (S + N)/2 times a second whatever N is: 37 writes/s with 64
// shards on 10 replicas, 133 with 256, 517 with 1,024 (about what the
// kubelets of a 5,000-node cluster write for their heartbeats). 256 is the
// smallest of the three that keeps 10 replicas within 1.1 of the mean.
// Longer timings divide the writes (RetryPeriod 6s, RenewDeadline 20s,
// LeaseDuration 30s: a third) at the cost of a slower takeover after a
// crash. A controller should read the Leases with one List or a watch
// per tick, not one Get per shard.
//
// # Simulated behaviour
//
// Through joins, graceful leaves, crashes and partitions of 2 to 22
// replicas (bench/sharding; docs/benchmarks.md has the tables), no shard
// was ever driven by two replicas at once; a leave or crash moved only the
// leaver's shards and a join only the newcomer's share; a crashed replica's
// shards were driven again within 17.9 s (LeaseDuration + RetryPeriod =
// 17 s when expiry is judged on the Lease's renewTime; up to one
// RetryPeriod more with client-go's rule, which counts from when a replica
// saw the Lease change); a graceful leave settled within a RetryPeriod and
// a join within two.
package shard

import (
	"cmp"
	"math/bits"
	"slices"
)

// DefaultShards is the number of shards when the configuration names none.
// See the package documentation for the trade-off.
const DefaultShards = 256

// ShardOf returns the shard, in [0, shards), of a service. The result is
// the same in every process and every version of Guardian. It panics if
// shards is not positive.
func ShardOf(service string, shards int) int {
	if shards <= 0 {
		panic("shard: ShardOf with a non-positive number of shards")
	}
	hi, _ := bits.Mul64(mix64(fnv1a64(service)), uint64(shards))
	return int(hi)
}

// Weight is the rendezvous weight of a member for a shard: the member with
// the highest weight among those with room gets a free shard. Like
// ShardOf, it is the same in every process.
func Weight(shard int, member string) uint64 {
	return weight(fnv1a64(member), shard)
}

func weight(memberHash uint64, shard int) uint64 {
	return mix64(memberHash ^ mix64(uint64(shard)+0x9e3779b97f4a7c15))
}

// fnv1a64 is FNV-1a 64 (hash/fnv's New64a) without the allocation.
func fnv1a64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix64 is the finaliser of MurmurHash3 (fmix64): every input bit affects
// every output bit, which FNV-1a alone does not give its low bits.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Assign returns the target member of every shard. holders[s] is the
// member holding shard s's Lease, or "" when the Lease is free or expired;
// len(holders) is the number of shards. members are the live members (order
// and duplicates do not matter; "" is ignored). Holders that are not
// members count as free. With no members every target is "".
//
// The result depends only on its arguments: replicas with the same view
// compute the same targets.
func Assign(members []string, holders []string) []string {
	target := make([]string, len(holders))
	ms := slices.Clone(members)
	slices.Sort(ms)
	ms = slices.Compact(ms)
	if len(ms) > 0 && ms[0] == "" {
		ms = ms[1:]
	}
	n, s := len(ms), len(holders)
	if n == 0 || s == 0 {
		return target
	}
	index := make(map[string]int, n)
	hash := make([]uint64, n)
	for i, m := range ms {
		index[m] = i
		hash[i] = fnv1a64(m)
	}
	held := make([][]int, n)
	for sh, h := range holders {
		if i, ok := index[h]; ok {
			held[i] = append(held[i], sh)
		}
	}

	// Quotas: the members holding more than ⌊S/N⌋ get the ⌈S/N⌉ places
	// first, so that nobody has to give anything up when N shrinks; then
	// an order that does not change as members fill up, so that replicas
	// acquiring one after the other agree on who gets the last places.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	over := func(i int) int {
		if len(held[i]) > s/n {
			return 1
		}
		return 0
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(over(b), over(a)); c != 0 {
			return c
		}
		if c := cmp.Compare(hash[b], hash[a]); c != 0 {
			return c
		}
		return cmp.Compare(ms[a], ms[b])
	})
	quota := make([]int, n)
	for k, i := range order {
		quota[i] = s / n
		if k < s%n {
			quota[i]++
		}
	}

	// Keep what is held, up to the quota, the highest weights first.
	room := make([]int, n)
	for i, hs := range held {
		if len(hs) > quota[i] {
			slices.SortFunc(hs, func(a, b int) int {
				return cmp.Compare(weight(hash[i], b), weight(hash[i], a))
			})
			hs = hs[:quota[i]]
		}
		for _, sh := range hs {
			target[sh] = ms[i]
		}
		room[i] = quota[i] - len(hs)
	}

	// Fill: free shards to the member with the highest weight that has
	// room, taking (shard, member) pairs in decreasing weight.
	type pair struct {
		w      uint64
		shard  int
		member int
	}
	var pairs []pair
	for sh := range s {
		if target[sh] != "" {
			continue
		}
		for i := range n {
			if room[i] > 0 {
				pairs = append(pairs, pair{weight(hash[i], sh), sh, i})
			}
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := cmp.Compare(b.w, a.w); c != 0 {
			return c
		}
		if c := cmp.Compare(a.shard, b.shard); c != 0 {
			return c
		}
		return cmp.Compare(a.member, b.member)
	})
	for _, p := range pairs {
		if target[p.shard] == "" && room[p.member] > 0 {
			target[p.shard] = ms[p.member]
			room[p.member]--
		}
	}
	return target
}

// Desired returns what replica self should do now, given the live members
// and the current holders (as for Assign): the free shards it should
// acquire and the shards it holds but should release, both in increasing
// order. A replica that is not among the members releases everything it
// holds. The caller releases a shard only after it has stopped driving the
// shard's services, and acquires by a conditional write of the Lease it
// read as free or expired.
func Desired(self string, members []string, holders []string) (acquire, release []int) {
	if self == "" {
		return nil, nil
	}
	target := Assign(members, holders)
	for sh, h := range holders {
		switch {
		case h == self && target[sh] != self:
			release = append(release, sh)
		case h == "" && target[sh] == self:
			acquire = append(acquire, sh)
		}
	}
	return acquire, release
}
