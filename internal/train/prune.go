package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint"
	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// Prune compacts a masked student of architecture arch (regular, as
// NewAutoStudent requires) with the gate values m (usually EvalMasks) into
// an irregular student, exactly as the official prune() methods do
// (model.py; spec §1.3, §6.2): kept hidden dimensions, heads and MLP units
// are those with a non-zero gate, in their original order;
// conv1.weight, class_embedding, both positional embeddings,
// token_embedding, the rows of proj and text_projection, out_proj.bias and
// c_proj.bias are multiplied by the hidden gates; out_proj.weight by the
// hidden gates (rows) and then the head gates (column blocks); c_proj.weight
// by the unit gates (columns) and then the hidden gates (rows) — each
// product a float32 rounding, in that order; LayerNorms, in_proj and c_fc
// are only sliced. A layer whose heads are all removed loses ln_1 and attn
// (and so its out_proj.bias, which the masked model still adds); a layer
// whose units are all removed keeps zero-size c_fc/c_proj weights and its
// c_proj.bias. The result is therefore not the masked model's function
// (the projection rows are scaled although the masked forward does not
// gate ln_post/ln_final): it is what the official fuse and the released
// checkpoints hold. logit_scale is copied. The returned architecture has
// the pruned widths and per-layer heads and MLP widths (the head width is
// kept); weights match it exactly.
func Prune(arch *config.Arch, weights map[string]*tensor.Tensor, m *Masks) (*config.Arch, map[string]*tensor.Tensor, error) {
	if arch == nil || m == nil {
		return nil, nil, fmt.Errorf("train: prune: nil architecture or masks")
	}
	towers, err := l0Towers(arch)
	if err != nil {
		return nil, nil, fmt.Errorf("train: prune: %w", err)
	}
	shp := make(map[string][]int, len(weights))
	for name, t := range weights {
		if t == nil {
			return nil, nil, fmt.Errorf("train: prune: %s: nil tensor", name)
		}
		shp[name] = t.Shape
	}
	if err := config.Check(arch, shp); err != nil {
		return nil, nil, fmt.Errorf("train: prune: weights: %w", err)
	}
	gms := [2]*GateMasks{&m.Image, &m.Text}
	for i, tw := range towers {
		if err := checkMasks(tw, gms[i]); err != nil {
			return nil, nil, fmt.Errorf("train: prune: %w", err)
		}
	}
	p := &pruner{weights: weights, out: make(map[string]*tensor.Tensor)}
	pa := cloneArch(arch)
	trs := [2]*config.Transformer{&pa.Vision.Transformer, &pa.Text.Transformer}
	prefixes := [2]string{"visual.transformer.resblocks.", "transformer.resblocks."}
	for i, gm := range gms {
		hz := gm.Hidden
		keep := nonZero(hz)
		if len(keep) == 0 {
			return nil, nil, fmt.Errorf("train: prune: every hidden dimension of the %s tower is removed", towers[i].name)
		}
		tr := trs[i]
		d := tr.HeadDim
		for l := range tr.Blocks {
			pre := prefixes[i] + strconv.Itoa(l) + "."
			heads := nonZero(gm.Heads[l])
			units := nonZero(gm.MLP[l])
			if len(heads) > 0 {
				p.slice(pre+"ln_1.weight", keep)
				p.slice(pre+"ln_1.bias", keep)
				w, h := tr.Width, towers[i].heads
				rows := headRows(heads, h, d)
				p.gather(pre+"attn.in_proj_weight", 3*h*d, w, rows, keep, nil)
				p.gather(pre+"attn.in_proj_bias", 3*h*d, 1, rows, []int{0}, nil)
				cols := make([]int, 0, len(heads)*d)
				for _, hh := range heads {
					for j := range d {
						cols = append(cols, hh*d+j)
					}
				}
				hg := gm.Heads[l]
				p.gather(pre+"attn.out_proj.weight", w, h*d, keep, cols, func(r, c int, v float32) float32 {
					return float32(float32(v*hz[r]) * hg[c/d])
				})
				p.gather(pre+"attn.out_proj.bias", w, 1, keep, []int{0}, rowScale(hz))
			}
			p.slice(pre+"ln_2.weight", keep)
			p.slice(pre+"ln_2.bias", keep)
			iz := gm.MLP[l]
			w, mw := tr.Width, 4*tr.Width
			p.gather(pre+"mlp.c_fc.weight", mw, w, units, keep, nil)
			p.gather(pre+"mlp.c_fc.bias", mw, 1, units, []int{0}, nil)
			p.gather(pre+"mlp.c_proj.weight", w, mw, keep, units, func(r, c int, v float32) float32 {
				return float32(float32(v*iz[c]) * hz[r])
			})
			p.gather(pre+"mlp.c_proj.bias", w, 1, keep, []int{0}, rowScale(hz))
			tr.Blocks[l] = config.Block{Heads: len(heads), MLP: len(units), HasMLP: true}
		}
		w := tr.Width
		all := func(n int) []int {
			idx := make([]int, n)
			for k := range idx {
				idx[k] = k
			}
			return idx
		}
		if i == 0 {
			v := &arch.Vision
			pp := 3 * v.PatchSize * v.PatchSize
			p.gather("visual.conv1.weight", w, pp, keep, all(pp), rowScale(hz))
			p.gather("visual.class_embedding", w, 1, keep, []int{0}, rowScale(hz))
			p.gather("visual.positional_embedding", v.Tokens(), w, all(v.Tokens()), keep, colScale(hz))
			for _, n := range []string{"visual.ln_pre.weight", "visual.ln_pre.bias", "visual.ln_post.weight", "visual.ln_post.bias"} {
				p.slice(n, keep)
			}
			p.gather("visual.proj", w, arch.EmbedDim, keep, all(arch.EmbedDim), rowScale(hz))
		} else {
			t := &arch.Text
			p.gather("token_embedding.weight", t.VocabSize, w, all(t.VocabSize), keep, colScale(hz))
			p.gather("positional_embedding", t.ContextLength, w, all(t.ContextLength), keep, colScale(hz))
			p.slice("ln_final.weight", keep)
			p.slice("ln_final.bias", keep)
			p.gather("text_projection", w, arch.EmbedDim, keep, all(arch.EmbedDim), rowScale(hz))
		}
		tr.Width = len(keep)
	}
	ls := weights["logit_scale"]
	v, err := ls.Float32()
	if err != nil {
		return nil, nil, fmt.Errorf("train: prune: logit_scale: %w", err)
	}
	p.out["logit_scale"] = tensor.FromFloat32("logit_scale", slices.Clone(ls.Shape), v)
	if p.err != nil {
		return nil, nil, fmt.Errorf("train: prune: %w", p.err)
	}
	if err := pa.Validate(); err != nil {
		return nil, nil, fmt.Errorf("train: prune: %w", err)
	}
	out := make(map[string][]int, len(p.out))
	for n, t := range p.out {
		out[n] = t.Shape
	}
	if err := config.Check(&pa, out); err != nil {
		return nil, nil, fmt.Errorf("train: prune: result: %w", err)
	}
	return &pa, p.out, nil
}

