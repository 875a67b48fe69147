package imageproc

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// This file holds a deliberately naive model of the eval transform, written
// from the rules of spec §4.1–4.3 (whole images, one pixel and one channel at
// a time, like spec/pil_resize_ref.py), to check the optimised code on inputs
// the fixtures do not cover: every mode, odd sizes, 1×N and N×1 images,
// upscaling and downscaling, and any crop region.

// refImage is a raster of int64 samples: v[(y*w+x)*nc+c].
type refImage struct {
	w, h, nc int
	v        []int64
}

func refFromImage(m *Image) refImage {
	if m.Mode == ModeI {
		r := refImage{m.Width, m.Height, 1, make([]int64, len(m.I))}
		for i, x := range m.I {
			r.v[i] = int64(x)
		}
		return r
	}
	r := refImage{m.Width, m.Height, m.Mode.Channels(), make([]int64, len(m.Pix))}
	for i, x := range m.Pix {
		r.v[i] = int64(x)
	}
	return r
}

// refKernel is Keys' cubic with a = -0.5 (spec §4.2).
func refKernel(x float64) float64 {
	a := -0.5
	x = math.Abs(x)
	switch {
	case x < 1:
		return float64(float64(float64(float64((a+2)*x)-(a+3))*x)*x) + 1
	case x < 2:
		return float64(float64(float64(float64(x-5)*x)+8)*x-4) * a
	}
	return 0
}

// refWeights returns each output's first input index and normalised weights.
func refWeights(in, out int) ([]int, [][]float64) {
	scale := float64(in) / float64(out)
	fs := math.Max(scale, 1)
	support := 2 * fs
	starts := make([]int, out)
	ws := make([][]float64, out)
	for o := 0; o < out; o++ {
		center := (float64(o) + 0.5) * scale
		xmin := int(math.Trunc(center - support + 0.5))
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(math.Trunc(center + support + 0.5))
		if xmax > in {
			xmax = in
		}
		w := make([]float64, xmax-xmin)
		sum := 0.0
		for j := range w {
			w[j] = refKernel((float64(j+xmin) - center + 0.5) * (1 / fs))
			sum += w[j]
		}
		if sum != 0 {
			for j := range w {
				w[j] /= sum
			}
		}
		starts[o], ws[o] = xmin, w
	}
	return starts, ws
}

// refPass resamples along x (the fast axis); transpose for y. fixed selects
// the 8-bit path (22-bit weights, uint8 result), otherwise the 32-bit one.
func refPass(m refImage, out int, fixed bool) refImage {
	starts, ws := refWeights(m.w, out)
	r := refImage{out, m.h, m.nc, make([]int64, out*m.h*m.nc)}
	for y := 0; y < m.h; y++ {
		for o := 0; o < out; o++ {
			for c := 0; c < m.nc; c++ {
				var v int64
				if fixed {
					acc := int32(1 << 21)
					for j, w := range ws[o] {
						q := int32(math.Trunc(w*(1<<22) + 0.5))
						if w < 0 {
							q = int32(math.Trunc(w*(1<<22) - 0.5))
						}
						acc += int32(m.v[(y*m.w+starts[o]+j)*m.nc+c]) * q
					}
					v = min(max(int64(acc>>22), 0), 255)
				} else {
					s := 0.0
					for j, w := range ws[o] {
						s += float64(float64(m.v[(y*m.w+starts[o]+j)*m.nc+c]) * w)
					}
					if s >= 0 {
						v = int64(math.Trunc(s + 0.5))
					} else {
						v = int64(math.Trunc(s - 0.5))
					}
				}
				r.v[(y*out+o)*m.nc+c] = v
			}
		}
	}
	return r
}

func refTranspose(m refImage) refImage {
	r := refImage{m.h, m.w, m.nc, make([]int64, len(m.v))}
	for y := 0; y < m.h; y++ {
		for x := 0; x < m.w; x++ {
			copy(r.v[(x*m.h+y)*m.nc:(x*m.h+y+1)*m.nc], m.v[(y*m.w+x)*m.nc:(y*m.w+x+1)*m.nc])
		}
	}
	return r
}

func refMulDiv255(a, b int64) int64 {
	t := a*b + 128
	return ((t >> 8) + t) >> 8
}

