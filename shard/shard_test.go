package shard

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

func TestShardOfIsPinned(t *testing.T) {
	// These values must never change: replicas of different versions
	// must agree on every service's shard during a rolling upgrade.
	cases := []struct {
		service string
		shards  int
		want    int
	}{
		{"checkout", 256, 95},
		{"checkout", 64, 23},
		{"svc-00042", 256, 40},
		{"svc-00042", 64, 10},
		{"payments-api", 256, 32},
		{"", 256, 239},
		{"checkout", 1, 0},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%d", c.service, c.shards), func(t *testing.T) {
			if got := ShardOf(c.service, c.shards); got != c.want {
				t.Errorf("ShardOf(%q, %d) = %d, want %d", c.service, c.shards, got, c.want)
			}
		})
	}
	if got, want := Weight(7, "guardian-0"), uint64(10650929488301583169); got != want {
		t.Errorf("Weight(7, guardian-0) = %d, want %d", got, want)
	}
}

func TestFNVMatchesHashFNV(t *testing.T) {
	for _, s := range []string{"", "a", "svc-00042", "checkout", "ünïcode"} {
		h := fnv.New64a()
		h.Write([]byte(s))
		if got, want := fnv1a64(s), h.Sum64(); got != want {
			t.Errorf("fnv1a64(%q) = %x, want %x", s, got, want)
		}
	}
}

func TestShardOfSpreadsServices(t *testing.T) {
	for _, shards := range []int{64, 256} {
		count := make([]int, shards)
		for i := range 10000 {
			count[ShardOf(fmt.Sprintf("svc-%05d", i), shards)]++
		}
		mean := 10000.0 / float64(shards)
		// A multinomial's maximum over S cells stays within about 4
		// standard deviations of the mean.
		limit := mean + 4.5*math.Sqrt(mean)
		if mx := slices.Max(count); float64(mx) > limit {
			t.Errorf("%d shards: fullest shard has %d services, want at most %.0f (mean %.1f)", shards, mx, limit, mean)
		}
	}
}

func TestShardOfPanicsOnNoShards(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("ShardOf(x, 0) did not panic")
		}
	}()
	ShardOf("x", 0)
}

func members(n int) []string {
	ms := make([]string, n)
	for i := range ms {
		ms[i] = fmt.Sprintf("guardian-%d", i)
	}
	return ms
}

func loads(target []string) map[string]int {
	l := map[string]int{}
	for _, o := range target {
		l[o]++
	}
	return l
}

