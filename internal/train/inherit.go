package train

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// InitialLogitScale is a freshly built model's logit_scale parameter,
// float32(ln(1/0.07)); manual inheritance does not copy the teacher's.
const InitialLogitScale float32 = 2.6592600345611572

// Inherit makes a student's initial weights from a teacher's by TinyCLIP's
// manual weight inheritance (spec §6.1). Each stage of blocks (the ViT and
// text transformers, the four ResNet stages) with teacher depth Dt and
// student depth Ds gives student block k the teacher block k·(Dt / Ds)
// (integer division); every tensor keeps the leading slice of its teacher
// tensor in every dimension, except attn.in_proj_weight/in_proj_bias, which
// keep the first student heads of each of q, k and v; one-element tensors
// (BatchNorm num_batches_tracked) are copied whole. logit_scale is not
// inherited: it gets InitialLogitScale.
//
// teacher holds the teacher tensors under open_clip names (any float dtype)
// and must match teacherArch exactly; the result holds every tensor
// studentArch needs (float32, num_batches_tracked int64). The towers must be
// of the same kind, with the same head width, and no student dimension may
// exceed the teacher's.
func Inherit(teacher map[string]*tensor.Tensor, teacherArch, studentArch *config.Arch) (map[string]*tensor.Tensor, error) {
	if teacherArch == nil || studentArch == nil {
		return nil, fmt.Errorf("train: inherit: nil architecture")
	}
	if err := teacherArch.Validate(); err != nil {
		return nil, fmt.Errorf("train: inherit: teacher: %w", err)
	}
	if err := studentArch.Validate(); err != nil {
		return nil, fmt.Errorf("train: inherit: student: %w", err)
	}
	shapes := make(map[string][]int, len(teacher))
	for name, t := range teacher {
		if t == nil {
			return nil, fmt.Errorf("train: inherit: teacher: %s: nil tensor", name)
		}
		shapes[name] = t.Shape
	}
	if err := config.Check(teacherArch, shapes); err != nil {
		return nil, fmt.Errorf("train: inherit: teacher weights: %w", err)
	}
	if err := inheritCompatible(teacherArch, studentArch); err != nil {
		return nil, fmt.Errorf("train: inherit: %w", err)
	}
	out := make(map[string]*tensor.Tensor)
	for name, shape := range studentArch.TensorShapes() {
		t, err := inheritTensor(teacher, teacherArch, studentArch, name, shape)
		if err != nil {
			return nil, fmt.Errorf("train: inherit: %w", err)
		}
		out[name] = t
	}
	return out, nil
}

// inheritCompatible checks what the leading-slice rules need: the same
// image tower kind and the same head widths.
func inheritCompatible(t, s *config.Arch) error {
	if t.Vision.Kind != s.Vision.Kind {
		return fmt.Errorf("student image tower is a %s, the teacher's a %s", s.Vision.Kind, t.Vision.Kind)
	}
	if s.Vision.Kind == config.KindViT {
		if err := sameHeadDim("vision", &t.Vision.Transformer, &s.Vision.Transformer); err != nil {
			return err
		}
	} else if t.Vision.PoolHeadDim != s.Vision.PoolHeadDim {
		return fmt.Errorf("student attention-pool head width %d differs from the teacher's %d",
			s.Vision.PoolHeadDim, t.Vision.PoolHeadDim)
	}
	return sameHeadDim("text", &t.Text.Transformer, &s.Text.Transformer)
}

func sameHeadDim(tower string, t, s *config.Transformer) error {
	uses := false
	for _, b := range s.Blocks {
		uses = uses || b.Heads > 0
	}
	if uses && t.HeadDim != s.HeadDim {
		return fmt.Errorf("student %s head width %d differs from the teacher's %d (heads are inherited whole)",
			tower, s.HeadDim, t.HeadDim)
	}
	return nil
}

// teacherName maps a student tensor name to the teacher tensor it inherits
// from: block indices of each stage are mapped k → k·(Dt / max(Ds, 1)).
func teacherName(name string, t, s *config.Arch) string {
	stage := func(prefix string, dt, ds int) (string, bool) {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			return "", false
		}
		idx, tail, ok := strings.Cut(rest, ".")
		k, err := strconv.Atoi(idx)
		if !ok || err != nil {
			return "", false
		}
		step := dt / max(ds, 1)
		return prefix + strconv.Itoa(k*step) + "." + tail, true
	}
	if n, ok := stage("visual.transformer.resblocks.", len(t.Vision.Transformer.Blocks), len(s.Vision.Transformer.Blocks)); ok {
		return n
	}
	if n, ok := stage("transformer.resblocks.", len(t.Text.Transformer.Blocks), len(s.Text.Transformer.Blocks)); ok {
		return n
	}
	for i := range 4 {
		if n, ok := stage(fmt.Sprintf("visual.layer%d.", i+1), t.Vision.Layers[i], s.Vision.Layers[i]); ok {
			return n
		}
	}
	return name
}

