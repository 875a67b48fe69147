package train

import (
	"context"
	"fmt"
	"sync"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/ml/model"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// GraphTeacher is a teacher run as GoMLX graphs (the towers in inference
// mode, BatchNorm with running statistics) on any backend, so that on a
// GPU it runs on the same device as the student. Its weights are loaded
// once as constants of the backend.
//
// Used with NewStep on the student's backend, the teacher forward becomes
// part of the step's compiled graph: its weights are held next to the
// student's, the images and tokens go to the device once, and no feature
// makes a round trip through the host. Elsewhere (AccumStep, AutoStep,
// direct calls) it runs its own compiled forward per call.
//
// It is safe for concurrent use.
type GraphTeacher struct {
	m         *Student // the towers; never trained
	precision Precision
	scale     float32

	mu                  sync.Mutex
	imageExec, textExec *model.Exec
}

// teacherScope is the scope under which a fused teacher's variables live
// in the student's store.
const teacherScope = "teacher"

// NewGraphTeacher builds a teacher of architecture arch from weights
// (open_clip names, as NewStudent takes them) on backend, computing its
// matrix products in precision p (the official teacher runs under the
// training's autocast).
func NewGraphTeacher(backend compute.Backend, arch *config.Arch, weights map[string]*tensor.Tensor, p Precision) (*GraphTeacher, error) {
	if !p.valid() {
		return nil, fmt.Errorf("train: teacher: precision %q: want fp32 or bf16", string(p))
	}
	m, err := NewStudentOn(backend, arch, weights)
	if err != nil {
		return nil, fmt.Errorf("train: teacher: %w", err)
	}
	ls, err := variableTensor(m.store.GetVariable(varPath("logit_scale")), "logit_scale")
	if err != nil {
		return nil, fmt.Errorf("train: teacher: %w", err)
	}
	v, err := ls.Float32()
	if err != nil || len(v) != 1 {
		return nil, fmt.Errorf("train: teacher: logit_scale: %v", err)
	}
	return &GraphTeacher{m: m, precision: p, scale: v[0]}, nil
}

// EmbedDim implements Teacher.
func (t *GraphTeacher) EmbedDim() int { return t.m.arch.Vision.Embed }

// ImageSize implements Teacher.
func (t *GraphTeacher) ImageSize() int { return t.m.arch.Vision.ImageSize }

// LogitScale implements Teacher.
func (t *GraphTeacher) LogitScale() float32 { return t.scale }

// Precision returns the precision of the teacher's own forward passes.
func (t *GraphTeacher) Precision() Precision { return t.precision }

// Backend returns the backend the teacher runs on.
func (t *GraphTeacher) Backend() compute.Backend { return t.m.backend }

// EncodeImages implements Teacher: L2-normalised image features [n, E].
func (t *GraphTeacher) EncodeImages(ctx context.Context, pixels []float32, n int) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("train: teacher: %w", err)
	}
	sz := t.ImageSize()
	if n <= 0 || len(pixels) != n*3*sz*sz {
		return nil, fmt.Errorf("train: teacher: %d pixel values for %d images of 3×%d×%d", len(pixels), n, sz, sz)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.imageExec == nil {
		e, err := model.NewExec(t.m.backend, t.m.store, func(scope *model.Scope, x *Node) *Node {
			setPrecision(x.Graph(), t.precision)
			return t.imageFeatures(scope, x)
		})
		if err != nil {
			return nil, fmt.Errorf("train: teacher: %w", err)
		}
		t.imageExec = e
	}
	out, err := t.imageExec.Call(newTensor(pixels, []int{n, 3, sz, sz}))
	if err != nil {
		return nil, fmt.Errorf("train: teacher: encode images: %w", err)
	}
	return flatF32(out[0])
}

// EncodeTexts implements Teacher: L2-normalised text features.
func (t *GraphTeacher) EncodeTexts(ctx context.Context, ids [][]int) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("train: teacher: %w", err)
	}
	tok, eot, err := tokenInputs(&t.m.arch.Text, ids)
	if err != nil {
		return nil, fmt.Errorf("train: teacher: encode texts: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.textExec == nil {
		e, err := model.NewExec(t.m.backend, t.m.store, func(scope *model.Scope, ids, eot *Node) *Node {
			setPrecision(ids.Graph(), t.precision)
			return t.textFeatures(scope, ids, eot)
		})
		if err != nil {
			return nil, fmt.Errorf("train: teacher: %w", err)
		}
		t.textExec = e
	}
	out, err := t.textExec.Call(tok, eot)
	if err != nil {
		return nil, fmt.Errorf("train: teacher: encode texts: %w", err)
	}
	return flatF32(out[0])
}

// imageFeatures builds the normalised image features of the teacher whose
// variables are under scope, in evaluation mode and without gradients.
func (t *GraphTeacher) imageFeatures(scope *model.Scope, images *Node) *Node {
	return StopGradient(l2Normalize(encodeImage(scope.At("visual"), &t.m.arch.Vision, images, bnEval)))
}

// textFeatures builds the normalised text features, pooled at eot.
func (t *GraphTeacher) textFeatures(scope *model.Scope, ids, eot *Node) *Node {
	return StopGradient(l2Normalize(encodeText(scope, &t.m.arch.Text, ids, eot)))
}

// fusable reports whether the teacher can run inside a step graph of
// student: same backend, same image size, and token rows the student
// validates are valid for the teacher (same vocabulary, a context at
// least as long).
func (t *GraphTeacher) fusable(student *Student) bool {
	a, b := &t.m.arch, &student.arch
	return unwrapBackend(t.m.backend) == unwrapBackend(student.backend) &&
		a.Vision.ImageSize == b.Vision.ImageSize &&
		a.Text.VocabSize == b.Text.VocabSize && a.Text.ContextLength >= b.Text.ContextLength
}

// attach copies the teacher's variables into store under /teacher (the
// values of an earlier attach are replaced), not trainable.
func (t *GraphTeacher) attach(store *model.Store) error {
	for _, name := range t.m.vars {
		src := t.m.store.GetVariable(varPath(name))
		val, err := src.Value()
		if err != nil {
			return fmt.Errorf("train: teacher %s: %w", name, err)
		}
		c, err := val.Clone()
		if err != nil {
			return fmt.Errorf("train: teacher %s: %w", name, err)
		}
		path := "/" + teacherScope + varPath(name)
		if v := store.GetVariable(path); v != nil {
			if !v.Shape().Equal(c.Shape()) {
				return fmt.Errorf("train: teacher %s: shape %s, an earlier teacher's is %s", name, c.Shape(), v.Shape())
			}
			if err := v.SetValue(c); err != nil {
				return fmt.Errorf("train: teacher %s: %w", name, err)
			}
			continue
		}
		v, err := store.CreateVariable(path, c)
		if err != nil {
			return fmt.Errorf("train: teacher %s: %w", name, err)
		}
		v.SetTrainable(false)
	}
	return nil
}

// teacherNodes returns the teacher features [B, E] of a step graph: built
// in the graph for a fused GraphTeacher, else the inputs in[3] and in[4].
func (s *Step) teacherNodes(scope *model.Scope, in []*Node) (ti, tt *Node) {
	if s.fused == nil {
		return in[3], in[4]
	}
	ts := scope.At(teacherScope)
	return s.fused.imageFeatures(ts, in[0]), s.fused.textFeatures(ts, in[1], in[2])
}
