// Package checkpoint reads model weights in every format TinyCLIP and CLIP
// checkpoints come in (torch zip and legacy pickles, safetensors, open_clip
// and Hugging Face directories, sharded weights) and presents them as
// tensors under open_clip's canonical names, with the model and
// preprocessing configs found next to them. Formats are recognised by
// content, not by file name.
package checkpoint

import "github.com/tinyclip-go/tinyclip/internal/tensor"

// Tensor is a named array under its open_clip name.
type Tensor = tensor.Tensor