func TestAssign(t *testing.T) {
	settled3 := Assign(members(3), make([]string, 64))
	cases := []struct {
		name    string
		members []string
		holders []string
		check   func(t *testing.T, target []string)
	}{
		{
			name: "no members, no targets", members: nil, holders: []string{"a", "", "b"},
			check: func(t *testing.T, target []string) {
				if !slices.Equal(target, []string{"", "", ""}) {
					t.Errorf("targets %q, want none", target)
				}
			},
		},
		{
			name: "one member takes everything", members: []string{"a"}, holders: []string{"", "b", "a", ""},
			check: func(t *testing.T, target []string) {
				if !slices.Equal(target, []string{"a", "a", "a", "a"}) {
					t.Errorf("targets %q, want all a", target)
				}
			},
		},
		{
			name: "cold start: 64 shards on 3 members is 22, 21, 21", members: members(3), holders: make([]string, 64),
			check: func(t *testing.T, target []string) {
				got := slices.Sorted(func(yield func(int) bool) {
					for _, n := range loads(target) {
						if !yield(n) {
							return
						}
					}
				})
				if !slices.Equal(got, []int{21, 21, 22}) {
					t.Errorf("loads %v, want [21 21 22]", got)
				}
			},
		},
		{
			name: "a settled assignment is kept", members: members(3), holders: settled3,
			check: func(t *testing.T, target []string) {
				if !slices.Equal(target, settled3) {
					t.Errorf("targets changed from a settled assignment")
				}
			},
		},
		{
			name: "a leaver's shards go, nothing else moves", members: members(2), holders: settled3,
			check: func(t *testing.T, target []string) {
				for s := range target {
					if settled3[s] != "guardian-2" && target[s] != settled3[s] {
						t.Errorf("shard %d moved from %s to %s", s, settled3[s], target[s])
					}
					if target[s] == "guardian-2" || target[s] == "" {
						t.Errorf("shard %d targets %q", s, target[s])
					}
				}
			},
		},
		{
			name: "a newcomer takes a quarter, from the others only", members: members(4), holders: settled3,
			check: func(t *testing.T, target []string) {
				moved := 0
				for s := range target {
					if target[s] != settled3[s] {
						moved++
						if target[s] != "guardian-3" {
							t.Errorf("shard %d moved from %s to %s, not to the newcomer", s, settled3[s], target[s])
						}
					}
				}
				if moved != 16 {
					t.Errorf("%d shards moved, want 16", moved)
				}
			},
		},
		{
			name: "holders that are not members count as free", members: []string{"a", "b"}, holders: []string{"x", "x", "x", "x"},
			check: func(t *testing.T, target []string) {
				if l := loads(target); l["a"] != 2 || l["b"] != 2 {
					t.Errorf("loads %v, want a and b 2 each", l)
				}
			},
		},
		{
			name: "a member over its quota keeps its highest weights", members: []string{"a", "b"}, holders: []string{"a", "a", "a", "a"},
			check: func(t *testing.T, target []string) {
				kept := []int{}
				for s, o := range target {
					if o == "a" {
						kept = append(kept, s)
					}
				}
				for s := range target {
					if target[s] == "b" {
						for _, k := range kept {
							if Weight(s, "a") > Weight(k, "a") {
								t.Errorf("a gave up shard %d (weight %d) but kept %d (weight %d)", s, Weight(s, "a"), k, Weight(k, "a"))
							}
						}
					}
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.check(t, Assign(c.members, c.holders))
		})
	}
}

func TestDesired(t *testing.T) {
	cases := []struct {
		name             string
		self             string
		members, holders []string
		acquire, release []int
		releases         int // when which ones depends on the weights
	}{
		{name: "takes free shards of its own", self: "a", members: []string{"a"}, holders: []string{"", "", ""}, acquire: []int{0, 1, 2}},
		{name: "never takes a held shard", self: "a", members: []string{"a"}, holders: []string{"b", "", "b"}, acquire: []int{1}},
		{name: "releases what is no longer its own", self: "a", members: []string{"a", "b"}, holders: []string{"a", "a", "a", "a"}, releases: 2},
		{name: "a non-member releases everything", self: "c", members: []string{"a", "b"}, holders: []string{"c", "", "c"}, release: []int{0, 2}},
		{name: "the empty name does nothing", self: "", members: []string{"a"}, holders: []string{"", ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			acquire, release := Desired(c.self, c.members, c.holders)
			if c.releases > 0 {
				if len(acquire) != 0 || len(release) != c.releases {
					t.Errorf("acquire %v release %v, want none and %d", acquire, release, c.releases)
				}
				return
			}
			if !slices.Equal(acquire, c.acquire) || !slices.Equal(release, c.release) {
				t.Errorf("acquire %v release %v, want %v and %v", acquire, release, c.acquire, c.release)
			}
		})
	}
}

// genView draws members and holders: some holders are members, some are
// not (dead replicas), some shards are free.
func genView(t *rapid.T) (ms []string, holders []string) {
	n := rapid.IntRange(1, 20).Draw(t, "members")
	s := rapid.IntRange(1, 300).Draw(t, "shards")
	ms = members(n)
	pool := append(slices.Clone(ms), "", "dead-0", "dead-1")
	holders = make([]string, s)
	for i := range holders {
		holders[i] = rapid.SampledFrom(pool).Draw(t, "holder")
	}
	return ms, holders
}

func TestAssignProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ms, holders := genView(t)
		target := Assign(ms, holders)
		n, s := len(ms), len(holders)

		l := loads(target)
		for _, m := range ms {
			if l[m] != s/n && l[m] != (s+n-1)/n {
				t.Fatalf("%s has %d of %d shards over %d members, want ⌊S/N⌋ or ⌈S/N⌉", m, l[m], s, n)
			}
		}
		if l[""] != 0 {
			t.Fatalf("%d shards have no target", l[""])
		}
		// Every member keeps min(held, quota) of what it holds.
		held := loads(holders)
		kept := map[string]int{}
		for sh := range target {
			if holders[sh] == target[sh] {
				kept[target[sh]]++
			}
		}
		for _, m := range ms {
			if want := min(held[m], l[m]); kept[m] != want {
				t.Fatalf("%s held %d, quota %d, kept %d, want %d", m, held[m], l[m], kept[m], want)
			}
		}
		// The order of the members does not matter.
		shuffled := rapid.Permutation(ms).Draw(t, "order")
		if !slices.Equal(Assign(shuffled, holders), target) {
			t.Fatal("targets depend on the order of the members")
		}
		// A target is a fixed point.
		if !slices.Equal(Assign(ms, target), target) {
			t.Fatal("Assign moves shards of its own target")
		}
	})
}

func TestMembershipChangeMovesOnlyWhatItMust(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ms, holders := genView(t)
		before := Assign(ms, holders)

		if len(ms) > 1 {
			leaver := rapid.SampledFrom(ms).Draw(t, "leaver")
			rest := slices.DeleteFunc(slices.Clone(ms), func(m string) bool { return m == leaver })
			after := Assign(rest, before)
			for sh := range after {
				if before[sh] != leaver && after[sh] != before[sh] {
					t.Fatalf("%s left and shard %d moved from %s to %s", leaver, sh, before[sh], after[sh])
				}
			}
		}

		joined := append(slices.Clone(ms), "newcomer")
		after := Assign(joined, before)
		moved := 0
		for sh := range after {
			if after[sh] != before[sh] {
				moved++
				if after[sh] != "newcomer" {
					t.Fatalf("newcomer joined and shard %d moved from %s to %s", sh, before[sh], after[sh])
				}
			}
		}
		if s, n := len(holders), len(joined); moved != s/n && moved != (s+n-1)/n {
			t.Fatalf("%d shards moved to the newcomer, want ⌊S/N⌋ or ⌈S/N⌉ of %d over %d", moved, s, n)
		}
	})
}

func TestDesiredNeverTakesAHeldShard(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ms, holders := genView(t)
		self := rapid.SampledFrom(append(slices.Clone(ms), "outsider")).Draw(t, "self")
		acquire, release := Desired(self, ms, holders)
		target := Assign(ms, holders)
		for _, sh := range acquire {
			if holders[sh] != "" || target[sh] != self {
				t.Fatalf("acquires shard %d held by %q, target %q", sh, holders[sh], target[sh])
			}
		}
		for _, sh := range release {
			if holders[sh] != self || target[sh] == self {
				t.Fatalf("releases shard %d held by %q, target %q", sh, holders[sh], target[sh])
			}
		}
	})
}
