//go:build !amd64 || noasm

package engine

// hasVec reports whether the CPU runs the AVX-512 routines: never in this
// build. The functions below are never called; they keep vec.go portable.
const hasVec = false

func vexpShiftSum(x *float32, n int, shift float32) float32 { panic("engine: no AVX-512") }
func vmax(x *float32, n int) float32                        { panic("engine: no AVX-512") }
func vscale(x *float32, n int, s float32)                   { panic("engine: no AVX-512") }
func vrelu(x *float32, n int)                               { panic("engine: no AVX-512") }
func vgelu(x *float32, n int)                               { panic("engine: no AVX-512") }
func vquickgelu(x *float32, n int)                          { panic("engine: no AVX-512") }
func vsum(x *float32, n int) float32                        { panic("engine: no AVX-512") }
func vsumsqdev(x *float32, n int, mean float32) float32     { panic("engine: no AVX-512") }
func vlnapply(dst, x, gamma, beta *float32, n int, mean, rstd float32) {
	panic("engine: no AVX-512")
}
func vdot(a, b *float32, n int) float32 { panic("engine: no AVX-512") }

func vtobf16(dst *uint16, src *float32, n int) { panic("engine: no AVX-512") }

func vadd(dst, src *float32, n int) { panic("engine: no AVX-512") }

func vaxpy(dst, x *float32, n int, a float32) { panic("engine: no AVX-512") }

func vbf16pairs(dst *uint32, r0, r1 *float32, n int) { panic("engine: no AVX-512") }

func vsoftmaxbf16(dst *uint16, x *float32, n int) { panic("engine: no AVX-512") }
