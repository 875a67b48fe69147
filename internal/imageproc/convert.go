package imageproc

import "fmt"

// ConvertRGB returns m converted to ModeRGB as Pillow's convert("RGB") does
// (libImaging/Convert.c): grey and bilevel values copied to the three
// channels, palette indices looked up (palette transparency ignored), mode I
// values clamped to [0, 255] (not scaled), CMYK through Pillow's cmyk2rgb,
// and alpha dropped without compositing. An RGB image is returned as is.
func ConvertRGB(m *Image) (*Image, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if m.Mode == ModeRGB {
		return m, nil
	}
	n := m.Width * m.Height
	out := newImage(ModeRGB, m.Width, m.Height)
	o := out.Pix
	switch m.Mode {
	case ModeRGBA:
		for i := 0; i < n; i++ {
			copy(o[3*i:3*i+3], m.Pix[4*i:4*i+3])
		}
	case ModeL, Mode1, ModeLA:
		nc := m.Mode.Channels()
		for i := 0; i < n; i++ {
			v := m.Pix[nc*i]
			if m.Mode == Mode1 && v != 0 {
				v = 255
			}
			o[3*i], o[3*i+1], o[3*i+2] = v, v, v
		}
	case ModeP:
		var pal [256][3]uint8
		for i := range pal {
			if i < len(m.Palette) {
				pal[i] = m.Palette[i]
			} else {
				pal[i] = [3]uint8{uint8(i), uint8(i), uint8(i)}
			}
		}
		for i, v := range m.Pix {
			copy(o[3*i:3*i+3], pal[v][:])
		}
	case ModeI:
		for i, v := range m.I {
			u := uint8(min(max(v, 0), 255))
			o[3*i], o[3*i+1], o[3*i+2] = u, u, u
		}
	case ModeCMYK:
		for i := 0; i < n; i++ {
			p := m.Pix[4*i : 4*i+4 : 4*i+4]
			nk := 255 - p[3]
			for c := 0; c < 3; c++ {
				// nk − muldiv255(c, nk) cannot go below 0.
				o[3*i+c] = nk - muldiv255(p[c], nk)
			}
		}
	default:
		return nil, fmt.Errorf("imageproc: cannot convert mode %q to RGB", m.Mode)
	}
	return out, nil
}
