//go:build amd64 && !noasm

package engine

import (
	"os"
	"unsafe"

	"golang.org/x/sys/cpu"
)

//go:noescape
func gemm12x32AVX512(kc int, a *float32, lda int, b, c *float32, ldc, strips int, bias *float32, flags, mask int)

//go:noescape
func gemm12x16AVX512(kc int, a *float32, lda int, b, c *float32, ldc, strips int, bias *float32, flags, mask int)

//go:noescape
func gemm8x32AVX512(kc int, a *float32, lda int, b, c *float32, ldc, strips int, bias *float32, flags, mask int)

//go:noescape
func gemm4x32AVX512(kc int, a *float32, lda int, b, c *float32, ldc, strips int, bias *float32, flags, mask int)

//go:noescape
func gemm12x24AVX512(kc int, a *float32, lda int, b, c *float32, ldc, strips int, bias *float32, flags, mask int)

//go:noescape
func gemm12x24ConvAVX512(kc int, a *float32, lda int, b, c *float32, ldc, strips int, bias *float32, flags, mask int, offs *int, ntaps int)

//go:noescape
func gemm12x32ConvAVX512(kc int, a *float32, lda int, b, c *float32, ldc, strips int, bias *float32, flags, mask int, offs *int, ntaps int)

//go:noescape
func gemm12x16ConvAVX512(kc int, a *float32, lda int, b, c *float32, ldc, strips int, bias *float32, flags, mask int, offs *int, ntaps int)

//go:noescape
func gemm6x16AVX2(kc int, a *float32, lda int, b, c *float32, ldc, strips int, bias *float32, flags, mask int)

//go:noescape
func gemm6x8AVX2(kc int, a *float32, lda int, b, c *float32, ldc, strips int, bias *float32, flags, mask int)

// checkTiles panics (a bug in sgemm, never bad input) unless the slices
// cover what a kernel call touches.
func checkTiles(mr, kc int, a []float32, lda int, b []float32, pw int, c []float32, ldc, strips int, bias []float32, flags, w int) {
	rows := strips * mr
	_ = a[(rows-1)*lda+kc-1]
	_ = b[kc*pw-1]
	_ = c[(rows-1)*ldc+w-1]
	if flags&gemmBias != 0 {
		_ = bias[w-1]
	}
}

func biasPtr(bias []float32, flags int) *float32 {
	if flags&gemmBias != 0 {
		return unsafe.SliceData(bias)
	}
	return nil
}

// avx512Kernel holds a 12×32 tile in 24 zmm registers (12×24 and 12×16
// for a narrow last panel) and masks partial columns.
var avx512Kernel = &microKernel{name: "avx512", mr: 12, nr: 32, lastWidths: []int{16, 24}, masked: true, relu: true, vec: true,
	fn: func(kc int, a []float32, lda int, b []float32, pw int, c []float32, ldc, strips int, bias []float32, flags, w int) {
		if kc <= 0 || strips <= 0 {
			return
		}
		checkTiles(12, kc, a, lda, b, pw, c, ldc, strips, bias, flags, w)
		mask := 1<<w - 1
		switch pw {
		case 32:
			gemm12x32AVX512(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, mask)
		case 24:
			gemm12x24AVX512(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, mask)
		default:
			gemm12x16AVX512(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, mask)
		}
	}}

// avx512Tail returns the fn of an AVX-512 kernel variant of rows rows
// (32-wide panels only).
func avx512Tail(rows int, f func(kc int, a *float32, lda int, b, c *float32, ldc, strips int, bias *float32, flags, mask int)) tailKernel {
	return tailKernel{rows: rows, fn: func(kc int, a []float32, lda int, b []float32, pw int, c []float32, ldc, strips int, bias []float32, flags, w int) {
		if kc <= 0 || strips <= 0 {
			return
		}
		if pw != 32 {
			panic("engine: tail kernel on a narrow panel")
		}
		checkTiles(rows, kc, a, lda, b, pw, c, ldc, strips, bias, flags, w)
		f(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, 1<<w-1)
	}}
}

// avx512Conv runs gemm12x32ConvAVX512 (gemm12x16ConvAVX512 for a 16-wide
// panel) after checking that every tap's rows lie inside a.
func avx512Conv(kc int, a []float32, lda int, offs []int, b []float32, pw int, c []float32, ldc, strips int, bias []float32, flags, w int) {
	if kc <= 0 || strips <= 0 || len(offs) == 0 {
		return
	}
	rows := strips * 12
	for _, o := range offs {
		if o < 0 || o%4 != 0 {
			panic("engine: bad tap offset")
		}
		_ = a[o/4+(rows-1)*lda+kc-1]
	}
	_ = b[len(offs)*kc*pw-1]
	_ = c[(rows-1)*ldc+w-1]
	if flags&gemmBias != 0 {
		_ = bias[w-1]
	}
	switch pw {
	case 32:
		gemm12x32ConvAVX512(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, 1<<w-1, &offs[0], len(offs))
	case 24:
		gemm12x24ConvAVX512(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, 1<<w-1, &offs[0], len(offs))
	default:
		gemm12x16ConvAVX512(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, 1<<w-1, &offs[0], len(offs))
	}
}

