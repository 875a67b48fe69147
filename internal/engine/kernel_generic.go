package engine

// Flags of a micro-kernel call.
const (
	gemmLoad = 1 // add the existing C (C += A·B) instead of overwriting it
	gemmBias = 2 // add bias[j] to column j
	gemmReLU = 4 // then replace negative values by 0 (kernels with relu set)
)

// microKernel computes tiles of C = A·B for sgemm. One call handles strips
// consecutive row strips of mr rows against one packed B panel of pw
// columns (pw = nr, or nr/2 for a narrow last panel when half is set):
//
//	c[(s·mr+i)·ldc+j] = [c[…] +] Σ_{k<kc} a[(s·mr+i)·lda+k]·b[k·pw+j] [+ bias[j]]
//
// for s < strips, i < mr, j < w. A is read in place. Kernels with masked
// set write only the w columns; the others write the whole panel width, and
// sgemm passes partial panels through a tile buffer. pw is nr or, for the
// last panel, one of lastWidths. Weights are packed
// for the kernel a Model is built with.
type microKernel struct {
	name   string
	mr, nr int
	// lastWidths are the widths, ascending and below nr, that the last
	// panel of a matrix may have (narrower panels waste fewer columns).
	lastWidths []int
	masked     bool // fn honours w < pw
	relu       bool // fn (and conv, tails, bf16) honour gemmReLU
	vec        bool // the AVX-512 element-wise routines (vec_amd64.s) are used
	fn         func(kc int, a []float32, lda int, b []float32, pw int, c []float32, ldc, strips int, bias []float32, flags, w int)
	// conv, if set, is fn with the kc·taps steps split into taps segments
	// of kc, segment t reading A at byte offset offs[t] (implicit-GEMM
	// convolution, see convLayer.forwardPadded); masked kernels only.
	conv func(kc int, a []float32, lda int, offs []int, b []float32, pw int, c []float32, ldc, strips int, bias []float32, flags, w int)
	// tails are variants of fn with fewer rows (ascending), for the last,
	// partial strip of a matrix when its panel is nr wide.
	tails []tailKernel
	// bf16 is the BF16 variant of the kernel, nil if the CPU has none.
	bf16 *bf16Kernel
}

// tailKernel is a micro-kernel variant computing tiles of rows rows.
type tailKernel struct {
	rows int
	fn   func(kc int, a []float32, lda int, b []float32, pw int, c []float32, ldc, strips int, bias []float32, flags, w int)
}

// tailFor returns the kernel function and row count to run the last h rows
// of a matrix with (h < mr) against a panel pw wide.
func (k *microKernel) tailFor(h, pw int) (func(kc int, a []float32, lda int, b []float32, pw int, c []float32, ldc, strips int, bias []float32, flags, w int), int) {
	if pw == k.nr {
		for _, t := range k.tails {
			if t.rows >= h {
				return t.fn, t.rows
			}
		}
	}
	return k.fn, k.mr
}

// maxTile bounds mr·nr and maxMR bounds mr of every kernel.
const (
	maxTile = 512
	maxMR   = 16
)

// genericKernel is the portable pure-Go kernel. 2×4 keeps all eight
// accumulators and the operands in registers on amd64 (wider tiles spill).
var genericKernel = &microKernel{name: "generic", mr: 2, nr: 4, masked: true, fn: genericTiles}

func genericTiles(kc int, a []float32, lda int, b []float32, pw int, c []float32, ldc, strips int, bias []float32, flags, w int) {
	for s := range strips {
		kernel2x4(kc, a[2*s*lda:], lda, b, c[2*s*ldc:], ldc, bias, flags, w)
	}
}

func kernel2x4(kc int, a []float32, lda int, b []float32, c []float32, ldc int, bias []float32, flags, w int) {
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	a0s := a[:kc]
	a1s := a[lda : lda+kc]
	b = b[:4*kc]
	for k := range a0s {
		bk := b[4*k : 4*k+4 : 4*k+4]
		a0, a1 := a0s[k], a1s[k]
		c00 += a0 * bk[0]
		c01 += a0 * bk[1]
		c02 += a0 * bk[2]
		c03 += a0 * bk[3]
		c10 += a1 * bk[0]
		c11 += a1 * bk[1]
		c12 += a1 * bk[2]
		c13 += a1 * bk[3]
	}
	t := [2][4]float32{{c00, c01, c02, c03}, {c10, c11, c12, c13}}
	for i := range 2 {
		row := c[i*ldc : i*ldc+w]
		for j := range row {
			v := t[i][j]
			if flags&gemmLoad != 0 {
				v = row[j] + v
			}
			if flags&gemmBias != 0 {
				v += bias[j]
			}
			row[j] = v
		}
	}
}