// checkMasks reports gate values of the wrong shape.
func checkMasks(tw l0Tower, gm *GateMasks) error {
	if len(gm.Hidden) != tw.width || len(gm.Heads) != tw.layers || len(gm.MLP) != tw.layers {
		return fmt.Errorf("%s masks: %d hidden gates and %d/%d layers, want %d and %d",
			tw.name, len(gm.Hidden), len(gm.Heads), len(gm.MLP), tw.width, tw.layers)
	}
	for l := range tw.layers {
		if len(gm.Heads[l]) != tw.heads || len(gm.MLP[l]) != tw.inter() {
			return fmt.Errorf("%s masks, layer %d: %d head and %d MLP gates, want %d and %d",
				tw.name, l, len(gm.Heads[l]), len(gm.MLP[l]), tw.heads, tw.inter())
		}
	}
	return nil
}

// nonZero returns the indices of the non-zero values, in order.
func nonZero(z []float32) []int {
	var idx []int
	for i, v := range z {
		if v != 0 {
			idx = append(idx, i)
		}
	}
	return idx
}

// headRows returns the rows of an in_proj tensor viewed as [3, h, d, …]
// that belong to the given heads, for q, k and v in turn.
func headRows(heads []int, h, d int) []int {
	rows := make([]int, 0, 3*len(heads)*d)
	for q := range 3 {
		for _, hh := range heads {
			for j := range d {
				rows = append(rows, (q*h+hh)*d+j)
			}
		}
	}
	return rows
}

