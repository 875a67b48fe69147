package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// HeadWidthError reports attention tensors whose size the head width does
// not divide: the head width cannot be read from shapes (spec §1.3), so a
// model whose heads are not 64 wide needs its config.
type HeadWidthError struct {
	Name       string // the tensor, e.g. "transformer.resblocks.0.attn.in_proj_weight"
	Rows       int    // its attention size (in_proj rows = 3·heads·head width)
	HeadWidth  int
	FromConfig bool // whether the head width came from a config (else the default 64)
}

// Error returns the message, naming the tensor.
func (e *HeadWidthError) Error() string {
	if e.FromConfig {
		return fmt.Sprintf("config: %s: head width %d from the config does not divide in_proj rows %d (3·heads·head width)",
			e.Name, e.HeadWidth, e.Rows)
	}
	return fmt.Sprintf("config: %s: head width %d does not divide in_proj rows %d (3·heads·head width); pass the model's config",
		e.Name, e.HeadWidth, e.Rows)
}

// Resolve returns the architecture of a checkpoint from its tensor shapes
// (open_clip names, after key normalisation) and its config, nil when the
// checkpoint has none. The shapes determine every dimension (spec §1.3): the
// image tower kind, widths, patch size and grid, depth, each layer's heads and
// MLP width (zero-head layers have no ln_1/attn tensors, zero-width MLPs have
// zero-size tensors, absent mlp tensors mean no MLP), text context, vocabulary
// and width, ResNet stage depths and width, and the embed dim. What shapes
// cannot tell comes from the config: the head width (64 without a config, as
// in every official model), the activation, and a ViT image size that is not
// a multiple of the patch size. A checkpoint without config is taken to be a
// TinyCLIP model: exact GELU in both towers.
//
// Every dimension the config states must agree with the shapes; a
// disagreement is an error naming the tensor and both values. The shapes must
// also be exactly the set the architecture needs (see Check); all problems
// are reported together.
func Resolve(cfg *Config, shapes map[string][]int) (*Arch, error) {
	var want *Arch
	hd := headDims{vision: defaultHeadWidth, text: defaultHeadWidth, pool: defaultHeadWidth}
	if cfg != nil {
		var err error
		if want, err = FromConfig(cfg); err != nil {
			return nil, err
		}
		hd.fromConfig = true
		hd.text = want.Text.Transformer.HeadDim
		// The config's head width of the other image tower kind stays 64:
		// the kind mismatch is reported below.
		if want.Vision.Kind == KindViT {
			hd.vision = want.Vision.Transformer.HeadDim
		} else {
			hd.pool = want.Vision.PoolHeadDim
		}
	}
	got, err := inferArch(shapes, hd)
	if err != nil {
		return nil, err
	}
	var errs []error
	if want != nil {
		errs = compareArch(got, want)
		// What shapes cannot tell.
		got.Vision.Transformer.Act = want.Vision.Transformer.Act
		got.Text.Transformer.Act = want.Text.Transformer.Act
		if got.Vision.Kind == want.Vision.Kind && got.Vision.Grid() == want.Vision.Grid() {
			got.Vision.ImageSize = want.Vision.ImageSize
		}
	}
	if err := got.Validate(); err != nil {
		errs = append(errs, err)
	} else if err := Check(got, shapes); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return got, nil
}

type headDims struct {
	vision, text, pool int
	fromConfig         bool
}

// shapeReader reads dimensions of named tensors, turning absent tensors and
// wrong ranks into errors instead of index panics.
type shapeReader map[string][]int

func (s shapeReader) dim(name string, rank, i int) (int, error) {
	sh, ok := s[name]
	if !ok {
		return 0, fmt.Errorf("config: %s: missing tensor", name)
	}
	if len(sh) != rank {
		return 0, fmt.Errorf("config: %s: shape %v, want %d dimensions", name, sh, rank)
	}
	if sh[i] < 0 {
		return 0, fmt.Errorf("config: %s: negative dimension in shape %v", name, sh)
	}
	return sh[i], nil
}

