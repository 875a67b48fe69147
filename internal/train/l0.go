package train

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// Hard-concrete (L0) gate constants of the official L0Module
// (TinyCLIP open_clip/l0module.py, spec §6.2).
const (
	// L0LimitA and L0LimitB stretch a gate's sigmoid sample to
	// (L0LimitA, L0LimitB) before it is clamped to [0, 1].
	L0LimitA = -0.1
	L0LimitB = 1.1
	// L0Epsilon bounds the noise, u ∈ [ε, 1−ε], and clamps the CDF in the
	// gate score.
	L0Epsilon = 1e-6
	// L0Temperature is the concrete distribution's temperature β.
	L0Temperature = 2.0 / 3.0
	// L0MagicalNumber scales the log-alphas of the deterministic
	// (evaluation) masks: soft = sigmoid(a/β·0.8).
	L0MagicalNumber = 0.8
	// L0InitLogAlpha and L0InitLambda are the initial log-alphas and
	// Lagrange multipliers of a fresh masked student.
	L0InitLogAlpha = 10.0
	L0InitLambda   = 10.0
)

// The clamp applied to every log-alpha after each optimizer step,
// [ln 0.01, ln 100] rounded to float32 (constrain_parameters).
var (
	l0ClampLo = float32(math.Log(1e-2))
	l0ClampHi = float32(math.Log(1e2))
)

// l0LogitX is ln(x/(1−x))·β for x = (0 − L0LimitA)/(L0LimitB − L0LimitA) =
// 1/12, the constant of the gate score, computed as the official cdf_qz
// does (in float64).
var l0LogitX = func() float64 {
	xn := (0 - L0LimitA) / (L0LimitB - L0LimitA)
	return (math.Log(xn) - math.Log(1-xn)) * L0Temperature
}()

// Names of the L0 parameters. A masked student's log-alphas and
// multipliers are named as the official state dict names them (without
// the DDP ".module"): ImageL0Prefix or TextL0Prefix followed by
// "hidden_loga" [W], "heads_loga" [L, heads], "intermediate_loga" [L, 4W],
// "lambda_1" [] or "lambda_2" [].
const (
	ImageL0Prefix = "_image_encoder.l0_module."
	TextL0Prefix  = "_text_encoder.l0_module."
)

// l0Kinds are the gate kinds in the official order of pruning_type.
var l0Kinds = [3]string{"hidden", "heads", "intermediate"}

// l0Tower describes one tower's L0 module: its sizes (the official
// config_mask: hidden_size = width, intermediate_size = 4·width, heads,
// layers) and where its parameters live.
type l0Tower struct {
	name   string // "image" or "text"
	prefix string // ImageL0Prefix or TextL0Prefix
	width  int
	heads  int
	layers int
}

// inter is the official intermediate_size, 4·width.
func (t l0Tower) inter() int { return 4 * t.width }

// paramsPerHead is the official params_per_head,
// (4W² + 4W) // heads (integer division).
func (t l0Tower) paramsPerHead() int { return (4*t.width*t.width + 4*t.width) / t.heads }

// prunable is the official prunable_model_size: the attention parameters
// counted per head plus every MLP's weights and biases,
// p_head·L·heads + L·(2·W·4W + W + 4W).
func (t l0Tower) prunable() int {
	mlp := 2*t.width*t.inter() + t.width + t.inter()
	return t.paramsPerHead()*t.layers*t.heads + mlp*t.layers
}

// shape returns the log-alpha shape of a gate kind.
func (t l0Tower) shape(kind string) []int {
	switch kind {
	case "hidden":
		return []int{t.width}
	case "heads":
		return []int{t.layers, t.heads}
	}
	return []int{t.layers, t.inter()}
}

// name returns the full name of one L0 parameter ("hidden_loga", "lambda_1", …).
func (t l0Tower) param(p string) string { return t.prefix + p }

