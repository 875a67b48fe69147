package train

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/npy"
)

// The cross-check runs training steps of students the fixtures do not cover
// through the project's PyTorch reference (../shared/reference/refclip.py
// distill-step, bit-identical to the official loop) and through Step. It
// needs /usr/bin/python3 with torch and numpy; .ci/run sets
// TINYCLIP_REQUIRE_REFCLIP=1, which turns a missing PyTorch into a failure.

const python = "/usr/bin/python3"

func refclip(t *testing.T) string {
	t.Helper()
	script := fixtures.Path(t, "reference", "refclip.py")
	if err := exec.Command(python, "-c", "import torch, numpy").Run(); err != nil {
		if os.Getenv("TINYCLIP_REQUIRE_REFCLIP") != "" {
			t.Fatalf("TINYCLIP_REQUIRE_REFCLIP is set but %s cannot import torch, numpy: %v", python, err)
		}
		t.Skipf("cross-check against refclip.py skipped: %s cannot import torch, numpy", python)
	}
	return script
}

func runPy(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(python, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// TestStepCrossCheckRefclip distils random irregular students (zero-head
// layers, zero-width MLPs, head width 8, QuickGELU) from random teachers
// for three steps of the official schedule in refclip and in Go, and
// compares the losses (1e-5 relative) and the weights after the three steps
// by the step fixtures' rule.
func TestStepCrossCheckRefclip(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-check is not run with -short")
	}
	script := refclip(t)
	tmp := t.TempDir()
	configs := map[string][2]string{
		"irregular-vit": {
			`{"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 8, "patch_size": 16},
			  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "head_width": 8, "layers": 3}}`,
			`{"embed_dim": 24, "vision_cfg": {"image_size": 64, "layers": 3, "width": 40, "head_width": 8, "patch_size": 16, "layer_heads": [2, 0, 3], "layer_mlp": [0, 50, 70]},
			  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 24, "heads": 3, "layers": 2, "head_width": 8, "layer_heads": [3, 1], "layer_mlp": [40, 0]}}`,
		},
		"quickgelu-vit": {
			`{"embed_dim": 16, "quick_gelu": true, "vision_cfg": {"image_size": 64, "layers": 2, "width": 48, "head_width": 16, "patch_size": 32},
			  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}`,
			`{"embed_dim": 16, "quick_gelu": true, "vision_cfg": {"image_size": 64, "layers": 3, "width": 32, "head_width": 16, "patch_size": 16},
			  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 3}}`,
		},
	}
	texts := distillPath(t, "step", "batch", "texts.npy")
	tokens := tokenRows(readNpy(t, texts))
	b := len(tokens)
	ctx := context.Background()
	for name, pair := range configs {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(tmp, name)
			paths := [2]string{}
			for i, cfg := range pair {
				role := []string{"teacher", "student"}[i]
				cfgPath := filepath.Join(dir, role+".json")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
					t.Fatal(err)
				}
				paths[i] = filepath.Join(dir, role)
				runPy(t, script, "random", cfgPath, "--seed", []string{"11", "12"}[i], "--out", paths[i])
			}
			tArch, tW := loadModelDir(t, paths[0])
			sArch, sW := loadModelDir(t, paths[1])
			// Images: deterministic pseudo-random pixels in the normalised range.
			sz := sArch.Vision.ImageSize
			rng := rand.New(rand.NewPCG(1, 2))
			images := make([]float32, b*3*sz*sz)
			for i := range images {
				images[i] = float32(rng.NormFloat64())
			}
			imgPath := filepath.Join(dir, "images.npy")
			f, err := os.Create(imgPath)
			if err != nil {
				t.Fatal(err)
			}
			if err := npy.WriteFloat32(f, []int{b, 3, sz, sz}, images); err != nil {
				t.Fatal(err)
			}
			f.Close()
			outDir := filepath.Join(dir, "after")
			raw := runPy(t, script, "distill-step", "--teacher", paths[0], "--student", paths[1],
				"--images", imgPath, "--texts", texts, "--steps", "3", "--lr", "5e-4", "--lr-warmup", "5",
				"--lr-total", "100", "--threads", "1", "--out", outDir)
			var ref struct {
				Losses []float64 `json:"losses"`
				LRs    []float64 `json:"lrs"`
			}
			if err := json.Unmarshal(raw, &ref); err != nil {
				t.Fatalf("refclip output: %v\n%s", err, raw)
			}
			m, err := engine.Build(tArch, tW, engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			st, err := NewStudent(sArch, sW)
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewStep(st, NewEngineTeacher(m), b, DefaultHyper(sArch))
			if err != nil {
				t.Fatal(err)
			}
			sumLR := 0.0
			for k := range 3 {
				lr := CosineLR(5e-4, 5, 100, k)
				if lr != ref.LRs[k] {
					t.Errorf("step %d: lr %v, refclip %v", k, lr, ref.LRs[k])
				}
				sumLR += lr
				met, err := s.Run(ctx, images, tokens, lr)
				if err != nil {
					t.Fatal(err)
				}
				if rel := math.Abs(met.Loss-ref.Losses[k]) / math.Abs(ref.Losses[k]); !(rel <= 1e-5) {
					t.Errorf("step %d: loss %.9g, refclip %.9g (relative %.2g > 1e-5)", k, met.Loss, ref.Losses[k], rel)
				} else {
					t.Logf("step %d: loss relative error %.2g", k, rel)
				}
			}
			_, want := loadModelDir(t, outDir)
			got, err := st.Weights()
			if err != nil {
				t.Fatal(err)
			}
			checkWeights(t, "weights after 3 steps", got, want, sumLR)
		})
	}
}
