package imageproc

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// pillowCorpus is testdata/pillow/manifest.json: small files covering
// decoder paths beyond fixtures/preprocess, with the outputs of Pillow 9.4
// (libjpeg-turbo 2.1.5, libwebp 1.2.4) written by testdata/pillow/gen.py.
type pillowCorpus struct {
	Size   int `json:"size"`
	Images []struct {
		File          string `json:"file"`
		Mode          string `json:"mode"`
		Width         int    `json:"width"`
		Height        int    `json:"height"`
		PILError      string `json:"pil_error"`
		OpenCLIPError string `json:"open_clip_error"`
		HFError       string `json:"hf_error"`
	} `json:"images"`
}

// pillowUnsupported lists the corpus files Pillow decodes and this package
// refuses, with the error they must give.
var pillowUnsupported = map[string]error{
	"cj_arith.jpg": ErrUnsupported, // arithmetic coding
}

func TestPillowCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "pillow")
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var corpus pillowCorpus
	if err := json.Unmarshal(b, &corpus); err != nil {
		t.Fatal(err)
	}
	if len(corpus.Images) < 70 {
		t.Fatalf("corpus lists %d images", len(corpus.Images))
	}
	for _, im := range corpus.Images {
		t.Run(im.File, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, "in", im.File))
			if err != nil {
				t.Fatal(err)
			}
			m, err := Decode(data, 0)
			if im.PILError != "" {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Pillow: %s; Decode error %v, want ErrCorrupt", im.PILError, err)
				}
				return
			}
			if kind, ok := pillowUnsupported[im.File]; ok {
				if !errors.Is(err, kind) {
					t.Fatalf("Decode error %v, want %v", err, kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(m.Mode) != im.Mode || m.Width != im.Width || m.Height != im.Height {
				t.Fatalf("decoded %s %dx%d, want %s %dx%d", m.Mode, m.Width, m.Height, im.Mode, im.Width, im.Height)
			}
			want := readNpy(t, filepath.Join(dir, "want", im.File+".decoded.npy.gz"))
			if m.Mode == ModeI {
				if !slices.Equal(m.I, want.I32) {
					t.Errorf("decoded mode I values differ")
				}
			} else if d := maxAbsDiffU8(m.Pix, want.U8); len(m.Pix) != len(want.U8) || d != 0 {
				t.Errorf("decoded pixels: %d values, want %d; max |diff| %d", len(m.Pix), len(want.U8), d)
			}
			for _, v := range []struct {
				variant Variant
				pilErr  string
			}{{OpenCLIP, im.OpenCLIPError}, {HF, im.HFError}} {
				if v.pilErr != "" {
					continue // Pillow itself fails on this path
				}
				opts := DefaultOptions()
				opts.Size = corpus.Size
				opts.Variant = v.variant
				got, err := Transform(m, opts)
				if err != nil {
					t.Fatal(err)
				}
				want := readNpy(t, filepath.Join(dir, "want", im.File+"."+v.variant.String()+".npy.gz"))
				if d := maxAbsDiffU8(got.Pix, want.U8); len(got.Pix) != len(want.U8) || d != 0 {
					t.Errorf("%v transform: max |diff| %d", v.variant, d)
				}
			}
		})
	}
}