// first returns dimension i of the first of the named tensors present with
// the given rank.
func (s shapeReader) first(i int, names ...string) (int, string, bool) {
	for _, n := range names {
		if sh, ok := s[n]; ok && len(sh) > i && sh[i] >= 0 {
			return sh[i], n, true
		}
	}
	return 0, "", false
}

func (s shapeReader) hasPrefix(prefix string) bool {
	for k := range s {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// layers groups the keys "<prefix><i>.<rest>" by layer index: the result
// has one entry per layer, 1 + the largest index, holding the rest of each
// key. Every smaller index must occur (a layer always has some tensor).
func (s shapeReader) layers(prefix string) ([][]string, error) {
	byIndex := map[int][]string{}
	n := 0
	for k := range s {
		after, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		idx, rest, ok := strings.Cut(after, ".")
		if !ok {
			continue
		}
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 || strconv.Itoa(i) != idx {
			continue // not a layer key; Check reports it as unexpected
		}
		if i >= maxLayers {
			return nil, fmt.Errorf("config: %s%d: layer index beyond the limit of %d layers", prefix, i, maxLayers)
		}
		byIndex[i] = append(byIndex[i], rest)
		n = max(n, i+1)
	}
	out := make([][]string, n)
	for i := range out {
		if out[i] = byIndex[i]; out[i] == nil {
			return nil, fmt.Errorf("config: %s%d: no tensors for this layer, but %d layers exist", prefix, i, n)
		}
	}
	return out, nil
}

func anyPrefix(names []string, prefixes ...string) bool {
	for _, n := range names {
		for _, p := range prefixes {
			if strings.HasPrefix(n, p) {
				return true
			}
		}
	}
	return false
}

func inferArch(shapes map[string][]int, hd headDims) (*Arch, error) {
	s := shapeReader(shapes)
	a := &Arch{}
	var err error
	switch {
	case s.hasPrefix("visual.layer1.") || s.hasPrefix("visual.attnpool."):
		err = inferResNet(s, &a.Vision, hd)
	case len(s["visual.conv1.weight"]) == 4 && s["visual.proj"] != nil:
		err = inferViT(s, &a.Vision, hd)
	default:
		err = errors.New("config: no image tower: want visual.conv1.weight and visual.proj (ViT) or visual.layer1.* (ModifiedResNet)")
	}
	if err != nil {
		return nil, err
	}
	if err := inferText(s, &a.Text, hd); err != nil {
		return nil, err
	}
	a.EmbedDim = a.Vision.Embed
	if a.Text.Embed != a.Vision.Embed {
		name := "visual.proj"
		if a.Vision.Kind == KindResNet {
			name = "visual.attnpool.c_proj.weight"
		}
		return nil, fmt.Errorf("config: %s: embed dim %d, but text_projection gives %d", name, a.Vision.Embed, a.Text.Embed)
	}
	return a, nil
}

// grid returns G with G²+1 = rows.
func grid(name string, rows int) (int, error) {
	g := int(math.Round(math.Sqrt(float64(rows - 1))))
	if rows < 2 || g*g+1 != rows {
		return 0, fmt.Errorf("config: %s: %d positions is not a square grid plus one class token", name, rows)
	}
	return g, nil
}

func inferViT(s shapeReader, v *VisionArch, hd headDims) error {
	v.Kind = KindViT
	w, err := s.dim("visual.conv1.weight", 4, 0)
	if err != nil {
		return err
	}
	if v.PatchSize, err = s.dim("visual.conv1.weight", 4, 3); err != nil {
		return err
	}
	rows, err := s.dim("visual.positional_embedding", 2, 0)
	if err != nil {
		return err
	}
	g, err := grid("visual.positional_embedding", rows)
	if err != nil {
		return err
	}
	v.ImageSize = v.PatchSize * g
	if v.Embed, err = s.dim("visual.proj", 2, 1); err != nil {
		return err
	}
	v.Transformer, err = inferTransformer(s, "visual.transformer.resblocks.", w, hd.vision, hd.fromConfig)
	return err
}

func inferResNet(s shapeReader, v *VisionArch, hd headDims) error {
	v.Kind = KindResNet
	var err error
	if v.Width, err = s.dim("visual.layer1.0.conv1.weight", 4, 0); err != nil {
		return err
	}
	for k := range v.Layers {
		blocks, err := s.layers(fmt.Sprintf("visual.layer%d.", k+1))
		if err != nil {
			return err
		}
		v.Layers[k] = len(blocks)
		if v.Layers[k] == 0 {
			return fmt.Errorf("config: visual.layer%d: no blocks (a ModifiedResNet has four stages)", k+1)
		}
	}
	rows, err := s.dim("visual.attnpool.positional_embedding", 2, 0)
	if err != nil {
		return err
	}
	g, err := grid("visual.attnpool.positional_embedding", rows)
	if err != nil {
		return err
	}
	v.ImageSize = 32 * g
	if v.Embed, err = s.dim("visual.attnpool.c_proj.weight", 2, 0); err != nil {
		return err
	}
	c := 32 * v.Width
	if c%hd.pool != 0 {
		return &HeadWidthError{Name: "visual.attnpool.q_proj.weight", Rows: c, HeadWidth: hd.pool, FromConfig: hd.fromConfig}
	}
	v.PoolHeadDim = hd.pool
	v.PoolHeads = c / hd.pool
	return nil
}

func inferText(s shapeReader, t *TextArch, hd headDims) error {
	var err error
	if t.ContextLength, err = s.dim("positional_embedding", 2, 0); err != nil {
		return err
	}
	w, err := s.dim("positional_embedding", 2, 1)
	if err != nil {
		return err
	}
	if t.VocabSize, err = s.dim("token_embedding.weight", 2, 0); err != nil {
		return err
	}
	if t.Embed, err = s.dim("text_projection", 2, 1); err != nil {
		return err
	}
	t.Transformer, err = inferTransformer(s, "transformer.resblocks.", w, hd.text, hd.fromConfig)
	return err
}

func inferTransformer(s shapeReader, prefix string, width, headDim int, fromConfig bool) (Transformer, error) {
	t := Transformer{Width: width, HeadDim: headDim, Act: GELU}
	keys, err := s.layers(prefix)
	if err != nil {
		return t, err
	}
	if len(keys) == 0 {
		return t, fmt.Errorf("config: %s*: no transformer blocks", prefix)
	}
	t.Blocks = make([]Block, len(keys))
	for i := range t.Blocks {
		p := prefix + strconv.Itoa(i) + "."
		b := &t.Blocks[i]
		if anyPrefix(keys[i], "attn.", "ln_1.") {
			// Attention size from in_proj (3·heads·head width), or from
			// out_proj (heads·head width) when in_proj is missing.
			rows, name, ok := s.first(0, p+"attn.in_proj_weight", p+"attn.in_proj_bias")
			if !ok {
				if cols, n, ok2 := s.first(1, p+"attn.out_proj.weight"); ok2 {
					rows, name, ok = 3*cols, n, true
				}
			}
			if ok {
				if rows == 0 || rows%(3*headDim) != 0 {
					return t, &HeadWidthError{Name: name, Rows: rows, HeadWidth: headDim, FromConfig: fromConfig}
				}
				b.Heads = rows / (3 * headDim)
			}
		}
		if anyPrefix(keys[i], "mlp.") {
			b.HasMLP = true
			if m, _, ok := s.first(0, p+"mlp.c_fc.weight", p+"mlp.c_fc.bias"); ok {
				b.MLP = m
			} else if m, _, ok := s.first(1, p+"mlp.c_proj.weight"); ok {
				b.MLP = m
			}
		}
	}
	return t, nil
}

// compareArch lists every dimension on which the shapes (got) and the config
// (want) disagree, naming the tensor that shows it.
func compareArch(got, want *Arch) []error {
	var errs []error
	diff := func(name, what string, g, w any) {
		errs = append(errs, fmt.Errorf("config: %s: %s %v in the checkpoint, %v in the config", name, what, g, w))
	}
	gv, wv := &got.Vision, &want.Vision
	if gv.Kind != wv.Kind {
		kind := map[string]string{KindViT: "a ViT", KindResNet: "a ModifiedResNet"}
		errs = append(errs, fmt.Errorf("config: visual.*: the checkpoint has %s image tower, the config describes %s",
			kind[gv.Kind], kind[wv.Kind]))
	} else if gv.Kind == KindViT {
		if gv.PatchSize != wv.PatchSize {
			diff("visual.conv1.weight", "patch size", gv.PatchSize, wv.PatchSize)
		}
		if gv.Grid() != wv.Grid() {
			diff("visual.positional_embedding", "token grid", fmt.Sprintf("%d×%d", gv.Grid(), gv.Grid()),
				fmt.Sprintf("%d×%d (image_size %d)", wv.Grid(), wv.Grid(), wv.ImageSize))
		}
		if gv.Embed != wv.Embed {
			diff("visual.proj", "embed dim", gv.Embed, wv.Embed)
		}
		errs = append(errs, compareTransformer(&gv.Transformer, &wv.Transformer, "visual.conv1.weight", "visual.transformer.resblocks.")...)
	} else {
		if gv.Width != wv.Width {
			diff("visual.layer1.0.conv1.weight", "width", gv.Width, wv.Width)
		}
		for k := range gv.Layers {
			if gv.Layers[k] != wv.Layers[k] {
				diff(fmt.Sprintf("visual.layer%d.*", k+1), "blocks", gv.Layers[k], wv.Layers[k])
			}
		}
		if gv.ImageSize != wv.ImageSize {
			diff("visual.attnpool.positional_embedding", "image size", gv.ImageSize, wv.ImageSize)
		}
		if gv.Embed != wv.Embed {
			diff("visual.attnpool.c_proj.weight", "embed dim", gv.Embed, wv.Embed)
		}
	}
	gt, wt := &got.Text, &want.Text
	if gt.ContextLength != wt.ContextLength {
		diff("positional_embedding", "context length", gt.ContextLength, wt.ContextLength)
	}
	if gt.VocabSize != wt.VocabSize {
		diff("token_embedding.weight", "vocabulary size", gt.VocabSize, wt.VocabSize)
	}
	if gt.Embed != wt.Embed {
		diff("text_projection", "embed dim", gt.Embed, wt.Embed)
	}
	errs = append(errs, compareTransformer(&gt.Transformer, &wt.Transformer, "positional_embedding", "transformer.resblocks.")...)
	return errs
}

func compareTransformer(got, want *Transformer, widthTensor, prefix string) []error {
	var errs []error
	if got.Width != want.Width {
		errs = append(errs, fmt.Errorf("config: %s: width %d in the checkpoint, %d in the config", widthTensor, got.Width, want.Width))
	}
	if len(got.Blocks) != len(want.Blocks) {
		return append(errs, fmt.Errorf("config: %s*: %d layers in the checkpoint, %d in the config",
			prefix, len(got.Blocks), len(want.Blocks)))
	}
	for i, g := range got.Blocks {
		w := want.Blocks[i]
		p := prefix + strconv.Itoa(i) + "."
		if g.Heads != w.Heads {
			errs = append(errs, fmt.Errorf("config: %sattn.in_proj_weight: %d heads in the checkpoint, %d in the config",
				p, g.Heads, w.Heads))
		}
		switch {
		case g.HasMLP != w.HasMLP:
			errs = append(errs, fmt.Errorf("config: %smlp.*: MLP tensors %s in the checkpoint, the config says %s",
				p, presence(g.HasMLP), mlpDesc(w)))
		case g.MLP != w.MLP:
			errs = append(errs, fmt.Errorf("config: %smlp.c_fc.weight: MLP width %d in the checkpoint, %d in the config",
				p, g.MLP, w.MLP))
		}
	}
	return errs
}

func presence(b bool) string {
	if b {
		return "present"
	}
	return "absent"
}

func mlpDesc(b Block) string {
	if b.HasMLP {
		return "MLP width " + strconv.Itoa(b.MLP)
	}
	return "no MLP"
}
