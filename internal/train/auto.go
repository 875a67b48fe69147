package train

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// AutoStudent is a masked student for auto weight inheritance (spec §6.2):
// a full-size CLIP model whose hidden dimensions, attention heads and MLP
// units of both towers are gated by learnable hard-concrete (L0) gates,
// with each tower's Lagrange multipliers. Its tower tensors live in a
// Student; its L0 parameters are named as ImageL0Prefix describes. It is not
// safe for concurrent use, and must not be used while an AutoStep built on
// it is running.
type AutoStudent struct {
	st     *Student
	towers [2]l0Tower
	l0     []string // L0 parameter names, sorted

	imageExec, textExec *model.Exec
}

// NewAutoStudent builds a masked student of architecture arch — a ViT image
// tower and a text tower, each with width/head-width heads and MLP width
// 4·width in every layer (the official masks assume that) — from tower
// weights under open_clip names (as NewStudent takes them) and L0
// parameters l0 (nil: InitialL0, the official start). The recipe's first
// stage starts from a copy of the teacher: weights = Inherit(teacher, arch,
// arch) (equal shapes, so every tensor is copied; logit_scale gets
// InitialLogitScale); later stages start from ReloadPruned of the previous
// stage's pruned student. Everything is copied.
func NewAutoStudent(arch *config.Arch, weights, l0 map[string]*tensor.Tensor) (*AutoStudent, error) {
	if arch == nil {
		return nil, fmt.Errorf("train: auto student: nil architecture")
	}
	towers, err := l0Towers(arch)
	if err != nil {
		return nil, fmt.Errorf("train: auto student: %w", err)
	}
	st, err := NewStudent(arch, weights)
	if err != nil {
		return nil, err
	}
	if l0 == nil {
		if l0, err = InitialL0(arch); err != nil {
			return nil, err
		}
	}
	vals, err := l0Values(towers, l0, false)
	if err != nil {
		return nil, fmt.Errorf("train: auto student: %w", err)
	}
	a := &AutoStudent{st: st, towers: towers, l0: l0Names(towers)}
	for _, name := range a.l0 {
		shape, _ := l0Shape(towers, name)
		if _, err := st.store.CreateVariable(varPath(name), newTensor(vals[name], shape)); err != nil {
			return nil, fmt.Errorf("train: auto student: %s: %w", name, err)
		}
	}
	return a, nil
}

// Arch returns the (full-size) architecture of the masked student.
func (a *AutoStudent) Arch() *config.Arch { return a.st.Arch() }

// Weights returns a copy of the tower tensors (as Student.Weights).
func (a *AutoStudent) Weights() (map[string]*tensor.Tensor, error) { return a.st.Weights() }

