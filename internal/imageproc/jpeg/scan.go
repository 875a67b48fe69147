// Copyright 2012 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package jpeg

// compSize returns the size in samples of component i's meaningful area:
// ⌈width·h/hmax⌉ × ⌈height·v/vmax⌉ (libjpeg's downsampled_width and height).
func (d *decoder) compSize(i int) (w, h int) {
	w = (d.width*d.comp[i].h + d.hmax - 1) / d.hmax
	h = (d.height*d.comp[i].v + d.vmax - 1) / d.vmax
	return w, h
}

// makeImg allocates the component planes, covering mxx × myy MCUs.
func (d *decoder) makeImg(mxx, myy int) {
	for i := 0; i < d.nComp; i++ {
		bw, bh := mxx*d.comp[i].h, myy*d.comp[i].v
		d.strides[i] = 8 * bw
		d.planes[i] = make([]byte, 64*bw*bh)
	}
}

// Specified in section B.2.3.
func (d *decoder) processSOS(n int) error {
	if d.nComp == 0 {
		return FormatError("missing SOF marker")
	}
	if n < 6 || 4+2*d.nComp < n || n%2 != 0 {
		return FormatError("SOS has wrong length")
	}
	if err := d.readFull(d.tmp[:n]); err != nil {
		return err
	}
	nComp := int(d.tmp[0])
	if n != 4+2*nComp {
		return FormatError("SOS length inconsistent with number of components")
	}
	var scan [maxComponents]scanComp
	totalHV := 0
	for i := 0; i < nComp; i++ {
		cs := d.tmp[1+2*i] // Component selector.
		compIndex := -1
		for j, comp := range d.comp[:d.nComp] {
			if cs == comp.c {
				compIndex = j
			}
		}
		if compIndex < 0 {
			return FormatError("unknown component selector")
		}
		scan[i].compIndex = uint8(compIndex)
		// Section B.2.3 states that "the value of Cs_j shall be different from
		// the values of Cs_1 through Cs_(j-1)". Since we have previously
		// verified that a frame's component identifiers (C_i values in section
		// B.2.2) are unique, it suffices to check that the implicit indexes
		// into d.comp are unique.
		for j := 0; j < i; j++ {
			if scan[i].compIndex == scan[j].compIndex {
				return FormatError("repeated component selector")
			}
		}
		totalHV += d.comp[compIndex].h * d.comp[compIndex].v

		// The baseline t <= 1 restriction is specified in table B.3.
		scan[i].td = d.tmp[2+2*i] >> 4
		if t := scan[i].td; t > maxTh || (d.baseline && t > 1) {
			return FormatError("bad Td value")
		}
		scan[i].ta = d.tmp[2+2*i] & 0x0f
		if t := scan[i].ta; t > maxTh || (d.baseline && t > 1) {
			return FormatError("bad Ta value")
		}
	}
	// Section B.2.3 states that if there is more than one component then the
	// total H*V values in a scan must be <= 10.
	if nComp > 1 && totalHV > 10 {
		return FormatError("total sampling factors too large")
	}

	// zigStart and zigEnd are the spectral selection bounds.
	// ah and al are the successive approximation high and low values.
	// The spec calls these values Ss, Se, Ah and Al.
	//
	// For progressive JPEGs, these are the two more-or-less independent
	// aspects of progression. Spectral selection progression is when not
	// all of a block's 64 DCT coefficients are transmitted in one pass.
	// For example, three passes could transmit coefficient 0 (the DC
	// component), coefficients 1-5, and coefficients 6-63, in zig-zag
	// order. Successive approximation is when not all of the bits of a
	// band of coefficients are transmitted in one pass. For example,
	// three passes could transmit the 6 most significant bits, followed
	// by the second-least significant bit, followed by the least
	// significant bit.
	//
	// For sequential JPEGs, these parameters are hard-coded to 0/63/0/0, as
	// per table B.3.
	zigStart, zigEnd, ah, al := int32(0), int32(blockSize-1), uint32(0), uint32(0)
	if d.progressive {
		zigStart = int32(d.tmp[1+2*nComp])
		zigEnd = int32(d.tmp[2+2*nComp])
		ah = uint32(d.tmp[3+2*nComp] >> 4)
		al = uint32(d.tmp[3+2*nComp] & 0x0f)
		if (zigStart == 0 && zigEnd != 0) || zigStart > zigEnd || blockSize <= zigEnd {
			return FormatError("bad spectral selection bounds")
		}
		if zigStart != 0 && nComp != 1 {
			return FormatError("progressive AC coefficients for more than one component")
		}
		if ah != 0 && ah != al+1 {
			return FormatError("bad successive approximation values")
		}
	}

	// mxx and myy are the number of MCUs (Minimum Coded Units) in the image.
	mxx := (d.width + 8*d.hmax - 1) / (8 * d.hmax)
	myy := (d.height + 8*d.vmax - 1) / (8 * d.vmax)
	if d.planes[0] == nil {
		d.makeImg(mxx, myy)
	}
	if d.progressive {
		for i := 0; i < nComp; i++ {
			compIndex := scan[i].compIndex
			if d.progCoeffs[compIndex] == nil {
				d.progCoeffs[compIndex] = make([]coefBlock, mxx*myy*d.comp[compIndex].h*d.comp[compIndex].v)
			}
		}
	}
	d.bits = bits{}
	st := scanState{zigStart: zigStart, zigEnd: zigEnd, ah: ah, al: al}

	// An interleaved scan (nComp > 1) is a sequence of MCUs, each holding
	// h×v blocks of every component in the scan. For a 4:2:0 image 32x16
	// pixels wide, the Y blocks visiting order is:
	//	0 1 4 5
	//	2 3 6 7
	//
	// In a non-interleaved scan (nComp == 1, always the case for progressive
	// AC scans) every MCU is a single block, visited left to right, top to
	// bottom over the component's own block grid, which covers only the
	// blocks inside the image at the pixel level (section A.2.2). For
	// example, a 24x16 pixel 4:2:0 progressive image consists of two 16x16
	// MCUs. The interleaved scans will process 8 Y blocks:
	//	0 1 4 5
	//	2 3 6 7
	// The non-interleaved scans will process only 6 Y blocks:
	//	0 1 2
	//	3 4 5
	// Restart intervals count MCUs in either case.
	var nMCU, mcuW int
	if nComp == 1 {
		cw, ch := d.compSize(int(scan[0].compIndex))
		mcuW = (cw + 7) / 8
		nMCU = mcuW * ((ch + 7) / 8)
	} else {
		mcuW = mxx
		nMCU = mxx * myy
	}
	expectedRST := uint8(rst0Marker)
	for mcu := 0; mcu < nMCU; {
		mx, my := mcu%mcuW, mcu/mcuW
		for i := 0; i < nComp; i++ {
			compIndex := scan[i].compIndex
			hi := d.comp[compIndex].h
			vi := d.comp[compIndex].v
			if nComp == 1 {
				hi, vi = 1, 1
			}
			for j := 0; j < hi*vi; j++ {
				// bx and by are the location of the current block, in units of
				// 8x8 blocks: the third block in the first row has (bx, by) = (2, 0).
				bx := hi*mx + j%hi
				by := vi*my + j/hi
				if err := d.decodeBlock(&st, &scan[i], int(compIndex), bx, by, mxx); err != nil {
					return err
				}
			}
		}
		mcu++
		if d.ri > 0 && mcu%d.ri == 0 && mcu < nMCU {
			// For well-formed input, the RST[0-7] restart marker follows
			// immediately. For corrupt input, call findRST to try to
			// resynchronize.
			if err := d.readFull(d.tmp[:2]); err != nil {
				return err
			} else if d.tmp[0] != 0xff || d.tmp[1] != expectedRST {
				if err := d.findRST(expectedRST); err != nil {
					return err
				}
			}
			expectedRST++
			if expectedRST == rst7Marker+1 {
				expectedRST = rst0Marker
			}
			// Reset the Huffman decoder.
			d.bits = bits{}
			// Reset the DC components, as per section F.2.1.3.1.
			st.dc = [maxComponents]int32{}
			// Reset the progressive decoder state, as per section G.1.2.2.
			d.eobRun = 0
		}
	}
	return nil
}

