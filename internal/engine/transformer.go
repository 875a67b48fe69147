package engine

import "context"

// linear is a Linear layer y = x·Wᵀ + b with W packed for the GEMM.
type linear struct {
	w    *packedB
	bias []float32 // nil: no bias
}

// block is one pre-norm residual attention block with its own dimensions.
type block struct {
	heads      int // 0: no attention sub-layer
	ln1g, ln1b []float32
	qkv        linear // width → 3·heads·headDim, query part pre-scaled by 1/√headDim
	out        linear // heads·headDim → width
	hasMLP     bool
	mlpWidth   int // 0 with hasMLP: the MLP adds projBias
	ln2g, ln2b []float32
	fc         linear // width → mlpWidth, followed by the activation
	proj       linear // mlpWidth → width
}

// transformer is a stack of blocks over rows of width values.
type transformer struct {
	kern           *microKernel
	bf16           bool // attention products in BF16 (a BF16 model)
	width, headDim int
	act            activation
	blocks         []block
}

// seq is one sequence of a batch: rows [off, off+n) of the activations, of
// which only row off+pool is needed after the last block.
type seq struct {
	off, n, pool int
}

// forward runs the blocks over x (rows×width, modified in place), where the
// rows form the sequences seqs, and writes the output row of each sequence's
// pooled token to xp (len(seqs)×width). The last block is computed for the
// pooled rows only. With causal, token t attends to tokens 0…t of its
// sequence.
func (t *transformer) forward(ctx context.Context, threads int, x []float32, seqs []seq, causal bool, xp []float32) error {
	rows := 0
	for _, s := range seqs {
		rows = max(rows, s.off+s.n)
	}
	for i, b := range t.blocks {
		if err := ctx.Err(); err != nil {
			return err
		}
		if i < len(t.blocks)-1 {
			t.fullBlock(threads, &b, x, rows, seqs, causal)
		} else {
			t.pooledBlock(threads, &b, x, rows, seqs, causal, xp)
		}
	}
	if len(t.blocks) == 0 {
		t.gather(xp, x, seqs)
	}
	return nil
}

// macsPerRow returns the multiply-accumulates of the blocks' matrix
// products per row (the attention's score products, which grow with the
// sequence, left out).
func (t *transformer) macsPerRow() int {
	n := 0
	for _, b := range t.blocks {
		a := b.heads * t.headDim
		n += t.width*3*a + a*t.width + 2*t.width*b.mlpWidth
	}
	return n
}

func (t *transformer) gather(xp, x []float32, seqs []seq) {
	w := t.width
	for i, s := range seqs {
		r := s.off + s.pool
		copy(xp[i*w:(i+1)*w], x[r*w:(r+1)*w])
	}
}

// qkvProject returns LN₁(x)·W_qkv + b for all rows, with row stride
// padStride(3·heads·headDim).
func (t *transformer) qkvProject(threads int, b *block, x []float32, rows int) *scratch {
	w := t.width
	a := b.heads * t.headDim
	if b.qkv.w.bf16 != nil { // BF16 weights: normalise straight into BF16 rows
		hs, h16, kp := t.layerNormBF16(threads, x, rows, b.ln1g, b.ln1b)
		ldq := padStride(3 * a)
		qkv := getScratch(rows * ldq)
		sgemmBF16A(threads, rows, h16, kp, b.qkv.w, qkv.f, ldq, epilogue{bias: b.qkv.bias})
		putScratch(hs)
		return qkv
	}
	ldh := padStride(w)
	h := getScratch(rows * ldh)
	t.layerNormStrided(threads, h.f, ldh, x, rows, b.ln1g, b.ln1b)
	ldq := padStride(3 * a)
	qkv := getScratch(rows * ldq)
	sgemm(threads, rows, h.f, ldh, b.qkv.w, qkv.f, ldq, epilogue{bias: b.qkv.bias})
	putScratch(h)
	return qkv
}

