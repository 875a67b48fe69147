package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// ErrNonFinite is returned (wrapped, with the step's Metrics) when the loss
// or the gradient norm of a step is NaN or infinite. As in the official
// loop, the optimizer update was skipped: weights, AdamW moments and the
// step count are unchanged, while BatchNorm running statistics and counters
// moved (the forward pass ran) and logit_scale was reset.
var ErrNonFinite = errors.New("non-finite loss")

// Metrics describe one training step.
type Metrics struct {
	// Step is the number of optimizer steps taken after this one (the AdamW
	// step count).
	Step int64
	// LR is the learning rate passed to Run.
	LR float64
	// Loss is the total loss.
	Loss float64
	// SoftI2T and SoftT2I are the unweighted soft cross-entropies of the
	// affinity loss, Hard the unweighted CLIP loss; NaN when not computed
	// (no teacher; α = 1).
	SoftI2T, SoftT2I, Hard float64
	// GradNorm is the global gradient norm before clipping, ClipCoef the
	// factor applied to every gradient, min(1, ClipNorm/(GradNorm+1e-6)).
	GradNorm, ClipCoef float64
	// StudentScale and TeacherScale are the multipliers the loss used
	// (exp of the logit_scale parameters); TeacherScale is NaN without a
	// teacher.
	StudentScale, TeacherScale float64
	// Skipped reports a non-finite loss or gradient norm: the update was
	// not applied.
	Skipped bool
	// ImageFeatures and TextFeatures are the student's L2-normalised
	// features [B, E] that entered the loss.
	ImageFeatures, TextFeatures []float32
}

// Step runs training steps of a student: teacher forward (no gradients),
// student forward in train mode, loss, backward, global-norm clipping,
// AdamW with the official parameter groups, and the logit-scale reset, all
// but the teacher in one compiled GoMLX graph (compiled on the first Run).
// It holds the AdamW moments and step count. A Step is not safe for
// concurrent use; an error other than ErrNonFinite may leave it unusable
// (Restore a State to continue).
type Step struct {
	st      *Student
	teacher Teacher
	hyper   Hyper
	batch   int
	params  []string // trainable tensors (variables without running stats), sorted
	count   int64
	fused   *GraphTeacher // teacher built into the step graph (see GraphTeacher)

	exec, gradExec *model.Exec
	lossExec       *model.Exec // Loss (step_forward.go)
	backExec       *model.Exec // Backward (step_forward.go)
}

// NewStep prepares training steps of batch size b for student, distilling
// from teacher (nil: train with the plain CLIP loss) with hyper-parameters
// h. The teacher must take images of the student's size. The AdamW moments
// start at zero and live in the student: use one Step per Student at a time.
// A *GraphTeacher on the student's backend runs inside the step's graph.
func NewStep(student *Student, teacher Teacher, b int, h Hyper) (*Step, error) {
	return newStep(student, teacher, b, h, true)
}

// newStep is NewStep; fuse lets a GraphTeacher join the step graph (the
// other step kinds feed teacher features as inputs).
func newStep(student *Student, teacher Teacher, b int, h Hyper, fuse bool) (*Step, error) {
	if student == nil {
		return nil, fmt.Errorf("train: nil student")
	}
	if err := h.validate(); err != nil {
		return nil, err
	}
	if teacher != nil && h.Weight == 0 {
		return nil, fmt.Errorf("train: distillation weight 0: the loss would be empty")
	}
	if b < 2 {
		return nil, fmt.Errorf("train: batch size %d: contrastive losses need at least 2 pairs", b)
	}
	if teacher != nil && teacher.ImageSize() != student.arch.Vision.ImageSize {
		return nil, fmt.Errorf("train: teacher image size %d differs from the student's %d",
			teacher.ImageSize(), student.arch.Vision.ImageSize)
	}
	s := &Step{st: student, teacher: teacher, hyper: h, batch: b}
	if gt, ok := teacher.(*GraphTeacher); ok && fuse && gt.fusable(student) {
		if err := gt.attach(student.store); err != nil {
			return nil, err
		}
		s.fused = gt
	}
	for _, name := range student.vars {
		if strings.HasSuffix(name, ".running_mean") || strings.HasSuffix(name, ".running_var") {
			continue
		}
		s.params = append(s.params, name)
		shape := student.store.GetVariable(varPath(name)).Shape()
		for _, kind := range []string{"exp_avg", "exp_avg_sq"} {
			path := momentPath(kind, name)
			var err error
			if v := student.store.GetVariable(path); v != nil { // an earlier Step's
				err = v.SetValue(tensors.FromShape(shape))
			} else {
				_, err = student.store.CreateVariable(path, tensors.FromShape(shape))
			}
			if err != nil {
				return nil, fmt.Errorf("train: %s %s: %w", kind, name, err)
			}
		}
	}
	return s, nil
}

