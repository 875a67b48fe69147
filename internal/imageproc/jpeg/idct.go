// Copyright 2026 The tinyclip-go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package jpeg

// This file replaces Go's inverse DCT (dct.go) by libjpeg's JDCT_ISLOW
// (jidctint.c): the Loeffler–Ligtenberg–Moschytz algorithm in 32-bit integer
// arithmetic with 13-bit constants, columns first keeping PASS1_BITS extra
// bits, then rows, and libjpeg's post-IDCT range-limit table. It is written
// from the published algorithm and constants, so that sample values equal
// libjpeg(-turbo)'s for every valid file.

const blockSize = 8 * 8

// block holds 64 coefficients (natural order) of one 8x8 block.
type block [blockSize]int32

// coefBlock holds the coefficients of a progressive image between scans, in
// 16 bits like libjpeg's JCOEF.
type coefBlock [blockSize]int16

const (
	constBits = 13
	pass1Bits = 2

	fix0_298631336 = 2446  // FIX(0.298631336)
	fix0_390180644 = 3196  // FIX(0.390180644)
	fix0_541196100 = 4433  // FIX(0.541196100)
	fix0_765366865 = 6270  // FIX(0.765366865)
	fix0_899976223 = 7373  // FIX(0.899976223)
	fix1_175875602 = 9633  // FIX(1.175875602)
	fix1_501321110 = 12299 // FIX(1.501321110)
	fix1_847759065 = 15137 // FIX(1.847759065)
	fix1_961570560 = 16069 // FIX(1.961570560)
	fix2_053119869 = 16819 // FIX(2.053119869)
	fix2_562915447 = 20995 // FIX(2.562915447)
	fix3_072711026 = 25172 // FIX(3.072711026)
)

// rangeLimit maps a centred IDCT output v (the sample minus 128), taken
// modulo 1024, to a sample: v+128 clamped to [0, 255] for -512 <= v < 512.
// Beyond that the table wraps, as libjpeg's does (jdmaster.c,
// prepare_range_limit_table); only corrupt data gets there.
var rangeLimit = func() (t [1024]uint8) {
	for x := range t {
		switch {
		case x < 128:
			t[x] = uint8(x + 128)
		case x < 512:
			t[x] = 255
		case x < 1024-128:
			t[x] = 0
		default:
			t[x] = uint8(x - (1024 - 128))
		}
	}
	return t
}()

// descale divides x by 2^n, rounding half up (libjpeg's DESCALE).
func descale(x int32, n uint) int32 {
	return (x + 1<<(n-1)) >> n
}

// idctISLOW computes the inverse DCT of the dequantized coefficients in b and
// writes the 8x8 samples to dst, stride bytes per row. b is overwritten.
func idctISLOW(b *block, dst []byte, stride int) {
	_ = dst[7*stride+7] // Bounds check hint.

	// Pass 1: process columns, store into b, scaled up by 2^pass1Bits.
	for c := 0; c < 8; c++ {
		if b[8*1+c] == 0 && b[8*2+c] == 0 && b[8*3+c] == 0 && b[8*4+c] == 0 &&
			b[8*5+c] == 0 && b[8*6+c] == 0 && b[8*7+c] == 0 {
			// AC terms all zero: the full computation gives the same value.
			dc := b[c] << pass1Bits
			for r := 0; r < 8; r++ {
				b[8*r+c] = dc
			}
			continue
		}
		t10, t11, t12, t13 := idctEven(b[8*0+c], b[8*2+c], b[8*4+c], b[8*6+c])
		t0, t1, t2, t3 := idctOdd(b[8*7+c], b[8*5+c], b[8*3+c], b[8*1+c])
		const n = constBits - pass1Bits
		b[8*0+c] = descale(t10+t3, n)
		b[8*7+c] = descale(t10-t3, n)
		b[8*1+c] = descale(t11+t2, n)
		b[8*6+c] = descale(t11-t2, n)
		b[8*2+c] = descale(t12+t1, n)
		b[8*5+c] = descale(t12-t1, n)
		b[8*3+c] = descale(t13+t0, n)
		b[8*4+c] = descale(t13-t0, n)
	}

	// Pass 2: process rows, descale by 2^(constBits+pass1Bits+3) and range
	// limit into dst.
	for r := 0; r < 8; r++ {
		row := b[8*r : 8*r+8 : 8*r+8]
		out := dst[r*stride : r*stride+8 : r*stride+8]
		const n = constBits + pass1Bits + 3
		if row[1] == 0 && row[2] == 0 && row[3] == 0 && row[4] == 0 &&
			row[5] == 0 && row[6] == 0 && row[7] == 0 {
			v := rangeLimit[descale(row[0], pass1Bits+3)&1023]
			for x := range out {
				out[x] = v
			}
			continue
		}
		t10, t11, t12, t13 := idctEven(row[0], row[2], row[4], row[6])
		t0, t1, t2, t3 := idctOdd(row[7], row[5], row[3], row[1])
		out[0] = rangeLimit[descale(t10+t3, n)&1023]
		out[7] = rangeLimit[descale(t10-t3, n)&1023]
		out[1] = rangeLimit[descale(t11+t2, n)&1023]
		out[6] = rangeLimit[descale(t11-t2, n)&1023]
		out[2] = rangeLimit[descale(t12+t1, n)&1023]
		out[5] = rangeLimit[descale(t12-t1, n)&1023]
		out[3] = rangeLimit[descale(t13+t0, n)&1023]
		out[4] = rangeLimit[descale(t13-t0, n)&1023]
	}
}

// idctEven is the even part of the 1-D inverse DCT of inputs 0, 2, 4 and 6,
// scaled by 2^constBits: the sums tmp10, tmp11, tmp12 and tmp13 of jidctint.c.
func idctEven(x0, x2, x4, x6 int32) (t10, t11, t12, t13 int32) {
	z1 := (x2 + x6) * fix0_541196100
	e2 := z1 - x6*fix1_847759065
	e3 := z1 + x2*fix0_765366865
	e0 := (x0 + x4) << constBits
	e1 := (x0 - x4) << constBits
	return e0 + e3, e1 + e2, e1 - e2, e0 - e3
}

// idctOdd is the odd part of the 1-D inverse DCT of inputs 7, 5, 3 and 1,
// scaled by 2^constBits: tmp0..tmp3 of jidctint.c.
func idctOdd(t0, t1, t2, t3 int32) (o0, o1, o2, o3 int32) {
	z1 := t0 + t3
	z2 := t1 + t2
	z3 := t0 + t2
	z4 := t1 + t3
	z5 := (z3 + z4) * fix1_175875602

	t0 *= fix0_298631336
	t1 *= fix2_053119869
	t2 *= fix3_072711026
	t3 *= fix1_501321110
	z1 *= -fix0_899976223
	z2 *= -fix2_562915447
	z3 *= -fix1_961570560
	z4 *= -fix0_390180644

	z3 += z5
	z4 += z5

	return t0 + z1 + z3, t1 + z2 + z4, t2 + z2 + z3, t3 + z1 + z4
}
