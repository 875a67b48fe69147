package imageproc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
)

// pngHeader is what the chunks before the image data say.
type pngHeader struct {
	width, height int
	depth, ctype  int
	plte          []byte // PLTE chunk data, nil without one
}

// parsePNG reads IHDR and the chunks up to the first IDAT. Checksums are
// verified by image/png later.
func parsePNG(data []byte) (pngHeader, error) {
	var h pngHeader
	p := data[8:]
	first := true
	for len(p) >= 8 {
		n := binary.BigEndian.Uint32(p)
		typ := string(p[4:8])
		if n > 0x7fffffff || uint64(n)+12 > uint64(len(p)) {
			break // truncated: image/png reports it
		}
		body := p[8 : 8+n]
		if first {
			if typ != "IHDR" || n != 13 {
				return h, corruptf("PNG: first chunk is %q of %d bytes, want IHDR of 13", typ, n)
			}
			w := binary.BigEndian.Uint32(body[0:])
			ht := binary.BigEndian.Uint32(body[4:])
			if w == 0 || ht == 0 || w > 0x7fffffff || ht > 0x7fffffff {
				return h, corruptf("PNG: invalid size %dx%d", w, ht)
			}
			h.width, h.height = int(w), int(ht)
			h.depth, h.ctype = int(body[8]), int(body[9])
			first = false
		} else {
			switch typ {
			case "PLTE":
				h.plte = body
			case "IDAT", "IEND":
				return h, nil
			}
		}
		p = p[12+n:]
	}
	if first {
		return h, corruptf("PNG: missing IHDR chunk")
	}
	return h, nil
}

// pngMode maps a bit depth and colour type to the mode Pillow opens the file
// in (PngImagePlugin._MODES).
func pngMode(depth, ctype int) (Mode, bool) {
	switch ctype {
	case 0:
		switch depth {
		case 1:
			return Mode1, true
		case 2, 4, 8:
			return ModeL, true
		case 16:
			return ModeI, true
		}
	case 2:
		if depth == 8 || depth == 16 {
			return ModeRGB, true
		}
	case 3:
		if depth == 1 || depth == 2 || depth == 4 || depth == 8 {
			return ModeP, true
		}
	case 4:
		switch depth {
		case 8:
			return ModeLA, true
		case 16:
			return ModeRGBA, true // Pillow's LA;16B unpacks to RGBA
		}
	case 6:
		if depth == 8 || depth == 16 {
			return ModeRGBA, true
		}
	}
	return "", false
}

func pngConfig(data []byte) (Config, error) {
	h, err := parsePNG(data)
	if err != nil {
		return Config{}, err
	}
	mode, ok := pngMode(h.depth, h.ctype)
	if !ok {
		return Config{}, corruptf("PNG: invalid bit depth %d for colour type %d", h.depth, h.ctype)
	}
	return Config{Mode: mode, Width: h.width, Height: h.height}, nil
}

// decodePNG decodes with image/png and reads the samples Pillow keeps: 1-,
// 2- and 4-bit grey scaled to 8 bits, the high byte of 16-bit colour samples,
// 16-bit grey whole (mode I), palette indices with the file's own PLTE.
// Transparency (tRNS) is kept out of the colour values, as Pillow does.
func decodePNG(data []byte, cfg Config) (*Image, error) {
	h, err := parsePNG(data)
	if err != nil {
		return nil, err
	}
	src, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	b := src.Bounds()
	if b.Dx() != h.width || b.Dy() != h.height {
		return nil, corruptf("PNG: decoded size %dx%d, header says %dx%d", b.Dx(), b.Dy(), h.width, h.height)
	}
	m := newImage(cfg.Mode, h.width, h.height)
	switch cfg.Mode {
	case ModeP:
		p, ok := src.(*image.Paletted)
		if !ok {
			return nil, corruptf("PNG: palette image decoded as %T", src)
		}
		copyPlane(m.Pix, h.width, p.Pix, p.Stride, 1)
		m.Palette = paletteFromRGB(h.plte)
	case ModeI:
		switch s := src.(type) {
		case *image.Gray16:
			forEachRow(s.Pix, s.Stride, h.width, h.height, 2, func(y int, row []byte) {
				for x := 0; x < h.width; x++ {
					m.I[y*h.width+x] = int32(row[2*x])<<8 | int32(row[2*x+1])
				}
			})
		case *image.NRGBA64:
			forEachRow(s.Pix, s.Stride, h.width, h.height, 8, func(y int, row []byte) {
				for x := 0; x < h.width; x++ {
					m.I[y*h.width+x] = int32(row[8*x])<<8 | int32(row[8*x+1])
				}
			})
		default:
			return nil, corruptf("PNG: 16-bit grey image decoded as %T", src)
		}
	default:
		if err := samplesFrom(m, src); err != nil {
			return nil, corruptf("PNG: %v", err)
		}
	}
	return m, nil
}

