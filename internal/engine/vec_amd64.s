//go:build amd64 && !noasm

#include "textflag.h"

// AVX-512 element-wise routines of vec_amd64.go. Each processes n ≥ 0
// float32 values, 16 per step, the last partial step under a lane mask.
// Constants (vconst) are written with their values in comments.

DATA vconst<>+0(SB)/4, $0x3fb8aa3b // log2e = 1.4426950408889634
DATA vconst<>+4(SB)/4, $0x3f318000 // c1 = 0.693359375
DATA vconst<>+8(SB)/4, $0xb95e8083 // c2 = -0.00021219444
DATA vconst<>+12(SB)/4, $0x39506967 // p0 = 0.000198756915
DATA vconst<>+16(SB)/4, $0x3ab743ce // p1 = 0.0013981999507
DATA vconst<>+20(SB)/4, $0x3c088908 // p2 = 0.0083334519073
DATA vconst<>+24(SB)/4, $0x3d2aa9c1 // p3 = 0.041665795894
DATA vconst<>+28(SB)/4, $0x3e2aaaaa // p4 = 0.16666665459
DATA vconst<>+32(SB)/4, $0x3f000000 // p5 = 0.50000001201
DATA vconst<>+36(SB)/4, $0x3f800000 // one = 1.0
DATA vconst<>+40(SB)/4, $0x42b170a4 // hi = 88.72
DATA vconst<>+44(SB)/4, $0xc2ce0000 // lo = -103.0
DATA vconst<>+48(SB)/4, $0xbfd9db23 // qg = -1.702
DATA vconst<>+52(SB)/4, $0x3f000000 // half = 0.5
DATA vconst<>+56(SB)/4, $0x3f3504f3 // rsqrt2 = 0.7071067811865476
DATA vconst<>+60(SB)/4, $0x40800000 // four = 4.0
DATA vconst<>+64(SB)/4, $0xc0800000 // mfour = -4.0
DATA vconst<>+68(SB)/4, $0xbc83dbd4 // a1 = -0.0160960333262415
DATA vconst<>+72(SB)/4, $0xbb41a1f6 // a3 = -0.00295459980854025
DATA vconst<>+76(SB)/4, $0xba40ac63 // a5 = -0.000734990630326855
DATA vconst<>+80(SB)/4, $0xb86ec2d2 // a7 = -5.69250639462346e-05
DATA vconst<>+84(SB)/4, $0xb60cff51 // a9 = -2.10102402082508e-06
DATA vconst<>+88(SB)/4, $0x32edffee // a11 = 2.77068142495902e-08
DATA vconst<>+92(SB)/4, $0xaf95df0b // a13 = -2.72614225801306e-10
DATA vconst<>+96(SB)/4, $0xbc69b6a7 // b0 = -0.0142647390514189
DATA vconst<>+100(SB)/4, $0xbbf19bf8 // b2 = -0.00737332916720468
DATA vconst<>+104(SB)/4, $0xbadc924e // b4 = -0.00168282697438203
DATA vconst<>+108(SB)/4, $0xb95fbd29 // b6 = -0.000213374055278905
DATA vconst<>+112(SB)/4, $0xb77460cd // b8 = -1.45660718464996e-05
DATA vconst<>+116(SB)/4, $0xff800000 // ninf = -inf
GLOBL vconst<>(SB), RODATA|NOPTR, $120

// TAILMASK sets K1 to the low CX bits (CX < 16).
#define TAILMASK \
	MOVQ  $1, DX \
	SHLQ  CX, DX \
	DECQ  DX \
	KMOVW DX, K1

// EXPCONSTS loads the constants of EXP into Z16–Z27.
#define EXPCONSTS \
	VBROADCASTSS vconst<>+0(SB), Z16 \
	VBROADCASTSS vconst<>+4(SB), Z17 \
	VBROADCASTSS vconst<>+8(SB), Z18 \
	VBROADCASTSS vconst<>+12(SB), Z19 \
	VBROADCASTSS vconst<>+16(SB), Z20 \
	VBROADCASTSS vconst<>+20(SB), Z21 \
	VBROADCASTSS vconst<>+24(SB), Z22 \
	VBROADCASTSS vconst<>+28(SB), Z23 \
	VBROADCASTSS vconst<>+32(SB), Z24 \
	VBROADCASTSS vconst<>+36(SB), Z25 \
	VBROADCASTSS vconst<>+40(SB), Z26 \
	VBROADCASTSS vconst<>+44(SB), Z27