// scanComp is a component of a scan with its Huffman table selectors.
type scanComp struct {
	compIndex uint8
	td        uint8 // DC table selector.
	ta        uint8 // AC table selector.
}

// scanState is the decoding state of one scan.
type scanState struct {
	// zigStart and zigEnd are the spectral selection bounds.
	// ah and al are the successive approximation high and low values.
	zigStart, zigEnd int32
	ah, al           uint32
	dc               [maxComponents]int32
}

// decodeBlock decodes the block (bx, by) of component compIndex, and for a
// sequential image reconstructs it into the component's plane. mxx is the
// number of MCUs per row.
func (d *decoder) decodeBlock(st *scanState, sc *scanComp, compIndex, bx, by, mxx int) error {
	// b is the decoded coefficients, in natural (not zig-zag) order.
	var b block
	// Load the previous partially decoded coefficients, if applicable.
	bi := by*mxx*d.comp[compIndex].h + bx
	if d.progressive {
		for k, c := range &d.progCoeffs[compIndex][bi] {
			b[k] = int32(c)
		}
	}
	zigStart, zigEnd, ah, al := st.zigStart, st.zigEnd, st.ah, st.al

	if ah != 0 {
		if err := d.refine(&b, &d.huff[acTable][sc.ta], zigStart, zigEnd, 1<<al); err != nil {
			return err
		}
	} else {
		zig := zigStart
		if zig == 0 {
			zig++
			// Decode the DC coefficient, as specified in section F.2.2.1.
			value, err := d.decodeHuffman(&d.huff[dcTable][sc.td])
			if err != nil {
				return err
			}
			if value > 16 {
				return UnsupportedError("excessive DC component")
			}
			dcDelta, err := d.receiveExtend(value)
			if err != nil {
				return err
			}
			st.dc[compIndex] += dcDelta
			b[0] = st.dc[compIndex] << al
		}

		if zig <= zigEnd && d.eobRun > 0 {
			d.eobRun--
		} else {
			// Decode the AC coefficients, as specified in section F.2.2.2.
			huff := &d.huff[acTable][sc.ta]
			for ; zig <= zigEnd; zig++ {
				value, err := d.decodeHuffman(huff)
				if err != nil {
					return err
				}
				val0 := value >> 4
				val1 := value & 0x0f
				if val1 != 0 {
					zig += int32(val0)
					if zig > zigEnd {
						break
					}
					ac, err := d.receiveExtend(val1)
					if err != nil {
						return err
					}
					b[unzig[zig]] = ac << al
				} else {
					if val0 != 0x0f {
						d.eobRun = uint16(1 << val0)
						if val0 != 0 {
							bits, err := d.decodeBits(int32(val0))
							if err != nil {
								return err
							}
							d.eobRun |= uint16(bits)
						}
						d.eobRun--
						break
					}
					zig += 0x0f
				}
			}
		}
	}

	if d.progressive {
		// Save the coefficients, as libjpeg does, in 16 bits. At this point,
		// we could call reconstructBlock to dequantize and perform the
		// inverse DCT, to save early stages of a progressive image, but the
		// decoder does not return until the entire image is decoded, so
		// reconstructBlock is called on each accumulated block by the
		// reconstructProgressiveImage method after all of the SOS markers are
		// processed.
		for k, c := range &b {
			d.progCoeffs[compIndex][bi][k] = int16(c)
		}
		return nil
	}
	return d.reconstructBlock(&b, bx, by, compIndex)
}

