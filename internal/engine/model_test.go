package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/npy"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// featureTol is the fixture tolerance on features (README "Tolerances").
const featureTol = 1e-4

// regular returns a transformer of equal blocks.
func regular(width, headDim, layers, mlp int, act config.Activation) config.Transformer {
	t := config.Transformer{Width: width, HeadDim: headDim, Act: act}
	for range layers {
		t.Blocks = append(t.Blocks, config.Block{Heads: width / headDim, MLP: mlp, HasMLP: true})
	}
	return t
}

// irregular returns a transformer with per-layer heads and MLP widths.
func irregular(width, headDim int, heads, mlp []int, act config.Activation) config.Transformer {
	t := config.Transformer{Width: width, HeadDim: headDim, Act: act}
	for i := range heads {
		t.Blocks = append(t.Blocks, config.Block{Heads: heads[i], MLP: mlp[i], HasMLP: true})
	}
	return t
}

func text(embed int, tr config.Transformer) config.TextArch {
	return config.TextArch{ContextLength: 77, VocabSize: 49408, Embed: embed, Transformer: tr}
}

// fixtureModels are the four models of fixtures/models, with the
// architectures written out from their READMEs and config.json files.
var fixtureModels = []struct {
	name string
	arch config.Arch
}{
	{"vit-p16", config.Arch{
		EmbedDim: 16,
		Vision: config.VisionArch{Kind: config.KindViT, ImageSize: 224, Embed: 16, PatchSize: 16,
			Transformer: regular(64, 16, 2, 256, config.GELU)},
		Text: text(16, regular(8, 4, 2, 32, config.GELU)),
	}},
	{"vit-p32-quickgelu", config.Arch{
		EmbedDim: 24,
		Vision: config.VisionArch{Kind: config.KindViT, ImageSize: 224, Embed: 24, PatchSize: 32,
			Transformer: regular(48, 16, 2, 192, config.QuickGELU)},
		Text: text(24, regular(8, 4, 2, 32, config.QuickGELU)),
	}},
	{"resnet", config.Arch{
		EmbedDim: 20,
		Vision: config.VisionArch{Kind: config.KindResNet, ImageSize: 224, Embed: 20,
			Layers: [4]int{1, 2, 1, 1}, Width: 4, PoolHeads: 4, PoolHeadDim: 32},
		Text: text(20, regular(8, 4, 2, 32, config.GELU)),
	}},
	{"auto-pruned", config.Arch{
		EmbedDim: 16,
		Vision: config.VisionArch{Kind: config.KindViT, ImageSize: 224, Embed: 16, PatchSize: 32,
			Transformer: irregular(40, 4, []int{5, 0, 12}, []int{0, 77, 150}, config.GELU)},
		Text: text(16, irregular(10, 4, []int{2, 3, 0}, []int{17, 0, 48}, config.GELU)),
	}},
}

func fixtureArch(t testing.TB, name string) *config.Arch {
	for i := range fixtureModels {
		if fixtureModels[i].name == name {
			a := fixtureModels[i].arch
			return &a
		}
	}
	t.Fatalf("no fixture model %q", name)
	return nil
}

