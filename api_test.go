package tinyclip

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
)

func loadFixture(t *testing.T, name string, opts ...Option) *Model {
	t.Helper()
	m, err := Load(context.Background(), fixtures.Path(t, "fixtures", "models", name), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMalformedInputs(t *testing.T) {
	ctx := context.Background()
	models := fixtures.Path(t, "fixtures", "models")
	bad := fixtures.Path(t, "fixtures", "preprocess", "malformed")
	tmp := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	st, _ := os.ReadFile(filepath.Join(models, "vit-p16", "open_clip", "open_clip_model.safetensors"))
	pt, _ := os.ReadFile(filepath.Join(models, "vit-p16", "tinyclip_fp32.pt"))
	badHeader := append([]byte(nil), st...)
	copy(badHeader[8:], "[\"not an object\"")
	// A pickle that calls os.system: refused before anything runs.
	evil := []byte("\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
	cfg := filepath.Join(models, "vit-p16", "config.json")

	for _, c := range []struct {
		name string
		path string
		opts []Option
		is   error
		want string
	}{
		{"empty file", write("empty.pt", nil), nil, ErrUnsupportedFormat, "empty.pt"},
		{"truncated pt", write("trunc.pt", pt[:len(pt)/3]), []Option{WithConfig(cfg)}, nil, "trunc.pt"},
		{"truncated safetensors", write("trunc.safetensors", st[:len(st)-100]), []Option{WithConfig(cfg)}, nil, "trunc.safetensors"},
		{"corrupt safetensors header", write("hdr.safetensors", badHeader), []Option{WithConfig(cfg)}, nil, "hdr.safetensors"},
		{"foreign global", write("evil.pt", evil), nil, ErrForbiddenGlobal, "os.system"},
		{"wrong shapes", filepath.Join(models, "vit-p16", "tinyclip_fp32.pt"), []Option{WithConfig(filepath.Join(models, "resnet", "config.json"))}, nil, "visual."},
		{"missing file", filepath.Join(tmp, "nope"), nil, os.ErrNotExist, "nope"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(ctx, c.path, c.opts...)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %q is not %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}

	m := loadFixture(t, "vit-p16", WithMaxPixels(100_000))
	for _, c := range []struct {
		file string
		is   error
	}{
		{"bomb_100000x100000.png", ErrImageTooLarge},
		{"bomb_65535x65535.gif", ErrImageTooLarge},
		{"truncated.jpg", nil},
		{"truncated.png", nil},
		{"garbage.jpg", nil},
		{"empty.png", nil},
	} {
		data, err := os.ReadFile(filepath.Join(bad, c.file))
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.EncodeImageBytes(ctx, [][]byte{data})
		if err == nil || (c.is != nil && !errors.Is(err, c.is)) {
			t.Errorf("%s: got %v, want an error (%v)", c.file, err, c.is)
		}
	}
	// The pixel budget set by WithMaxPixels applies to ordinary images too.
	big, _ := os.ReadFile(fixtures.Path(t, "fixtures", "preprocess", "inputs", "png_rgb_1000x667.png"))
	if _, err := m.EncodeImageBytes(ctx, [][]byte{big}); !errors.Is(err, ErrImageTooLarge) {
		t.Errorf("1000×667 with a 100,000-pixel budget: got %v", err)
	}

	// Texts: empty labels are refused where a label is required; any length
	// of text is accepted and truncated to 77 tokens with EOT last.
	img := make([]float32, m.EmbedDim())
	img[0] = 1
	if _, err := m.Classify(ctx, [][]float32{img}, []string{"a cat", " "}); !errors.Is(err, ErrEmptyText) {
		t.Errorf("blank label: got %v", err)
	}
	if _, err := m.Classify(ctx, [][]float32{img}, nil); !errors.Is(err, ErrNoLabels) {
		t.Errorf("no labels: got %v", err)
	}
	if _, err := m.ZeroShot(ctx, []string{"cat", ""}, nil); !errors.Is(err, ErrEmptyText) {
		t.Errorf("empty class: got %v", err)
	}
	long := strings.Repeat("a photo of a cat ", 600)[:10000]
	ids, err := m.Tokenize(long)
	if err != nil || len(ids) != 77 || ids[76] != 49407 {
		t.Errorf("10,000-character text: %d ids (last %v), %v", len(ids), ids[len(ids)-1], err)
	}
	if _, err := m.EncodeTexts(ctx, []string{long, ""}); err != nil {
		t.Errorf("long and empty text: %v", err)
	}
	if _, err := m.EncodeImages(ctx, []image.Image{nil}); err == nil {
		t.Error("nil image accepted")
	}
	if _, err := m.EncodePixels(ctx, make([]float32, 10), 1); err == nil {
		t.Error("wrong pixel count accepted")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.EncodeTexts(cctx, []string{"a"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: got %v", err)
	}
}

// TestGoImages checks that an image.Image decoded by Go's png package gives
// the same embedding as the encoded file (the mapping is lossless for RGB).
func TestGoImages(t *testing.T) {
	ctx := context.Background()
	m := loadFixture(t, "vit-p16")
	data, err := os.ReadFile(fixtures.Path(t, "fixtures", "models", "inputs", "b_wide.png"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.EncodeImages(ctx, []image.Image{img})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.EncodeImageBytes(ctx, [][]byte{data})
	if err != nil {
		t.Fatal(err)
	}
	if e := relErr(a[0], b[0]); e != 0 {
		t.Errorf("image.Image vs bytes: relative difference %.2e", e)
	}
}

// TestZeroShotRecipe compares ZeroShot with the official recipe computed
// here from EncodeTexts: normalise each template embedding, average,
// normalise; logits = 100 · image · classifierᵀ.
func TestZeroShotRecipe(t *testing.T) {
	ctx := context.Background()
	m := loadFixture(t, "auto-pruned")
	classes := []string{"cat", "dog", "diagram"}
	templates := []string{"a photo of a {}.", "a {}", "it's a {}!"}
	zs, err := m.ZeroShot(ctx, classes, templates)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range classes {
		var texts []string
		for _, tpl := range templates {
			texts = append(texts, strings.ReplaceAll(tpl, "{}", c))
		}
		raw, err := m.EncodeTexts(ctx, texts, Raw())
		if err != nil {
			t.Fatal(err)
		}
		mean := make([]float64, m.EmbedDim())
		for _, r := range raw {
			var n float64
			for _, v := range r {
				n += float64(v) * float64(v)
			}
			for k, v := range r {
				mean[k] += float64(v) / math.Sqrt(n) / float64(len(raw))
			}
		}
		var n float64
		for _, v := range mean {
			n += v * v
		}
		for k := range mean {
			if d := math.Abs(mean[k]/math.Sqrt(n) - float64(zs.Weights()[i][k])); d > 1e-5 {
				t.Fatalf("class %q dim %d differs by %.2e", c, k, d)
			}
		}
	}
	img, _ := m.EncodeTexts(ctx, []string{"a cat"}) // any unit vector will do
	logits, err := zs.Logits(img[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := range classes {
		want := 100 * float64(Cosine(img[0], zs.Weights()[i]))
		if math.Abs(float64(logits[i])-want) > 1e-3 {
			t.Errorf("logit %d = %v, want %v", i, logits[i], want)
		}
	}
	probs, _ := zs.Probabilities(img[0])
	var s float64
	for _, p := range probs {
		s += float64(p)
	}
	if math.Abs(s-1) > 1e-5 {
		t.Errorf("probabilities sum to %v", s)
	}
}

// TestHFPreprocessing checks that the Hugging Face variant is selected: it
// converts a palette image to RGB before resizing, which changes the result.
func TestHFPreprocessing(t *testing.T) {
	ctx := context.Background()
	data, err := os.ReadFile(fixtures.Path(t, "fixtures", "preprocess", "inputs", "png_p_256x200.png"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := loadFixture(t, "vit-p16").EncodeImageBytes(ctx, [][]byte{data})
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadFixture(t, "vit-p16", WithHFPreprocessing()).EncodeImageBytes(ctx, [][]byte{data})
	if err != nil {
		t.Fatal(err)
	}
	if relErr(a[0], b[0]) < 1e-3 {
		t.Error("HF preprocessing gave the same embedding as open_clip's on a palette image")
	}
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	m := loadFixture(t, "resnet/open_clip")
	want, err := m.EncodeTexts(ctx, []string{"a photo of a cat"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := m.EncodeTexts(ctx, []string{"a dog", "a photo of a cat"})
			if err != nil {
				errs <- err
				return
			}
			if relErr(got[1], want[0]) > 1e-6 {
				errs <- errors.New("concurrent result differs")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
