package train

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/distributed"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// dpMode is how a DataParallelStep runs its device programs.
type dpMode int

const (
	// dpSPMD: GoMLX's SPMD strategy, one program per device of the
	// backend, collectives as AllReduce.
	dpSPMD dpMode = iota
	// dpSingle: one device without the SPMD strategy (backends without
	// collectives, the Go backend); the collectives are the identity.
	dpSingle
	// dpEmulated: the R device programs side by side in one graph on one
	// device, the collectives as sums over them (tests: the arithmetic of
	// R devices where only one exists).
	dpEmulated
)

// DataParallelStep is Step over the devices of one host, as the official
// distributed training runs it (spec §5: --local-loss --gather-with-grad
// and DDP): the global batch of B pairs is split into R shards of B/R, one
// per device; each device runs the teacher and the student on its shard,
// all-gathers the features of every device, takes the loss of its own
// rows against all gathered columns, and the gradients — including the
// parts that flow back through other devices' gathered copies — are summed
// over the devices (AllReduce), so every device applies the same update:
// the update of one device at the global batch, up to the order of
// float reductions. Clipping, AdamW, the logit-scale reset, State,
// Restore and checkpoints are Step's.
//
// It runs with GoMLX's SPMD strategy on backends with several devices
// and collectives (XLA); on the Go backend (one device, no collectives)
// only with one device, through the same graph with identity collectives.
// ResNet students (BatchNorm statistics are per device in the official
// code) are limited to one device. Not safe for concurrent use.
type DataParallelStep struct {
	s       *Step
	devices int
	mode    dpMode
	exec    *model.Exec
}

// NewDataParallelStep prepares steps of global batch size b split over
// the first `devices` devices of the student's backend (b must be a
// multiple of devices); the rest is as NewStep.
func NewDataParallelStep(student *Student, teacher Teacher, b, devices int, h Hyper) (*DataParallelStep, error) {
	if student == nil {
		return nil, fmt.Errorf("train: nil student")
	}
	mode := dpSPMD
	if isGoBackend(student.backend) {
		if devices != 1 {
			return nil, fmt.Errorf("train: data parallel over %d devices: GoMLX's Go backend has one device and no collectives (use an XLA backend)", devices)
		}
		mode = dpSingle
	}
	return newDataParallelStep(student, teacher, b, devices, h, mode)
}

func newDataParallelStep(student *Student, teacher Teacher, b, devices int, h Hyper, mode dpMode) (*DataParallelStep, error) {
	if devices < 1 {
		return nil, fmt.Errorf("train: data parallel over %d devices", devices)
	}
	if b%devices != 0 {
		return nil, fmt.Errorf("train: global batch %d is not a multiple of %d devices", b, devices)
	}
	if b/devices < 1 || b < 2 {
		return nil, fmt.Errorf("train: global batch %d over %d devices", b, devices)
	}
	if mode == dpSPMD && devices > student.backend.NumDevices() {
		return nil, fmt.Errorf("train: data parallel over %d devices: backend %s has %d", devices, student.backend.Name(), student.backend.NumDevices())
	}
	if devices > 1 && student.arch.Vision.Kind == config.KindResNet {
		return nil, fmt.Errorf("train: data parallel over %d devices: ResNet students (per-device BatchNorm) are limited to one device", devices)
	}
	s, err := newStep(student, teacher, b, h, true)
	if err != nil {
		return nil, err
	}
	return &DataParallelStep{s: s, devices: devices, mode: mode}, nil
}

// Devices returns the number of devices the global batch is split over.
func (d *DataParallelStep) Devices() int { return d.devices }

// BatchSize implements Stepper: the global batch.
func (d *DataParallelStep) BatchSize() int { return d.s.batch }

// Hyper returns the step's hyper-parameters.
func (d *DataParallelStep) Hyper() Hyper { return d.s.hyper }

