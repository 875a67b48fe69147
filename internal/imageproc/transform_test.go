package imageproc

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestResizedSize(t *testing.T) {
	tests := []struct{ w, h, size, wantW, wantH int }{
		{250, 180, 224, 311, 224},
		{1000, 667, 224, 335, 224},
		{3000, 20, 224, 33600, 224},
		{7, 300, 224, 224, 9600},
		{224, 300, 224, 224, 300},
		{225, 225, 224, 224, 224},
		{1, 1, 224, 224, 224},
		{640, 480, 224, 298, 224},
		{480, 640, 224, 224, 298},
	}
	for _, tt := range tests {
		if w, h := resizedSize(tt.w, tt.h, tt.size); w != tt.wantW || h != tt.wantH {
			t.Errorf("resizedSize(%d, %d, %d) = %d, %d; want %d, %d", tt.w, tt.h, tt.size, w, h, tt.wantW, tt.wantH)
		}
	}
	// For sizes up to a few thousand, Python's int(224 * long / short)
	// equals integer floor division.
	for short := 1; short <= 600; short += 7 {
		for long := short; long <= 5000; long += 13 {
			w, h := resizedSize(long, short, 224)
			if h != 224 || w != 224*long/short {
				t.Fatalf("resizedSize(%d, %d) = %d, %d", long, short, w, h)
			}
		}
	}
}

func TestHalfRoundEven(t *testing.T) {
	// The README's examples: 311 → 43.5 → 44; 335 → 55.5 → 56; 226 → 1;
	// 9600 → 4688; and the spec's: excess 3 → 2, excess 5 → 2.
	for _, tt := range [][2]int{{311 - 224, 44}, {335 - 224, 56}, {226 - 224, 1}, {9600 - 224, 4688}, {3, 2}, {5, 2}, {1, 0}, {7, 4}, {0, 0}} {
		if got := halfRoundEven(tt[0]); got != tt[1] {
			t.Errorf("halfRoundEven(%d) = %d, want %d", tt[0], got, tt[1])
		}
	}
}

// columnImage returns an RGB image whose pixels hold their column (R) and
// row (G) numbers.
func columnImage(w, h int) *Image {
	m := newImage(ModeRGB, w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Pix[3*(y*w+x)], m.Pix[3*(y*w+x)+1] = uint8(x), uint8(y)
		}
	}
	return m
}

// TestCropVariants checks the one rule where the two variants differ: an
// excess of 3 (mod 4) is cropped from offset 2 by torchvision (round half to
// even) and from 1 by Hugging Face (floor). The images already have the
// target short side, so no resize blurs the offsets.
func TestCropVariants(t *testing.T) {
	const size = 16
	tests := []struct {
		w, h         int
		openclip, hf [2]int // left, top
	}{
		{w: size + 3, h: size, openclip: [2]int{2, 0}, hf: [2]int{1, 0}},
		{w: size, h: size + 3, openclip: [2]int{0, 2}, hf: [2]int{0, 1}},
		{w: size + 5, h: size, openclip: [2]int{2, 0}, hf: [2]int{2, 0}},
		{w: size + 1, h: size, openclip: [2]int{0, 0}, hf: [2]int{0, 0}},
		{w: size + 7, h: size, openclip: [2]int{4, 0}, hf: [2]int{3, 0}},
		{w: size, h: size + 11, openclip: [2]int{0, 6}, hf: [2]int{0, 5}},
	}
	for _, tt := range tests {
		m := columnImage(tt.w, tt.h)
		for _, v := range []struct {
			variant Variant
			want    [2]int
		}{{OpenCLIP, tt.openclip}, {HF, tt.hf}} {
			opts := DefaultOptions()
			opts.Size = size
			opts.Variant = v.variant
			got, err := Transform(m, opts)
			if err != nil {
				t.Fatal(err)
			}
			if left, top := int(got.Pix[0]), int(got.Pix[1]); left != v.want[0] || top != v.want[1] {
				t.Errorf("%dx%d %v: crop at %d,%d, want %d,%d", tt.w, tt.h, v.variant, left, top, v.want[0], v.want[1])
			}
		}
	}
}