// L0 returns a copy of the L0 parameters: float32 log-alphas and
// multipliers (shape []).
func (a *AutoStudent) L0() (map[string]*tensor.Tensor, error) {
	out := make(map[string]*tensor.Tensor, len(a.l0))
	for _, name := range a.l0 {
		t, err := variableTensor(a.st.store.GetVariable(varPath(name)), name)
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// setL0 replaces the L0 parameters with checked values.
func (a *AutoStudent) setL0(vals map[string][]float32) error {
	for _, name := range a.l0 {
		v := a.st.store.GetVariable(varPath(name))
		if err := v.SetValue(newTensor(vals[name], v.Shape().Dimensions)); err != nil {
			return fmt.Errorf("train: %s: %w", name, err)
		}
	}
	return nil
}

// EvalMasks returns the deterministic masks of the current log-alphas (see
// the function EvalMasks).
func (a *AutoStudent) EvalMasks() (*Masks, error) {
	l0, err := a.L0()
	if err != nil {
		return nil, err
	}
	return EvalMasks(&a.st.arch, l0)
}

// Prune fuses the gates and compacts the student as the official fuse
// does: the deterministic masks of the current log-alphas, then Prune. The
// result is the irregular student's architecture and weights (logit_scale
// included), ready for NewStudent, WriteModel or the engine.
func (a *AutoStudent) Prune() (*config.Arch, map[string]*tensor.Tensor, error) {
	m, err := a.EvalMasks()
	if err != nil {
		return nil, nil, err
	}
	w, err := a.Weights()
	if err != nil {
		return nil, nil, err
	}
	return Prune(&a.st.arch, w, m)
}

// maskInputs returns the deterministic masks of one tower as graph inputs
// (hidden [W], heads [L, H], MLP units [L, 4W]).
func (a *AutoStudent) maskInputs(tower int) ([]*tensors.Tensor, error) {
	m, err := a.EvalMasks()
	if err != nil {
		return nil, err
	}
	gm := &m.Image
	if tower == 1 {
		gm = &m.Text
	}
	tw := a.towers[tower]
	return []*tensors.Tensor{
		tensors.FromFlatDataAndDimensions(slices.Clone(gm.Hidden), tw.width),
		tensors.FromFlatDataAndDimensions(slices.Concat(gm.Heads...), tw.layers, tw.heads),
		tensors.FromFlatDataAndDimensions(slices.Concat(gm.MLP...), tw.layers, tw.inter()),
	}, nil
}

// maskNodes wraps mask inputs (hidden, heads, MLP units) as towerMasks.
func maskNodes(hidden, heads, inter *Node) *towerMasks {
	return &towerMasks{hidden: hidden, keep: keepMask(hidden), heads: heads, inter: inter}
}

// EncodeImages runs the masked image tower in evaluation mode (the
// deterministic masks of the current log-alphas, as the official encoder in
// eval()) on n images [n, 3, S, S] and returns the raw image features
// [n, E]. This is the masked model, which differs from its Prune (see
// Prune).
func (a *AutoStudent) EncodeImages(ctx context.Context, pixels []float32, n int) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("train: encode images: %w", err)
	}
	sz := a.st.arch.Vision.ImageSize
	if n <= 0 || len(pixels) != n*3*sz*sz {
		return nil, fmt.Errorf("train: encode images: %d pixel values for %d images of 3×%d×%d", len(pixels), n, sz, sz)
	}
	masks, err := a.maskInputs(0)
	if err != nil {
		return nil, err
	}
	if a.imageExec == nil {
		e, err := model.NewExec(a.st.backend, a.st.store, func(scope *model.Scope, x, hz, headz, iz *Node) *Node {
			return encodeViT(scope.At("visual"), &a.st.arch.Vision, x, maskNodes(hz, headz, iz))
		})
		if err != nil {
			return nil, fmt.Errorf("train: encode images: %w", err)
		}
		a.imageExec = e
	}
	out, err := a.imageExec.Call(newTensor(pixels, []int{n, 3, sz, sz}), masks[0], masks[1], masks[2])
	if err != nil {
		return nil, fmt.Errorf("train: encode images: %w", err)
	}
	return flatF32(out[0])
}

// EncodeTexts runs the masked text tower in evaluation mode on token rows
// and returns the raw text features [len(ids), E] (see EncodeImages).
func (a *AutoStudent) EncodeTexts(ctx context.Context, ids [][]int) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("train: encode texts: %w", err)
	}
	tok, eot, err := tokenInputs(&a.st.arch.Text, ids)
	if err != nil {
		return nil, fmt.Errorf("train: encode texts: %w", err)
	}
	masks, err := a.maskInputs(1)
	if err != nil {
		return nil, err
	}
	if a.textExec == nil {
		e, err := model.NewExec(a.st.backend, a.st.store, func(scope *model.Scope, ids, eot, hz, headz, iz *Node) *Node {
			return encodeTextMasked(scope, &a.st.arch.Text, ids, eot, maskNodes(hz, headz, iz))
		})
		if err != nil {
			return nil, fmt.Errorf("train: encode texts: %w", err)
		}
		a.textExec = e
	}
	out, err := a.textExec.Call(tok, eot, masks[0], masks[1], masks[2])
	if err != nil {
		return nil, fmt.Errorf("train: encode texts: %w", err)
	}
	return flatF32(out[0])
}