// Count returns the number of optimizer steps taken.
func (d *DataParallelStep) Count() int64 { return d.s.count }

// TrainStep implements Stepper with Run.
func (d *DataParallelStep) TrainStep(ctx context.Context, _ int, images []float32, tokens [][]int, lr float64) (Metrics, error) {
	return d.Run(ctx, images, tokens, lr)
}

// State implements Stepper (as Step.State).
func (d *DataParallelStep) State() (*State, error) { return d.s.State() }

// Restore implements Stepper (as Step.Restore).
func (d *DataParallelStep) Restore(st *State) error { return d.s.Restore(st) }

// Model implements Stepper: the student's architecture and weights.
func (d *DataParallelStep) Model() (*config.Arch, map[string]*tensor.Tensor, error) {
	return d.s.Model()
}

// Run runs one training step on a global batch (as Step.Run): images
// [B, 3, S, S], B token rows, learning rate lr. Metrics are those of the
// global batch; the features are the gathered ones [B, E].
func (d *DataParallelStep) Run(ctx context.Context, images []float32, tokens [][]int, lr float64) (Metrics, error) {
	s := d.s
	m := s.emptyMetrics(lr)
	if err := checkLR(lr); err != nil {
		return m, err
	}
	in, tScale, err := s.inputs(ctx, images, tokens)
	if err != nil {
		return m, err
	}
	sc := s.stepScalars(lr, tScale)
	var args []any
	if d.mode == dpSPMD {
		if args, err = d.shardArgs(in, sc); err != nil {
			return m, err
		}
	} else {
		args = anys(append(in, sc))
	}
	if err := ctx.Err(); err != nil {
		return m, fmt.Errorf("train: step: %w", err)
	}
	if d.exec == nil {
		e, err := model.NewExec(s.st.backend, s.st.store, d.graph)
		if err != nil {
			return m, fmt.Errorf("train: data-parallel step: %w", err)
		}
		if d.mode == dpSPMD {
			mesh, err := distributed.NewDeviceMesh([]int{d.devices}, []string{"data"})
			if err != nil {
				return m, fmt.Errorf("train: data-parallel step: %w", err)
			}
			e.SPMD(mesh)
		}
		d.exec = e
	}
	out, err := callRecover(d.exec, args)
	if err != nil {
		d.exec = nil
		return m, fmt.Errorf("train: data-parallel step: %w", err)
	}
	if len(out) > numOutputs {
		out = out[:numOutputs] // device 0's; every device computes the same
	}
	return s.afterUpdate(m, out, tScale)
}

// shardArgs splits the global inputs (images, ids, eot and, with a host
// teacher, its two feature matrices) row-wise into the devices' inputs and
// adds each device's one-hot rank and the scalars: device-major, as
// GoMLX's SPMD execution takes them.
func (d *DataParallelStep) shardArgs(in []*tensors.Tensor, sc *tensors.Tensor) ([]any, error) {
	r := d.devices
	shards := make([][]*tensors.Tensor, len(in))
	for i, t := range in {
		var err error
		if shards[i], err = splitRows(t, r); err != nil {
			return nil, fmt.Errorf("train: data-parallel step: input %d: %w", i, err)
		}
	}
	args := make([]any, 0, r*(len(in)+2))
	for dev := range r {
		for i := range in {
			args = append(args, shards[i][dev])
		}
		oh := make([]float32, r)
		oh[dev] = 1
		args = append(args, tensors.FromFlatDataAndDimensions(oh, r), sc)
	}
	return args, nil
}