// fuseMaxRows is the most rows for which fusedAttention runs the QKV
// product and the attention as one parallel loop: one row block of the
// GEMM (a ViT-40M/32 image, a few texts), whose product is too short to be
// worth its own synchronisation. With more rows (a ViT-8M/16 image: 197)
// the separate loops, split into row blocks, balance the threads better
// than one task per head (measured: 7 % slower fused at two threads).
const fuseMaxRows = rowBlock

// splitKRows is the most rows (a text at batch 1, the pooled rows of the
// last block) for which a block's output projection and MLP are split in K
// (outPart, mlpSplit): each head's or hidden chunk's part of the product is
// summed afterwards, so that the projection joins the attention loop and the
// two MLP products form one loop — two parallel loops per block instead of
// four, where each product is only microseconds of arithmetic over a weight
// streamed from memory. Applied at any thread count, so that the results do
// not depend on it.
const splitKRows = 32

// splitK enables the split products (tests turn it off to compare).
var splitK = true

// useSplitK reports whether block b's output projection (out) or MLP
// (!out) runs split in K over rows rows.
func (t *transformer) useSplitK(b *block, rows int, out bool) bool {
	if !splitK || rows > splitKRows {
		return false
	}
	if out {
		return b.heads > 0 && (b.out.w.bf16 == nil || t.headDim%2 == 0)
	}
	return b.mlpWidth > 0 && (b.fc.w.bf16 == nil) == (b.proj.w.bf16 == nil)
}

// mlpChunks is the number of chunks of hidden units of a split MLP.
const mlpChunks = 8

// outParts holds the parts of a split output projection (outPart) and,
// for BF16 weights, the attention output rounded to BF16 rows (bf16Operand),
// each head's columns written by the task that computes its part.
type outParts struct {
	f      []float32
	ps, as *scratch
	a16    []uint16
	kp     int
}

// newOutParts returns the buffers of a split output projection of rows
// rows of block b, nil where it does not run split.
func (t *transformer) newOutParts(b *block, rows int) *outParts {
	if !t.useSplitK(b, rows, true) {
		return nil
	}
	op := &outParts{ps: getScratch(b.heads * rows * t.width)}
	op.f = op.ps.f
	if b.out.w.bf16 != nil {
		op.as, op.a16, op.kp = t.bf16Operand(rows, b.heads*t.headDim)
	}
	return op
}

func (op *outParts) free() {
	if op != nil {
		putScratch(op.ps)
		putScratch(op.as)
	}
}

// outPart computes head h's part of the output projection of rows rows of
// the attention output o (row stride ldo): columns [h·d, (h+1)·d) of o times
// the same rows of W_out, into its part (rows×width).
func (t *transformer) outPart(b *block, op *outParts, o []float32, ldo, rows, h int) {
	d, w := t.headDim, t.width
	part := op.f[h*rows*w : (h+1)*rows*w]
	panels, _ := panelsOf(b.out.w.kern, w)
	if b.out.w.bf16 == nil {
		sgemmBlockK(o, ldo, b.out.w, part, w, 0, rows, 0, panels, h*d, (h+1)*d, &epilogue{})
		return
	}
	for r := range rows {
		bf16Convert(op.a16[r*op.kp+h*d:r*op.kp+(h+1)*d], o[r*ldo+h*d:r*ldo+(h+1)*d])
	}
	// d is even for every head dimension the zoo uses (64); an odd one
	// would share a k pair between two heads.
	sgemmBlockBF16K(op.a16, op.kp, b.out.w, part, w, 0, rows, 0, panels, h*d/2, (h+1)*d/2, &epilogue{})
}

// addParts adds the parts (parts×rows×width, in order) and then bias to
// the rows of dst.
func (t *transformer) addParts(dst []float32, rows int, parts []float32, n int, bias []float32) {
	w := t.width
	for r := range rows {
		row := dst[r*w : (r+1)*w]
		for j := range n {
			addTo(row, parts[(j*rows+r)*w:(j*rows+r+1)*w])
		}
		if bias != nil {
			addTo(row, bias)
		}
	}
}

// fuseAttention enables fusedAttention (tests turn it off to compare).
var fuseAttention = true

// splitQueries enables splitting one head's queries over several attention
// tasks (fullBlock; tests turn it off to compare).
var splitQueries = true