// AutoMetrics describe one masked training step. The embedded Metrics
// describe the whole step: Loss is the total (distillation + Lagrangian),
// GradNorm the norm over every parameter, L0 included.
type AutoMetrics struct {
	Metrics
	// GlobalStep is the step of the sparsity schedule passed to Run.
	GlobalStep int64
	// Distillation is the loss without the Lagrangian; Lagrangian the
	// sparsity penalty.
	Distillation, Lagrangian float64
	// Target is the target sparsity t at GlobalStep; Expected the joint
	// expected sparsity ŝ = 1 − (r_img + r_txt)/(P_img + P_txt) (the one
	// the recipe's penalty uses); ExpectedImage/ExpectedText each tower's
	// 1 − r/P (the ones L0Config.PerTower uses), RemainingImage and
	// RemainingText the expected remaining prunable parameters r.
	Target, Expected              float64
	ExpectedImage, ExpectedText   float64
	RemainingImage, RemainingText float64
	// Lambda1 and Lambda2 are the multipliers the joint penalty used (the
	// means over the towers, before the step).
	Lambda1, Lambda2 float64
	// LogAlphaLR and LambdaLR are the L0 learning rates applied.
	LogAlphaLR, LambdaLR float64
	// Clamped is the number of log-alphas the clamp to [ln 0.01, ln 100]
	// moved after the optimizer step.
	Clamped int
}

// AutoStep runs masked training steps of an AutoStudent, as the official
// loop does before --prune-step: teacher forward, student forward with
// fresh training-mode gate samples (one per tower and step, from a Noise),
// distillation loss plus the Lagrangian, backward, global-norm clipping
// over every parameter (the log-alphas and multipliers included), AdamW for
// the towers and logit scale (the official groups of Step) and a fourth
// AdamW for the L0 parameters (log-alphas at LogAlphaLR, multipliers at
// LambdaLR, no weight decay), then the clamp of every log-alpha and the
// logit-scale reset — all but the teacher in one compiled graph. An
// AutoStep is not safe for concurrent use.
type AutoStep struct {
	a     *AutoStudent
	s     *Step
	cfg   L0Config
	noise Noise

	exec, gradExec *model.Exec
}