// momentPath is the Store path of an AdamW moment ("exp_avg" or
// "exp_avg_sq") of tensor name.
func momentPath(kind, name string) string {
	return "/optim/" + kind + varPath(name)
}

// Hyper returns the step's hyper-parameters.
func (s *Step) Hyper() Hyper { return s.hyper }

// Count returns the number of optimizer steps taken (the AdamW step count).
func (s *Step) Count() int64 { return s.count }

// stepInputs are the per-step scalars fed to the graph, so that the
// learning rate and bias corrections change without recompiling.
const (
	inDecay    = iota // 1 − lr·wd
	inNegStep         // −lr/(1 − β₁ᵏ)
	inBC2Sqrt         // √(1 − β₂ᵏ)
	inTeacherS        // teacher scale multiplier
	numScalars
)

// Run runs one training step on a batch: images [B, 3, S, S] (normalised,
// NCHW), tokens B rows of at most the context length (zero-padded), at
// learning rate lr. A non-finite loss or gradient norm returns the metrics
// and an error wrapping ErrNonFinite (the update was skipped).
func (s *Step) Run(ctx context.Context, images []float32, tokens [][]int, lr float64) (Metrics, error) {
	m := s.emptyMetrics(lr)
	if err := checkLR(lr); err != nil {
		return m, err
	}
	in, tScale, err := s.inputs(ctx, images, tokens)
	if err != nil {
		return m, err
	}
	in = append(in, s.stepScalars(lr, tScale))
	if err := ctx.Err(); err != nil {
		return m, fmt.Errorf("train: step: %w", err)
	}
	if s.exec == nil {
		e, err := model.NewExec(s.st.backend, s.st.store, func(scope *model.Scope, in []*Node) []*Node {
			return s.graph(scope, in, true)
		})
		if err != nil {
			return m, fmt.Errorf("train: step: %w", err)
		}
		s.exec = e
	}
	out, err := s.exec.Call(anys(in)...)
	if err != nil {
		return m, fmt.Errorf("train: step: %w", err)
	}
	return s.afterUpdate(m, out, tScale)
}

// emptyMetrics returns the metrics of the coming step at learning rate lr
// before it has run: loss terms and teacher scale NaN.
func (s *Step) emptyMetrics(lr float64) Metrics {
	return Metrics{LR: lr, Step: s.count, SoftI2T: math.NaN(), SoftT2I: math.NaN(), Hard: math.NaN(), TeacherScale: math.NaN()}
}

// checkLR rejects a learning rate no step can use (negative, infinite, NaN).
func checkLR(lr float64) error {
	if !(lr >= 0) || math.IsInf(lr, 0) {
		return fmt.Errorf("train: learning rate %v", lr)
	}
	return nil
}

// afterUpdate books an executed update step (Run, DataParallelStep.Run):
// it advances the optimizer counters, reads the metrics from the graph's
// outputs out, and counts the step, or reports ErrNonFinite when the graph
// skipped the update.
func (s *Step) afterUpdate(m Metrics, out []*tensors.Tensor, tScale float32) (Metrics, error) {
	for name := range s.st.counters {
		s.st.counters[name]++
	}
	if err := s.readMetrics(&m, out); err != nil {
		return m, err
	}
	if s.teacher != nil {
		m.TeacherScale = float64(tScale)
	}
	if m.Skipped {
		return m, fmt.Errorf("train: step %d: %w (loss %v, gradient norm %v): update skipped", s.count+1, ErrNonFinite, m.Loss, m.GradNorm)
	}
	s.count++
	m.Step = s.count
	return m, nil
}

