// Macros shared by kernel_amd64.s and bf16_amd64.s (AVX-512 GEMM tiles).

#define FLAG_LOAD 1
#define FLAG_BIAS 2
#define FLAG_RELU 4

// Rows 0–11 of the A strip: four bases R9..R12 (3 rows apart) and the row
// stride R8 (bytes).
#define A0 (R9)
#define A1 (R9)(R8*1)
#define A2 (R9)(R8*2)
#define A3 (R10)
#define A4 (R10)(R8*1)
#define A5 (R10)(R8*2)
#define A6 (R11)
#define A7 (R11)(R8*1)
#define A8 (R11)(R8*2)
#define A9 (R12)
#define A10 (R12)(R8*1)
#define A11 (R12)(R8*2)

// PREFETCH_B2 / PREFETCH_B1 ask for the B panel 4 KiB ahead of R15 (two
// cache lines for a 128- or 96-byte k step, one for a 64- or 32-byte one)
// into L2. A product of a few rows (a text, a batch-1 pooled row) streams B
// from DRAM, where the hardware prefetcher alone stays too close (measured
// with BenchmarkEncodeTextResNet19M, a 9-token Text-19M text: 6.4–7.0 →
// 5.2–5.8 ms at one thread; 4 KiB ahead beat 1, 2 and 8 KiB, and L2 beat
// L1 as the target); where B is reused from cache, the prefetch hits and
// costs a load slot (ViT image towers: no slower, ViT-40M/32 5 % faster).
#define PREFETCH_B2 \
	PREFETCHT1 4096(R15) \
	PREFETCHT1 4160(R15)

#define PREFETCH_B1 \
	PREFETCHT1 4096(R15)

#define FMA2(mem, acc0, acc1) \
	VFMADD231PS.BCST mem, Z24, acc0 \
	VFMADD231PS.BCST mem, Z25, acc1

#define FMA1(mem, acc0) \
	VFMADD231PS.BCST mem, Z24, acc0

// Store two accumulators (+ bias Z26/Z27, then max with Z30: 0 for a fused
// ReLU, −∞ otherwise; the accumulator is VMAXPS's second source, so a NaN
// stays NaN) to the row at DX, masks K1/K2.
#define ST2_NEW(acc0, acc1) \
	VADDPS  Z26, acc0, acc0 \
	VADDPS  Z27, acc1, acc1 \
	VMAXPS  acc0, Z30, acc0 \
	VMAXPS  acc1, Z30, acc1 \
	VMOVUPS acc0, K1, (DX) \
	VMOVUPS acc1, K2, 64(DX) \
	ADDQ    SI, DX

#define ST2_ACC(acc0, acc1) \
	VMOVUPS.Z (DX), K1, Z28 \
	VMOVUPS.Z 64(DX), K2, Z29 \
	VADDPS    Z28, acc0, acc0 \
	VADDPS    Z29, acc1, acc1 \
	VADDPS    Z26, acc0, acc0 \
	VADDPS    Z27, acc1, acc1 \
	VMAXPS    acc0, Z30, acc0 \
	VMAXPS    acc1, Z30, acc1 \
	VMOVUPS   acc0, K1, (DX) \
	VMOVUPS   acc1, K2, 64(DX) \
	ADDQ      SI, DX

#define ST1_NEW(acc0) \
	VADDPS  Z26, acc0, acc0 \
	VMAXPS  acc0, Z30, acc0 \
	VMOVUPS acc0, K1, (DX) \
	ADDQ    SI, DX

#define ST1_ACC(acc0) \
	VMOVUPS.Z (DX), K1, Z28 \
	VADDPS    Z28, acc0, acc0 \
	VADDPS    Z26, acc0, acc0 \
	VMAXPS    acc0, Z30, acc0 \
	VMOVUPS   acc0, K1, (DX) \
	ADDQ      SI, DX

// SETUP loads the arguments common to both AVX-512 kernels:
// CX kc, R9 a, R8 lda (bytes), BX b, DX c, SI ldc (bytes), DI strips,
// R13 flags, K1/K2 column masks, Z26/Z27 bias (or zero).
#define SETUP \
	MOVQ kc+0(FP), CX \
	MOVQ a+8(FP), R9 \
	MOVQ lda+16(FP), R8 \
	SHLQ $2, R8 \
	MOVQ b+24(FP), BX \
	MOVQ c+32(FP), DX \
	MOVQ ldc+40(FP), SI \
	SHLQ $2, SI \
	MOVQ strips+48(FP), DI \
	MOVQ flags+64(FP), R13 \
	MOVQ mask+72(FP), AX \
	KMOVW AX, K1 \
	SHRQ $16, AX \
	KMOVW AX, K2 \
	VPXORD Z26, Z26, Z26 \
	VPXORD Z27, Z27, Z27 \
	VPXORD Z30, Z30, Z30 \
	TESTQ $FLAG_RELU, R13 \
	JNZ  relu \
	MOVL $0xFF800000, AX \
	VPBROADCASTD AX, Z30 \
relu: \
	TESTQ $FLAG_BIAS, R13 \
	JZ   nobias \
	MOVQ bias+56(FP), AX \
	VMOVUPS.Z (AX), K1, Z26 \
	VMOVUPS.Z 64(AX), K2, Z27 \
nobias:


// Stores of a 24-column tile: a zmm (columns 0–15, mask K1) and a ymm
// accumulator (columns 16–23, mask K2; bias Y27, clamp Y30).
#define ST3_NEW(accz, accy) \
	VADDPS  Z26, accz, accz \
	VADDPS  Y27, accy, accy \
	VMAXPS  accz, Z30, accz \
	VMAXPS  accy, Y30, accy \
	VMOVUPS accz, K1, (DX) \
	VMOVUPS accy, K2, 64(DX) \
	ADDQ    SI, DX

#define ST3_ACC(accz, accy) \
	VMOVUPS.Z (DX), K1, Z28 \
	VMOVUPS.Z 64(DX), K2, Y29 \
	VADDPS    Z28, accz, accz \
	VADDPS    Y29, accy, accy \
	VADDPS    Z26, accz, accz \
	VADDPS    Y27, accy, accy \
	VMAXPS    accz, Z30, accz \
	VMAXPS    accy, Y30, accy \
	VMOVUPS   accz, K1, (DX) \
	VMOVUPS   accy, K2, 64(DX) \
	ADDQ      SI, DX
