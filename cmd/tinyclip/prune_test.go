package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/checkpoint"
	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/npy"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// readST reads a .safetensors(.gz) fixture.
func readST(t *testing.T, path string) map[string]*tensor.Tensor {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	f, err := safetensors.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f.Tensors
}

func f32s(t *testing.T, x *tensor.Tensor) []float32 {
	t.Helper()
	v, err := x.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rowRelErr is max over rows of max|got−want| / ‖want‖₂.
func rowRelErr(got, want []float32, w int) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	worst := 0.0
	for r := 0; r < len(want); r += w {
		n, d := 0.0, 0.0
		for i := r; i < r+w; i++ {
			n += float64(want[i]) * float64(want[i])
			d = math.Max(d, math.Abs(float64(got[i]-want[i])))
		}
		worst = math.Max(worst, d/math.Sqrt(n))
	}
	return worst
}

// TestPruneCommand writes the masked student of fixtures/auto/prune (the
// fixture model with logit scale ln 50 and the designed log-alphas, stored
// under the official l0_module names with a DDP ".module", as the official
// loop names them), runs `tinyclip prune`, and checks the output: the
// official pruned tensors (1e-6·max|ref|), the per-layer config, and the
// public loader and engine against the official features (row-relative
// 1e-5).
func TestPruneCommand(t *testing.T) {
	auto := fixtures.Path(t, "fixtures", "auto")
	cfgBytes, err := os.ReadFile(filepath.Join(auto, "model", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := checkpoint.ParseConfig(cfgBytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.FromConfig(cfg); err != nil {
		t.Fatal(err)
	}
	weights := readST(t, filepath.Join(auto, "model", "teacher.safetensors.gz"))
	weights["logit_scale"] = tensor.FromFloat32("logit_scale", []int{}, []float32{float32(math.Log(50))})
	var list []*tensor.Tensor
	for n, x := range weights {
		c := *x
		c.Name = n
		list = append(list, &c)
	}
	for n, x := range readST(t, filepath.Join(auto, "prune", "l0.safetensors")) {
		c := *x
		c.Name = strings.NewReplacer("image_l0.", "_image_encoder.module.l0_module.", "text_l0.", "_text_encoder.module.l0_module.").Replace(n)
		list = append(list, &c)
	}
	dir := t.TempDir()
	masked := filepath.Join(dir, "masked.safetensors")
	if err := safetensors.WriteFile(masked, list, nil); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgFile, cfgBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "pruned")
	_, stderr, code := runCLI(t, "", "prune", "--model", masked, "--config", cfgFile, "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	t.Log(stderr)
	for _, want := range []string{"image: width 28 of 32, heads per layer [0 2 4] of 4, MLP widths [99 0 111] of 128",
		"text: width 19 of 24, heads per layer [2 2 0] of 3, MLP widths [0 66 81] of 96"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}

	ck, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	want := readST(t, filepath.Join(auto, "prune", "pruned.safetensors.gz"))
	if len(ck.Tensors) != len(want) {
		t.Errorf("%d tensors, official %d", len(ck.Tensors), len(want))
	}
	for n, w := range want {
		g, ok := ck.Tensors[n]
		if !ok {
			t.Errorf("%s missing", n)
			continue
		}
		if !slices.Equal(g.Shape, w.Shape) {
			t.Errorf("%s: shape %v, want %v", n, g.Shape, w.Shape)
			continue
		}
		gv, wv := f32s(t, g), f32s(t, w)
		m, d := 0.0, 0.0
		for i := range wv {
			m = math.Max(m, math.Abs(float64(wv[i])))
			d = math.Max(d, math.Abs(float64(gv[i]-wv[i])))
		}
		if d > 1e-6*m {
			t.Errorf("%s: max|go-ref| = %.3g > 1e-6·%.3g", n, d, m)
		}
	}
	wantArch, err := config.FromConfig(mustConfig(t, filepath.Join(auto, "prune", "config.json")))
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string][]int{}
	for n, x := range ck.Tensors {
		shapes[n] = x.Shape
	}
	gotArch, err := config.Resolve(ck.Config, shapes)
	if err != nil {
		t.Fatal(err)
	}
	if gotArch.Text.Transformer.HeadDim != 8 || gotArch.Vision.Transformer.HeadDim != 8 {
		t.Errorf("head widths %d/%d, want 8", gotArch.Vision.Transformer.HeadDim, gotArch.Text.Transformer.HeadDim)
	}
	if d := compareBlocks(gotArch, wantArch); d != "" {
		t.Error(d)
	}

	// The public loader (what `tinyclip embed` uses) and the engine.
	feats := readST(t, filepath.Join(auto, "prune", "features.safetensors"))
	pixels, err := npy.ReadFile(filepath.Join(auto, "batch", "images_32.npy"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := npy.ReadFile(filepath.Join(auto, "batch", "texts.npy"))
	if err != nil {
		t.Fatal(err)
	}
	n := pixels.Shape[0]
	m, err := tinyclip.Load(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := m.EncodePixels(context.Background(), pixels.F32, n, tinyclip.Raw())
	if err != nil {
		t.Fatal(err)
	}
	if r := rowRelErr(slices.Concat(rows...), f32s(t, feats["pruned.image_features"]), 16); !(r <= 1e-5) {
		t.Errorf("image features: row-relative error %.3g > 1e-5", r)
	}
	em, err := engine.Build(gotArch, ck.Tensors, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok := make([][]int, n)
	c := ids.Shape[1]
	for i := range tok {
		for j := range c {
			tok[i] = append(tok[i], int(ids.I64[i*c+j]))
		}
	}
	txt, err := em.EncodeTexts(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if r := rowRelErr(txt, f32s(t, feats["pruned.text_features"]), 16); !(r <= 1e-5) {
		t.Errorf("text features: row-relative error %.3g > 1e-5", r)
	}
}

func mustConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := checkpoint.ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// compareBlocks describes the first difference in the towers' widths and
// per-layer dimensions.
func compareBlocks(got, want *config.Arch) string {
	for _, p := range []struct {
		name string
		g, w *config.Transformer
	}{{"image", &got.Vision.Transformer, &want.Vision.Transformer}, {"text", &got.Text.Transformer, &want.Text.Transformer}} {
		if p.g.Width != p.w.Width || !slices.Equal(p.g.Blocks, p.w.Blocks) {
			return p.name + ": width/blocks differ"
		}
	}
	return ""
}

// TestPruneCommandErrors checks usage errors and refusals.
func TestPruneCommandErrors(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.safetensors")
	if err := safetensors.WriteFile(plain, []*tensor.Tensor{tensor.FromFloat32("visual.proj", []int{2, 2}, make([]float32, 4))}, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"prune"}, 2, "--model and --out are required"},
		{[]string{"prune", "--model", plain}, 2, "--model and --out are required"},
		{[]string{"prune", "--model", plain, "--out", dir, "extra"}, 2, "unexpected arguments"},
		{[]string{"prune", "--model", plain, "--out", filepath.Join(dir, "o")}, 1, "no l0_module tensors"},
		{[]string{"prune", "--model", filepath.Join(dir, "missing"), "--out", filepath.Join(dir, "o")}, 1, "no such file"},
	} {
		_, stderr, code := runCLI(t, "", c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
}
