// Package hf converts between Hugging Face transformers CLIPModel
// checkpoints and the project's open_clip form (spec §2.3): the CLIPConfig
// config.json → config.Config, tensor names in both directions (q/k/v
// projections ↔ in_proj, transposed projections), and sharded weight
// indexes.
package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// Defaults of transformers' CLIPTextConfig / CLIPVisionConfig / CLIPConfig,
// taken for keys a config.json leaves out.
var (
	textDefaults = map[string]any{
		"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
		"num_hidden_layers": 12, "max_position_embeddings": 77, "vocab_size": 49408,
		"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
	}
	visionDefaults = map[string]any{
		"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
		"num_hidden_layers": 12, "image_size": 224, "patch_size": 32, "num_channels": 3,
		"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
	}
	defaultProjectionDim = 512
)

// layerNormEps is the LayerNorm epsilon of every CLIP tower the engine runs.
const layerNormEps = 1e-5

// IsCLIPConfig reports whether a config.json body is a transformers
// CLIPConfig: model_type "clip", or text_config / vision_config objects.
func IsCLIPConfig(data []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(data, &probe) != nil {
		return false
	}
	var mt string
	if raw, ok := probe["model_type"]; ok && json.Unmarshal(raw, &mt) == nil && mt == "clip" {
		return true
	}
	_, t := probe["text_config"]
	_, v := probe["vision_config"]
	return t || v
}

// tower is one sub-config with the legacy *_config_dict overrides applied.
type tower struct {
	key    string // "text_config" or "vision_config", for messages
	fields map[string]json.RawMessage
	defs   map[string]any
}

func (t *tower) int(name string) (int, error) {
	raw, ok := t.fields[name]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return t.defs[name].(int), nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || f < 0 || f > 1<<30 {
		return 0, fmt.Errorf("hf: config: %s.%s: want a non-negative integer, got %s", t.key, name, raw)
	}
	return int(f), nil
}

func (t *tower) positive(name string) (int, error) {
	v, err := t.int(name)
	if err == nil && v == 0 {
		err = fmt.Errorf("hf: config: %s.%s must be positive", t.key, name)
	}
	return v, err
}

func (t *tower) float(name string) (float64, error) {
	raw, ok := t.fields[name]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return t.defs[name].(float64), nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return 0, fmt.Errorf("hf: config: %s.%s: want a number, got %s", t.key, name, raw)
	}
	return f, nil
}

// act maps hidden_act to the engine's activation names.
func (t *tower) act() (string, error) {
	s := t.defs["hidden_act"].(string)
	if raw, ok := t.fields["hidden_act"]; ok && string(bytes.TrimSpace(raw)) != "null" {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("hf: config: %s.hidden_act: want a string, got %s", t.key, raw)
		}
	}
	switch s {
	case "gelu":
		return string(config.GELU), nil
	case "quick_gelu":
		return string(config.QuickGELU), nil
	case "gelu_new", "gelu_pytorch_tanh":
		return string(config.GELUTanh), nil
	case "relu":
		return string(config.ReLU), nil
	}
	return "", fmt.Errorf("hf: config: %s.hidden_act %q is not supported (gelu, quick_gelu, gelu_new, gelu_pytorch_tanh, relu)", t.key, s)
}

// common reads the transformer dimensions both towers share.
func (t *tower) common() (width, heads, layers, mlp int, act string, err error) {
	if width, err = t.positive("hidden_size"); err != nil {
		return
	}
	if heads, err = t.positive("num_attention_heads"); err != nil {
		return
	}
	if width%heads != 0 {
		err = fmt.Errorf("hf: config: %s: hidden_size %d is not a multiple of num_attention_heads %d", t.key, width, heads)
		return
	}
	if layers, err = t.positive("num_hidden_layers"); err != nil {
		return
	}
	if mlp, err = t.int("intermediate_size"); err != nil {
		return
	}
	if act, err = t.act(); err != nil {
		return
	}
	var eps float64
	if eps, err = t.float("layer_norm_eps"); err != nil {
		return
	}
	if math.Abs(eps-layerNormEps) > 1e-12 {
		err = fmt.Errorf("hf: config: %s.layer_norm_eps %g is not supported (CLIP uses %g)", t.key, eps, layerNormEps)
	}
	return
}

