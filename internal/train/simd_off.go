//go:build !goexperiment.simd

package train

// SIMD reports whether the binary was built with GOEXPERIMENT=simd, which
// gives GoMLX's pure-Go backend its AVX-512/AVX2 matrix kernels (about 18×
// faster than the scalar fallback; design.md §3.2).
const SIMD = false
