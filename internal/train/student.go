package train

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// Student is a trainable CLIP model held as GoMLX variables named after the
// open_clip tensors ("visual.conv1.weight" is the variable
// "/visual/conv1/weight"). It is not safe for concurrent use, and must not
// be used while a Step built on it is running.
type Student struct {
	arch    config.Arch
	backend compute.Backend
	store   *model.Store

	// vars lists the tensors held as variables, sorted by name: every
	// non-empty float tensor, BatchNorm running statistics included.
	vars []string
	// extra holds tensors kept as they are: zero-size tensors of zero-width
	// MLPs and the inert ln_2 of blocks without MLP.
	extra map[string]*tensor.Tensor
	// counters are the BatchNorm num_batches_tracked values.
	counters   map[string]int64
	scaleShape []int // shape of logit_scale: [] or [1]

	imageExec, textExec *model.Exec
}

// NewStudent builds a student of architecture arch from weights under
// open_clip names (any float dtype; every tensor arch needs, with its exact
// shape; logit_scale as [] or [1]; BatchNorm num_batches_tracked optional).
// The weights are copied. It runs on the default backend: GoMLX's pure-Go
// backend unless TINYCLIP_BACKEND (BackendEnv) names another.
func NewStudent(arch *config.Arch, weights map[string]*tensor.Tensor) (*Student, error) {
	backend, err := defaultBackend()
	if err != nil {
		return nil, fmt.Errorf("train: GoMLX backend: %w", err)
	}
	return NewStudentOn(backend, arch, weights)
}

// NewStudentOn is NewStudent on a given backend (see NewBackend); every
// graph of the student, and of the steps built on it, runs there.
func NewStudentOn(backend compute.Backend, arch *config.Arch, weights map[string]*tensor.Tensor) (*Student, error) {
	if backend == nil {
		return nil, fmt.Errorf("train: nil backend")
	}
	backend = unwrapBackend(backend)
	if arch == nil {
		return nil, fmt.Errorf("train: nil architecture")
	}
	if err := checkTrainable(arch); err != nil {
		return nil, fmt.Errorf("train: student: %w", err)
	}
	shapes := make(map[string][]int, len(weights))
	for name, t := range weights {
		if t == nil {
			return nil, fmt.Errorf("train: student: %s: nil tensor", name)
		}
		shapes[name] = t.Shape
	}
	if err := config.Check(arch, shapes); err != nil {
		return nil, fmt.Errorf("train: student weights: %w", err)
	}
	s := &Student{
		arch:     cloneArch(arch),
		backend:  backend,
		store:    model.NewStore(),
		extra:    make(map[string]*tensor.Tensor),
		counters: make(map[string]int64),
	}
	want := arch.TensorShapes()
	for name := range want {
		if strings.HasSuffix(name, ".num_batches_tracked") {
			s.counters[name] = 0
		}
	}
	for name, t := range weights {
		switch {
		case strings.HasSuffix(name, ".num_batches_tracked"):
			n, err := intScalar(t)
			if err != nil {
				return nil, fmt.Errorf("train: student: %s: %w", name, err)
			}
			s.counters[name] = n
			continue
		case !inArch(want, name) || t.NumElements() == 0:
			// The inert ln_2 of a block without MLP tensors; zero-size tensors.
			vals, err := t.Float32()
			if err != nil {
				return nil, fmt.Errorf("train: student: %w", err)
			}
			s.extra[name] = tensor.FromFloat32(name, t.Shape, vals)
			continue
		}
		if !t.DType.IsFloat() {
			return nil, fmt.Errorf("train: student: %s: dtype %s, want a float type", name, t.DType)
		}
		vals, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("train: student: %w", err)
		}
		shape := t.Shape
		if name == "logit_scale" {
			s.scaleShape = slices.Clone(t.Shape)
			shape = nil
		}
		if _, err := s.store.CreateVariable(varPath(name), newTensor(vals, shape)); err != nil {
			return nil, fmt.Errorf("train: student: %s: %w", name, err)
		}
		s.vars = append(s.vars, name)
	}
	sort.Strings(s.vars)
	return s, nil
}

// inArch reports whether name is one of the architecture's tensors.
func inArch(want map[string][]int, name string) bool {
	_, ok := want[name]
	return ok
}

// Arch returns the student's architecture.
func (s *Student) Arch() *config.Arch {
	a := cloneArch(&s.arch)
	return &a
}

// Weights returns a copy of every student tensor under its open_clip name:
// float32 weights (BatchNorm running statistics, zero-size tensors and
// logit_scale included) and the int64 BatchNorm num_batches_tracked
// counters. It is the form NewStudent, WriteModel and the engine accept.
func (s *Student) Weights() (map[string]*tensor.Tensor, error) {
	out := make(map[string]*tensor.Tensor, len(s.vars)+len(s.extra)+len(s.counters))
	for _, name := range s.vars {
		v := s.store.GetVariable(varPath(name))
		t, err := variableTensor(v, name)
		if err != nil {
			return nil, err
		}
		if name == "logit_scale" {
			t.Shape = slices.Clone(s.scaleShape)
		}
		out[name] = t
	}
	for name, t := range s.extra {
		out[name] = cloneTensor(t)
	}
	for name, n := range s.counters {
		out[name] = int64Tensor(name, n)
	}
	return out, nil
}