// refResize is Pillow's resize to w×h in the given mode (spec §4.2, §4.3).
func refResize(m refImage, mode Mode, w, h int) refImage {
	if w == m.w && h == m.h {
		return m
	}
	if mode == ModeP || mode == Mode1 {
		sx, sy := float64(m.w)/float64(w), float64(m.h)/float64(h)
		r := refImage{w, h, m.nc, make([]int64, w*h*m.nc)}
		yo := sy / 2
		for y := 0; y < h; y++ {
			xo := sx / 2
			for x := 0; x < w; x++ {
				copy(r.v[(y*w+x)*m.nc:(y*w+x+1)*m.nc], m.v[(int(yo)*m.w+int(xo))*m.nc:])
				xo += sx
			}
			yo += sy
		}
		return r
	}
	premul := mode == ModeRGBA || mode == ModeLA
	if premul {
		p := refImage{m.w, m.h, m.nc, slices.Clone(m.v)}
		for i := 0; i < len(p.v); i += m.nc {
			for c := 0; c < m.nc-1; c++ {
				p.v[i+c] = refMulDiv255(p.v[i+c], p.v[i+m.nc-1])
			}
		}
		m = p
	}
	fixed := mode != ModeI
	if w != m.w {
		m = refPass(m, w, fixed)
	}
	if h != m.h {
		m = refTranspose(refPass(refTranspose(m), h, fixed))
	}
	if premul {
		for i := 0; i < len(m.v); i += m.nc {
			a := m.v[i+m.nc-1]
			if a == 0 || a == 255 {
				continue
			}
			for c := 0; c < m.nc-1; c++ {
				m.v[i+c] = min(255, 255*m.v[i+c]/a)
			}
		}
	}
	return m
}

func refCrop(m refImage, x0, y0, w, h int) refImage {
	r := refImage{w, h, m.nc, make([]int64, w*h*m.nc)}
	for y := 0; y < h; y++ {
		copy(r.v[y*w*m.nc:(y+1)*w*m.nc], m.v[((y0+y)*m.w+x0)*m.nc:((y0+y)*m.w+x0+w)*m.nc])
	}
	return r
}

// refRGB is convert("RGB") (spec §4.3) of m in mode with palette pal.
func refRGB(m refImage, mode Mode, pal [][3]uint8) []uint8 {
	out := make([]uint8, 0, m.w*m.h*3)
	for i := 0; i < m.w*m.h; i++ {
		p := m.v[i*m.nc : (i+1)*m.nc]
		var r, g, b int64
		switch mode {
		case ModeRGB, ModeRGBA:
			r, g, b = p[0], p[1], p[2]
		case ModeL, ModeLA:
			r, g, b = p[0], p[0], p[0]
		case Mode1:
			if p[0] != 0 {
				r, g, b = 255, 255, 255
			}
		case ModeI:
			v := min(max(p[0], 0), 255)
			r, g, b = v, v, v
		case ModeP:
			r, g, b = p[0], p[0], p[0]
			if int(p[0]) < len(pal) {
				e := pal[p[0]]
				r, g, b = int64(e[0]), int64(e[1]), int64(e[2])
			}
		case ModeCMYK:
			nk := 255 - p[3]
			r = min(max(nk-refMulDiv255(p[0], nk), 0), 255)
			g = min(max(nk-refMulDiv255(p[1], nk), 0), 255)
			b = min(max(nk-refMulDiv255(p[2], nk), 0), 255)
		}
		out = append(out, uint8(r), uint8(g), uint8(b))
	}
	return out
}

// refTransform is the open_clip eval transform (spec §4.1) or, with hf,
// the CLIPImageProcessor order (spec §4.7).
func refTransform(m *Image, size int, hf bool) []uint8 {
	r, mode, pal := refFromImage(m), m.Mode, m.Palette
	if hf {
		rgb := refRGB(r, mode, pal)
		r = refImage{m.Width, m.Height, 3, make([]int64, len(rgb))}
		for i, v := range rgb {
			r.v[i] = int64(v)
		}
		mode = ModeRGB
	}
	short, long := min(r.w, r.h), max(r.w, r.h)
	nl := int(math.Trunc(float64(size*long) / float64(short)))
	w, h := size, nl
	if r.w > r.h {
		w, h = nl, size
	}
	r = refResize(r, mode, w, h)
	var left, top int
	if hf {
		left, top = (w-size)/2, (h-size)/2
	} else {
		left, top = int(math.RoundToEven(float64(w-size)/2)), int(math.RoundToEven(float64(h-size)/2))
	}
	return refRGB(refCrop(r, left, top, size, size), mode, pal)
}