// fusedAttention computes the attention sub-layer's heads into o as
// fullBlock (pooled false: every row, row stride ldo) or pooledBlock (pooled
// true: the pooled row of each sequence, row stride ldo) do, but as one
// parallel loop over the heads, each task computing its head's query, key
// and value columns of LN₁(x)·W_qkv + b and then attending with them; it
// reports false, doing nothing, where that does not apply (one thread, fewer
// than two heads per thread, many rows, heads not aligned to the kernel's
// panels). Every value is computed as the separate product and attention
// loops compute it: the same row blocks, panels and sums.
//
// With parts non-nil, each task also computes its head's part of the output
// projection of the rows it attended (outPart).
func (t *transformer) fusedAttention(threads int, b *block, x []float32, rows int, seqs []seq, causal, pooled bool, o []float32, ldo int, parts *outParts) bool {
	d := t.headDim
	a := b.heads * d
	kern := b.qkv.w.kern
	nr, mr := kern.nr, kern.mr
	if !fuseAttention || threads <= 1 || b.heads < 2*threads || rows > fuseMaxRows || d%nr != 0 || kern != t.kern {
		return false
	}
	w := t.width
	n, k := 3*a, w
	// The row blocks sgemm (and sgemmBF16A) would use for this product.
	rb, _ := gemmRows(threads, rows, n, k, mr)
	ldq := padStride(n)
	qkv := getScratch(rows * ldq)
	ep := epilogue{bias: b.qkv.bias}
	var product func(i0, i1, p0, p1 int)
	var hs *scratch
	if b.qkv.w.bf16 != nil {
		s, h16, kp := t.layerNormBF16(threads, x, rows, b.ln1g, b.ln1b)
		hs = s
		product = func(i0, i1, p0, p1 int) { sgemmBlockBF16(h16, kp, b.qkv.w, qkv.f, ldq, i0, i1, p0, p1, &ep) }
	} else {
		ldh := padStride(w)
		hs = getScratch(rows * ldh)
		t.layerNormStrided(threads, hs.f, ldh, x, rows, b.ln1g, b.ln1b)
		h := hs.f
		product = func(i0, i1, p0, p1 int) { sgemmBlock(h, ldh, b.qkv.w, qkv.f, ldq, i0, i1, p0, p1, &ep) }
	}
	pp := d / nr // panels per head and part
	parallelFor(threads, b.heads, func(h int) {
		for part := range 3 {
			p0 := (part*a + h*d) / nr
			for i0 := 0; i0 < rows; i0 += rb {
				product(i0, min(i0+rb, rows), p0, p0+pp)
			}
		}
		for i, s := range seqs {
			if pooled {
				attendHead(kern, t.bf16, qkv.f, ldq, s.off, s.n, a, h, d, s.pool, s.pool+1, causal, o[i*ldo:], ldo)
			} else {
				attendHead(kern, t.bf16, qkv.f, ldq, s.off, s.n, a, h, d, 0, s.n, causal, o[s.off*ldo:], ldo)
			}
		}
		if parts != nil {
			prows := rows
			if pooled {
				prows = len(seqs)
			}
			t.outPart(b, parts, o, ldo, prows, h)
		}
	})
	putScratch(hs)
	putScratch(qkv)
	return true
}