// EXP(x, n, t, z) replaces x by e^x (Cephes expf: range reduction by
// ln 2 in two parts, degree-7 polynomial, scaling by 2^n with VSCALEFPS);
// relative error ≈ 1 ulp. n, t, z are temporaries.
#define EXP(x, n, t, z) \
	VMINPS       Z26, x, x \
	VMAXPS       Z27, x, x \
	VMULPS       Z16, x, n \
	VRNDSCALEPS  $8, n, n \
	VFNMADD231PS Z17, n, x \
	VFNMADD231PS Z18, n, x \
	VMOVAPS      Z19, t \
	VFMADD213PS  Z20, x, t \
	VFMADD213PS  Z21, x, t \
	VFMADD213PS  Z22, x, t \
	VFMADD213PS  Z23, x, t \
	VFMADD213PS  Z24, x, t \
	VMULPS       x, x, z \
	VFMADD213PS  x, z, t \
	VADDPS       Z25, t, t \
	VSCALEFPS    n, t, x

// HSUM(z) leaves the sum of the 16 lanes of z (Z register name zz, Y yy,
// X xx) in the low lane of xx, using X1/Y1 as temporaries.
#define HSUM(zz, yy, xx) \
	VEXTRACTF64X4 $1, zz, Y1 \
	VADDPS        Y1, yy, yy \
	VEXTRACTF128  $1, yy, X1 \
	VADDPS        X1, xx, xx \
	VPERMILPS     $0x4E, xx, X1 \
	VADDPS        X1, xx, xx \
	VPERMILPS     $0xB1, xx, X1 \
	VADDPS        X1, xx, xx

#define HMAX(zz, yy, xx) \
	VEXTRACTF64X4 $1, zz, Y1 \
	VMAXPS        Y1, yy, yy \
	VEXTRACTF128  $1, yy, X1 \
	VMAXPS        X1, xx, xx \
	VPERMILPS     $0x4E, xx, X1 \
	VMAXPS        X1, xx, xx \
	VPERMILPS     $0xB1, xx, X1 \
	VMAXPS        X1, xx, xx

// func vexpShiftSum(x *float32, n int, shift float32) float32
// x[i] = e^(x[i]−shift); returns Σ x[i].
TEXT ·vexpShiftSum(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), AX
	MOVQ n+8(FP), CX
	VBROADCASTSS shift+16(FP), Z15
	EXPCONSTS
	VPXORD Z14, Z14, Z14
exploop:
	CMPQ CX, $16
	JLT  exptail
	VMOVUPS (AX), Z0
	VSUBPS  Z15, Z0, Z0
	EXP(Z0, Z2, Z3, Z4)
	VMOVUPS Z0, (AX)
	VADDPS  Z0, Z14, Z14
	ADDQ    $64, AX
	SUBQ    $16, CX
	JMP     exploop
exptail:
	TESTQ CX, CX
	JZ    expdone
	TAILMASK
	VMOVUPS.Z (AX), K1, Z0
	VSUBPS    Z15, Z0, Z0
	EXP(Z0, Z2, Z3, Z4)
	VMOVUPS   Z0, K1, (AX)
	VADDPS    Z0, Z14, K1, Z14
expdone:
	HSUM(Z14, Y14, X14)
	MOVSS X14, ret+24(FP)
	VZEROUPPER
	RET

// func vmax(x *float32, n int) float32 (n ≥ 1)
TEXT ·vmax(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), AX
	MOVQ n+8(FP), CX
	VBROADCASTSS vconst<>+116(SB), Z14
maxloop:
	CMPQ CX, $16
	JLT  maxtail
	VMAXPS (AX), Z14, Z14
	ADDQ   $64, AX
	SUBQ   $16, CX
	JMP    maxloop
