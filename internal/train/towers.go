package train

import (
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/ml/model"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// bnMode selects how the ResNet BatchNorm layers normalise.
type bnMode int

const (
	// bnEval normalises with the running statistics (inference).
	bnEval bnMode = iota
	// bnBatch normalises with the batch statistics and leaves the running
	// statistics alone (gradients only).
	bnBatch
	// bnTrain normalises with the batch statistics and updates the running
	// statistics (PyTorch train() mode).
	bnTrain
)

// bnMomentum and normEps are PyTorch's BatchNorm2d (and LayerNorm) defaults.
const (
	bnMomentum = 0.1
	normEps    = 1e-5
)

// encodeImage runs the image tower whose variables live under scope
// ("/visual") on images [B, 3, S, S] (NCHW, normalised) and returns the raw
// image features [B, E] (the official encode_image).
func encodeImage(scope *model.Scope, v *config.VisionArch, images *Node, mode bnMode) *Node {
	if v.Kind == config.KindResNet {
		return encodeResNet(scope, v, images, mode)
	}
	return encodeViT(scope, v, images, nil)
}

// towerMasks are the L0 gates of one transformer tower in a masked forward
// pass (auto inheritance, spec §6.2): training samples or deterministic
// eval masks. The towers take nil for the plain (unmasked) forward, which
// builds exactly the graph it builds without masks.
type towerMasks struct {
	// hidden [W] gates the residual stream: the embeddings and the output
	// of every attention and MLP sub-layer are multiplied by it.
	hidden *Node
	// keep [W] is 1 where hidden ≠ 0 and 0 elsewhere (no gradient): every
	// LayerNorm normalises over these dimensions only and outputs 0 on the
	// others.
	keep *Node
	// heads [L, H] gates each layer's heads (after softmax·V, before
	// out_proj); inter [L, M] each layer's MLP units (after the activation).
	heads, inter *Node
}

// encodeViT is the ViT image tower (spec §1.1.2). The patch convolution
// (kernel = stride = P, no bias) is a matrix product over flattened patches.
// With masks m it is the official masked forward (model.py
// VisualTransformer.forward with hidden_z/heads_z/intermediate_z): the
// embeddings are multiplied by the hidden gates after the positional
// embedding, LayerNorms see the kept dimensions only, and nothing gates the
// ln_post output before the projection.
func encodeViT(scope *model.Scope, v *config.VisionArch, x *Node, m *towerMasks) *Node {
	g := x.Graph()
	b := x.Shape().Dim(0)
	p := v.PatchSize
	grid := v.ImageSize / p
	w := v.Transformer.Width
	patches := Reshape(x, b, 3, grid, p, grid, p)
	patches = TransposeAllAxes(patches, 0, 2, 4, 1, 3, 5)
	patches = Reshape(patches, b, grid*grid, 3*p*p)
	conv := Reshape(param(scope.At("conv1"), g, "weight", w, 3, p, p), w, 3*p*p)
	tokens := linear(patches, conv, nil)
	cls := param(scope, g, "class_embedding", w)
	cls = BroadcastToDims(Reshape(cls, 1, 1, w), b, 1, w)
	h := Concatenate([]*Node{cls, tokens}, 1)
	h = Add(h, ExpandLeftToRank(param(scope, g, "positional_embedding", grid*grid+1, w), 3))
	if m != nil {
		h = Mul(h, ExpandLeftToRank(m.hidden, 3))
	}
	h = towerNorm(scope.At("ln_pre"), h, m)
	h = transformerMasked(scope.At("transformer"), h, &v.Transformer, nil, m)
	h0 := Reshape(Slice(h, AxisRange(), AxisElem(0)), b, w)
	h0 = towerNorm(scope.At("ln_post"), h0, m)
	return project(h0, param(scope, g, "proj", w, v.Embed))
}

// encodeText runs the text tower whose variables live under the root scope
// on token ids [B, C] (int32, C ≤ the context length) and returns the raw
// text features [B, E], pooled at eot [B] (int32, the index of each row's
// first largest id). Because attention is causal, the pooled rows do not
// depend on positions after them: C may stop anywhere after the last eot.
func encodeText(scope *model.Scope, t *config.TextArch, ids, eot *Node) *Node {
	return encodeTextMasked(scope, t, ids, eot, nil)
}

// encodeTextMasked is encodeText with the L0 gates m (nil: none), as the
// official TextEncoder.encode_text with masks: the embeddings are
// multiplied by the hidden gates after the positional embedding and
// ln_final sees the kept dimensions only.
func encodeTextMasked(scope *model.Scope, t *config.TextArch, ids, eot *Node, m *towerMasks) *Node {
	g := ids.Graph()
	c := ids.Shape().Dim(1)
	w := t.Transformer.Width
	emb := param(scope.At("token_embedding"), g, "weight", t.VocabSize, w)
	h := Gather(emb, ExpandAxes(ids, -1))
	pos := param(scope, g, "positional_embedding", t.ContextLength, w)
	if c < t.ContextLength {
		pos = Slice(pos, AxisRange(0, c))
	}
	h = Add(h, ExpandLeftToRank(pos, 3))
	if m != nil {
		h = Mul(h, ExpandLeftToRank(m.hidden, 3))
	}
	h = transformerMasked(scope.At("transformer"), h, &t.Transformer, causalMask(g, c), m)
	h = towerNorm(scope.At("ln_final"), h, m)
	rows := Iota(g, eot.Shape(), 0)
	idx := Stack([]*Node{rows, eot}, 1)
	pooled := Gather(h, idx)
	return project(pooled, param(scope, g, "text_projection", w, t.Embed))
}

// causalMask is the additive [1, C, C] mask of the text tower: 0 on and
// below the diagonal, −∞ above.
func causalMask(g *Graph, c int) *Node {
	m := make([]float32, c*c)
	inf := float32(math.Inf(-1))
	for i := range c {
		for j := i + 1; j < c; j++ {
			m[i*c+j] = inf
		}
	}
	return Reshape(Const(g, m), 1, c, c)
}

// transformer runs the residual attention blocks under scope/resblocks on
// x [B, T, W]. Blocks without heads skip the attention half; blocks without
// MLP tensors skip the MLP half; a zero-width MLP adds its c_proj bias.
func transformer(scope *model.Scope, x *Node, t *config.Transformer, mask *Node) *Node {
	return transformerMasked(scope, x, t, mask, nil)
}

// transformerMasked is transformer with the L0 gates m (nil: none). With
// gates, block i computes x + hidden ⊙ out_proj(heads[i]-gated attention of
// LN₁(x)), then x + hidden ⊙ c_proj(inter[i] ⊙ act(c_fc(LN₂(x)))), with
// the LayerNorms over the kept dimensions (official ResidualAttentionBlock
// with hidden_z, heads_z, intermediate_z).
func transformerMasked(scope *model.Scope, x *Node, t *config.Transformer, mask *Node, m *towerMasks) *Node {
	rb := scope.At("resblocks")
	act := activationFn(t.Act)
	if m != nil {
		hz := ExpandLeftToRank(m.hidden, x.Rank())
		for i, blk := range t.Blocks {
			s := rb.At("%d", i)
			if blk.Heads > 0 {
				hg := Reshape(Slice(m.heads, AxisElem(i)), blk.Heads)
				a := attentionGated(s.At("attn"), maskedLayerNorm(s.At("ln_1"), x, m.keep), blk.Heads, t.HeadDim, mask, hg)
				x = Add(x, Mul(a, hz))
			}
			if blk.HasMLP && blk.MLP > 0 {
				ig := Reshape(Slice(m.inter, AxisElem(i)), blk.MLP)
				x = Add(x, Mul(mlpGated(s.At("mlp"), s.At("ln_2"), x, blk.MLP, act, m.keep, ig), hz))
			}
		}
		return x
	}
	for i, blk := range t.Blocks {
		s := rb.At("%d", i)
		if blk.Heads > 0 {
			x = Add(x, attention(s.At("attn"), layerNorm(s.At("ln_1"), x), blk.Heads, t.HeadDim, mask))
		}
		if blk.HasMLP {
			x = Add(x, mlp(s.At("mlp"), s.At("ln_2"), x, blk.MLP, act))
		}
	}
	return x
}

// mlp is c_fc → activation → c_proj on LN₂(x); with width 0 it is the
// constant c_proj bias (the zero-size tensors are not graph variables).
func mlp(scope, ln *model.Scope, x *Node, width int, act func(*Node) *Node) *Node {
	return mlpGated(scope, ln, x, width, act, nil, nil)
}

// mlpGated is mlp with the LayerNorm restricted to keep and the activations
// multiplied by the unit gates [width] (both nil: mlp). Width must be > 0
// when gated.
func mlpGated(scope, ln *model.Scope, x *Node, width int, act func(*Node) *Node, keep, gates *Node) *Node {
	g := x.Graph()
	w := x.Shape().Dim(-1)
	if width == 0 {
		bias := param(scope.At("c_proj"), g, "bias", w)
		return BroadcastToShape(ExpandLeftToRank(bias, x.Rank()), x.Shape())
	}
	var h *Node
	if keep != nil {
		h = maskedLayerNorm(ln, x, keep)
	} else {
		h = layerNorm(ln, x)
	}
	fc := scope.At("c_fc")
	h = act(linear(h, param(fc, g, "weight", width, w), param(fc, g, "bias", width)))
	if gates != nil {
		h = Mul(h, ExpandLeftToRank(gates, h.Rank()))
	}
	pr := scope.At("c_proj")
	return linear(h, param(pr, g, "weight", w, width), param(pr, g, "bias", w))
}

// towerNorm is layerNorm, or maskedLayerNorm over m.keep when m is not nil.
func towerNorm(scope *model.Scope, x *Node, m *towerMasks) *Node {
	if m == nil {
		return layerNorm(scope, x)
	}
	return maskedLayerNorm(scope, x, m.keep)
}

// maskedLayerNorm is the official LayerNorm with hidden_z (model.py): the
// last axis of x is normalised over the dimensions where keep [W] is 1
// (mean and biased variance of those n values, eps 1e-5), scaled and shifted
// by their gamma and beta; the other dimensions output 0 and pass no
// gradient to x, gamma or beta. With n = 0 the output is all zeros, as the
// official empty selection gives.
func maskedLayerNorm(scope *model.Scope, x, keep *Node) *Node {
	g := x.Graph()
	w := x.Shape().Dim(-1)
	gamma := param(scope, g, "weight", w)
	beta := param(scope, g, "bias", w)
	k := ExpandLeftToRank(keep, x.Rank())
	n := MaxScalar(ReduceAllSum(keep), 1)
	mean := Div(ReduceAndKeep(Mul(x, k), ReduceSum, -1), n)
	xc := Mul(Sub(x, mean), k)
	variance := Div(ReduceAndKeep(Square(xc), ReduceSum, -1), n)
	y := Mul(xc, rsqrt(AddScalar(variance, normEps)))
	y = Add(Mul(y, ExpandLeftToRank(gamma, y.Rank())), ExpandLeftToRank(beta, y.Rank()))
	return Mul(y, k)
}

// activationFn returns the graph function of a transformer activation.
func activationFn(a config.Activation) func(*Node) *Node {
	switch a {
	case config.QuickGELU:
		return quickGELU
	case config.GELUTanh:
		return geluTanh
	case config.ReLU:
		return func(x *Node) *Node { return MaxScalar(x, 0) }
	}
	return gelu
}

// attention is PyTorch's nn.MultiheadAttention with packed in_proj
// (spec §1.1.1) on x [B, T, W]: heads of width d, queries divided by √d,
// optional additive mask [1, T, T]. Heads are moved next to the batch axis
// once, so that every product is a plain batched matrix product.
func attention(scope *model.Scope, x *Node, heads, d int, mask *Node) *Node {
	return attentionGated(scope, x, heads, d, mask, nil)
}

// attentionGated is attention with each head's output (softmax·V, before
// out_proj) multiplied by its gate, gates [heads] (nil: attention). The
// queries are multiplied by d^−½ as float32, which is also what the
// official masked path computes (q *= dim_per_head ** -0.5).
func attentionGated(scope *model.Scope, x *Node, heads, d int, mask, gates *Node) *Node {
	g := x.Graph()
	b, t, w := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2)
	a := heads * d
	qkv := linear(x, param(scope, g, "in_proj_weight", 3*a, w), param(scope, g, "in_proj_bias", 3*a))
	qkv = TransposeAllAxes(Reshape(qkv, b, t, 3, heads, d), 2, 0, 3, 1, 4) // [3, B, H, T, d]
	part := func(i int) *Node {
		return Reshape(Slice(qkv, AxisElem(i)), b*heads, t, d)
	}
	q := DivScalar(part(0), math.Sqrt(float64(d)))
	out := attend(q, part(1), part(2), mask) // [B·H, T, d]
	out4 := Reshape(out, b, heads, t, d)
	if gates != nil {
		out4 = Mul(out4, Reshape(gates, 1, heads, 1, 1))
	}
	out = TransposeAllAxes(out4, 0, 2, 1, 3)
	out = Reshape(out, b, t, a)
	op := scope.At("out_proj")
	return linear(out, param(op, g, "weight", w, a), param(op, g, "bias", w))
}