// Gradients evaluates the loss and the gradient of every trainable tensor
// (before clipping) on a batch, without changing anything: the student's
// BatchNorm layers use the batch statistics (train mode) but keep their
// running statistics. Names are open_clip names; tensors that do not
// influence the loss (e.g. the ln_2 of a zero-width MLP) are left out.
func (s *Step) Gradients(ctx context.Context, images []float32, tokens [][]int) (map[string]*tensor.Tensor, Metrics, error) {
	m := s.emptyMetrics(0)
	in, tScale, err := s.inputs(ctx, images, tokens)
	if err != nil {
		return nil, m, err
	}
	in = append(in, s.stepScalars(0, tScale))
	var used []string
	if s.gradExec == nil {
		e, err := model.NewExec(s.st.backend, s.st.store, func(scope *model.Scope, in []*Node) []*Node {
			return s.graph(scope, in, false)
		})
		if err != nil {
			return nil, m, fmt.Errorf("train: gradients: %w", err)
		}
		s.gradExec = e
	}
	out, err := s.gradExec.Call(anys(in)...)
	if err != nil {
		return nil, m, fmt.Errorf("train: gradients: %w", err)
	}
	if err := s.readMetrics(&m, out); err != nil {
		return nil, m, err
	}
	if s.teacher != nil {
		m.TeacherScale = float64(tScale)
	}
	used = s.usedParams()
	grads := make(map[string]*tensor.Tensor, len(used))
	for i, name := range used {
		v, err := flatF32(out[numOutputs+i])
		if err != nil {
			return nil, m, err
		}
		shape := out[numOutputs+i].Shape().Dimensions
		if name == "logit_scale" {
			shape = slices.Clone(s.st.scaleShape)
		}
		grads[name] = tensor.FromFloat32(name, shape, v)
	}
	return grads, m, nil
}

// usedParams lists the trainable tensors that influence the loss, in
// s.params order (what the graph differentiates).
func (s *Step) usedParams() []string {
	var used []string
	for _, name := range s.params {
		if !s.inert(name) {
			used = append(used, name)
		}
	}
	return used
}

// inert reports tensors the graphs never read: the ln_2 of a block whose
// MLP has width 0.
func (s *Step) inert(name string) bool {
	rest, ok := strings.CutSuffix(name, ".ln_2.weight")
	if !ok {
		rest, ok = strings.CutSuffix(name, ".ln_2.bias")
	}
	if !ok {
		return false
	}
	tr := &s.st.arch.Text.Transformer
	if p, ok := strings.CutPrefix(rest, "visual.transformer.resblocks."); ok {
		rest, tr = p, &s.st.arch.Vision.Transformer
	} else if p, ok := strings.CutPrefix(rest, "transformer.resblocks."); ok {
		rest = p
	} else {
		return false
	}
	var i int
	if _, err := fmt.Sscanf(rest, "%d", &i); err != nil || i < 0 || i >= len(tr.Blocks) {
		return false
	}
	return tr.Blocks[i].HasMLP && tr.Blocks[i].MLP == 0
}

