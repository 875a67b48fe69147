package hf

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// ErrNotRepresentable is returned by FromOpenCLIP for tensors a
// transformers CLIPModel has no place for (ModifiedResNet towers).
var ErrNotRepresentable = errors.New("hf: not representable as a transformers CLIPModel")

// HasHFNames reports whether any name is in the transformers CLIPModel
// scheme (text_model.*, vision_model.*, visual_projection.weight,
// text_projection.weight).
func HasHFNames[T any](ts map[string]T) bool {
	for k := range ts {
		if strings.HasPrefix(k, "text_model.") || strings.HasPrefix(k, "vision_model.") ||
			k == "visual_projection.weight" || k == "text_projection.weight" {
			return true
		}
	}
	return false
}

// Per-tower names (after "vision_model." / "text_model.") and their
// open_clip names (after "visual." / "").
var (
	visionEmbeddings = map[string]string{
		"embeddings.class_embedding":           "class_embedding",
		"embeddings.patch_embedding.weight":    "conv1.weight",
		"embeddings.position_embedding.weight": "positional_embedding",
		"pre_layrnorm.weight":                  "ln_pre.weight", // sic, as transformers spells it
		"pre_layrnorm.bias":                    "ln_pre.bias",
		"post_layernorm.weight":                "ln_post.weight",
		"post_layernorm.bias":                  "ln_post.bias",
	}
	textEmbeddings = map[string]string{
		"embeddings.token_embedding.weight":    "token_embedding.weight",
		"embeddings.position_embedding.weight": "positional_embedding",
		"final_layer_norm.weight":              "ln_final.weight",
		"final_layer_norm.bias":                "ln_final.bias",
	}
	layerParts = map[string]string{
		"layer_norm1.weight":        "ln_1.weight",
		"layer_norm1.bias":          "ln_1.bias",
		"layer_norm2.weight":        "ln_2.weight",
		"layer_norm2.bias":          "ln_2.bias",
		"self_attn.out_proj.weight": "attn.out_proj.weight",
		"self_attn.out_proj.bias":   "attn.out_proj.bias",
		"mlp.fc1.weight":            "mlp.c_fc.weight",
		"mlp.fc1.bias":              "mlp.c_fc.bias",
		"mlp.fc2.weight":            "mlp.c_proj.weight",
		"mlp.fc2.bias":              "mlp.c_proj.bias",
	}
	qkv = []string{"q_proj", "k_proj", "v_proj"}
)

// hfTowers maps the HF tower prefixes to open_clip prefixes.
var hfTowers = []struct{ hf, oc string }{
	{"vision_model.", "visual."},
	{"text_model.", ""},
}

