//go:build amd64 && !noasm

#include "textflag.h"

// Micro-kernels for the GEMM of sgemm.go: c[i·ldc+j] += Σ_k a[k·mr+i]·b[k·nr+j]
// over kc ≥ 1 steps, for an mr×nr tile. Go wrappers in kernel_amd64.go check
// the slice bounds before calling them.

// AVX512_ROW(off, acc0, acc1) adds a[off/4]·(Z24, Z25) to two
// accumulators, broadcasting a[off/4] from memory inside the FMAs.
#define AVX512_ROW(off, acc0, acc1) \
	VFMADD231PS.BCST off(AX), Z24, acc0 \
	VFMADD231PS.BCST off(AX), Z25, acc1

// AVX512_STORE(acc0, acc1) adds two accumulators to 32 floats at DX and
// advances DX by one row.
#define AVX512_STORE(acc0, acc1) \
	VADDPS  (DX), acc0, acc0 \
	VMOVUPS acc0, (DX) \
	VADDPS  64(DX), acc1, acc1 \
	VMOVUPS acc1, 64(DX) \
	ADDQ    SI, DX

// func kernel12x32AVX512(kc int, a, b, c *float32, ldc int)
TEXT ·kernel12x32AVX512(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ b+16(FP), BX
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), SI
	SHLQ $2, SI
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23

loop512:
	VMOVUPS (BX), Z24
	VMOVUPS 64(BX), Z25
	AVX512_ROW(0, Z0, Z1)
	AVX512_ROW(4, Z2, Z3)
	AVX512_ROW(8, Z4, Z5)
	AVX512_ROW(12, Z6, Z7)
	AVX512_ROW(16, Z8, Z9)
	AVX512_ROW(20, Z10, Z11)
	AVX512_ROW(24, Z12, Z13)
	AVX512_ROW(28, Z14, Z15)
	AVX512_ROW(32, Z16, Z17)
	AVX512_ROW(36, Z18, Z19)
	AVX512_ROW(40, Z20, Z21)
	AVX512_ROW(44, Z22, Z23)
	ADDQ $48, AX
	ADDQ $128, BX
	DECQ CX
	JNZ  loop512

	AVX512_STORE(Z0, Z1)
	AVX512_STORE(Z2, Z3)
	AVX512_STORE(Z4, Z5)
	AVX512_STORE(Z6, Z7)
	AVX512_STORE(Z8, Z9)
	AVX512_STORE(Z10, Z11)
	AVX512_STORE(Z12, Z13)
	AVX512_STORE(Z14, Z15)
	AVX512_STORE(Z16, Z17)
	AVX512_STORE(Z18, Z19)
	AVX512_STORE(Z20, Z21)
	AVX512_STORE(Z22, Z23)
	VZEROUPPER
	RET

// AVX2_ROW(off, t, acc0, acc1) broadcasts a[off/4] into t and adds
// t·(Y12, Y13) to two accumulators.
#define AVX2_ROW(off, t, acc0, acc1) \
	VBROADCASTSS off(AX), t \
	VFMADD231PS  Y12, t, acc0 \
	VFMADD231PS  Y13, t, acc1

// AVX2_STORE(acc0, acc1) adds two accumulators to 16 floats at DX and
// advances DX by one row.
#define AVX2_STORE(acc0, acc1) \
	VADDPS  (DX), acc0, acc0 \
	VMOVUPS acc0, (DX) \
	VADDPS  32(DX), acc1, acc1 \
	VMOVUPS acc1, 32(DX) \
	ADDQ    SI, DX

// func kernel6x16AVX2(kc int, a, b, c *float32, ldc int)
TEXT ·kernel6x16AVX2(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ b+16(FP), BX
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), SI
	SHLQ $2, SI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

loop256:
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	AVX2_ROW(0, Y14, Y0, Y1)
	AVX2_ROW(4, Y15, Y2, Y3)
	AVX2_ROW(8, Y14, Y4, Y5)
	AVX2_ROW(12, Y15, Y6, Y7)
	AVX2_ROW(16, Y14, Y8, Y9)
	AVX2_ROW(20, Y15, Y10, Y11)
	ADDQ $24, AX
	ADDQ $64, BX
	DECQ CX
	JNZ  loop256

	AVX2_STORE(Y0, Y1)
	AVX2_STORE(Y2, Y3)
	AVX2_STORE(Y4, Y5)
	AVX2_STORE(Y6, Y7)
	AVX2_STORE(Y8, Y9)
	AVX2_STORE(Y10, Y11)
	VZEROUPPER
	RET
