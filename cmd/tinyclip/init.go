package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint"
	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

func init() {
	register(command{"init", "write a model with random weights (official config.json + open_clip safetensors)", runInit, 92})
}

// Files written by init (the layout of an open_clip model directory).
const (
	initConfigFile  = "config.json"
	initWeightsFile = "open_clip_model.safetensors"
)

func runInit(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "init", "--config NAME|config.json --out DIR [--seed N]")
	cfgArg := fs.String("config", "", "architecture: a zoo config name (see 'tinyclip models') or a config.json")
	seed := fs.Uint64("seed", 0, "random seed (the same seed gives the same weights)")
	out := fs.String("out", "", "output directory (created; existing files of the same names are replaced)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	if *cfgArg == "" || *out == "" {
		return usagef("--config and --out are required")
	}
	cfg, arch, err := initArch(*cfgArg)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := writeRandomModel(*out, cfg, arch, *seed); err != nil {
		return err
	}
	p := arch.Params()
	fmt.Fprintf(e.stderr, "wrote %s: %s (%s parameters, seed %d)\n", *out, *cfgArg, commas(p.Total), *seed)
	return nil
}

// initArch resolves a zoo name or a config file to its config and
// architecture.
func initArch(name string) (*config.Config, *config.Arch, error) {
	var cfg *config.Config
	if m, ok := config.Lookup(name); ok {
		if m.Config == nil {
			return nil, nil, fmt.Errorf("%s: the architecture of this auto-inherited model is not published (only its checkpoint has it); give a config.json", name)
		}
		cfg = m.Config
	} else {
		data, err := os.ReadFile(name)
		if err != nil {
			if os.IsNotExist(err) && !strings.ContainsAny(name, `/\`) && !strings.HasSuffix(name, ".json") {
				return nil, nil, usagef("%q is neither a zoo config name (see 'tinyclip models') nor a file", name)
			}
			return nil, nil, err
		}
		if cfg, err = checkpoint.ParseConfig(data); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	arch, err := config.FromConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return cfg, arch, nil
}

// writeRandomModel writes dir/config.json and dir/open_clip_model.safetensors
// (the config is also stored in the safetensors metadata under "config").
// Both files are written atomically.
func writeRandomModel(dir string, cfg *config.Config, arch *config.Arch, seed uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	ts := randomInit(arch, seed)
	meta := map[string]string{"config": string(js), "format": "pt", "tinyclip_init_seed": fmt.Sprint(seed)}
	if err := safetensors.WriteFile(filepath.Join(dir, initWeightsFile), ts, meta); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, initConfigFile), append(js, '\n'))
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it into place.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(0o644)
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
	}
	return werr
}

// randomInit returns random weights for arch, drawn as the official code
// initialises a model trained from scratch (spec §1.1.6), from a PCG
// generator seeded with seed (so the values differ from PyTorch's for the
// same seed; the distributions are the same):
//
//   - ViT: class_embedding, positional_embedding and proj ~ W^-½·N(0,1);
//     conv1 and the Linear layers PyTorch's default (Kaiming-uniform with
//     a = √5: U(±1/√fan_in), biases likewise); in_proj_weight
//     Xavier-uniform, in_proj_bias and out_proj.bias zero; LayerNorm 1 / 0.
//   - Text: token_embedding ~ N(0, 0.02), positional_embedding ~ N(0, 0.01),
//     in_proj_weight ~ N(0, W^-½), out_proj.weight and c_proj.weight
//     ~ N(0, W^-½·(2L)^-½), c_fc.weight ~ N(0, (2W)^-½), text_projection
//     ~ N(0, W^-½), MLP biases PyTorch's default, attention biases zero.
//   - ResNet: convolutions PyTorch's default, BatchNorm weight 1, bias 0,
//     running mean 0, variance 1, except bn3.weight = 0 in every block;
//     attnpool q/k/v/c weights ~ N(0, C^-½), biases default, positional
//     embedding ~ N(0, 1)/√C.
//   - logit_scale = ln(1/0.07).
func randomInit(arch *config.Arch, seed uint64) []*tensor.Tensor {
	shapes := arch.TensorShapes()
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	r := rand.New(rand.NewPCG(seed, 0x7469_6e79_636c_6970)) // "tinyclip"
	vw := float64(arch.Vision.Transformer.Width)
	tw := float64(arch.Text.Transformer.Width)
	tl := float64(len(arch.Text.Transformer.Blocks))
	out := make([]*tensor.Tensor, 0, len(names))
	for _, name := range names {
		shape := shapes[name]
		n := 1
		for _, d := range shape {
			n *= d
		}
		if strings.HasSuffix(name, "num_batches_tracked") {
			out = append(out, &tensor.Tensor{Name: name, DType: tensor.I64, Shape: shape, Data: make([]byte, 8)})
			continue
		}
		v := make([]float32, n)
		fanIn := 1
		for _, d := range shape[min(1, len(shape)):] {
			fanIn *= d
		}
		normal := func(std float64) {
			for i := range v {
				v[i] = float32(r.NormFloat64() * std)
			}
		}
		uniform := func(bound float64) {
			for i := range v {
				v[i] = float32((2*r.Float64() - 1) * bound)
			}
		}
		fill := func(c float32) {
			for i := range v {
				v[i] = c
			}
		}
		// biasBound is PyTorch's default Linear bias bound, 1/√fan_in of
		// the layer's weight.
		biasBound := func() float64 {
			w := shapes[strings.TrimSuffix(name, ".bias")+".weight"]
			if len(w) < 2 || w[1] == 0 {
				return 0
			}
			return 1 / math.Sqrt(float64(w[1]))
		}
		text := !strings.HasPrefix(name, "visual.")
		switch {
		case name == "logit_scale":
			fill(float32(math.Log(1 / 0.07)))
		case n == 0:
		case name == "visual.class_embedding", name == "visual.positional_embedding", name == "visual.proj":
			normal(1 / math.Sqrt(vw))
		case name == "token_embedding.weight":
			normal(0.02)
		case name == "positional_embedding":
			normal(0.01)
		case name == "text_projection":
			normal(1 / math.Sqrt(tw))
		case name == "visual.attnpool.positional_embedding":
			normal(1 / math.Sqrt(float64(shape[1])))
		case strings.HasPrefix(name, "visual.attnpool.") && strings.HasSuffix(name, ".weight"):
			normal(1 / math.Sqrt(float64(shape[1])))
		case strings.Contains(name, ".ln_") || strings.HasPrefix(name, "ln_") || strings.Contains(name, ".bn") || strings.Contains(name, "downsample.1."):
			switch {
			case strings.HasSuffix(name, ".running_mean"), strings.HasSuffix(name, ".bias"):
				fill(0)
			case strings.HasSuffix(name, ".bn3.weight"):
				fill(0)
			default: // gains and running variances
				fill(1)
			}
		case strings.HasSuffix(name, "attn.in_proj_bias"), strings.HasSuffix(name, "attn.out_proj.bias"):
			fill(0)
		case strings.HasSuffix(name, "attn.in_proj_weight"):
			if text {
				normal(1 / math.Sqrt(tw))
			} else {
				uniform(math.Sqrt(6 / float64(shape[0]+shape[1])))
			}
		case text && (strings.HasSuffix(name, "attn.out_proj.weight") || strings.HasSuffix(name, "mlp.c_proj.weight")):
			normal(1 / math.Sqrt(tw) / math.Sqrt(2*tl))
		case text && strings.HasSuffix(name, "mlp.c_fc.weight"):
			normal(1 / math.Sqrt(2*tw))
		case strings.HasSuffix(name, ".bias"):
			uniform(biasBound())
		default: // convolutions and the remaining Linear weights
			uniform(1 / math.Sqrt(float64(fanIn)))
		}
		out = append(out, tensor.FromFloat32(name, shape, v))
	}
	return out
}
