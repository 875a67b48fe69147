package engine

import (
	"math"
	"unsafe"
)

// Precision is the arithmetic of a model's weight products.
type Precision uint8

const (
	// FP32: float32 weights and activations (the reference arithmetic).
	FP32 Precision = iota
	// BF16: the weights of every linear layer, convolution and projection
	// are rounded to bfloat16 once at Build, activations are rounded to
	// bfloat16 as they enter those products, and the products accumulate
	// in float32 (AVX512-BF16 VDPBF16PS). Attention scores, softmax,
	// LayerNorm, activations and residual sums stay float32. On CPUs
	// without AVX512-BF16 the model runs in FP32.
	BF16
)

// String returns "fp32" or "bf16".
func (p Precision) String() string {
	switch p {
	case FP32:
		return "fp32"
	case BF16:
		return "bf16"
	}
	return "precision(" + itoa(int(p)) + ")"
}

func itoa(v int) string {
	if v < 10 {
		return string(rune('0' + v))
	}
	return itoa(v/10) + string(rune('0'+v%10))
}

// bf16Kernel is the BF16 variant of a micro-kernel: as microKernel.fn, with
// a and b holding BF16 values in k-pairs and kc counting pairs.
type bf16Kernel struct {
	fn func(kc int, a []uint16, lda int, b []uint16, pw int, c []float32, ldc, strips int, bias []float32, flags, w int)
	// tails are variants with fewer rows (ascending) for nr-wide panels.
	tails []bf16Tail
}

// bf16Tail is a BF16 kernel variant computing tiles of rows rows.
type bf16Tail struct {
	rows int
	fn   func(kc int, a []uint16, lda int, b []uint16, pw int, c []float32, ldc, strips int, bias []float32, flags, w int)
}

// kcMaxPairs bounds the k-pairs of one block: a BF16 panel block of 32
// columns is then 32 KiB, as for FP32.
const kcMaxPairs = 256

// toBF16 rounds f to the nearest bfloat16 (ties to even).
func toBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		return uint16(b>>16) | 0x40 // keep NaN a NaN
	}
	return uint16((b + 0x7FFF + (b>>16)&1) >> 16)
}

// fromBF16 widens a bfloat16 to float32.
func fromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// bf16Convert writes src rounded to BF16 to dst.
func bf16Convert(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	if hasVec && len(src) > 0 {
		vtobf16(&dst[0], &src[0], len(src))
		return
	}
	for i, v := range src {
		dst[i] = toBF16(v)
	}
}

// toBF16Packed adds the BF16 form of b's panels (pairs of k, the last one
// zero when k is odd) and drops the FP32 data.
func (b *packedB) toBF16Packed() {
	kern := b.kern
	kp := (b.k + 1) &^ 1
	count, last := panelsOf(kern, b.n)
	total := 0
	if count > 0 {
		total = ((count-1)*kern.nr + last) * kp
	}
	out := make([]uint16, total)
	for p := range count {
		off, pw := b.panel(p)
		src := b.data[off : off+pw*b.k]
		dst := out[p*kern.nr*kp : p*kern.nr*kp+pw*kp]
		for kk := range b.k {
			for j, v := range src[kk*pw : (kk+1)*pw] {
				dst[(kk/2)*pw*2+j*2+kk%2] = toBF16(v)
			}
		}
	}
	b.bf16 = out
	b.data = nil
}

// bf16Scratch returns a uint16 view of a scratch buffer of at least n
// values.
func bf16Scratch(n int) (*scratch, []uint16) {
	s := getScratch((n + 1) / 2)
	if len(s.f) == 0 {
		return s, nil
	}
	return s, unsafe.Slice((*uint16)(unsafe.Pointer(&s.f[0])), n)
}