// rowScale multiplies element (r, c) by s[r]; colScale by s[c].
func rowScale(s []float32) func(r, c int, v float32) float32 {
	return func(r, _ int, v float32) float32 { return float32(v * s[r]) }
}

func colScale(s []float32) func(r, c int, v float32) float32 {
	return func(_, c int, v float32) float32 { return float32(v * s[c]) }
}

// pruner builds the pruned tensors, remembering the first error.
type pruner struct {
	weights map[string]*tensor.Tensor
	out     map[string]*tensor.Tensor
	err     error
}

// gather stores under name the rows × cols selection of the tensor name
// viewed as [nr, nc] (a vector as [n, 1]; conv1.weight as [W, 3·P·P]),
// each value passed through f (nil: copied). The result keeps the tensor's
// rank: its first dimension becomes len(rows), and for a matrix the second
// len(cols).
func (p *pruner) gather(name string, nr, nc int, rows, cols []int, f func(r, c int, v float32) float32) {
	if p.err != nil {
		return
	}
	t := p.weights[name]
	vals, err := t.Float32()
	if err != nil {
		p.err = fmt.Errorf("%s: %w", name, err)
		return
	}
	if len(vals) != nr*nc {
		p.err = fmt.Errorf("%s: %d values, want %d×%d", name, len(vals), nr, nc)
		return
	}
	dst := make([]float32, 0, len(rows)*len(cols))
	for _, r := range rows {
		for _, c := range cols {
			v := vals[r*nc+c]
			if f != nil {
				v = f(r, c, v)
			}
			dst = append(dst, v)
		}
	}
	shape := slices.Clone(t.Shape)
	shape[0] = len(rows)
	if len(shape) == 2 {
		shape[1] = len(cols)
	}
	p.out[name] = tensor.FromFloat32(name, shape, dst)
}

// slice stores the kept elements of a vector.
func (p *pruner) slice(name string, keep []int) {
	t := p.weights[name]
	p.gather(name, t.NumElements(), 1, keep, []int{0}, nil)
}

