package tinyclip

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/npy"
)

// TestPreprocessRGB compares PreprocessRGB with refclip.py's preprocess
// --convert-first (torchvision's ImageFolder loader: convert to RGB at load,
// then the eval transform), bit for bit, on images of every Pillow mode, and
// checks that it differs from Preprocess where the order matters.
func TestPreprocessRGB(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-check is not run with -short")
	}
	script := refclip(t)
	m := loadFixture(t, filepath.Join("resnet", "open_clip"))
	in := fixtures.Path(t, "fixtures", "preprocess", "inputs")
	names := []string{"png_p_trns_200x256.png", "png_la_250x300.png", "png_i16_320x240.png", "png_1bit_333x222.png",
		"jpeg_cmyk_200x160.jpg", "gif_240x200.gif", "png_rgb_225x223.png", "webp_lossy_200x150.webp"}
	out := t.TempDir()
	args := []string{script, "preprocess", "--convert-first", "--out", out}
	for _, n := range names {
		args = append(args, filepath.Join(in, n))
	}
	runPy(t, args...)
	differs := 0
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(in, n))
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.PreprocessRGB(data)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		want, err := npy.ReadFile(filepath.Join(out, n+".npy"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want.F32) {
			t.Fatalf("%s: %d values, want %d", n, len(got), len(want.F32))
		}
		bad := 0
		for i := range got {
			if got[i] != want.F32[i] {
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d values differ from refclip --convert-first", n, bad, len(got))
		}
		plain, err := m.Preprocess(data)
		if err != nil {
			t.Fatal(err)
		}
		for i := range plain {
			if plain[i] != got[i] {
				differs++
				break
			}
		}
	}
	if differs == 0 {
		t.Error("PreprocessRGB equals Preprocess on every image, palette and alpha ones included")
	}
}

// TestWeightsHash checks that the hash follows the weights and the
// architecture, not the file's name or place.
func TestWeightsHash(t *testing.T) {
	hash := func(path string, opts ...Option) string {
		t.Helper()
		m, err := Load(context.Background(), path, opts...)
		if err != nil {
			t.Fatal(err)
		}
		h, err := m.WeightsHash()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	models := fixtures.Path(t, "fixtures", "models")
	a := hash(filepath.Join(models, "resnet", "open_clip"))
	if len(a) != 64 || hash(filepath.Join(models, "resnet", "open_clip")) != a {
		t.Errorf("hash %q is not a stable SHA-256 digest", a)
	}
	if hash(filepath.Join(models, "vit-p16", "open_clip")) == a {
		t.Error("another model, same hash")
	}
	// The same weight file elsewhere, with the same architecture from the
	// official config.json: same hash.
	w, err := os.ReadFile(filepath.Join(models, "resnet", "open_clip", "open_clip_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(t.TempDir(), "weights.safetensors")
	os.WriteFile(copied, w, 0o644)
	if h := hash(copied, WithConfig(filepath.Join(models, "resnet", "config.json"))); h != a {
		t.Errorf("copied weight file: hash %s, original %s", h, a)
	}
	// One bit of one weight changed: another hash.
	w[len(w)-4] ^= 1
	os.WriteFile(copied, w, 0o644)
	if h := hash(copied, WithConfig(filepath.Join(models, "resnet", "config.json"))); h == a {
		t.Error("changed weight, same hash")
	}
}