// checkWeights reports whether weights hold exactly the names and shapes
// Weights returns (so that setWeights cannot fail half-way).
func (s *Student) checkWeights(weights map[string]*tensor.Tensor) error {
	n := len(s.vars) + len(s.extra) + len(s.counters)
	if len(weights) != n {
		return fmt.Errorf("%d weight tensors, want %d", len(weights), n)
	}
	for _, name := range s.vars {
		t, ok := weights[name]
		if !ok || t == nil {
			return fmt.Errorf("%s: missing tensor", name)
		}
		shape := s.store.GetVariable(varPath(name)).Shape().Dimensions
		if name == "logit_scale" {
			shape = s.scaleShape
		}
		if !slices.Equal(t.Shape, shape) || !t.DType.IsFloat() {
			return fmt.Errorf("%s: %s %v, want a float tensor of shape %v", name, t.DType, t.Shape, shape)
		}
		if len(t.Data) != t.NumElements()*t.DType.Size() {
			return fmt.Errorf("%s: %d bytes for shape %v of %s", name, len(t.Data), t.Shape, t.DType)
		}
	}
	for name, old := range s.extra {
		t, ok := weights[name]
		if !ok || t == nil {
			return fmt.Errorf("%s: missing tensor", name)
		}
		if !slices.Equal(t.Shape, old.Shape) {
			return fmt.Errorf("%s: shape %v, want %v", name, t.Shape, old.Shape)
		}
	}
	for name := range s.counters {
		t, ok := weights[name]
		if !ok || t == nil {
			return fmt.Errorf("%s: missing tensor", name)
		}
		if _, err := intScalar(t); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// setWeights replaces every student tensor; weights must hold exactly the
// names and shapes Weights returns (see checkWeights).
func (s *Student) setWeights(weights map[string]*tensor.Tensor) error {
	for _, name := range s.vars {
		t, ok := weights[name]
		if !ok {
			return fmt.Errorf("%s: missing tensor", name)
		}
		v := s.store.GetVariable(varPath(name))
		shape := v.Shape().Dimensions
		if name == "logit_scale" {
			shape = s.scaleShape
		}
		if !slices.Equal(t.Shape, shape) {
			return fmt.Errorf("%s: shape %v, want %v", name, t.Shape, shape)
		}
		vals, err := t.Float32()
		if err != nil {
			return err
		}
		if err := v.SetValue(newTensor(vals, v.Shape().Dimensions)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	for name, old := range s.extra {
		t, ok := weights[name]
		if !ok {
			return fmt.Errorf("%s: missing tensor", name)
		}
		if !slices.Equal(t.Shape, old.Shape) {
			return fmt.Errorf("%s: shape %v, want %v", name, t.Shape, old.Shape)
		}
		s.extra[name] = cloneTensor(t)
	}
	for name := range s.counters {
		t, ok := weights[name]
		if !ok {
			return fmt.Errorf("%s: missing tensor", name)
		}
		n, err := intScalar(t)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		s.counters[name] = n
	}
	return nil
}

// EncodeImages runs the image tower in evaluation mode (BatchNorm with its
// running statistics) on n images [n, 3, S, S] and returns the raw image
// features [n, E] (the official encode_image).
func (s *Student) EncodeImages(ctx context.Context, pixels []float32, n int) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("train: encode images: %w", err)
	}
	sz := s.arch.Vision.ImageSize
	if n <= 0 || len(pixels) != n*3*sz*sz {
		return nil, fmt.Errorf("train: encode images: %d pixel values for %d images of 3×%d×%d", len(pixels), n, sz, sz)
	}
	if s.imageExec == nil {
		e, err := model.NewExec(s.backend, s.store, func(scope *model.Scope, x *Node) *Node {
			return encodeImage(scope.At("visual"), &s.arch.Vision, x, bnEval)
		})
		if err != nil {
			return nil, fmt.Errorf("train: encode images: %w", err)
		}
		s.imageExec = e
	}
	out, err := s.imageExec.Call(newTensor(pixels, []int{n, 3, sz, sz}))
	if err != nil {
		return nil, fmt.Errorf("train: encode images: %w", err)
	}
	return flatF32(out[0])
}

// EncodeTexts runs the text tower on token rows (at most the context length
// each, zero-padded) and returns the raw text features [len(ids), E] (the
// official encode_text, pooled at each row's first largest id).
func (s *Student) EncodeTexts(ctx context.Context, ids [][]int) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("train: encode texts: %w", err)
	}
	tok, eot, err := tokenInputs(&s.arch.Text, ids)
	if err != nil {
		return nil, fmt.Errorf("train: encode texts: %w", err)
	}
	if s.textExec == nil {
		e, err := model.NewExec(s.backend, s.store, func(scope *model.Scope, ids, eot *Node) *Node {
			return encodeText(scope, &s.arch.Text, ids, eot)
		})
		if err != nil {
			return nil, fmt.Errorf("train: encode texts: %w", err)
		}
		s.textExec = e
	}
	out, err := s.textExec.Call(tok, eot)
	if err != nil {
		return nil, fmt.Errorf("train: encode texts: %w", err)
	}
	return flatF32(out[0])
}

