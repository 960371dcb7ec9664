package trigger

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMinRequests(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mods    []func(*Definition)
		value   answer
		volume  answer
		want    Outcome
		samples *float64
	}{
		{"below the minimum: not enough evidence", nil, value(0.5), value(12), NotEnoughEvidence, f64(12)},
		{"no traffic data: not enough evidence", nil, value(0.5), none, NotEnoughEvidence, nil},
		{"NaN traffic: not enough evidence", nil, value(0.5), nan, NotEnoughEvidence, nil},
		{"exactly the minimum is judged", nil, value(0.5), value(50), Violated, f64(50)},
		{"above the minimum is judged", nil, value(0.01), value(1534), OK, f64(1534)},
		{"too little traffic wins over no data, even with on_no_data fire",
			[]func(*Definition){onNoData(PolicyFire)}, none, value(3), NotEnoughEvidence, f64(3)},
		{"a failing volume query is a query error", nil, value(0.5), failing, QueryError, nil},
		{"a failing value query is a query error before traffic is asked", nil, failing, value(12), QueryError, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mods := append([]func(*Definition){above(0.05), minRequests(50)}, tc.mods...)
			tr := newTrigger(t, def(t, mods...))
			f := newFake(map[string]answer{valueQ: tc.value, volumeQ: tc.volume})
			vs := run(tr, f.query, 20)
			v := vs[len(vs)-1]
			if v.Outcome != tc.want {
				t.Fatalf("outcome %v, want %v (%s)", v.Outcome, tc.want, v.Summary())
			}
			if !floatPtrEqual(v.Evidence.SampleSize, tc.samples) || v.Evidence.MinRequests != 50 {
				t.Errorf("sample size %v min %v, want %v 50", v.Evidence.SampleSize, v.Evidence.MinRequests, tc.samples)
			}
			if tc.want == NotEnoughEvidence {
				for i, v := range vs {
					if v.State != Inactive {
						t.Fatalf("tick %d: %v with not enough evidence", i, v.State)
					}
				}
				if s := v.Summary(); strings.Contains(s, "fail") || !strings.Contains(s, "not judged") {
					t.Errorf("summary %q should say not judged, never failed", s)
				}
			}
		})
	}
}

// TestUnjudgedOutcomes: no data, NaN and a failed query are three distinct
// outcomes; under "ignore" they never fire however long they last, under
// "fire" they count as violations.
func TestUnjudgedOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answer  answer
		outcome Outcome
		fire    func(*Definition)
	}{
		{"empty vector", none, NoData, onNoData(PolicyFire)},
		{"NaN", nan, NaN, onNoData(PolicyFire)},
		{"failed query", failing, QueryError, onQueryError(PolicyFire)},
		{"several series", series(3), QueryError, onQueryError(PolicyFire)},
	} {
		t.Run(tc.name+"/ignore", func(t *testing.T) {
			for _, forD := range []time.Duration{0, 30 * time.Second} {
				tr := newTrigger(t, def(t, above(0.05), forDur(forD)))
				f := newFake(map[string]answer{valueQ: tc.answer})
				for i, v := range run(tr, f.query, 100) {
					if v.Outcome != tc.outcome {
						t.Fatalf("tick %d: outcome %v, want %v", i, v.Outcome, tc.outcome)
					}
					if v.State != Inactive || v.Breach {
						t.Fatalf("tick %d: state %v breach %v under ignore", i, v.State, v.Breach)
					}
				}
			}
		})
		t.Run(tc.name+"/fire", func(t *testing.T) {
			tr := newTrigger(t, def(t, above(0.05), forDur(30*time.Second), tc.fire))
			f := newFake(map[string]answer{valueQ: tc.answer})
			vs := run(tr, f.query, 5)
			if got, want := states(vs), []State{Pending, Pending, Pending, Firing, Firing}; !slices.Equal(got, want) {
				t.Fatalf("states %v, want %v", got, want)
			}
			if vs[0].Outcome != tc.outcome || !vs[0].Breach {
				t.Errorf("outcome %v breach %v, want %v counted as a violation", vs[0].Outcome, vs[0].Breach, tc.outcome)
			}
		})
	}
	t.Run("the other policy does not apply", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			answer answer
			mod    func(*Definition)
		}{
			{"on_query_error fire leaves no data alone", none, onQueryError(PolicyFire)},
			{"on_no_data fire leaves query errors alone", failing, onNoData(PolicyFire)},
		} {
			tr := newTrigger(t, def(t, above(0.05), tc.mod))
			f := newFake(map[string]answer{valueQ: tc.answer})
			if v := run(tr, f.query, 3)[2]; v.State != Inactive {
				t.Errorf("%s: state %v", tc.name, v.State)
			}
		}
	})
}