// refine decodes a successive approximation refinement block, as specified in
// section G.1.2.
func (d *decoder) refine(b *block, h *huffman, zigStart, zigEnd, delta int32) error {
	// Refining a DC component is trivial.
	if zigStart == 0 {
		if zigEnd != 0 {
			panic("unreachable")
		}
		bit, err := d.decodeBit()
		if err != nil {
			return err
		}
		if bit {
			b[0] |= delta
		}
		return nil
	}

	// Refining AC components is more complicated; see sections G.1.2.2 and G.1.2.3.
	zig := zigStart
	if d.eobRun == 0 {
	loop:
		for ; zig <= zigEnd; zig++ {
			z := int32(0)
			value, err := d.decodeHuffman(h)
			if err != nil {
				return err
			}
			val0 := value >> 4
			val1 := value & 0x0f

			switch val1 {
			case 0:
				if val0 != 0x0f {
					d.eobRun = uint16(1 << val0)
					if val0 != 0 {
						bits, err := d.decodeBits(int32(val0))
						if err != nil {
							return err
						}
						d.eobRun |= uint16(bits)
					}
					break loop
				}
			case 1:
				z = delta
				bit, err := d.decodeBit()
				if err != nil {
					return err
				}
				if !bit {
					z = -z
				}
			default:
				return FormatError("unexpected Huffman code")
			}

			zig, err = d.refineNonZeroes(b, zig, zigEnd, int32(val0), delta)
			if err != nil {
				return err
			}
			if zig > zigEnd {
				return FormatError("too many coefficients")
			}
			if z != 0 {
				b[unzig[zig]] = z
			}
		}
	}
	if d.eobRun > 0 {
		d.eobRun--
		if _, err := d.refineNonZeroes(b, zig, zigEnd, -1, delta); err != nil {
			return err
		}
	}
	return nil
}

