package engine

import (
	"fmt"
	"math"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// activation is an element-wise non-linearity of a GEMM epilogue.
type activation uint8

const (
	actNone activation = iota
	actGELU
	actQuickGELU
	actGELUTanh
	actReLU
)

// activationOf maps a config activation name to the engine's.
func activationOf(a config.Activation) (activation, error) {
	switch a {
	case config.GELU:
		return actGELU, nil
	case config.QuickGELU:
		return actQuickGELU, nil
	case config.GELUTanh:
		return actGELUTanh, nil
	case config.ReLU:
		return actReLU, nil
	}
	return actNone, fmt.Errorf("unknown activation %q", a)
}

// apply replaces every x[i] by act(x[i]).
func (a activation) apply(x []float32) {
	switch a {
	case actGELU:
		for i, v := range x {
			x[i] = gelu(v)
		}
	case actQuickGELU:
		for i, v := range x {
			x[i] = quickGELU(v)
		}
	case actGELUTanh:
		for i, v := range x {
			x[i] = geluTanh(v)
		}
	case actReLU:
		for i, v := range x {
			x[i] = max(v, 0)
		}
	}
}

// gelu is the exact GELU x·Φ(x) = 0.5·x·(1+erf(x/√2)). Inside
// (geluLo, geluHi) Φ comes from a cubic Hermite interpolation of a table of
// Φ and its derivative (absolute error below 3e-10, so the result is within
// one float32 ulp of the float64 value except for tiny negative outputs,
// where it is within 1e-9·|x|); outside it, math.Erfc is used.
func gelu(x float32) float32 {
	v := float64(x)
	if !(v > geluLo && v < geluHi) { // also NaN
		return geluExact(x)
	}
	u := (v - geluLo) * geluSteps
	i := int(u)
	t := u - float64(i)
	e := geluTable[i : i+2 : i+2]
	t2 := t * t
	t3 := t2 * t
	phi := (2*t3-3*t2+1)*e[0].phi + (t3-2*t2+t)*e[0].dphi +
		(3*t2-2*t3)*e[1].phi + (t3-t2)*e[1].dphi
	return float32(v * phi)
}

// geluExact is 0.5·x·erfc(−x/√2) in float64 (= x·Φ(x), accurate also where
// Φ is tiny).
func geluExact(x float32) float32 {
	v := float64(x)
	return float32(0.5 * v * math.Erfc(-v/math.Sqrt2))
}

// The GELU table covers (geluLo, geluHi) in steps of 1/geluSteps. Above
// geluHi, Φ(x) rounds the product x·Φ(x) to x; below geluLo the exact path
// is taken (rare).
const (
	geluLo    = -6.0
	geluHi    = 5.75
	geluSteps = 64
)

// geluTable holds Φ(xᵢ) and h·Φ′(xᵢ) = h·φ(xᵢ) at xᵢ = geluLo + i·h,
// h = 1/geluSteps.
var geluTable = func() []struct{ phi, dphi float64 } {
	n := int((geluHi-geluLo)*geluSteps) + 2
	t := make([]struct{ phi, dphi float64 }, n)
	for i := range t {
		x := geluLo + float64(i)/geluSteps
		t[i].phi = 0.5 * math.Erfc(-x/math.Sqrt2)
		t[i].dphi = math.Exp(-0.5*x*x) / math.Sqrt(2*math.Pi) / geluSteps
	}
	return t
}()

// quickGELU is x·sigmoid(1.702·x).
func quickGELU(x float32) float32 {
	v := float64(x)
	return float32(v / (1 + exp64(-1.702*v)))
}

// exp64 returns eˣ with a relative error below 1e-8 (far below float32
// rounding) for x in [-745, 709], 0 below and +Inf above. It is cheaper
// than math.Exp, which is more accurate than float32 results need.
func exp64(x float64) float64 {
	switch {
	case x < -745:
		return 0
	case x > 709:
		return math.Inf(1)
	case x != x:
		return x
	}
	const shift = 0x1.8p52 // adding and subtracting it rounds to an integer
	n := (x*math.Log2E + shift) - shift
	// r = x − n·ln 2 in two steps (Cody–Waite), |r| ≤ 0.35.
	r := x - n*0.6931471803691238 - n*1.9082149292705877e-10
	// Taylor series of eʳ to degree 8: error < 2e-10 relative.
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040+r*(1.0/40320))))))))
	e := int64(n)
	if e < -1022 { // subnormal result: scale in two steps
		return p * math.Float64frombits(uint64(e+1023+60)<<52) * 0x1p-60
	}
	return p * math.Float64frombits(uint64(e+1023)<<52)
}

// geluTanh is the tanh approximation 0.5·x·(1+tanh(√(2/π)·(x+0.044715·x³))).
func geluTanh(x float32) float32 {
	v := float64(x)
	const c = 0.7978845608028654 // √(2/π)
	return float32(0.5 * v * (1 + math.Tanh(c*(v+0.044715*v*v*v))))
}

// lnEps is the LayerNorm and BatchNorm epsilon of every TinyCLIP tower.
const lnEps = 1e-5

// layerNorm normalises each of the rows of src (w values each, contiguous)
// over its last dimension and writes γ·x̂+β to dst, which may be src.
// Mean and variance are accumulated in float64.
func layerNorm(dst, src []float32, rows, w int, g, b []float32) {
	g, b = g[:w], b[:w]
	for r := range rows {
		x := src[r*w : r*w+w]
		y := dst[r*w : r*w+w]
		var sum float64
		for _, v := range x {
			sum += float64(v)
		}
		mean := sum / float64(w)
		var ss float64
		for _, v := range x {
			d := float64(v) - mean
			ss += d * d
		}
		rstd := 1 / math.Sqrt(ss/float64(w)+lnEps)
		m32, r32 := float32(mean), float32(rstd)
		for i, v := range x {
			y[i] = (v-m32)*r32*g[i] + b[i]
		}
	}
}

// softmax replaces s by softmax(s).
func softmax(s []float32) {
	if len(s) == 0 {
		return
	}
	m := s[0]
	for _, v := range s[1:] {
		m = max(m, v)
	}
	var sum float64
	for i, v := range s {
		e := float32(exp64(float64(v - m)))
		s[i] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for i := range s {
		s[i] *= inv
	}
}

// avgPoolHWC averages k×k windows with stride k (no padding, floor) of a
// channels-last h×w×c map into dst, which holds (h/k)×(w/k)×c values.
func avgPoolHWC(dst, src []float32, h, w, c, k int) {
	oh, ow := h/k, w/k
	inv := 1 / float32(k*k)
	for oy := range oh {
		for ox := range ow {
			d := dst[(oy*ow+ox)*c : (oy*ow+ox+1)*c]
			clear(d)
			for dy := range k {
				for dx := range k {
					p := ((oy*k+dy)*w + ox*k + dx) * c
					addTo(d, src[p:p+c])
				}
			}
			for i := range d {
				d[i] *= inv
			}
		}
	}
}
