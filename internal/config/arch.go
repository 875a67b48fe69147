package config

import "fmt"

// Activation names the MLP non-linearity of a transformer tower.
type Activation string

// Activations the engine implements.
const (
	GELU      Activation = "gelu"       // exact erf GELU (PyTorch nn.GELU default)
	QuickGELU Activation = "quick_gelu" // x·sigmoid(1.702x)
	GELUTanh  Activation = "gelu_tanh"  // tanh approximation (HF gelu_new / gelu_pytorch_tanh)
	ReLU      Activation = "relu"
)

// Block is one residual attention block of a transformer tower, with its own
// (possibly pruned) dimensions.
type Block struct {
	// Heads is the number of attention heads; 0 means the block has no
	// attention sub-layer (no ln_1, no attn tensors).
	Heads int
	// MLP is the hidden width of the MLP. 0 with HasMLP means zero-size
	// tensors: the MLP adds the constant c_proj.bias.
	MLP int
	// HasMLP is false when the block's mlp tensors are absent entirely (the
	// MLP adds nothing).
	HasMLP bool
}

// Transformer is a stack of pre-norm residual attention blocks.
type Transformer struct {
	Width   int // residual stream width (the pruned hidden size H)
	HeadDim int // width of one attention head (64 in every official tower)
	Act     Activation
	Blocks  []Block
}

// Vision tower kinds.
const (
	KindViT    = "vit"
	KindResNet = "resnet"
)

// VisionArch is a fully resolved image tower.
type VisionArch struct {
	Kind      string // KindViT or KindResNet
	ImageSize int
	Embed     int // output embedding width

	// ViT.
	PatchSize   int
	Transformer Transformer

	// ModifiedResNet.
	Layers      [4]int // blocks per stage
	Width       int    // stem width w; stage k has planes w·2^k, outputs 4·planes
	PoolHeads   int    // attention-pool heads
	PoolHeadDim int    // attention-pool head width (PoolHeads·PoolHeadDim = 32·w)
}

// TextArch is a fully resolved text tower.
type TextArch struct {
	ContextLength int
	VocabSize     int
	Embed         int
	Transformer   Transformer
}

// Arch is a fully resolved model: every dimension of every layer. It is what
// the engine builds and what parameter and MAC counts are computed from.
type Arch struct {
	EmbedDim int
	Vision   VisionArch
	Text     TextArch
}

// Limits on every dimension an Arch may have. They are far above any CLIP
// model (ViT-bigG has width 1664, 48 layers) and keep parameter and MAC counts
// within int64 and tensor shapes free of overflow.
const (
	maxWidth     = 1 << 16 // tower widths, embed dim, head dim, attention width
	maxMLP       = 1 << 18 // MLP hidden width
	maxLayers    = 256     // transformer depth, blocks per ResNet stage
	maxImageSize = 1 << 14 // pixels per side
	maxTokens    = 1<<16 + 1
	maxContext   = 1 << 16
	maxVocab     = 1 << 24
)

// Validate reports whether every dimension of a is usable: positive where it
// must be, within the package limits, and consistent (e.g. both towers project
// to EmbedDim, pool heads times head width give the ResNet output width).
func (a *Arch) Validate() error {
	if err := checkRange("embed_dim", a.EmbedDim, 1, maxWidth); err != nil {
		return err
	}
	if a.Vision.Embed != a.EmbedDim {
		return fmt.Errorf("config: image tower embed dim %d, want embed_dim %d", a.Vision.Embed, a.EmbedDim)
	}
	if a.Text.Embed != a.EmbedDim {
		return fmt.Errorf("config: text tower embed dim %d, want embed_dim %d", a.Text.Embed, a.EmbedDim)
	}
	if err := a.Vision.validate(); err != nil {
		return err
	}
	return a.Text.validate()
}

