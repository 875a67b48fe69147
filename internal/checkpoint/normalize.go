package checkpoint

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint/hf"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// Normalize renames the tensors of any supported key layout to open_clip
// names (spec §2.1.3): it removes "module" name components (DataParallel
// wrappers, also doubled), folds the auto-pruning aliases
// image_encoder_without_ddp./text_encoder_without_ddp. into the TinyCLIP
// tower names, maps _image_encoder.visual.X → visual.X, _text_encoder.X → X
// and _logit_scale.logit_scale → logit_scale, maps Hugging Face CLIPModel
// names (spec §2.3), drops input_resolution, context_length, vocab_size,
// attn_mask and *.position_ids, and gives logit_scale the shape [] when it
// is stored as [1]. Several source names may map to one name only when they
// hold identical tensors (dtype, shape and bytes); otherwise the error wraps
// ErrConflict. Mask parameters of an auto-pruning snapshot (l0_module) are
// refused with an error wrapping ErrUnsupportedFormat. The input map is not
// modified; the result shares tensor data with it.
func Normalize(ts map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	keys := make([]string, 0, len(ts))
	for k := range ts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var masks []string
	for _, k := range keys {
		if slices.Contains(strings.Split(k, "."), "l0_module") {
			masks = append(masks, k)
		}
	}
	if len(masks) > 0 {
		return nil, fmt.Errorf("%w: %d l0_module mask parameters (e.g. %s): this is a masked training snapshot taken during auto pruning, not an inference model; finish pruning (the official prune step) and save the pruned state dict",
			ErrUnsupportedFormat, len(masks), masks[0])
	}

	out := make(map[string]*tensor.Tensor, len(ts))
	from := make(map[string]string, len(ts)) // new name → source name
	for _, k := range keys {
		t := ts[k]
		if t == nil {
			return nil, fmt.Errorf("checkpoint: tensor %q is nil", k)
		}
		n := rename(k)
		if n == "" {
			return nil, fmt.Errorf("checkpoint: tensor %q has no name left after removing \"module\" components", k)
		}
		if dropped(n) {
			continue
		}
		if prev, dup := out[n]; dup {
			if !identical(prev, t) {
				return nil, fmt.Errorf("%w: %s and %s both map to %s but differ (%s %v vs %s %v%s)",
					ErrConflict, from[n], k, n, prev.DType, prev.Shape, t.DType, t.Shape, sameHeader(prev, t))
			}
			continue
		}
		r := *t
		r.Name = n
		out[n] = &r
		from[n] = k
	}
	if hf.HasHFNames(out) {
		var err error
		if out, err = hf.ToOpenCLIP(out); err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
	}
	if ls := out["logit_scale"]; ls != nil && slices.Equal(ls.Shape, []int{1}) {
		r := *ls
		r.Shape = []int{}
		out["logit_scale"] = &r
	}
	return out, nil
}

// rename applies steps 1–4 of the normalisation to one name.
func rename(k string) string {
	parts := strings.Split(k, ".")
	kept := parts[:0:0]
	for _, p := range parts {
		if p != "module" {
			kept = append(kept, p)
		}
	}
	n := strings.Join(kept, ".")
	if rest, ok := strings.CutPrefix(n, "image_encoder_without_ddp."); ok {
		n = "_image_encoder." + rest
	} else if rest, ok := strings.CutPrefix(n, "text_encoder_without_ddp."); ok {
		n = "_text_encoder." + rest
	}
	switch {
	case strings.HasPrefix(n, "_image_encoder.visual."):
		return strings.TrimPrefix(n, "_image_encoder.")
	case strings.HasPrefix(n, "_text_encoder."):
		return strings.TrimPrefix(n, "_text_encoder.")
	case n == "_logit_scale.logit_scale":
		return "logit_scale"
	}
	return n
}

// dropped reports whether a normalised name is a non-weight entry (step 5).
func dropped(n string) bool {
	switch n {
	case "input_resolution", "context_length", "vocab_size", "attn_mask", "position_ids":
		return true
	}
	return strings.HasSuffix(n, ".attn_mask") || strings.HasSuffix(n, ".position_ids")
}

func identical(a, b *tensor.Tensor) bool {
	return a.DType == b.DType && slices.Equal(a.Shape, b.Shape) && bytes.Equal(a.Data, b.Data)
}

// sameHeader explains a conflict between tensors of equal dtype and shape.
func sameHeader(a, b *tensor.Tensor) string {
	if a.DType == b.DType && slices.Equal(a.Shape, b.Shape) {
		return ", different values"
	}
	return ""
}
