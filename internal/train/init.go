package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// Init returns freshly initialised weights for arch, drawn from a PCG
// generator seeded with seed, following the official initialisation
// (spec §1.1.6): ViT class/positional embeddings and proj ~ W^-½·N(0,1);
// text token embedding N(0, 0.02), positional N(0, 0.01), attention,
// MLP and projection weights with the open_clip text std's; ResNet
// attention-pool weights N(0, C^-½) and zero bn3 gains; PyTorch's default
// Kaiming-uniform convolutions and linears elsewhere (in_proj
// Xavier-uniform, attention biases zero), LayerNorm and BatchNorm 1/0,
// running statistics 0/1, logit_scale ln(1/0.07). The distributions are the
// official ones; the values are not PyTorch's random streams. The result is
// deterministic for a seed.
func Init(arch *config.Arch, seed uint64) (map[string]*tensor.Tensor, error) {
	if arch == nil {
		return nil, fmt.Errorf("train: init: nil architecture")
	}
	if err := arch.Validate(); err != nil {
		return nil, fmt.Errorf("train: init: %w", err)
	}
	shapes := arch.TensorShapes()
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	// One stream per tensor, from the seed and the name, so that the values
	// of a tensor do not depend on which other tensors exist.
	out := make(map[string]*tensor.Tensor, len(shapes))
	for _, name := range names {
		shape := shapes[name]
		if strings.HasSuffix(name, ".num_batches_tracked") {
			out[name] = int64Tensor(name, 0)
			continue
		}
		h := fnv64(name)
		rng := rand.New(rand.NewPCG(seed, h))
		out[name] = tensor.FromFloat32(name, shape, initValues(arch, name, shape, rng))
	}
	return out, nil
}

// fnv64 is the 64-bit FNV-1a hash of s.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// initValues draws one tensor's initial values.
func initValues(arch *config.Arch, name string, shape []int, rng *rand.Rand) []float32 {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	fill := func(f func() float64) {
		for i := range v {
			v[i] = float32(f())
		}
	}
	normal := func(std float64) { fill(func() float64 { return std * rng.NormFloat64() }) }
	uniform := func(bound float64) { fill(func() float64 { return bound * (2*rng.Float64() - 1) }) }
	constant := func(c float32) {
		for i := range v {
			v[i] = c
		}
	}
	fanIn := 1
	for _, d := range shape[min(1, len(shape)):] {
		fanIn *= d
	}
	// PyTorch's default for Linear/Conv weights (kaiming_uniform_, a=√5) and
	// biases: U(±1/√fan_in) of the weight's fan-in.
	defaultInit := func(fan int) {
		if fan <= 0 {
			return
		}
		uniform(1 / math.Sqrt(float64(fan)))
	}
	last := name[strings.LastIndex(name, ".")+1:]
	text := !strings.HasPrefix(name, "visual.")
	switch {
	case name == "logit_scale":
		constant(InitialLogitScale)
	case strings.HasSuffix(name, ".running_var"):
		constant(1)
	case strings.HasSuffix(name, ".running_mean"):
	case isNorm(name) && last == "weight":
		if strings.HasSuffix(name, ".bn3.weight") {
			return v // zero-initialised residual gain (open_clip)
		}
		constant(1)
	case isNorm(name) && last == "bias":
	case name == "visual.class_embedding", name == "visual.positional_embedding", name == "visual.proj":
		normal(1 / math.Sqrt(float64(arch.Vision.Transformer.Width)))
	case name == "token_embedding.weight":
		normal(0.02)
	case name == "positional_embedding":
		normal(0.01)
	case name == "text_projection":
		normal(1 / math.Sqrt(float64(arch.Text.Transformer.Width)))
	case name == "visual.attnpool.positional_embedding":
		normal(1 / math.Sqrt(float64(shape[1])))
	case strings.HasPrefix(name, "visual.attnpool.") && last == "weight":
		normal(1 / math.Sqrt(float64(32*arch.Vision.Width)))
	case strings.HasPrefix(name, "visual.attnpool.") && last == "bias":
		defaultInit(32 * arch.Vision.Width) // every pool linear reads C = 32·width features
	case strings.HasSuffix(name, "attn.in_proj_bias"), strings.HasSuffix(name, "attn.out_proj.bias"):
	case strings.HasSuffix(name, "attn.in_proj_weight"):
		if text {
			normal(1 / math.Sqrt(float64(arch.Text.Transformer.Width)))
		} else {
			uniform(math.Sqrt(6 / float64(shape[0]+shape[1])))
		}
	case text && (strings.HasSuffix(name, "attn.out_proj.weight") || strings.HasSuffix(name, "mlp.c_proj.weight")):
		w := float64(arch.Text.Transformer.Width)
		normal(1 / math.Sqrt(w) / math.Sqrt(2*float64(len(arch.Text.Transformer.Blocks))))
	case text && strings.HasSuffix(name, "mlp.c_fc.weight"):
		normal(1 / math.Sqrt(2*float64(arch.Text.Transformer.Width)))
	case last == "bias":
		defaultInit(biasFanIn(arch, name))
	default: // convolutions and remaining linears
		defaultInit(fanIn)
	}
	return v
}

// isNorm reports LayerNorm and BatchNorm tensors.
func isNorm(name string) bool {
	for _, p := range []string{".ln_", "ln_pre.", "ln_post.", "ln_final.", ".bn", ".downsample.1."} {
		if strings.Contains(name, p) || strings.HasPrefix(name, strings.TrimPrefix(p, ".")) {
			return true
		}
	}
	return false
}

// biasFanIn returns the fan-in of the Linear a bias belongs to (the MLP
// linears; attention biases are zero).
func biasFanIn(arch *config.Arch, name string) int {
	tr := &arch.Text.Transformer
	rest := strings.TrimPrefix(name, "transformer.resblocks.")
	if p, ok := strings.CutPrefix(name, "visual.transformer.resblocks."); ok {
		tr, rest = &arch.Vision.Transformer, p
	}
	var i int
	if _, err := fmt.Sscanf(rest, "%d", &i); err != nil || i < 0 || i >= len(tr.Blocks) {
		return 0
	}
	if strings.HasSuffix(name, "mlp.c_fc.bias") {
		return tr.Width
	}
	return tr.Blocks[i].MLP // c_proj.bias
}
