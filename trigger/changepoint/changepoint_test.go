package changepoint

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func mustNew(t testing.TB, c Config) *Detector {
	t.Helper()
	d, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustNewWith(t testing.TB, c Config, ds design) *Detector {
	t.Helper()
	d, err := newWith(c, ds)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var testConfig = Config{Alpha: 0.05, Window: 10 * time.Minute, MinEffect: 1.5}

func TestConfigValidate(t *testing.T) {
	ok := Config{Alpha: DefaultAlpha, Window: 30 * time.Minute, MinEffect: DefaultMinEffect}
	with := func(f func(*Config)) Config { c := ok; f(&c); return c }
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default", ok, true},
		{"block set", with(func(c *Config) { c.Block = time.Minute }), true},
		{"block = window", with(func(c *Config) { c.Block = c.Window }), true},
		{"alpha 0.5", with(func(c *Config) { c.Alpha = 0.5 }), true},
		{"alpha 0", with(func(c *Config) { c.Alpha = 0 }), false},
		{"alpha 1", with(func(c *Config) { c.Alpha = 1 }), false},
		{"alpha NaN", with(func(c *Config) { c.Alpha = math.NaN() }), false},
		{"no window", with(func(c *Config) { c.Window = 0 }), false},
		{"negative window", with(func(c *Config) { c.Window = -time.Second }), false},
		{"negative block", with(func(c *Config) { c.Block = -time.Second }), false},
		{"block above window", with(func(c *Config) { c.Block = time.Hour }), false},
		{"default block above window", with(func(c *Config) { c.Window = time.Second }), false},
		{"too many blocks", with(func(c *Config) { c.Block = time.Nanosecond }), false},
		{"ratio 1", with(func(c *Config) { c.MinEffect = 1 }), false},
		{"ratio below 1", with(func(c *Config) { c.MinEffect = 0.5 }), false},
		{"ratio NaN", with(func(c *Config) { c.MinEffect = math.NaN() }), false},
		{"ratio +Inf", with(func(c *Config) { c.MinEffect = math.Inf(1) }), false},
		{"no ratio", with(func(c *Config) { c.MinEffect = 0 }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("New: %v", err)
			case !tc.ok && !errors.Is(err, ErrInvalidConfig):
				t.Fatalf("New: %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestWeightsSumToOne(t *testing.T) {
	for _, c := range []Config{
		testConfig,
		{Alpha: 0.001, Window: 30 * time.Minute, Block: time.Second, MinEffect: 1.1},
		{Alpha: 0.001, Window: 25 * time.Second, Block: 10 * time.Second, MinEffect: 900},
	} {
		d := mustNew(t, c)
		var w float64
		for _, lw := range d.lnW {
			w += math.Exp(lw)
		}
		if math.Abs(w-1) > 1e-12 || math.Abs(d.cum[len(d.cum)-1]-1) > 1e-12 {
			t.Errorf("%+v: ratio weights sum to %v, start weights to %v", c, w, d.cum[len(d.cum)-1])
		}
		if want := int((c.Window + c.block() - 1) / c.block()); len(d.lnPi) != want {
			t.Errorf("%+v: %d starts, want %d", c, len(d.lnPi), want)
		}
		if d.r[0] != c.MinEffect || !slices.IsSorted(d.r) || d.r[len(d.r)-1] != maxRatio {
			t.Errorf("%+v: ratios %v", c, d.r)
		}
	}
}

// brute computes the statistic from its definition: every start, every
// ratio, the product of the e-values of the ticks since that start.
func brute(d *Detector, ticks []Tick) float64 {
	startTick := make([]int, len(d.lnPi)) // tick at which block j starts; -1 if none yet
	for j := range startTick {
		startTick[j] = -1
	}
	for i, t := range ticks {
		for j := range startTick {
			if startTick[j] < 0 && (j == 0 || time.Duration(j)*d.block < t.At) {
				startTick[j] = i
			}
		}
	}
	m := 0.0
	for j, s := range startTick {
		if s < 0 {
			m += math.Exp(d.lnPi[j])
			continue
		}
		for k, r := range d.r {
			le := 0.0
			for _, t := range ticks[s:] {
				x, n := clean(t.Errors, t.Requests)
				if n == 0 || !(t.Q0 > 0 && t.Q0 < 1) {
					continue
				}
				p := min(t.Q0*r, maxRate)
				if p <= t.Q0 {
					continue
				}
				le += x*math.Log(p/t.Q0) + (n-x)*math.Log((1-p)/(1-t.Q0))
			}
			m += math.Exp(d.lnW[k] + d.lnPi[j] + le)
		}
	}
	return m
}

func TestRecursionMatchesDefinition(t *testing.T) {
	for _, ds := range []design{defaultDesign, {shape: uniform, step: 1.5, decay: 0.7}, {deployWeight: 0.2, shape: quadratic, step: 1.25, decay: 0.85}} {
		d := mustNewWith(t, Config{Alpha: 0.01, Window: time.Minute, Block: 10 * time.Second, MinEffect: 1.5}, ds)
		rng := rand.New(rand.NewPCG(1, 2))
		var ticks []Tick
		r := d.Start()
		at := time.Duration(0)
		for i := range 40 {
			at += time.Duration(rng.IntN(15)) * time.Second // gaps, repeated times
			n := float64(rng.IntN(30))
			tk := Tick{At: at, Requests: n, Errors: float64(rng.IntN(int(n)/3 + 1)), Q0: 0.02 + 0.1*rng.Float64()}
			if i%7 == 3 {
				tk.Q0 = 0 // no evidence
			}
			ticks = append(ticks, tk)
			got := r.Observe(tk)
			want := brute(d, ticks)
			if math.Abs(got.LogE-math.Log(want)) > 1e-9*max(1, math.Abs(got.LogE)) {
				t.Fatalf("%+v tick %d: ln M = %v, by definition %v", ds, i, got.LogE, math.Log(want))
			}
		}
	}
}

// simulateNull runs n streams where every request fails with probability
// p_t <= q0_t and counts those with an alarm. alt, when set, gets the same
// streams.
func simulateNull(t *testing.T, d *Detector, streams, ticks, reqs int, tickLen time.Duration, rate func(rng *rand.Rand) (p, q0 float64), also func(*Run) bool) (alarms, alsoAlarms int) {
	t.Helper()
	for s := range streams {
		rng := rand.New(rand.NewPCG(uint64(s), 7))
		r := d.Start()
		hit, alsoHit := false, false
		for i := range ticks {
			p, q0 := rate(rng)
			x := 0.0
			for range reqs {
				if rng.Float64() < p {
					x++
				}
			}
			res := r.Observe(Tick{At: time.Duration(i+1) * tickLen, Errors: x, Requests: float64(reqs), Q0: q0})
			if math.IsNaN(res.LogE) {
				t.Fatalf("stream %d tick %d: NaN", s, i)
			}
			hit = hit || res.Alarm
			alsoHit = alsoHit || (also != nil && also(r))
		}
		if hit {
			alarms++
		}
		if alsoHit {
			alsoAlarms++
		}
	}
	return alarms, alsoAlarms
}

// TestFalseAlarmRateAA runs the detector on streams with no change at
// all (p = q0: the edge of the null, where the bound is tightest) and
// checks that the fraction with an alarm at any tick is at most Alpha, up
// to three standard errors. The same streams show that the
// Shiryaev–Roberts sum checked against 1/Alpha without the start weights
// (the average-run-length threshold) alarms far more often than Alpha, so
// the test can fail.
func TestFalseAlarmRateAA(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	bound := func(n int, a float64) int { return int(float64(n)*a + 3*math.Sqrt(float64(n)*a*(1-a))) }
	t.Run("alpha 0.05, p = q0", func(t *testing.T) {
		c := Config{Alpha: 0.05, Window: 10 * time.Minute, Block: 10 * time.Second, MinEffect: 1.5}
		d := mustNewWith(t, c, design{shape: uniform, step: ratioStep, decay: ratioDecay})
		dflt := mustNew(t, c)
		const n = 1000
		// The uniform design's statistic is R/J plus the weight of the
		// starts to come, R the Shiryaev–Roberts sum.
		naive := func(r *Run) bool {
			e := r.result()
			rest := 1 - d.cum[r.s.Started]
			return float64(len(d.lnPi))*(e.E-rest) >= 1/c.Alpha
		}
		null := func(*rand.Rand) (float64, float64) { return 0.02, 0.02 }
		a, na := simulateNull(t, d, n, 150, 50, 5*time.Second, null, naive)
		b, _ := simulateNull(t, dflt, n, 150, 50, 5*time.Second, null, nil)
		t.Logf("false alarms: uniform starts %d/%d, default %d/%d; SR at 1/alpha %d/%d", a, n, b, n, na, n)
		if lim := bound(n, c.Alpha); a > lim || b > lim {
			t.Errorf("false alarms %d and %d of %d, above %d", a, b, n, lim)
		}
		if na <= bound(n, c.Alpha) {
			t.Errorf("the Shiryaev–Roberts sum at 1/alpha alarmed %d of %d times: the simulation cannot tell a broken threshold", na, n)
		}
	})
	t.Run("alpha 0.05, moving q0, p below it", func(t *testing.T) {
		d := mustNew(t, Config{Alpha: 0.05, Window: 5 * time.Minute, Block: 10 * time.Second, MinEffect: 1.2})
		const n = 1000
		moving := func(rng *rand.Rand) (float64, float64) {
			q0 := 0.01 + 0.2*rng.Float64()
			return q0 * (0.8 + 0.2*rng.Float64()), q0
		}
		a, _ := simulateNull(t, d, n, 80, 30, 5*time.Second, moving, nil)
		t.Logf("false alarms: %d/%d", a, n)
		if lim := bound(n, 0.05); a > lim {
			t.Errorf("false alarms %d of %d, above %d", a, n, lim)
		}
	})
	t.Run("alpha 0.001, p = q0", func(t *testing.T) {
		d := mustNew(t, Config{Alpha: 0.001, Window: 2 * time.Minute, MinEffect: 1.5})
		const n = 3000
		null := func(*rand.Rand) (float64, float64) { return 0.05, 0.05 }
		a, _ := simulateNull(t, d, n, 36, 20, 5*time.Second, null, nil)
		t.Logf("false alarms: %d/%d", a, n)
		// P(Poisson(3) >= 10) < 0.0011.
		if a >= 10 {
			t.Errorf("false alarms %d of %d at alpha 0.001", a, n)
		}
	})
}

// TestStepChangeIsDetectedAndLocated feeds a change from 1% to 3% at
// minute 5 and checks that the detector stays quiet before it, alarms
// soon after it and places its start near minute 5.
func TestStepChangeIsDetectedAndLocated(t *testing.T) {
	d := mustNew(t, Config{Alpha: 0.001, Window: 30 * time.Minute, MinEffect: 1.5})
	const streams = 40
	change := 5 * time.Minute
	var early, late int
	var starts, delays []float64
	for s := range streams {
		rng := rand.New(rand.NewPCG(uint64(s), 11))
		r := d.Start()
		for i := 1; i <= 360; i++ { // 5 s ticks, 30 minutes
			at := time.Duration(i) * 5 * time.Second
			p := 0.01
			if at > change {
				p = 0.03
			}
			const n = 500 // 100 req/s
			x := float64(binomial(rng, n, p))
			res := r.Observe(Tick{At: at, Errors: x, Requests: n, Q0: 0.01})
			if res.Alarm {
				if at <= change {
					early++
				} else {
					starts = append(starts, res.Start.Seconds())
					delays = append(delays, (at - change).Seconds())
				}
				break
			}
		}
	}
	late = streams - early - len(delays)
	slices.Sort(starts)
	slices.Sort(delays)
	t.Logf("alarms before the change %d, never %d; delays %v; start estimates %v", early, late, delays, starts)
	if early > 0 || late > 0 {
		t.Fatalf("%d alarms before the change, %d streams without one", early, late)
	}
	// The oracle needs ln(999)/(KL per second) ≈ 6.9/(1.0·(3 ln 3 - 2)) s ≈ 5.3 s
	// of 3% at 100 req/s; allow the mixture's costs.
	if med := delays[len(delays)/2]; med > 60 {
		t.Errorf("median delay %v s", med)
	}
	if med := starts[len(starts)/2]; math.Abs(med-change.Seconds()) > 20 {
		t.Errorf("median start estimate %v s, change at %v", med, change)
	}
}

// TestSlowBurnBeatsAllData: on a burn growing from 1x to 5x over 10
// minutes at 1,000 req/s, the change detector alarms with fewer requests
// (median) than the same mixture over ratios applied to all the data since
// the deploy, the dilution it is built to avoid.
func TestSlowBurnBeatsAllData(t *testing.T) {
	c := Config{Alpha: 0.001, Window: 30 * time.Minute, MinEffect: 1.5}
	cp := mustNew(t, c)
	all := mustNewWith(t, c, design{deployWeight: 1, shape: uniform, step: ratioStep, decay: ratioDecay})
	const streams = 60
	var cpAt, allAt []float64
	for s := range streams {
		rng := rand.New(rand.NewPCG(uint64(s), 13))
		r1, r2 := cp.Start(), all.Start()
		t1, t2 := math.Inf(1), math.Inf(1)
		for i := 1; i <= 600 && (math.IsInf(t1, 1) || math.IsInf(t2, 1)); i++ {
			p := 0.01 * (1 + 4*min(float64(i)/600, 1))
			const n = 1000
			tk := Tick{At: time.Duration(i) * time.Second, Errors: float64(binomial(rng, n, p)), Requests: n, Q0: 0.01}
			if r1.Observe(tk).Alarm && math.IsInf(t1, 1) {
				t1 = float64(i)
			}
			if r2.Observe(tk).Alarm && math.IsInf(t2, 1) {
				t2 = float64(i)
			}
		}
		cpAt, allAt = append(cpAt, t1), append(allAt, t2)
	}
	slices.Sort(cpAt)
	slices.Sort(allAt)
	t.Logf("median seconds to alarm: change detector %v, all data %v", cpAt[streams/2], allAt[streams/2])
	if !(cpAt[streams/2] < allAt[streams/2]) {
		t.Errorf("change detector %v s, all data %v s", cpAt[streams/2], allAt[streams/2])
	}
}

func binomial(rng *rand.Rand, n int, p float64) int {
	if float64(n)*p > 50 {
		// Normal approximation, enough for the power checks.
		m := float64(n) * p
		return max(0, min(n, int(math.Round(m+math.Sqrt(m*(1-p))*rng.NormFloat64()))))
	}
	// Waiting times between failures.
	k := 0
	lq := math.Log1p(-p)
	for i := 0; ; k++ {
		i += int(math.Floor(math.Log(1-rng.Float64())/lq)) + 1
		if i > n {
			return k
		}
	}
}

func TestNoEvidenceTicks(t *testing.T) {
	d := mustNew(t, testConfig)
	r := d.Start()
	r.Observe(Tick{At: 20 * time.Second, Errors: 3, Requests: 50, Q0: 0.02})
	// Past the window every start has been counted: a tick without
	// evidence leaves the statistic as it is.
	before := r.Observe(Tick{At: d.cfg.Window, Errors: 1, Requests: 40, Q0: 0.02})
	for _, tk := range []Tick{
		{At: d.cfg.Window + time.Second},
		{At: d.cfg.Window + 2*time.Second, Errors: 5},
		{At: d.cfg.Window + 3*time.Second, Errors: 5, Requests: 10, Q0: 0},
		{At: d.cfg.Window + 4*time.Second, Errors: 5, Requests: 10, Q0: 1},
		{At: d.cfg.Window + 5*time.Second, Errors: 5, Requests: 10, Q0: math.NaN()},
		{At: d.cfg.Window + 6*time.Second, Errors: 5, Requests: 10, Q0: -0.1},
		{At: d.cfg.Window + 7*time.Second, Errors: math.NaN(), Requests: math.Inf(1), Q0: 0.02},
		{At: d.cfg.Window + 8*time.Second, Errors: 5, Requests: -10, Q0: 0.02},
		{At: d.cfg.Window + 9*time.Second, Errors: 5, Requests: 0.4, Q0: 0.02},
		{At: d.cfg.Window + 10*time.Second, Errors: 3, Requests: 1e6, Q0: 0.999}, // no alternative above q0
	} {
		if got := r.Observe(tk); got.LogE != before.LogE {
			t.Errorf("%+v: ln E %v, was %v", tk, got.LogE, before.LogE)
		}
	}
}

func TestFirstResult(t *testing.T) {
	d := mustNew(t, testConfig)
	r := d.Start()
	got := r.Observe(Tick{At: 5 * time.Second})
	if math.Abs(got.E-1) > 1e-12 || math.Abs(got.LogE) > 1e-12 || got.Alarm || got.Threshold != 20 || got.Start != 0 || got.Ratio != 1.5 {
		t.Fatalf("result after an empty tick: %+v", got)
	}
	// Any error proves p > 0 = q0·r: still no alternative, no evidence.
	got = r.Observe(Tick{At: 10 * time.Second, Errors: 3, Requests: 3, Q0: 0})
	if math.Abs(got.LogE) > 1e-12 {
		t.Fatalf("q0 = 0: %+v", got)
	}
}

func TestHugeCounts(t *testing.T) {
	d := mustNew(t, testConfig)
	r := d.Start()
	for i, tk := range []Tick{
		{At: time.Second, Errors: 1e300, Requests: 1e300, Q0: 1e-300},
		{At: 2 * time.Second, Errors: 0, Requests: 1e300, Q0: 0.5},
		{At: 3 * time.Second, Errors: 1e15, Requests: 1e18, Q0: 1e-9},
	} {
		res := r.Observe(tk)
		if math.IsNaN(res.LogE) || math.IsInf(res.LogE, 0) {
			t.Fatalf("tick %d: ln E %v", i, res.LogE)
		}
		if _, err := json.Marshal(r.State()); err != nil {
			t.Fatalf("tick %d: %v", i, err)
		}
	}
}

func TestResume(t *testing.T) {
	d := mustNew(t, testConfig)
	rng := rand.New(rand.NewPCG(3, 4))
	tick := func(i int) Tick {
		return Tick{At: time.Duration(i) * 5 * time.Second, Errors: float64(rng.IntN(4)), Requests: 50, Q0: 0.03}
	}
	r := d.Start()
	if _, err := d.Resume(r.State()); err != nil {
		t.Fatalf("resume before the first tick: %v", err)
	}
	for i := 1; i <= 30; i++ {
		r.Observe(tick(i))
	}
	b, err := json.Marshal(r.State())
	if err != nil {
		t.Fatal(err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	r2, err := d.Resume(s)
	if err != nil {
		t.Fatal(err)
	}
	for i := 31; i <= 200; i++ {
		tk := tick(i)
		if a, b := r.Observe(tk), r2.Observe(tk); a != b {
			t.Fatalf("tick %d: %+v, resumed %+v", i, a, b)
		}
	}

	other := mustNew(t, Config{Alpha: 0.05, Window: 10 * time.Minute, MinEffect: 2})
	good := r.State()
	for _, tc := range []struct {
		name string
		d    *Detector
		f    func(*State)
	}{
		{"other configuration", other, func(*State) {}},
		{"no key", d, func(s *State) { s.Key = "" }},
		{"too many starts", d, func(s *State) { s.Started = len(d.lnPi) + 1 }},
		{"sums without starts", d, func(s *State) { s.Started = 0 }},
		{"short sums", d, func(s *State) { s.LogA = s.LogA[1:] }},
		{"NaN", d, func(s *State) { s.LogA[2] = math.NaN() }},
		{"Inf", d, func(s *State) { s.LogC[2] = math.Inf(1) }},
		{"start not started", d, func(s *State) { s.StartC[0] = s.Started }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := r.State()
			tc.f(&s)
			if _, err := tc.d.Resume(s); !errors.Is(err, ErrState) {
				t.Fatalf("Resume: %v, want ErrState", err)
			}
		})
	}
	if s := r.State(); !slices.Equal(s.LogA, good.LogA) {
		t.Fatal("State shares its slices with the run")
	}
}

// tickGen draws ticks with any counts and bounds, odd values included.
func tickGen(at time.Duration) *rapid.Generator[Tick] {
	return rapid.Custom(func(t *rapid.T) Tick {
		odd := rapid.SampledFrom([]float64{0, -1, math.NaN(), math.Inf(1), math.Inf(-1), 1e300, 0.5, 1})
		count := rapid.OneOf(rapid.Float64Range(0, 1e4), rapid.Float64Range(0, 1e12), odd)
		return Tick{
			At:       at + time.Duration(rapid.Int64Range(0, int64(time.Minute)).Draw(t, "dt")),
			Errors:   count.Draw(t, "errors"),
			Requests: count.Draw(t, "requests"),
			Q0:       rapid.OneOf(rapid.Float64Range(0, 1), rapid.Float64Range(1e-9, 1e-3), odd).Draw(t, "q0"),
		}
	})
}

func drawRun(t *rapid.T, d *Detector) (*Run, time.Duration) {
	r := d.Start()
	at := time.Duration(0)
	for i := range rapid.IntRange(0, 40).Draw(t, "ticks") {
		tk := tickGen(at).Draw(t, "tick")
		at = tk.At
		res := r.Observe(tk)
		if math.IsNaN(res.LogE) || math.IsInf(res.LogE, 0) || math.IsNaN(res.E) || res.E < 0 {
			t.Fatalf("tick %d %+v: E %v, ln E %v", i, tk, res.E, res.LogE)
		}
		if res.Alarm != (res.LogE >= math.Log(res.Threshold)) {
			t.Fatalf("alarm %v at ln E %v", res.Alarm, res.LogE)
		}
	}
	return r, at
}

var propDetector = func() *Detector {
	d, err := New(Config{Alpha: 0.01, Window: 5 * time.Minute, Block: 10 * time.Second, MinEffect: 1.3})
	if err != nil {
		panic(err)
	}
	return d
}()

func TestPropertyNeverNaN(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r, _ := drawRun(t, propDetector)
		if _, err := json.Marshal(r.State()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPropertyMonotoneInLatestErrors(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r, at := drawRun(t, propDetector)
		n := rapid.Float64Range(1, 1e9).Draw(t, "requests")
		q0 := rapid.Float64Range(1e-6, 0.9).Draw(t, "q0")
		x1 := rapid.Float64Range(0, n).Draw(t, "x1")
		x2 := rapid.Float64Range(x1, n).Draw(t, "x2")
		at += time.Duration(rapid.Int64Range(0, int64(time.Minute)).Draw(t, "dt"))
		r2, err := propDetector.Resume(r.State())
		if err != nil {
			t.Fatal(err)
		}
		a := r.Observe(Tick{At: at, Errors: x1, Requests: n, Q0: q0})
		b := r2.Observe(Tick{At: at, Errors: x2, Requests: n, Q0: q0})
		if b.LogE < a.LogE {
			t.Fatalf("%v errors of %v: ln E %v; %v errors: %v", x1, n, a.LogE, x2, b.LogE)
		}
	})
}

// Within one block (no new start), two ticks carry the evidence of their
// sum: missing ticks cost nothing but the check.
func TestPropertyMergedTicksInOneBlock(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r, at := drawRun(t, propDetector)
		r2, _ := propDetector.Resume(r.State())
		// The next tick starts the blocks up to its time; the two ticks
		// that follow stay in its last block.
		at += time.Duration(rapid.Int64Range(1, int64(time.Minute)).Draw(t, "dt"))
		first := Tick{At: at, Errors: 1, Requests: 10, Q0: 0.05}
		r.Observe(first)
		r2.Observe(first)
		// No block begins in [at, blockEnd).
		blockEnd := (at + propDetector.block - 1) / propDetector.block * propDetector.block
		mid := at + time.Duration(rapid.Int64Range(0, int64(blockEnd-at)).Draw(t, "mid"))
		q0 := rapid.Float64Range(1e-4, 0.5).Draw(t, "q0")
		x1, x2 := float64(rapid.IntRange(0, 50).Draw(t, "x1")), float64(rapid.IntRange(0, 50).Draw(t, "x2"))
		n1, n2 := x1+float64(rapid.IntRange(0, 500).Draw(t, "n1")), x2+float64(rapid.IntRange(0, 500).Draw(t, "n2"))
		r.Observe(Tick{At: mid, Errors: x1, Requests: n1, Q0: q0})
		a := r.Observe(Tick{At: blockEnd, Errors: x2, Requests: n2, Q0: q0})
		b := r2.Observe(Tick{At: blockEnd, Errors: x1 + x2, Requests: n1 + n2, Q0: q0})
		if math.Abs(a.LogE-b.LogE) > 1e-9*max(1, math.Abs(a.LogE)) {
			t.Fatalf("two ticks: ln E %v; merged: %v", a.LogE, b.LogE)
		}
	})
}

func BenchmarkObserve(b *testing.B) {
	d := mustNew(b, Config{Alpha: DefaultAlpha, Window: 30 * time.Minute, MinEffect: DefaultMinEffect})
	b.Run("fixed q0", func(b *testing.B) {
		r := d.Start()
		i := 0
		for b.Loop() {
			i++
			r.Observe(Tick{At: time.Duration(i) * time.Second, Errors: float64(i % 13), Requests: 1000, Q0: 0.01})
		}
	})
	b.Run("moving q0", func(b *testing.B) {
		r := d.Start()
		i := 0
		for b.Loop() {
			i++
			r.Observe(Tick{At: time.Duration(i) * time.Second, Errors: float64(i % 13), Requests: 1000, Q0: 0.01 + 1e-6*float64(i%100)})
		}
	})
}
