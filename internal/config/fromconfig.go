package config

import (
	"fmt"
	"math"
	"slices"
)

// Defaults of the official config dataclasses (open_clip CLIPVisionCfg /
// CLIPTextCfg), applied to keys a config leaves out.
const (
	defaultImageSize = 224
	defaultContext   = 77
	defaultVocab     = 49408
	defaultHeadWidth = 64
	defaultTextHeads = 8
	defaultMLPRatio  = 4.0
)

// FromConfig returns the architecture cfg describes. Regular towers follow the
// official rules (ViT heads = width // head_width, text heads from "heads",
// ResNet pool heads = 32·width // head_width, MLP width = int(width·mlp_ratio));
// irregular towers take their per-layer heads and MLP widths from the
// project's "layer_heads"/"layer_mlp" keys (a layer_mlp entry of -1 means the
// layer has no MLP tensors) or from the fixtures' "auto_pruned" object, whose
// width replaces the tower's base width. Keys left out take the official
// defaults (image size 224, context 77, vocabulary 49408, head width 64, text
// heads 8, MLP ratio 4); widths, layers and embed_dim are required. The
// activation of a tower is its "hidden_act" if set, else QuickGELU when
// "quick_gelu" is true, else GELU.
func FromConfig(cfg *Config) (*Arch, error) {
	if cfg == nil {
		return nil, fmt.Errorf("config: no config")
	}
	if err := checkRange("embed_dim", cfg.EmbedDim, 1, maxWidth); err != nil {
		return nil, err
	}
	var auto AutoPruned
	if cfg.AutoPruned != nil {
		auto = *cfg.AutoPruned
		if auto.HeadDim < 0 || auto.HeadDim > maxWidth {
			return nil, fmt.Errorf("config: auto_pruned.head_dim: %d out of range [1, %d]", auto.HeadDim, maxWidth)
		}
	}
	a := &Arch{EmbedDim: cfg.EmbedDim}
	v, err := visionFromConfig(cfg, &auto)
	if err != nil {
		return nil, err
	}
	a.Vision = *v
	t, err := textFromConfig(cfg, &auto)
	if err != nil {
		return nil, err
	}
	a.Text = *t
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// activation resolves a tower's activation from hidden_act and quick_gelu.
func activation(key, hiddenAct string, quick bool) (Activation, error) {
	switch hiddenAct {
	case "":
		if quick {
			return QuickGELU, nil
		}
		return GELU, nil
	case "gelu":
		return GELU, nil
	case "quick_gelu", "quickgelu":
		return QuickGELU, nil
	case "gelu_tanh", "gelu_new", "gelu_pytorch_tanh":
		return GELUTanh, nil
	case "relu":
		return ReLU, nil
	}
	return "", fmt.Errorf("config: %s.hidden_act: unsupported activation %q", key, hiddenAct)
}

// explicitHeadWidth returns the head width a tower config states through its
// own head_width or auto_pruned.head_dim (0 if neither), and an error if the
// two disagree.
func explicitHeadWidth(key string, own int, auto *AutoPruned) (int, error) {
	if own < 0 || own > maxWidth {
		return 0, fmt.Errorf("config: %s.head_width: %d out of range [1, %d]", key, own, maxWidth)
	}
	if own > 0 && auto.HeadDim > 0 && own != auto.HeadDim {
		return 0, fmt.Errorf("config: %s.head_width %d disagrees with auto_pruned.head_dim %d", key, own, auto.HeadDim)
	}
	if own > 0 {
		return own, nil
	}
	return auto.HeadDim, nil
}

func mlpWidth(key string, width int, ratio float64) (int, error) {
	if ratio == 0 {
		ratio = defaultMLPRatio
	}
	m := float64(width) * ratio
	if !(ratio > 0) || math.IsInf(ratio, 0) || m > maxMLP {
		return 0, fmt.Errorf("config: %s.mlp_ratio: %v out of range (MLP width limit %d)", key, ratio, maxMLP)
	}
	return int(m), nil
}

// layersFromLists builds the blocks of an irregular tower from per-layer
// head counts and MLP widths; a missing list repeats the regular value.
func layersFromLists(key string, layers int, heads, mlps []int, regHeads, regMLP int) ([]Block, error) {
	if heads != nil && len(heads) != layers {
		return nil, fmt.Errorf("config: %s: %d layer head counts for %d layers", key, len(heads), layers)
	}
	if mlps != nil && len(mlps) != layers {
		return nil, fmt.Errorf("config: %s: %d layer MLP widths for %d layers", key, len(mlps), layers)
	}
	blocks := make([]Block, layers)
	for i := range blocks {
		b := Block{Heads: regHeads, MLP: regMLP, HasMLP: true}
		if heads != nil {
			b.Heads = heads[i]
			if b.Heads < 0 || b.Heads > maxWidth {
				return nil, fmt.Errorf("config: %s: layer %d: %d heads out of range", key, i, b.Heads)
			}
		}
		if mlps != nil {
			switch m := mlps[i]; {
			case m == -1:
				b.MLP, b.HasMLP = 0, false
			case m < 0 || m > maxMLP:
				return nil, fmt.Errorf("config: %s: layer %d: MLP width %d out of range [-1, %d]", key, i, m, maxMLP)
			default:
				b.MLP = m
			}
		}
		blocks[i] = b
	}
	return blocks, nil
}

// towerDims returns the width and per-layer lists of a tower, merging
// layer_heads/layer_mlp with an auto_pruned tower.
func towerDims(key string, width, layers int, lh, lm []int, ap *AutoPrunedTower) (int, []int, []int, error) {
	if ap == nil {
		return width, lh, lm, nil
	}
	if lh != nil && !slices.Equal(lh, ap.Heads) {
		return 0, nil, nil, fmt.Errorf("config: %s.layer_heads %v disagrees with auto_pruned heads %v", key, lh, ap.Heads)
	}
	if lm != nil && !slices.Equal(lm, ap.MLPWidth) {
		return 0, nil, nil, fmt.Errorf("config: %s.layer_mlp %v disagrees with auto_pruned mlp_width %v", key, lm, ap.MLPWidth)
	}
	if ap.Heads == nil || ap.MLPWidth == nil {
		return 0, nil, nil, fmt.Errorf("config: auto_pruned: %s tower needs heads and mlp_width lists", key)
	}
	if len(ap.Heads) != layers {
		return 0, nil, nil, fmt.Errorf("config: auto_pruned: %d %s head counts for %d layers", len(ap.Heads), key, layers)
	}
	return ap.Width, ap.Heads, ap.MLPWidth, nil
}

func visionFromConfig(cfg *Config, auto *AutoPruned) (*VisionArch, error) {
	vc := &cfg.VisionCfg
	v := &VisionArch{ImageSize: vc.ImageSize, Embed: cfg.EmbedDim}
	if v.ImageSize == 0 {
		v.ImageSize = defaultImageSize
	}
	hw, err := explicitHeadWidth("vision_cfg", vc.HeadWidth, auto)
	if err != nil {
		return nil, err
	}
	if cfg.IsResNet() {
		if len(vc.Layers) != 4 {
			return nil, fmt.Errorf("config: vision_cfg.layers: a ModifiedResNet has 4 stages, got %v", []int(vc.Layers))
		}
		if auto.Vision != nil || vc.LayerHeads != nil || vc.LayerMLP != nil {
			return nil, fmt.Errorf("config: vision_cfg: per-layer heads or MLP widths on a ModifiedResNet")
		}
		v.Kind = KindResNet
		copy(v.Layers[:], vc.Layers)
		v.Width = vc.Width
		if err := checkRange("vision_cfg.width", v.Width, 2, maxWidth/32); err != nil {
			return nil, err
		}
		if hw == 0 {
			hw = defaultHeadWidth
		}
		c := 32 * v.Width
		v.PoolHeads = c / hw
		if v.PoolHeads < 1 || c%v.PoolHeads != 0 {
			return nil, fmt.Errorf("config: vision_cfg: head_width %d does not split the pool width %d (32·width) into whole heads", hw, c)
		}
		v.PoolHeadDim = c / v.PoolHeads
		return v, nil
	}

	v.Kind = KindViT
	if len(vc.Layers) != 1 {
		return nil, fmt.Errorf("config: vision_cfg.layers: a ViT needs one layer count, got %v", []int(vc.Layers))
	}
	if vc.PatchSize == nil || *vc.PatchSize == 0 {
		return nil, fmt.Errorf("config: vision_cfg.patch_size: missing for a ViT tower")
	}
	v.PatchSize = *vc.PatchSize
	layers := vc.Layers[0]
	if err := checkRange("vision_cfg.layers", layers, 1, maxLayers); err != nil {
		return nil, err
	}
	if err := checkRange("vision_cfg.width", vc.Width, 1, maxWidth); err != nil {
		return nil, err
	}
	width, lh, lm, err := towerDims("vision_cfg", vc.Width, layers, vc.LayerHeads, vc.LayerMLP, auto.Vision)
	if err != nil {
		return nil, err
	}
	if err := checkRange("vision_cfg width", width, 1, maxWidth); err != nil {
		return nil, err
	}
	act, err := activation("vision_cfg", vc.HiddenAct, cfg.QuickGELU)
	if err != nil {
		return nil, err
	}
	mlp, err := mlpWidth("vision_cfg", width, vc.MLPRatio)
	if err != nil {
		return nil, err
	}
	heads := 0
	if hw == 0 {
		hw = defaultHeadWidth
	}
	if lh == nil {
		// Official rule: heads = width // head_width; the attention then
		// splits the width evenly over those heads.
		heads = width / hw
		if heads < 1 || width%heads != 0 {
			return nil, fmt.Errorf("config: vision_cfg: head_width %d does not split width %d into whole heads", hw, width)
		}
		hw = width / heads
	}
	blocks, err := layersFromLists("vision_cfg", layers, lh, lm, heads, mlp)
	if err != nil {
		return nil, err
	}
	v.Transformer = Transformer{Width: width, HeadDim: hw, Act: act, Blocks: blocks}
	return v, nil
}

func textFromConfig(cfg *Config, auto *AutoPruned) (*TextArch, error) {
	tc := &cfg.TextCfg
	t := &TextArch{ContextLength: tc.ContextLength, VocabSize: tc.VocabSize, Embed: cfg.EmbedDim}
	if t.ContextLength == 0 {
		t.ContextLength = defaultContext
	}
	if t.VocabSize == 0 {
		t.VocabSize = defaultVocab
	}
	if err := checkRange("text_cfg.layers", tc.Layers, 1, maxLayers); err != nil {
		return nil, err
	}
	if err := checkRange("text_cfg.width", tc.Width, 1, maxWidth); err != nil {
		return nil, err
	}
	if tc.Heads < 0 || tc.Heads > maxWidth {
		return nil, fmt.Errorf("config: text_cfg.heads: %d out of range", tc.Heads)
	}
	hw, err := explicitHeadWidth("text_cfg", tc.HeadWidth, auto)
	if err != nil {
		return nil, err
	}
	width, lh, lm, err := towerDims("text_cfg", tc.Width, tc.Layers, tc.LayerHeads, tc.LayerMLP, auto.Text)
	if err != nil {
		return nil, err
	}
	if err := checkRange("text_cfg width", width, 1, maxWidth); err != nil {
		return nil, err
	}
	act, err := activation("text_cfg", tc.HiddenAct, cfg.QuickGELU)
	if err != nil {
		return nil, err
	}
	mlp, err := mlpWidth("text_cfg", width, tc.MLPRatio)
	if err != nil {
		return nil, err
	}
	heads := 0
	if lh == nil {
		// Official rule: the text tower states its head count; the head
		// width is width / heads. (With "heads" left out: width / head_width
		// if given, else open_clip's default of 8 heads.)
		heads = tc.Heads
		if heads == 0 {
			heads = defaultTextHeads
			if hw > 0 {
				heads = width / hw
			}
		}
		if heads < 1 || width%heads != 0 {
			return nil, fmt.Errorf("config: text_cfg: %d heads do not split width %d evenly", heads, width)
		}
		if hw > 0 && width/heads != hw {
			return nil, fmt.Errorf("config: text_cfg: width %d / heads %d = head width %d, but the config gives head width %d",
				width, heads, width/heads, hw)
		}
		hw = width / heads
	} else if hw == 0 {
		hw = defaultHeadWidth
	}
	blocks, err := layersFromLists("text_cfg", tc.Layers, lh, lm, heads, mlp)
	if err != nil {
		return nil, err
	}
	t.Transformer = Transformer{Width: width, HeadDim: hw, Act: act, Blocks: blocks}
	return t, nil
}

// Config returns a in the official config.json form. Regular towers are
// written as the official configs write them; an irregular transformer tower
// (any layer whose heads or MLP width differ from width/head_width and
// 4·width) gets the project keys "layer_heads" and "layer_mlp" (-1 for a
// layer without MLP tensors) next to "width" and "head_width" (spec §1.3).
// FromConfig of the result gives back a.
func (a *Arch) Config() *Config {
	c := &Config{EmbedDim: a.EmbedDim}
	v := &a.Vision
	c.VisionCfg.ImageSize = v.ImageSize
	textAct := a.Text.Transformer.Act
	switch v.Kind {
	case KindResNet:
		c.VisionCfg.Layers = IntOrList(slices.Clone(v.Layers[:]))
		c.VisionCfg.Width = v.Width
		if v.PoolHeadDim != defaultHeadWidth {
			c.VisionCfg.HeadWidth = v.PoolHeadDim
		}
		if textAct == QuickGELU {
			c.QuickGELU = true
		} else if textAct != GELU {
			c.TextCfg.HiddenAct = string(textAct)
		}
	default:
		tr := &v.Transformer
		p := v.PatchSize
		c.VisionCfg.PatchSize = &p
		c.VisionCfg.Layers = IntOrList{len(tr.Blocks)}
		c.VisionCfg.Width = tr.Width
		if tr.HeadDim != defaultHeadWidth {
			c.VisionCfg.HeadWidth = tr.HeadDim
		}
		if !tr.regular() {
			c.VisionCfg.LayerHeads, c.VisionCfg.LayerMLP = tr.layerLists()
		}
		visAct := tr.Act
		if visAct == QuickGELU && textAct == QuickGELU {
			c.QuickGELU = true
		} else {
			if visAct != GELU {
				c.VisionCfg.HiddenAct = string(visAct)
			}
			if textAct != GELU {
				c.TextCfg.HiddenAct = string(textAct)
			}
		}
	}
	t := &a.Text
	tr := &t.Transformer
	c.TextCfg.ContextLength = t.ContextLength
	c.TextCfg.VocabSize = t.VocabSize
	c.TextCfg.Width = tr.Width
	c.TextCfg.Layers = len(tr.Blocks)
	if tr.regular() {
		c.TextCfg.Heads = tr.Width / tr.HeadDim
	} else {
		// "heads" is informational here (macs.py requires the key); the
		// per-layer lists and head_width define the tower.
		c.TextCfg.HeadWidth = tr.HeadDim
		c.TextCfg.LayerHeads, c.TextCfg.LayerMLP = tr.layerLists()
		for _, h := range c.TextCfg.LayerHeads {
			c.TextCfg.Heads = max(c.TextCfg.Heads, h)
		}
	}
	return c
}

// regular reports whether every block has width/HeadDim heads and a 4·width MLP.
func (t *Transformer) regular() bool {
	if t.HeadDim <= 0 || t.Width%t.HeadDim != 0 {
		return false
	}
	for _, b := range t.Blocks {
		if b.Heads != t.Width/t.HeadDim || !b.HasMLP || b.MLP != 4*t.Width {
			return false
		}
	}
	return true
}

func (t *Transformer) layerLists() (heads, mlps []int) {
	heads = make([]int, len(t.Blocks))
	mlps = make([]int, len(t.Blocks))
	for i, b := range t.Blocks {
		heads[i] = b.Heads
		mlps[i] = b.MLP
		if !b.HasMLP {
			mlps[i] = -1
		}
	}
	return heads, mlps
}
