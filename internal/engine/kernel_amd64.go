//go:build amd64 && !noasm

package engine

import (
	"os"

	"golang.org/x/sys/cpu"
)

//go:noescape
func kernel12x32AVX512(kc int, a, b, c *float32, ldc int)

//go:noescape
func kernel6x16AVX2(kc int, a, b, c *float32, ldc int)

// avx512Kernel holds a 12×32 tile in 24 zmm registers.
var avx512Kernel = &microKernel{name: "avx512", mr: 12, nr: 32, fn: func(kc int, a, b, c []float32, ldc int) {
	_, _, _ = a[12*kc-1], b[32*kc-1], c[11*ldc+31]
	kernel12x32AVX512(kc, &a[0], &b[0], &c[0], ldc)
}}

// avx2Kernel holds a 6×16 tile in 12 ymm registers.
var avx2Kernel = &microKernel{name: "avx2", mr: 6, nr: 16, fn: func(kc int, a, b, c []float32, ldc int) {
	_, _, _ = a[6*kc-1], b[16*kc-1], c[5*ldc+15]
	kernel6x16AVX2(kc, &a[0], &b[0], &c[0], ldc)
}}

// asmKernels lists the assembly kernels this CPU can run, fastest first.
func asmKernels() []*microKernel {
	var ks []*microKernel
	if cpu.X86.HasAVX512F {
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