// refineNonZeroes refines non-zero entries of b in zig-zag order. If nz >= 0,
// the first nz zero entries are skipped over.
func (d *decoder) refineNonZeroes(b *block, zig, zigEnd, nz, delta int32) (int32, error) {
	for ; zig <= zigEnd; zig++ {
		u := unzig[zig]
		if b[u] == 0 {
			if nz == 0 {
				break
			}
			nz--
			continue
		}
		bit, err := d.decodeBit()
		if err != nil {
			return 0, err
		}
		if !bit {
			continue
		}
		if b[u] >= 0 {
			b[u] += delta
		} else {
			b[u] -= delta
		}
	}
	return zig, nil
}

func (d *decoder) reconstructProgressiveImage() error {
	// Only the blocks inside the component's meaningful area are
	// reconstructed; the others lie in the MCU padding, which is never read.
	mxx := (d.width + 8*d.hmax - 1) / (8 * d.hmax)
	for i := 0; i < d.nComp; i++ {
		if d.progCoeffs[i] == nil {
			continue
		}
		cw, ch := d.compSize(i)
		stride := mxx * d.comp[i].h
		var b block
		for by := 0; by*8 < ch; by++ {
			for bx := 0; bx*8 < cw; bx++ {
				for k, c := range &d.progCoeffs[i][by*stride+bx] {
					b[k] = int32(c)
				}
				if err := d.reconstructBlock(&b, bx, by, i); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// reconstructBlock dequantizes, performs libjpeg's ISLOW inverse DCT and
// stores the block to the component's plane.
func (d *decoder) reconstructBlock(b *block, bx, by, compIndex int) error {
	qt := &d.quant[d.comp[compIndex].tq]
	for zig := 0; zig < blockSize; zig++ {
		// libjpeg holds coefficients as 16-bit JCOEF values.
		b[unzig[zig]] = int32(int16(b[unzig[zig]])) * qt[zig]
	}
	stride := d.strides[compIndex]
	idctISLOW(b, d.planes[compIndex][8*(by*stride+bx):], stride)
	return nil
}

// findRST advances past the next RST restart marker that matches expectedRST.
// Other than I/O errors, it is also an error if we encounter an {0xFF, M}
// two-byte marker sequence where M is not 0x00, 0xFF or the expectedRST.
//
// This is similar to libjpeg's jdmarker.c's next_marker function.
// https://github.com/libjpeg-turbo/libjpeg-turbo/blob/2dfe6c0fe9e18671105e94f7cbf044d4a1d157e6/jdmarker.c#L892-L935
//
// Precondition: d.tmp[:2] holds the next two bytes of JPEG-encoded input
// (input in the d.readFull sense).
func (d *decoder) findRST(expectedRST uint8) error {
	for {
		// i is the index such that, at the bottom of the loop, we read 2-i
		// bytes into d.tmp[i:2], maintaining the invariant that d.tmp[:2]
		// holds the next two bytes of JPEG-encoded input. It is either 0 or 1,
		// so that each iteration advances by 1 or 2 bytes (or returns).
		i := 0

		if d.tmp[0] == 0xff {
			if d.tmp[1] == expectedRST {
				return nil
			} else if d.tmp[1] == 0xff {
				i = 1
			} else if d.tmp[1] != 0x00 {
				// libjpeg's jdmarker.c's jpeg_resync_to_restart does something
				// fancy here, treating RST markers within two (modulo 8) of
				// expectedRST differently from RST markers that are 'more
				// distant'. Until we see evidence that recovering from such
				// cases is frequent enough to be worth the complexity, we take
				// a simpler approach for now. Any marker that's not 0x00, 0xff
				// or expectedRST is a fatal FormatError.
				return FormatError("bad RST marker")
			}

		} else if d.tmp[1] == 0xff {
			d.tmp[0] = 0xff
			i = 1
		}

		if err := d.readFull(d.tmp[i:2]); err != nil {
			return err
		}
	}
}