// openTensors opens a model's open_clip safetensors file.
func openTensors(t testing.TB, name string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Open(fixtures.Path(t, "fixtures", "models", name, "open_clip", "open_clip_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// buildFixture builds a fixture model and closes its file, so that the
// model is known not to use the mapping after Build.
func buildFixture(t testing.TB, name string, opts Options) *Model {
	t.Helper()
	f := openTensors(t, name)
	m, err := Build(fixtureArch(t, name), f.Tensors, opts)
	if cerr := f.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatalf("%s: Build: %v", name, err)
	}
	return m
}

func readNpy(t testing.TB, elem ...string) *npy.Array {
	t.Helper()
	a, err := npy.ReadFile(fixtures.Path(t, append([]string{"fixtures", "models"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type fixtureInputs struct {
	pixels []float32
	n      int
	tokens [][]int // padded rows of 77
}

var (
	inputsOnce sync.Once
	inputs     fixtureInputs
)

func loadInputs(t testing.TB) fixtureInputs {
	t.Helper()
	inputsOnce.Do(func() {
		px := readNpy(t, "inputs", "pixels.npy")
		tk := readNpy(t, "inputs", "tokens.npy")
		inputs.pixels, inputs.n = px.F32, px.Shape[0]
		rows, cols := tk.Shape[0], tk.Shape[1]
		for r := range rows {
			row := make([]int, cols)
			for c := range cols {
				row[c] = int(tk.I64[r*cols+c])
			}
			inputs.tokens = append(inputs.tokens, row)
		}
	})
	if inputs.pixels == nil {
		t.Fatal("fixture inputs could not be read")
	}
	return inputs
}

// relErr is the fixtures' error measure: per row max_i |got−want| / ‖want‖₂,
// the maximum over rows.
func relErr(got, want []float32, width int) float64 {
	worst := 0.0
	for r := 0; r*width < len(want); r++ {
		g, w := got[r*width:(r+1)*width], want[r*width:(r+1)*width]
		var norm, diff float64
		for i := range w {
			norm += float64(w[i]) * float64(w[i])
			diff = math.Max(diff, math.Abs(float64(g[i])-float64(w[i])))
		}
		worst = math.Max(worst, diff/math.Sqrt(norm))
	}
	return worst
}

// kernels lists the micro-kernels the tests run with: the pure-Go one and
// every assembly kernel the CPU supports.
func kernels() []*microKernel {
	return append([]*microKernel{genericKernel}, asmKernels()...)
}

func TestFixtureModels(t *testing.T) {
	in := loadInputs(t)
	for _, fm := range fixtureModels {
		for _, kern := range kernels() {
			t.Run(fm.name+"/"+kern.name, func(t *testing.T) {
				m := buildFixture(t, fm.name, Options{kernel: kern})
				e := m.EmbedDim()
				ctx := context.Background()

				wantImg := readNpy(t, fm.name, "expected", "image_features.npy")
				img, err := m.EncodeImages(ctx, in.pixels, in.n)
				if err != nil {
					t.Fatal(err)
				}
				if len(img) != len(wantImg.F32) {
					t.Fatalf("image features: %d values, want %d", len(img), len(wantImg.F32))
				}
				ei := relErr(img, wantImg.F32, e)
				t.Logf("image features: max relative error %.3g", ei)
				if ei > featureTol {
					t.Errorf("image features: relative error %.3g > %g", ei, featureTol)
				}

				wantTxt := readNpy(t, fm.name, "expected", "text_features.npy")
				txt, err := m.EncodeTexts(ctx, in.tokens)
				if err != nil {
					t.Fatal(err)
				}
				if len(txt) != len(wantTxt.F32) {
					t.Fatalf("text features: %d values, want %d", len(txt), len(wantTxt.F32))
				}
				et := relErr(txt, wantTxt.F32, e)
				t.Logf("text features: max relative error %.3g", et)
				if et > featureTol {
					t.Errorf("text features: relative error %.3g > %g", et, featureTol)
				}

				ls := readNpy(t, fm.name, "expected", "logit_scale.npy")
				if got := m.LogitScale(); got != ls.F32[0] {
					t.Errorf("logit scale %v, want %v", got, ls.F32[0])
				}
			})
		}
	}
}

// TestTextUnpadded checks that rows cut after their EOT give the same
// features as the padded rows.
func TestTextUnpadded(t *testing.T) {
	in := loadInputs(t)
	m := buildFixture(t, "auto-pruned", Options{})
	ctx := context.Background()
	padded, err := m.EncodeTexts(ctx, in.tokens)
	if err != nil {
		t.Fatal(err)
	}
	var cut [][]int
	for _, row := range in.tokens {
		p := 0
		for j, id := range row {
			if id > row[p] {
				p = j
			}
		}
		cut = append(cut, row[:p+1])
	}
	unpadded, err := m.EncodeTexts(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	if e := relErr(unpadded, padded, m.EmbedDim()); e > 1e-6 {
		t.Errorf("unpadded vs padded: relative difference %.3g", e)
	}
}

// TestBatchEqualsSingle checks that batched results equal one-at-a-time ones.
func TestBatchEqualsSingle(t *testing.T) {
	in := loadInputs(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		threads int
	}{{"vit-p16", 1}, {"vit-p16", 2}, {"vit-p16", 3}, {"resnet", 2}} {
		name := tc.name
		// With 2 threads the 4 images and 4 texts are split into two groups
		// (batchGroups); with 3, the matrix products are split instead.
		t.Run(fmt.Sprintf("%s/threads=%d", name, tc.threads), func(t *testing.T) {
			m := buildFixture(t, name, Options{Threads: tc.threads})
			e := m.EmbedDim()
			px := 3 * m.ImageSize() * m.ImageSize()
			batch, err := m.EncodeImages(ctx, in.pixels, in.n)
			if err != nil {
				t.Fatal(err)
			}
			for i := range in.n {
				one, err := m.EncodeImages(ctx, in.pixels[i*px:(i+1)*px], 1)
				if err != nil {
					t.Fatal(err)
				}
				if d := relErr(one, batch[i*e:(i+1)*e], e); d > 1e-6 {
					t.Errorf("image %d: single vs batch relative difference %.3g", i, d)
				}
			}
			texts, err := m.EncodeTexts(ctx, in.tokens)
			if err != nil {
				t.Fatal(err)
			}
			for i, row := range in.tokens {
				one, err := m.EncodeTexts(ctx, [][]int{row})
				if err != nil {
					t.Fatal(err)
				}
				if d := relErr(one, texts[i*e:(i+1)*e], e); d > 1e-6 {
					t.Errorf("text %d: single vs batch relative difference %.3g", i, d)
				}
			}
		})
	}
}

// TestSpinWaitSameResults checks that polling threads (SetSpinWait) change
// only the scheduling: the features of single images and texts split over
// two threads are bit-identical with and without it.
func TestSpinWaitSameResults(t *testing.T) {
	in := loadInputs(t)
	ctx := context.Background()
	for _, name := range []string{"vit-p16", "resnet", "auto-pruned"} {
		t.Run(name, func(t *testing.T) {
			m := buildFixture(t, name, Options{Threads: 2})
			px := 3 * m.ImageSize() * m.ImageSize()
			encode := func() ([]float32, []float32) {
				img, err := m.EncodeImages(ctx, in.pixels[:px], 1)
				if err != nil {
					t.Fatal(err)
				}
				txt, err := m.EncodeTexts(ctx, in.tokens[:1])
				if err != nil {
					t.Fatal(err)
				}
				return img, txt
			}
			img0, txt0 := encode()
			prev := SetSpinWait(50 * time.Microsecond)
			img1, txt1 := encode()
			SetSpinWait(prev)
			if !slices.Equal(img0, img1) || !slices.Equal(txt0, txt1) {
				t.Error("features differ with SetSpinWait(50µs)")
			}
		})
	}
}

func TestCancelledContext(t *testing.T) {
	in := loadInputs(t)
	m := buildFixture(t, "vit-p16", Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.EncodeImages(ctx, in.pixels, in.n); !errors.Is(err, context.Canceled) {
		t.Errorf("EncodeImages with a cancelled context: error %v, want context.Canceled", err)
	}
	if _, err := m.EncodeTexts(ctx, in.tokens); !errors.Is(err, context.Canceled) {
		t.Errorf("EncodeTexts with a cancelled context: error %v, want context.Canceled", err)
	}
	r := buildFixture(t, "resnet", Options{})
	if _, err := r.EncodeImages(ctx, in.pixels, in.n); !errors.Is(err, context.Canceled) {
		t.Errorf("ResNet EncodeImages with a cancelled context: error %v, want context.Canceled", err)
	}
}

// TestConcurrentUse runs several encodes of one model at once (meant for
// -race) and checks every result.
func TestConcurrentUse(t *testing.T) {
	in := loadInputs(t)
	ctx := context.Background()
	m := buildFixture(t, "auto-pruned", Options{Threads: 2})
	px := 3 * m.ImageSize() * m.ImageSize()
	wantImg, err := m.EncodeImages(ctx, in.pixels[:px], 1)
	if err != nil {
		t.Fatal(err)
	}
	wantTxt, err := m.EncodeTexts(ctx, in.tokens[:3])
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g%2 == 0 {
				got, err := m.EncodeImages(ctx, in.pixels[:px], 1)
				if err != nil {
					errs <- err
				} else if d := relErr(got, wantImg, m.EmbedDim()); d > 1e-6 {
					errs <- errors.New("concurrent image result differs")
				}
				return
			}
			got, err := m.EncodeTexts(ctx, in.tokens[:3])
			if err != nil {
				errs <- err
			} else if d := relErr(got, wantTxt, m.EmbedDim()); d > 1e-6 {
				errs <- errors.New("concurrent text result differs")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBuildErrors(t *testing.T) {
	f := openTensors(t, "auto-pruned")
	defer f.Close()
	arch := fixtureArch(t, "auto-pruned")
	clone := func() map[string]*tensor.Tensor {
		m := make(map[string]*tensor.Tensor, len(f.Tensors))
		for k, v := range f.Tensors {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name   string
		edit   func(map[string]*tensor.Tensor)
		tensor string
		target error
	}{
		{"missing", func(m map[string]*tensor.Tensor) {
			delete(m, "visual.transformer.resblocks.2.attn.out_proj.bias")
		}, "visual.transformer.resblocks.2.attn.out_proj.bias", ErrMissingTensor},
		{"missing logit scale", func(m map[string]*tensor.Tensor) {
			delete(m, "logit_scale")
		}, "logit_scale", ErrMissingTensor},
		{"shape", func(m map[string]*tensor.Tensor) {
			m["transformer.resblocks.0.mlp.c_fc.weight"] = tensor.FromFloat32(
				"transformer.resblocks.0.mlp.c_fc.weight", []int{10, 17}, make([]float32, 170))
		}, "transformer.resblocks.0.mlp.c_fc.weight", ErrTensorShape},
		{"unused", func(m map[string]*tensor.Tensor) {
			m["visual.transformer.resblocks.1.ln_1.weight"] = tensor.FromFloat32(
				"visual.transformer.resblocks.1.ln_1.weight", []int{40}, make([]float32, 40))
		}, "visual.transformer.resblocks.1.ln_1.weight", ErrUnusedTensor},
		{"integer weight", func(m map[string]*tensor.Tensor) {
			m["ln_final.bias"] = &tensor.Tensor{Name: "ln_final.bias", DType: tensor.I64, Shape: []int{10}, Data: make([]byte, 80)}
		}, "ln_final.bias", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := clone()
			tt.edit(m)
			_, err := Build(arch, m, Options{})
			if err == nil {
				t.Fatal("Build succeeded")
			}
			if !strings.Contains(err.Error(), tt.tensor) {
				t.Errorf("error %q does not name %s", err, tt.tensor)
			}
			if tt.target != nil && !errors.Is(err, tt.target) {
				t.Errorf("error %q is not %v", err, tt.target)
			}
		})
	}
	t.Run("scalar logit scale of shape [1]", func(t *testing.T) {
		m := clone()
		m["logit_scale"] = tensor.FromFloat32("logit_scale", []int{1}, []float32{3.5})
		model, err := Build(arch, m, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if model.LogitScale() != 3.5 {
			t.Errorf("logit scale %v, want 3.5", model.LogitScale())
		}
	})
	t.Run("bad architecture", func(t *testing.T) {
		bad := *arch
		bad.Vision.PatchSize = 30
		if _, err := Build(&bad, f.Tensors, Options{}); err == nil {
			t.Error("Build accepted image size 224 with patch size 30")
		}
	})
}

func TestEncodeInputErrors(t *testing.T) {
	m := buildFixture(t, "vit-p16", Options{})
	ctx := context.Background()
	tests := []struct {
		name string
		ids  [][]int
		want string
	}{
		{"id past vocabulary", [][]int{{49406, 49408, 49407}}, "token id 49408"},
		{"negative id", [][]int{{49406, -1, 49407}}, "token id -1"},
		{"empty row", [][]int{{49406, 49407}, {}}, "row 1 is empty"},
		{"too long", [][]int{make([]int, 78)}, "more than the context length 77"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.EncodeTexts(ctx, tt.ids)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := m.EncodeImages(ctx, make([]float32, 10), 1); err == nil {
		t.Error("EncodeImages accepted 10 pixel values for one image")
	}
	if _, err := m.EncodeImages(ctx, nil, -1); err == nil {
		t.Error("EncodeImages accepted a negative count")
	}
	if out, err := m.EncodeTexts(ctx, nil); err != nil || len(out) != 0 {
		t.Errorf("EncodeTexts(nil) = %d values, %v; want none and no error", len(out), err)
	}
}

func TestBatchGroups(t *testing.T) {
	for _, tt := range []struct{ threads, n, want int }{
		{1, 8, 1}, {2, 1, 1}, {2, 2, 2}, {2, 3, 1}, {2, 8, 2}, {2, 9, 2}, {3, 4, 1}, {3, 12, 3}, {4, 6, 1}, {4, 17, 4},
	} {
		if got := batchGroups(tt.threads, tt.n); got != tt.want {
			t.Errorf("batchGroups(%d, %d) = %d, want %d", tt.threads, tt.n, got, tt.want)
		}
	}
}
