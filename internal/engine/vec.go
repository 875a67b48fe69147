package engine

import (
	"math"
	"unsafe"
)

// Element-wise routines of a model: the AVX-512 ones when its kernel is the
// AVX-512 kernel, else the portable ones of ops.go (so that forcing the
// generic kernel also tests the portable element-wise code).

// activate replaces every x[i] by act(x[i]).
func (k *microKernel) activate(a activation, x []float32) {
	if k.vec && len(x) > 0 {
		p := unsafe.SliceData(x)
		switch a {
		case actGELU:
			vgelu(p, len(x))
			return
		case actQuickGELU:
			vquickgelu(p, len(x))
			return
		case actReLU:
			vrelu(p, len(x))
			return
		}
	}
	a.apply(x)
}

// softmax replaces s by softmax(s).
func (k *microKernel) softmax(s []float32) {
	if !k.vec || len(s) == 0 {
		softmax(s)
		return
	}
	p := unsafe.SliceData(s)
	m := vmax(p, len(s))
	sum := vexpShiftSum(p, len(s), m)
	vscale(p, len(s), 1/sum)
}

// softmaxBF16 writes softmax(s) rounded to BF16 to dst (len(s) values),
// leaving s overwritten with intermediate values. The result is that of
// softmax followed by bf16Convert.
func (k *microKernel) softmaxBF16(dst []uint16, s []float32) {
	if len(s) == 0 {
		return
	}
	dst = dst[:len(s)]
	if !k.vec {
		softmax(s)
		bf16Convert(dst, s)
		return
	}
	vsoftmaxbf16(&dst[0], &s[0], len(s))
}

// layerNorm is layerNorm of ops.go.
func (k *microKernel) layerNorm(dst, src []float32, rows, w int, g, b []float32) {
	if !k.vec || w == 0 {
		layerNorm(dst, src, rows, w, g, b)
		return
	}
	g, b = g[:w], b[:w]
	_, _ = src[rows*w-1], dst[rows*w-1]
	for r := range rows {
		x := &src[r*w]
		mean := vsum(x, w) / float32(w)
		ss := vsumsqdev(x, w, mean)
		rstd := float32(1 / math.Sqrt(float64(ss)/float64(w)+lnEps))
		vlnapply(&dst[r*w], x, &g[0], &b[0], w, mean, rstd)
	}
}

// dot returns Σ a[i]·b[i] over len(a) ≤ len(b) values.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	if hasVec && len(a) >= 16 {
		return vdot(unsafe.SliceData(a), unsafe.SliceData(b), len(a))
	}
	var s0, s1, s2, s3 float32
	j := 0
	for ; j+4 <= len(a); j += 4 {
		s0 += a[j] * b[j]
		s1 += a[j+1] * b[j+1]
		s2 += a[j+2] * b[j+2]
		s3 += a[j+3] * b[j+3]
	}
	for ; j < len(a); j++ {
		s0 += a[j] * b[j]
	}
	return (s0 + s1) + (s2 + s3)
}

// axpy adds a·x to dst element-wise (len(x) ≤ len(dst)).
func axpy(dst []float32, a float32, x []float32) {
	dst = dst[:len(x)]
	if hasVec && len(x) > 0 {
		vaxpy(&dst[0], &x[0], len(x), a)
		return
	}
	for i, v := range x {
		dst[i] += a * v
	}
}

// addTo adds src to dst element-wise (len(src) ≤ len(dst)).
func addTo(dst, src []float32) {
	dst = dst[:len(src)]
	if hasVec && len(src) > 0 {
		vadd(&dst[0], &src[0], len(src))
		return
	}
	for i, v := range src {
		dst[i] += v
	}
}