func (t *transformer) fullBlock(threads int, b *block, x []float32, rows int, seqs []seq, causal bool) {
	w, d := t.width, t.headDim
	if b.heads > 0 {
		a := b.heads * d
		ldo := padStride(a)
		o := getScratch(rows * ldo)
		parts := t.newOutParts(b, rows)
		if !t.fusedAttention(threads, b, x, rows, seqs, causal, false, o.f, ldo, parts) {
			qkv := t.qkvProject(threads, b, x, rows)
			ldq := padStride(3 * a)
			kern := t.kern
			// The queries of each (sequence, head) in qs blocks when there
			// are fewer than 4 such pairs per thread (a ViT-8M/16 image: 4
			// heads), so that the tasks balance; each block packs the
			// head's keys and values again, and computes what one task
			// would (measured at two threads, ViT-8M/16 batch 1: medians
			// 3 % faster in FP32, 6 % in BF16).
			qs := 1
			if pairs := len(seqs) * b.heads; splitQueries && pairs < 4*threads {
				qs = min((4*threads+pairs-1)/pairs, max(1, seqs[0].n/attnQueryBlock))
			}
			parallelFor(threads, len(seqs)*b.heads*qs, func(i int) {
				j := i / qs
				s := seqs[j/b.heads]
				h := j % b.heads
				q0, q1 := (i%qs)*s.n/qs, (i%qs+1)*s.n/qs
				attendHead(kern, t.bf16, qkv.f, ldq, s.off, s.n, a, h, d, q0, q1, causal, o.f[(s.off+q0)*ldo:], ldo)
			})
			putScratch(qkv)
			if parts != nil {
				parallelFor(threads, b.heads, func(h int) {
					t.outPart(b, parts, o.f, ldo, rows, h)
				})
			}
		}
		if parts != nil {
			t.addParts(x, rows, parts.f, b.heads, b.out.bias)
			parts.free()
		} else if t.rowTail(threads, b, x, rows, o.f, ldo) {
			putScratch(o)
			return
		} else {
			sgemm(threads, rows, o.f, ldo, b.out.w, x, w, epilogue{acc: true, bias: b.out.bias})
		}
		putScratch(o)
	}
	t.mlp(threads, b, x, rows)
}

// rowTail runs the rest of a block after the attention — the output
// projection, LN₂ and the MLP, which work row by row — as one parallel loop
// over the row blocks that the three products would each be split into, a
// task taking its rows through all of them; it reports false, doing
// nothing, where the products would not be split by rows alone (one row
// block, one thread, column tasks) or the block lacks a part. Every value
// is computed as the separate loops compute it (the same row blocks,
// panels and sums); only the synchronisation between them goes.
func (t *transformer) rowTail(threads int, b *block, x []float32, rows int, o []float32, ldo int) bool {
	if !rowTails || threads <= 1 || b.heads == 0 || !b.hasMLP || b.mlpWidth == 0 {
		return false
	}
	bf := b.out.w.bf16 != nil
	if (b.fc.w.bf16 != nil) != bf || (b.proj.w.bf16 != nil) != bf {
		return false
	}
	w, m, a := t.width, b.mlpWidth, b.heads*t.headDim
	if wb := (w*a + 2*w*m) * 4; (bf && wb/2 > rowTailBytes) || (!bf && wb > rowTailBytes) {
		return false
	}
	mr := t.kern.mr
	rb, parallel := gemmRows(threads, rows, w, a, mr)
	mb := (rows + rb - 1) / rb
	if !parallel || mb < 2 {
		return false
	}
	// The three products must be cut into the same row blocks and no
	// columns, as sgemm would cut each.
	for _, p := range []struct {
		pb   *packedB
		n, k int
	}{{b.out.w, w, a}, {b.fc.w, m, w}, {b.proj.w, w, m}} {
		r, par := gemmRows(threads, rows, p.n, p.k, mr)
		panels, _ := panelsOf(p.pb.kern, p.n)
		if r != rb || !par || columnTasks(threads, mb, panels) != 1 {
			return false
		}
	}
	outP, _ := panelsOf(b.out.w.kern, w)
	fcP, _ := panelsOf(b.fc.w.kern, m)
	projP, _ := panelsOf(b.proj.w.kern, w)
	ldf := padStride(m)
	f := getScratch(rows * ldf)
	defer putScratch(f)
	if !bf {
		ldh := padStride(w)
		h := getScratch(rows * ldh)
		defer putScratch(h)
		parallelFor(threads, mb, func(i int) {
			i0, i1 := i*rb, min((i+1)*rb, rows)
			sgemmBlock(o, ldo, b.out.w, x, w, i0, i1, 0, outP, &epilogue{acc: true, bias: b.out.bias})
			for r := i0; r < i1; r++ {
				t.kern.layerNorm(h.f[r*ldh:r*ldh+w], x[r*w:(r+1)*w], 1, w, b.ln2g, b.ln2b)
			}
			sgemmBlock(h.f, ldh, b.fc.w, f.f, ldf, i0, i1, 0, fcP, &epilogue{bias: b.fc.bias, act: t.act})
			sgemmBlock(f.f, ldf, b.proj.w, x, w, i0, i1, 0, projP, &epilogue{acc: true, bias: b.proj.bias})
		})
		return true
	}
	// BF16: the A operands rounded row by row as sgemmBF16, layerNormBF16
	// and the MLP's epilogue round them.
	as, a16, kpa := t.bf16Operand(rows, a)
	defer putScratch(as)
	hs, h16, kph := t.bf16Operand(rows, w)
	defer putScratch(hs)
	fs, f16, kpm := t.bf16Operand(rows, m)
	defer putScratch(fs)
	parallelFor(threads, mb, func(i int) {
		i0, i1 := i*rb, min((i+1)*rb, rows)
		bf16Rows(a16[i0*kpa:i1*kpa], kpa, o[i0*ldo:], ldo, i1-i0, a)
		sgemmBlockBF16(a16, kpa, b.out.w, x, w, i0, i1, 0, outP, &epilogue{acc: true, bias: b.out.bias})
		t.layerNormRowsBF16(h16, kph, x, i0, i1, b.ln2g, b.ln2b)
		sgemmBlockBF16(h16, kph, b.fc.w, f.f, ldf, i0, i1, 0, fcP, &epilogue{bias: b.fc.bias, act: t.act, out16: f16, ld16: kpm})
		sgemmBlockBF16(f16, kpm, b.proj.w, x, w, i0, i1, 0, projP, &epilogue{acc: true, bias: b.proj.bias})
	})
	return true
}

