package hf

import (
	"encoding/json"
	"fmt"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// hfActs maps the engine's activations to transformers' hidden_act names.
var hfActs = map[config.Activation]string{
	config.GELU: "gelu", config.QuickGELU: "quick_gelu", config.GELUTanh: "gelu_pytorch_tanh", config.ReLU: "relu",
}

// regular returns the common head count and MLP width of a transformer
// whose blocks all have attention and an MLP of the same sizes.
func regular(t *config.Transformer) (heads, mlp int, ok bool) {
	if len(t.Blocks) == 0 {
		return 0, 0, false
	}
	b0 := t.Blocks[0]
	for _, b := range t.Blocks {
		if b != b0 || b.Heads <= 0 || !b.HasMLP || b.MLP <= 0 {
			return 0, 0, false
		}
	}
	if b0.Heads*t.HeadDim != t.Width {
		return 0, 0, false
	}
	return b0.Heads, b0.MLP, true
}

// Representable reports whether a transformers CLIPModel can hold a model
// of architecture a: a ViT image tower, and both towers with the same
// number of heads (covering the whole width) and the same MLP width in
// every layer. When it returns false, the reason says why.
func Representable(a *config.Arch) (ok bool, reason string) {
	if a.Vision.Kind != config.KindViT {
		return false, "the image tower is a ModifiedResNet"
	}
	if _, _, ok := regular(&a.Vision.Transformer); !ok {
		return false, "the image tower's layers differ in heads or MLP width"
	}
	if _, _, ok := regular(&a.Text.Transformer); !ok {
		return false, "the text tower's layers differ in heads or MLP width"
	}
	for _, t := range []*config.Transformer{&a.Vision.Transformer, &a.Text.Transformer} {
		if _, ok := hfActs[t.Act]; !ok {
			return false, fmt.Sprintf("activation %q has no transformers name", t.Act)
		}
	}
	return true, ""
}

// MarshalConfig returns the transformers CLIPConfig config.json of
// architecture a (the form ParseConfig reads back to the same
// architecture). Architectures Representable refuses give an error
// wrapping ErrNotRepresentable.
func MarshalConfig(a *config.Arch) ([]byte, error) {
	if ok, why := Representable(a); !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotRepresentable, why)
	}
	vh, vm, _ := regular(&a.Vision.Transformer)
	th, tm, _ := regular(&a.Text.Transformer)
	v, t := &a.Vision, &a.Text
	cfg := map[string]any{
		"architectures":          []string{"CLIPModel"},
		"model_type":             "clip",
		"projection_dim":         a.EmbedDim,
		"logit_scale_init_value": 2.6592,
		"initializer_factor":     1.0,
		"torch_dtype":            "float32",
		"text_config": map[string]any{
			"model_type":              "clip_text_model",
			"hidden_size":             t.Transformer.Width,
			"intermediate_size":       tm,
			"num_attention_heads":     th,
			"num_hidden_layers":       len(t.Transformer.Blocks),
			"max_position_embeddings": t.ContextLength,
			"vocab_size":              t.VocabSize,
			"hidden_act":              hfActs[t.Transformer.Act],
			"layer_norm_eps":          layerNormEps,
			"projection_dim":          a.EmbedDim,
			"bos_token_id":            49406,
			"eos_token_id":            49407,
			"pad_token_id":            1,
		},
		"vision_config": map[string]any{
			"model_type":          "clip_vision_model",
			"hidden_size":         v.Transformer.Width,
			"intermediate_size":   vm,
			"num_attention_heads": vh,
			"num_hidden_layers":   len(v.Transformer.Blocks),
			"image_size":          v.ImageSize,
			"patch_size":          v.PatchSize,
			"num_channels":        3,
			"hidden_act":          hfActs[v.Transformer.Act],
			"layer_norm_eps":      layerNormEps,
			"projection_dim":      a.EmbedDim,
		},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("hf: config: %w", err)
	}
	return append(b, '\n'), nil
}

// MarshalPreprocessor returns the preprocessor_config.json of
// transformers' CLIPImageProcessor for images of side size (resize the
// shorter side, centre crop, CLIP mean and std).
func MarshalPreprocessor(size int) ([]byte, error) {
	b, err := json.MarshalIndent(map[string]any{
		"image_processor_type": "CLIPImageProcessor",
		"do_resize":            true,
		"size":                 map[string]int{"shortest_edge": size},
		"resample":             3,
		"do_center_crop":       true,
		"crop_size":            map[string]int{"height": size, "width": size},
		"do_rescale":           true,
		"rescale_factor":       1.0 / 255,
		"do_normalize":         true,
		"image_mean":           []float64{0.48145466, 0.4578275, 0.40821073},
		"image_std":            []float64{0.26862954, 0.26130258, 0.27577711},
		"do_convert_rgb":       true,
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("hf: preprocessor config: %w", err)
	}
	return append(b, '\n'), nil
}
