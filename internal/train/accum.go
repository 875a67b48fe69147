package train

import (
	"context"
	"fmt"
	"math"

	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// AccumStep is a training step with gradient accumulation: a batch of B
// pairs is split into Micro micro-batches of B/Micro, each runs forward
// and backward on its own (teacher included) and adds its gradients to
// accumulators held in the graph's variables, then one update averages
// them, clips, applies AdamW and resets the logit scale as Step does.
//
// This is NOT a bigger batch for the contrastive and affinity losses:
// every softmax runs over the B/Micro columns of its own micro-batch, so
// each row is compared with fewer texts (or images) and the teacher's
// distributions are those of the micro-batch. The result is the gradient
// of the mean of the Micro micro-batch losses, which is the official loss
// of batch B/Micro averaged over Micro batches — what a machine that holds
// only B/Micro pairs can do cheaply. (Reproducing the large-batch loss
// exactly needs the features of the whole batch before any gradient, as
// open_clip's accumulation caches them; the official TinyCLIP code has no
// accumulation at all.) BatchNorm layers of ResNet students see each
// micro-batch separately and update their running statistics once per
// micro-batch, as Micro forward passes in PyTorch would.
//
// An AccumStep is not safe for concurrent use.
type AccumStep struct {
	s     *Step // steps of the micro-batch size
	micro int

	gradExec, applyExec *model.Exec
}

// accumPath is the Store path of the gradient accumulator of tensor name.
func accumPath(name string) string { return "/accum" + varPath(name) }

// NewAccumStep prepares accumulated steps of batch size b made of micro
// micro-batches (b must be a multiple of micro, and each micro-batch at
// least 2 pairs). Teacher and hyper-parameters are as for NewStep.
func NewAccumStep(student *Student, teacher Teacher, b, micro int, h Hyper) (*AccumStep, error) {
	if micro < 1 || b%micro != 0 {
		return nil, fmt.Errorf("train: batch %d is not a multiple of %d micro-batches", b, micro)
	}
	s, err := newStep(student, teacher, b/micro, h, false)
	if err != nil {
		return nil, err
	}
	if h.Precision != FP32 {
		return nil, fmt.Errorf("train: precision %s: gradient accumulation runs in fp32 only", h.Precision)
	}
	for _, name := range s.usedParams() {
		shape := student.store.GetVariable(varPath(name)).Shape()
		path := accumPath(name)
		if v := student.store.GetVariable(path); v != nil {
			err = v.SetValue(tensors.FromShape(shape))
		} else {
			_, err = student.store.CreateVariable(path, tensors.FromShape(shape))
		}
		if err != nil {
			return nil, fmt.Errorf("train: accumulator %s: %w", name, err)
		}
	}
	return &AccumStep{s: s, micro: micro}, nil
}

// Micro returns the number of micro-batches per step.
func (a *AccumStep) Micro() int { return a.micro }

// BatchSize implements Stepper: the whole batch.
func (a *AccumStep) BatchSize() int { return a.s.batch * a.micro }

// Count returns the number of optimizer steps taken.
func (a *AccumStep) Count() int64 { return a.s.count }

// TrainStep implements Stepper with Run.
func (a *AccumStep) TrainStep(ctx context.Context, _ int, images []float32, tokens [][]int, lr float64) (Metrics, error) {
	return a.Run(ctx, images, tokens, lr)
}

// Run runs one accumulated step on a batch (as Step.Run, with B =
// BatchSize()). The metrics' Loss and loss terms are means over the
// micro-batches; ImageFeatures and TextFeatures are not filled.
func (a *AccumStep) Run(ctx context.Context, images []float32, tokens [][]int, lr float64) (Metrics, error) {
	s := a.s
	m := Metrics{LR: lr, Step: s.count, TeacherScale: math.NaN()}
	if err := checkLR(lr); err != nil {
		return m, err
	}
	b := a.BatchSize()
	sz := s.st.arch.Vision.ImageSize
	plane := 3 * sz * sz
	if len(images) != b*plane || len(tokens) != b {
		return m, fmt.Errorf("train: step: %d pixel values and %d token rows, want %d images of 3×%d×%d", len(images), len(tokens), b, sz, sz)
	}
	if a.gradExec == nil {
		e, err := model.NewExec(s.st.backend, s.st.store, a.microGraph)
		if err != nil {
			return m, fmt.Errorf("train: step: %w", err)
		}
		a.gradExec = e
		if a.applyExec, err = model.NewExec(s.st.backend, s.st.store, a.applyGraph); err != nil {
			return m, fmt.Errorf("train: step: %w", err)
		}
	}
	mb := s.batch
	var sums [4]float64 // loss, soft i2t, soft t2i, hard
	lossFinite := true
	var sc *tensors.Tensor
	for j := 0; j < a.micro; j++ {
		in, tScale, err := s.inputs(ctx, images[j*mb*plane:(j+1)*mb*plane], tokens[j*mb:(j+1)*mb])
		if err != nil {
			return m, err
		}
		sc = s.stepScalars(lr, tScale)
		out, err := a.gradExec.Call(anys(append(in, sc))...)
		if err != nil {
			return m, fmt.Errorf("train: step: micro-batch %d: %w", j, err)
		}
		for name := range s.st.counters {
			s.st.counters[name]++
		}
		for k := range sums {
			v := float64(tensors.ToScalar[float32](out[k]))
			sums[k] += v
			if k == 0 && (math.IsNaN(v) || math.IsInf(v, 0)) {
				lossFinite = false
			}
		}
		m.StudentScale = float64(tensors.ToScalar[float32](out[4]))
		if s.teacher != nil {
			m.TeacherScale = float64(tScale)
		}
	}
	k := float64(a.micro)
	m.Loss, m.SoftI2T, m.SoftT2I, m.Hard = sums[0]/k, sums[1]/k, sums[2]/k, sums[3]/k
	extra := []float32{float32(1 / k), 0}
	if lossFinite {
		extra[1] = 1
	}
	out, err := a.applyExec.Call(sc, tensors.FromFlatDataAndDimensions(extra, 2))
	if err != nil {
		return m, fmt.Errorf("train: step: update: %w", err)
	}
	m.GradNorm = float64(tensors.ToScalar[float32](out[0]))
	m.ClipCoef = float64(tensors.ToScalar[float32](out[1]))
	m.Skipped = tensors.ToScalar[float32](out[2]) != 1
	if m.Skipped {
		return m, fmt.Errorf("train: step %d: %w (loss %v, gradient norm %v): update skipped", s.count+1, ErrNonFinite, m.Loss, m.GradNorm)
	}
	s.count++
	m.Step = s.count
	return m, nil
}

// microGraph runs one micro-batch forward in train mode and adds its
// gradients to the accumulators. It returns the loss terms and the
// student scale.
func (a *AccumStep) microGraph(scope *model.Scope, in []*Node) []*Node {
	s := a.s
	g := in[0].Graph()
	arch := &s.st.arch
	h := &s.hyper
	images, ids, eot := in[0], in[1], in[2]
	sc := in[len(in)-1]
	img := l2Normalize(encodeImage(scope.At("visual"), &arch.Vision, images, bnTrain))
	txt := l2Normalize(encodeText(scope, &arch.Text, ids, eot))
	studentS := Exp(scope.VariableWithShape("logit_scale", shapes.Make(dtype)).NodeValue(g))
	var lt lossTerms
	if s.teacher != nil {
		teacherS := Reshape(Slice(sc, AxisElem(inTeacherS)), []int{}...)
		lt = affinityLoss(img, txt, in[3], in[4], studentS, teacherS, h.Alpha, h.Weight)
	} else {
		lt.hard = clipLoss(img, txt, studentS)
		lt.total = lt.hard
	}
	used := s.usedParams()
	nodes := make([]*Node, len(used))
	for i, name := range used {
		nodes[i] = s.st.store.GetVariable(varPath(name)).NodeValue(g)
	}
	grads := Gradient(lt.total, nodes...)
	for i, name := range used {
		acc := s.st.store.GetVariable(accumPath(name))
		acc.SetNodeValue(Add(acc.NodeValue(g), grads[i]))
	}
	orNaN := func(x *Node) *Node {
		if x == nil {
			return Scalar(g, dtype, math.NaN())
		}
		return x
	}
	return []*Node{lt.total, orNaN(lt.softI2T), orNaN(lt.softT2I), orNaN(lt.hard), studentS}
}

// applyGraph averages the accumulated gradients (extra[0] = 1/Micro),
// clears the accumulators, clips and applies the update unless the loss
// (extra[1] = 0) or the norm is not finite. It returns the norm, the clip
// coefficient and 1 for an applied update.
func (a *AccumStep) applyGraph(scope *model.Scope, sc, extra *Node) []*Node {
	s := a.s
	g := sc.Graph()
	inv := Reshape(Slice(extra, AxisElem(0)), []int{}...)
	lossOK := GreaterThan(Reshape(Slice(extra, AxisElem(1)), []int{}...), Scalar(g, dtype, 0.5))
	used := s.usedParams()
	grads := make([]*Node, len(used))
	for i, name := range used {
		acc := s.st.store.GetVariable(accumPath(name))
		v := acc.NodeValue(g)
		grads[i] = Mul(v, inv)
		acc.SetNodeValue(ZerosLike(v))
	}
	norm, coef := s.clip(grads)
	finite := LogicalAnd(lossOK, IsFinite(norm))
	s.update(scope, used, grads, coef, finite, sc)
	return []*Node{norm, coef, Where(finite, ScalarOne(g, dtype), ScalarZero(g, dtype))}
}

// State implements Stepper (as Step.State).
func (a *AccumStep) State() (*State, error) { return a.s.State() }

// Restore implements Stepper (as Step.Restore); the accumulators are
// cleared.
func (a *AccumStep) Restore(st *State) error {
	if err := a.s.Restore(st); err != nil {
		return err
	}
	for _, name := range a.s.usedParams() {
		v := a.s.st.store.GetVariable(accumPath(name))
		if err := v.SetValue(tensors.FromShape(v.Shape())); err != nil {
			return fmt.Errorf("train: restore: %w", err)
		}
	}
	return nil
}

// Model implements Stepper.
func (a *AccumStep) Model() (*config.Arch, map[string]*tensor.Tensor, error) { return a.s.Model() }
