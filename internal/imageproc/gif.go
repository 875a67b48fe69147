package imageproc

import (
	"compress/lzw"
	"encoding/binary"
	"errors"
	"io"
)

// gifFrame describes the first frame of a GIF file as Pillow 9.4's
// GifImagePlugin reads it.
type gifFrame struct {
	width, height  int // canvas: the logical screen, grown to hold the frame
	fx, fy, fw, fh int // frame rectangle
	interlaced     bool
	palette        []byte // colour table of the frame (RGB triplets), nil for mode L
	fill           uint8  // canvas value outside the frame: the transparent index, else 0
	litWidth       int    // LZW minimum code size
	data           []byte // first byte of the image data sub-blocks
}

// gifPaletteNeeded reports whether a colour table is not the identity grey
// ramp; Pillow opens files whose table is the ramp as mode L.
func gifPaletteNeeded(p []byte) bool {
	for i := 0; i+2 < len(p); i += 3 {
		if !(int(p[i]) == i/3 && p[i] == p[i+1] && p[i+1] == p[i+2]) {
			return true
		}
	}
	return false
}

// parseGIF walks the blocks up to the first image descriptor.
func parseGIF(data []byte) (gifFrame, error) {
	var f gifFrame
	if len(data) < 13 {
		return f, corruptf("GIF: header truncated")
	}
	f.width = int(binary.LittleEndian.Uint16(data[6:]))
	f.height = int(binary.LittleEndian.Uint16(data[8:]))
	flags := data[10]
	p := data[13:]
	var global []byte
	if flags&0x80 != 0 {
		n := 3 << (flags&7 + 1)
		if len(p) < n {
			return f, corruptf("GIF: global colour table truncated")
		}
		if t := p[:n]; gifPaletteNeeded(t) {
			global = t
		}
		p = p[n:]
	}
	transparent := -1
	for {
		if len(p) == 0 || p[0] == ';' {
			return f, corruptf("GIF: no image in the file")
		}
		b := p[0]
		p = p[1:]
		switch b {
		case '!':
			if len(p) == 0 {
				return f, corruptf("GIF: extension truncated")
			}
			label := p[0]
			p = p[1:]
			first := true
			for {
				if len(p) == 0 {
					return f, corruptf("GIF: extension truncated")
				}
				n := int(p[0])
				if n == 0 {
					p = p[1:]
					break
				}
				if len(p) < 1+n {
					return f, corruptf("GIF: extension truncated")
				}
				blk := p[1 : 1+n]
				if first && label == 0xf9 && len(blk) >= 4 {
					// Graphic control extension.
					if blk[0]&1 != 0 {
						transparent = int(blk[3])
					}
				}
				first = false
				p = p[1+n:]
			}
		case ',':
			if len(p) < 9 {
				return f, corruptf("GIF: image descriptor truncated")
			}
			f.fx = int(binary.LittleEndian.Uint16(p[0:]))
			f.fy = int(binary.LittleEndian.Uint16(p[2:]))
			f.fw = int(binary.LittleEndian.Uint16(p[4:]))
			f.fh = int(binary.LittleEndian.Uint16(p[6:]))
			lflags := p[8]
			p = p[9:]
			f.interlaced = lflags&0x40 != 0
			f.palette = global
			if lflags&0x80 != 0 {
				n := 3 << (lflags&7 + 1)
				if len(p) < n {
					return f, corruptf("GIF: local colour table truncated")
				}
				f.palette = nil
				if t := p[:n]; gifPaletteNeeded(t) {
					f.palette = t
				}
				p = p[n:]
			}
			if len(p) == 0 {
				return f, corruptf("GIF: image data truncated")
			}
			f.litWidth = int(p[0])
			f.data = p[1:]
			// Pillow grows the canvas to hold a frame that extends beyond
			// the logical screen.
			f.width = max(f.width, f.fx+f.fw)
			f.height = max(f.height, f.fy+f.fh)
			if transparent >= 0 {
				f.fill = uint8(transparent)
			}
			return f, nil
		default:
			// Pillow skips bytes it does not recognise between blocks.
		}
	}
}

func gifConfig(data []byte) (Config, error) {
	f, err := parseGIF(data)
	if err != nil {
		return Config{}, err
	}
	mode := ModeP
	if f.palette == nil {
		mode = ModeL
	}
	return Config{Mode: mode, Width: f.width, Height: f.height}, nil
}

// subBlockReader reads the data of a sequence of GIF sub-blocks.
type subBlockReader struct {
	p   []byte // remaining file bytes, at a block size byte when cur is empty
	cur []byte
	end bool
}

func (r *subBlockReader) Read(b []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.end {
			return 0, io.EOF
		}
		if len(r.p) == 0 {
			return 0, io.ErrUnexpectedEOF
		}
		n := int(r.p[0])
		if n == 0 {
			r.end = true
			continue
		}
		if len(r.p) < 1+n {
			return 0, io.ErrUnexpectedEOF
		}
		r.cur, r.p = r.p[1:1+n], r.p[1+n:]
	}
	n := copy(b, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// decodeGIF decodes the first frame onto the canvas. Pillow keeps the
// palette entry of the transparent index (image/gif replaces it with
// transparent black), and fills the canvas outside the frame with the
// transparent index, or 0.
func decodeGIF(data []byte, cfg Config) (*Image, error) {
	f, err := parseGIF(data)
	if err != nil {
		return nil, err
	}
	if f.litWidth < 2 || f.litWidth > 8 {
		return nil, corruptf("GIF: LZW code size %d out of range [2, 8]", f.litWidth)
	}
	m := newImage(cfg.Mode, f.width, f.height)
	if f.fill != 0 {
		for i := range m.Pix {
			m.Pix[i] = f.fill
		}
	}
	if cfg.Mode == ModeP {
		m.Palette = paletteFromRGB(f.palette)
	}
	if f.fw == 0 || f.fh == 0 {
		return m, nil
	}
	pix := make([]byte, f.fw*f.fh)
	lr := lzw.NewReader(&subBlockReader{p: f.data}, lzw.LSB, f.litWidth)
	defer lr.Close()
	if _, err := io.ReadFull(lr, pix); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, corruptf("GIF: not enough image data")
		}
		return nil, corruptf("GIF: %v", err)
	}
	rows := gifRowOrder(f.fh, f.interlaced)
	for i, y := range rows {
		dst := m.Pix[(f.fy+y)*f.width+f.fx:]
		copy(dst[:f.fw], pix[i*f.fw:(i+1)*f.fw])
	}
	return m, nil
}

// gifRowOrder returns, for each stored row, its row in the frame.
func gifRowOrder(h int, interlaced bool) []int {
	rows := make([]int, 0, h)
	if !interlaced {
		for y := 0; y < h; y++ {
			rows = append(rows, y)
		}
		return rows
	}
	for _, pass := range [4][2]int{{0, 8}, {4, 8}, {2, 4}, {1, 2}} {
		for y := pass[0]; y < h; y += pass[1] {
			rows = append(rows, y)
		}
	}
	return rows
}