// splitRows splits a float32 or int32 tensor into n equal parts along its
// first axis.
func splitRows(t *tensors.Tensor, n int) ([]*tensors.Tensor, error) {
	dims := t.Shape().Dimensions
	if len(dims) == 0 || dims[0]%n != 0 {
		return nil, fmt.Errorf("shape %v does not split into %d row blocks", dims, n)
	}
	part := slices.Clone(dims)
	part[0] /= n
	out := make([]*tensors.Tensor, n)
	switch t.DType() {
	case dtype:
		v, err := tensors.CopyFlatData[float32](t)
		if err != nil {
			return nil, err
		}
		k := len(v) / n
		for i := range out {
			out[i] = tensors.FromFlatDataAndDimensions(slices.Clone(v[i*k:(i+1)*k]), part...)
		}
	default:
		v, err := tensors.CopyFlatData[int32](t)
		if err != nil {
			return nil, err
		}
		k := len(v) / n
		for i := range out {
			out[i] = tensors.FromFlatDataAndDimensions(slices.Clone(v[i*k:(i+1)*k]), part...)
		}
	}
	return out, nil
}

// dpReplica is one device's part of the step graph.
type dpReplica struct {
	images, ids, eot, ti, tt, onehot *Node
	img, txt                         *Node // student features [b, E]
}

// allReduce sums, for each position, the nodes of every device: reps[r]
// are device r's operands (one device per graph with SPMD; all of them
// when emulated). Each replica gets the sums.
func (d *DataParallelStep) allReduce(reps [][]*Node) [][]*Node {
	switch d.mode {
	case dpSPMD:
		g := reps[0][0].Graph()
		return [][]*Node{g.Distributed().AllReduce(reps[0], compute.ReduceOpSum)}
	case dpEmulated:
		sums := slices.Clone(reps[0])
		for _, rep := range reps[1:] {
			for i, x := range rep {
				sums[i] = Add(sums[i], x)
			}
		}
		out := make([][]*Node, len(reps))
		for r := range out {
			out[r] = sums
		}
		return out
	}
	return reps
}