// rowTails enables rowTail (tests turn it off to compare).
var rowTails = true

// rowTailBytes bounds the weights of the three products that rowTail runs
// per row block: each task reads all of them, which pays while they stay
// near the core's L2 (1 MiB) between tasks. Measured on ViT-8M/16 images
// at two threads (paired runs): its BF16 block (1.2 MiB) 13.2 → 13.0 ms,
// and 14.8 → 13.7 ms after a 300 ms pause; its FP32 block (2.3 MiB) 20.2 →
// 21.8 ms, 22.6 → 21.9 ms after a pause.
const rowTailBytes = 3 << 19

func (t *transformer) pooledBlock(threads int, b *block, x []float32, rows int, seqs []seq, causal bool, xp []float32) {
	w, d := t.width, t.headDim
	n := len(seqs)
	if b.heads > 0 {
		a := b.heads * d
		o := getScratch(n * a)
		parts := t.newOutParts(b, n)
		if !t.fusedAttention(threads, b, x, rows, seqs, causal, true, o.f, a, parts) {
			qkv := t.qkvProject(threads, b, x, rows)
			ldq := padStride(3 * a)
			kern := t.kern
			parallelFor(threads, n*b.heads, func(i int) {
				s := seqs[i/b.heads]
				h := i % b.heads
				attendHead(kern, t.bf16, qkv.f, ldq, s.off, s.n, a, h, d, s.pool, s.pool+1, causal, o.f[(i/b.heads)*a:], a)
			})
			putScratch(qkv)
			if parts != nil {
				parallelFor(threads, b.heads, func(h int) {
					t.outPart(b, parts, o.f, a, n, h)
				})
			}
		}
		t.gather(xp, x, seqs)
		if parts != nil {
			t.addParts(xp, n, parts.f, b.heads, b.out.bias)
			parts.free()
		} else {
			sgemm(threads, n, o.f, a, b.out.w, xp, w, epilogue{acc: true, bias: b.out.bias})
		}
		putScratch(o)
	} else {
		t.gather(xp, x, seqs)
	}
	t.mlp(threads, b, xp, n)
}

