//go:build amd64 && !noasm

package engine

import "golang.org/x/sys/cpu"

// The AVX-512 element-wise routines of vec_amd64.s; n may be 0.

//go:noescape
func vexpShiftSum(x *float32, n int, shift float32) float32

//go:noescape
func vmax(x *float32, n int) float32

//go:noescape
func vscale(x *float32, n int, s float32)

//go:noescape
func vrelu(x *float32, n int)

//go:noescape
func vgelu(x *float32, n int)

//go:noescape
func vquickgelu(x *float32, n int)

//go:noescape
func vsum(x *float32, n int) float32

//go:noescape
func vsumsqdev(x *float32, n int, mean float32) float32

//go:noescape
func vlnapply(dst, x, gamma, beta *float32, n int, mean, rstd float32)

//go:noescape
func vdot(a, b *float32, n int) float32

// hasVec reports whether the CPU runs the AVX-512 routines.
var hasVec = cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL

//go:noescape
func vtobf16(dst *uint16, src *float32, n int)

//go:noescape
func vadd(dst, src *float32, n int)

//go:noescape
func vaxpy(dst, x *float32, n int, a float32)

//go:noescape
func vbf16pairs(dst *uint32, r0, r1 *float32, n int)

//go:noescape
func vsoftmaxbf16(dst *uint16, x *float32, n int)
