package imageproc

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"

	"golang.org/x/image/bmp"
)

// bmpConfig reads the header with x/image/bmp and picks Pillow's mode
// (BmpImagePlugin): 24-bit and plain 32-bit files are RGB, 32-bit files with
// BGRA bit fields RGBA; palette files are P, except that an 8-bit file whose
// palette is the grey ramp is L and a 1-bit black-and-white file is "1".
func bmpConfig(data []byte) (Config, error) {
	c, err := bmp.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return Config{}, err
	}
	if len(data) < 34 {
		return Config{}, corruptf("BMP: header truncated")
	}
	bpp := binary.LittleEndian.Uint16(data[28:])
	compression := binary.LittleEndian.Uint32(data[30:])
	cfg := Config{Width: c.Width, Height: c.Height}
	switch bpp {
	case 24:
		cfg.Mode = ModeRGB
	case 32:
		cfg.Mode = ModeRGB
		if compression == 3 { // BI_BITFIELDS with an alpha mask (the only kind x/image/bmp accepts)
			cfg.Mode = ModeRGBA
		}
	default:
		pal, ok := c.ColorModel.(color.Palette)
		if !ok {
			return Config{}, unsupportedf("BMP: %d bits per pixel", bpp)
		}
		cfg.Mode = bmpPaletteMode(pal, int(bpp))
	}
	return cfg, nil
}

// bmpPaletteMode applies Pillow's greyscale test to a BMP palette. Pillow also
// treats other grey palettes as L or "1", but then unpacks the pixels with
// the wrong bit depth; those files are decoded here as P.
func bmpPaletteMode(pal color.Palette, bpp int) Mode {
	grey := func(i int, v uint8) bool {
		r, g, b, _ := pal[i].RGBA()
		return uint8(r>>8) == v && uint8(g>>8) == v && uint8(b>>8) == v
	}
	switch {
	case bpp == 1 && len(pal) == 2 && grey(0, 0) && grey(1, 255):
		return Mode1
	case bpp == 8 && len(pal) != 2:
		for i := range pal {
			if !grey(i, uint8(i)) {
				return ModeP
			}
		}
		return ModeL
	}
	return ModeP
}

func decodeBMP(data []byte, cfg Config) (*Image, error) {
	src, err := bmp.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	b := src.Bounds()
	if b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, corruptf("BMP: decoded size %dx%d, header says %dx%d", b.Dx(), b.Dy(), cfg.Width, cfg.Height)
	}
	m := newImage(cfg.Mode, cfg.Width, cfg.Height)
	switch cfg.Mode {
	case ModeP, ModeL, Mode1:
		p, ok := src.(*image.Paletted)
		if !ok {
			return nil, corruptf("BMP: palette image decoded as %T", src)
		}
		copyPlane(m.Pix, cfg.Width, p.Pix, p.Stride, 1)
		switch cfg.Mode {
		case ModeP:
			m.Palette = make([][3]uint8, len(p.Palette))
			for i, c := range p.Palette {
				n := color.NRGBAModel.Convert(c).(color.NRGBA)
				m.Palette[i] = [3]uint8{n.R, n.G, n.B}
			}
		case Mode1:
			for i, v := range m.Pix {
				if v != 0 {
					m.Pix[i] = 255
				}
			}
		}
	default:
		if err := samplesFrom(m, src); err != nil {
			return nil, corruptf("BMP: %v", err)
		}
	}
	return m, nil
}