// l0Towers returns the L0 modules of a masked student of architecture a:
// both towers must be regular ViT/text transformers with MLP width 4·width
// (the official masks assume mlp_ratio 4).
func l0Towers(a *config.Arch) ([2]l0Tower, error) {
	var out [2]l0Tower
	if a.Vision.Kind != config.KindViT {
		return out, fmt.Errorf("auto inheritance needs a ViT image tower, not a %s", a.Vision.Kind)
	}
	for i, tc := range []struct {
		name, prefix string
		tr           *config.Transformer
	}{{"image", ImageL0Prefix, &a.Vision.Transformer}, {"text", TextL0Prefix, &a.Text.Transformer}} {
		tr := tc.tr
		if tr.HeadDim <= 0 || tr.Width%tr.HeadDim != 0 || len(tr.Blocks) == 0 {
			return out, fmt.Errorf("%s tower: width %d, head width %d, %d layers: auto inheritance needs a regular tower",
				tc.name, tr.Width, tr.HeadDim, len(tr.Blocks))
		}
		h := tr.Width / tr.HeadDim
		for j, b := range tr.Blocks {
			if b.Heads != h || !b.HasMLP || b.MLP != 4*tr.Width {
				return out, fmt.Errorf("%s tower layer %d: %d heads, MLP width %d: auto inheritance needs %d heads and MLP width %d (4·width) in every layer",
					tc.name, j, b.Heads, b.MLP, h, 4*tr.Width)
			}
		}
		out[i] = l0Tower{name: tc.name, prefix: tc.prefix, width: tr.Width, heads: h, layers: len(tr.Blocks)}
	}
	return out, nil
}

// L0Config are the settings of auto weight inheritance (spec §6.2, the
// official --prune-image --prune-text flags). The towers' learning rate is
// not among them: the official loop uses CosineLR(base, PruneStep, total,
// step) (the warm-up is the prune step; --warmup is ignored), which after
// the fuse equals cosine_lr_start_nowarmup.
type L0Config struct {
	// StartSparsity and TargetSparsity are the expected sparsity the
	// Lagrangian aims at, ramped linearly over SparsityWarmup steps (0: the
	// target at once): --start-sparsity, --target-sparsity,
	// --sparsity-warmup.
	StartSparsity, TargetSparsity float64
	SparsityWarmup                int
	// PruneStep is the global step at which the gates are fused and the
	// student pruned (--prune-step); the L0 optimizer runs before it.
	PruneStep int
	// LogAlphaLR and LambdaLR are the L0 optimizer's learning rates of the
	// log-alphas (official 0.02) and of the Lagrange multipliers (--l0lr,
	// official −0.02: negative, so that the multipliers ascend).
	LogAlphaLR, LambdaLR float64
	// Beta1, Beta2 and Eps are the L0 AdamW's (PyTorch defaults 0.9, 0.999,
	// 1e-8; no weight decay).
	Beta1, Beta2, Eps float64
	// PerTower selects the penalty used without the official
	// --total-loss-flag: the sum of each tower's own Lagrangian. The
	// default (false) is the recipe's joint penalty over both towers.
	PerTower bool
}

// DefaultL0Config returns the released recipes' settings with the given
// sparsity schedule and prune step: L0 learning rates 0.02 / −0.02, AdamW
// (0.9, 0.999), 1e-8, joint penalty. Stage 1 of the recipe is
// DefaultL0Config(0, 0.25, 1000, 3000).
func DefaultL0Config(start, target float64, warmup, pruneStep int) L0Config {
	return L0Config{
		StartSparsity: start, TargetSparsity: target, SparsityWarmup: warmup, PruneStep: pruneStep,
		LogAlphaLR: 0.02, LambdaLR: -0.02, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8,
	}
}

// Target returns the target sparsity at a global step: StartSparsity +
// (TargetSparsity − StartSparsity)·min(1, step/SparsityWarmup), in the
// official order of operations (float64), or TargetSparsity without a
// warm-up.
func (c L0Config) Target(step int64) float64 {
	if c.SparsityWarmup <= 0 {
		return c.TargetSparsity
	}
	return (c.TargetSparsity-c.StartSparsity)*math.Min(1, float64(step)/float64(c.SparsityWarmup)) + c.StartSparsity
}