// graph builds the data-parallel step. Inputs: images, ids, eot, (teacher
// image and text features), (one-hot device rank, SPMD only), scalars —
// a device's shard with SPMD, the global batch otherwise.
func (d *DataParallelStep) graph(scope *model.Scope, in []*Node) []*Node {
	s := d.s
	g := in[0].Graph()
	setPrecision(g, s.hyper.Precision)
	arch := &s.st.arch
	h := &s.hyper
	R := d.devices
	b := s.batch / R
	n := s.batch
	sc := in[len(in)-1]
	scalar := func(i int) *Node { return Reshape(Slice(sc, AxisElem(i)), []int{}...) }
	hostTeacher := s.teacher != nil && s.fused == nil

	// The replicas of this graph and their inputs.
	var reps []*dpReplica
	if d.mode == dpSPMD {
		r := &dpReplica{images: in[0], ids: in[1], eot: in[2], onehot: in[len(in)-2]}
		if hostTeacher {
			r.ti, r.tt = in[3], in[4]
		}
		reps = []*dpReplica{r}
	} else {
		for k := range R {
			rows := func(x *Node) *Node { return Slice(x, AxisRange(k*b, (k+1)*b)) }
			oh := make([]float32, R)
			oh[k] = 1
			r := &dpReplica{images: rows(in[0]), ids: rows(in[1]), eot: rows(in[2]), onehot: Const(g, oh)}
			if hostTeacher {
				r.ti, r.tt = rows(in[3]), rows(in[4])
			}
			reps = append(reps, r)
		}
	}

	// Forward passes on each shard.
	for _, r := range reps {
		r.img = l2Normalize(encodeImage(scope.At("visual"), &arch.Vision, r.images, bnTrain))
		r.txt = l2Normalize(encodeText(scope, &arch.Text, r.ids, r.eot))
		if s.fused != nil {
			ts := scope.At(teacherScope)
			r.ti, r.tt = s.fused.imageFeatures(ts, r.images), s.fused.textFeatures(ts, r.ids, r.eot)
		}
	}
	// place puts a device's rows [b, E] at its block of an [N, E] matrix
	// (zeros elsewhere); block takes them back out.
	place := func(r *dpReplica, x *Node) *Node {
		e := x.Shape().Dim(1)
		return Reshape(Mul(Reshape(r.onehot, R, 1, 1), Reshape(x, 1, b, e)), n, e)
	}
	block := func(r *dpReplica, x *Node) *Node {
		e := x.Shape().Dim(1)
		return ReduceSum(Mul(Reshape(r.onehot, R, 1, 1), Reshape(x, R, b, e)), 0)
	}

	// All-gather of the features (without gradient: the gradient through
	// the gathered copies is sent back to their owners below).
	var gatherIn [][]*Node
	for _, r := range reps {
		ops := []*Node{place(r, r.img), place(r, r.txt)}
		if s.teacher != nil {
			ops = append(ops, place(r, r.ti), place(r, r.tt))
		}
		gatherIn = append(gatherIn, ops)
	}
	gathered := d.allReduce(gatherIn)

	theta := scope.VariableWithShape("logit_scale", shapes.Make(dtype)).NodeValue(g)
	studentS := Exp(theta)
	used := s.usedParams()
	var paramNodes []*Node
	thetaIdx := -1
	for i, name := range used {
		if name == "logit_scale" {
			thetaIdx = i
			continue
		}
		paramNodes = append(paramNodes, s.st.store.GetVariable(varPath(name)).NodeValue(g))
	}

	// Each device's loss (its rows against all columns) and its gradient
	// with respect to its features, the gathered features and θ.
	type local struct {
		lt                   lossTerms
		gImg, gTxt, gI, gT   *Node
		gTheta               *Node
		iAll, tAll           *Node
		softI2T, softT2I, hd *Node
	}
	locals := make([]local, len(reps))
	var backIn [][]*Node
	for k, r := range reps {
		iAll := StopGradient(gathered[k][0])
		tAll := StopGradient(gathered[k][1])
		var tiAll, ttAll *Node
		if s.teacher != nil {
			tiAll, ttAll = StopGradient(gathered[k][2]), StopGradient(gathered[k][3])
		}
		labels := Reshape(Mul(Reshape(r.onehot, 1, R, 1), Reshape(eye(g, b), b, 1, b)), b, n)
		lt := shardLoss(r.img, r.txt, iAll, tAll, r.ti, r.tt, tiAll, ttAll, studentS, scalar(inTeacherS), labels,
			s.teacher != nil, h.Alpha, h.Weight)
		gr := Gradient(lt.total, r.img, r.txt, iAll, tAll, theta)
		locals[k] = local{lt: lt, gImg: gr[0], gTxt: gr[1], gI: gr[2], gT: gr[3], gTheta: gr[4], iAll: iAll, tAll: tAll}
		backIn = append(backIn, []*Node{gr[2], gr[3]})
	}
	// The gradients with respect to the gathered copies, summed over the
	// devices: each device takes its block (all_gather's backward).
	back := d.allReduce(backIn)

	inv := 1 / float64(R)
	zero := ScalarZero(g, dtype)
	orZero := func(x *Node) *Node {
		if x == nil {
			return zero
		}
		return x
	}
	var sumIn [][]*Node
	for k, r := range reps {
		l := &locals[k]
		cImg := MulScalar(Add(l.gImg, block(r, back[k][0])), inv)
		cTxt := MulScalar(Add(l.gTxt, block(r, back[k][1])), inv)
		sur := Add(ReduceAllSum(Mul(StopGradient(cImg), r.img)), ReduceAllSum(Mul(StopGradient(cTxt), r.txt)))
		ops := Gradient(sur, paramNodes...)
		ops = append(ops, MulScalar(l.gTheta, inv), MulScalar(l.lt.total, inv),
			MulScalar(orZero(l.lt.softI2T), inv), MulScalar(orZero(l.lt.softT2I), inv), MulScalar(orZero(l.lt.hard), inv))
		sumIn = append(sumIn, ops)
	}
	sums := d.allReduce(sumIn)[0]
	np := len(paramNodes)
	grads := make([]*Node, 0, len(used))
	grads = append(grads, sums[:np]...)
	if thetaIdx >= 0 {
		grads = slices.Insert(grads, thetaIdx, sums[np])
	}
	loss := sums[np+1]
	orNaN := func(x *Node, present bool) *Node {
		if !present {
			return Scalar(g, dtype, math.NaN())
		}
		return x
	}
	lt0 := locals[0].lt
	softI2T := orNaN(sums[np+2], lt0.softI2T != nil)
	softT2I := orNaN(sums[np+3], lt0.softT2I != nil)
	hard := orNaN(sums[np+4], lt0.hard != nil)

	gradNorm, coef := s.clip(grads)
	finite := LogicalAnd(IsFinite(loss), IsFinite(gradNorm))
	outs := []*Node{loss, softI2T, softT2I, hard, gradNorm, coef, studentS,
		Where(finite, ScalarOne(g, dtype), zero), locals[0].iAll, locals[0].tAll}
	s.update(scope, used, grads, coef, finite, sc)
	return outs
}

