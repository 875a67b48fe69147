// Copyright 2026 The tinyclip-go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package jpeg

import (
	"bytes"
	"errors"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/npy"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(fixtures.Path(t, "fixtures", "preprocess", "inputs", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeRawGrayFixture compares the plane of a greyscale JPEG, which
// libjpeg outputs without upsampling or colour conversion, with the pixels
// Pillow decoded.
func TestDecodeRawGrayFixture(t *testing.T) {
	raw, err := DecodeRaw(bytes.NewReader(readFixture(t, "jpeg_gray_230x170.jpg")))
	if err != nil {
		t.Fatal(err)
	}
	want, err := npy.ReadFile(fixtures.Path(t, "fixtures", "preprocess", "expected", "jpeg_gray_230x170.jpg.decoded.npy.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if raw.ColorSpace != Gray || len(raw.Components) != 1 || raw.Width != 230 || raw.Height != 170 {
		t.Fatalf("got %v, %d components, %dx%d", raw.ColorSpace, len(raw.Components), raw.Width, raw.Height)
	}
	c := raw.Components[0]
	if c.Width != 230 || c.Height != 170 || c.Stride < 230 {
		t.Fatalf("plane %dx%d stride %d", c.Width, c.Height, c.Stride)
	}
	diffs := 0
	for y := 0; y < c.Height; y++ {
		for x := 0; x < c.Width; x++ {
			if c.Pix[y*c.Stride+x] != want.U8[y*230+x] {
				diffs++
			}
		}
	}
	if diffs != 0 {
		t.Errorf("%d samples differ from Pillow's", diffs)
	}
}

// TestDecodeRawLayout checks the component geometry and colour-space
// inference on the fixture files.
func TestDecodeRawLayout(t *testing.T) {
	type comp struct{ h, v, w, ht int }
	tests := []struct {
		file        string
		cs          ColorSpace
		progressive bool
		adobe       int
		comps       []comp
	}{
		{"jpeg_420_223x225.jpg", YCbCr, false, -1, []comp{{2, 2, 223, 225}, {1, 1, 112, 113}, {1, 1, 112, 113}}},
		{"jpeg_422_250x190.jpg", YCbCr, false, -1, []comp{{2, 1, 250, 190}, {1, 1, 125, 190}, {1, 1, 125, 190}}},
		{"jpeg_444_225x223.jpg", YCbCr, false, -1, []comp{{1, 1, 225, 223}, {1, 1, 225, 223}, {1, 1, 225, 223}}},
		{"jpeg_progressive_300x200.jpg", YCbCr, true, -1, []comp{{2, 2, 300, 200}, {1, 1, 150, 100}, {1, 1, 150, 100}}},
		{"jpeg_cmyk_200x160.jpg", CMYK, false, 0, []comp{{1, 1, 200, 160}, {1, 1, 200, 160}, {1, 1, 200, 160}, {1, 1, 200, 160}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw, err := DecodeRaw(bytes.NewReader(readFixture(t, tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			if raw.ColorSpace != tt.cs || raw.Progressive != tt.progressive || raw.AdobeTransform != tt.adobe {
				t.Errorf("got %v progressive=%v adobe=%d, want %v %v %d", raw.ColorSpace, raw.Progressive, raw.AdobeTransform, tt.cs, tt.progressive, tt.adobe)
			}
			if len(raw.Components) != len(tt.comps) {
				t.Fatalf("%d components, want %d", len(raw.Components), len(tt.comps))
			}
			for i, want := range tt.comps {
				c := raw.Components[i]
				if c.H != want.h || c.V != want.v || c.Width != want.w || c.Height != want.ht {
					t.Errorf("component %d: %dx%d sampling, %dx%d samples; want %dx%d, %dx%d", i, c.H, c.V, c.Width, c.Height, want.h, want.v, want.w, want.ht)
				}
				if len(c.Pix) < (c.Height-1)*c.Stride+c.Width {
					t.Errorf("component %d: %d bytes for %dx%d at stride %d", i, len(c.Pix), c.Width, c.Height, c.Stride)
				}
			}
			cfg, err := DecodeConfig(bytes.NewReader(readFixture(t, tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			wantModel := color.YCbCrModel
			if tt.cs == CMYK {
				wantModel = color.CMYKModel
			}
			if cfg.Width != raw.Width || cfg.Height != raw.Height || cfg.ColorModel != wantModel {
				t.Errorf("DecodeConfig = %dx%d %v", cfg.Width, cfg.Height, cfg.ColorModel)
			}
		})
	}
}

// TestTruncated checks that every proper prefix of a file is an error.
func TestTruncated(t *testing.T) {
	for _, name := range []string{"jpeg_420_223x225.jpg", "jpeg_progressive_300x200.jpg", "jpeg_cmyk_200x160.jpg"} {
		data := readFixture(t, name)
		step := max(1, len(data)/97)
		for n := 0; n < len(data); n += step {
			if _, err := DecodeRaw(bytes.NewReader(data[:n])); err == nil {
				t.Errorf("%s: prefix of %d of %d bytes decoded without error", name, n, len(data))
			}
		}
		// The last bytes: the end of the entropy-coded data and EOI.
		for n := len(data) - 4; n < len(data); n++ {
			if _, err := DecodeRaw(bytes.NewReader(data[:n])); err == nil {
				t.Errorf("%s: prefix of %d of %d bytes decoded without error", name, n, len(data))
			}
		}
	}
}

// TestUnsupportedCoding checks that SOF markers of processes the decoder
// lacks give an UnsupportedError naming them.
func TestUnsupportedCoding(t *testing.T) {
	data := readFixture(t, "jpeg_444_225x223.jpg")
	i := bytes.Index(data, []byte{0xff, 0xc0})
	if i < 0 {
		t.Fatal("no SOF0 marker")
	}
	for _, tt := range []struct {
		marker byte
		want   string
	}{{0xc9, "arithmetic coding"}, {0xc3, "lossless or hierarchical coding"}} {
		d := bytes.Clone(data)
		d[i+1] = tt.marker
		_, err := DecodeRaw(bytes.NewReader(d))
		var ue UnsupportedError
		if !errors.As(err, &ue) || string(ue) != tt.want {
			t.Errorf("SOF %#x: error %v, want UnsupportedError(%q)", tt.marker, err, tt.want)
		}
	}
}

// TestIDCTDC checks blocks with only a DC term: every sample is
// (dc + 4) >> 3, level-shifted and clamped.
func TestIDCTDC(t *testing.T) {
	var dst [64]byte
	for dc := int32(-1100); dc <= 1100; dc++ {
		var b block
		b[0] = dc
		idctISLOW(&b, dst[:], 8)
		want := uint8(min(max((dc+4)>>3+128, 0), 255))
		for i, v := range dst {
			if v != want {
				t.Fatalf("dc %d: sample %d = %d, want %d", dc, i, v, want)
			}
		}
	}
}

// TestIDCTAccuracy compares the integer IDCT with a float64 IDCT on the
// rounded DCTs of random 8x8 sample blocks: ISLOW meets the IEEE 1180
// accuracy bound, so no sample may be more than 1 from the correctly rounded
// value.
func TestIDCTAccuracy(t *testing.T) {
	var cos [8][8]float64 // cos[x][u] with the C(u) factor folded in
	for x := range 8 {
		for u := range 8 {
			cos[x][u] = math.Cos(float64(2*x+1) * float64(u) * math.Pi / 16)
			if u == 0 {
				cos[x][u] /= math.Sqrt2
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	var dst [64]byte
	worst := 0.0
	for n := 0; n < 1000; n++ {
		var px [64]float64
		for i := range px {
			px[i] = float64(rng.IntN(256) - 128)
		}
		if n%2 == 1 { // smooth blocks too
			for i := range px {
				px[i] = float64(i%8*9+i/8*7) - 60
			}
		}
		var b, coef block
		for v := range 8 {
			for u := range 8 {
				var s float64
				for y := range 8 {
					for x := range 8 {
						s += px[y*8+x] * cos[x][u] * cos[y][v]
					}
				}
				coef[v*8+u] = int32(math.Round(s / 4))
			}
		}
		b = coef
		idctISLOW(&b, dst[:], 8)
		for y := range 8 {
			for x := range 8 {
				var s float64
				for v := range 8 {
					for u := range 8 {
						s += float64(coef[v*8+u]) * cos[x][u] * cos[y][v]
					}
				}
				want := math.Min(math.Max(math.Round(s/4)+128, 0), 255)
				worst = math.Max(worst, math.Abs(float64(dst[y*8+x])-want))
			}
		}
	}
	if worst > 1 {
		t.Errorf("largest difference from the float IDCT is %v, want <= 1", worst)
	}
}

// TestRangeLimit checks the post-IDCT range-limit table: v+128 clamped for
// -512 <= v < 512, and the wrap-around beyond.
func TestRangeLimit(t *testing.T) {
	for v := -512; v < 512; v++ {
		want := uint8(min(max(v+128, 0), 255))
		if got := rangeLimit[v&1023]; got != want {
			t.Errorf("rangeLimit[%d] = %d, want %d", v, got, want)
		}
	}
}

// FuzzDecodeRaw checks that arbitrary bytes give an error or consistent
// planes, never a panic. Images above 1<<20 pixels are skipped after
// DecodeConfig so that the fuzzer's memory stays bounded.
func FuzzDecodeRaw(f *testing.F) {
	dir := fixtures.Path(f, "fixtures", "preprocess", "inputs")
	for _, name := range []string{"jpeg_420_223x225.jpg", "jpeg_progressive_300x200.jpg", "jpeg_cmyk_200x160.jpg", "jpeg_gray_230x170.jpg", "jpeg_422_250x190.jpg"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	corpus, _ := filepath.Glob(filepath.Join("..", "testdata", "pillow", "in", "*.jpg"))
	for _, name := range corpus {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := DecodeConfig(bytes.NewReader(data))
		if err != nil || int64(cfg.Width)*int64(cfg.Height) > 1<<20 {
			return
		}
		raw, err := DecodeRaw(bytes.NewReader(data))
		if err != nil {
			return
		}
		if raw.Width != cfg.Width || raw.Height != cfg.Height {
			t.Fatalf("DecodeRaw %dx%d, DecodeConfig %dx%d", raw.Width, raw.Height, cfg.Width, cfg.Height)
		}
		for i, c := range raw.Components {
			if c.Width <= 0 || c.Height <= 0 || c.Stride < c.Width || len(c.Pix) < (c.Height-1)*c.Stride+c.Width {
				t.Fatalf("component %d: %dx%d, stride %d, %d bytes", i, c.Width, c.Height, c.Stride, len(c.Pix))
			}
			if raw.MaxH%c.H != 0 || raw.MaxV%c.V != 0 {
				t.Fatalf("component %d: sampling %dx%d with maximum %dx%d", i, c.H, c.V, raw.MaxH, raw.MaxV)
			}
		}
	})
}