// ToOpenCLIP renames the tensors of a transformers CLIPModel checkpoint to
// open_clip names (spec §2.3): q/k/v projections are concatenated into
// in_proj_weight/in_proj_bias, visual_projection and text_projection are
// transposed, position_ids buffers are dropped. Names outside the scheme are
// kept unchanged (for the caller's check of unexpected tensors). New tensors
// are allocated only for the concatenations and transposes.
func ToOpenCLIP(ts map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	out := make(map[string]*tensor.Tensor, len(ts))
	add := func(name string, t *tensor.Tensor, from string) error {
		if _, dup := out[name]; dup {
			return fmt.Errorf("hf: %s maps to %s, which another tensor already has", from, name)
		}
		out[name] = t
		return nil
	}
	// q/k/v parts per "<oc prefix>transformer.resblocks.<i>.attn.in_proj_<weight|bias>".
	type parts [3]*tensor.Tensor
	attn := map[string]*parts{}
	keys := make([]string, 0, len(ts))
	for k := range ts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t := ts[k]
		switch k {
		case "visual_projection.weight", "text_projection.weight":
			tt, err := transpose(t)
			if err != nil {
				return nil, err
			}
			name := "visual.proj"
			if k == "text_projection.weight" {
				name = "text_projection"
			}
			tt.Name = name
			if err := add(name, tt, k); err != nil {
				return nil, err
			}
			continue
		}
		mapped, ok := "", false
		for i, tw := range hfTowers {
			rest, found := strings.CutPrefix(k, tw.hf)
			if !found {
				continue
			}
			if rest == "embeddings.position_ids" {
				ok, mapped = true, "" // dropped
				break
			}
			emb := visionEmbeddings
			if i == 1 {
				emb = textEmbeddings
			}
			if n, hit := emb[rest]; hit {
				ok, mapped = true, tw.oc+n
				break
			}
			lr, isLayer := strings.CutPrefix(rest, "encoder.layers.")
			if !isLayer {
				break
			}
			idx, part, _ := strings.Cut(lr, ".")
			if _, err := strconv.Atoi(idx); err != nil || strings.HasPrefix(idx, "+") || strings.HasPrefix(idx, "-") {
				break
			}
			prefix := tw.oc + "transformer.resblocks." + idx + "."
			if n, hit := layerParts[part]; hit {
				ok, mapped = true, prefix+n
				break
			}
			for j, p := range qkv {
				for _, kind := range []string{"weight", "bias"} {
					if part == "self_attn."+p+"."+kind {
						name := prefix + "attn.in_proj_" + kind
						if attn[name] == nil {
							attn[name] = &parts{}
						}
						attn[name][j] = t
						ok, mapped = true, "-"
					}
				}
			}
			break
		}
		switch {
		case !ok:
			if err := add(k, t, k); err != nil {
				return nil, err
			}
		case mapped == "" || mapped == "-": // dropped, or collected for in_proj
		default:
			r := *t
			r.Name = mapped
			if err := add(mapped, &r, k); err != nil {
				return nil, err
			}
		}
	}
	names := make([]string, 0, len(attn))
	for n := range attn {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := attn[n]
		for j, t := range p {
			if t == nil {
				return nil, fmt.Errorf("hf: %s: the %s part is missing", n, qkv[j])
			}
		}
		c, err := concatRows(n, p[:])
		if err != nil {
			return nil, err
		}
		if err := add(n, c, n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// FromOpenCLIP renames open_clip tensors to transformers CLIPModel names,
// the reverse of ToOpenCLIP: in_proj tensors are split into q/k/v, the
// projections transposed. A ModifiedResNet tower, or any other name outside
// the scheme, gives ErrNotRepresentable. Whether per-layer shapes suit a
// CLIPModel (regular layers) is for the caller to check.
func FromOpenCLIP(ts map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	rev := func(m map[string]string) map[string]string {
		r := make(map[string]string, len(m))
		for k, v := range m {
			r[v] = k
		}
		return r
	}
	visRev, textRev, layerRev := rev(visionEmbeddings), rev(textEmbeddings), rev(layerParts)
	out := make(map[string]*tensor.Tensor, len(ts)+16)
	for k, t := range ts {
		var names []string // one, or three for an in_proj split
		switch {
		case k == "logit_scale":
			names = []string{k}
		case k == "visual.proj" || k == "text_projection":
			tt, err := transpose(t)
			if err != nil {
				return nil, err
			}
			tt.Name = "visual_projection.weight"
			if k == "text_projection" {
				tt.Name = "text_projection.weight"
			}
			out[tt.Name] = tt
			continue
		default:
			tw := hfTowers[1]
			rest := k
			if r, ok := strings.CutPrefix(k, "visual."); ok {
				tw, rest = hfTowers[0], r
			}
			emb := textRev
			if tw.oc == "visual." {
				emb = visRev
			}
			if n, ok := emb[rest]; ok {
				names = []string{tw.hf + n}
				break
			}
			lr, ok := strings.CutPrefix(rest, "transformer.resblocks.")
			if !ok {
				break
			}
			idx, part, _ := strings.Cut(lr, ".")
			if _, err := strconv.Atoi(idx); err != nil {
				break
			}
			prefix := tw.hf + "encoder.layers." + idx + "."
			if n, ok := layerRev[part]; ok {
				names = []string{prefix + n}
				break
			}
			if kind, ok := strings.CutPrefix(part, "attn.in_proj_"); ok && (kind == "weight" || kind == "bias") {
				for _, p := range qkv {
					names = append(names, prefix+"self_attn."+p+"."+kind)
				}
			}
		}
		switch len(names) {
		case 0:
			return nil, fmt.Errorf("%w: tensor %s has no CLIPModel counterpart", ErrNotRepresentable, k)
		case 1:
			r := *t
			r.Name = names[0]
			out[names[0]] = &r
		case 3:
			split, err := splitRows(k, t, names)
			if err != nil {
				return nil, err
			}
			for _, s := range split {
				out[s.Name] = s
			}
		}
	}
	return out, nil
}

// transpose returns a copy of a 2-D tensor with its axes swapped.
func transpose(t *tensor.Tensor) (*tensor.Tensor, error) {
	es := t.DType.Size()
	if len(t.Shape) != 2 || es == 0 || len(t.Data) != t.Shape[0]*t.Shape[1]*es {
		return nil, fmt.Errorf("hf: %s: shape %v of %s, want a 2-D matrix to transpose", t.Name, t.Shape, t.DType)
	}
	r, c := t.Shape[0], t.Shape[1]
	out := make([]byte, len(t.Data))
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			copy(out[(j*r+i)*es:(j*r+i+1)*es], t.Data[(i*c+j)*es:(i*c+j+1)*es])
		}
	}
	return &tensor.Tensor{Name: t.Name, DType: t.DType, Shape: []int{c, r}, Data: out}, nil
}