// TestTransformUnchangedSize checks that an image whose short side is
// already the target size is only cropped: an RGBA image keeps the colour
// under transparent pixels (no premultiplied round trip).
func TestTransformUnchangedSize(t *testing.T) {
	m := newImage(ModeRGBA, 8, 12)
	for i := 0; i < len(m.Pix); i += 4 {
		m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = 10, 200, uint8(i), 0
	}
	opts := DefaultOptions()
	opts.Size = 8
	got, err := Transform(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	for y := 0; y < 8; y++ {
		for x := 0; x < 8; x++ {
			i := 4 * ((y+2)*8 + x)
			if want := m.Pix[i : i+3]; !slices.Equal(got.Pix[3*(y*8+x):3*(y*8+x)+3], want) {
				t.Fatalf("pixel %d,%d = %v, want %v", x, y, got.Pix[3*(y*8+x):3*(y*8+x)+3], want)
			}
		}
	}
}

func TestToTensor(t *testing.T) {
	opts := DefaultOptions()
	opts.Size = 4
	m := newImage(ModeRGB, 4, 4)
	for i := range m.Pix {
		m.Pix[i] = uint8(i * 5)
	}
	dst := make([]float32, 48)
	if err := ToTensor(m, opts, dst); err != nil {
		t.Fatal(err)
	}
	for c := 0; c < 3; c++ {
		for i := 0; i < 16; i++ {
			x := float32(m.Pix[3*i+c]) / float32(255)
			want := (x - opts.Mean[c]) / opts.Std[c]
			if dst[c*16+i] != want {
				t.Errorf("channel %d pixel %d = %v, want %v", c, i, dst[c*16+i], want)
			}
		}
	}
	// The spec's float32 constants.
	wantMean := [3]float32{0.48145467042922974, 0.45782750844955444, 0.40821072459220886}
	wantStd := [3]float32{0.2686295509338379, 0.2613025903701782, 0.27577710151672363}
	if d := DefaultOptions(); d.Mean != wantMean || d.Std != wantStd {
		t.Errorf("default mean/std %v %v, want %v %v", d.Mean, d.Std, wantMean, wantStd)
	}
	if err := ToTensor(m, opts, dst[:47]); err == nil {
		t.Error("short destination accepted")
	}
	opts.Size = 5
	if err := ToTensor(m, opts, make([]float32, 75)); err == nil {
		t.Error("image of the wrong size accepted")
	}
}

func TestInvalidInputs(t *testing.T) {
	good := columnImage(4, 4)
	bad := []*Image{
		nil,
		{Mode: ModeRGB, Width: 4, Height: 4, Pix: make([]uint8, 47)},
		{Mode: ModeRGB, Width: 0, Height: 4},
		{Mode: ModeRGB, Width: -1, Height: -1},
		{Mode: "XYZ", Width: 1, Height: 1, Pix: make([]uint8, 3)},
		{Mode: ModeI, Width: 2, Height: 2, I: make([]int32, 3)},
		{Mode: ModeP, Width: 1, Height: 1, Pix: []uint8{0}, Palette: make([][3]uint8, 257)},
	}
	for i, m := range bad {
		if _, err := Transform(m, DefaultOptions()); err == nil {
			t.Errorf("image %d: Transform accepted it", i)
		}
		if _, err := ConvertRGB(m); err == nil {
			t.Errorf("image %d: ConvertRGB accepted it", i)
		}
	}
	badOpts := []Options{
		{Size: 0, Std: clipStd},
		{Size: -3, Std: clipStd},
		{Size: maxSize + 1, Std: clipStd},
		{Size: 8, Std: [3]float32{1, 0, 1}},
		{Size: 8, Std: clipStd, Variant: 7},
	}
	for i, o := range badOpts {
		if _, err := Transform(good, o); err == nil {
			t.Errorf("options %d: Transform accepted %+v", i, o)
		}
		if _, err := Preprocess(readInput(t, "png_rgb_1x1.png"), o); err == nil {
			t.Errorf("options %d: Preprocess accepted %+v", i, o)
		}
	}
}

// TestRandomResizedCropParams checks torchvision's sampling rules: crops
// lie inside the image, cover 90–100 % of its area (up to rounding) with an
// aspect ratio in [3/4, 4/3] (up to rounding), corners take every allowed
// value, and impossible shapes fall back to the centred, clamped crop.
func TestRandomResizedCropParams(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, sz := range [][2]int{{640, 480}, {300, 300}, {160, 200}} {
		w, h := sz[0], sz[1]
		seenLeft := map[int]bool{}
		for n := 0; n < 2000; n++ {
			top, left, ch, cw := cropParams(w, h, rng)
			if top < 0 || left < 0 || cw <= 0 || ch <= 0 || left+cw > w || top+ch > h {
				t.Fatalf("%dx%d: crop %d,%d %dx%d outside the image", w, h, left, top, cw, ch)
			}
			area := float64(cw*ch) / float64(w*h)
			slack := float64(cw+ch+1) / float64(w*h)
			if area < 0.9-slack || area > 1+slack {
				t.Fatalf("%dx%d: crop %dx%d covers %.4f of the area", w, h, cw, ch, area)
			}
			if r := float64(cw) / float64(ch); r < 0.75*(1-2/float64(ch)) || r > 4.0/3*(1+2/float64(ch)) {
				t.Fatalf("%dx%d: crop %dx%d has aspect ratio %.4f", w, h, cw, ch, r)
			}
			seenLeft[left] = true
		}
		if w == 640 && len(seenLeft) < 20 {
			t.Errorf("%dx%d: only %d distinct left offsets", w, h, len(seenLeft))
		}
	}
	// No sampled crop fits a 1000×10 image: centred 10 high, 13 wide.
	for _, tt := range []struct{ w, h, top, left, ch, cw int }{
		{1000, 10, 0, 493, 10, 13},
		{10, 1000, 493, 0, 13, 10},
	} {
		top, left, ch, cw := cropParams(tt.w, tt.h, rng)
		if top != tt.top || left != tt.left || ch != tt.ch || cw != tt.cw {
			t.Errorf("%dx%d: crop %d,%d %dx%d, want %d,%d %dx%d", tt.w, tt.h, left, top, cw, ch, tt.left, tt.top, tt.cw, tt.ch)
		}
	}
}

// TestRandomResizedCrop checks that the crop is resized like Pillow in the
// image's mode and converted to RGB, and that equal seeds give equal crops.
func TestRandomResizedCrop(t *testing.T) {
	src := rand.New(rand.NewPCG(9, 10))
	for _, mode := range allModes {
		m := randomImage(src, mode, 45, 33)
		opts := DefaultOptions()
		opts.Size = 24
		seed := src.Uint64()
		got, err := RandomResizedCrop(m, rand.New(rand.NewPCG(seed, 1)), opts)
		if err != nil {
			t.Fatal(err)
		}
		if got.Mode != ModeRGB || got.Width != 24 || got.Height != 24 {
			t.Fatalf("%s: got %s %dx%d", mode, got.Mode, got.Width, got.Height)
		}
		top, left, ch, cw := cropParams(45, 33, rand.New(rand.NewPCG(seed, 1)))
		r := refResize(refCrop(refFromImage(m), left, top, cw, ch), mode, 24, 24)
		if want := refRGB(r, mode, m.Palette); !slices.Equal(got.Pix, want) {
			t.Errorf("%s: output differs from the reference", mode)
		}
	}
	if _, err := RandomResizedCrop(columnImage(4, 4), nil, DefaultOptions()); err == nil {
		t.Error("nil random source accepted")
	}
}

func TestConvertRGB(t *testing.T) {
	tests := []struct {
		m    *Image
		want []uint8
	}{
		{&Image{Mode: ModeL, Width: 2, Height: 1, Pix: []uint8{7, 250}}, []uint8{7, 7, 7, 250, 250, 250}},
		{&Image{Mode: Mode1, Width: 2, Height: 1, Pix: []uint8{0, 1}}, []uint8{0, 0, 0, 255, 255, 255}},
		{&Image{Mode: ModeLA, Width: 1, Height: 1, Pix: []uint8{9, 0}}, []uint8{9, 9, 9}},
		{&Image{Mode: ModeRGBA, Width: 1, Height: 1, Pix: []uint8{1, 2, 3, 0}}, []uint8{1, 2, 3}},
		{&Image{Mode: ModeI, Width: 4, Height: 1, I: []int32{-5, 0, 254, 65535}}, []uint8{0, 0, 0, 0, 0, 0, 254, 254, 254, 255, 255, 255}},
		{&Image{Mode: ModeP, Width: 2, Height: 1, Pix: []uint8{0, 9}, Palette: [][3]uint8{{1, 2, 3}}}, []uint8{1, 2, 3, 9, 9, 9}},
		// nk = 255 − K; channel = nk − muldiv255(c, nk).
		{&Image{Mode: ModeCMYK, Width: 2, Height: 1, Pix: []uint8{0, 128, 255, 0, 100, 50, 0, 200}}, []uint8{255, 127, 0, 55 - 22, 55 - 11, 55}},
	}
	for i, tt := range tests {
		got, err := ConvertRGB(tt.m)
		if err != nil {
			t.Fatal(err)
		}
		if got.Mode != ModeRGB || !slices.Equal(got.Pix, tt.want) {
			t.Errorf("case %d (%s): %v, want %v", i, tt.m.Mode, got.Pix, tt.want)
		}
	}
}

// TestBicubicKernel checks the kernel at points where its value is known
// exactly and its partition of unity.
func TestBicubicKernel(t *testing.T) {
	for _, tt := range [][2]float64{{0, 1}, {1, 0}, {2, 0}, {-1, 0}, {0.5, 0.5625}, {1.5, -0.0625}, {-0.5, 0.5625}, {3, 0}} {
		if got := bicubicKernel(tt[0]); got != tt[1] {
			t.Errorf("k(%v) = %v, want %v", tt[0], got, tt[1])
		}
	}
	for _, x := range []float64{0.1, 0.25, 0.7} {
		s := bicubicKernel(x+1) + bicubicKernel(x) + bicubicKernel(x-1) + bicubicKernel(x-2)
		if math.Abs(s-1) > 1e-12 {
			t.Errorf("weights at offset %v sum to %v", x, s)
		}
	}
}