// attend computes softmax(q·kᵀ + mask)·v for q [N, Tq, d], k and v
// [N, Tk, d] (N = batch × heads) and returns [N, Tq, d].
func attend(q, k, v, mask *Node) *Node {
	scores := dotGeneral(q, []int{2}, []int{0}, k, []int{2}, []int{0}) // [N, Tq, Tk]
	if mask != nil {
		scores = Add(scores, mask)
	}
	p := softmax(scores)
	return dotGeneral(p, []int{2}, []int{0}, v, []int{1}, []int{0})
}

// encodeResNet is the ModifiedResNet image tower (spec §1.1.4). It works in
// NHWC internally so that 1×1 convolutions are plain matrix products.
func encodeResNet(scope *model.Scope, v *config.VisionArch, x *Node, mode bnMode) *Node {
	x = TransposeAllAxes(x, 0, 2, 3, 1)
	w := v.Width
	x = Max(batchNorm(scope.At("bn1"), conv2d(scope.At("conv1"), x, w/2, 3, 2, 1), mode), ScalarZero(x.Graph(), dtype))
	x = Max(batchNorm(scope.At("bn2"), conv2d(scope.At("conv2"), x, w/2, 3, 1, 1), mode), ScalarZero(x.Graph(), dtype))
	x = Max(batchNorm(scope.At("bn3"), conv2d(scope.At("conv3"), x, w, 3, 1, 1), mode), ScalarZero(x.Graph(), dtype))
	x = avgPool(x, 2)
	inplanes := w
	for k, n := range v.Layers {
		planes := w << k
		stage := scope.At("layer%d", k+1)
		for i := range n {
			stride := 1
			if k > 0 && i == 0 {
				stride = 2
			}
			x = bottleneck(stage.At("%d", i), x, inplanes, planes, stride, mode)
			inplanes = 4 * planes
		}
	}
	return attnPool(scope.At("attnpool"), x, v)
}