// NewAutoStep prepares masked steps of batch size b for student, distilling
// from teacher (nil: the CLIP loss) with the towers' hyper-parameters h (as
// NewStep), the L0 settings cfg, and the gate noise (nil: SeededNoise{0}).
// All four optimizers' moments start at zero.
func NewAutoStep(student *AutoStudent, teacher Teacher, b int, h Hyper, cfg L0Config, noise Noise) (*AutoStep, error) {
	if student == nil {
		return nil, fmt.Errorf("train: nil auto student")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s, err := newStep(student.st, teacher, b, h, false)
	if err != nil {
		return nil, err
	}
	if h.Precision != FP32 {
		return nil, fmt.Errorf("train: precision %s: auto inheritance runs in fp32 only", h.Precision)
	}
	for _, name := range student.l0 {
		shape := student.st.store.GetVariable(varPath(name)).Shape()
		for _, kind := range []string{"exp_avg", "exp_avg_sq"} {
			path := momentPath(kind, name)
			if v := student.st.store.GetVariable(path); v != nil {
				err = v.SetValue(tensors.FromShape(shape))
			} else {
				_, err = student.st.store.CreateVariable(path, tensors.FromShape(shape))
			}
			if err != nil {
				return nil, fmt.Errorf("train: %s %s: %w", kind, name, err)
			}
		}
	}
	if noise == nil {
		noise = SeededNoise{}
	}
	return &AutoStep{a: student, s: s, cfg: cfg, noise: noise}, nil
}

// Config returns the step's L0 settings.
func (a *AutoStep) Config() L0Config { return a.cfg }

// Hyper returns the towers' hyper-parameters.
func (a *AutoStep) Hyper() Hyper { return a.s.hyper }

// Count returns the number of optimizer steps taken (the step count of all
// four AdamW optimizers).
func (a *AutoStep) Count() int64 { return a.s.count }

// Per-step L0 scalars fed to the graph.
const (
	inL0NegStepLoga = iota // −lr_loga/(1 − β₁ᵏ)
	inL0NegStepLam         // −lr_λ/(1 − β₁ᵏ)
	inL0BC2Sqrt            // √(1 − β₂ᵏ)
	numL0Scalars
)

// Graph outputs after those of Step.
const (
	outDistill = numOutputs + iota
	outLagrangian
	outExpected
	outExpImage
	outExpText
	outRemImage
	outRemText
	outLambda1
	outLambda2
	outClamped
	numAutoOutputs
)

// Run runs one masked training step at global step step (the sparsity
// schedule's; the official loop's step, counted from 0 over the whole run)
// with the towers' learning rate lr (the official schedule is
// CosineLR(base, PruneStep, total, step)). step must be below
// L0Config.PruneStep: at the prune step the student is fused instead
// (AutoStudent.Prune). A non-finite loss or gradient norm returns the
// metrics and an error wrapping ErrNonFinite: no parameter moved but the
// log-alpha clamp and the logit-scale reset still applied, as in the
// official loop.
func (a *AutoStep) Run(ctx context.Context, images []float32, tokens [][]int, step int64, lr float64) (AutoMetrics, error) {
	m := a.newMetrics(step)
	m.LR = lr
	if err := checkLR(lr); err != nil {
		return m, err
	}
	if step < 0 || step >= int64(a.cfg.PruneStep) {
		return m, fmt.Errorf("train: auto step at global step %d: masked steps run before the prune step %d (fuse the gates with AutoStudent.Prune at it)", step, a.cfg.PruneStep)
	}
	in, tScale, err := a.inputs(ctx, images, tokens, step, lr)
	if err != nil {
		return m, err
	}
	if a.exec == nil {
		e, err := model.NewExec(a.s.st.backend, a.s.st.store, func(scope *model.Scope, in []*Node) []*Node {
			return a.graph(scope, in, true)
		})
		if err != nil {
			return m, fmt.Errorf("train: auto step: %w", err)
		}
		a.exec = e
	}
	out, err := a.exec.Call(anys(in)...)
	if err != nil {
		return m, fmt.Errorf("train: auto step: %w", err)
	}
	if err := a.readMetrics(&m, out, tScale); err != nil {
		return m, err
	}
	if m.Skipped {
		return m, fmt.Errorf("train: auto step %d: %w (loss %v, gradient norm %v): update skipped", a.s.count+1, ErrNonFinite, m.Loss, m.GradNorm)
	}
	a.s.count++
	m.Step = a.s.count
	return m, nil
}

// Gradients evaluates the loss and the gradient of every parameter before
// clipping — tower tensors under open_clip names, L0 parameters under their
// names — with the gate noise of global step step, without changing
// anything.
func (a *AutoStep) Gradients(ctx context.Context, images []float32, tokens [][]int, step int64) (map[string]*tensor.Tensor, AutoMetrics, error) {
	m := a.newMetrics(step)
	in, tScale, err := a.inputs(ctx, images, tokens, step, 0)
	if err != nil {
		return nil, m, err
	}
	if a.gradExec == nil {
		e, err := model.NewExec(a.s.st.backend, a.s.st.store, func(scope *model.Scope, in []*Node) []*Node {
			return a.graph(scope, in, false)
		})
		if err != nil {
			return nil, m, fmt.Errorf("train: auto gradients: %w", err)
		}
		a.gradExec = e
	}
	out, err := a.gradExec.Call(anys(in)...)
	if err != nil {
		return nil, m, fmt.Errorf("train: auto gradients: %w", err)
	}
	if err := a.readMetrics(&m, out, tScale); err != nil {
		return nil, m, err
	}
	names := append(a.s.usedParams(), a.a.l0...)
	grads := make(map[string]*tensor.Tensor, len(names))
	for i, name := range names {
		o := out[numAutoOutputs+i]
		v, err := flatF32(o)
		if err != nil {
			return nil, m, err
		}
		shape := slices.Clone(o.Shape().Dimensions)
		if name == "logit_scale" {
			shape = slices.Clone(a.s.st.scaleShape)
		}
		grads[name] = tensor.FromFloat32(name, shape, v)
	}
	return grads, m, nil
}

// newMetrics returns the metrics fields known before a step runs.
func (a *AutoStep) newMetrics(step int64) AutoMetrics {
	nan := math.NaN()
	return AutoMetrics{
		Metrics:    Metrics{Step: a.s.count, SoftI2T: nan, SoftT2I: nan, Hard: nan, TeacherScale: nan},
		GlobalStep: step, Target: a.cfg.Target(step),
		LogAlphaLR: a.cfg.LogAlphaLR, LambdaLR: a.cfg.LambdaLR,
	}
}

// inputs returns the graph inputs of one step: the batch and teacher
// features (Step.inputs), the six noise tensors, the target sparsity, the
// L0 scalars and the towers' scalars.
func (a *AutoStep) inputs(ctx context.Context, images []float32, tokens [][]int, step int64, lr float64) ([]*tensors.Tensor, float32, error) {
	in, tScale, err := a.s.inputs(ctx, images, tokens)
	if err != nil {
		return nil, 0, err
	}
	for _, tw := range a.a.towers {
		for _, kind := range l0Kinds {
			shape := tw.shape(kind)
			n := 1
			for _, d := range shape {
				n *= d
			}
			u := make([]float32, n)
			if err := a.noise.Uniform(step, tw.name, kind, u); err != nil {
				return nil, 0, fmt.Errorf("train: gate noise: %w", err)
			}
			if err := checkNoise(u, tw.name, kind); err != nil {
				return nil, 0, err
			}
			in = append(in, tensors.FromFlatDataAndDimensions(u, shape...))
		}
	}
	c := &a.cfg
	k := float64(a.s.count + 1)
	bc1 := 1 - math.Pow(c.Beta1, k)
	l0 := make([]float32, numL0Scalars)
	l0[inL0NegStepLoga] = float32(-(c.LogAlphaLR / bc1))
	l0[inL0NegStepLam] = float32(-(c.LambdaLR / bc1))
	l0[inL0BC2Sqrt] = float32(math.Sqrt(1 - math.Pow(c.Beta2, k)))
	in = append(in, tensors.FromScalar(c.Target(step)), tensors.FromFlatDataAndDimensions(l0, numL0Scalars),
		a.s.stepScalars(lr, tScale))
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("train: auto step: %w", err)
	}
	return in, tScale, nil
}