// samplesFrom fills m (mode 1, L, LA, RGB or RGBA) from an image/png or
// x/image result holding the same samples: 8-bit values as they are, 16-bit
// values by their high byte, colour without premultiplication.
func samplesFrom(m *Image, src image.Image) error {
	w, h := m.Width, m.Height
	nc := m.Mode.Channels()
	var pix []byte
	var stride, bpp, step int // step: bytes per sample (1 or 2)
	// order lists, per output channel, the source sample index in a pixel.
	var order []int
	switch s := src.(type) {
	case *image.Gray:
		pix, stride, bpp, step = s.Pix, s.Stride, 1, 1
		order = []int{0, 0, 0}
	case *image.NRGBA:
		pix, stride, bpp, step = s.Pix, s.Stride, 4, 1
		order = []int{0, 1, 2, 3}
	case *image.RGBA:
		// Only opaque images come as RGBA (PNG without alpha, BMP): the
		// samples are not premultiplied by anything but 255.
		pix, stride, bpp, step = s.Pix, s.Stride, 4, 1
		order = []int{0, 1, 2, 3}
	case *image.NRGBA64:
		pix, stride, bpp, step = s.Pix, s.Stride, 8, 2
		order = []int{0, 1, 2, 3}
	case *image.RGBA64:
		pix, stride, bpp, step = s.Pix, s.Stride, 8, 2
		order = []int{0, 1, 2, 3}
	default:
		return fmt.Errorf("unexpected decoded type %T for mode %s", src, m.Mode)
	}
	switch m.Mode {
	case ModeL, Mode1:
		order = order[:1]
	case ModeLA:
		if len(order) < 4 {
			return fmt.Errorf("decoded type %T has no alpha for mode LA", src)
		}
		order = []int{0, 3}
	case ModeRGB:
		order = order[:3]
	case ModeRGBA:
		if len(order) < 4 {
			return fmt.Errorf("decoded type %T has no alpha for mode RGBA", src)
		}
	default:
		return fmt.Errorf("mode %s cannot be read from %T", m.Mode, src)
	}
	if len(pix) < (h-1)*stride+w*bpp {
		return fmt.Errorf("decoded %T is smaller than %dx%d", src, w, h)
	}
	for y := 0; y < h; y++ {
		row := pix[y*stride : y*stride+w*bpp]
		out := m.Pix[y*w*nc : (y+1)*w*nc]
		for x := 0; x < w; x++ {
			for c, k := range order {
				out[x*nc+c] = row[x*bpp+k*step]
			}
		}
	}
	return nil
}

// newImage allocates an image of the given mode and size.
func newImage(mode Mode, w, h int) *Image {
	m := &Image{Mode: mode, Width: w, Height: h}
	if mode == ModeI {
		m.I = make([]int32, w*h)
	} else {
		m.Pix = make([]uint8, w*h*mode.Channels())
	}
	return m
}

// copyPlane copies rows of w·bpp bytes from src (stride sstride) into the
// packed dst.
func copyPlane(dst []byte, w int, src []byte, sstride, bpp int) {
	rb := w * bpp
	for y := 0; y*rb < len(dst); y++ {
		copy(dst[y*rb:(y+1)*rb], src[y*sstride:y*sstride+rb])
	}
}

// forEachRow calls f with each of the h rows of w pixels of bpp bytes.
func forEachRow(pix []byte, stride, w, h, bpp int, f func(y int, row []byte)) {
	for y := 0; y < h; y++ {
		f(y, pix[y*stride:y*stride+w*bpp])
	}
}

// paletteFromRGB turns packed RGB triplets into a palette (at most 256
// entries; a trailing partial triplet is ignored).
func paletteFromRGB(p []byte) [][3]uint8 {
	n := min(len(p)/3, 256)
	pal := make([][3]uint8, n)
	for i := range pal {
		pal[i] = [3]uint8{p[3*i], p[3*i+1], p[3*i+2]}
	}
	return pal
}
