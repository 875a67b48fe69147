package engine

// attnQueryBlock is the number of query rows whose scores are held at once
// (96 rows × 197 keys = 74 KiB, in L2).
const attnQueryBlock = 96

// attendHead computes one head of scaled dot-product attention for queries
// [q0, q1) of one sequence of n tokens. The sequence's projected rows are
// qkv[(off+t)·ld:], with head h's query at column h·d (already scaled by
// 1/√d), key at column a+h·d and value at column 2a+h·d. With causal, query t
// sees keys 0…t only. The output of query t goes to columns [h·d, (h+1)·d) of
// row t−q0 of out (row stride ldo).
//
// The keys and values of the head are packed once as GEMM panels; for each
// block of queries the scores go through the GEMM kernel, a vectorised
// softmax and the GEMM kernel again, so that only one block of scores
// exists at a time.
//
// With bf16 (a BF16 model whose kernel has BF16 dot products, d even) the
// keys and values are packed in BF16 and both products run in BF16 with
// FP32 accumulation; the softmax stays FP32.
func attendHead(kern *microKernel, bf16 bool, qkv []float32, ld, off, n, a, h, d, q0, q1 int, causal bool, out []float32, ldo int) {
	if bf16 && kern.bf16 != nil && d%2 == 0 {
		attendHeadBF16(kern, qkv, ld, off, n, a, h, d, q0, q1, causal, out, ldo)
		return
	}
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
				kern.softmax(row[:t0+r+1])
				clear(row[t0+r+1:])
			} else {
				kern.softmax(row)
			}
		}
		sgemm(1, rows, s, n, vals, out[(t0-q0)*ldo+h*d:], ldo, epilogue{})
	}
	putScratch(sp)
	putScratch(vp)
	putScratch(kp)
}

// attendHeadBF16 is attendHead with both products in BF16: the queries are
// rounded into a BF16 block once, and the softmax writes the probabilities
// straight into the BF16 rows of the second product (vsoftmaxbf16), which
// gives the same numbers as rounding them afterwards.
func attendHeadBF16(kern *microKernel, qkv []float32, ld, off, n, a, h, d, q0, q1 int, causal bool, out []float32, ldo int) {
	base := qkv[off*ld:]
	mr := kern.mr
	kp, kb := bf16Scratch(packedLen(kern, d, n) + d)
	keys := packBTBF16(kern, kb[d:], kb[:d], base[a+h*d:], ld, n, d)
	vp, vb := bf16Scratch(packedLen(kern, n+1, d))
	zero := getScratch(d)
	clear(zero.f)
	vals := packBNBF16(kern, vb, zero.f, base[2*a+h*d:], ld, n, d)
	putScratch(zero)
	kps := padStride16(n) // row stride of the probabilities
	kq := padStride16(d)
	qb := min(attnQueryBlock, q1-q0)
	qbp := (qb + mr - 1) / mr * mr // rows padded for the kernel's strips
	qs, q16 := bf16Scratch(qbp * kq)
	ps, p16 := bf16Scratch(qbp * kps)
	sp := getScratch(qb * n)
	kPanels, _ := panelsOf(kern, n)
	vPanels, _ := panelsOf(kern, d)
	var ep epilogue
	for t0 := q0; t0 < q1; t0 += qb {
		rows := min(qb, q1-t0)
		rp := (rows + mr - 1) / mr * mr
		bf16Rows(q16[:rp*kq], kq, base[t0*ld+h*d:], ld, rows, d)
		s := sp.f[:rows*n]
		sgemmBlockBF16(q16, kq, keys, s, n, 0, rows, 0, kPanels, &ep)
		for r := range rows {
			row := s[r*n : (r+1)*n]
			pr := p16[r*kps : (r+1)*kps]
			m := n
			if causal {
				m = t0 + r + 1
			}
			kern.softmaxBF16(pr[:m], row[:m])
			clear(pr[m:])
		}
		clear(p16[rows*kps : rp*kps])
		sgemmBlockBF16(p16, kps, vals, out[(t0-q0)*ldo+h*d:], ldo, 0, rows, 0, vPanels, &ep)
	}
	putScratch(sp)
	putScratch(ps)
	putScratch(qs)
	putScratch(vp)
	putScratch(kp)
}
