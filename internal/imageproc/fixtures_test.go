package imageproc

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/npy"
)

// manifestImage is one entry of fixtures/preprocess/manifest.json.
type manifestImage struct {
	File            string `json:"file"`
	Format          string `json:"format"`
	PILMode         string `json:"pil_mode"`
	Width           int    `json:"width"`
	Height          int    `json:"height"`
	Resized         [2]int `json:"resized"`
	CropLeftTop     [2]int `json:"crop_left_top"`
	ExpectedUint8   string `json:"expected_uint8"`
	ExpectedFloat32 string `json:"expected_float32"`
	ExpectedDecoded string `json:"expected_decoded"`
	DecodedShape    []int  `json:"decoded_shape"`
}

type manifest struct {
	Mean      [3]float64      `json:"mean"`
	Std       [3]float64      `json:"std"`
	Images    []manifestImage `json:"images"`
	Malformed []struct {
		File string `json:"file"`
	} `json:"malformed"`
}

func loadManifest(t *testing.T) (string, manifest) {
	t.Helper()
	dir := fixtures.Path(t, "fixtures", "preprocess")
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(m.Images) != 34 {
		t.Fatalf("manifest lists %d images, want 34", len(m.Images))
	}
	return dir, m
}

func readNpy(t *testing.T, path string) *npy.Array {
	t.Helper()
	a, err := npy.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func maxAbsDiffU8(a, b []uint8) int {
	d := 0
	for i := range a {
		d = max(d, int(a[i])-int(b[i]), int(b[i])-int(a[i]))
	}
	return d
}

// uint8Tolerance is the largest difference allowed per format on the
// [224, 224, 3] output. Every decoder path here reproduces Pillow exactly.
var uint8Tolerance = map[string]int{"PNG": 0, "BMP": 0, "GIF": 0, "WEBP": 0, "JPEG": 0}

// TestPreprocessFixtures runs the eval transform on every input of
// fixtures/preprocess and compares the uint8 image before ToTensor.
func TestPreprocessFixtures(t *testing.T) {
	dir, man := loadManifest(t)
	opts := DefaultOptions()
	for _, im := range man.Images {
		t.Run(filepath.Base(im.File), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, im.File))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := DecodeConfig(data)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Format != im.Format || string(cfg.Mode) != im.PILMode || cfg.Width != im.Width || cfg.Height != im.Height {
				t.Errorf("DecodeConfig = %+v, want %s %s %dx%d", cfg, im.Format, im.PILMode, im.Width, im.Height)
			}
			if w, h := resizedSize(im.Width, im.Height, 224); w != im.Resized[0] || h != im.Resized[1] {
				t.Errorf("resized size %dx%d, want %v", w, h, im.Resized)
			}
			if l, tp := halfRoundEven(im.Resized[0]-224), halfRoundEven(im.Resized[1]-224); l != im.CropLeftTop[0] || tp != im.CropLeftTop[1] {
				t.Errorf("crop offsets %d,%d, want %v", l, tp, im.CropLeftTop)
			}
			got, err := PreprocessUint8(data, opts)
			if err != nil {
				t.Fatal(err)
			}
			want := readNpy(t, filepath.Join(dir, im.ExpectedUint8))
			if !slices.Equal(want.Shape, []int{224, 224, 3}) || len(want.U8) != len(got) {
				t.Fatalf("expected shape %v, got %d values", want.Shape, len(got))
			}
			d := maxAbsDiffU8(got, want.U8)
			t.Logf("max |diff| = %d", d)
			if tol := uint8Tolerance[im.Format]; d > tol {
				t.Errorf("max |diff| = %d, want <= %d", d, tol)
			}
		})
	}
}

