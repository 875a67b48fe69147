package engine

// microKernel computes an mr×nr tile of C: for i < mr, j < nr,
// c[i·ldc+j] += Σ_k a[k·mr+i] · b[k·nr+j], where a is a packed strip of A
// (kc steps of mr values) and b a packed panel of B (kc steps of nr values).
// A faster kernel (assembly) plugs in here with its own mr and nr; weights
// are packed for the kernel a Model is built with.
type microKernel struct {
	name   string
	mr, nr int
	fn     func(kc int, a, b, c []float32, ldc int)
}

// maxTile bounds mr·nr and maxMR bounds mr of every kernel.
const (
	maxTile = 512
	maxMR   = 16
)

// genericKernel is the portable pure-Go kernel. 2×4 keeps all eight
// accumulators and the operands in registers on amd64 (wider tiles spill,
// measured slower).
var genericKernel = &microKernel{name: "generic", mr: 2, nr: 4, fn: kernel2x4}

func kernel2x4(kc int, a, b, c []float32, ldc int) {
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	a = a[:2*kc]
	b = b[:4*kc]
	// Two steps per iteration halve the loop overhead.
	for len(a) >= 4 && len(b) >= 8 {
		b0, b1, b2, b3 := b[0], b[1], b[2], b[3]
		a0, a1 := a[0], a[1]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		b0, b1, b2, b3 = b[4], b[5], b[6], b[7]
		a0, a1 = a[2], a[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		a = a[4:]
		b = b[8:]
	}
	if len(a) >= 2 && len(b) >= 4 {
		b0, b1, b2, b3 := b[0], b[1], b[2], b[3]
		a0, a1 := a[0], a[1]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
	}
	r := c[0:4:4]
	r[0] += c00
	r[1] += c01
	r[2] += c02
	r[3] += c03
	r = c[ldc : ldc+4 : ldc+4]
	r[0] += c10
	r[1] += c11
	r[2] += c12
	r[3] += c13
}