// graph builds the masked step (update true) or the gradient evaluation.
func (a *AutoStep) graph(scope *model.Scope, in []*Node, update bool) []*Node {
	g := in[0].Graph()
	s := a.s
	arch := &s.st.arch
	h := &s.hyper
	n := len(in)
	sc, l0sc, target := in[n-1], in[n-2], in[n-3]
	noise := in[n-9 : n-3]
	scalar := func(x *Node, i int) *Node { return Reshape(Slice(x, AxisElem(i)), []int{}...) }
	get := func(name string) *Node { return s.st.store.GetVariable(varPath(name)).NodeValue(g) }

	var p [2]l0Params
	var masks [2]*towerMasks
	for i, tw := range a.a.towers {
		p[i] = l0Params{
			hidden: get(tw.param("hidden_loga")), heads: get(tw.param("heads_loga")),
			inter: get(tw.param("intermediate_loga")), lambda1: get(tw.param("lambda_1")), lambda2: get(tw.param("lambda_2")),
		}
		zh := sampleGates(p[i].hidden, noise[3*i])
		masks[i] = &towerMasks{hidden: zh, keep: keepMask(zh),
			heads: sampleGates(p[i].heads, noise[3*i+1]), inter: sampleGates(p[i].inter, noise[3*i+2])}
	}
	img := l2Normalize(encodeViT(scope.At("visual"), &arch.Vision, in[0], masks[0]))
	txt := l2Normalize(encodeTextMasked(scope, &arch.Text, in[1], in[2], masks[1]))
	thetaVar := scope.VariableWithShape("logit_scale", shapes.Make(dtype))
	studentS := Exp(thetaVar.NodeValue(g))
	var lt lossTerms
	if s.teacher != nil {
		lt = affinityLoss(img, txt, in[3], in[4], studentS, scalar(sc, inTeacherS), h.Alpha, h.Weight)
	} else {
		lt.hard = clipLoss(img, txt, studentS)
		lt.total = lt.hard
	}
	lag := lagrangian(a.a.towers, p, target, a.cfg.PerTower)
	total := Add(lt.total, lag.loss)

	used := s.usedParams()
	nodes := make([]*Node, 0, len(used)+len(a.a.l0))
	for _, name := range used {
		nodes = append(nodes, get(name))
	}
	for _, name := range a.a.l0 {
		nodes = append(nodes, get(name))
	}
	grads := Gradient(total, nodes...)
	gradNorm, coef := s.clip(grads)
	finite := LogicalAnd(IsFinite(total), IsFinite(gradNorm))
	zero := ScalarZero(g, dtype)
	orNaN := func(x *Node) *Node {
		if x == nil {
			return Scalar(g, dtype, math.NaN())
		}
		return x
	}
	f32 := func(x *Node) *Node { return ConvertDType(x, dtype) }
	outs := []*Node{total, orNaN(lt.softI2T), orNaN(lt.softT2I), orNaN(lt.hard), gradNorm, coef, studentS,
		Where(finite, ScalarOne(g, dtype), zero), img, txt,
		lt.total, lag.loss, f32(lag.expected), f32(lag.expectedTower[0]), f32(lag.expectedTower[1]),
		f32(lag.remaining[0]), f32(lag.remaining[1]), lag.lambda1, lag.lambda2}
	if !update {
		outs = append(outs, ScalarZero(g, dtype))
		return append(outs, grads...)
	}
	s.update(scope, used, grads[:len(used)], coef, finite, sc)
	clamped := a.updateL0(grads[len(used):], coef, finite, l0sc)
	return append(outs, clamped)
}