// TestPreprocessFloat32Fixtures checks the four normalised tensors bit for
// bit.
func TestPreprocessFloat32Fixtures(t *testing.T) {
	dir, man := loadManifest(t)
	opts := DefaultOptions()
	for c := range 3 {
		if opts.Mean[c] != float32(man.Mean[c]) || opts.Std[c] != float32(man.Std[c]) {
			t.Errorf("channel %d: mean/std %v/%v, manifest %v/%v", c, opts.Mean[c], opts.Std[c], man.Mean[c], man.Std[c])
		}
	}
	n := 0
	for _, im := range man.Images {
		if im.ExpectedFloat32 == "" {
			continue
		}
		n++
		t.Run(filepath.Base(im.File), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, im.File))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Preprocess(data, opts)
			if err != nil {
				t.Fatal(err)
			}
			want := readNpy(t, filepath.Join(dir, im.ExpectedFloat32))
			if !slices.Equal(want.Shape, []int{3, 224, 224}) || len(want.F32) != len(got) {
				t.Fatalf("expected shape %v, got %d values", want.Shape, len(got))
			}
			bad := 0
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want.F32[i]) {
					if bad == 0 {
						t.Errorf("value %d = %v, want %v", i, got[i], want.F32[i])
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d values differ", bad, len(got))
			}
		})
	}
	if n != 4 {
		t.Errorf("%d float32 fixtures, want 4", n)
	}
}

// TestDecodeJPEGFixtures compares the full-size decoded JPEG pixels with
// Pillow's (RGB, L, or CMYK as Pillow stores it).
func TestDecodeJPEGFixtures(t *testing.T) {
	dir, man := loadManifest(t)
	n := 0
	for _, im := range man.Images {
		if im.ExpectedDecoded == "" {
			continue
		}
		n++
		t.Run(filepath.Base(im.File), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, im.File))
			if err != nil {
				t.Fatal(err)
			}
			m, err := Decode(data, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := readNpy(t, filepath.Join(dir, im.ExpectedDecoded))
			shape := []int{m.Height, m.Width}
			if c := m.Mode.Channels(); c > 1 {
				shape = append(shape, c)
			}
			if !slices.Equal(want.Shape, shape) || string(m.Mode) != im.PILMode {
				t.Fatalf("decoded %s %v, want %s %v", m.Mode, shape, im.PILMode, want.Shape)
			}
			d := maxAbsDiffU8(m.Pix, want.U8)
			t.Logf("max |diff| = %d", d)
			if d != 0 {
				t.Errorf("max |diff| = %d, want 0", d)
			}
		})
	}
	if n != 8 {
		t.Errorf("%d JPEG fixtures, want 8", n)
	}
}

// TestMalformedFixtures checks that every hostile file gives the right kind
// of error, and that the bombs are refused from their headers.
func TestMalformedFixtures(t *testing.T) {
	dir, man := loadManifest(t)
	want := map[string]error{
		"bad_crc.png":            ErrCorrupt,
		"bomb_100000x100000.png": ErrImageTooLarge,
		"bomb_65000x65000.jpg":   ErrImageTooLarge,
		"bomb_65535x65535.gif":   ErrImageTooLarge,
		"empty.png":              ErrUnknownFormat,
		"garbage.jpg":            ErrUnknownFormat,
		"truncated.jpg":          ErrCorrupt,
		"truncated.png":          ErrCorrupt,
	}
	if len(man.Malformed) != len(want) {
		t.Errorf("manifest lists %d malformed files, want %d", len(man.Malformed), len(want))
	}
	for _, mf := range man.Malformed {
		name := filepath.Base(mf.File)
		t.Run(name, func(t *testing.T) {
			kind, ok := want[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			data, err := os.ReadFile(filepath.Join(dir, mf.File))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Preprocess(data, DefaultOptions())
			if !errors.Is(err, kind) {
				t.Fatalf("error %v, want one wrapping %v", err, kind)
			}
			t.Logf("%v", err)
		})
	}
}

// TestModelInputsPixels preprocesses the four images of fixtures/models/inputs
// and compares with pixels.npy, the official transform's batch, bit for bit.
func TestModelInputsPixels(t *testing.T) {
	dir := fixtures.Path(t, "fixtures", "models", "inputs")
	b, err := os.ReadFile(filepath.Join(dir, "images.json"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		t.Fatal(err)
	}
	want := readNpy(t, filepath.Join(dir, "pixels.npy"))
	if !slices.Equal(want.Shape, []int{len(names), 3, 224, 224}) {
		t.Fatalf("pixels.npy shape %v for %d images", want.Shape, len(names))
	}
	const n = 3 * 224 * 224
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Preprocess(data, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			var maxDiff float64
			for j, v := range got {
				maxDiff = max(maxDiff, math.Abs(float64(v)-float64(want.F32[i*n+j])))
			}
			t.Logf("max |diff| = %g", maxDiff)
			if maxDiff != 0 {
				t.Errorf("max |diff| = %g, want 0 (bit-exact)", maxDiff)
			}
		})
	}
}
