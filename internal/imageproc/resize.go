package imageproc

import (
	"math"
	"runtime"
	"sync"
)

// This file reproduces Pillow 9.4's Image.resize (libImaging/Resample.c and
// Geometry.c) for the modes Decode produces, computing only a rectangle of
// the output: each output sample depends on its own window of input samples
// only, so a resize followed by a crop equals resizing just the crop.

// rect is a region [x0, x1) × [y0, y1) of a resized image.
type rect struct{ x0, y0, x1, y1 int }

func (r rect) dx() int { return r.x1 - r.x0 }
func (r rect) dy() int { return r.y1 - r.y0 }

// bicubicKernel is Pillow's bicubic_filter (Keys, a = -0.5), evaluated in
// the same operation order. The explicit conversions keep the compiler from
// fusing multiply-adds, which would round differently.
func bicubicKernel(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return float64(float64(float64(float64((a+2)*x)-(a+3))*x)*x) + 1
	}
	if x < 2 {
		return float64(float64(float64(float64(x-5)*x)+8)*x-4) * a
	}
	return 0
}

// axis holds the resampling weights of one axis for output indices o0..o1-1.
type axis struct {
	start []int     // first input index of each output's window
	n     []int     // window length
	w     []float64 // normalised weights, ksize per output
	q     []int32   // the weights in 22-bit fixed point (8-bit path)
	ksize int
}

// precisionBits is Pillow's PRECISION_BITS for the 8-bit path.
const precisionBits = 32 - 8 - 2

// newAxis computes Pillow's precompute_coeffs for resampling in samples to
// out samples, for the outputs o0..o1-1.
func newAxis(in, out, o0, o1 int, fixed bool) *axis {
	scale := float64(in) / float64(out)
	fs := max(scale, 1)
	support := 2 * fs
	ksize := int(math.Ceil(support))*2 + 1
	n := o1 - o0
	a := &axis{start: make([]int, n), n: make([]int, n), w: make([]float64, n*ksize), ksize: ksize}
	ss := 1 / fs
	for i := range n {
		center := float64(float64(o0+i)+0.5) * scale
		xmin := max(int(center-support+0.5), 0)
		xmax := min(int(center+support+0.5), in)
		k := a.w[i*ksize : i*ksize+ksize]
		var sum float64
		for x := 0; x < xmax-xmin; x++ {
			v := bicubicKernel(float64(float64(x+xmin)-center+0.5) * ss)
			k[x] = v
			sum += v
		}
		if sum != 0 {
			for x := 0; x < xmax-xmin; x++ {
				k[x] /= sum
			}
		}
		a.start[i], a.n[i] = xmin, max(xmax-xmin, 0)
	}
	if fixed {
		a.q = make([]int32, len(a.w))
		for i, v := range a.w {
			if v < 0 {
				a.q[i] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				a.q[i] = int32(0.5 + v*(1<<precisionBits))
			}
		}
	}
	return a
}

// span returns the input range [lo, hi) the outputs of a read.
func (a *axis) span() (lo, hi int) {
	lo, hi = math.MaxInt, 0
	for i, s := range a.start {
		if a.n[i] == 0 {
			continue
		}
		lo, hi = min(lo, s), max(hi, s+a.n[i])
	}
	if lo > hi {
		return 0, 0
	}
	return lo, hi
}