// validate reports settings outside their domain.
func (c *L0Config) validate() error {
	bad := func(name string, v any) error {
		return fmt.Errorf("train: L0 setting %s = %v out of range", name, v)
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !(c.StartSparsity >= 0 && c.StartSparsity < 1):
		return bad("start sparsity", c.StartSparsity)
	case !(c.TargetSparsity >= 0 && c.TargetSparsity < 1):
		return bad("target sparsity", c.TargetSparsity)
	case c.SparsityWarmup < 0:
		return bad("sparsity warm-up", c.SparsityWarmup)
	case c.PruneStep < 0:
		return bad("prune step", c.PruneStep)
	case !finite(c.LogAlphaLR):
		return bad("log-alpha lr", c.LogAlphaLR)
	case !finite(c.LambdaLR):
		return bad("lambda lr", c.LambdaLR)
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return bad("beta1", c.Beta1)
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return bad("beta2", c.Beta2)
	case !(c.Eps > 0) || !finite(c.Eps):
		return bad("eps", c.Eps)
	}
	return nil
}

// sigmoid64 is 1/(1+e^−x), evaluated as GoMLX's Go backend does.
func sigmoid64(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// gateScore is P(gate ≠ 0) for log-alpha a, the official score_loga in
// float32: 1 − clamp(sigmoid(c − a), ε, 1−ε) with c = l0LogitX.
func gateScore(a float32) float32 {
	x := float32(l0LogitX) - a
	s := float32(sigmoid64(float64(x)))
	s = min(max(s, float32(L0Epsilon)), float32(1-L0Epsilon))
	return 1 - s
}

// softGate is the soft value of a deterministic mask, sigmoid(a/β·0.8) in
// float32 (official _deterministic_z and l0_mask).
func softGate(a float32) float32 {
	x := a / float32(L0Temperature)
	x *= float32(L0MagicalNumber)
	return float32(sigmoid64(float64(x)))
}

// deterministicRow returns the official evaluation-mode mask of one vector
// of n log-alphas (_deterministic_z): every gate keeps its soft value
// sigmoid(a/β·0.8) except the k = round(n − Σ score) ones with the smallest
// soft values (Python round: half to even), which become 0. The scores are
// summed in float64 (the official sum is float32; rows in practice are far
// from a rounding tie). Ties in the soft value at the cut, which the
// official topk leaves unspecified, are broken by index: of equal values the
// highest-indexed are zeroed first, so that leading units survive (the
// layout load_pruned_model produces).
func deterministicRow(loga []float32) []float32 {
	n := len(loga)
	soft := make([]float32, n)
	sum := 0.0
	for i, a := range loga {
		soft[i] = softGate(a)
		sum += float64(gateScore(a))
	}
	k := int(math.RoundToEven(float64(n) - sum))
	if k <= 0 {
		return soft
	}
	k = min(k, n)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(x, y int) bool {
		a, b := soft[idx[x]], soft[idx[y]]
		if a != b {
			return a < b
		}
		return idx[x] > idx[y]
	})
	for _, i := range idx[:k] {
		soft[i] = 0
	}
	return soft
}

// GateMasks are the gate values of one tower's L0 module, squeezed to the
// log-alpha shapes: a removed unit has 0, a kept one its gate value.
type GateMasks struct {
	Hidden []float32   // [W] hidden dimensions
	Heads  [][]float32 // [L][heads]
	MLP    [][]float32 // [L][4W] MLP units
}

// Masks are the gates of both towers.
type Masks struct {
	Image, Text GateMasks
}

// EvalMasks returns the deterministic (evaluation-mode) masks of the L0
// parameters l0 (named as ImageL0Prefix/TextL0Prefix describe) of a masked
// student of architecture arch: per vector — the hidden dimensions, each
// layer's heads, each layer's MLP units — the official rule, k =
// round(n − Σ P(gate ≠ 0)) gates with the smallest soft values become 0 and
// the others keep sigmoid(a/β·0.8); ties at the cut are broken by index (of
// equal values the highest-indexed go first). These are the masks the
// official fuse prunes with.
func EvalMasks(arch *config.Arch, l0 map[string]*tensor.Tensor) (*Masks, error) {
	if arch == nil {
		return nil, fmt.Errorf("train: eval masks: nil architecture")
	}
	towers, err := l0Towers(arch)
	if err != nil {
		return nil, fmt.Errorf("train: eval masks: %w", err)
	}
	vals, err := l0Values(towers, l0, false)
	if err != nil {
		return nil, fmt.Errorf("train: eval masks: %w", err)
	}
	m := &Masks{}
	for i, tw := range towers {
		gm := &m.Image
		if i == 1 {
			gm = &m.Text
		}
		gm.Hidden = deterministicRow(vals[tw.param("hidden_loga")])
		heads := vals[tw.param("heads_loga")]
		inter := vals[tw.param("intermediate_loga")]
		for l := range tw.layers {
			gm.Heads = append(gm.Heads, deterministicRow(heads[l*tw.heads:(l+1)*tw.heads]))
			gm.MLP = append(gm.MLP, deterministicRow(inter[l*tw.inter():(l+1)*tw.inter()]))
		}
	}
	return m, nil
}

