package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
)

// tinyConfig is a small official-form config (a ViT with 2 blocks of width
// 64 and a 1-block text tower), quick to initialise, load and run.
const tinyConfig = `{"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 32},
"text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}`

func writeTinyConfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tiny.json")
	if err := os.WriteFile(p, []byte(tinyConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInit(t *testing.T) {
	cfg := writeTinyConfig(t)
	dirs := make([]string, 3)
	for i, seed := range []string{"5", "5", "6"} {
		dirs[i] = filepath.Join(t.TempDir(), "model")
		_, stderr, code := runCLI(t, "", "init", "--config", cfg, "--seed", seed, "--out", dirs[i])
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if !strings.Contains(stderr, "wrote") {
			t.Errorf("stderr %q does not report the files", stderr)
		}
	}
	read := func(dir, name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read(dirs[0], initWeightsFile), read(dirs[1], initWeightsFile)) {
		t.Error("the same seed wrote different weights")
	}
	if bytes.Equal(read(dirs[0], initWeightsFile), read(dirs[2], initWeightsFile)) {
		t.Error("seeds 5 and 6 wrote the same weights")
	}
	// The directory loads as a model whose config is the one given.
	m, err := tinyclip.Load(context.Background(), dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	want, err := config.Parse([]byte(tinyConfig))
	if err != nil {
		t.Fatal(err)
	}
	got := m.Config()
	if got.EmbedDim != want.EmbedDim || got.VisionCfg.Width != want.VisionCfg.Width || got.TextCfg.Heads != want.TextCfg.Heads {
		t.Errorf("loaded config %+v, want %+v", got, want)
	}
	if s := m.LogitScale(); math.Abs(float64(s)-math.Log(1/0.07)) > 1e-6 {
		t.Errorf("logit scale %v, want ln(1/0.07)", s)
	}
}

func TestInitErrors(t *testing.T) {
	out := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no config", []string{"init", "--out", out}, 2, "required"},
		{"no out", []string{"init", "--config", "TinyCLIP-ViT-8M-16-Text-3M"}, 2, "required"},
		{"unknown name", []string{"init", "--config", "NoSuchModel", "--out", out}, 2, "neither a zoo config name"},
		{"unpublished", []string{"init", "--config", "TinyCLIP-auto-ViT-63M-32-Text-31M", "--out", out}, 1, "not published"},
		{"extra argument", []string{"init", "--config", "RN50", "--out", out, "extra"}, 2, "unexpected"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, "", c.args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, c.code, c.want)
			}
		})
	}
}

// std returns the mean and standard deviation of v.
func meanStd(v []float32) (float64, float64) {
	var s, ss float64
	for _, x := range v {
		s += float64(x)
	}
	m := s / float64(len(v))
	for _, x := range v {
		ss += (float64(x) - m) * (float64(x) - m)
	}
	return m, math.Sqrt(ss / float64(len(v)))
}

