// Package checkpoint reads model weights in every format TinyCLIP and CLIP
// checkpoints come in (torch zip and legacy pickles, safetensors, Hugging Face
// directories) and presents them as tensors under open_clip's canonical names.
package checkpoint

import "github.com/tinyclip-go/tinyclip/internal/tensor"

// Tensor is a named array under its open_clip name.
type Tensor = tensor.Tensor