// l0Names returns the names of the L0 parameters of towers, sorted.
func l0Names(towers [2]l0Tower) []string {
	var names []string
	for _, tw := range towers {
		for _, p := range []string{"hidden_loga", "heads_loga", "intermediate_loga", "lambda_1", "lambda_2"} {
			names = append(names, tw.param(p))
		}
	}
	sort.Strings(names)
	return names
}

// l0Shape returns the shape of the L0 parameter name of towers.
func l0Shape(towers [2]l0Tower, name string) ([]int, bool) {
	for _, tw := range towers {
		for _, k := range l0Kinds {
			if name == tw.param(k+"_loga") {
				return tw.shape(k), true
			}
		}
		if name == tw.param("lambda_1") || name == tw.param("lambda_2") {
			return []int{}, true
		}
	}
	return nil, false
}

// l0Values checks that l0 holds exactly the L0 parameters of towers (any
// float dtype; the multipliers as [] or [1]) and returns their float32
// values. With lambdasOptional, missing multipliers are allowed.
func l0Values(towers [2]l0Tower, l0 map[string]*tensor.Tensor, lambdasOptional bool) (map[string][]float32, error) {
	out := make(map[string][]float32, len(l0))
	for _, name := range l0Names(towers) {
		want, _ := l0Shape(towers, name)
		t, ok := l0[name]
		if !ok || t == nil {
			if lambdasOptional && len(want) == 0 {
				continue
			}
			return nil, fmt.Errorf("L0 parameter %s missing", name)
		}
		if !slices.Equal(t.Shape, want) && !(len(want) == 0 && slices.Equal(t.Shape, []int{1})) {
			return nil, fmt.Errorf("L0 parameter %s: shape %v, want %v", name, t.Shape, want)
		}
		if !t.DType.IsFloat() {
			return nil, fmt.Errorf("L0 parameter %s: dtype %s, want a float type", name, t.DType)
		}
		v, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("L0 parameter %s: %w", name, err)
		}
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("L0 parameter %s: non-finite value %v", name, x)
			}
		}
		out[name] = v
	}
	for name := range l0 {
		if _, ok := l0Shape(towers, name); !ok {
			return nil, fmt.Errorf("unexpected L0 parameter %s", name)
		}
	}
	return out, nil
}