// inheritTensor builds one student tensor.
func inheritTensor(teacher map[string]*tensor.Tensor, ta, sa *config.Arch, name string, shape []int) (*tensor.Tensor, error) {
	if name == "logit_scale" {
		return tensor.FromFloat32(name, []int{}, []float32{InitialLogitScale}), nil
	}
	tname := teacherName(name, ta, sa)
	tt, ok := teacher[tname]
	counter := strings.HasSuffix(name, ".num_batches_tracked")
	if !ok {
		if counter {
			return int64Tensor(name, 0), nil // the teacher file left its counter out
		}
		return nil, fmt.Errorf("%s: the teacher has no %s to inherit from", name, tname)
	}
	if counter {
		n, err := intScalar(tt)
		if err != nil {
			return nil, fmt.Errorf("teacher %s: %w", tname, err)
		}
		return int64Tensor(name, n), nil
	}
	vals, err := tt.Float32()
	if err != nil {
		return nil, fmt.Errorf("teacher %s: %w", tname, err)
	}
	numel := 1
	for _, d := range shape {
		numel *= d
	}
	if len(vals) == 1 && numel == 1 {
		return tensor.FromFloat32(name, shape, vals), nil
	}
	tshape, sshape := tt.Shape, shape
	if strings.HasSuffix(name, "attn.in_proj_weight") || strings.HasSuffix(name, "attn.in_proj_bias") {
		d := headDimOf(name, sa)
		if tshape, err = headView(tname, tt.Shape, d); err != nil {
			return nil, err
		}
		if sshape, err = headView(name, shape, d); err != nil {
			return nil, err
		}
	}
	if len(tshape) != len(sshape) {
		return nil, fmt.Errorf("%s: student shape %v and teacher %s shape %v differ in rank", name, shape, tname, tt.Shape)
	}
	for i := range sshape {
		if sshape[i] > tshape[i] {
			return nil, fmt.Errorf("%s: student shape %v exceeds the teacher's %s %v in dimension %d",
				name, shape, tname, tt.Shape, i)
		}
	}
	return tensor.FromFloat32(name, shape, leadingSlice(vals, tshape, sshape)), nil
}

// headDimOf returns the head width of the tower holding name.
func headDimOf(name string, a *config.Arch) int {
	if strings.HasPrefix(name, "visual.") {
		return a.Vision.Transformer.HeadDim
	}
	return a.Text.Transformer.HeadDim
}

// headView views an in_proj weight [3·h·d, W] as [3, h, d, W] and a bias
// [3·h·d] as [3, h, d].
func headView(name string, shape []int, d int) ([]int, error) {
	if len(shape) == 0 || d <= 0 || shape[0]%(3*d) != 0 {
		return nil, fmt.Errorf("%s: shape %v is not 3 × heads × %d rows", name, shape, d)
	}
	v := []int{3, shape[0] / (3 * d), d}
	return append(v, shape[1:]...), nil
}

// leadingSlice copies src[:s0, :s1, …] of a row-major array of shape from
// into a new array of shape to (to[i] ≤ from[i]).
func leadingSlice(src []float32, from, to []int) []float32 {
	n := 1
	for _, d := range to {
		n *= d
	}
	dst := make([]float32, 0, n)
	if n == 0 {
		return dst
	}
	if len(to) == 0 {
		return append(dst, src[0])
	}
	// strides of the source
	strides := make([]int, len(from))
	s := 1
	for i := len(from) - 1; i >= 0; i-- {
		strides[i] = s
		s *= from[i]
	}
	last := len(to) - 1
	idx := make([]int, last) // index over all but the last dimension
	for {
		off := 0
		for i, v := range idx {
			off += v * strides[i]
		}
		dst = append(dst, src[off:off+to[last]]...)
		i := last - 1
		for ; i >= 0; i-- {
			idx[i]++
			if idx[i] < to[i] {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			return dst
		}
	}
}
