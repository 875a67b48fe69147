package train

import (
	"math"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/ml/model"
)

// dtype is the element type of every float tensor in the training graphs.
const dtype = dtypes.Float32

// varPath returns the Store path of the open_clip tensor name:
// "visual.conv1.weight" → "/visual/conv1/weight".
func varPath(name string) string {
	return "/" + strings.ReplaceAll(name, ".", "/")
}

// param returns the graph value of the float32 variable name under scope,
// which must exist with exactly the given dimensions (the Store panics on a
// shape mismatch; graph building turns that into an error).
func param(scope *model.Scope, g *Graph, name string, dims ...int) *Node {
	return scope.VariableWithShape(name, shapes.Make(dtype, dims...)).NodeValue(g)
}

// linear applies a PyTorch Linear layer to the last axis of x:
// y = x·Wᵀ + b with W [out, in] and b [out] (b may be nil).
func linear(x, w, b *Node) *Node {
	y := dotGeneral(x, []int{x.Rank() - 1}, nil, w, []int{1}, nil)
	if b != nil {
		y = Add(y, ExpandLeftToRank(b, y.Rank()))
	}
	return y
}

// project multiplies the last axis of x by a plain matrix P [in, out]
// (open_clip's proj / text_projection: y = x·P).
func project(x, p *Node) *Node {
	return dotGeneral(x, []int{x.Rank() - 1}, nil, p, []int{0}, nil)
}

// layerNorm normalises the last axis of x with the biased variance and eps
// 1e-5, then scales by gamma and shifts by beta (PyTorch nn.LayerNorm).
// (GoMLX's fused LayerNorm would run the decomposed form as well for the
// gradient: more work when training.)
func layerNorm(scope *model.Scope, x *Node) *Node {
	g := x.Graph()
	w := x.Shape().Dim(-1)
	gamma := param(scope, g, "weight", w)
	beta := param(scope, g, "bias", w)
	mean := ReduceAndKeep(x, ReduceMean, -1)
	xc := Sub(x, mean)
	variance := ReduceAndKeep(Square(xc), ReduceMean, -1)
	y := Mul(xc, rsqrt(AddScalar(variance, 1e-5)))
	return Add(Mul(y, ExpandLeftToRank(gamma, y.Rank())), ExpandLeftToRank(beta, y.Rank()))
}

// gelu is the exact (erf) GELU, PyTorch's nn.GELU().
func gelu(x *Node) *Node {
	return Mul(MulScalar(x, 0.5), OnePlus(Erf(MulScalar(x, 1/math.Sqrt2))))
}

// quickGELU is x·sigmoid(1.702·x).
func quickGELU(x *Node) *Node {
	return Mul(x, Sigmoid(MulScalar(x, 1.702)))
}

// geluTanh is the tanh approximation of GELU.
func geluTanh(x *Node) *Node {
	inner := MulScalar(Add(x, MulScalar(Mul(Square(x), x), 0.044715)), math.Sqrt(2/math.Pi))
	return Mul(MulScalar(x, 0.5), OnePlus(Tanh(inner)))
}

// l2Normalize divides each row (last axis) of x by max(‖row‖₂, 1e-12), as
// torch.nn.functional.normalize.
func l2Normalize(x *Node) *Node {
	norm := Sqrt(ReduceAndKeep(Square(x), ReduceSum, -1))
	return Div(x, MaxScalar(norm, 1e-12))
}

// rsqrt is 1/√x (GoMLX's Rsqrt has no gradient).
func rsqrt(x *Node) *Node {
	return Div(ScalarOne(x.Graph(), x.DType()), Sqrt(x))
}

// softmax over the last axis, written out: GoMLX's Softmax runs a fused
// kernel and, for the gradient, this decomposed form as well.
func softmax(x *Node) *Node {
	e := Exp(Sub(x, StopGradient(ReduceAndKeep(x, ReduceMax, -1))))
	return Div(e, ReduceAndKeep(e, ReduceSum, -1))
}
