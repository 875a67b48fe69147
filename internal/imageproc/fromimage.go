package imageproc

import (
	"image"
	"image/color"

	"github.com/tinyclip-go/tinyclip/internal/imageproc/jpeg"
)

// FromImage converts an already decoded Go image to the closest Pillow mode:
//
//	*image.Gray → L, *image.Gray16 → I, *image.Paletted → P (palette alpha
//	ignored), *image.CMYK → CMYK, *image.NRGBA → RGBA, *image.NRGBA64 → RGBA
//	(high bytes), *image.RGBA and *image.RGBA64 → RGB when opaque (high
//	bytes), *image.YCbCr → RGB and *image.NYCbCrA → RGBA (libjpeg's fancy
//	upsampling and YCbCr→RGB tables), anything else → RGB or RGBA through
//	color.NRGBAModel.
//
// The result is exactly what Decode gives for the same file only where this
// mapping is lossless: grey, paletted, CMYK and non-premultiplied images,
// and opaque RGBA. Premultiplied images with transparency lose colour
// precision when un-premultiplied, and Y'CbCr images carry the decoder's
// own IDCT (image/jpeg's differs from libjpeg's; use Decode on the file
// bytes for Pillow-exact JPEG and WebP).
func FromImage(src image.Image) *Image {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		return &Image{Mode: ModeRGB}
	}
	switch s := src.(type) {
	case *image.Gray:
		m := newImage(ModeL, w, h)
		copyPlane(m.Pix, w, s.Pix[s.PixOffset(b.Min.X, b.Min.Y):], s.Stride, 1)
		return m
	case *image.Gray16:
		m := newImage(ModeI, w, h)
		for y := 0; y < h; y++ {
			row := s.Pix[s.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				m.I[y*w+x] = int32(row[2*x])<<8 | int32(row[2*x+1])
			}
		}
		return m
	case *image.Paletted:
		m := newImage(ModeP, w, h)
		copyPlane(m.Pix, w, s.Pix[s.PixOffset(b.Min.X, b.Min.Y):], s.Stride, 1)
		m.Palette = make([][3]uint8, min(len(s.Palette), 256))
		for i := range m.Palette {
			c := color.NRGBAModel.Convert(s.Palette[i]).(color.NRGBA)
			m.Palette[i] = [3]uint8{c.R, c.G, c.B}
		}
		return m
	case *image.CMYK:
		m := newImage(ModeCMYK, w, h)
		copyPlane(m.Pix, w, s.Pix[s.PixOffset(b.Min.X, b.Min.Y):], s.Stride, 4)
		return m
	case *image.NRGBA:
		m := newImage(ModeRGBA, w, h)
		copyPlane(m.Pix, w, s.Pix[s.PixOffset(b.Min.X, b.Min.Y):], s.Stride, 4)
		return m
	case *image.NRGBA64:
		m := newImage(ModeRGBA, w, h)
		highBytes(m.Pix, w, h, s.Pix[s.PixOffset(b.Min.X, b.Min.Y):], s.Stride, 4)
		return m
	case *image.RGBA:
		if s.Opaque() {
			m := newImage(ModeRGB, w, h)
			for y := 0; y < h; y++ {
				row := s.Pix[s.PixOffset(b.Min.X, b.Min.Y+y):]
				for x := 0; x < w; x++ {
					copy(m.Pix[3*(y*w+x):3*(y*w+x)+3], row[4*x:4*x+3])
				}
			}
			return m
		}
	case *image.RGBA64:
		if s.Opaque() {
			m := newImage(ModeRGB, w, h)
			highBytes(m.Pix, w, h, s.Pix[s.PixOffset(b.Min.X, b.Min.Y):], s.Stride, 3)
			return m
		}
	case *image.YCbCr:
		if m := fromYCbCr(s, nil, 0); m != nil {
			return m
		}
	case *image.NYCbCrA:
		if m := fromYCbCr(&s.YCbCr, s.A[s.AOffset(b.Min.X, b.Min.Y):], s.AStride); m != nil {
			return m
		}
	}
	return fromAny(src)
}

// highBytes copies the high byte of the first nc 16-bit samples of each
// 4-sample pixel.
func highBytes(dst []byte, w, h int, src []byte, stride, nc int) {
	for y := 0; y < h; y++ {
		row := src[y*stride:]
		for x := 0; x < w; x++ {
			for c := 0; c < nc; c++ {
				dst[(y*w+x)*nc+c] = row[8*x+2*c]
			}
		}
	}
}

// fromYCbCr converts with libjpeg's upsampling and tables; it returns nil
// when the chroma planes are not aligned with the image origin.
func fromYCbCr(s *image.YCbCr, alpha []byte, astride int) *Image {
	b := s.Bounds()
	w, h := b.Dx(), b.Dy()
	var hr, vr int
	switch s.SubsampleRatio {
	case image.YCbCrSubsampleRatio444:
		hr, vr = 1, 1
	case image.YCbCrSubsampleRatio422:
		hr, vr = 2, 1
	case image.YCbCrSubsampleRatio420:
		hr, vr = 2, 2
	case image.YCbCrSubsampleRatio440:
		hr, vr = 1, 2
	case image.YCbCrSubsampleRatio411:
		hr, vr = 4, 1
	case image.YCbCrSubsampleRatio410:
		hr, vr = 4, 2
	default:
		return nil
	}
	if b.Min.X%hr != 0 || b.Min.Y%vr != 0 {
		return nil
	}
	luma := jpeg.Component{H: hr, V: vr, Width: w, Height: h, Stride: s.YStride, Pix: s.Y[s.YOffset(b.Min.X, b.Min.Y):]}
	cw, ch := (w+hr-1)/hr, (h+vr-1)/vr
	co := s.COffset(b.Min.X, b.Min.Y)
	cb := jpeg.Component{H: 1, V: 1, Width: cw, Height: ch, Stride: s.CStride, Pix: s.Cb[co:]}
	cr := cb
	cr.Pix = s.Cr[co:]
	var planes [3][]byte
	for i, c := range []*jpeg.Component{&luma, &cb, &cr} {
		p, err := upsampleJPEG(c, hr, vr, w, h)
		if err != nil {
			return nil
		}
		planes[i] = p
	}
	mode := ModeRGB
	if alpha != nil {
		mode = ModeRGBA
	}
	m := newImage(mode, w, h)
	nc := mode.Channels()
	for i := 0; i < w*h; i++ {
		m.Pix[nc*i], m.Pix[nc*i+1], m.Pix[nc*i+2] = ycc.rgb(planes[0][i], planes[1][i], planes[2][i])
		if alpha != nil {
			m.Pix[nc*i+3] = alpha[(i/w)*astride+i%w]
		}
	}
	return m
}

// fromAny converts any image through color.NRGBAModel, to RGB when every
// pixel is opaque and to RGBA otherwise.
func fromAny(src image.Image) *Image {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	m := newImage(ModeRGBA, w, h)
	opaque := true
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.NRGBAModel.Convert(src.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			i := 4 * (y*w + x)
			m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = c.R, c.G, c.B, c.A
			opaque = opaque && c.A == 255
		}
	}
	if !opaque {
		return m
	}
	rgb, _ := ConvertRGB(m)
	return rgb
}