// sgemmBF16 is sgemm for a B with BF16 panels: A is rounded to BF16 (rows
// padded to a multiple of mr, k to even), then multiplied with FP32
// accumulation.
func sgemmBF16(threads, m int, a []float32, lda int, b *packedB, c []float32, ldc int, ep epilogue) {
	mr := b.kern.mr
	k := b.k
	kp := padStride16(k)
	as, ab := bf16Scratch((m + mr - 1) / mr * mr * kp)
	bf16Rows(ab, kp, a, lda, m, k)
	sgemmBF16A(threads, m, ab, kp, b, c, ldc, ep)
	putScratch(as)
}

// bf16Rows writes rows [0, m) of A (k values, stride lda) rounded to BF16
// into ab (stride kp > k, or kp = k even; the value at k zero when kp > k),
// and zeros the rest of ab (the padding rows).
func bf16Rows(ab []uint16, kp int, a []float32, lda, m, k int) {
	for i := range m {
		row := ab[i*kp : (i+1)*kp]
		bf16Convert(row[:k], a[i*lda:i*lda+k])
		if kp > k {
			row[k] = 0
		}
	}
	clear(ab[m*kp:])
}

// sgemmBF16A is sgemmBF16 with A already in BF16: ab holds m rows of stride
// lda ≥ b.k rounded up to even (the value at b.k zero when b.k is odd; the
// values past that are not read), followed by rows up to a multiple of the
// kernel's mr, whose values only reach the unused rows of the result (zero
// them: garbage could be slow subnormals).
func sgemmBF16A(threads, m int, ab []uint16, lda int, b *packedB, c []float32, ldc int, ep epilogue) {
	forTiles(threads, m, b, func(i0, i1, p0, p1 int) {
		sgemmBlockBF16(ab, lda, b, c, ldc, i0, i1, p0, p1, &ep)
	})
}

// sgemmBlockBF16 computes rows [i0, i1) and panels [p0, p1) of C from the
// BF16 rows ab (row stride lda, rows padded to a multiple of mr).
func sgemmBlockBF16(ab []uint16, lda int, b *packedB, c []float32, ldc int, i0, i1, p0, p1 int, ep *epilogue) {
	sgemmBlockBF16K(ab, lda, b, c, ldc, i0, i1, p0, p1, 0, (b.k+1)/2, ep)
}

// sgemmBlockBF16K is sgemmBlockBF16 over the k pairs [q0, q1) of B (columns
// [2·q0, 2·q1) of A): one part of a product split in K (sgemmBlockK).
func sgemmBlockBF16K(ab []uint16, lda int, b *packedB, c []float32, ldc int, i0, i1, p0, p1, q0, q1 int, ep *epilogue) {
	kern := b.kern
	mr, nr := kern.mr, kern.nr
	n := b.n
	j0, j1 := p0*nr, min(p1*nr, n)
	kp := (b.k + 1) &^ 1 // k-extent of a packed panel
	pairs := q1 - q0
	if pairs == 0 {
		sgemmBlockK(nil, 0, b, c, ldc, i0, i1, p0, p1, 0, 0, ep) // an empty K: bias only
		return
	}
	full := (i1 - i0) / mr
	h := (i1 - i0) - full*mr
	it := i0 + full*mr
	kcb := kcBlock(pairs, kcMaxPairs, i1-i0, mr)
	var tile []float32
	if h > 0 {
		ts := getScratch(maxTile)
		defer putScratch(ts)
		tile = ts.f
	}
	for pc := q0; pc < q1; pc += kcb {
		kc := min(kcb, q1-pc)
		flags := 0
		if pc > q0 || ep.acc {
			flags |= gemmLoad
		}
		var bias []float32
		if pc+kc == q1 && ep.bias != nil {
			flags |= gemmBias
			bias = ep.bias
		}
		if pc+kc == q1 && ep.act == actReLU && kern.relu {
			flags |= gemmReLU
		}
		for p := p0; p < p1; p++ {
			_, pw := b.panel(p)
			off := p * nr * kp
			bp := b.bf16[off+pc*2*pw : off+(pc+kc)*2*pw]
			col := p * nr
			w := min(pw, n-col)
			var pb []float32
			if bias != nil {
				pb = bias[col : col+w]
			}
			if full > 0 {
				kern.bf16.fn(kc, ab[i0*lda+2*pc:], lda, bp, pw, c[i0*ldc+col:], ldc, full, pb, flags, w)
			}
			if h > 0 {
				t := tile[:mr*pw]
				if flags&gemmLoad != 0 {
					for r := range h {
						copy(t[r*pw:r*pw+w], c[(it+r)*ldc+col:(it+r)*ldc+col+w])
					}
				}
				fn := kern.bf16.fn
				for _, tk := range kern.bf16.tails {
					if tk.rows >= h && pw == nr {
						fn = tk.fn
						break
					}
				}
				fn(kc, ab[it*lda+2*pc:], lda, bp, pw, t, pw, 1, pb, flags, w)
				for r := range h {
					copy(c[(it+r)*ldc+col:(it+r)*ldc+col+w], t[r*pw:r*pw+w])
				}
			}
		}
	}
	if ep.act != actNone && !(ep.act == actReLU && kern.relu) {
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

// bf16Pairs writes dst[i] = bf16(r1[i])<<16 | bf16(r0[i]) for i < len(dst).
func bf16Pairs(dst []uint32, r0, r1 []float32) {
	n := len(dst)
	r0, r1 = r0[:n], r1[:n]
	if hasVec && n > 0 {
		vbf16pairs(&dst[0], &r0[0], &r1[0], n)
		return
	}
	for i := range dst {
		dst[i] = uint32(toBF16(r1[i]))<<16 | uint32(toBF16(r0[i]))
	}
}

// u32 views a uint16 slice of even length as uint32 pairs.
func u32(s []uint16) []uint32 {
	if len(s) < 2 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&s[0])), len(s)/2)
}