// mlp computes x += MLP(LN₂(x)) for rows of x.
func (t *transformer) mlp(threads int, b *block, x []float32, rows int) {
	w := t.width
	switch {
	case !b.hasMLP:
	case b.mlpWidth == 0:
		for r := range rows {
			row := x[r*w : (r+1)*w]
			for j, v := range b.proj.bias {
				row[j] += v
			}
		}
	case t.useSplitK(b, rows, false):
		t.mlpSplit(threads, b, x, rows)
	case b.fc.w.bf16 != nil && b.proj.w.bf16 != nil:
		// BF16 weights: LN₂ straight into BF16 rows, and the activated
		// hidden layer rounded to BF16 by the first product's epilogue.
		m := b.mlpWidth
		hs, h16, kp := t.layerNormBF16(threads, x, rows, b.ln2g, b.ln2b)
		ldf := padStride(m)
		f := getScratch(rows * ldf)
		fs, f16, kpm := t.bf16Operand(rows, m)
		sgemmBF16A(threads, rows, h16, kp, b.fc.w, f.f, ldf, epilogue{bias: b.fc.bias, act: t.act, out16: f16, ld16: kpm})
		putScratch(hs)
		putScratch(f)
		sgemmBF16A(threads, rows, f16, kpm, b.proj.w, x, w, epilogue{acc: true, bias: b.proj.bias})
		putScratch(fs)
	default:
		m := b.mlpWidth
		ldh, ldf := padStride(w), padStride(m)
		h := getScratch(rows * ldh)
		t.layerNormStrided(threads, h.f, ldh, x, rows, b.ln2g, b.ln2b)
		f := getScratch(rows * ldf)
		sgemm(threads, rows, h.f, ldh, b.fc.w, f.f, ldf, epilogue{bias: b.fc.bias, act: t.act})
		putScratch(h)
		sgemm(threads, rows, f.f, ldf, b.proj.w, x, w, epilogue{acc: true, bias: b.proj.bias})
		putScratch(f)
	}
}

// mlpSplit is mlp as one parallel loop over mlpChunks chunks of the hidden
// units: each task computes its chunk's columns of the first product and
// their activation, then multiplies them by the same rows of the second
// weight into a part of its own; the parts are added to x in chunk order.
// BF16 weights take their A operands in BF16, as in mlp.
func (t *transformer) mlpSplit(threads int, b *block, x []float32, rows int) {
	w, m := t.width, b.mlpWidth
	nr := b.fc.w.kern.nr
	fcPanels, _ := panelsOf(b.fc.w.kern, m)
	projPanels, _ := panelsOf(b.proj.w.kern, w)
	chunks := min(mlpChunks, fcPanels)
	per := (fcPanels + chunks - 1) / chunks
	chunks = (fcPanels + per - 1) / per
	parts := getScratch(chunks * rows * w)
	ldf := padStride(m)
	f := getScratch(rows * ldf)
	var chunk func(j, p0, p1 int)
	var hs, fs *scratch
	if b.fc.w.bf16 != nil {
		var h16 []uint16
		var kp int
		hs, h16, kp = t.layerNormBF16(threads, x, rows, b.ln2g, b.ln2b)
		var f16 []uint16
		var kpm int
		fs, f16, kpm = t.bf16Operand(rows, m)
		chunk = func(j, p0, p1 int) {
			sgemmBlockBF16(h16, kp, b.fc.w, f.f, ldf, 0, rows, p0, p1, &epilogue{bias: b.fc.bias, act: t.act, out16: f16, ld16: kpm})
			sgemmBlockBF16K(f16, kpm, b.proj.w, parts.f[j*rows*w:(j+1)*rows*w], w, 0, rows, 0, projPanels, p0*nr/2, (min(p1*nr, m)+1)/2, &epilogue{})
		}
	} else {
		ldh := padStride(w)
		hs = getScratch(rows * ldh)
		t.layerNormStrided(threads, hs.f, ldh, x, rows, b.ln2g, b.ln2b)
		chunk = func(j, p0, p1 int) {
			sgemmBlock(hs.f, ldh, b.fc.w, f.f, ldf, 0, rows, p0, p1, &epilogue{bias: b.fc.bias, act: t.act})
			sgemmBlockK(f.f, ldf, b.proj.w, parts.f[j*rows*w:(j+1)*rows*w], w, 0, rows, 0, projPanels, p0*nr, min(p1*nr, m), &epilogue{})
		}
	}
	parallelFor(threads, chunks, func(j int) {
		chunk(j, j*per, min((j+1)*per, fcPanels))
	})
	putScratch(hs)
	putScratch(fs)
	putScratch(f)
	t.addParts(x, rows, parts.f, chunks, b.proj.bias)
	putScratch(parts)
}