// bottleneck is one ModifiedResNet block on x [B, H, W, inplanes].
func bottleneck(scope *model.Scope, x *Node, inplanes, planes, stride int, mode bnMode) *Node {
	zero := ScalarZero(x.Graph(), dtype)
	out := Max(batchNorm(scope.At("bn1"), conv2d(scope.At("conv1"), x, planes, 1, 1, 0), mode), zero)
	out = Max(batchNorm(scope.At("bn2"), conv2d(scope.At("conv2"), out, planes, 3, 1, 1), mode), zero)
	if stride > 1 {
		out = avgPool(out, stride)
	}
	out = batchNorm(scope.At("bn3"), conv2d(scope.At("conv3"), out, 4*planes, 1, 1, 0), mode)
	shortcut := x
	if stride > 1 || inplanes != 4*planes {
		ds := scope.At("downsample")
		if stride > 1 {
			shortcut = avgPool(shortcut, stride)
		}
		shortcut = batchNorm(ds.At("1"), conv2d(ds.At("0"), shortcut, 4*planes, 1, 1, 0), mode)
	}
	return Max(Add(out, shortcut), zero)
}

// conv2d is a bias-free k×k convolution of x [B, H, W, I] with the PyTorch
// weight scope/weight [O, I, k, k], as a matrix product over im2col patches
// (a plain product for 1×1, stride 1).
func conv2d(scope *model.Scope, x *Node, out, k, stride, pad int) *Node {
	g := x.Graph()
	in := x.Shape().Dim(3)
	w := param(scope, g, "weight", out, in, k, k)
	if k == 1 && stride == 1 && pad == 0 {
		return linear(x, Reshape(w, out, in), nil)
	}
	if pad > 0 {
		p := compute.PadAxis{Start: pad, End: pad}
		x = Pad(x, ScalarZero(g, dtype), compute.PadAxis{}, p, p, compute.PadAxis{})
	}
	hp, wp := x.Shape().Dim(1), x.Shape().Dim(2)
	ho, wo := (hp-k)/stride+1, (wp-k)/stride+1
	cols := make([]*Node, 0, k*k)
	for dy := range k {
		for dx := range k {
			cols = append(cols, Slice(x, AxisRange(),
				AxisRange(dy, dy+stride*(ho-1)+1).Stride(stride),
				AxisRange(dx, dx+stride*(wo-1)+1).Stride(stride),
				AxisRange()))
		}
	}
	patches := cols[0]
	if len(cols) > 1 {
		patches = Concatenate(cols, 3) // [B, Ho, Wo, k·k·I] in (dy, dx, i) order
	}
	wm := Reshape(TransposeAllAxes(w, 0, 2, 3, 1), out, k*k*in)
	return linear(patches, wm, nil)
}

