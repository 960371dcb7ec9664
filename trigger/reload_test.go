package trigger

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/source"
)

// TestCopyStateFrom: a reload in the middle of pending keeps ActiveAt, so
// the trigger fires at the same tick as it would have without the reload;
// a changed definition starts afresh.
func TestCopyStateFrom(t *testing.T) {
	const ticks = 8
	firstFiring := func(vs []Verdict) int {
		for i, v := range vs {
			if v.State == Firing {
				return i
			}
		}
		return -1
	}
	answers := map[string]answer{valueQ: value(0.1), baselineQ: at(deployAt, value(0.01), none)}
	mods := []func(*Definition){above(0.05), ratio(2), forDur(30 * time.Second)}

	control := newTrigger(t, def(t, mods...))
	want := firstFiring(run(control, newFake(answers).query, ticks))
	if want != 3 {
		t.Fatalf("control fired at tick %d, want 3", want)
	}

	for _, tc := range []struct {
		name     string
		newMods  []func(*Definition)
		copied   bool
		firingAt int
	}{
		{"same definition keeps pending", mods, true, want},
		{"severity edit keeps pending", append(mods, func(d *Definition) { d.Severity = "SEV-2" }), true, want},
		{"threshold change starts afresh", append(mods, above(0.06)), false, 2 + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(answers)
			old := newTrigger(t, def(t, mods...))
			var vs []Verdict
			for i := range 2 { // pending at ticks 0 and 1
				vs = append(vs, old.Eval(context.Background(), tick(i), d, f.query))
			}
			cur := newTrigger(t, def(t, tc.newMods...)) // the reload
			if got := cur.CopyStateFrom(old); got != tc.copied {
				t.Fatalf("CopyStateFrom = %v, want %v", got, tc.copied)
			}
			if tc.copied {
				if cur.State() != Pending {
					t.Fatalf("state after copy %v, want pending", cur.State())
				}
				if last, ok := cur.Last(); !ok || !last.At.Equal(tick(1)) {
					t.Errorf("last verdict not carried: %v %v", ok, last.At)
				}
			} else if cur.State() != Inactive {
				t.Fatalf("state after refused copy %v, want inactive", cur.State())
			}
			for i := 2; i < ticks; i++ {
				vs = append(vs, cur.Eval(context.Background(), tick(i), d, f.query))
			}
			if got := firstFiring(vs); got != tc.firingAt {
				t.Errorf("fired at tick %d, want %d", got, tc.firingAt)
			}
			if n := f.callsAt(baselineQ, deployAt); tc.copied && n != 1 {
				t.Errorf("baseline snapshot queried %d times, want once (carried over the reload)", n)
			}
		})
	}
	t.Run("nil and self", func(t *testing.T) {
		tr := newTrigger(t, def(t, mods...))
		if tr.CopyStateFrom(nil) || tr.CopyStateFrom(tr) {
			t.Error("CopyStateFrom(nil or self) = true")
		}
	})
}

func TestEqual(t *testing.T) {
	base := []func(*Definition){above(0.05), ratio(2), forDur(30 * time.Second), minRequests(50)}
	for _, tc := range []struct {
		name  string
		mod   func(*Definition)
		equal bool
	}{
		{"identical", func(*Definition) {}, true},
		{"severity", func(d *Definition) { d.Severity = "SEV-3" }, true},
		{"limit text only", func(d *Definition) { d.AboveBaseline = &BaselineLimit{Ratio: 2, Text: "2.0x"} }, true},
		{"empty policy is ignore", func(d *Definition) { d.OnNoData = PolicyIgnore }, true},
		{"above threshold", above(0.06), false},
		{"above removed", func(d *Definition) { d.Above = nil }, false},
		{"below added", below(0.9), false},
		{"baseline ratio", ratio(3), false},
		{"baseline ratio to delta", delta(2), false},
		{"for", forDur(time.Minute), false},
		{"window", func(d *Definition) { d.Window = 5 * time.Minute }, false},
		{"min_requests", func(d *Definition) { d.MinRequests = 10 }, false},
		{"volume query", func(d *Definition) { d.VolumeQuery = tmpl(t, `sum(requests)`) }, false},
		{"query", func(d *Definition) { d.Query = tmpl(t, `max(err_ratio{version="{{.Version}}"})`) }, false},
		{"on_no_data", onNoData(PolicyFire), false},
		{"on_query_error", onQueryError(PolicyFire), false},
		{"name", func(d *Definition) { d.Name = "latency" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := def(t, base...)
			b := def(t, append(base, tc.mod)...)
			if a.Equal(b) != tc.equal || b.Equal(a) != tc.equal {
				t.Fatalf("Equal = %v, want %v", a.Equal(b), tc.equal)
			}
		})
	}
}

