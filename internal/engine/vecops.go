package engine

// MatVec computes dst[i] = Σ_j m[i·cols+j]·x[j] for rows i in [0, len(dst)):
// the scores of a query x against a row-major matrix m of len(dst) rows.
// It is the kernel of exact nearest-neighbour search; len(m) must be at least
// len(dst)·len(x). On CPUs with AVX-512 it runs 16 lanes wide (and sums in a
// different order than the portable loop, which changes results by float32
// rounding only).
func MatVec(dst, m, x []float32) {
	cols := len(x)
	_ = m[:len(dst)*cols]
	for i := range dst {
		dst[i] = dot(x, m[i*cols:(i+1)*cols])
	}
}
