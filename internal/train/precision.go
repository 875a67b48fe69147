package train

import (
	"fmt"
	"strings"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
)

// Precision is the arithmetic of a training step's matrix products.
//
// FP32 computes everything in float32, the semantics of the fixtures.
// BF16 is mixed precision as the official recipe's autocast runs it, with
// bfloat16 instead of float16 (no loss scaling needed): every matrix
// product of the towers — the linear layers, the patch embedding, the
// attention products and the projections — rounds its operands to
// bfloat16, multiplies (and differentiates) in bfloat16 with float32
// accumulation where the backend does so, and hands float32 results on.
// The master weights, LayerNorms, softmaxes, GELUs, the residual stream,
// the features, the loss, the gradients as applied, the clipping and the
// AdamW state stay float32. The teacher in the step graph runs the same
// way, as the official teacher runs under autocast.
type Precision string

const (
	// FP32 is full float32 (the zero value).
	FP32 Precision = ""
	// BF16 is bfloat16 matrix products with float32 master weights.
	BF16 Precision = "bf16"
)

// String returns "fp32" or "bf16".
func (p Precision) String() string {
	if p == FP32 {
		return "fp32"
	}
	return string(p)
}

// ParsePrecision reads "fp32" (or "") and "bf16".
func ParsePrecision(s string) (Precision, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "fp32", "float32":
		return FP32, nil
	case "bf16", "bfloat16":
		return BF16, nil
	}
	return FP32, fmt.Errorf("train: precision %q: want fp32 or bf16", s)
}

// valid reports a known precision.
func (p Precision) valid() bool { return p == FP32 || p == BF16 }

// precisionKey is the Graph state key of the graph's Precision.
type precisionKey struct{}

// setPrecision makes the matrix products built in g from now on use p.
func setPrecision(g *Graph, p Precision) {
	if p == FP32 {
		g.AttachState(precisionKey{}, nil)
		return
	}
	g.AttachState(precisionKey{}, p)
}

// graphPrecision is the precision setPrecision gave g (FP32 by default).
func graphPrecision(g *Graph) Precision {
	if p, ok := g.State(precisionKey{}).(Precision); ok {
		return p
	}
	return FP32
}

// dotGeneral is DotGeneral in the graph's precision: in FP32 exactly
// DotGeneral; in BF16 the operands are rounded to bfloat16, the product
// (and, in the backward pass, both operand gradients) is computed in
// bfloat16 with the backend's float32 accumulation, and the result is
// converted to float32. Gradients reach the float32 operands in float32.
func dotGeneral(lhs *Node, lhsContracting, lhsBatch []int, rhs *Node, rhsContracting, rhsBatch []int) *Node {
	if graphPrecision(lhs.Graph()) != BF16 {
		return DotGeneral(lhs, lhsContracting, lhsBatch, rhs, rhsContracting, rhsBatch)
	}
	l := ConvertDType(lhs, dtypes.BFloat16)
	r := ConvertDType(rhs, dtypes.BFloat16)
	// No accumulator dtype in the node: its gradient is then computed in
	// the output dtype, bfloat16, as autocast's backward does (the
	// backends still accumulate bfloat16 products in float32).
	y := Dot(l, r).WithAccumulatorDType(dtypes.InvalidDType).General(lhsContracting, lhsBatch, rhsContracting, rhsBatch)
	return ConvertDType(y, dtype)
}