func TestFromSpec(t *testing.T) {
	good := Spec{
		Name:          "error-rate",
		Query:         `sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}",code=~"5.."}[{{.Window}}])) / sum(rate(http_requests_total{service="{{.Service}}",version="{{.Version}}"}[{{.Window}}]))`,
		Above:         f64(0.05),
		AboveBaseline: &BaselineLimit{Ratio: 2, Text: "2x"},
		For:           30 * time.Second,
		MinRequests:   50,
		VolumeQuery:   `sum(increase(http_requests_total{service="{{.Service}}",version="{{.Version}}"}[{{.Window}}]))`,
		Severity:      "SEV-1",
	}
	t.Run("valid", func(t *testing.T) {
		dd, err := FromSpec(good)
		if err != nil {
			t.Fatal(err)
		}
		if dd.Window != DefaultWindow || dd.For != 30*time.Second || dd.MinRequests != 50 || *dd.Above != 0.05 || dd.AboveBaseline.Ratio != 2 {
			t.Fatalf("definition %+v", dd)
		}
		if dd.Query.Text() != good.Query || dd.VolumeQuery.Text() != good.VolumeQuery {
			t.Errorf("templates not kept as written")
		}
		tr, err := New(dd)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		q := func(_ context.Context, q string, _ time.Time) (source.Result, error) {
			got = append(got, q)
			return source.Result{}, nil
		}
		tr.Eval(context.Background(), t0, d, q)
		if len(got) != 2 || !strings.Contains(got[0], `version="v2"`) || !strings.Contains(got[0], "[1m]") {
			t.Errorf("queries sent %q", got)
		}
	})
	for _, tc := range []struct {
		name    string
		mod     func(*Spec)
		want    string
		invalid bool // wraps ErrInvalidDefinition
	}{
		{"bad template", func(c *Spec) { c.Query = `up{version="{{.Version"}` }, `trigger "error-rate": query`, false},
		{"bad PromQL", func(c *Spec) { c.Query = `sum(up` }, "invalid PromQL", false},
		{"bad volume query", func(c *Spec) { c.VolumeQuery = `sum(` }, "volume_query", false},
		{"min_requests without volume_query", func(c *Spec) { c.VolumeQuery = "" }, "min_requests needs a volume_query", true},
		{"no condition", func(c *Spec) { c.Above, c.AboveBaseline = nil, nil }, "no condition", true},
		{"unknown policy", func(c *Spec) { c.OnNoData = "panic" }, `unknown policy "panic"`, true},
		{"negative for", func(c *Spec) { c.For = -time.Second }, "negative for", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			_, err := FromSpec(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to mention %q", err, tc.want)
			}
			if errors.Is(err, ErrInvalidDefinition) != tc.invalid {
				t.Errorf("errors.Is(ErrInvalidDefinition) = %v, want %v", !tc.invalid, tc.invalid)
			}
		})
	}
	t.Run("New rejects a definition without a query", func(t *testing.T) {
		if _, err := New(Definition{Name: "x", Above: f64(1)}); !errors.Is(err, ErrInvalidDefinition) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mods    []func(*Definition)
		deploy  Deploy
		answers map[string]answer
		want    string
	}{
		{"firing against a live baseline", []func(*Definition){above(0.05), ratio(2), minRequests(50)}, d,
			map[string]answer{valueQ: value(0.2), baselineQ: value(0.005), volumeQ: value(1534)},
			"error-rate v2: 0.2 > 0.05 and > 2x baseline v1 (0.005, live); 1534 requests; firing (was inactive)"},
		{"baseline shares the errors", []func(*Definition){above(0.05), ratio(2), minRequests(50)}, d,
			map[string]answer{valueQ: value(0.2), baselineQ: value(0.15), volumeQ: value(1534)},
			"error-rate v2: 0.2 > 0.05 and not > 2x baseline v1 (0.15, live); 1534 requests; inactive"},
		{"delta against the pre-deploy snapshot", []func(*Definition){delta(0.02)}, d,
			map[string]answer{valueQ: value(0.0412), baselineQ: at(deployAt, value(0.00412), none)},
			"error-rate v2: 0.0412 > baseline v1 + 0.02 (0.00412, pre_deploy); firing (was inactive)"},
		{"baseline unavailable, absolute condition decides", []func(*Definition){above(0.05), ratio(2)}, d,
			map[string]answer{valueQ: value(0.2), baselineQ: none},
			"error-rate v2: 0.2 > 0.05, not judged: > 2x baseline v1 (unavailable); firing (was inactive)"},
		{"baseline unknown", []func(*Definition){ratio(2)}, Deploy{Service: "checkout", Version: "v2"},
			map[string]answer{valueQ: value(0.2)},
			"error-rate v2: 0.2 not judged: baseline unknown; inactive"},
		{"too little traffic", []func(*Definition){above(0.05), minRequests(50)}, d,
			map[string]answer{valueQ: value(0.5), volumeQ: value(12)},
			"error-rate v2: 0.5 not judged: 12 requests < min_requests 50; inactive"},
		{"no data ignored", []func(*Definition){above(0.05)}, d,
			map[string]answer{valueQ: none},
			"error-rate v2: no data (ignored); inactive"},
		{"NaN that fires", []func(*Definition){above(0.05), onNoData(PolicyFire)}, d,
			map[string]answer{valueQ: nan},
			"error-rate v2: value is NaN (counts as a violation: on_no_data fire); firing (was inactive)"},
		{"query failed", []func(*Definition){above(0.05)}, d,
			map[string]answer{valueQ: failing},
			`error-rate v2: query failed (state kept): trigger "error-rate": value query at 2025-03-01T12:00:00Z: connection refused; inactive`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrigger(t, def(t, tc.mods...))
			v := tr.Eval(context.Background(), t0, tc.deploy, newFake(tc.answers).query)
			if got := v.Summary(); got != tc.want {
				t.Fatalf("summary\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestEnumStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Inactive.String(), "inactive"}, {Pending.String(), "pending"}, {Firing.String(), "firing"}, {State(9).String(), "unknown"},
		{OK.String(), "ok"}, {Violated.String(), "violated"}, {NotEnoughEvidence.String(), "not_enough_evidence"},
		{NoData.String(), "no_data"}, {NaN.String(), "nan"}, {QueryError.String(), "query_error"},
		{BaselineNone.String(), "none"}, {BaselineLive.String(), "live"}, {BaselinePreDeploy.String(), "pre_deploy"},
		{BaselineUnavailable.String(), "unavailable"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if b, _ := Firing.MarshalText(); string(b) != "firing" {
		t.Errorf("MarshalText = %s", b)
	}
}

// TestConcurrentReaders: State, Last and Snapshot may run while Eval does,
// and so may a reload copying the trigger's state into a new one.
func TestConcurrentReaders(t *testing.T) {
	tr := newTrigger(t, def(t, above(0.05), ratio(2)))
	f := newFake(map[string]answer{valueQ: value(0.1), baselineQ: at(deployAt, value(0.01), none)})
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 200 {
			_ = tr.State()
			_, _ = tr.Last()
			_, _, _ = tr.Snapshot(context.Background(), d, f.query)
		}
	})
	wg.Go(func() {
		for range 200 {
			if next := newTrigger(t, def(t, above(0.05), ratio(2))); !next.CopyStateFrom(tr) {
				t.Error("CopyStateFrom did not copy from an equal definition")
				return
			}
		}
	})
	run(tr, f.query, 200)
	wg.Wait()
	if tr.State() != Firing {
		t.Fatalf("state %v, want firing", tr.State())
	}
}