// updateL0 applies the L0 AdamW (PyTorch 1.13 single-tensor arithmetic, no
// weight decay) to the L0 parameters with their gradients scaled by coef —
// unless finite is false — and then clamps every log-alpha to
// [ln 0.01, ln 100]. It returns the number of log-alphas the clamp moved.
func (a *AutoStep) updateL0(grads []*Node, coef, finite, l0sc *Node) *Node {
	g := coef.Graph()
	c := &a.cfg
	scalar := func(i int) *Node { return Reshape(Slice(l0sc, AxisElem(i)), []int{}...) }
	bc2 := scalar(inL0BC2Sqrt)
	lo, hi := Scalar(g, dtype, l0ClampLo), Scalar(g, dtype, l0ClampHi)
	clamped := ScalarZero(g, dtype)
	for i, name := range a.a.l0 {
		v := a.s.st.store.GetVariable(varPath(name))
		gr := Mul(grads[i], coef)
		p := v.NodeValue(g)
		mVar := a.s.st.store.GetVariable(momentPath("exp_avg", name))
		vVar := a.s.st.store.GetVariable(momentPath("exp_avg_sq", name))
		m0, v0 := mVar.NodeValue(g), vVar.NodeValue(g)
		m1 := Add(MulScalar(m0, c.Beta1), MulScalar(gr, 1-c.Beta1))
		v1 := Add(MulScalar(v0, c.Beta2), Mul(MulScalar(gr, 1-c.Beta2), gr))
		denom := AddScalar(Div(Sqrt(v1), bc2), c.Eps)
		negStep := scalar(inL0NegStepLoga)
		isLambda := strings.HasSuffix(name, ".lambda_1") || strings.HasSuffix(name, ".lambda_2")
		if isLambda {
			negStep = scalar(inL0NegStepLam)
		}
		p2 := Where(finite, Add(p, Div(Mul(m1, negStep), denom)), p)
		if !isLambda {
			pc := Min(Max(p2, lo), hi)
			moved := Where(NotEqual(pc, p2), OnesLike(p2), ZerosLike(p2))
			clamped = Add(clamped, ReduceAllSum(moved))
			p2 = pc
		}
		v.SetNodeValue(p2)
		mVar.SetNodeValue(Where(finite, m1, m0))
		vVar.SetNodeValue(Where(finite, v1, v0))
	}
	return clamped
}

