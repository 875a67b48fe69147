package imageproc

import (
	"bytes"
	"encoding/binary"
	"image"

	"golang.org/x/image/webp"
)

// webpFeatures reads libwebp's has_alpha feature (WebPGetFeatures), which
// decides Pillow's mode (RGBA or RGB), and whether the file is animated.
// has_alpha is the VP8X alpha flag, overridden by the alpha hint of a
// lossless (VP8L) bitstream, and set by an ALPH chunk.
func webpFeatures(data []byte) (hasAlpha, animated bool, err error) {
	p := data[12:]
	for len(p) >= 8 {
		id := string(p[:4])
		n := uint64(binary.LittleEndian.Uint32(p[4:]))
		if n > uint64(len(p)-8) {
			return false, false, corruptf("WEBP: chunk %q truncated", id)
		}
		body := p[8 : 8+n]
		switch id {
		case "VP8X":
			if len(body) < 10 {
				return false, false, corruptf("WEBP: VP8X chunk too short")
			}
			hasAlpha = body[0]&0x10 != 0
			animated = body[0]&0x02 != 0
			if animated {
				return hasAlpha, true, nil
			}
		case "ALPH":
			hasAlpha = true
		case "VP8L":
			if len(body) < 5 || body[0] != 0x2f {
				return false, false, corruptf("WEBP: invalid VP8L header")
			}
			hasAlpha = binary.LittleEndian.Uint32(body[1:])>>28&1 != 0
			return hasAlpha, false, nil
		case "VP8 ":
			return hasAlpha, false, nil
		}
		next := 8 + n + n&1 // chunks are padded to an even size
		if next > uint64(len(p)) {
			break
		}
		p = p[next:]
	}
	return false, false, corruptf("WEBP: no image data chunk")
}

func webpConfig(data []byte) (Config, error) {
	hasAlpha, animated, err := webpFeatures(data)
	if err != nil {
		return Config{}, err
	}
	if animated {
		return Config{}, unsupportedf("WEBP: animated WebP")
	}
	c, err := webp.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return Config{}, err
	}
	mode := ModeRGB
	if hasAlpha {
		mode = ModeRGBA
	}
	return Config{Mode: mode, Width: c.Width, Height: c.Height}, nil
}

// decodeWebP decodes with x/image/webp. Lossless images are used as they
// are; lossy ones are converted from the Y'CbCr planes with libwebp's fancy
// upsampler and its VP8 YUV→RGB formulas, as Pillow's libwebp does.
func decodeWebP(data []byte, cfg Config) (*Image, error) {
	src, err := webp.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	b := src.Bounds()
	if b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, corruptf("WEBP: decoded size %dx%d, header says %dx%d", b.Dx(), b.Dy(), cfg.Width, cfg.Height)
	}
	m := newImage(cfg.Mode, cfg.Width, cfg.Height)
	switch s := src.(type) {
	case *image.NRGBA:
		if err := samplesFrom(m, s); err != nil {
			return nil, corruptf("WEBP: %v", err)
		}
	case *image.YCbCr:
		if err := vp8ToRGB(m, s, nil, 0); err != nil {
			return nil, err
		}
	case *image.NYCbCrA:
		if err := vp8ToRGB(m, &s.YCbCr, s.A, s.AStride); err != nil {
			return nil, err
		}
	default:
		return nil, corruptf("WEBP: unexpected decoded type %T", src)
	}
	return m, nil
}

// vp8ToRGB converts 4:2:0 VP8 planes into m (RGB or RGBA) with libwebp's
// UpsampleRgbaLinePair and VP8YuvToRgb. alpha, if not nil, is the alpha
// plane (astride bytes per row); without it alpha is 255.
func vp8ToRGB(m *Image, src *image.YCbCr, alpha []byte, astride int) error {
	w, h := m.Width, m.Height
	cw, ch := (w+1)/2, (h+1)/2
	if src.SubsampleRatio != image.YCbCrSubsampleRatio420 ||
		len(src.Y) < (h-1)*src.YStride+w || len(src.Cb) < (ch-1)*src.CStride+cw || len(src.Cr) < (ch-1)*src.CStride+cw ||
		(alpha != nil && len(alpha) < (h-1)*astride+w) {
		return corruptf("WEBP: unexpected plane layout")
	}
	nc := m.Mode.Channels()
	u := make([]uint8, w)
	v := make([]uint8, w)
	for y := 0; y < h; y++ {
		// Output row y lies between chroma rows near and far: row 0 uses row
		// 0 twice, rows 2j-1 and 2j use rows j-1 and j (clamped at the bottom).
		near, far := 0, 0
		if y > 0 {
			j := (y + 1) / 2
			if y&1 == 1 {
				near, far = j-1, min(j, ch-1)
			} else {
				near, far = j, j-1
			}
		}
		upsampleVP8Row(u, src.Cb[near*src.CStride:], src.Cb[far*src.CStride:], w)
		upsampleVP8Row(v, src.Cr[near*src.CStride:], src.Cr[far*src.CStride:], w)
		yrow := src.Y[y*src.YStride : y*src.YStride+w]
		out := m.Pix[y*w*nc : (y+1)*w*nc]
		for x := 0; x < w; x++ {
			yy, uu, vv := int(yrow[x]), int(u[x]), int(v[x])
			yh := mulHi(yy, 19077)
			out[x*nc+0] = clip6(yh + mulHi(vv, 26149) - 14234)
			out[x*nc+1] = clip6(yh - mulHi(uu, 6419) - mulHi(vv, 13320) + 8708)
			out[x*nc+2] = clip6(yh + mulHi(uu, 33050) - 17685)
			if nc == 4 {
				if alpha != nil {
					out[x*nc+3] = alpha[y*astride+x]
				} else {
					out[x*nc+3] = 255
				}
			}
		}
	}
	return nil
}

// upsampleVP8Row interpolates one output row of w chroma samples from the
// nearer and the farther chroma row, as libwebp's fancy upsampler does.
func upsampleVP8Row(dst, near, far []uint8, w int) {
	dst[0] = uint8((3*int(near[0]) + int(far[0]) + 2) >> 2)
	last := (w - 1) >> 1
	for x := 1; x <= last; x++ {
		tl, t, l, c := int(near[x-1]), int(near[x]), int(far[x-1]), int(far[x])
		avg := tl + t + l + c + 8
		d12 := (avg + 2*(t+l)) >> 3
		d03 := (avg + 2*(tl+c)) >> 3
		dst[2*x-1] = uint8((d12 + tl) >> 1)
		dst[2*x] = uint8((d03 + t) >> 1)
	}
	if w&1 == 0 {
		dst[w-1] = uint8((3*int(near[last]) + int(far[last]) + 2) >> 2)
	}
}

func mulHi(v, k int) int { return (v * k) >> 8 }

// clip6 is libwebp's VP8Clip8: a 14-bit fixed-point value to 8 bits.
func clip6(v int) uint8 {
	if v&^16383 == 0 {
		return uint8(v >> 6)
	}
	if v < 0 {
		return 0
	}
	return 255
}
