package shard

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// tb is what the helpers need of *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

// settle runs the model tick by tick until it is settled and returns how
// long that took, or fails after limit.
func settle(t tb, m *Model, limit time.Duration) time.Duration {
	t.Helper()
	start := m.Now()
	for !m.Settled() {
		if m.Now()-start > limit {
			t.Fatalf("not settled %v after %v; owners %q", limit, start, m.Owners())
		}
		if !m.Step() {
			t.Fatalf("no replica left to tick")
		}
	}
	return m.Now() - start
}

func noViolations(t tb, m *Model) {
	t.Helper()
	if v := m.Violations(); len(v) > 0 {
		t.Fatalf("%d moments with two drivers, first %+v", len(v), v[0])
	}
}

func TestModelEvents(t *testing.T) {
	timings := DefaultTimings()
	ld, rp := timings.LeaseDuration, timings.RetryPeriod
	for _, expiry := range []Expiry{ExpiryRenewTime, ExpiryObserved} {
		t.Run(fmt.Sprintf("expiry %d", expiry), func(t *testing.T) {
			// Observed expiry starts the LeaseDuration at the first tick that
			// sees the last renewal, up to a RetryPeriod late, and ticks come
			// every RetryPeriod: one more RetryPeriod at worst.
			crashBound := ld + rp
			if expiry == ExpiryObserved {
				crashBound += rp
			}
			m := NewModel(64, timings, expiry)
			for i, name := range members(4) {
				if err := m.Join(name, time.Duration(i)*500*time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
			settle(t, m, 2*ld)

			before := m.Owners()
			if err := m.Crash("guardian-1"); err != nil {
				t.Fatal(err)
			}
			if d := settle(t, m, 2*ld); d > crashBound {
				t.Errorf("settled %v after a crash, want at most %v", d, crashBound)
			}
			after := m.Owners()
			for s := range after {
				if before[s] != "guardian-1" && after[s] != before[s] {
					t.Errorf("crash of guardian-1 moved shard %d from %s to %s", s, before[s], after[s])
				}
			}

			before = after
			if err := m.Leave("guardian-2"); err != nil {
				t.Fatal(err)
			}
			if d := settle(t, m, 2*ld); d > rp {
				t.Errorf("settled %v after a graceful leave, want at most %v", d, rp)
			}
			after = m.Owners()
			for s := range after {
				if before[s] != "guardian-2" && after[s] != before[s] {
					t.Errorf("leave of guardian-2 moved shard %d from %s to %s", s, before[s], after[s])
				}
			}

			before = after
			if err := m.Join("guardian-9", rp/3); err != nil {
				t.Fatal(err)
			}
			// The newcomer's first tick announces it; the others release at
			// their next; it acquires at its second (with observed expiry,
			// its first LeaseDuration of watching comes first).
			joinBound := 2*rp + rp/3
			if expiry == ExpiryObserved {
				joinBound = ld + rp + rp/3
			}
			if d := settle(t, m, 3*ld); d > joinBound {
				t.Errorf("settled %v after a join, want at most %v", d, joinBound)
			}
			after = m.Owners()
			for s := range after {
				if after[s] != before[s] && after[s] != "guardian-9" {
					t.Errorf("join moved shard %d from %s to %s, not to the newcomer", s, before[s], after[s])
				}
			}
			if n := loads(after)["guardian-9"]; n != 64/3 && n != 64/3+1 {
				t.Errorf("newcomer drives %d shards, want 21 or 22", n)
			}

			if err := m.Partition("guardian-0"); err != nil {
				t.Fatal(err)
			}
			settle(t, m, 2*ld+rp)
			if err := m.Heal("guardian-0"); err != nil {
				t.Fatal(err)
			}
			settle(t, m, 3*ld)
			noViolations(t, m)
			if m.Checks() == 0 {
				t.Error("the model never checked for double drivers")
			}
		})
	}
}

func TestModelRejectsImpossibleEvents(t *testing.T) {
	m := NewModel(4, DefaultTimings(), ExpiryRenewTime)
	if err := m.Join("a", 0); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{m.Join("a", 0), m.Join("", 0), m.Heal("a"), m.Leave("b")} {
		if err == nil {
			t.Error("impossible event accepted")
		}
	}
	if err := m.Crash("a"); err != nil {
		t.Fatal(err)
	}
	if err := m.Crash("a"); err == nil {
		t.Error("crashed a crashed replica")
	}
}

// A partitioned replica that cannot renew stops driving its shards
// RenewDeadline after its last renewal, before anyone may take them.
func TestModelPartitionedHolderStopsBeforeTakeover(t *testing.T) {
	timings := DefaultTimings()
	m := NewModel(8, timings, ExpiryRenewTime)
	for _, name := range []string{"a", "b"} {
		if err := m.Join(name, 0); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, m, timings.LeaseDuration)
	owners := m.Owners()
	cut := m.Now()
	if err := m.Partition("a"); err != nil {
		t.Fatal(err)
	}
	m.Advance(timings.RenewDeadline + timings.RetryPeriod)
	for s, o := range m.Owners() {
		if owners[s] == "a" && o != "" {
			t.Errorf("shard %d driven by %q after a's RenewDeadline and before its LeaseDuration", s, o)
		}
	}
	settle(t, m, timings.LeaseDuration)
	for _, h := range m.Handoffs() {
		if h.At > cut && h.From == "a" && h.Undriven <= 0 {
			t.Errorf("shard %d went from a to %s with no gap", h.Shard, h.To)
		}
	}
	noViolations(t, m)
}

func TestModelProperties(t *testing.T) {
	timings := DefaultTimings()
	rapid.Check(t, func(t *rapid.T) {
		expiry := rapid.SampledFrom([]Expiry{ExpiryRenewTime, ExpiryObserved}).Draw(t, "expiry")
		m := NewModel(rapid.IntRange(1, 64).Draw(t, "shards"), timings, expiry)
		names := 0
		join := func() {
			phase := time.Duration(rapid.Int64Range(0, int64(timings.RetryPeriod)).Draw(t, "phase"))
			if err := m.Join(fmt.Sprintf("r%d", names), phase); err != nil {
				t.Fatal(err)
			}
			names++
		}
		for range rapid.IntRange(1, 4).Draw(t, "initial") {
			join()
		}
		var partitioned []string
		for range rapid.IntRange(0, 12).Draw(t, "events") {
			m.Advance(time.Duration(rapid.Int64Range(0, int64(2*timings.LeaseDuration)).Draw(t, "wait")))
			running := m.Running()
			switch e := rapid.IntRange(0, 4).Draw(t, "event"); {
			case e == 0 || len(running) == 0:
				join()
			case e == 1:
				_ = m.Leave(rapid.SampledFrom(running).Draw(t, "leaver"))
			case e == 2:
				_ = m.Crash(rapid.SampledFrom(running).Draw(t, "crashed"))
			case e == 3:
				p := rapid.SampledFrom(running).Draw(t, "partitioned")
				_ = m.Partition(p)
				partitioned = append(partitioned, p)
			case e == 4 && len(partitioned) > 0:
				_ = m.Heal(partitioned[0])
				partitioned = partitioned[1:]
			}
		}
		for _, p := range partitioned {
			_ = m.Heal(p)
		}
		if len(m.Running()) == 0 {
			join()
		}
		// Membership now stays as it is: every shard gets exactly one
		// running driver, at the balance Assign gives.
		settle(t, m, 3*timings.LeaseDuration)
		noViolations(t, m)
		l := loads(m.Owners())
		s, n := len(m.Owners()), len(m.Running())
		for _, r := range m.Running() {
			if l[r] < s/n || l[r] > (s+n-1)/n {
				t.Fatalf("%s drives %d of %d shards over %d replicas", r, l[r], s, n)
			}
		}
		if !slices.Equal(Assign(m.Running(), m.Owners()), m.Owners()) {
			t.Fatal("settled owners are not a fixed point of Assign")
		}

		// From there, a crash moves only the crashed replica's shards,
		// within LeaseDuration + RetryPeriod (one RetryPeriod more when
		// expiry counts from the observation).
		if len(m.Running()) < 2 {
			return
		}
		before := m.Owners()
		victim := rapid.SampledFrom(m.Running()).Draw(t, "victim")
		if err := m.Crash(victim); err != nil {
			t.Fatal(err)
		}
		bound := timings.LeaseDuration + timings.RetryPeriod
		if expiry == ExpiryObserved {
			bound += timings.RetryPeriod
		}
		if d := settle(t, m, 3*timings.LeaseDuration); d > bound {
			t.Fatalf("settled %v after the crash of %s, want at most %v", d, victim, bound)
		}
		for sh, o := range m.Owners() {
			if before[sh] != victim && o != before[sh] {
				t.Fatalf("crash of %s moved shard %d from %s to %s", victim, sh, before[sh], o)
			}
		}
		noViolations(t, m)
	})
}

// The double-driver check is live: with a RenewDeadline longer than the
// LeaseDuration, a partitioned holder still drives its shards when the
// others take them over.
func TestModelCatchesOverlapWithBadTimings(t *testing.T) {
	bad := Timings{LeaseDuration: 10 * time.Second, RenewDeadline: 15 * time.Second, RetryPeriod: 2 * time.Second}
	m := NewModel(8, bad, ExpiryRenewTime)
	for _, name := range []string{"a", "b"} {
		if err := m.Join(name, 0); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, m, bad.LeaseDuration)
	if err := m.Partition("a"); err != nil {
		t.Fatal(err)
	}
	m.Advance(bad.LeaseDuration + 2*bad.RetryPeriod)
	if len(m.Violations()) == 0 {
		t.Fatal("no double driver found, though a drives its shards 5s past their expiry")
	}
}