// readMetrics fills m from the graph outputs.
func (a *AutoStep) readMetrics(m *AutoMetrics, out []*tensors.Tensor, teacherScale float32) error {
	if len(out) < numAutoOutputs {
		return fmt.Errorf("train: auto step: %d outputs, want at least %d", len(out), numAutoOutputs)
	}
	if err := a.s.readMetrics(&m.Metrics, out); err != nil {
		return err
	}
	sc := func(i int) float64 { return float64(tensors.ToScalar[float32](out[i])) }
	m.Distillation, m.Lagrangian = sc(outDistill), sc(outLagrangian)
	m.Expected, m.ExpectedImage, m.ExpectedText = sc(outExpected), sc(outExpImage), sc(outExpText)
	m.RemainingImage, m.RemainingText = sc(outRemImage), sc(outRemText)
	m.Lambda1, m.Lambda2 = sc(outLambda1), sc(outLambda2)
	m.Clamped = int(sc(outClamped))
	if a.s.teacher != nil {
		m.TeacherScale = float64(teacherScale)
	}
	return nil
}

// State copies the complete training state: the tower weights and the L0
// parameters (under their names) in Weights, the moments of all four
// AdamW optimizers ("exp_avg.<name>", "exp_avg_sq.<name>", L0 ones
// included) in Moments, and the step count.
func (a *AutoStep) State() (*State, error) {
	st, err := a.s.State()
	if err != nil {
		return nil, err
	}
	l0, err := a.a.L0()
	if err != nil {
		return nil, err
	}
	for name, t := range l0 {
		st.Weights[name] = t
		for _, kind := range []string{"exp_avg", "exp_avg_sq"} {
			key := kind + "." + name
			t, err := variableTensor(a.s.st.store.GetVariable(momentPath(kind, name)), key)
			if err != nil {
				return nil, err
			}
			st.Moments[key] = t
		}
	}
	return st, nil
}

// Restore replaces the step's state (the student's weights, L0 parameters
// and all moments) with st, which must hold exactly the tensors State
// returns for this architecture. Nothing changes when it fails.
func (a *AutoStep) Restore(st *State) error {
	if st == nil || st.Step < 0 {
		return fmt.Errorf("train: restore: invalid state")
	}
	isL0 := func(name string) bool {
		_, ok := l0Shape(a.a.towers, name)
		return ok
	}
	tower := &State{Step: st.Step, Weights: make(map[string]*tensor.Tensor), Moments: make(map[string]*tensor.Tensor)}
	l0 := make(map[string]*tensor.Tensor)
	for name, t := range st.Weights {
		if isL0(name) {
			l0[name] = t
		} else {
			tower.Weights[name] = t
		}
	}
	moments := make(map[string][]float32)
	for key, t := range st.Moments {
		_, p, _ := strings.Cut(key, ".")
		if !isL0(p) {
			tower.Moments[key] = t
			continue
		}
		want, _ := l0Shape(a.a.towers, p)
		if t == nil || !slices.Equal(t.Shape, want) || t.DType != tensor.F32 {
			return fmt.Errorf("train: restore: %s: want F32 %v", key, want)
		}
		v, err := t.Float32()
		if err != nil {
			return fmt.Errorf("train: restore: %w", err)
		}
		moments[key] = v
	}
	if len(moments) != 2*len(a.a.l0) {
		return fmt.Errorf("train: restore: %d L0 moment tensors, want %d", len(moments), 2*len(a.a.l0))
	}
	vals, err := l0Values(a.a.towers, l0, false)
	if err != nil {
		return fmt.Errorf("train: restore: %w", err)
	}
	if err := a.s.Restore(tower); err != nil {
		return err
	}
	if err := a.a.setL0(vals); err != nil {
		return fmt.Errorf("train: restore: %w", err)
	}
	for key, v := range moments {
		kind, name, _ := strings.Cut(key, ".")
		mv := a.s.st.store.GetVariable(momentPath(kind, name))
		if err := mv.SetValue(newTensor(v, mv.Shape().Dimensions)); err != nil {
			return fmt.Errorf("train: restore: %s: %w", key, err)
		}
	}
	return nil
}