// ReloadPruned embeds a pruned student into a full-size masked student of
// architecture full, as the official load_pruned_model does when a stage of
// the staged recipe resumes the previous stage's checkpoint
// (--load-last-stage; spec §6.2, fixtures/auto README §2.7): every tower
// tensor of full is zero-filled and the pruned tensor copied into its
// leading corner (attn.in_proj_* per head, viewed as [3, heads, d, …]),
// block tensors absent from pruned (the attention of a zero-head layer) stay
// zero, logit_scale is copied; the log-alphas are 10 for the leading kept
// units and −10 for the rest (hidden dimensions beyond the stored width,
// heads beyond the stored count — all of them for a layer without attention
// — and MLP units beyond the stored width), the multipliers 10. As in the
// official code, the head width d of both towers is the text tower's. Every
// tensor full needs outside the blocks must be in pruned, and pruned must
// hold nothing else.
func ReloadPruned(full *config.Arch, pruned map[string]*tensor.Tensor) (weights, l0 map[string]*tensor.Tensor, err error) {
	if full == nil {
		return nil, nil, fmt.Errorf("train: reload pruned: nil architecture")
	}
	towers, err := l0Towers(full)
	if err != nil {
		return nil, nil, fmt.Errorf("train: reload pruned: %w", err)
	}
	d := full.Text.Transformer.HeadDim
	want := full.TensorShapes()
	weights = make(map[string]*tensor.Tensor, len(want))
	for name, shape := range want {
		src, ok := pruned[name]
		if !ok {
			if !strings.Contains(name, ".resblocks.") {
				return nil, nil, fmt.Errorf("train: reload pruned: %s missing", name)
			}
			weights[name] = tensor.FromFloat32(name, shape, make([]float32, numel(shape)))
			continue
		}
		if src == nil {
			return nil, nil, fmt.Errorf("train: reload pruned: %s: nil tensor", name)
		}
		vals, err := src.Float32()
		if err != nil {
			return nil, nil, fmt.Errorf("train: reload pruned: %s: %w", name, err)
		}
		if name == "logit_scale" {
			if len(vals) != 1 {
				return nil, nil, fmt.Errorf("train: reload pruned: logit_scale has %d values", len(vals))
			}
			weights[name] = tensor.FromFloat32(name, []int{}, vals)
			continue
		}
		sshape, dshape := src.Shape, shape
		if strings.HasSuffix(name, "attn.in_proj_weight") || strings.HasSuffix(name, "attn.in_proj_bias") {
			if sshape, err = headView(name, src.Shape, d); err != nil {
				return nil, nil, fmt.Errorf("train: reload pruned: %w", err)
			}
			if dshape, err = headView(name, shape, d); err != nil {
				return nil, nil, fmt.Errorf("train: reload pruned: %w", err)
			}
		}
		if len(sshape) != len(dshape) {
			return nil, nil, fmt.Errorf("train: reload pruned: %s: shape %v does not fit %v", name, src.Shape, shape)
		}
		for i := range sshape {
			if sshape[i] > dshape[i] {
				return nil, nil, fmt.Errorf("train: reload pruned: %s: shape %v does not fit %v", name, src.Shape, shape)
			}
		}
		weights[name] = tensor.FromFloat32(name, shape, leadingCorner(vals, sshape, dshape))
	}
	for name := range pruned {
		if _, ok := want[name]; !ok {
			return nil, nil, fmt.Errorf("train: reload pruned: unexpected tensor %s", name)
		}
	}
	if l0, err = InitialL0(full); err != nil {
		return nil, nil, err
	}
	fill := func(name string, from, to int) {
		v, _ := l0[name].Float32()
		for i := from; i < to; i++ {
			v[i] = -L0InitLambda
		}
		l0[name] = tensor.FromFloat32(name, l0[name].Shape, v)
	}
	prefixes := [2]string{"visual.transformer.resblocks.", "transformer.resblocks."}
	hiddenSrc := [2]string{"visual.ln_pre.weight", "positional_embedding"}
	for i, tw := range towers {
		s := pruned[hiddenSrc[i]].Shape
		fill(tw.param("hidden_loga"), s[len(s)-1], tw.width)
		for l := range tw.layers {
			pre := prefixes[i] + strconv.Itoa(l) + "."
			heads := 0
			if t, ok := pruned[pre+"attn.in_proj_weight"]; ok {
				heads = t.Shape[0] / d / 3
			}
			fill(tw.param("heads_loga"), l*tw.heads+heads, (l+1)*tw.heads)
			units := 0
			if t, ok := pruned[pre+"mlp.c_fc.weight"]; ok {
				units = t.Shape[0]
			}
			fill(tw.param("intermediate_loga"), l*tw.inter()+units, (l+1)*tw.inter())
		}
	}
	return weights, l0, nil
}

// numel is the number of elements of a shape.
func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// leadingCorner returns a zero array of shape to with src (shape from,
// from[i] ≤ to[i]) copied into its leading corner.
func leadingCorner(src []float32, from, to []int) []float32 {
	dst := make([]float32, numel(to))
	if len(src) == 0 {
		return dst
	}
	if len(to) == 0 {
		dst[0] = src[0]
		return dst
	}
	strides := make([]int, len(to))
	s := 1
	for i := len(to) - 1; i >= 0; i-- {
		strides[i] = s
		s *= to[i]
	}
	last := len(from) - 1
	n := from[last]
	idx := make([]int, last)
	for k := 0; k < len(src); k += n {
		off := 0
		for i, v := range idx {
			off += v * strides[i]
		}
		copy(dst[off:off+n], src[k:k+n])
		for i := last - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < from[i] {
				break
			}
			idx[i] = 0
		}
	}
	return dst
}