// padStride returns the row stride for a scratch matrix of n columns that
// the GEMM reads as A: rows whose stride is a multiple of 2 KiB map to few
// L1 sets (48 KiB, 12-way), so the 12 rows of a strip would evict each
// other; 16 floats more spread them.
func padStride(n int) int {
	if n >= 256 && (n*4)%2048 == 0 {
		return n + 16
	}
	return n
}

// padStride16 is padStride for BF16 rows of k values, as sgemmBF16A reads
// them: k rounded up to even, plus 64 bytes when the stride in bytes is a
// multiple of 2 KiB (MLP hidden layers of 1024 or 2048 values; without it
// the 12 rows of a strip share one or two L1 sets, measured: a 200×512×2048
// product runs at 86 GMAC/s instead of 116).
func padStride16(k int) int {
	kp := (k + 1) &^ 1
	if kp >= 512 && (kp*2)%2048 == 0 {
		return kp + 32
	}
	return kp
}

// layerNormStrided writes LayerNorm(x) of rows×width values to dst with row
// stride ld, splitting the rows over the threads.
func (t *transformer) layerNormStrided(threads int, dst []float32, ld int, x []float32, rows int, g, b []float32) {
	w := t.width
	parallelRange(threads, rows, max(64, (1<<16)/max(w, 1)), func(r0, r1 int) {
		if ld == w {
			t.kern.layerNorm(dst[r0*w:r1*w], x[r0*w:r1*w], r1-r0, w, g, b)
			return
		}
		for r := r0; r < r1; r++ {
			t.kern.layerNorm(dst[r*ld:r*ld+w], x[r*w:(r+1)*w], 1, w, g, b)
		}
	})
}

// layerNormBF16 returns LayerNorm(x) of rows×width values rounded to BF16:
// rows of stride kp (padStride16(width), the value at an odd width zero),
// followed by zero rows up to a multiple of the kernel's mr, as sgemmBF16A
// takes them. Each row is rounded right after it is normalised.
func (t *transformer) layerNormBF16(threads int, x []float32, rows int, g, b []float32) (*scratch, []uint16, int) {
	s, h, kp := t.bf16Operand(rows, t.width)
	parallelRange(threads, rows, max(64, (1<<16)/max(t.width, 1)), func(r0, r1 int) {
		t.layerNormRowsBF16(h, kp, x, r0, r1, g, b)
	})
	return s, h, kp
}

// layerNormRowsBF16 writes LayerNorm(x) of rows [r0, r1) rounded to BF16
// into the rows of h (stride kp, the value at the width zero where kp is
// wider), each row rounded right after it is normalised.
func (t *transformer) layerNormRowsBF16(h []uint16, kp int, x []float32, r0, r1 int, g, b []float32) {
	w := t.width
	tmp := getScratch(w)
	for r := r0; r < r1; r++ {
		t.kern.layerNorm(tmp.f, x[r*w:(r+1)*w], 1, w, g, b)
		row := h[r*kp : (r+1)*kp]
		bf16Convert(row[:w], tmp.f)
		if kp > w {
			row[w] = 0
		}
	}
	putScratch(tmp)
}

// bf16Operand returns a buffer for rows BF16 rows of k values as
// sgemmBF16A takes them as A: row stride padStride16(k), the rows past the
// last up to a multiple of the kernel's mr zero, and, for an odd k, the
// value at k of every row zero. The caller fills the rows' first k values.
func (t *transformer) bf16Operand(rows, k int) (*scratch, []uint16, int) {
	kp := padStride16(k)
	mr := t.kern.mr
	s, h := bf16Scratch((rows + mr - 1) / mr * mr * kp)
	clear(h[rows*kp:])
	if k%2 != 0 {
		for r := range rows {
			h[r*kp+k] = 0
		}
	}
	return s, h, kp
}
