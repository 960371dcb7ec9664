package latency

// fenwick is a binary indexed tree of non-negative counts per bucket.
type fenwick struct {
	t []float64 // 1-based
}

func newFenwick(v []float64) *fenwick {
	f := &fenwick{t: make([]float64, len(v)+1)}
	for i, x := range v {
		f.add(i, x)
	}
	return f
}

// add adds d to bucket i.
func (f *fenwick) add(i int, d float64) {
	for i++; i < len(f.t); i += i & -i {
		f.t[i] += d
	}
}

// prefix returns the sum of buckets [0, i).
func (f *fenwick) prefix(i int) float64 {
	s := 0.0
	for ; i > 0; i -= i & -i {
		s += f.t[i]
	}
	return s
}

// find returns the bucket i with prefix(i) <= u < prefix(i+1), for u in
// [0, total): the bucket of the u-th request. Rounding may put u at the
// total; find then returns the last bucket with a positive count.
func (f *fenwick) find(u float64) int {
	n := len(f.t) - 1
	step := 1
	for step*2 <= n {
		step *= 2
	}
	pos := 0 // prefix(pos) <= u
	for ; step > 0; step /= 2 {
		if next := pos + step; next <= n && f.t[next] <= u {
			pos = next
			u -= f.t[next]
		}
	}
	// pos is the number of buckets whose cumulative count is <= u.
	if pos >= n {
		for pos = n - 1; pos > 0 && f.prefix(pos+1)-f.prefix(pos) <= 0; pos-- {
		}
	}
	return pos
}