// MaskedModelFile is the weight file WriteMaskedModel writes.
const MaskedModelFile = "masked_model.safetensors"

// WriteMaskedModel writes a masked student (auto inheritance before the
// fuse) to dir: dir/masked_model.safetensors holds the tower tensors under
// open_clip names and the L0 parameters under their official names
// (ImageL0Prefix, TextL0Prefix), with the config in its metadata; and
// dir/config.json (the official form). ReadMaskedModel and `tinyclip
// prune` read it. Each file is written atomically.
func WriteMaskedModel(dir string, arch *config.Arch, weights, l0 map[string]*tensor.Tensor) error {
	if arch == nil {
		return fmt.Errorf("train: write masked model %s: nil architecture", dir)
	}
	towers, err := l0Towers(arch)
	if err != nil {
		return fmt.Errorf("train: write masked model %s: %w", dir, err)
	}
	shp := make(map[string][]int, len(weights))
	for name, t := range weights {
		if t == nil {
			return fmt.Errorf("train: write masked model %s: %s: nil tensor", dir, name)
		}
		shp[name] = t.Shape
	}
	if err := config.Check(arch, shp); err != nil {
		return fmt.Errorf("train: write masked model %s: %w", dir, err)
	}
	if _, err := l0Values(towers, l0, false); err != nil {
		return fmt.Errorf("train: write masked model %s: %w", dir, err)
	}
	cfg, err := json.MarshalIndent(arch.Config(), "", "  ")
	if err != nil {
		return fmt.Errorf("train: write masked model %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("train: write masked model: %w", err)
	}
	var list []*tensor.Tensor
	for _, m := range []map[string]*tensor.Tensor{weights, l0} {
		for name, t := range m {
			c := *t
			c.Name = name
			list = append(list, &c)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	meta := map[string]string{"format": "pt", "config": string(cfg), "tinyclip": "masked"}
	if err := safetensors.WriteFile(filepath.Join(dir, MaskedModelFile), list, meta); err != nil {
		return fmt.Errorf("train: write masked model: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, ConfigFile), append(cfg, '\n'))
}

// ExportMasked writes the masked student with WriteMaskedModel.
func (a *AutoStudent) ExportMasked(dir string) error {
	w, err := a.Weights()
	if err != nil {
		return err
	}
	l0, err := a.L0()
	if err != nil {
		return err
	}
	return WriteMaskedModel(dir, &a.st.arch, w, l0)
}

// ReadMaskedModel reads a masked checkpoint: a safetensors file, or a
// directory holding one (masked_model.safetensors, a trainer checkpoint's
// model.safetensors, open_clip_model.safetensors, or a single
// *.safetensors) and optionally config.json / open_clip_config.json. Tensors whose name has an
// "l0_module" component are the L0 parameters: "module" components are
// removed and image_encoder_without_ddp / text_encoder_without_ddp read as
// _image_encoder / _text_encoder, giving the names ImageL0Prefix
// describes. The others are tower tensors in any layout checkpoint.Normalize
// reads (open_clip names, or the official _image_encoder.module.… names),
// except optimizer moments ("exp_avg.*", "exp_avg_sq.*"), which are
// skipped. The architecture comes from cfg if not nil, else the file's
// "config" metadata, else the directory's config, else the shapes alone
// (head width 64), and is checked against the shapes.
func ReadMaskedModel(path string, cfg *config.Config) (*config.Arch, map[string]*tensor.Tensor, map[string]*tensor.Tensor, error) {
	file := path
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("train: read masked model: %w", err)
	}
	if st.IsDir() {
		if file, err = maskedFileIn(path); err != nil {
			return nil, nil, nil, err
		}
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("train: read masked model: %w", err)
	}
	f, err := safetensors.Parse(raw)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("train: read masked model %s: %w", file, err)
	}
	tower := make(map[string]*tensor.Tensor)
	l0 := make(map[string]*tensor.Tensor)
	for name, t := range f.Tensors {
		switch {
		case strings.HasPrefix(name, "exp_avg.") || strings.HasPrefix(name, "exp_avg_sq."):
			continue
		case slices.Contains(strings.Split(name, "."), "l0_module"):
			n, err := l0Name(name)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("train: read masked model %s: %w", file, err)
			}
			if prev, dup := l0[n]; dup && !sameTensor(prev, t) {
				return nil, nil, nil, fmt.Errorf("train: read masked model %s: %s stored twice with different values", file, n)
			}
			l0[n] = t
		default:
			tower[name] = t
		}
	}
	if len(l0) == 0 {
		return nil, nil, nil, fmt.Errorf("train: read masked model %s: no l0_module tensors: not a masked checkpoint", file)
	}
	tw, err := checkpoint.Normalize(tower)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("train: read masked model %s: %w", file, err)
	}
	if cfg == nil {
		if c, ok := f.Metadata["config"]; ok {
			if cfg, err = checkpoint.ParseConfig([]byte(c)); err != nil {
				return nil, nil, nil, fmt.Errorf("train: read masked model %s: metadata config: %w", file, err)
			}
		} else if st.IsDir() {
			if cfg, err = dirConfig(path); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	shp := make(map[string][]int, len(tw))
	for n, t := range tw {
		shp[n] = t.Shape
	}
	arch, err := config.Resolve(cfg, shp)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("train: read masked model %s: %w", file, err)
	}
	towers, err := l0Towers(arch)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("train: read masked model %s: %w", file, err)
	}
	if _, err := l0Values(towers, l0, false); err != nil {
		return nil, nil, nil, fmt.Errorf("train: read masked model %s: %w", file, err)
	}
	for n, t := range tw {
		tw[n] = cloneTensor(t)
	}
	for n, t := range l0 {
		c := cloneTensor(t)
		c.Name = n
		l0[n] = c
	}
	return arch, tw, l0, nil
}

// l0Name maps a stored L0 parameter name to its ImageL0Prefix/TextL0Prefix
// form.
func l0Name(stored string) (string, error) {
	var kept []string
	for _, p := range strings.Split(stored, ".") {
		if p != "module" {
			kept = append(kept, p)
		}
	}
	n := strings.Join(kept, ".")
	n = strings.Replace(n, "image_encoder_without_ddp.", "_image_encoder.", 1)
	n = strings.Replace(n, "text_encoder_without_ddp.", "_text_encoder.", 1)
	if !strings.HasPrefix(n, ImageL0Prefix) && !strings.HasPrefix(n, TextL0Prefix) {
		return "", fmt.Errorf("L0 parameter %s belongs to neither tower", stored)
	}
	return n, nil
}

// sameTensor reports whether two tensors are identical.
func sameTensor(a, b *tensor.Tensor) bool {
	return a.DType == b.DType && slices.Equal(a.Shape, b.Shape) && string(a.Data) == string(b.Data)
}

// maskedFileIn picks the weight file of a masked checkpoint directory:
// masked_model.safetensors, else the trainer checkpoint's model.safetensors,
// else open_clip_model.safetensors, else the only *.safetensors.
func maskedFileIn(dir string) (string, error) {
	for _, n := range []string{MaskedModelFile, "model.safetensors", ModelFile} {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	matches, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		return "", fmt.Errorf("train: read masked model %s: %w", dir, err)
	}
	if len(matches) != 1 {
		return "", fmt.Errorf("train: read masked model %s: %d safetensors files, want %s or exactly one", dir, len(matches), MaskedModelFile)
	}
	return matches[0], nil
}

// dirConfig reads config.json or open_clip_config.json of dir (nil if
// neither exists).
func dirConfig(dir string) (*config.Config, error) {
	for _, n := range []string{ConfigFile, OpenCLIPConfFile} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("train: read masked model: %w", err)
		}
		c, err := checkpoint.ParseConfig(b)
		if err != nil {
			return nil, fmt.Errorf("train: read masked model %s: %w", filepath.Join(dir, n), err)
		}
		return c, nil
	}
	return nil, nil
}
