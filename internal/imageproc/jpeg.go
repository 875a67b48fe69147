package imageproc

import (
	"bytes"
	"image/color"

	"github.com/tinyclip-go/tinyclip/internal/imageproc/jpeg"
)

func jpegConfig(data []byte) (Config, error) {
	c, err := jpeg.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return Config{}, err
	}
	var mode Mode
	switch c.ColorModel {
	case color.GrayModel:
		mode = ModeL
	case color.CMYKModel:
		mode = ModeCMYK
	default:
		mode = ModeRGB
	}
	return Config{Mode: mode, Width: c.Width, Height: c.Height}, nil
}

// decodeJPEG decodes with the libjpeg-exact fork and finishes as
// libjpeg-turbo does under Pillow: fancy upsampling of subsampled
// components, YCbCr→RGB with libjpeg's fixed-point tables, and for
// four-component files the CMYK values Pillow stores (its "CMYK;I" rawmode
// inverts what libjpeg returns).
func decodeJPEG(data []byte, cfg Config) (*Image, error) {
	raw, err := jpeg.DecodeRaw(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	w, h := raw.Width, raw.Height
	planes := make([][]byte, len(raw.Components))
	for i := range raw.Components {
		if planes[i], err = upsampleJPEG(&raw.Components[i], raw.MaxH, raw.MaxV, w, h); err != nil {
			return nil, err
		}
	}
	var m *Image
	switch raw.ColorSpace {
	case jpeg.Gray:
		m = &Image{Mode: ModeL, Width: w, Height: h, Pix: planes[0]}
	case jpeg.YCbCr, jpeg.RGB:
		m = newImage(ModeRGB, w, h)
		y, cb, cr := planes[0], planes[1], planes[2]
		if raw.ColorSpace == jpeg.RGB {
			for i := range y {
				m.Pix[3*i], m.Pix[3*i+1], m.Pix[3*i+2] = y[i], cb[i], cr[i]
			}
			break
		}
		for i := range y {
			m.Pix[3*i], m.Pix[3*i+1], m.Pix[3*i+2] = ycc.rgb(y[i], cb[i], cr[i])
		}
	case jpeg.CMYK, jpeg.YCCK:
		m = newImage(ModeCMYK, w, h)
		p0, p1, p2, k := planes[0], planes[1], planes[2], planes[3]
		for i := range p0 {
			o := m.Pix[4*i : 4*i+4 : 4*i+4]
			if raw.ColorSpace == jpeg.CMYK {
				o[0], o[1], o[2] = 255-p0[i], 255-p1[i], 255-p2[i]
			} else {
				// libjpeg returns C, M, Y = 255 − R, G, B; Pillow inverts them.
				o[0], o[1], o[2] = ycc.rgb(p0[i], p1[i], p2[i])
			}
			o[3] = 255 - k[i]
		}
	default:
		return nil, unsupportedf("JPEG: colour space %v", raw.ColorSpace)
	}
	if m.Mode != cfg.Mode {
		return nil, corruptf("JPEG: decoded mode %s, header says %s", m.Mode, cfg.Mode)
	}
	return m, nil
}

// upsampleJPEG expands component c to w×h samples as libjpeg-turbo's
// jdsample.c does with do_fancy_upsampling: the triangle filters h2v1,
// h1v2 and h2v2 (the first and last two only for planes wider than two
// samples), replication for every other integral ratio. Neighbours beyond
// the component's meaningful size are clamped to its edge.
func upsampleJPEG(c *jpeg.Component, maxH, maxV, w, h int) ([]byte, error) {
	hr, vr := maxH/c.H, maxV/c.V
	cw, ch := c.Width, c.Height
	if cw <= 0 || ch <= 0 || len(c.Pix) < (ch-1)*c.Stride+cw || cw*hr < w || ch*vr < h {
		return nil, corruptf("JPEG: unexpected component plane layout")
	}
	out := make([]byte, w*h)
	row := func(j int) []byte {
		j = max(0, min(j, ch-1))
		return c.Pix[j*c.Stride : j*c.Stride+cw]
	}
	switch {
	case hr == 1 && vr == 1:
		for y := 0; y < h; y++ {
			copy(out[y*w:(y+1)*w], row(y))
		}
	case hr == 2 && vr == 1 && cw > 2:
		for y := 0; y < h; y++ {
			h2v1(out[y*w:(y+1)*w], row(y))
		}
	case hr == 1 && vr == 2:
		for y := 0; y < h; y++ {
			j := y >> 1
			near, far, bias := row(j), row(j-1), 1
			if y&1 == 1 {
				far, bias = row(j+1), 2
			}
			o := out[y*w : (y+1)*w]
			for x := range o {
				o[x] = uint8((3*int(near[x]) + int(far[x]) + bias) >> 2)
			}
		}
	case hr == 2 && vr == 2 && cw > 2:
		sums := make([]int, cw)
		for y := 0; y < h; y++ {
			j := y >> 1
			near, far := row(j), row(j-1)
			if y&1 == 1 {
				far = row(j + 1)
			}
			for i := range sums {
				sums[i] = 3*int(near[i]) + int(far[i])
			}
			o := out[y*w : (y+1)*w]
			for i := 0; i < cw; i++ {
				s := 3 * sums[i]
				if x := 2 * i; x < w {
					o[x] = uint8((s + sums[max(i-1, 0)] + 8) >> 4)
				}
				if x := 2*i + 1; x < w {
					o[x] = uint8((s + sums[min(i+1, cw-1)] + 7) >> 4)
				}
			}
		}
	default:
		for y := 0; y < h; y++ {
			src := row(y / vr)
			o := out[y*w : (y+1)*w]
			for x := range o {
				o[x] = src[x/hr]
			}
		}
	}
	return out, nil
}

// h2v1 doubles a row horizontally with libjpeg's triangle filter.
func h2v1(o, in []byte) {
	n := len(in)
	for i := 0; i < n; i++ {
		s := 3 * int(in[i])
		if x := 2 * i; x < len(o) {
			o[x] = uint8((s + int(in[max(i-1, 0)]) + 1) >> 2)
		}
		if x := 2*i + 1; x < len(o) {
			o[x] = uint8((s + int(in[min(i+1, n-1)]) + 2) >> 2)
		}
	}
}

// yccTables are libjpeg's YCbCr→RGB tables (jdcolor.c, build_ycc_rgb_table).
type yccTables struct {
	crR, cbB, crG, cbG [256]int32
}

var ycc = func() *yccTables {
	const scaleBits, oneHalf = 16, 1 << 15
	fix := func(x float64) int32 { return int32(x*(1<<scaleBits) + 0.5) }
	t := new(yccTables)
	for i := range 256 {
		x := int32(i - 128)
		t.crR[i] = (fix(1.40200)*x + oneHalf) >> scaleBits
		t.cbB[i] = (fix(1.77200)*x + oneHalf) >> scaleBits
		t.crG[i] = -fix(0.71414) * x
		t.cbG[i] = -fix(0.34414)*x + oneHalf
	}
	return t
}()

func (t *yccTables) rgb(y, cb, cr uint8) (r, g, b uint8) {
	yy := int32(y)
	return clamp8(yy + t.crR[cr]), clamp8(yy + (t.cbG[cb]+t.crG[cr])>>16), clamp8(yy + t.cbB[cb])
}

func clamp8(v int32) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}