func (v *VisionArch) validate() error {
	switch v.Kind {
	case KindViT:
		if err := checkRange("vision_cfg.patch_size", v.PatchSize, 1, maxImageSize); err != nil {
			return err
		}
		if err := checkRange("vision_cfg.image_size", v.ImageSize, v.PatchSize, maxImageSize); err != nil {
			return err
		}
		if t := v.Tokens(); t > maxTokens {
			return fmt.Errorf("config: vision_cfg: %d tokens (image_size %d, patch_size %d), limit %d",
				t, v.ImageSize, v.PatchSize, maxTokens)
		}
		return v.Transformer.validate("vision_cfg")
	case KindResNet:
		for i, n := range v.Layers {
			if err := checkRange(fmt.Sprintf("vision_cfg.layers[%d]", i), n, 1, maxLayers); err != nil {
				return err
			}
		}
		if err := checkRange("vision_cfg.width", v.Width, 2, maxWidth/32); err != nil {
			return err
		}
		if err := checkRange("vision_cfg.image_size", v.ImageSize, 32, maxImageSize); err != nil {
			return err
		}
		if v.ImageSize%32 != 0 {
			return fmt.Errorf("config: vision_cfg.image_size %d: a ModifiedResNet needs a multiple of 32", v.ImageSize)
		}
		if t := v.Tokens(); t > maxTokens {
			return fmt.Errorf("config: vision_cfg: %d attention-pool tokens (image_size %d), limit %d",
				t, v.ImageSize, maxTokens)
		}
		if v.PoolHeads < 1 || v.PoolHeadDim < 1 || v.PoolHeads*v.PoolHeadDim != 32*v.Width {
			return fmt.Errorf("config: vision_cfg: %d pool heads of width %d do not make the pool width %d (32·width)",
				v.PoolHeads, v.PoolHeadDim, 32*v.Width)
		}
		return nil
	}
	return fmt.Errorf("config: unknown image tower kind %q", v.Kind)
}

// Tokens returns the number of tokens the image tower attends over: grid²+1
// (class token) for a ViT, the 7×7 map of a 224-pixel ResNet plus its mean
// token (50) for the attention pool.
func (v *VisionArch) Tokens() int {
	var g int
	switch v.Kind {
	case KindViT:
		if v.PatchSize <= 0 {
			return 0
		}
		g = v.ImageSize / v.PatchSize
	case KindResNet:
		g = v.ImageSize / 32
	default:
		return 0
	}
	return g*g + 1
}

// Grid returns the side of the token grid: image_size / patch_size for a ViT,
// image_size / 32 for a ResNet.
func (v *VisionArch) Grid() int {
	switch v.Kind {
	case KindViT:
		if v.PatchSize > 0 {
			return v.ImageSize / v.PatchSize
		}
	case KindResNet:
		return v.ImageSize / 32
	}
	return 0
}

func (t *TextArch) validate() error {
	if err := checkRange("text_cfg.context_length", t.ContextLength, 1, maxContext); err != nil {
		return err
	}
	if err := checkRange("text_cfg.vocab_size", t.VocabSize, 1, maxVocab); err != nil {
		return err
	}
	return t.Transformer.validate("text_cfg")
}

func (t *Transformer) validate(tower string) error {
	if err := checkRange(tower+".width", t.Width, 1, maxWidth); err != nil {
		return err
	}
	if err := checkRange(tower+".head_width", t.HeadDim, 1, maxWidth); err != nil {
		return err
	}
	if err := checkRange(tower+".layers", len(t.Blocks), 1, maxLayers); err != nil {
		return err
	}
	switch t.Act {
	case GELU, QuickGELU, GELUTanh, ReLU:
	default:
		return fmt.Errorf("config: %s: unknown activation %q", tower, t.Act)
	}
	for i, b := range t.Blocks {
		if b.Heads < 0 || b.Heads > maxWidth/t.HeadDim {
			return fmt.Errorf("config: %s layer %d: %d heads of width %d out of range (attention width limit %d)",
				tower, i, b.Heads, t.HeadDim, maxWidth)
		}
		if err := checkRange(fmt.Sprintf("%s layer %d MLP width", tower, i), b.MLP, 0, maxMLP); err != nil {
			return err
		}
		if !b.HasMLP && b.MLP != 0 {
			return fmt.Errorf("config: %s layer %d: MLP width %d on a layer without MLP", tower, i, b.MLP)
		}
		if b.Heads == 0 && !b.HasMLP {
			return fmt.Errorf("config: %s layer %d: neither attention heads nor an MLP", tower, i)
		}
	}
	return nil
}

func checkRange(key string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("config: %s: %d out of range [%d, %d]", key, v, lo, hi)
	}
	return nil
}