maxtail:
	TESTQ CX, CX
	JZ    maxdone
	TAILMASK
	VBROADCASTSS vconst<>+116(SB), Z0
	VMOVUPS (AX), K1, Z0
	VMAXPS  Z0, Z14, Z14
maxdone:
	HMAX(Z14, Y14, X14)
	MOVSS X14, ret+16(FP)
	VZEROUPPER
	RET

// func vscale(x *float32, n int, s float32)
TEXT ·vscale(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), AX
	MOVQ n+8(FP), CX
	VBROADCASTSS s+16(FP), Z15
scaleloop:
	CMPQ CX, $16
	JLT  scaletail
	VMULPS  (AX), Z15, Z0
	VMOVUPS Z0, (AX)
	ADDQ    $64, AX
	SUBQ    $16, CX
	JMP     scaleloop
scaletail:
	TESTQ CX, CX
	JZ    scaledone
	TAILMASK
	VMOVUPS.Z (AX), K1, Z0
	VMULPS    Z15, Z0, Z0
	VMOVUPS   Z0, K1, (AX)
scaledone:
	VZEROUPPER
	RET

// func vrelu(x *float32, n int)
TEXT ·vrelu(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), AX
	MOVQ n+8(FP), CX
	VPXORD Z15, Z15, Z15
reluloop:
	CMPQ CX, $16
	JLT  relutail
	VMAXPS  (AX), Z15, Z0
	VMOVUPS Z0, (AX)
	ADDQ    $64, AX
	SUBQ    $16, CX
	JMP     reluloop
relutail:
	TESTQ CX, CX
	JZ    reludone
	TAILMASK
	VMOVUPS.Z (AX), K1, Z0
	VMAXPS    Z15, Z0, Z0
	VMOVUPS   Z0, K1, (AX)
reludone:
	VZEROUPPER
	RET

// QGELU(x): x / (1 + e^(−1.702·x)). Z13 = −1.702.
#define QGELU(x) \
	VMULPS Z13, x, Z5 \
	EXP(Z5, Z2, Z3, Z4) \
	VADDPS Z25, Z5, Z5 \
	VDIVPS Z5, x, x

// func vquickgelu(x *float32, n int)
TEXT ·vquickgelu(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), AX
	MOVQ n+8(FP), CX
	EXPCONSTS
	VBROADCASTSS vconst<>+48(SB), Z13
qgloop:
	CMPQ CX, $16
	JLT  qgtail
	VMOVUPS (AX), Z0
	QGELU(Z0)
	VMOVUPS Z0, (AX)
	ADDQ    $64, AX
	SUBQ    $16, CX
	JMP     qgloop
qgtail:
	TESTQ CX, CX
	JZ    qgdone
	TAILMASK
	VMOVUPS.Z (AX), K1, Z0
	QGELU(Z0)
	VMOVUPS   Z0, K1, (AX)
qgdone:
	VZEROUPPER
	RET

// GELU(x): 0.5·x·(1 + erf(x/√2)), erf as a rational function of degree
// 13/8 on [−4, 4] (±1 outside; Eigen's generic_fast_erf_float, absolute
// error < 2e-7).
#define GELU(x) \
	VMULPS      Z14, x, Z2 \
	VMINPS      Z15, Z2, Z2 \
	VMAXPS      Z16, Z2, Z2 \
	VMULPS      Z2, Z2, Z3 \
	VMOVAPS     Z17, Z4 \
	VFMADD213PS Z18, Z3, Z4 \
	VFMADD213PS Z19, Z3, Z4 \
	VFMADD213PS Z20, Z3, Z4 \
	VFMADD213PS Z21, Z3, Z4 \
	VFMADD213PS Z22, Z3, Z4 \
	VFMADD213PS Z23, Z3, Z4 \
	VMULPS      Z2, Z4, Z4 \
	VMOVAPS     Z24, Z5 \
	VFMADD213PS Z25, Z3, Z5 \
	VFMADD213PS Z26, Z3, Z5 \
	VFMADD213PS Z27, Z3, Z5 \
	VFMADD213PS Z28, Z3, Z5 \
	VDIVPS      Z5, Z4, Z4 \
	VADDPS      Z29, Z4, Z4 \
	VMULPS      Z30, x, x \
	VMULPS      Z4, x, x

