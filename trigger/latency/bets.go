package latency

import "math"

// A bet is a density on the normal score z = Φ⁻¹(1-p) of a conformal
// p-value p (z is standard normal under the null hypothesis, larger for
// slower requests): f(z) >= 0 with E[f(Z)] = 1 for Z ~ N(0, 1). Every bet
// here is non-decreasing in z, so it only gains from slow requests.
type bet struct {
	kind  betKind
	param float64 // the shift θ, or the stretch s
	// Stretch bets: f = c below zc, the stretched density ratio above.
	zc, c float64
	lnw   float64 // ln of the prior weight
}

type betKind int

const (
	// shift: f(z) = exp(θz - θ²/2), the likelihood ratio of N(θ, 1): the
	// whole distribution moved right by θ standard deviations (in normal
	// scores, whatever the shape of the latency distribution).
	shift betKind = iota
	// stretch: the likelihood ratio of the upper half stretched by s, the
	// median and the lower half unchanged, made non-decreasing: f(z) =
	// φ(z/s)/(s·φ(z)) above zc and the constant c below, zc > 0 where the
	// two meet and c < 1 such that E[f] = 1. It is the likelihood ratio
	// against the closest distribution that is not slower than the
	// baseline anywhere: "p99 got worse with the median unchanged".
	stretch
)

// The prior: half of the weight on shifts θ = 0.03·1.4^k up to 2.5 (a
// tenth to two and a half of the baseline's spread, in normal scores), half
// on stretches s = 1.1·1.15^k up to 5, uniform within each family.
const (
	shiftWeight = 0.5
	shiftMin    = 0.03
	shiftStep   = 1.4
	shiftMax    = 2.5
	stretchMin  = 1.1
	stretchStep = 1.15
	stretchMax  = 5
)

// defaultBets returns the mixture the test uses.
func defaultBets() []bet {
	var shifts, stretches []float64
	for th := shiftMin; th <= shiftMax; th *= shiftStep {
		shifts = append(shifts, th)
	}
	for s := stretchMin; s <= stretchMax; s *= stretchStep {
		stretches = append(stretches, s)
	}
	var bs []bet
	for _, th := range shifts {
		bs = append(bs, bet{kind: shift, param: th, lnw: math.Log(shiftWeight / float64(len(shifts)))})
	}
	for _, s := range stretches {
		zc, lnc := stretchKnee(s)
		bs = append(bs, bet{kind: stretch, param: s, zc: zc, c: math.Exp(lnc), lnw: math.Log((1 - shiftWeight) / float64(len(stretches)))})
	}
	return bs
}

// stretchKnee returns zc and ln c of the stretch bet with factor s > 1: the
// knee zc > 0 where φ(z/s)/(s·φ(z)) = c, with c = Φ(zc/s)/Φ(zc) so that
// c·Φ(zc) + (1 - Φ(zc/s)) = 1.
func stretchKnee(s float64) (zc, lnc float64) {
	g := func(z float64) float64 {
		return -math.Log(s) + z*z*(1-1/(s*s))/2 - (math.Log(normCDF(z/s)) - math.Log(normCDF(z)))
	}
	lo, hi := 0.0, 40.0 // g(0) = -ln s < 0 < g(40)
	for range 200 {
		mid := (lo + hi) / 2
		if g(mid) < 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	zc = (lo + hi) / 2
	return zc, math.Log(normCDF(zc/s)) - math.Log(normCDF(zc))
}

// cellMean returns the average of the bet over z in (a, b) under N(0, 1),
// a < b (either may be infinite): the bet a request gets when all that is
// known of it is its bucket.
func (bt *bet) cellMean(a, b float64) float64 {
	m := normMass(a, b, b-a)
	if !(m > 0) {
		return 1 // a cell of (numerically) no mass: no bet
	}
	// A floor far below anything a request can reach keeps ln finite.
	return math.Max(bt.mass(a, b)/m, 1e-300)
}

// mass returns the integral of the bet against N(0, 1) over z in (a, b):
// the bet's mass on a cell. The masses of cells that partition the line sum
// to 1.
func (bt *bet) mass(a, b float64) float64 {
	var v float64
	switch bt.kind {
	case shift:
		th := bt.param
		v = normMass(a-th, b-th, b-a)
	case stretch:
		s := bt.param
		if a < bt.zc {
			hi := math.Min(b, bt.zc)
			v += bt.c * normMass(a, hi, hi-a)
		}
		if b > bt.zc {
			lo := math.Max(a, bt.zc)
			v += normMass(lo/s, b/s, (b-lo)/s)
		}
	}
	return v
}

// upperTail returns P(Z > x) for Z ~ N(0, 1), accurate far in the tail.
func upperTail(x float64) float64 { return 0.5 * math.Erfc(x/math.Sqrt2) }

func normCDF(x float64) float64 { return upperTail(-x) }

// normMass returns P(a < Z < b) for an interval of width w = b - a (given
// apart, so that a shifted interval keeps its width exactly), accurate in
// both tails and for narrow intervals.
func normMass(a, b, w float64) float64 {
	switch {
	case !(w > 0):
		return 0
	case w < 1e-3 && !math.IsInf(a, 0):
		// The density at the middle with its curvature: relative error
		// below w⁴.
		m := a + w/2
		return math.Exp(-m*m/2) / math.Sqrt(2*math.Pi) * w * (1 + w*w*(m*m-1)/24)
	case !(a < b):
		return 0
	case a > 0:
		return upperTail(a) - upperTail(b)
	case b < 0:
		return upperTail(-b) - upperTail(-a)
	}
	return (math.Erf(b/math.Sqrt2) - math.Erf(a/math.Sqrt2)) / 2
}

// score returns the normal score Φ⁻¹(1-p) of a p-value: +Inf at 0, -Inf at 1.
func score(p float64) float64 {
	switch {
	case p <= 0:
		return math.Inf(1)
	case p >= 1:
		return math.Inf(-1)
	}
	return math.Sqrt2 * math.Erfcinv(2*p)
}
