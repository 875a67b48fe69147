package imageproc

import (
	"bytes"
	"image"
	"image/color"
	stdjpeg "image/jpeg"
	"slices"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/imageproc/jpeg"
)

func TestFromImage(t *testing.T) {
	r := image.Rect(0, 0, 3, 2)
	gray := image.NewGray(r)
	g16 := image.NewGray16(r)
	pal := image.NewPaletted(r, color.Palette{color.NRGBA{10, 20, 30, 0}, color.RGBA{40, 50, 60, 255}})
	cmyk := image.NewCMYK(r)
	nrgba := image.NewNRGBA(r)
	n64 := image.NewNRGBA64(r)
	rgba := image.NewRGBA(r)
	r64 := image.NewRGBA64(r)
	alpha := image.NewAlpha(r)
	for i := 0; i < 6; i++ {
		x, y := i%3, i/3
		v := uint8(40*i + 3)
		gray.SetGray(x, y, color.Gray{v})
		g16.SetGray16(x, y, color.Gray16{uint16(v)<<8 | 0x77})
		pal.SetColorIndex(x, y, uint8(i%2))
		cmyk.SetCMYK(x, y, color.CMYK{v, v + 1, v + 2, v + 3})
		nrgba.SetNRGBA(x, y, color.NRGBA{v, v + 1, v + 2, uint8(i * 30)})
		n64.SetNRGBA64(x, y, color.NRGBA64{uint16(v)<<8 | 0xff, uint16(v+1) << 8, uint16(v+2) << 8, uint16(i*30) << 8})
		rgba.SetRGBA(x, y, color.RGBA{v, v + 1, v + 2, 255})
		r64.SetRGBA64(x, y, color.RGBA64{uint16(v)<<8 | 0x80, uint16(v+1) << 8, uint16(v+2) << 8, 0xffff})
		alpha.SetAlpha(x, y, color.Alpha{v})
	}
	seq := func(f func(i int) []uint8) []uint8 {
		var out []uint8
		for i := 0; i < 6; i++ {
			out = append(out, f(i)...)
		}
		return out
	}
	val := func(i int) uint8 { return uint8(40*i + 3) }
	tests := []struct {
		name    string
		src     image.Image
		mode    Mode
		pix     []uint8
		i       []int32
		palette [][3]uint8
	}{
		{"Gray", gray, ModeL, gray.Pix, nil, nil},
		{"Gray16", g16, ModeI, nil, []int32{3<<8 | 0x77, 43<<8 | 0x77, 83<<8 | 0x77, 123<<8 | 0x77, 163<<8 | 0x77, 203<<8 | 0x77}, nil},
		{"Paletted", pal, ModeP, pal.Pix, nil, [][3]uint8{{10, 20, 30}, {40, 50, 60}}},
		{"CMYK", cmyk, ModeCMYK, cmyk.Pix, nil, nil},
		{"NRGBA", nrgba, ModeRGBA, nrgba.Pix, nil, nil},
		{"NRGBA64", n64, ModeRGBA, seq(func(i int) []uint8 { return []uint8{val(i), val(i) + 1, val(i) + 2, uint8(i * 30)} }), nil, nil},
		{"RGBA opaque", rgba, ModeRGB, seq(func(i int) []uint8 { return []uint8{val(i), val(i) + 1, val(i) + 2} }), nil, nil},
		{"RGBA64 opaque", r64, ModeRGB, seq(func(i int) []uint8 { return []uint8{val(i), val(i) + 1, val(i) + 2} }), nil, nil},
		{"Alpha", alpha, ModeRGBA, seq(func(i int) []uint8 { return []uint8{255, 255, 255, val(i)} }), nil, nil},
		{"Gray sub-image", gray.SubImage(image.Rect(1, 1, 3, 2)), ModeL, []uint8{val(4), val(5)}, nil, nil},
	}
	for _, tt := range tests {
		m := FromImage(tt.src)
		if m.Mode != tt.mode || !slices.Equal(m.Pix, tt.pix) || !slices.Equal(m.I, tt.i) || !slices.Equal(m.Palette, tt.palette) {
			t.Errorf("%s: got %s %v %v %v, want %s %v %v %v", tt.name, m.Mode, m.Pix, m.I, m.Palette, tt.mode, tt.pix, tt.i, tt.palette)
		}
		if err := m.check(); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if m := FromImage(image.NewRGBA(image.Rect(0, 0, 0, 5))); m.check() == nil {
		t.Error("empty image passes check")
	}
}

// TestFromImageYCbCr builds image.YCbCr values from the fork's planes of the
// fixture JPEGs: FromImage must then give exactly what Decode gives.
func TestFromImageYCbCr(t *testing.T) {
	for _, name := range []string{"jpeg_420_223x225.jpg", "jpeg_422_250x190.jpg", "jpeg_444_225x223.jpg"} {
		data := readInput(t, name)
		raw, err := jpeg.DecodeRaw(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		ratio := map[[2]int]image.YCbCrSubsampleRatio{{1, 1}: image.YCbCrSubsampleRatio444, {2, 1}: image.YCbCrSubsampleRatio422, {2, 2}: image.YCbCrSubsampleRatio420}[[2]int{raw.MaxH, raw.MaxV}]
		y, cb, cr := raw.Components[0], raw.Components[1], raw.Components[2]
		src := &image.YCbCr{Y: y.Pix, Cb: cb.Pix, Cr: cr.Pix, YStride: y.Stride, CStride: cb.Stride, SubsampleRatio: ratio, Rect: image.Rect(0, 0, raw.Width, raw.Height)}
		want, err := Decode(data, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := FromImage(src)
		if got.Mode != ModeRGB || !slices.Equal(got.Pix, want.Pix) {
			t.Errorf("%s: FromImage differs from Decode", name)
		}
		// image/jpeg's own planes differ by its IDCT only.
		std, err := stdjpeg.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiffU8(FromImage(std).Pix, want.Pix); d > 3 {
			t.Errorf("%s: image/jpeg + FromImage differs from Decode by %d", name, d)
		} else {
			t.Logf("%s: image/jpeg + FromImage: max |diff| %d", name, d)
		}
	}
}