// func vgelu(x *float32, n int)
TEXT ·vgelu(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), AX
	MOVQ n+8(FP), CX
	VBROADCASTSS vconst<>+56(SB), Z14
	VBROADCASTSS vconst<>+60(SB), Z15
	VBROADCASTSS vconst<>+64(SB), Z16
	VBROADCASTSS vconst<>+92(SB), Z17
	VBROADCASTSS vconst<>+88(SB), Z18
	VBROADCASTSS vconst<>+84(SB), Z19
	VBROADCASTSS vconst<>+80(SB), Z20
	VBROADCASTSS vconst<>+76(SB), Z21
	VBROADCASTSS vconst<>+72(SB), Z22
	VBROADCASTSS vconst<>+68(SB), Z23
	VBROADCASTSS vconst<>+112(SB), Z24
	VBROADCASTSS vconst<>+108(SB), Z25
	VBROADCASTSS vconst<>+104(SB), Z26
	VBROADCASTSS vconst<>+100(SB), Z27
	VBROADCASTSS vconst<>+96(SB), Z28
	VBROADCASTSS vconst<>+36(SB), Z29
	VBROADCASTSS vconst<>+52(SB), Z30
geluloop:
	CMPQ CX, $16
	JLT  gelutail
	VMOVUPS (AX), Z0
	GELU(Z0)
	VMOVUPS Z0, (AX)
	ADDQ    $64, AX
	SUBQ    $16, CX
	JMP     geluloop
gelutail:
	TESTQ CX, CX
	JZ    geludone
	TAILMASK
	VMOVUPS.Z (AX), K1, Z0
	GELU(Z0)
	VMOVUPS   Z0, K1, (AX)
geludone:
	VZEROUPPER
	RET

// func vsum(x *float32, n int) float32
TEXT ·vsum(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), AX
	MOVQ n+8(FP), CX
	VPXORD Z14, Z14, Z14
	VPXORD Z13, Z13, Z13
sumloop:
	CMPQ CX, $32
	JLT  sumone
	VADDPS (AX), Z14, Z14
	VADDPS 64(AX), Z13, Z13
	ADDQ   $128, AX
	SUBQ   $32, CX
	JMP    sumloop
sumone:
	CMPQ CX, $16
	JLT  sumtail
	VADDPS (AX), Z14, Z14
	ADDQ   $64, AX
	SUBQ   $16, CX
sumtail:
	TESTQ CX, CX
	JZ    sumdone
	TAILMASK
	VMOVUPS.Z (AX), K1, Z0
	VADDPS    Z0, Z13, Z13
sumdone:
	VADDPS Z13, Z14, Z14
	HSUM(Z14, Y14, X14)
	MOVSS X14, ret+16(FP)
	VZEROUPPER
	RET

// func vsumsqdev(x *float32, n int, mean float32) float32
// Returns Σ (x[i]−mean)².
TEXT ·vsumsqdev(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), AX
	MOVQ n+8(FP), CX
	VBROADCASTSS mean+16(FP), Z15
	VPXORD Z14, Z14, Z14
	VPXORD Z13, Z13, Z13
ssdloop:
	CMPQ CX, $32
	JLT  ssdone
	VSUBPS      (AX), Z15, Z0
	VSUBPS      64(AX), Z15, Z2
	VFMADD231PS Z0, Z0, Z14
	VFMADD231PS Z2, Z2, Z13
	ADDQ        $128, AX
	SUBQ        $32, CX
	JMP         ssdloop
ssdone:
	CMPQ CX, $16
	JLT  ssdtail
	VSUBPS      (AX), Z15, Z0
	VFMADD231PS Z0, Z0, Z14
	ADDQ        $64, AX
	SUBQ        $16, CX
ssdtail:
	TESTQ CX, CX
	JZ    ssddone
	TAILMASK
	VMOVUPS.Z   (AX), K1, Z0
	VSUBPS.Z    Z15, Z0, K1, Z0
	VFMADD231PS Z0, Z0, Z13
ssddone:
	VADDPS Z13, Z14, Z14
	HSUM(Z14, Y14, X14)
	MOVSS X14, ret+24(FP)
	VZEROUPPER
	RET