// TestRandomInitDistributions checks the initialisation of a zoo ViT and a
// zoo ResNet against the rules of spec §1.1.6.
func TestRandomInitDistributions(t *testing.T) {
	for _, name := range []string{"TinyCLIP-ViT-8M-16-Text-3M", "TinyCLIP-ResNet-19M-Text-19M"} {
		_, arch, err := initArch(name)
		if err != nil {
			t.Fatal(err)
		}
		ts := randomInit(arch, 1)
		got := map[string][]float32{}
		for _, tn := range ts {
			if tn.DType.IsFloat() {
				v, err := tn.Float32()
				if err != nil {
					t.Fatal(err)
				}
				got[tn.Name] = v
			}
		}
		if len(ts) != len(arch.TensorShapes()) {
			t.Errorf("%s: %d tensors, want %d", name, len(ts), len(arch.TensorShapes()))
		}
		tw := float64(arch.Text.Transformer.Width)
		tl := float64(len(arch.Text.Transformer.Blocks))
		type rule struct {
			tensor    string
			mean, std float64 // std 0: every value equals mean
		}
		rules := []rule{
			{"token_embedding.weight", 0, 0.02},
			{"positional_embedding", 0, 0.01},
			{"text_projection", 0, 1 / math.Sqrt(tw)},
			{"transformer.resblocks.0.attn.in_proj_weight", 0, 1 / math.Sqrt(tw)},
			{"transformer.resblocks.0.attn.in_proj_bias", 0, 0},
			{"transformer.resblocks.0.attn.out_proj.weight", 0, 1 / math.Sqrt(tw) / math.Sqrt(2*tl)},
			{"transformer.resblocks.0.mlp.c_fc.weight", 0, 1 / math.Sqrt(2*tw)},
			{"transformer.resblocks.0.mlp.c_proj.weight", 0, 1 / math.Sqrt(tw) / math.Sqrt(2*tl)},
			{"transformer.resblocks.0.ln_1.weight", 1, 0},
			{"ln_final.bias", 0, 0},
			{"logit_scale", float64(float32(math.Log(1 / 0.07))), 0},
		}
		if arch.Vision.Kind == config.KindViT {
			w := float64(arch.Vision.Transformer.Width)
			p := float64(arch.Vision.PatchSize)
			rules = append(rules,
				rule{"visual.class_embedding", 0, 1 / math.Sqrt(w)},
				rule{"visual.proj", 0, 1 / math.Sqrt(w)},
				// Kaiming-uniform with a = √5: U(±1/√fan_in), std = bound/√3.
				rule{"visual.conv1.weight", 0, 1 / math.Sqrt(3*p*p) / math.Sqrt(3)},
				// Xavier-uniform: bound √(6/(fan_in+fan_out)).
				rule{"visual.transformer.resblocks.0.attn.in_proj_weight", 0, math.Sqrt(6/(w+3*w)) / math.Sqrt(3)},
				rule{"visual.transformer.resblocks.0.attn.out_proj.bias", 0, 0},
				rule{"visual.transformer.resblocks.0.mlp.c_fc.weight", 0, 1 / math.Sqrt(w) / math.Sqrt(3)},
				rule{"visual.ln_pre.weight", 1, 0},
			)
		} else {
			c := float64(32 * arch.Vision.Width)
			rules = append(rules,
				rule{"visual.layer1.0.bn3.weight", 0, 0},
				rule{"visual.layer1.0.bn1.weight", 1, 0},
				rule{"visual.layer1.0.bn1.running_var", 1, 0},
				rule{"visual.layer1.0.bn1.running_mean", 0, 0},
				rule{"visual.attnpool.q_proj.weight", 0, 1 / math.Sqrt(c)},
				rule{"visual.attnpool.positional_embedding", 0, 1 / math.Sqrt(c)},
				rule{"visual.layer2.0.conv2.weight", 0, 1 / math.Sqrt(float64(9*2*arch.Vision.Width)) / math.Sqrt(3)},
			)
		}
		for _, r := range rules {
			v, ok := got[r.tensor]
			if !ok {
				t.Errorf("%s: no tensor %s", name, r.tensor)
				continue
			}
			m, s := meanStd(v)
			if r.std == 0 {
				if m != r.mean || s != 0 {
					t.Errorf("%s: %s: mean %g std %g, want all %g", name, r.tensor, m, s, r.mean)
				}
				continue
			}
			// Sampling error of a std over ≥ 1000 values is a few percent.
			if math.Abs(s-r.std) > 0.05*r.std || math.Abs(m) > 0.1*r.std {
				t.Errorf("%s: %s: mean %g std %g, want mean 0 std %g", name, r.tensor, m, s, r.std)
			}
		}
	}
}

// TestInitCrossCheck loads a model written by init with the independent
// PyTorch reference and compares a text embedding: the files are open_clip
// files, read the same way by both.
func TestInitCrossCheck(t *testing.T) {
	script := fixtures.Path(t, "reference", "refclip.py")
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Fatal("the cross-check needs /usr/bin/python3 with torch (see reference/README.md)")
	}
	cfg := writeTinyConfig(t)
	dir := filepath.Join(t.TempDir(), "m")
	if _, stderr, code := runCLI(t, "", "init", "--config", cfg, "--seed", "9", "--out", dir); code != 0 {
		t.Fatal(stderr)
	}
	const text = "a photo of a cat"
	out, err := exec.Command("/usr/bin/python3", script, "embed", "--model", dir, "--raw", "--text", text).Output()
	if err != nil {
		t.Fatalf("refclip: %v", err)
	}
	want := parseEmbedding(t, out)
	m, err := tinyclip.Load(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.EncodeTexts(context.Background(), []string{text}, tinyclip.Raw())
	if err != nil {
		t.Fatal(err)
	}
	if len(got[0]) != len(want) {
		t.Fatalf("%d values, refclip %d", len(got[0]), len(want))
	}
	var norm, diff float64
	for i := range want {
		norm += want[i] * want[i]
		diff = math.Max(diff, math.Abs(float64(got[0][i])-want[i]))
	}
	if rel := diff / math.Sqrt(norm); rel > 1e-5 {
		t.Errorf("text embedding differs from refclip: max |Δ|/‖x‖ = %.3g", rel)
	}
}

// parseEmbedding returns the embedding of refclip's first JSON line.
func parseEmbedding(t *testing.T, out []byte) []float64 {
	t.Helper()
	line, _, _ := bytes.Cut(out, []byte("\n"))
	var rec struct {
		Embedding []float64 `json:"embedding"`
	}
	if err := json.Unmarshal(line, &rec); err != nil || len(rec.Embedding) == 0 {
		t.Fatalf("refclip output %q: %v", line, err)
	}
	return rec.Embedding
}
