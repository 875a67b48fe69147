package engine

// Blocking of the GEMM (design §4.5): K is cut into blocks of at most
// kcMax steps, so that one packed B panel block (kc × 32 floats = 32 KiB)
// stays in L1 while the micro-kernel sweeps the row strips of a task; a
// task's rows (at most rowBlock, or 5/4 of it on one thread, see
// serialRows) × kc of A stay in L2. Tasks are (row block, column range)
// pairs handed to the worker pool.
const (
	kcMax    = 256
	rowBlock = 192
	// gemmSerialWork is the m·n·k below which a GEMM is not split.
	gemmSerialWork = 1 << 17
)

// serialRows returns the rows of each block of an m-row product on one
// thread: blocks of equal size (multiples of mr) of at most 5/4 rowBlock, so
// that a few rows more than a block do not cost another pass over all of B
// (200 rows of a 4-image ViT-40M/32 batch: one pass, not 192 + 8).
func serialRows(m, mr int) int {
	nb := max(1, (m+rowBlock*5/4-1)/(rowBlock*5/4))
	return ((m+nb-1)/nb + mr - 1) / mr * mr
}

// kcBlock returns the k-steps of each block of a product of rows rows over
// k steps, cut into blocks of at most kmax steps (blocks of equal size). A
// product of one strip (rows ≤ mr: a text, a batch-1 pooled row) is not cut:
// nothing reuses a B block from L1 there, and reading each panel whole
// makes B one sequential stream, which the hardware and the kernels'
// prefetches keep ahead of (with them, a 9-token Text-19M text, whose
// weights stream from DRAM: 6.1–7.3 → 5.3–5.4 ms at one thread;
// docs/performance.md, "Session 3").
func kcBlock(k, kmax, rows, mr int) int {
	if rows <= mr {
		return k
	}
	nkb := (k + kmax - 1) / kmax
	return (k + nkb - 1) / nkb
}

// packedB is the right-hand operand B [k×n] of a GEMM, packed for a
// micro-kernel: panels of nr columns, each k rows of nr values, the last
// panel as narrow as the kernel's lastWidths allow (columns past n are
// zero).
type packedB struct {
	k, n int
	kern *microKernel
	data []float32
	// bf16 holds the same matrix in BF16 pairs when the model runs in
	// reduced precision (see bf16.go), else nil.
	bf16 []uint16
}

// panels returns the number of panels of a k×n packed matrix and the width
// of its last one.
func panelsOf(kern *microKernel, n int) (count, last int) {
	nr := kern.nr
	count = (n + nr - 1) / nr
	last = nr
	if rem := n % nr; rem != 0 {
		for _, w := range kern.lastWidths {
			if rem <= w {
				return count, w
			}
		}
	}
	return count, last
}

// packedLen returns the number of floats of a packed k×n matrix.
func packedLen(kern *microKernel, k, n int) int {
	p, last := panelsOf(kern, n)
	if p == 0 {
		return 0
	}
	return ((p-1)*kern.nr + last) * k
}

// panel returns the offset and width of panel p.
func (b *packedB) panel(p int) (off, pw int) {
	count, last := panelsOf(b.kern, b.n)
	pw = b.kern.nr
	if p == count-1 {
		pw = last
	}
	return p * b.kern.nr * b.k, pw
}

// packBT packs B = Sᵀ, where S is n×k row-major with row stride ld (the
// layout of PyTorch Linear weights [out, in]), into dst.
func packBT(kern *microKernel, dst []float32, s []float32, ld, n, k int) *packedB {
	pb := &packedB{k: k, n: n, kern: kern, data: dst[:packedLen(kern, k, n)]}
	count, _ := panelsOf(kern, n)
	for p := range count {
		off, pw := pb.panel(p)
		panel := pb.data[off : off+pw*k]
		c0 := p * kern.nr
		w := min(pw, n-c0)
		for j := range w {
			row := s[(c0+j)*ld : (c0+j)*ld+k]
			for kk, v := range row {
				panel[kk*pw+j] = v
			}
		}
		if w < pw {
			for kk := range k {
				clear(panel[kk*pw+w : kk*pw+pw])
			}
		}
	}
	return pb
}

// packBN packs B = S, where S is k×n row-major with row stride ld.
func packBN(kern *microKernel, dst []float32, s []float32, ld, k, n int) *packedB {
	pb := &packedB{k: k, n: n, kern: kern, data: dst[:packedLen(kern, k, n)]}
	count, _ := panelsOf(kern, n)
	for p := range count {
		off, pw := pb.panel(p)
		panel := pb.data[off : off+pw*k]
		c0 := p * kern.nr
		w := min(pw, n-c0)
		for kk := range k {
			d := panel[kk*pw : kk*pw+pw]
			copy(d, s[kk*ld+c0:kk*ld+c0+w])
			clear(d[w:])
		}
	}
	return pb
}