// tokenBucket is the granularity of the text length the towers run: rows
// are cut after the last pooled position, rounded up to a multiple of it, so
// that few distinct graphs are compiled.
const tokenBucket = 16

// tokenInputs checks token rows and returns them as an int32 tensor [n, C]
// and the pooling positions [n] (first largest id). C is the last pooling
// position + 1 rounded up to tokenBucket (at most the context length):
// the causal text tower's pooled outputs do not depend on later positions,
// which are zero padding or ignored.
func tokenInputs(t *config.TextArch, ids [][]int) (*tensors.Tensor, *tensors.Tensor, error) {
	if len(ids) == 0 {
		return nil, nil, fmt.Errorf("no token rows")
	}
	eot := make([]int32, len(ids))
	last := 0
	for i, row := range ids {
		if len(row) == 0 || len(row) > t.ContextLength {
			return nil, nil, fmt.Errorf("row %d has %d tokens, want 1 to %d", i, len(row), t.ContextLength)
		}
		p := 0
		for j, id := range row {
			if id < 0 || id >= t.VocabSize {
				return nil, nil, fmt.Errorf("row %d, position %d: token id %d outside the vocabulary [0, %d)", i, j, id, t.VocabSize)
			}
			if id > row[p] {
				p = j
			}
		}
		eot[i] = int32(p)
		last = max(last, p)
	}
	c := min(t.ContextLength, (last/tokenBucket+1)*tokenBucket)
	flat := make([]int32, len(ids)*c)
	for i, row := range ids {
		for j := 0; j < len(row) && j < c; j++ {
			flat[i*c+j] = int32(row[j])
		}
	}
	return tensors.FromFlatDataAndDimensions(flat, len(ids), c), tensors.FromFlatDataAndDimensions(eot, len(ids)), nil
}

// newTensor wraps float32 values as a GoMLX tensor of the given dimensions
// (none: a scalar).
func newTensor(vals []float32, dims []int) *tensors.Tensor {
	if len(dims) == 0 {
		return tensors.FromScalar(vals[0])
	}
	return tensors.FromFlatDataAndDimensions(slices.Clone(vals), dims...)
}

// flatF32 copies a float32 GoMLX tensor's values.
func flatF32(t *tensors.Tensor) ([]float32, error) {
	v, err := tensors.CopyFlatData[float32](t)
	if err != nil {
		return nil, fmt.Errorf("train: reading a result: %w", err)
	}
	return v, nil
}

// variableTensor copies a float32 variable's value as a named F32 tensor.
func variableTensor(v *model.Variable, name string) (*tensor.Tensor, error) {
	if v == nil {
		return nil, fmt.Errorf("train: %s: no such variable", name)
	}
	val, err := v.Value()
	if err != nil {
		return nil, fmt.Errorf("train: %s: %w", name, err)
	}
	f, err := tensors.CopyFlatData[float32](val)
	if err != nil {
		return nil, fmt.Errorf("train: %s: %w", name, err)
	}
	return tensor.FromFloat32(name, v.Shape().Dimensions, f), nil
}

// intScalar reads a one-element integer or float tensor as an int64.
func intScalar(t *tensor.Tensor) (int64, error) {
	if t.NumElements() != 1 {
		return 0, fmt.Errorf("shape %v, want one element", t.Shape)
	}
	if t.DType == tensor.I64 && len(t.Data) == 8 {
		return int64(binary.LittleEndian.Uint64(t.Data)), nil
	}
	v, err := t.Float32()
	if err != nil {
		return 0, err
	}
	if v[0] != float32(math.Trunc(float64(v[0]))) {
		return 0, fmt.Errorf("value %v is not an integer", v[0])
	}
	return int64(v[0]), nil
}

// int64Tensor makes a scalar I64 tensor.
func int64Tensor(name string, n int64) *tensor.Tensor {
	data := make([]byte, 8)
	binary.LittleEndian.PutUint64(data, uint64(n))
	return &tensor.Tensor{Name: name, DType: tensor.I64, Shape: []int{}, Data: data}
}

// cloneTensor deep-copies t.
func cloneTensor(t *tensor.Tensor) *tensor.Tensor {
	return &tensor.Tensor{Name: t.Name, DType: t.DType, Shape: slices.Clone(t.Shape), Data: slices.Clone(t.Data)}
}

// cloneArch deep-copies a so that no slices are shared.
func cloneArch(a *config.Arch) config.Arch {
	c := *a
	c.Vision.Transformer.Blocks = slices.Clone(a.Vision.Transformer.Blocks)
	c.Text.Transformer.Blocks = slices.Clone(a.Text.Transformer.Blocks)
	return c
}