// avgPool averages non-overlapping s×s windows of x [B, H, W, C].
func avgPool(x *Node, s int) *Node {
	d := x.Shape().Dimensions
	y := Reshape(x, d[0], d[1]/s, s, d[2]/s, s, d[3])
	return ReduceMean(y, 2, 4)
}

// batchNorm is BatchNorm2d (eps 1e-5, momentum 0.1) on x [B, H, W, C]. In
// the batch modes it normalises with the batch mean and biased variance
// over (B, H, W); bnTrain also moves the running statistics towards the
// batch mean and the unbiased variance (PyTorch train()). The layer is
// computed in float64 (as PyTorch accumulates its statistics): the Go
// backend sums float32 sequentially, and over B·H·W elements that loses
// enough precision to move a ResNet's features by 1e-4.
func batchNorm(scope *model.Scope, x *Node, mode bnMode) *Node {
	g := x.Graph()
	c := x.Shape().Dim(3)
	f64 := func(n *Node) *Node { return ConvertDType(n, dtypes.Float64) }
	gamma := f64(param(scope, g, "weight", c))
	beta := f64(param(scope, g, "bias", c))
	rmVar := scope.VariableWithShape("running_mean", shapes.Make(dtype, c))
	rvVar := scope.VariableWithShape("running_var", shapes.Make(dtype, c))
	x64 := f64(x)
	var xc, variance *Node
	if mode == bnEval {
		xc = Sub(x64, ExpandLeftToRank(f64(rmVar.NodeValue(g)), 4))
		variance = f64(rvVar.NodeValue(g))
	} else {
		mean := ReduceMean(x64, 0, 1, 2)
		xc = Sub(x64, ExpandLeftToRank(mean, 4))
		sumSq := ReduceSum(Square(xc), 0, 1, 2)
		n := x.Shape().Size() / c
		variance = DivScalar(sumSq, float64(n))
		if mode == bnTrain {
			unbiased := StopGradient(DivScalar(sumSq, float64(n-1)))
			m := StopGradient(mean)
			update := func(v *model.Variable, stat *Node) {
				old := f64(v.NodeValue(g))
				v.SetNodeValue(ConvertDType(Add(MulScalar(stat, bnMomentum), MulScalar(old, 1-bnMomentum)), dtype))
			}
			update(rmVar, m)
			update(rvVar, unbiased)
		}
	}
	y := Mul(xc, ExpandLeftToRank(rsqrt(AddScalar(variance, normEps)), 4))
	y = Add(Mul(y, ExpandLeftToRank(gamma, 4)), ExpandLeftToRank(beta, 4))
	return ConvertDType(y, dtype)
}