// parallel runs f over [0, n) split into chunks, on up to GOMAXPROCS
// goroutines when the work (n times cost per item) is large enough to pay.
func parallel(n int, cost int, f func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers < 2 || n < 2 || n*cost < 1<<18 {
		f(0, n)
		return
	}
	workers = min(workers, n)
	var wg sync.WaitGroup
	for i := range workers {
		lo, hi := i*n/workers, (i+1)*n/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// clip8 is Pillow's clip8 of a 22-bit fixed-point accumulator.
func clip8(acc int32) uint8 {
	v := acc >> precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// resample8 resizes pix (w×h, nc interleaved 8-bit channels) to outW×outH
// with Pillow's 8-bit bicubic path and returns the region r of the result:
// a horizontal pass into an 8-bit intermediate, then a vertical pass, each
// skipped when that dimension does not change. With premul the input is
// taken premultiplied by its last channel (see premultiply), row by row.
func resample8(pix []uint8, w, h, nc, outW, outH int, r rect, premul bool) []uint8 {
	// Rows of the input the vertical pass reads.
	var va *axis
	ry0, ry1 := r.y0, r.y1
	if outH != h {
		va = newAxis(h, outH, r.y0, r.y1, true)
		ry0, ry1 = va.span()
	}
	// Horizontal pass over rows ry0..ry1, columns r.x0..r.x1.
	iw := r.dx()
	tmp := make([]uint8, (ry1-ry0)*iw*nc)
	if outW != w {
		ha := newAxis(w, outW, r.x0, r.x1, true)
		parallel(ry1-ry0, iw*ha.ksize*nc, func(lo, hi int) {
			var scratch []uint8
			if premul {
				scratch = make([]uint8, w*nc)
			}
			for y := lo; y < hi; y++ {
				src := pix[(ry0+y)*w*nc : (ry0+y+1)*w*nc]
				if premul {
					premultiply(scratch, src, nc)
					src = scratch
				}
				horizontal8(tmp[y*iw*nc:(y+1)*iw*nc], src, nc, ha)
			}
		})
	} else {
		for y := ry0; y < ry1; y++ {
			dst := tmp[(y-ry0)*iw*nc : (y-ry0+1)*iw*nc]
			src := pix[(y*w+r.x0)*nc : (y*w+r.x1)*nc]
			if premul {
				premultiply(dst, src, nc)
			} else {
				copy(dst, src)
			}
		}
	}
	if va == nil {
		return tmp
	}
	out := make([]uint8, r.dy()*iw*nc)
	rowLen := iw * nc
	parallel(r.dy(), rowLen*va.ksize, func(lo, hi int) {
		acc := make([]int32, rowLen)
		for y := lo; y < hi; y++ {
			for i := range acc {
				acc[i] = 1 << (precisionBits - 1)
			}
			s, n := va.start[y]-ry0, va.n[y]
			k := va.q[y*va.ksize : y*va.ksize+n]
			for j, kj := range k {
				row := tmp[(s+j)*rowLen : (s+j+1)*rowLen]
				for i, v := range row {
					acc[i] += int32(v) * kj
				}
			}
			o := out[y*rowLen : (y+1)*rowLen]
			for i, a := range acc {
				o[i] = clip8(a)
			}
		}
	})
	return out
}

// horizontal8 resamples one row of nc-channel pixels with the fixed-point
// weights of a.
func horizontal8(dst, src []uint8, nc int, a *axis) {
	const half = 1 << (precisionBits - 1)
	switch nc {
	case 1:
		for o := range a.start {
			s, n := a.start[o], a.n[o]
			k := a.q[o*a.ksize : o*a.ksize+n]
			p := src[s : s+n]
			acc := int32(half)
			for j, kj := range k {
				acc += int32(p[j]) * kj
			}
			dst[o] = clip8(acc)
		}
	case 3:
		for o := range a.start {
			s, n := a.start[o], a.n[o]
			k := a.q[o*a.ksize : o*a.ksize+n]
			p := src[3*s : 3*(s+n)]
			a0, a1, a2 := int32(half), int32(half), int32(half)
			for j, kj := range k {
				q := p[3*j : 3*j+3 : 3*j+3]
				a0 += int32(q[0]) * kj
				a1 += int32(q[1]) * kj
				a2 += int32(q[2]) * kj
			}
			d := dst[3*o : 3*o+3 : 3*o+3]
			d[0], d[1], d[2] = clip8(a0), clip8(a1), clip8(a2)
		}
	case 4:
		for o := range a.start {
			s, n := a.start[o], a.n[o]
			k := a.q[o*a.ksize : o*a.ksize+n]
			p := src[4*s : 4*(s+n)]
			a0, a1, a2, a3 := int32(half), int32(half), int32(half), int32(half)
			for j, kj := range k {
				q := p[4*j : 4*j+4 : 4*j+4]
				a0 += int32(q[0]) * kj
				a1 += int32(q[1]) * kj
				a2 += int32(q[2]) * kj
				a3 += int32(q[3]) * kj
			}
			d := dst[4*o : 4*o+4 : 4*o+4]
			d[0], d[1], d[2], d[3] = clip8(a0), clip8(a1), clip8(a2), clip8(a3)
		}
	default:
		var acc [4]int32
		for o := range a.start {
			s, n := a.start[o], a.n[o]
			k := a.q[o*a.ksize : o*a.ksize+n]
			for c := 0; c < nc; c++ {
				acc[c] = half
			}
			for j, kj := range k {
				for c := 0; c < nc; c++ {
					acc[c] += int32(src[(s+j)*nc+c]) * kj
				}
			}
			for c := 0; c < nc; c++ {
				dst[o*nc+c] = clip8(acc[c])
			}
		}
	}
}

// roundUp is Pillow's ROUND_UP: round half away from zero to int32.
func roundUp(s float64) int32 {
	if s >= 0 {
		return int32(s + 0.5)
	}
	return int32(s - 0.5)
}

// resampleI32 resizes a mode I image with Pillow's 32-bit path (float64
// weights and sums, rounded half away from zero, an int32 intermediate) and
// returns the region r of the result.
func resampleI32(pix []int32, w, h, outW, outH int, r rect) []int32 {
	var va *axis
	ry0, ry1 := r.y0, r.y1
	if outH != h {
		va = newAxis(h, outH, r.y0, r.y1, false)
		ry0, ry1 = va.span()
	}
	iw := r.dx()
	tmp := make([]int32, (ry1-ry0)*iw)
	if outW != w {
		ha := newAxis(w, outW, r.x0, r.x1, false)
		for y := ry0; y < ry1; y++ {
			src := pix[y*w : (y+1)*w]
			dst := tmp[(y-ry0)*iw : (y-ry0+1)*iw]
			for o := range dst {
				s, n := ha.start[o], ha.n[o]
				var sum float64
				for j, kj := range ha.w[o*ha.ksize : o*ha.ksize+n] {
					sum += float64(float64(src[s+j]) * kj)
				}
				dst[o] = roundUp(sum)
			}
		}
	} else {
		for y := ry0; y < ry1; y++ {
			copy(tmp[(y-ry0)*iw:(y-ry0+1)*iw], pix[y*w+r.x0:y*w+r.x1])
		}
	}
	if va == nil {
		return tmp
	}
	out := make([]int32, r.dy()*iw)
	for y := 0; y < r.dy(); y++ {
		s, n := va.start[y]-ry0, va.n[y]
		k := va.w[y*va.ksize : y*va.ksize+n]
		for x := 0; x < iw; x++ {
			var sum float64
			for j, kj := range k {
				sum += float64(float64(tmp[(s+j)*iw+x]) * kj)
			}
			out[y*iw+x] = roundUp(sum)
		}
	}
	return out
}

// nearestIndex returns the source indices of outputs o0..o1-1 when in
// samples are scaled to out by Pillow's nearest-neighbour path
// (ImagingScaleAffine): the position starts at scale/2 and grows by scale
// per output, by repeated addition.
func nearestIndex(in, out, o0, o1 int) []int {
	scale := float64(in) / float64(out)
	idx := make([]int, 0, o1-o0)
	pos := scale * 0.5
	for o := 0; o < o1; o++ {
		if o >= o0 {
			idx = append(idx, min(max(int(pos), 0), in-1))
		}
		pos += scale
	}
	return idx
}

// resampleNearest resizes pix (nc bytes per pixel) to outW×outH with
// Pillow's nearest-neighbour path and returns the region r.
func resampleNearest(pix []uint8, w, h, nc, outW, outH int, r rect) []uint8 {
	xs := nearestIndex(w, outW, r.x0, r.x1)
	ys := nearestIndex(h, outH, r.y0, r.y1)
	out := make([]uint8, len(xs)*len(ys)*nc)
	for j, sy := range ys {
		src := pix[sy*w*nc : (sy+1)*w*nc]
		dst := out[j*len(xs)*nc : (j+1)*len(xs)*nc]
		for i, sx := range xs {
			copy(dst[i*nc:(i+1)*nc], src[sx*nc:(sx+1)*nc])
		}
	}
	return out
}

// muldiv255 is Pillow's MULDIV255: round(a·b/255) in integers.
func muldiv255(a, b uint8) uint8 {
	t := uint32(a)*uint32(b) + 128
	return uint8((t>>8 + t) >> 8)
}

// premultiply writes src, RGBA or LA pixels, to dst as RGBa or La (Pillow's
// rgbA2rgba, lA2la): colour channels times alpha/255.
func premultiply(dst, src []uint8, nc int) {
	for i := 0; i+nc <= len(src); i += nc {
		a := src[i+nc-1]
		for c := 0; c < nc-1; c++ {
			dst[i+c] = muldiv255(src[i+c], a)
		}
		dst[i+nc-1] = a
	}
}

// unpremultiply converts RGBa to RGBA or La to LA in place (Pillow's
// rgba2rgbA, la2lA): colour kept where alpha is 0 or 255, else
// min(255, 255·c/alpha).
func unpremultiply(pix []uint8, nc int) {
	for i := 0; i+nc <= len(pix); i += nc {
		a := uint32(pix[i+nc-1])
		if a == 0 || a == 255 {
			continue
		}
		for c := 0; c < nc-1; c++ {
			pix[i+c] = uint8(min(255*uint32(pix[i+c])/a, 255))
		}
	}
}

// resize returns the region r of m resized to outW×outH as Pillow's
// Image.resize(size, BICUBIC) does in m's mode: nearest neighbour for P and
// 1, premultiplied alpha for RGBA and LA, the 32-bit path for I, the 8-bit
// path otherwise. When the size does not change the region is copied.
func resize(m *Image, outW, outH int, r rect) *Image {
	out := &Image{Mode: m.Mode, Width: r.dx(), Height: r.dy(), Palette: m.Palette}
	nc := m.Mode.Channels()
	switch {
	case m.Mode == ModeI:
		out.I = resampleI32(m.I, m.Width, m.Height, outW, outH, r)
	case outW == m.Width && outH == m.Height:
		out.Pix = resampleNearest(m.Pix, m.Width, m.Height, nc, outW, outH, r) // a copy
	case m.Mode == ModeP || m.Mode == Mode1:
		out.Pix = resampleNearest(m.Pix, m.Width, m.Height, nc, outW, outH, r)
	case m.Mode == ModeRGBA || m.Mode == ModeLA:
		out.Pix = resample8(m.Pix, m.Width, m.Height, nc, outW, outH, r, true)
		unpremultiply(out.Pix, nc)
	default:
		out.Pix = resample8(m.Pix, m.Width, m.Height, nc, outW, outH, r, false)
	}
	return out
}