// InitialL0 returns the L0 parameters of a fresh masked student of
// architecture arch, as the official L0Module initialises them: every
// log-alpha L0InitLogAlpha (10), both multipliers of each tower
// L0InitLambda (10); float32, named as ImageL0Prefix describes.
func InitialL0(arch *config.Arch) (map[string]*tensor.Tensor, error) {
	if arch == nil {
		return nil, fmt.Errorf("train: initial L0: nil architecture")
	}
	towers, err := l0Towers(arch)
	if err != nil {
		return nil, fmt.Errorf("train: initial L0: %w", err)
	}
	out := make(map[string]*tensor.Tensor)
	for _, name := range l0Names(towers) {
		shape, _ := l0Shape(towers, name)
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		fill := float32(L0InitLogAlpha)
		if len(shape) == 0 {
			fill = L0InitLambda
		}
		for i := range v {
			v[i] = fill
		}
		out[name] = tensor.FromFloat32(name, shape, v)
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Graph functions.

// sampleGates is the official training-mode gate sample (_sample_z) of
// log-alphas a with noise u (same shape, in [ε, 1−ε]), in float32:
// z = clamp(sigmoid((ln u − ln(1−u) + a)/β)·1.2 − 0.1, 0, 1). As PyTorch's
// hardtanh, the gradient passes only where the clamp is inactive (0 < z < 1).
func sampleGates(a, u *Node) *Node {
	g := a.Graph()
	logit := Add(Sub(Log(u), Log(OneMinus(u))), a)
	s := Sigmoid(Div(logit, Scalar(g, dtype, L0Temperature)))
	z := Add(Mul(s, Scalar(g, dtype, L0LimitB-L0LimitA)), Scalar(g, dtype, L0LimitA))
	zero, one := ScalarZero(g, dtype), ScalarOne(g, dtype)
	inside := LogicalAnd(GreaterThan(z, zero), LessThan(z, one))
	bound := StopGradient(Where(LessOrEqual(z, zero), ZerosLike(z), OnesLike(z)))
	return Where(inside, z, bound)
}

// keepMask is 1 where the gates z are non-zero and 0 elsewhere, without
// gradient.
func keepMask(z *Node) *Node {
	g := z.Graph()
	return StopGradient(Where(NotEqual(z, ScalarZero(g, dtype)), OnesLike(z), ZerosLike(z)))
}

// gateScores is P(gate ≠ 0) of log-alphas a in float32 (official
// score_loga): 1 − clamp(sigmoid(c − a), ε, 1−ε); as torch.clamp, the
// gradient passes where ε ≤ sigmoid(c − a) ≤ 1−ε.
func gateScores(a *Node) *Node {
	g := a.Graph()
	s := Sigmoid(Sub(Scalar(g, dtype, l0LogitX), a))
	lo, hi := Scalar(g, dtype, L0Epsilon), Scalar(g, dtype, 1-L0Epsilon)
	inside := LogicalAnd(GreaterOrEqual(s, lo), LessOrEqual(s, hi))
	return OneMinus(Where(inside, s, StopGradient(Min(Max(s, lo), hi))))
}

// l0Params are the graph values of one tower's L0 parameters.
type l0Params struct {
	hidden, heads, inter *Node // log-alphas [W], [L, H], [L, 4W]
	lambda1, lambda2     *Node // multipliers, scalars
}

// expectedParams is the official expected number of remaining prunable
// parameters of a tower (get_num_parameters_and_constraint(hidden=True)),
// a differentiable float64 scalar of the log-alphas:
// (Σ_j h_j)·(Σ_{i,h} a_{i,h})·p_head/W + 2·(Σ_j h_j)·(Σ_{i,k} m_{i,k}) with
// the scores h, a, m of the hidden dimensions, heads and MLP units. Like the
// official estimate it leaves out the MLP biases that the prunable size
// counts (so a fully open tower is not at sparsity 0 but L·5W/P) and
// everything outside the blocks (embeddings, LayerNorms, projections).
// The scores are float32; the sums and products are float64.
func expectedParams(tw l0Tower, p l0Params) *Node {
	sum := func(a *Node) *Node { return ReduceAllSum(ConvertDType(gateScores(a), dtypes.Float64)) }
	sh, sa, sm := sum(p.hidden), sum(p.heads), sum(p.inter)
	heads := MulScalar(Mul(sh, sa), float64(tw.paramsPerHead())/float64(tw.width))
	return Add(heads, MulScalar(Mul(sh, sm), 2))
}

// lagrangianTerms are the nodes of the sparsity penalty.
type lagrangianTerms struct {
	loss *Node // float32 scalar added to the loss
	// expected is the (joint) expected sparsity, expectedTower and
	// remaining each tower's expected sparsity and expected remaining
	// parameters (float64 scalars); lambda1 and lambda2 the multipliers
	// the joint penalty uses (means over the towers, float32).
	expected         *Node
	expectedTower    [2]*Node
	remaining        [2]*Node
	lambda1, lambda2 *Node
}

// lagrangian builds the sparsity penalty for the target sparsity t (a
// float64 scalar node). Joint (the recipe's --total-loss-flag, train.py):
// ŝ = 1 − (r_img + r_txt)/(P_img + P_txt), v = max(t − ŝ, 0), and the
// penalty λ₁·v + λ₂·v² with λ = the mean of the towers' multipliers — so
// each tower's multiplier receives the gradient v/2 (λ₁) or v²/2 (λ₂),
// never negative. perTower (no flag, lagrangian_regularization): the sum
// over the towers of λ₁ᵀ·vᵀ + λ₂ᵀ·vᵀ² with each tower's own ŝᵀ. Only
// insufficient sparsity is penalised: at v = 0 the penalty and its
// gradients are 0. Computed in float64 and rounded to float32 at the end.
func lagrangian(towers [2]l0Tower, p [2]l0Params, t *Node, perTower bool) lagrangianTerms {
	g := t.Graph()
	f64 := func(x *Node) *Node { return ConvertDType(x, dtypes.Float64) }
	var lt lagrangianTerms
	zero := ScalarZero(g, dtypes.Float64)
	violation := func(expected *Node) *Node {
		d := Sub(t, expected)
		return Where(GreaterThan(d, zero), d, StopGradient(ZerosLike(d)))
	}
	penalty := func(l1, l2, v *Node) *Node {
		return Add(Mul(l1, v), Mul(l2, Square(v)))
	}
	total := 0
	var rSum *Node
	for i, tw := range towers {
		lt.remaining[i] = expectedParams(tw, p[i])
		lt.expectedTower[i] = OneMinus(DivScalar(lt.remaining[i], float64(tw.prunable())))
		total += tw.prunable()
		if rSum == nil {
			rSum = lt.remaining[i]
		} else {
			rSum = Add(rSum, lt.remaining[i])
		}
	}
	lt.expected = OneMinus(DivScalar(rSum, float64(total)))
	half := func(a, b *Node) *Node { return MulScalar(Add(a, b), 0.5) }
	lt.lambda1 = half(p[0].lambda1, p[1].lambda1)
	lt.lambda2 = half(p[0].lambda2, p[1].lambda2)
	var loss *Node
	if perTower {
		for i := range towers {
			l := penalty(f64(p[i].lambda1), f64(p[i].lambda2), violation(lt.expectedTower[i]))
			if loss == nil {
				loss = l
			} else {
				loss = Add(loss, l)
			}
		}
	} else {
		loss = penalty(MulScalar(Add(f64(p[0].lambda1), f64(p[1].lambda1)), 0.5),
			MulScalar(Add(f64(p[0].lambda2), f64(p[1].lambda2)), 0.5), violation(lt.expected))
	}
	lt.loss = ConvertDType(loss, dtype)
	return lt
}

// ---------------------------------------------------------------------------
// Noise.

// Noise supplies the uniform noise of the training-mode gate samples. The
// official loop draws one fresh sample per tower forward, shared by all
// layers; a Noise makes it reproducible and replayable.
type Noise interface {
	// Uniform fills u with the noise of one mask at a global step: tower
	// "image" or "text", kind "hidden", "heads" or "intermediate", u in
	// the row-major order of the log-alphas. Values must lie in
	// [float32(L0Epsilon), float32(1 − L0Epsilon)].
	Uniform(step int64, tower, kind string, u []float32) error
}

// SeededNoise is the default Noise: values U(ε, 1−ε) from a PCG generator
// seeded by the seed and (step, tower, kind), so that the noise of a step
// does not depend on what ran before it (a resumed run draws the same). It
// is safe for concurrent use.
type SeededNoise struct {
	Seed uint64
}

// Uniform implements Noise.
func (n SeededNoise) Uniform(step int64, tower, kind string, u []float32) error {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s/%s", step, tower, kind)
	r := rand.New(rand.NewPCG(n.Seed, h.Sum64()))
	lo, hi := float32(L0Epsilon), float32(1-L0Epsilon)
	for i := range u {
		v := float32(L0Epsilon + (1-2*L0Epsilon)*r.Float64())
		u[i] = min(max(v, lo), hi)
	}
	return nil
}

// checkNoise reports noise outside [float32(ε), float32(1−ε)].
func checkNoise(u []float32, tower, kind string) error {
	lo, hi := float32(L0Epsilon), float32(1-L0Epsilon)
	for i, v := range u {
		if !(v >= lo && v <= hi) {
			return fmt.Errorf("train: %s %s gate noise[%d] = %v outside [%v, %v]", tower, kind, i, v, lo, hi)
		}
	}
	return nil
}