// epilogue says what happens to a GEMM result C = A·B.
type epilogue struct {
	acc  bool      // C += A·B instead of C = A·B
	bias []float32 // then C[i][j] += bias[j], if not nil
	act  activation
	// out16, if not nil, also receives the result rounded to BF16 (row
	// stride ld16), while it is in cache; BF16 products only.
	out16 []uint16
	ld16  int
}

// sgemm computes C = A·B (or C += A·B), then applies the epilogue, splitting
// the work over up to threads goroutines. A is m×b.k row-major with row
// stride lda, C is m×b.n with row stride ldc.
func sgemm(threads, m int, a []float32, lda int, b *packedB, c []float32, ldc int, ep epilogue) {
	n := b.n
	if m <= 0 || n <= 0 {
		return
	}
	if b.bf16 != nil {
		sgemmBF16(threads, m, a, lda, b, c, ldc, ep)
		return
	}
	forTiles(threads, m, b, func(i0, i1, p0, p1 int) {
		sgemmBlock(a, lda, b, c, ldc, i0, i1, p0, p1, &ep)
	})
}

// gemmRows returns the rows of each row block of an m-row product with B
// [k×n] at the given threads, and whether the product is split over
// threads at all (below gemmSerialWork, or on one thread, it runs serially
// in serialRows blocks).
func gemmRows(threads, m, n, k, mr int) (rows int, parallel bool) {
	if threads <= 1 || m*n*max(k, 1) < gemmSerialWork {
		return serialRows(m, mr), false
	}
	// Row blocks of about equal size, multiples of mr; when there are
	// several, at least four per thread, so that dynamic claiming balances
	// the threads' loads.
	mb := (m + rowBlock - 1) / rowBlock
	if mb > 1 {
		mb = min(max(mb, 4*threads), (m+mr-1)/mr)
	}
	return ((m+mb-1)/mb + mr - 1) / mr * mr, true
}

// forTiles calls block for every tile (rows [i0, i1), panels [p0, p1)) of
// an m-row product with b, serially or as tasks of the worker pool; every
// entry of C belongs to exactly one tile. sgemm and sgemmBF16A share it, so
// FP32 and BF16 products are cut the same way.
func forTiles(threads, m int, b *packedB, block func(i0, i1, p0, p1 int)) {
	panels, _ := panelsOf(b.kern, b.n)
	rows, parallel := gemmRows(threads, m, b.n, b.k, b.kern.mr)
	if !parallel {
		for i0 := 0; i0 < m; i0 += rows {
			block(i0, min(i0+rows, m), 0, panels)
		}
		return
	}
	mb := (m + rows - 1) / rows
	// Column ranges: split only as far as needed to give every thread
	// about two tasks, or columnTasks of one row block.
	nt := columnTasks(threads, mb, panels)
	pt := (panels + nt - 1) / nt
	nt = (panels + pt - 1) / pt
	parallelFor(threads, mb*nt, func(t int) {
		i0 := (t / nt) * rows
		p0 := (t % nt) * pt
		block(i0, min(i0+rows, m), p0, min(p0+pt, panels))
	})
}

// smallTasksPerThread is the number of column tasks per thread of a product
// whose rows form one block (a batch-1 tower at several threads): tasks of
// tens of microseconds, so that the thread that finishes first waits at most
// that long for the other (with two tasks per thread it waited half a task,
// 100 µs and more, on average); A is read once per task, from L2.
const smallTasksPerThread = 8

// columnTasks returns the number of column ranges into which a product of
// mb row blocks and the given panels is split.
func columnTasks(threads, mb, panels int) int {
	if mb == 1 {
		return min(panels, smallTasksPerThread*threads)
	}
	return min(panels, max(1, (2*threads+mb-1)/mb))
}

// sgemmBlock computes rows [i0, i1) and column panels [p0, p1) of C on the
// calling goroutine.
func sgemmBlock(a []float32, lda int, b *packedB, c []float32, ldc int, i0, i1, p0, p1 int, ep *epilogue) {
	sgemmBlockK(a, lda, b, c, ldc, i0, i1, p0, p1, 0, b.k, ep)
}

