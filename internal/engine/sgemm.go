package engine

// Blocking of the GEMM: K is processed in blocks of kcBlock (a packed A strip
// and a B panel of one block stay in L1), rows in blocks of at most mcBlock
// (the packed A block stays in L2); a (row block, column range) pair is one
// task for the worker pool.
const (
	kcBlock = 256
	mcBlock = 96
	// gemmSerialWork is the m·n·k below which a GEMM is not split.
	gemmSerialWork = 1 << 18
)

// packedB is the right-hand operand B [k×n] of a GEMM, packed for a
// micro-kernel: ceil(n/nr) panels of nr columns, each panel k rows of nr
// values (columns past n are zero).
type packedB struct {
	k, n int
	kern *microKernel
	data []float32
}

// packedLen returns the number of floats of a packed k×n matrix.
func packedLen(kern *microKernel, k, n int) int {
	return (n + kern.nr - 1) / kern.nr * kern.nr * k
}

// packBT packs B = Sᵀ, where S is n×k row-major with row stride ld (the
// layout of PyTorch Linear weights [out, in]), into dst.
func packBT(kern *microKernel, dst []float32, s []float32, ld, n, k int) *packedB {
	nr := kern.nr
	dst = dst[:packedLen(kern, k, n)]
	for p := 0; p*nr < n; p++ {
		panel := dst[p*nr*k : (p+1)*nr*k]
		for j := range nr {
			col := p*nr + j
			if col >= n {
				for kk := range k {
					panel[kk*nr+j] = 0
				}
				continue
			}
			row := s[col*ld : col*ld+k]
			for kk, v := range row {
				panel[kk*nr+j] = v
			}
		}
	}
	return &packedB{k: k, n: n, kern: kern, data: dst}
}

// packBN packs B = S, where S is k×n row-major with row stride ld.
func packBN(kern *microKernel, dst []float32, s []float32, ld, k, n int) *packedB {
	nr := kern.nr
	dst = dst[:packedLen(kern, k, n)]
	for p := 0; p*nr < n; p++ {
		panel := dst[p*nr*k : (p+1)*nr*k]
		c0 := p * nr
		w := min(nr, n-c0)
		for kk := range k {
			d := panel[kk*nr : kk*nr+nr]
			copy(d, s[kk*ld+c0:kk*ld+c0+w])
			clear(d[w:])
		}
	}
	return &packedB{k: k, n: n, kern: kern, data: dst}
}

// epilogue says what happens to a GEMM result C = A·B.
type epilogue struct {
	acc  bool      // C += A·B instead of C = A·B
	bias []float32 // then C[i][j] += bias[j], if not nil
	act  activation
}

// sgemm computes C = A·B (or C += A·B), then applies the epilogue, splitting
// the work over up to threads goroutines. A is m×b.k row-major with row
// stride lda, C is m×b.n with row stride ldc.
func sgemm(threads, m int, a []float32, lda int, b *packedB, c []float32, ldc int, ep epilogue) {
	n, k := b.n, b.k
	if m <= 0 || n <= 0 {
		return
	}
	mr, nr := b.kern.mr, b.kern.nr
	panels := (n + nr - 1) / nr
	if threads <= 1 || m*n*max(k, 1) < gemmSerialWork {
		sgemmBlock(a, lda, b, c, ldc, 0, m, 0, panels, &ep)
		return
	}
	// Row blocks of about equal size, multiples of mr.
	mb := (m + mcBlock - 1) / mcBlock
	rows := ((m+mb-1)/mb + mr - 1) / mr * mr
	mb = (m + rows - 1) / rows
	// Column tiles: as wide as possible, since each task packs its rows of
	// A once for all its columns; split only as far as needed to give every
	// thread about two tasks.
	nt := min(panels, max(1, (2*threads+mb-1)/mb))
	pt := (panels + nt - 1) / nt
	nt = (panels + pt - 1) / pt
	parallelFor(threads, mb*nt, func(t int) {
		i0 := (t / nt) * rows
		p0 := (t % nt) * pt
		sgemmBlock(a, lda, b, c, ldc, i0, min(i0+rows, m), p0, min(p0+pt, panels), &ep)
	})
}

// sgemmBlock computes rows [i0, i1) and column panels [p0, p1) of C on the
// calling goroutine.
func sgemmBlock(a []float32, lda int, b *packedB, c []float32, ldc int, i0, i1, p0, p1 int, ep *epilogue) {
	kern := b.kern
	mr, nr := kern.mr, kern.nr
	n, k := b.n, b.k
	j0, j1 := p0*nr, min(p1*nr, n)
	if !ep.acc {
		for i := i0; i < i1; i++ {
			clear(c[i*ldc+j0 : i*ldc+j1])
		}
	}
	if k > 0 {
		strips := (i1 - i0 + mr - 1) / mr
		ap := getScratch(strips * mr * min(k, kcBlock))
		var edge [maxTile]float32
		for pc := 0; pc < k; pc += kcBlock {
			kc := min(kcBlock, k-pc)
			packA(ap.f, a, lda, i0, i1, pc, kc, mr)
			for p := p0; p < p1; p++ {
				bp := b.data[p*nr*k+pc*nr : p*nr*k+(pc+kc)*nr]
				col := p * nr
				w := min(nr, n-col)
				for s := range strips {
					i := i0 + s*mr
					as := ap.f[s*mr*kc : (s+1)*mr*kc]
					h := min(mr, i1-i)
					if h == mr && w == nr {
						kern.fn(kc, as, bp, c[i*ldc+col:], ldc)
						continue
					}
					t := edge[:mr*nr]
					clear(t)
					kern.fn(kc, as, bp, t, nr)
					for r := range h {
						dst := c[(i+r)*ldc+col : (i+r)*ldc+col+w]
						for j, v := range t[r*nr : r*nr+w] {
							dst[j] += v
						}
					}
				}
			}
		}
		putScratch(ap)
	}
	if ep.bias != nil || ep.act != actNone {
		for i := i0; i < i1; i++ {
			row := c[i*ldc+j0 : i*ldc+j1]
			if ep.bias != nil {
				for j, v := range ep.bias[j0:j1] {
					row[j] += v
				}
			}
			ep.act.apply(row)
		}
	}
}

// packA packs rows [i0, i1) and columns [pc, pc+kc) of A into strips of mr
// rows, each kc steps of mr values; rows past i1 are zero.
func packA(dst, a []float32, lda, i0, i1, pc, kc, mr int) {
	var rows [maxMR][]float32
	for s, i := 0, i0; i < i1; s, i = s+1, i+mr {
		strip := dst[s*mr*kc : (s+1)*mr*kc]
		h := min(mr, i1-i)
		for r := range h {
			rows[r] = a[(i+r)*lda+pc : (i+r)*lda+pc+kc]
		}
		for kk := range kc {
			d := strip[kk*mr : kk*mr+mr]
			for r, row := range rows[:h] {
				d[r] = row[kk]
			}
			clear(d[h:])
		}
	}
}