// packBTBF16 packs B = Sᵀ in BF16 pairs, where S is n×k row-major with row
// stride ld (k even), using tmp (k uint16) for one converted row of S.
func packBTBF16(kern *microKernel, dst []uint16, tmp []uint16, s []float32, ld, n, k int) *packedB {
	nr := kern.nr
	pb := &packedB{k: k, n: n, kern: kern, bf16: dst[:packedLen(kern, k, n)]}
	d32 := u32(pb.bf16)
	row := u32(tmp[:k])
	count, _ := panelsOf(kern, n)
	for p := range count {
		_, pw := pb.panel(p)
		panel := d32[p*nr*k/2 : p*nr*k/2+pw*k/2]
		c0 := p * nr
		w := min(pw, n-c0)
		for j := range w {
			bf16Convert(tmp[:k], s[(c0+j)*ld:(c0+j)*ld+k])
			for kk, v := range row {
				panel[kk*pw+j] = v
			}
		}
		if w < pw {
			for kk := range k / 2 {
				clear(panel[kk*pw+w : kk*pw+pw])
			}
		}
	}
	return pb
}

// packBNBF16 packs B = S in BF16 pairs, where S is k×n row-major with row
// stride ld; an odd k is padded with a zero row.
func packBNBF16(kern *microKernel, dst []uint16, zero []float32, s []float32, ld, k, n int) *packedB {
	nr := kern.nr
	kp := (k + 1) &^ 1
	count, last := panelsOf(kern, n)
	total := 0
	if count > 0 {
		total = ((count-1)*nr + last) * kp
	}
	pb := &packedB{k: k, n: n, kern: kern, bf16: dst[:total]}
	d32 := u32(pb.bf16)
	for p := range count {
		_, pw := pb.panel(p)
		panel := d32[p*nr*kp/2 : p*nr*kp/2+pw*kp/2]
		c0 := p * nr
		w := min(pw, n-c0)
		for kk := 0; kk < k; kk += 2 {
			r0 := s[kk*ld+c0 : kk*ld+c0+w]
			r1 := zero[:w]
			if kk+1 < k {
				r1 = s[(kk+1)*ld+c0 : (kk+1)*ld+c0+w]
			}
			d := panel[(kk/2)*pw : (kk/2)*pw+pw]
			bf16Pairs(d[:w], r0, r1)
			clear(d[w:])
		}
	}
	return pb
}