// func vlnapply(dst, x, gamma, beta *float32, n int, mean, rstd float32)
// dst[i] = (x[i]−mean)·rstd·g[i] + b[i].
TEXT ·vlnapply(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), AX
	MOVQ gamma+16(FP), BX
	MOVQ beta+24(FP), SI
	MOVQ n+32(FP), CX
	VBROADCASTSS mean+40(FP), Z15
	VBROADCASTSS rstd+44(FP), Z14
lnloop:
	CMPQ CX, $16
	JLT  lntail
	VMOVUPS     (AX), Z0
	VSUBPS      Z15, Z0, Z0
	VMULPS      Z14, Z0, Z0
	VMOVUPS     (SI), Z2
	VFMADD231PS (BX), Z0, Z2
	VMOVUPS     Z2, (DI)
	ADDQ        $64, AX
	ADDQ        $64, BX
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	JMP         lnloop
lntail:
	TESTQ CX, CX
	JZ    lndone
	TAILMASK
	VMOVUPS.Z   (AX), K1, Z0
	VMOVUPS.Z   (BX), K1, Z3
	VSUBPS      Z15, Z0, Z0
	VMULPS      Z14, Z0, Z0
	VMOVUPS.Z   (SI), K1, Z2
	VFMADD231PS Z3, Z0, Z2
	VMOVUPS     Z2, K1, (DI)
lndone:
	VZEROUPPER
	RET

// func vdot(a, b *float32, n int) float32
TEXT ·vdot(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), AX
	MOVQ b+8(FP), BX
	MOVQ n+16(FP), CX
	VPXORD Z14, Z14, Z14
	VPXORD Z13, Z13, Z13
	VPXORD Z12, Z12, Z12
	VPXORD Z11, Z11, Z11
dotloop:
	CMPQ CX, $64
	JLT  dotone
	VMOVUPS     (AX), Z0
	VMOVUPS     64(AX), Z2
	VMOVUPS     128(AX), Z3
	VMOVUPS     192(AX), Z4
	VFMADD231PS (BX), Z0, Z14
	VFMADD231PS 64(BX), Z2, Z13
	VFMADD231PS 128(BX), Z3, Z12
	VFMADD231PS 192(BX), Z4, Z11
	ADDQ        $256, AX
	ADDQ        $256, BX
	SUBQ        $64, CX
	JMP         dotloop
dotone:
	CMPQ CX, $16
	JLT  dottail
	VMOVUPS     (AX), Z0
	VFMADD231PS (BX), Z0, Z14
	ADDQ        $64, AX
	ADDQ        $64, BX
	SUBQ        $16, CX
	JMP         dotone
dottail:
	TESTQ CX, CX
	JZ    dotdone
	TAILMASK
	VMOVUPS.Z   (AX), K1, Z0
	VMOVUPS.Z   (BX), K1, Z2
	VFMADD231PS Z2, Z0, Z13
dotdone:
	VADDPS Z13, Z14, Z14
	VADDPS Z11, Z12, Z12
	VADDPS Z12, Z14, Z14
	HSUM(Z14, Y14, X14)
	MOVSS X14, ret+24(FP)
	VZEROUPPER
	RET

