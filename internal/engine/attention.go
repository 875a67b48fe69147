package engine

// attnQueryBlock is the number of query rows whose scores are held at once.
const attnQueryBlock = 32

// attendHead computes one head of scaled dot-product attention for queries
// [q0, q1) of one sequence of n tokens. The sequence's projected rows are
// qkv[(off+t)·ld:], with head h's query at column h·d (already scaled by
// 1/√d), key at column a+h·d and value at column 2a+h·d. With causal, query t
// sees keys 0…t only. The output of query t goes to columns [h·d, (h+1)·d) of
// row t−q0 of out (row stride ldo).
func attendHead(kern *microKernel, qkv []float32, ld, off, n, a, h, d, q0, q1 int, causal bool, out []float32, ldo int) {
	base := qkv[off*ld:]
	kp := getScratch(packedLen(kern, d, n))
	keys := packBT(kern, kp.f, base[a+h*d:], ld, n, d)
	vp := getScratch(packedLen(kern, n, d))
	vals := packBN(kern, vp.f, base[2*a+h*d:], ld, n, d)
	qb := min(attnQueryBlock, q1-q0)
	sp := getScratch(qb * n)
	for t0 := q0; t0 < q1; t0 += qb {
		rows := min(qb, q1-t0)
		s := sp.f[:rows*n]
		sgemm(1, rows, base[t0*ld+h*d:], ld, keys, s, n, epilogue{})
		for r := range rows {
			row := s[r*n : (r+1)*n]
			if causal {
				softmax(row[:t0+r+1])
				clear(row[t0+r+1:])
			} else {
				softmax(row)
			}
		}
		sgemm(1, rows, s, n, vals, out[(t0-q0)*ldo+h*d:], ldo, epilogue{})
	}
	putScratch(sp)
	putScratch(vp)
	putScratch(kp)
}