// sgemmBlockK is sgemmBlock over the rows [k0, k1) of B (columns [k0, k1)
// of A): one part of a product split in K, whose parts are summed by the
// caller. The epilogue applies to the part as to a whole product.
func sgemmBlockK(a []float32, lda int, b *packedB, c []float32, ldc int, i0, i1, p0, p1, k0, k1 int, ep *epilogue) {
	kern := b.kern
	mr, nr := kern.mr, kern.nr
	n, k := b.n, k1-k0
	j0, j1 := p0*nr, min(p1*nr, n)
	if k == 0 {
		for i := i0; i < i1; i++ {
			row := c[i*ldc+j0 : i*ldc+j1]
			if !ep.acc {
				clear(row)
			}
			if ep.bias != nil {
				for j, v := range ep.bias[j0:j1] {
					row[j] += v
				}
			}
		}
	} else {
		full := (i1 - i0) / mr
		h := (i1 - i0) - full*mr // rows of the last, partial strip
		it := i0 + full*mr
		fuseReLU := ep.act == actReLU && kern.relu
		kcb := kcBlock(k, kcMax, i1-i0, mr)
		var ta *scratch // the partial strip's rows of A, zero-padded to mr
		if h > 0 {
			ta = getScratch(mr * kcb)
		}
		var tile []float32 // the tile buffer of partial strips and panels
		if h > 0 || !kern.masked {
			ts := getScratch(maxTile + nr)
			defer putScratch(ts)
			tile = ts.f
		}
		for pc := k0; pc < k1; pc += kcb {
			kc := min(kcb, k1-pc)
			flags := 0
			if pc > k0 || ep.acc {
				flags |= gemmLoad
			}
			var bias []float32
			if pc+kc == k1 && ep.bias != nil {
				flags |= gemmBias
				bias = ep.bias
			}
			if pc+kc == k1 && fuseReLU {
				flags |= gemmReLU
			}
			if h > 0 {
				for r := range mr {
					d := ta.f[r*kc : (r+1)*kc]
					if r < h {
						copy(d, a[(it+r)*lda+pc:(it+r)*lda+pc+kc])
					} else {
						clear(d)
					}
				}
			}
			for p := p0; p < p1; p++ {
				off, pw := b.panel(p)
				bp := b.data[off+pc*pw : off+(pc+kc)*pw]
				col := p * nr
				w := min(pw, n-col)
				var pb []float32
				if bias != nil {
					pb = bias[col : col+w]
				}
				if full > 0 {
					if kern.masked || w == pw {
						kern.fn(kc, a[i0*lda+pc:], lda, bp, pw, c[i0*ldc+col:], ldc, full, pb, flags, w)
					} else {
						for s := range full {
							r0 := i0 + s*mr
							tileCall(kern, kc, a[r0*lda+pc:], lda, bp, pw, c, ldc, r0, col, mr, w, pb, flags, tile)
						}
					}
				}
				if h > 0 {
					tileCall(kern, kc, ta.f, kc, bp, pw, c, ldc, it, col, h, w, pb, flags, tile)
				}
			}
		}
		putScratch(ta)
	}
	if ep.act != actNone && !(ep.act == actReLU && kern.relu && k > 0) {
		for i := i0; i < i1; i++ {
			kern.activate(ep.act, c[i*ldc+j0:i*ldc+j1])
		}
	}
	if ep.out16 != nil {
		for i := i0; i < i1; i++ {
			bf16Convert(ep.out16[i*ep.ld16+j0:i*ep.ld16+j1], c[i*ldc+j0:i*ldc+j1])
		}
	}
}

// tileCall runs one strip of the kernel (or, for h < mr rows, of its
// smallest tail variant that covers them) into the tile buffer (mr·pw
// values and then pw for the bias) and copies rows [r0, r0+h) × columns
// [col, col+w) of the result to C.
func tileCall(kern *microKernel, kc int, a []float32, lda int, bp []float32, pw int, c []float32, ldc, r0, col, h, w int, bias []float32, flags int, buf []float32) {
	mr := kern.mr
	fn, rows := kern.tailFor(h, pw)
	t := buf[:rows*pw]
	if flags&gemmLoad != 0 {
		for r := range h {
			copy(t[r*pw:r*pw+w], c[(r0+r)*ldc+col:(r0+r)*ldc+col+w])
		}
	}
	if flags&gemmBias != 0 && w < pw {
		tb := buf[mr*pw : mr*pw+pw]
		copy(tb, bias[:w])
		bias = tb
	}
	fn(kc, a, lda, bp, pw, t, pw, 1, bias, flags, pw)
	for r := range h {
		copy(c[(r0+r)*ldc+col:(r0+r)*ldc+col+w], t[r*pw:r*pw+w])
	}
}