// inputs checks a batch, runs the teacher and returns the graph inputs
// (without the scalars) and the teacher scale multiplier.
func (s *Step) inputs(ctx context.Context, images []float32, tokens [][]int) ([]*tensors.Tensor, float32, error) {
	b := s.batch
	sz := s.st.arch.Vision.ImageSize
	if len(images) != b*3*sz*sz {
		return nil, 0, fmt.Errorf("train: step: %d pixel values, want %d (%d images of 3×%d×%d)", len(images), b*3*sz*sz, b, sz, sz)
	}
	if len(tokens) != b {
		return nil, 0, fmt.Errorf("train: step: %d token rows, want %d", len(tokens), b)
	}
	ids, eot, err := tokenInputs(&s.st.arch.Text, tokens)
	if err != nil {
		return nil, 0, fmt.Errorf("train: step: tokens: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("train: step: %w", err)
	}
	in := []*tensors.Tensor{tensors.FromFlatDataAndDimensions(slices.Clone(images), b, 3, sz, sz), ids, eot}
	if s.teacher == nil {
		return in, 0, nil
	}
	if s.fused == nil {
		ti, tt, err := teacherFeatures(ctx, s.teacher, images, tokens, b)
		if err != nil {
			return nil, 0, err
		}
		e := s.teacher.EmbedDim()
		in = append(in, tensors.FromFlatDataAndDimensions(ti, b, e), tensors.FromFlatDataAndDimensions(tt, b, e))
	}
	theta := s.teacher.LogitScale()
	if s.hyper.LogitScale > 0 {
		theta = float32(math.Log(s.hyper.LogitScale))
	}
	return in, float32(math.Exp(float64(theta))), nil
}

// Graph outputs before the gradients (Gradients) or after nothing (Run).
const (
	outLoss = iota
	outSoftI2T
	outSoftT2I
	outHard
	outGradNorm
	outClipCoef
	outStudentS
	outFinite
	outImage
	outText
	numOutputs
)

// forwardLoss builds the student's forward pass on the batch inputs in
// (BatchNorm in mode) and the loss: the normalised image and text
// features, the student's logit scale, and the loss terms (the affinity
// loss against the teacher, or the CLIP loss without one). graph and
// lossGraph share it.
func (s *Step) forwardLoss(scope *model.Scope, in []*Node, mode bnMode) (img, txt, studentS *Node, lt lossTerms) {
	g := in[0].Graph()
	arch := &s.st.arch
	h := &s.hyper
	img = l2Normalize(encodeImage(scope.At("visual"), &arch.Vision, in[0], mode))
	txt = l2Normalize(encodeText(scope, &arch.Text, in[1], in[2]))
	studentS = Exp(scope.VariableWithShape("logit_scale", shapes.Make(dtype)).NodeValue(g))
	if s.teacher != nil {
		ti, tt := s.teacherNodes(scope, in)
		tScale := Reshape(Slice(in[len(in)-1], AxisElem(inTeacherS)), []int{}...)
		lt = affinityLoss(img, txt, ti, tt, studentS, tScale, h.Alpha, h.Weight)
	} else {
		lt.hard = clipLoss(img, txt, studentS)
		lt.total = lt.hard
	}
	return img, txt, studentS, lt
}

// graph builds the step (update true) or the gradient evaluation.
func (s *Step) graph(scope *model.Scope, in []*Node, update bool) []*Node {
	g := in[0].Graph()
	setPrecision(g, s.hyper.Precision)
	mode := bnBatch
	if update {
		mode = bnTrain
	}
	img, txt, studentS, lt := s.forwardLoss(scope, in, mode)

	used := s.usedParams()
	nodes := make([]*Node, len(used))
	for i, name := range used {
		nodes[i] = s.st.store.GetVariable(varPath(name)).NodeValue(g)
	}
	grads := Gradient(lt.total, nodes...)
	gradNorm, coef := s.clip(grads)
	finite := LogicalAnd(IsFinite(lt.total), IsFinite(gradNorm))
	zero := ScalarZero(g, dtype)
	orNaN := func(x *Node) *Node {
		if x == nil {
			return Scalar(g, dtype, math.NaN())
		}
		return x
	}
	outs := []*Node{lt.total, orNaN(lt.softI2T), orNaN(lt.softT2I), orNaN(lt.hard), gradNorm, coef, studentS,
		Where(finite, ScalarOne(g, dtype), zero), img, txt}
	if !update {
		return append(outs, grads...)
	}
	s.update(scope, used, grads, coef, finite, in[len(in)-1])
	return outs
}

// clip returns the global gradient norm (the norm of the per-tensor norms,
// as clip_grad_norm_) and the clipping coefficient min(1, max/(norm+1e-6))
// (1 without clipping).
func (s *Step) clip(grads []*Node) (norm, coef *Node) {
	g := grads[0].Graph()
	var sumSq *Node
	for _, gr := range grads {
		n := ReduceAllSum(Square(Sqrt(ReduceAllSum(Square(gr)))))
		if sumSq == nil {
			sumSq = n
		} else {
			sumSq = Add(sumSq, n)
		}
	}
	norm = Sqrt(sumSq)
	coef = ScalarOne(g, dtype)
	if s.hyper.ClipNorm > 0 {
		coef = MinScalar(Div(Scalar(g, dtype, s.hyper.ClipNorm), AddScalar(norm, 1e-6)), 1.0)
	}
	return norm, coef
}

// update applies AdamW (PyTorch 1.13's single-tensor arithmetic, in its
// order) to the tensors used with their gradients scaled by coef — unless
// finite is false — and then resets or clamps logit_scale. sc holds the
// per-step scalars.
func (s *Step) update(scope *model.Scope, used []string, grads []*Node, coef, finite, sc *Node) {
	g := sc.Graph()
	h := &s.hyper
	scalar := func(i int) *Node { return Reshape(Slice(sc, AxisElem(i)), []int{}...) }
	decay := scalar(inDecay)
	negStep := scalar(inNegStep)
	bc2 := scalar(inBC2Sqrt)
	for i, name := range used {
		v := s.st.store.GetVariable(varPath(name))
		gr := Mul(grads[i], coef)
		p := v.NodeValue(g)
		mVar := s.st.store.GetVariable(momentPath("exp_avg", name))
		vVar := s.st.store.GetVariable(momentPath("exp_avg_sq", name))
		m0, v0 := mVar.NodeValue(g), vVar.NodeValue(g)
		p1 := p
		if Decayed(name, p.Rank()) && h.WeightDecay != 0 {
			p1 = Mul(p, decay) // p·(1 − lr·wd)
		}
		m1 := Add(MulScalar(m0, h.Beta1), MulScalar(gr, 1-h.Beta1))
		v1 := Add(MulScalar(v0, h.Beta2), Mul(MulScalar(gr, 1-h.Beta2), gr))
		denom := AddScalar(Div(Sqrt(v1), bc2), h.Eps)
		p2 := Add(p1, Div(Mul(m1, negStep), denom))
		v.SetNodeValue(Where(finite, p2, p))
		mVar.SetNodeValue(Where(finite, m1, m0))
		vVar.SetNodeValue(Where(finite, v1, v0))
	}
	thetaVar := scope.VariableWithShape("logit_scale", shapes.Make(dtype))
	if h.LogitScale > 0 {
		thetaVar.SetNodeValue(Scalar(g, dtype, float32(math.Log(h.LogitScale))))
	} else {
		thetaVar.SetNodeValue(ClipScalar(thetaVar.NodeValue(g), 0, math.Log(100)))
	}
}

// stepScalars returns the per-step scalar inputs for learning rate lr at
// the next AdamW step count (bias corrections as PyTorch computes them, in
// float64, then rounded).
func (s *Step) stepScalars(lr float64, teacherScale float32) *tensors.Tensor {
	h := &s.hyper
	k := float64(s.count + 1)
	sc := make([]float32, numScalars)
	sc[inDecay] = float32(1 - lr*h.WeightDecay)
	sc[inNegStep] = float32(-(lr / (1 - math.Pow(h.Beta1, k))))
	sc[inBC2Sqrt] = float32(math.Sqrt(1 - math.Pow(h.Beta2, k)))
	sc[inTeacherS] = teacherScale
	return tensors.FromFlatDataAndDimensions(sc, numScalars)
}

// readMetrics fills m from the graph outputs.
func (s *Step) readMetrics(m *Metrics, out []*tensors.Tensor) error {
	if len(out) < numOutputs {
		return fmt.Errorf("train: step: %d outputs, want at least %d", len(out), numOutputs)
	}
	sc := func(i int) float64 { return float64(tensors.ToScalar[float32](out[i])) }
	m.Loss = sc(outLoss)
	m.SoftI2T, m.SoftT2I, m.Hard = sc(outSoftI2T), sc(outSoftT2I), sc(outHard)
	m.GradNorm, m.ClipCoef = sc(outGradNorm), sc(outClipCoef)
	m.StudentScale = sc(outStudentS)
	m.Skipped = sc(outFinite) != 1
	var err error
	if m.ImageFeatures, err = flatF32(out[outImage]); err != nil {
		return err
	}
	m.TextFeatures, err = flatF32(out[outText])
	return err
}

// anys converts tensors to the ...any of Exec.Call.
func anys(ts []*tensors.Tensor) []any {
	a := make([]any, len(ts))
	for i, t := range ts {
		a[i] = t
	}
	return a
}

// State is everything a Step changes, as plain tensors: restoring it into a
// Step over a student of the same architecture continues training
// bit-identically.
type State struct {
	// Step is the AdamW step count (optimizer steps taken).
	Step int64
	// Weights are the student's tensors as Student.Weights returns them.
	Weights map[string]*tensor.Tensor
	// Moments are the AdamW moments of every non-empty trainable tensor,
	// named as PyTorch's optimizer state: "exp_avg.<name>" and
	// "exp_avg_sq.<name>" (float32, the tensor's shape).
	Moments map[string]*tensor.Tensor
}

// State copies the step's state out of the graph's variables.
func (s *Step) State() (*State, error) {
	w, err := s.st.Weights()
	if err != nil {
		return nil, err
	}
	st := &State{Step: s.count, Weights: w, Moments: make(map[string]*tensor.Tensor, 2*len(s.params))}
	for _, name := range s.params {
		for _, kind := range []string{"exp_avg", "exp_avg_sq"} {
			key := kind + "." + name
			t, err := variableTensor(s.st.store.GetVariable(momentPath(kind, name)), key)
			if err != nil {
				return nil, err
			}
			if name == "logit_scale" {
				t.Shape = slices.Clone(s.st.scaleShape)
			}
			st.Moments[key] = t
		}
	}
	return st, nil
}

// Restore replaces the step's state (and the student's weights) with st,
// which must hold exactly the tensors State returns for this architecture.
func (s *Step) Restore(st *State) error {
	if st == nil || st.Step < 0 {
		return fmt.Errorf("train: restore: invalid state")
	}
	if len(st.Moments) != 2*len(s.params) {
		return fmt.Errorf("train: restore: %d AdamW moment tensors, want %d", len(st.Moments), 2*len(s.params))
	}
	type pending struct {
		v    *model.Variable
		vals []float32
	}
	var todo []pending
	for _, name := range s.params {
		for _, kind := range []string{"exp_avg", "exp_avg_sq"} {
			key := kind + "." + name
			t, ok := st.Moments[key]
			if !ok {
				return fmt.Errorf("train: restore: %s missing", key)
			}
			v := s.st.store.GetVariable(momentPath(kind, name))
			want := v.Shape().Dimensions
			if name == "logit_scale" {
				want = s.st.scaleShape
			}
			if !slices.Equal(t.Shape, want) || t.DType != tensor.F32 {
				return fmt.Errorf("train: restore: %s: %s %v, want F32 %v", key, t.DType, t.Shape, want)
			}
			vals, err := t.Float32()
			if err != nil {
				return fmt.Errorf("train: restore: %w", err)
			}
			todo = append(todo, pending{v, vals})
		}
	}
	if err := s.st.checkWeights(st.Weights); err != nil {
		return fmt.Errorf("train: restore: %w", err)
	}
	if err := s.st.setWeights(st.Weights); err != nil {
		return fmt.Errorf("train: restore: %w", err)
	}
	for _, p := range todo {
		if err := p.v.SetValue(newTensor(p.vals, p.v.Shape().Dimensions)); err != nil {
			return fmt.Errorf("train: restore: %s: %w", p.v.Path(), err)
		}
	}
	s.count = st.Step
	return nil
}