// concatRows stacks tensors along their first axis; they must agree in dtype
// and in every other dimension.
func concatRows(name string, ts []*tensor.Tensor) (*tensor.Tensor, error) {
	first := ts[0]
	if len(first.Shape) == 0 {
		return nil, fmt.Errorf("hf: %s: q/k/v parts are scalars", name)
	}
	shape := slices.Clone(first.Shape)
	shape[0] = 0
	var data []byte
	for j, t := range ts {
		if t.DType != first.DType || len(t.Shape) != len(first.Shape) || !slices.Equal(t.Shape[1:], first.Shape[1:]) {
			return nil, fmt.Errorf("hf: %s: %s part is %s %v, %s part %s %v", name, qkv[0], first.DType, first.Shape, qkv[j], t.DType, t.Shape)
		}
		if len(t.Data) != t.NumElements()*t.DType.Size() {
			return nil, fmt.Errorf("hf: %s: %s part holds %d bytes for shape %v", name, qkv[j], len(t.Data), t.Shape)
		}
		shape[0] += t.Shape[0]
		data = append(data, t.Data...)
	}
	if data == nil {
		data = []byte{}
	}
	return &tensor.Tensor{Name: name, DType: first.DType, Shape: shape, Data: data}, nil
}

// splitRows cuts a tensor into three equal parts along its first axis.
func splitRows(name string, t *tensor.Tensor, names []string) ([]*tensor.Tensor, error) {
	if len(t.Shape) == 0 || t.Shape[0]%3 != 0 || len(t.Data) != t.NumElements()*t.DType.Size() {
		return nil, fmt.Errorf("hf: %s: shape %v does not split into q, k and v", name, t.Shape)
	}
	shape := slices.Clone(t.Shape)
	shape[0] /= 3
	n := len(t.Data) / 3
	out := make([]*tensor.Tensor, 3)
	for j := range out {
		out[j] = &tensor.Tensor{Name: names[j], DType: t.DType, Shape: slices.Clone(shape), Data: t.Data[j*n : (j+1)*n : (j+1)*n]}
	}
	return out, nil
}