// func vtobf16(dst *uint16, src *float32, n int)
// dst[i] = src[i] rounded to BF16 (nearest, ties to even; NaN payloads are
// not preserved).
TEXT ·vtobf16(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVL $0x7FFF, AX
	VPBROADCASTD AX, Z15
	MOVL $1, AX
	VPBROADCASTD AX, Z14
bfloop:
	CMPQ CX, $16
	JLT  bftail
	VMOVDQU32 (SI), Z0
	VPSRLD    $16, Z0, Z1
	VPANDD    Z14, Z1, Z1
	VPADDD    Z15, Z0, Z0
	VPADDD    Z1, Z0, Z0
	VPSRLD    $16, Z0, Z0
	VPMOVDW   Z0, (DI)
	ADDQ      $64, SI
	ADDQ      $32, DI
	SUBQ      $16, CX
	JMP       bfloop
bftail:
	TESTQ CX, CX
	JZ    bfdone
	TAILMASK
	VMOVDQU32.Z (SI), K1, Z0
	VPSRLD      $16, Z0, Z1
	VPANDD      Z14, Z1, Z1
	VPADDD      Z15, Z0, Z0
	VPADDD      Z1, Z0, Z0
	VPSRLD      $16, Z0, Z0
	VPMOVDW     Z0, K1, (DI)
bfdone:
	VZEROUPPER
	RET

// func vadd(dst, src *float32, n int)
// dst[i] += src[i].
TEXT ·vadd(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
addloop:
	CMPQ CX, $16
	JLT  addtail
	VMOVUPS (DI), Z0
	VADDPS  (SI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     addloop
addtail:
	TESTQ CX, CX
	JZ    adddone
	TAILMASK
	VMOVUPS.Z (DI), K1, Z0
	VMOVUPS.Z (SI), K1, Z1
	VADDPS    Z1, Z0, Z0
	VMOVUPS   Z0, K1, (DI)
adddone:
	VZEROUPPER
	RET

// func vaxpy(dst, x *float32, n int, a float32)
// dst[i] += a·x[i].
TEXT ·vaxpy(SB), NOSPLIT, $0-28
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS a+24(FP), Z15
axpyloop:
	CMPQ        CX, $64
	JLT         axpyone
	VMOVUPS     (DI), Z0
	VMOVUPS     64(DI), Z1
	VMOVUPS     128(DI), Z2
	VMOVUPS     192(DI), Z3
	VFMADD231PS (SI), Z15, Z0
	VFMADD231PS 64(SI), Z15, Z1
	VFMADD231PS 128(SI), Z15, Z2
	VFMADD231PS 192(SI), Z15, Z3
	VMOVUPS     Z0, (DI)
	VMOVUPS     Z1, 64(DI)
	VMOVUPS     Z2, 128(DI)
	VMOVUPS     Z3, 192(DI)
	ADDQ        $256, SI
	ADDQ        $256, DI
	SUBQ        $64, CX
	JMP         axpyloop
axpyone:
	CMPQ        CX, $16
	JLT         axpytail
	VMOVUPS     (DI), Z0
	VFMADD231PS (SI), Z15, Z0
	VMOVUPS     Z0, (DI)
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	JMP         axpyone
axpytail:
	TESTQ       CX, CX
	JZ          axpydone
	TAILMASK
	VMOVUPS.Z   (DI), K1, Z0
	VMOVUPS.Z   (SI), K1, Z1
	VFMADD231PS Z1, Z15, Z0
	VMOVUPS     Z0, K1, (DI)
axpydone:
	VZEROUPPER
	RET

// BF16ROUND(z, t) rounds the float32 lanes of z to BF16 in place, leaving
// the BF16 in the upper 16 bits of each lane (lower bits garbage); t is a
// temporary. Needs Z14 = 1 and Z15 = 0x7FFF in every lane.
#define BF16ROUND(z, t) \
	VPSRLD $16, z, t \
	VPANDD Z14, t, t \
	VPADDD Z15, z, z \
	VPADDD t, z, z

// func vbf16pairs(dst *uint32, r0, r1 *float32, n int)
// dst[i] = bf16(r1[i])<<16 | bf16(r0[i]): the k-pair layout of a BF16
// panel, from two rows of a row-major matrix.
TEXT ·vbf16pairs(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ r0+8(FP), SI
	MOVQ r1+16(FP), BX
	MOVQ n+24(FP), CX
	MOVL $0x7FFF, AX
	VPBROADCASTD AX, Z15
	MOVL $1, AX
	VPBROADCASTD AX, Z14
	MOVL $0xFFFF0000, AX
	VPBROADCASTD AX, Z13
pairloop:
	CMPQ CX, $16
	JLT  pairtail
	VMOVDQU32 (SI), Z0
	VMOVDQU32 (BX), Z1
	BF16ROUND(Z0, Z2)
	BF16ROUND(Z1, Z3)
	VPSRLD    $16, Z0, Z0
	VPANDD    Z13, Z1, Z1
	VPORD     Z1, Z0, Z0
	VMOVDQU32 Z0, (DI)
	ADDQ      $64, SI
	ADDQ      $64, BX
	ADDQ      $64, DI
	SUBQ      $16, CX
	JMP       pairloop
pairtail:
	TESTQ CX, CX
	JZ    pairdone
	TAILMASK
	VMOVDQU32.Z (SI), K1, Z0
	VMOVDQU32.Z (BX), K1, Z1
	BF16ROUND(Z0, Z2)
	BF16ROUND(Z1, Z3)
	VPSRLD      $16, Z0, Z0
	VPANDD      Z13, Z1, Z1
	VPORD       Z1, Z0, Z0
	VMOVDQU32   Z0, K1, (DI)
pairdone:
	VZEROUPPER
	RET

// func vsoftmaxbf16(dst *uint16, x *float32, n int)
// x[i] = e^(x[i]−max x) (left unnormalised), dst[i] = BF16 of x[i]/Σ x
// (rounded to nearest even as vtobf16), for n ≥ 1: the three passes of
// vmax, vexpShiftSum and vscale, then vtobf16, in one call.
TEXT ·vsoftmaxbf16(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), BX
	VBROADCASTSS vconst<>+116(SB), Z14
	MOVQ SI, AX
	MOVQ BX, CX
smmax:
	CMPQ CX, $16
	JLT  smmaxtail
	VMAXPS (AX), Z14, Z14
	ADDQ   $64, AX
	SUBQ   $16, CX
	JMP    smmax
smmaxtail:
	TESTQ CX, CX
	JZ    smmaxdone
	TAILMASK
	VBROADCASTSS vconst<>+116(SB), Z0
	VMOVUPS      (AX), K1, Z0
	VMAXPS       Z0, Z14, Z14
smmaxdone:
	HMAX(Z14, Y14, X14)
	VBROADCASTSS X14, Z15
	EXPCONSTS
	VPXORD Z14, Z14, Z14
	MOVQ   SI, AX
	MOVQ   BX, CX
smexp:
	CMPQ CX, $16
	JLT  smexptail
	VMOVUPS (AX), Z0
	VSUBPS  Z15, Z0, Z0
	EXP(Z0, Z2, Z3, Z4)
	VMOVUPS Z0, (AX)
	VADDPS  Z0, Z14, Z14
	ADDQ    $64, AX
	SUBQ    $16, CX
	JMP     smexp
smexptail:
	TESTQ CX, CX
	JZ    smexpdone
	TAILMASK
	VMOVUPS.Z (AX), K1, Z0
	VSUBPS    Z15, Z0, Z0
	EXP(Z0, Z2, Z3, Z4)
	VMOVUPS   Z0, K1, (AX)
	VADDPS    Z0, Z14, K1, Z14
smexpdone:
	HSUM(Z14, Y14, X14)
	VMOVSS       vconst<>+36(SB), X13
	VDIVSS       X14, X13, X13
	VBROADCASTSS X13, Z13
	MOVL         $0x7FFF, AX
	VPBROADCASTD AX, Z12
	MOVL         $1, AX
	VPBROADCASTD AX, Z11
	MOVQ         SI, AX
	MOVQ         BX, CX
smsc:
	CMPQ CX, $16
	JLT  smsctail
	VMULPS    (AX), Z13, Z0
	VPSRLD    $16, Z0, Z1
	VPANDD    Z11, Z1, Z1
	VPADDD    Z12, Z0, Z0
	VPADDD    Z1, Z0, Z0
	VPSRLD    $16, Z0, Z0
	VPMOVDW   Z0, (DI)
	ADDQ      $64, AX
	ADDQ      $32, DI
	SUBQ      $16, CX
	JMP       smsc
smsctail:
	TESTQ CX, CX
	JZ    smdone
	TAILMASK
	VMOVUPS.Z (AX), K1, Z0
	VMULPS    Z13, Z0, Z0
	VPSRLD    $16, Z0, Z1
	VPANDD    Z11, Z1, Z1
	VPADDD    Z12, Z0, Z0
	VPADDD    Z1, Z0, Z0
	VPSRLD    $16, Z0, Z0
	VPMOVDW   Z0, K1, (DI)
smdone:
	VZEROUPPER
	RET
