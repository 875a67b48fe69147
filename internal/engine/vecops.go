package engine

// MatVec computes dst[i] = Σ_j m[i·cols+j]·x[j] for rows i in [0, len(dst)):
// the scores of a query x against a row-major matrix m of len(dst) rows.
// It is the kernel of exact nearest-neighbour search; len(m) must be at least
// len(dst)·len(x).
func MatVec(dst, m, x []float32) {
	cols := len(x)
	for i := range dst {
		row := m[i*cols : (i+1)*cols : (i+1)*cols]
		var s0, s1, s2, s3 float32
		j := 0
		for ; j+4 <= cols; j += 4 {
			s0 += row[j] * x[j]
			s1 += row[j+1] * x[j+1]
			s2 += row[j+2] * x[j+2]
			s3 += row[j+3] * x[j+3]
		}
		for ; j < cols; j++ {
			s0 += row[j] * x[j]
		}
		dst[i] = (s0 + s1) + (s2 + s3)
	}
}
