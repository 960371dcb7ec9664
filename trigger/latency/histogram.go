package latency

import (
	"math"
	"slices"
)

// Bucket is one cumulative bucket of a Prometheus classic histogram: the
// number of requests with a latency of at most UpperBound (the le label),
// counted since the deploy (or over the pre-deploy window).
type Bucket struct {
	UpperBound float64
	Count      float64
}

// Histogram is the cumulative buckets of one version, in any order, the +Inf
// bucket included (it carries the total). A histogram without a +Inf bucket
// takes its largest count as the total. Counts are rounded to whole requests;
// negative, NaN and infinite counts count as 0; counts that decrease with the
// bound (scrapes of different buckets at different instants) are raised to
// the count below them. Buckets with a NaN or negative bound are ignored.
type Histogram []Bucket

// NativeBucket is one bucket of a Prometheus native histogram as the HTTP API
// returns it: the requests with a latency in (Lower, Upper] (the boundary
// rule of the zero bucket is ignored: latencies are not negative).
type NativeBucket struct {
	Lower, Upper, Count float64
}

// FromNative turns the buckets of a native histogram into cumulative
// buckets at bounds, the bounds the watch judges on (typically the upper
// bounds of the pre-deploy histogram's buckets, see NativeBounds): the count
// at a bound is the sum of the buckets whose Upper is at most the bound. A
// bound that falls strictly inside a bucket with requests cannot be counted
// exactly and is left out (the watch then merges it away). Native buckets
// that are absent have no requests, so a bound outside every present bucket
// is exact.
func FromNative(buckets []NativeBucket, bounds []float64) Histogram {
	bs := slices.Clone(buckets)
	slices.SortFunc(bs, func(a, b NativeBucket) int { return cmpFloat(a.Upper, b.Upper) })
	var total float64
	for _, b := range bs {
		total += clean(b.Count)
	}
	h := Histogram{{UpperBound: math.Inf(1), Count: total}}
	for _, bound := range bounds {
		if !(bound >= 0) || math.IsInf(bound, 1) {
			continue
		}
		var below float64
		exact := true
		for _, b := range bs {
			switch {
			case b.Upper <= bound:
				below += clean(b.Count)
			case b.Lower < bound && clean(b.Count) > 0:
				exact = false
			}
		}
		if exact {
			h = append(h, Bucket{UpperBound: bound, Count: below})
		}
	}
	return h
}

// NativeBounds returns the upper bounds of a native histogram's buckets that
// have requests: the layout to judge on, taken from the pre-deploy
// histogram.
func NativeBounds(buckets []NativeBucket) []float64 {
	var out []float64
	for _, b := range buckets {
		if clean(b.Count) > 0 && b.Upper >= 0 && !math.IsInf(b.Upper, 1) {
			out = append(out, b.Upper)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// clean rounds a count to a whole number, 0 for negative, NaN or infinite
// values.
func clean(v float64) float64 {
	if !(v > 0) || math.IsInf(v, 1) {
		return 0
	}
	return math.Floor(v + 0.5)
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// bounds returns the finite bounds of h, ascending, without duplicates.
func (h Histogram) bounds() []float64 {
	var out []float64
	for _, b := range h {
		if b.UpperBound >= 0 && !math.IsInf(b.UpperBound, 1) {
			out = append(out, b.UpperBound)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// empty reports whether h has no requests.
func (h Histogram) empty() bool {
	for _, b := range h {
		if clean(b.Count) > 0 {
			return false
		}
	}
	return true
}

// counts returns the requests of h per bucket of layout (len(layout)+1
// buckets, the last above every bound), cleaned as Histogram describes, and
// whether h has every bound of layout. Bounds of h that are not in layout
// are merged into the bucket above them.
func (h Histogram) counts(layout []float64) ([]float64, bool) {
	cum := make([]float64, len(layout)+1) // cumulative, at each bound then +Inf
	found := make([]bool, len(layout))
	var inf, largest float64
	hasInf := false
	for _, b := range h {
		c := clean(b.Count)
		switch {
		case math.IsInf(b.UpperBound, 1):
			inf, hasInf = max(inf, c), true
		case b.UpperBound >= 0:
			if i, ok := slices.BinarySearch(layout, b.UpperBound); ok {
				cum[i] = max(cum[i], c)
				found[i] = true
			}
			largest = max(largest, c)
		}
	}
	cum[len(layout)] = largest
	if hasInf {
		cum[len(layout)] = inf
	}
	all := true
	for _, f := range found {
		all = all && f
	}
	// Cumulative counts never decrease with the bound.
	for i := 1; i < len(cum); i++ {
		cum[i] = max(cum[i], cum[i-1])
	}
	out := make([]float64, len(cum))
	prev := 0.0
	for i, c := range cum {
		out[i] = c - prev
		prev = c
	}
	return out, all
}

// common returns the bounds of layout that h has (all of layout when h has
// no requests: an empty histogram says nothing about its buckets).
func common(layout []float64, h Histogram) []float64 {
	if h.empty() {
		return layout
	}
	hb := h.bounds()
	var out []float64
	for _, b := range layout {
		if _, ok := slices.BinarySearch(hb, b); ok {
			out = append(out, b)
		}
	}
	return out
}

// merge maps per-bucket counts of layout from onto the coarser layout to
// (a subset of from's bounds).
func merge(counts []float64, from, to []float64) []float64 {
	out := make([]float64, len(to)+1)
	j := 0
	for i, c := range counts {
		// Bucket i of from is (from[i-1], from[i]]; it belongs to the first
		// bucket of to whose bound is at least from[i].
		for i < len(from) && j < len(to) && to[j] < from[i] {
			j++
		}
		if i == len(from) {
			j = len(to)
		}
		out[j] += c
	}
	return out
}