// mlpRatio returns the MLP ratio and, when width·ratio does not give the MLP
// width back exactly, the per-layer list that does.
func mlpRatio(width, mlp, layers int) (float64, []int) {
	r := float64(mlp) / float64(width)
	if int(float64(width)*r) == mlp {
		return r, nil
	}
	l := make([]int, layers)
	for i := range l {
		l[i] = mlp
	}
	return r, l
}

// ParseConfig converts a transformers CLIPConfig config.json into the
// official config form. Keys left out take transformers' defaults (notably
// hidden_act "quick_gelu" and patch_size 32); the legacy text_config_dict /
// vision_config_dict override text_config / vision_config. Each tower's
// activation is set in HiddenAct; the vision head width is
// hidden_size/num_attention_heads and the MLP ratio is
// intermediate_size/hidden_size.
func ParseConfig(data []byte) (*config.Config, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return nil, fmt.Errorf("hf: config: not a JSON object")
	}
	if raw, ok := top["model_type"]; ok {
		var mt string
		if err := json.Unmarshal(raw, &mt); err != nil || mt != "clip" {
			return nil, fmt.Errorf("hf: config: model_type %s is not \"clip\"", raw)
		}
	}
	sub := func(key string, defs map[string]any) (*tower, error) {
		t := &tower{key: key, fields: map[string]json.RawMessage{}, defs: defs}
		for _, k := range []string{key, key + "_dict"} {
			raw, ok := top[k]
			if !ok || string(bytes.TrimSpace(raw)) == "null" {
				continue
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(raw, &m); err != nil {
				return nil, fmt.Errorf("hf: config: %s is not an object", k)
			}
			for f, v := range m {
				t.fields[f] = v
			}
		}
		return t, nil
	}
	tt, err := sub("text_config", textDefaults)
	if err != nil {
		return nil, err
	}
	vt, err := sub("vision_config", visionDefaults)
	if err != nil {
		return nil, err
	}
	proj := &tower{key: "config", fields: top, defs: map[string]any{"projection_dim": defaultProjectionDim}}
	cfg := &config.Config{}
	if cfg.EmbedDim, err = proj.positive("projection_dim"); err != nil {
		return nil, err
	}

	w, h, l, m, act, err := vt.common()
	if err != nil {
		return nil, err
	}
	v := &cfg.VisionCfg
	v.Width, v.HeadWidth, v.Layers, v.HiddenAct = w, w/h, config.IntOrList{l}, act
	v.MLPRatio, v.LayerMLP = mlpRatio(w, m, l)
	if v.ImageSize, err = vt.positive("image_size"); err != nil {
		return nil, err
	}
	p, err := vt.positive("patch_size")
	if err != nil {
		return nil, err
	}
	v.PatchSize = &p
	if ch, err := vt.int("num_channels"); err != nil || ch != 3 {
		return nil, fmt.Errorf("hf: config: vision_config.num_channels must be 3")
	}

	w, h, l, m, act, err = tt.common()
	if err != nil {
		return nil, err
	}
	t := &cfg.TextCfg
	t.Width, t.Heads, t.Layers, t.HiddenAct = w, h, l, act
	t.MLPRatio, t.LayerMLP = mlpRatio(w, m, l)
	if t.ContextLength, err = tt.positive("max_position_embeddings"); err != nil {
		return nil, err
	}
	if t.VocabSize, err = tt.positive("vocab_size"); err != nil {
		return nil, err
	}
	cfg.QuickGELU = v.HiddenAct == string(config.QuickGELU) && t.HiddenAct == string(config.QuickGELU)
	return cfg, nil
}

// ParseIndex reads a sharded checkpoint's index (model.safetensors.index.json
// or pytorch_model.bin.index.json) and returns its weight_map: tensor name →
// shard file name. Shard names must be plain file names in the index's
// directory.
func ParseIndex(data []byte) (map[string]string, error) {
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("hf: index: %v", err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("hf: index: no weight_map entries")
	}
	for name, file := range idx.WeightMap {
		if file == "" || file == "." || file == ".." || strings.ContainsAny(file, `/\`) || path.Base(file) != file {
			return nil, fmt.Errorf("hf: index: tensor %q: shard %q is not a plain file name", name, file)
		}
	}
	return idx.WeightMap, nil
}