// eye is the b×b identity as float32.
func eye(g *Graph, b int) *Node {
	m := make([]float32, b*b)
	for i := range b {
		m[i*b+i] = 1
	}
	return Reshape(Const(g, m), b, b)
}

// shardLoss is the loss of one device (spec §5 with --local-loss and
// --gather-with-grad): its rows si, st [b, E] (student) and ti, tt
// (teacher) against all devices' gathered columns siAll, stAll, tiAll,
// ttAll [N, E]; labels [b, N] is 1 at each row's positive pair (column
// rank·b + row). With distil false (no teacher) it is the CLIP loss with
// weight 1. The terms are means over the b rows.
func shardLoss(si, st, siAll, stAll, ti, tt, tiAll, ttAll, s, t, labels *Node, distil bool, alpha, weight float64) lossTerms {
	var lt lossTerms
	hard := func() *Node {
		li := rowDots(Mul(s, si), stAll)
		lt := rowDots(Mul(s, st), siAll)
		return MulScalar(Add(shardLabelCE(li, labels), shardLabelCE(lt, labels)), 0.5)
	}
	if !distil {
		lt.hard = hard()
		lt.total = lt.hard
		return lt
	}
	if alpha > 0 && weight > 0 {
		lt.softI2T = softCrossEntropy(rowDots(Mul(s, si), stAll), Softmax(rowDots(Mul(t, ti), ttAll), -1))
		lt.softT2I = softCrossEntropy(rowDots(Mul(s, st), siAll), Softmax(rowDots(Mul(t, tt), tiAll), -1))
		c := 0.5 * alpha * weight
		lt.total = Add(MulScalar(lt.softI2T, c), MulScalar(lt.softT2I, c))
	}
	if alpha < 1 && weight > 0 {
		lt.hard = hard()
		hw := MulScalar(lt.hard, (1-alpha)*weight)
		if lt.total == nil {
			lt.total = hw
		} else {
			lt.total = Add(lt.total, hw)
		}
	}
	if lt.total == nil {
		lt.total = ScalarZero(si.Graph(), si.DType())
	}
	return lt
}

// shardLabelCE is the cross-entropy of logits [b, N] against the columns
// marked in labels [b, N] (one per row), mean over rows.
func shardLabelCE(logits, labels *Node) *Node {
	ls := LogSoftmax(logits, -1)
	picked := Where(GreaterThan(labels, ZerosLike(labels)), ls, ZerosLike(ls))
	return Neg(ReduceAllMean(ReduceSum(picked, 1)))
}

// callRecover is Exec.Call with GoMLX panics (some backend refusals, such
// as the Go backend's for the SPMD strategy, escape as panics) turned into
// errors.
func callRecover(e *model.Exec, args []any) (out []*tensors.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("%v", r)
		}
	}()
	return e.Call(args...)
}
