package train_test

import (
	"context"
	"fmt"
	"log"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
	"github.com/tinyclip-go/tinyclip/internal/train"
)

// microArch is a tiny regular model (width 8, two heads of 4, one layer per
// tower).
func microArch() *config.Arch {
	cfg, err := config.Parse([]byte(`{"embed_dim": 4,
		"vision_cfg": {"image_size": 8, "layers": 1, "width": 8, "head_width": 4, "patch_size": 4},
		"text_cfg": {"context_length": 5, "vocab_size": 10, "width": 8, "heads": 2, "layers": 1}}`))
	if err != nil {
		log.Fatal(err)
	}
	a, err := config.FromConfig(cfg)
	if err != nil {
		log.Fatal(err)
	}
	return a
}

// Fusing learned gates: closing log-alphas (at the clamp's lower bound)
// remove units by the official rule, and Prune compacts the model to
// irregular per-layer widths.
func ExamplePrune() {
	arch := microArch()
	weights, err := train.Init(arch, 1)
	if err != nil {
		log.Fatal(err)
	}
	l0, err := train.InitialL0(arch) // every gate open (log-alpha 10)
	if err != nil {
		log.Fatal(err)
	}
	closed := float32(-4.6052)
	hidden := []float32{10, 10, 10, 10, 10, 10, closed, closed}
	heads := []float32{closed, 10}
	l0[train.ImageL0Prefix+"hidden_loga"] = tensor.FromFloat32("", []int{8}, hidden)
	l0[train.ImageL0Prefix+"heads_loga"] = tensor.FromFloat32("", []int{1, 2}, heads)
	masks, err := train.EvalMasks(arch, l0)
	if err != nil {
		log.Fatal(err)
	}
	pruned, _, err := train.Prune(arch, weights, masks)
	if err != nil {
		log.Fatal(err)
	}
	v := pruned.Vision.Transformer
	fmt.Printf("image width %d, layer 0: %d head(s), MLP %d\n", v.Width, v.Blocks[0].Heads, v.Blocks[0].MLP)
	fmt.Println("layer_heads:", pruned.Config().VisionCfg.LayerHeads)
	// Output:
	// image width 6, layer 0: 1 head(s), MLP 32
	// layer_heads: [1]
}

// Masked training steps without a teacher (plain CLIP loss): the target
// sparsity ramps up and the Lagrangian turns on as soon as the expected
// sparsity falls short of it. With every gate open the expected sparsity is
// not 0 but L·5W/P = 40/840: the official estimate leaves out the MLP
// biases that the prunable size counts.
func ExampleAutoStep() {
	arch := microArch()
	weights, err := train.Init(arch, 1)
	if err != nil {
		log.Fatal(err)
	}
	student, err := train.NewAutoStudent(arch, weights, nil)
	if err != nil {
		log.Fatal(err)
	}
	cfg := train.DefaultL0Config(0, 0.5, 4, 100) // 0 → 50 % over 4 steps, fuse at 100
	step, err := train.NewAutoStep(student, nil, 2, train.DefaultHyper(arch), cfg, train.SeededNoise{Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	images := make([]float32, 2*3*8*8)
	for i := range images {
		images[i] = float32(i%7) / 7
	}
	tokens := [][]int{{1, 2, 9}, {3, 9}}
	for s := int64(0); s < 3; s++ {
		m, err := step.Run(context.Background(), images, tokens, s, train.CosineLR(1e-4, 100, 1000, int(s)))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("step %d: target %.3f, expected %.4f, penalty active %v\n", s, m.Target, m.Expected, m.Lagrangian > 0)
	}
	// Output:
	// step 0: target 0.000, expected 0.0476, penalty active false
	// step 1: target 0.125, expected 0.0515, penalty active true
	// step 2: target 0.250, expected 0.0515, penalty active true
}
