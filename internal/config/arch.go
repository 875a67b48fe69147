package config

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