func TestQueryErrors(t *testing.T) {
	t.Run("several series name the problem", func(t *testing.T) {
		tr := newTrigger(t, def(t, above(0.05)))
		f := newFake(map[string]answer{valueQ: series(5)})
		v := tr.Eval(context.Background(), t0, d, f.query)
		if v.Outcome != QueryError || !errors.Is(v.Err, ErrSeriesCount) {
			t.Fatalf("outcome %v err %v, want query_error wrapping ErrSeriesCount", v.Outcome, v.Err)
		}
		for _, want := range []string{`"error-rate"`, "value query returned 5 series", `{code="500"}, {code="501"}, {code="502"}, … 2 more`, "want 1: aggregate it"} {
			if !strings.Contains(v.Err.Error(), want) {
				t.Errorf("error %q lacks %q", v.Err, want)
			}
		}
	})
	t.Run("a failed query wraps the source's error", func(t *testing.T) {
		tr := newTrigger(t, def(t, above(0.05)))
		f := newFake(map[string]answer{valueQ: failing})
		v := tr.Eval(context.Background(), t0, d, f.query)
		if !errors.Is(v.Err, errDown) || !strings.Contains(v.Err.Error(), `trigger "error-rate": value query`) {
			t.Fatalf("err %v, want it to name the trigger and wrap %v", v.Err, errDown)
		}
		if v.Evidence.Value != nil {
			t.Errorf("value %v on a failed query", *v.Evidence.Value)
		}
	})
	t.Run("no error on other outcomes", func(t *testing.T) {
		tr := newTrigger(t, def(t, above(0.05)))
		f := newFake(map[string]answer{valueQ: seq(none, nan, value(1), value(0))})
		for i, v := range run(tr, f.query, 4) {
			if v.Err != nil {
				t.Errorf("tick %d (%v): err %v", i, v.Outcome, v.Err)
			}
		}
	})
}

// TestTransitions checks the package documentation's table from each state.
func TestTransitions(t *testing.T) {
	hi, lo := value(0.1), value(0.01)
	// Warm-up ticks bring the trigger to the starting state; For is 30s.
	pending := []answer{hi}            // pending since tick 0
	firing := []answer{hi, hi, hi, hi} // firing at tick 3
	for _, tc := range []struct {
		name    string
		warmup  []answer
		next    answer
		volume  answer
		want    State
		outcome Outcome
	}{
		{"pending + no data → inactive", pending, none, value(100), Inactive, NoData},
		{"pending + NaN → inactive", pending, nan, value(100), Inactive, NaN},
		{"pending + not enough evidence → inactive", pending, hi, value(1), Inactive, NotEnoughEvidence},
		{"pending + query error → pending", pending, failing, value(100), Pending, QueryError},
		{"pending + OK → inactive", pending, lo, value(100), Inactive, OK},
		{"firing + no data → firing", firing, none, value(100), Firing, NoData},
		{"firing + NaN → firing", firing, nan, value(100), Firing, NaN},
		{"firing + not enough evidence → firing", firing, hi, value(1), Firing, NotEnoughEvidence},
		{"firing + query error → firing", firing, failing, value(100), Firing, QueryError},
		{"firing + OK → inactive (resolved)", firing, lo, value(100), Inactive, OK},
		{"inactive + query error → inactive", []answer{lo}, failing, value(100), Inactive, QueryError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrigger(t, def(t, above(0.05), forDur(30*time.Second), minRequests(10)))
			n := len(tc.warmup)
			volumes := make([]answer, n+1)
			for i := range n {
				volumes[i] = value(100)
			}
			volumes[n] = tc.volume
			f := newFake(map[string]answer{valueQ: seq(append(slices.Clone(tc.warmup), tc.next)...), volumeQ: seq(volumes...)})
			vs := run(tr, f.query, n+1)
			v := vs[n]
			if v.Outcome != tc.outcome || v.State != tc.want {
				t.Fatalf("outcome %v state %v, want %v %v", v.Outcome, v.State, tc.outcome, tc.want)
			}
			if v.State == Pending && !v.Evidence.ActiveSince.Equal(tick(0)) {
				t.Errorf("held pending lost ActiveSince: %v", v.Evidence.ActiveSince)
			}
		})
	}
}

