package engine

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// Errors that Build wraps; test for them with errors.Is.
var (
	// ErrMissingTensor: a tensor the architecture needs is not in the map.
	ErrMissingTensor = errors.New("missing tensor")
	// ErrTensorShape: a tensor has a shape other than the architecture's.
	ErrTensorShape = errors.New("shape")
	// ErrUnusedTensor: a tensor is not part of the architecture.
	ErrUnusedTensor = errors.New("unused tensor (not part of the architecture)")
)

// loader hands out the tensors of a checkpoint by name, checking shapes and
// recording which were used. The first error sticks; later calls return nil.
type loader struct {
	tensors map[string]*tensor.Tensor
	used    map[string]bool
	kern    *microKernel
	bf16    bool // pack weights in BF16
	err     error
}

func (l *loader) failf(format string, args ...any) {
	if l.err == nil {
		l.err = fmt.Errorf(format, args...)
	}
}

// get returns the values of tensor name converted to float32, checking that
// its shape is shape.
func (l *loader) get(name string, shape ...int) []float32 {
	if l.err != nil {
		return nil
	}
	t, ok := l.tensors[name]
	if !ok || t == nil {
		l.failf("engine: %s: %w", name, ErrMissingTensor)
		return nil
	}
	l.used[name] = true
	if !slices.Equal(t.Shape, shape) {
		l.failf("engine: %s: %w %v, want %v", name, ErrTensorShape, t.Shape, shape)
		return nil
	}
	if !t.DType.IsFloat() {
		l.failf("engine: %s: dtype %s, want a float type", name, t.DType)
		return nil
	}
	v, err := t.Float32()
	if err != nil {
		l.failf("engine: %w", err)
		return nil
	}
	return v
}

// has reports whether tensor name is present.
func (l *loader) has(name string) bool {
	_, ok := l.tensors[name]
	return ok
}

// scalar returns a one-element tensor stored with shape [] or [1].
func (l *loader) scalar(name string) float32 {
	if l.err != nil {
		return 0
	}
	if t, ok := l.tensors[name]; ok && t != nil && len(t.Shape) == 1 {
		if v := l.get(name, 1); v != nil {
			return v[0]
		}
		return 0
	}
	if v := l.get(name); len(v) == 1 {
		return v[0]
	}
	return 0
}

// linear loads prefix.weight [out, in] and prefix.bias [out] and packs the
// weight. Rows [0, scaleRows) of weight and bias are multiplied by scale.
func (l *loader) linear(prefix string, out, in int, scaleRows int, scale float32) linear {
	w := l.get(prefix+".weight", out, in)
	b := l.get(prefix+".bias", out)
	if l.err != nil {
		return linear{}
	}
	if scaleRows > 0 {
		for i := range scaleRows * in {
			w[i] *= scale
		}
		for i := range scaleRows {
			b[i] *= scale
		}
	}
	return linear{w: l.packT(w, out, in), bias: b}
}

// packT packs W [n×k] (a Linear weight) as the B = Wᵀ operand.
func (l *loader) packT(w []float32, n, k int) *packedB {
	return l.reduce(packBT(l.kern, make([]float32, packedLen(l.kern, k, n)), w, k, n, k))
}

// reduce converts a packed weight to the model's precision.
func (l *loader) reduce(b *packedB) *packedB {
	if l.bf16 {
		b.toBF16Packed()
	}
	return b
}

// packN packs P [k×n] (a projection matrix, y = x·P) as the B operand.
func (l *loader) packN(p []float32, k, n int) *packedB {
	return l.reduce(packBN(l.kern, make([]float32, packedLen(l.kern, k, n)), p, n, k, n))
}

// checkUnused reports tensors that were never used, except BatchNorm's
// num_batches_tracked counters.
func (l *loader) checkUnused() error {
	if l.err != nil {
		return l.err
	}
	var extra []string
	for name := range l.tensors {
		if !l.used[name] && !strings.HasSuffix(name, "num_batches_tracked") {
			extra = append(extra, name)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	sort.Strings(extra)
	more := ""
	if len(extra) > 5 {
		more = fmt.Sprintf(" (and %d more)", len(extra)-5)
		extra = extra[:5]
	}
	return fmt.Errorf("engine: %s: %w%s", strings.Join(extra, ", "), ErrUnusedTensor, more)
}

// attnScale is the factor applied to queries, 1/√d.
func attnScale(d int) float32 {
	return float32(1 / math.Sqrt(float64(d)))
}