// attnPool is the ResNet attention pooling on x [B, g, g, C]: the mean token
// is prepended, the pool's positional embedding added, and one multi-head
// attention is run for the mean token's query only.
func attnPool(scope *model.Scope, x *Node, v *config.VisionArch) *Node {
	g := x.Graph()
	b, c := x.Shape().Dim(0), x.Shape().Dim(3)
	t := v.Tokens()
	x = Reshape(x, b, t-1, c)
	x = Concatenate([]*Node{ReduceAndKeep(x, ReduceMean, 1), x}, 1)
	x = Add(x, ExpandLeftToRank(param(scope, g, "positional_embedding", t, c), 3))
	proj := func(name string, y *Node) *Node {
		s := scope.At("%s", name)
		return linear(y, param(s, g, "weight", c, c), param(s, g, "bias", c))
	}
	h, d := v.PoolHeads, v.PoolHeadDim
	heads := func(y *Node, n int) *Node { // [B, n, C] → [B·H, n, d]
		return Reshape(TransposeAllAxes(Reshape(y, b, n, h, d), 0, 2, 1, 3), b*h, n, d)
	}
	q := proj("q_proj", Slice(x, AxisRange(), AxisRange(0, 1)))
	q = DivScalar(heads(q, 1), math.Sqrt(float64(d)))
	out := attend(q, heads(proj("k_proj", x), t), heads(proj("v_proj", x), t), nil) // [B·H, 1, d]
	out = Reshape(out, b, c)
	cp := scope.At("c_proj")
	return linear(out, param(cp, g, "weight", v.Embed, c), param(cp, g, "bias", v.Embed))
}

// checkTrainable reports architectures the graphs cannot express.
func checkTrainable(a *config.Arch) error {
	if err := a.Validate(); err != nil {
		return err
	}
	v := &a.Vision
	switch v.Kind {
	case config.KindViT:
		if v.ImageSize%v.PatchSize != 0 {
			return fmt.Errorf("train: image size %d is not a multiple of patch size %d", v.ImageSize, v.PatchSize)
		}
	}
	return nil
}