func init() {
	avx512Kernel.conv = avx512Conv
	avx512Kernel.tails = []tailKernel{avx512Tail(4, gemm4x32AVX512), avx512Tail(8, gemm8x32AVX512)}
}

// avx2Kernel holds a 6×16 tile in 12 ymm registers (6×8 for a narrow last
// panel).
var avx2Kernel = &microKernel{name: "avx2", mr: 6, nr: 16, lastWidths: []int{8},
	fn: func(kc int, a []float32, lda int, b []float32, pw int, c []float32, ldc, strips int, bias []float32, flags, w int) {
		if kc <= 0 || strips <= 0 {
			return
		}
		checkTiles(6, kc, a, lda, b, pw, c, ldc, strips, bias, flags, pw)
		if pw == 16 {
			gemm6x16AVX2(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, 0)
		} else {
			gemm6x8AVX2(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, 0)
		}
	}}

// asmKernels lists the assembly kernels this CPU can run, fastest first.
func asmKernels() []*microKernel {
	var ks []*microKernel
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL {
		ks = append(ks, avx512Kernel)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx2Kernel)
	}
	return ks
}

// defaultKernel returns the micro-kernel new models are built with: the
// fastest one the CPU supports, or the one named by TINYCLIP_KERNEL
// ("generic", "avx2", "avx512") when the CPU supports it.
func defaultKernel() *microKernel {
	ks := asmKernels()
	if want := os.Getenv("TINYCLIP_KERNEL"); want != "" {
		for _, k := range append(ks, genericKernel) {
			if k.name == want {
				return k
			}
		}
	}
	if len(ks) > 0 {
		return ks[0]
	}
	return genericKernel
}

//go:noescape
func gemmBF16x32(kc int, a *uint16, lda int, b *uint16, c *float32, ldc, strips int, bias *float32, flags, mask int)

//go:noescape
func gemmBF16x32r8(kc int, a *uint16, lda int, b *uint16, c *float32, ldc, strips int, bias *float32, flags, mask int)

//go:noescape
func gemmBF16x32r4(kc int, a *uint16, lda int, b *uint16, c *float32, ldc, strips int, bias *float32, flags, mask int)

//go:noescape
func gemmBF16x24(kc int, a *uint16, lda int, b *uint16, c *float32, ldc, strips int, bias *float32, flags, mask int)

//go:noescape
func gemmBF16x16(kc int, a *uint16, lda int, b *uint16, c *float32, ldc, strips int, bias *float32, flags, mask int)

// avx512BF16 is the BF16 variant of avx512Kernel (12×32 tiles, VDPBF16PS).
var avx512BF16 = &bf16Kernel{
	fn: func(kc int, a []uint16, lda int, b []uint16, pw int, c []float32, ldc, strips int, bias []float32, flags, w int) {
		if kc <= 0 || strips <= 0 {
			return
		}
		rows := strips * 12
		_ = a[(rows-1)*lda+2*kc-1]
		_ = b[2*kc*pw-1]
		_ = c[(rows-1)*ldc+w-1]
		if flags&gemmBias != 0 {
			_ = bias[w-1]
		}
		mask := 1<<w - 1
		switch pw {
		case 32:
			gemmBF16x32(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, mask)
		case 24:
			gemmBF16x24(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, mask)
		default:
			gemmBF16x16(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, mask)
		}
	}}

// bf16Tail32 wraps a BF16 kernel variant of rows rows (32-wide panels).
func bf16Tail32(rows int, f func(kc int, a *uint16, lda int, b *uint16, c *float32, ldc, strips int, bias *float32, flags, mask int)) bf16Tail {
	return bf16Tail{rows: rows, fn: func(kc int, a []uint16, lda int, b []uint16, pw int, c []float32, ldc, strips int, bias []float32, flags, w int) {
		if kc <= 0 || strips <= 0 {
			return
		}
		n := strips * rows
		_ = a[(n-1)*lda+2*kc-1]
		_ = b[2*kc*pw-1]
		_ = c[(n-1)*ldc+w-1]
		if flags&gemmBias != 0 {
			_ = bias[w-1]
		}
		if pw != 32 {
			panic("engine: tail kernel on a narrow panel")
		}
		f(kc, &a[0], lda, &b[0], &c[0], ldc, strips, biasPtr(bias, flags), flags, 1<<w-1)
	}}
}

func init() {
	avx512BF16.tails = []bf16Tail{bf16Tail32(4, gemmBF16x32r4), bf16Tail32(8, gemmBF16x32r8)}
	if cpu.X86.HasAVX512BF16 {
		avx512Kernel.bf16 = avx512BF16
	}
}