// randomImage makes an image of the mode with random content and smooth
// areas, so that both the clamping and the interpolation are exercised.
func randomImage(rng *rand.Rand, mode Mode, w, h int) *Image {
	m := newImage(mode, w, h)
	for i := range m.Pix {
		if rng.IntN(3) == 0 {
			m.Pix[i] = uint8(rng.IntN(256))
		} else {
			m.Pix[i] = uint8(i * 7 / max(1, len(m.Pix)/64))
		}
	}
	switch mode {
	case Mode1:
		for i := range m.Pix {
			m.Pix[i] = uint8(rng.IntN(2)) * 255
		}
	case ModeP:
		m.Palette = make([][3]uint8, rng.IntN(256))
		for i := range m.Palette {
			m.Palette[i] = [3]uint8{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256))}
		}
	case ModeRGBA, ModeLA:
		nc := mode.Channels()
		for i := nc - 1; i < len(m.Pix); i += nc {
			switch rng.IntN(4) {
			case 0:
				m.Pix[i] = 0
			case 1:
				m.Pix[i] = 255
			}
		}
	case ModeI:
		for i := range m.I {
			m.I[i] = int32(rng.IntN(70000)) - 1000
		}
	}
	return m
}

var allModes = []Mode{ModeRGB, ModeRGBA, ModeL, ModeLA, ModeP, Mode1, ModeI, ModeCMYK}

// TestResizeMatchesReference compares resize, which computes only a region
// of the output, with the whole-image reference, for every mode.
func TestResizeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 300; n++ {
		mode := allModes[n%len(allModes)]
		w, h := 1+rng.IntN(40), 1+rng.IntN(40)
		ow, oh := 1+rng.IntN(60), 1+rng.IntN(60)
		if n%5 == 0 {
			ow = w // one axis unchanged
		}
		m := randomImage(rng, mode, w, h)
		x0, y0 := rng.IntN(ow), rng.IntN(oh)
		x1, y1 := x0+1+rng.IntN(ow-x0), y0+1+rng.IntN(oh-y0)
		got := resize(m, ow, oh, rect{x0, y0, x1, y1})
		want := refCrop(refResize(refFromImage(m), mode, ow, oh), x0, y0, x1-x0, y1-y0)
		name := fmt.Sprintf("%s %dx%d→%dx%d region [%d,%d)x[%d,%d)", mode, w, h, ow, oh, x0, x1, y0, y1)
		if got.Width != x1-x0 || got.Height != y1-y0 || got.Mode != mode {
			t.Fatalf("%s: got %s %dx%d", name, got.Mode, got.Width, got.Height)
		}
		g := refFromImage(got)
		if !slices.Equal(g.v, want.v) {
			t.Fatalf("%s: samples differ from the reference", name)
		}
	}
}

// TestTransformMatchesReference runs both variants end to end on random
// images of every mode, including 1×N and N×1 images and sizes whose crop
// offsets round differently.
func TestTransformMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	sizes := [][2]int{{1, 1}, {1, 9}, {9, 1}, {1, 40}, {40, 1}, {7, 11}, {16, 16}, {19, 16}, {16, 21}, {50, 31}, {31, 50}, {64, 13}}
	for i, sz := range sizes {
		for j, mode := range allModes {
			m := randomImage(rng, mode, sz[0], sz[1])
			for _, v := range []Variant{OpenCLIP, HF} {
				opts := DefaultOptions()
				opts.Size = 16
				opts.Variant = v
				got, err := Transform(m, opts)
				if err != nil {
					t.Fatal(err)
				}
				want := refTransform(m, 16, v == HF)
				if !slices.Equal(got.Pix, want) {
					t.Errorf("case %d.%d %s %dx%d %v: output differs from the reference", i, j, mode, sz[0], sz[1], v)
				}
			}
		}
	}
}