// TestQueryErrorKeepsEvidence: a Prometheus blip during pending neither fires
// nor restarts For: the trigger fires at the same tick as without the blip.
func TestQueryErrorKeepsEvidence(t *testing.T) {
	hi := value(0.1)
	tr := newTrigger(t, def(t, above(0.05), forDur(30*time.Second)))
	f := newFake(map[string]answer{valueQ: seq(hi, failing, failing, hi)})
	got := states(run(tr, f.query, 4))
	if want := []State{Pending, Pending, Pending, Firing}; !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
}

// kind is the outcome a scripted tick produces.
var kinds = []struct {
	outcome       Outcome
	value, volume answer
}{
	{NoData, none, value(100)},
	{NaN, nan, value(100)},
	{QueryError, failing, value(100)},
	{QueryError, series(2), value(100)},
	{QueryError, value(1), failing},
	{NotEnoughEvidence, value(1), value(1)},
	{NotEnoughEvidence, value(1), none},
	{OK, value(0), value(100)},
	{Violated, value(1), value(100)},
}

// TestPropertyIgnoreNeverFires: with the default policies, no sequence of
// no data, NaN, query errors, too little traffic and OKs reaches firing, or
// even pending; with the "fire" policies, a sequence of no data, NaN and
// query errors fires exactly when For has passed.
func TestPropertyIgnoreNeverFires(t *testing.T) {
	unjudged := kinds[:len(kinds)-1] // everything but Violated
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 42))
		forD := time.Duration(r.IntN(6)) * step
		n := 1 + r.IntN(60)
		seqV, seqN := make([]answer, n), make([]answer, n)
		want := make([]Outcome, n)
		for i := range n {
			k := unjudged[r.IntN(len(unjudged))]
			seqV[i], seqN[i], want[i] = k.value, k.volume, k.outcome
		}
		tr := newTrigger(t, def(t, above(0.5), forDur(forD), minRequests(10)))
		f := newFake(map[string]answer{valueQ: seq(seqV...), volumeQ: seq(seqN...)})
		for i, v := range run(tr, f.query, n) {
			if v.Outcome != want[i] {
				t.Fatalf("seed %d tick %d: outcome %v, want %v", seed, i, v.Outcome, want[i])
			}
			if v.State != Inactive {
				t.Fatalf("seed %d tick %d: %v after %v under ignore (sequence %v)", seed, i, v.State, v.Outcome, want[:i+1])
			}
		}
	}

	noEvidence := []int{0, 1, 2, 3} // no data, NaN, query errors from the value query
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 7))
		forD := time.Duration(r.IntN(6)) * step
		n := 1 + r.IntN(30)
		seqV := make([]answer, n)
		for i := range n {
			seqV[i] = kinds[noEvidence[r.IntN(len(noEvidence))]].value
		}
		tr := newTrigger(t, def(t, above(0.5), forDur(forD), onNoData(PolicyFire), onQueryError(PolicyFire)))
		f := newFake(map[string]answer{valueQ: seq(seqV...)})
		for i, v := range run(tr, f.query, n) {
			want := Pending
			if tick(i).Sub(t0) >= forD {
				want = Firing
			}
			if v.State != want {
				t.Fatalf("seed %d tick %d (for %v): %v, want %v", seed, i, forD, v.State, want)
			}
		}
	}
}

func TestDeployChangeResets(t *testing.T) {
	tr := newTrigger(t, def(t, above(0.05), forDur(time.Minute)))
	f := newFake(map[string]answer{
		valueQ: value(0.1),
		`err_ratio{service="checkout",version="v3"}`: value(0.1),
	})
	if v := tr.Eval(context.Background(), t0, d, f.query); v.State != Pending {
		t.Fatalf("state %v, want pending", v.State)
	}
	next := Deploy{Service: "checkout", Version: "v3", Baseline: "v2", At: t0}
	v := tr.Eval(context.Background(), tick(1), next, f.query)
	if v.Previous != Inactive || v.State != Pending || !v.Evidence.ActiveSince.Equal(tick(1)) {
		t.Fatalf("previous %v state %v since %v: a new deploy must start from inactive", v.Previous, v.State, v.Evidence.ActiveSince)
	}
	if v.Evidence.Query != `err_ratio{service="checkout",version="v3"}` {
		t.Errorf("query %s not rendered for the new deploy", v.Evidence.Query)
	}
	tr.Reset()
	if tr.State() != Inactive {
		t.Errorf("Reset left %v", tr.State())
	}
	if _, ok := tr.Last(); ok {
		t.Error("Reset kept the last verdict")
	}
}
