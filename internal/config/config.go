// Package config describes TinyCLIP/CLIP model architectures: the official
// config.json form (Config), the fully resolved per-layer form the engine runs
// (Arch), inference of an Arch from tensor shapes, and the registry of named
// models with their parameter counts and MACs.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Config is a model config in the official TinyCLIP / open_clip config.json
// form (also the "model_cfg" of open_clip_config.json), with the project's
// extensions for irregular (auto-pruned) towers.
type Config struct {
	EmbedDim  int          `json:"embed_dim"`
	QuickGELU bool         `json:"quick_gelu,omitempty"`
	VisionCfg VisionConfig `json:"vision_cfg"`
	TextCfg   TextConfig   `json:"text_cfg"`
	// AutoPruned is the informational object of the fixture configs
	// (per-layer dims of a pruned model and its head dim).
	AutoPruned *AutoPruned `json:"auto_pruned,omitempty"`
}

// VisionConfig is the image tower part of Config. A ViT has PatchSize > 0 and
// a single layer count; a ModifiedResNet has no patch size and four stage
// depths in Layers.
type VisionConfig struct {
	ImageSize int `json:"image_size,omitempty"`
	// Layers is the number of transformer blocks of a ViT, or the four stage
	// depths of a ResNet. JSON accepts a number or a list.
	Layers    IntOrList `json:"layers"`
	Width     int       `json:"width"`
	HeadWidth int       `json:"head_width,omitempty"`
	PatchSize *int      `json:"patch_size,omitempty"`
	MLPRatio  float64   `json:"mlp_ratio,omitempty"`
	// HiddenAct overrides the activation ("gelu", "quick_gelu", "gelu_tanh",
	// "relu"); a project extension set from Hugging Face configs.
	HiddenAct string `json:"hidden_act,omitempty"`
	// LayerHeads and LayerMLP give per-layer head counts and MLP widths of an
	// irregular tower (project extension, spec §1.3).
	LayerHeads []int `json:"layer_heads,omitempty"`
	LayerMLP   []int `json:"layer_mlp,omitempty"`
}

// TextConfig is the text tower part of Config.
type TextConfig struct {
	ContextLength int     `json:"context_length,omitempty"`
	VocabSize     int     `json:"vocab_size,omitempty"`
	Width         int     `json:"width"`
	Heads         int     `json:"heads,omitempty"`
	Layers        int     `json:"layers"`
	HeadWidth     int     `json:"head_width,omitempty"`
	MLPRatio      float64 `json:"mlp_ratio,omitempty"`
	HiddenAct     string  `json:"hidden_act,omitempty"`
	LayerHeads    []int   `json:"layer_heads,omitempty"`
	LayerMLP      []int   `json:"layer_mlp,omitempty"`
}

// AutoPruned is the "auto_pruned" object of the fixture configs.
type AutoPruned struct {
	HeadDim int              `json:"head_dim"`
	Vision  *AutoPrunedTower `json:"vision,omitempty"`
	Text    *AutoPrunedTower `json:"text,omitempty"`
}

// AutoPrunedTower holds the pruned dims of one tower.
type AutoPrunedTower struct {
	Width    int   `json:"width"`
	Heads    []int `json:"heads"`
	MLPWidth []int `json:"mlp_width"`
}

// IntOrList is a JSON number or list of numbers.
type IntOrList []int

// UnmarshalJSON accepts 12 or [3,4,6,3].
func (v *IntOrList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var l []int
		if err := json.Unmarshal(b, &l); err != nil {
			return err
		}
		*v = l
		return nil
	}
	if string(b) == "null" {
		*v = nil
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("layers: want a number or a list of numbers, got %s", b)
	}
	*v = IntOrList{n}
	return nil
}

// MarshalJSON writes a single value as a number, several as a list.
func (v IntOrList) MarshalJSON() ([]byte, error) {
	if len(v) == 1 {
		return json.Marshal(v[0])
	}
	return json.Marshal([]int(v))
}

// IsResNet reports whether the vision config describes a ModifiedResNet.
func (c *Config) IsResNet() bool {
	return len(c.VisionCfg.Layers) == 4 && (c.VisionCfg.PatchSize == nil || *c.VisionCfg.PatchSize == 0)
}

// Parse decodes a config.json or open_clip_config.json body. For the latter
// the "model_cfg" object is taken.
func Parse(data []byte) (*Config, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if mc, ok := probe["model_cfg"]; ok {
		data = mc
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}
