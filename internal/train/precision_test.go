package train

import (
	"context"
	"math"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

func TestParsePrecision(t *testing.T) {
	for in, want := range map[string]Precision{"": FP32, "fp32": FP32, "FP32": FP32, "float32": FP32, "bf16": BF16, " bfloat16 ": BF16} {
		if got, err := ParsePrecision(in); err != nil || got != want {
			t.Errorf("ParsePrecision(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"fp16", "amp", "bf32"} {
		if _, err := ParsePrecision(in); err == nil {
			t.Errorf("ParsePrecision(%q) accepted", in)
		}
	}
	if FP32.String() != "fp32" || BF16.String() != "bf16" {
		t.Errorf("String: %q %q", FP32, BF16)
	}
	h := Hyper{Alpha: 1, Weight: 1, Beta1: 0.9, Beta2: 0.98, Eps: 1e-6, Precision: "fp16"}
	if err := h.validate(); err == nil {
		t.Error("Hyper with precision fp16 validated")
	}
}

// bf16Round rounds a float32 to bfloat16 (round to nearest even), as
// ConvertDType does, and back.
func bf16Round(x float32) float64 {
	b := math.Float32bits(x)
	b += 0x7fff + (b>>16)&1
	return float64(math.Float32frombits(b &^ 0xffff))
}

// TestDotGeneralBF16 checks the arithmetic of a BF16 matrix product on the
// Go backend against float64 products of the bfloat16-rounded operands,
// rounded to bfloat16 (the product's output dtype), and that FP32 graphs
// are untouched; and that the gradients reach the float32 operands as
// float32 and equal the bfloat16 products of the upstream gradient.
func TestDotGeneralBF16(t *testing.T) {
	backend, err := NewBackend("go", BackendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const m, k, n = 5, 37, 3
	x := make([]float32, m*k)
	w := make([]float32, n*k)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)*0.7)) * 1.3
	}
	for i := range w {
		w[i] = float32(math.Cos(float64(i)*1.1)) * 0.7
	}
	for _, p := range []Precision{FP32, BF16} {
		e, err := model.NewExec(backend, model.NewStore(), func(scope *model.Scope, xs, ws *Node) []*Node {
			setPrecision(xs.Graph(), p)
			y := linear(xs, ws, nil) // x·wᵀ: [m, n]
			loss := ReduceAllSum(Mul(y, Iota(xs.Graph(), y.Shape(), 1)))
			grads := Gradient(loss, xs, ws)
			return []*Node{y, grads[0], grads[1]}
		})
		if err != nil {
			t.Fatal(err)
		}
		out, err := e.Call(tensors.FromFlatDataAndDimensions(x, m, k), tensors.FromFlatDataAndDimensions(w, n, k))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for i, o := range out {
			if o.DType() != dtypes.Float32 {
				t.Errorf("%s: output %d is %s, want float32", p, i, o.DType())
			}
		}
		y := tensors.MustCopyFlatData[float32](out[0])
		gx := tensors.MustCopyFlatData[float32](out[1])
		maxRel := 0.0
		for i := range m {
			for j := range n {
				var exact, rounded float64
				for l := range k {
					exact += float64(x[i*k+l]) * float64(w[j*k+l])
					rounded += bf16Round(x[i*k+l]) * bf16Round(w[j*k+l])
				}
				got := float64(y[i*n+j])
				scale := math.Abs(rounded) + 1e-3
				if p == FP32 {
					if d := math.Abs(got-exact) / scale; d > 1e-5 {
						t.Errorf("fp32 y[%d,%d] = %v, want %v", i, j, got, exact)
					}
					continue
				}
				want := bf16Round(float32(rounded))
				if d := math.Abs(got-want) / scale; d > 1e-2 || math.Abs(got-rounded)/scale > 1.0/128 {
					t.Errorf("bf16 y[%d,%d] = %v, want %v (bf16 of %v)", i, j, got, want, rounded)
				}
				maxRel = math.Max(maxRel, math.Abs(got-exact)/scale)
			}
		}
		if p == BF16 && maxRel == 0 {
			t.Error("bf16 products equal the float32 ones exactly: the precision was not applied")
		}
		// d loss/dx[i,l] = Σ_j j·w[j,l], computed from bf16(w) in bf16.
		for i := range m {
			for l := range k {
				var want float64
				for j := range n {
					if p == BF16 {
						want += float64(j) * bf16Round(w[j*k+l])
					} else {
						want += float64(j) * float64(w[j*k+l])
					}
				}
				tol := 1e-5
				if p == BF16 {
					tol = 1.0 / 128
				}
				if d := math.Abs(float64(gx[i*k+l]) - want); d > tol*(math.Abs(want)+1e-3) {
					t.Errorf("%s: dL/dx[%d,%d] = %v, want %v", p, i, l, gx[i*k+l], want)
				}
			}
		}
		t.Logf("%s: max relative deviation of the product from float64: %.3g", p, maxRel)
	}
}

// TestStepBF16 evaluates the ViT step fixture's first iteration in BF16
// and FP32 on the Go backend (same weights, same batch; FP32 is what the
// fixtures check) and compares: the loss within 2e-3 relative, the
// gradient norm within 1e-2, the features within 1e-2·max|f|, every
// gradient tensor within 5e-2·max|g|. It then trains three BF16 steps:
// finite losses, and weights and AdamW moments still float32. (Later
// iterations are not compared: the fixture's learning rates make the
// trajectory chaotic — the loss jumps from 4.2 to 10.6 — and AdamW turns
// the bfloat16 rounding of small gradients into lr-sized moves.)
func TestStepBF16(t *testing.T) {
	ctx := context.Background()
	c, hp := loadStepCase(t, "vit")
	newStep := func(p Precision) *Step {
		st, err := NewStudent(c.arch, c.initial)
		if err != nil {
			t.Fatal(err)
		}
		h := DefaultHyper(c.arch)
		h.Precision = p
		s, err := NewStep(st, c.teacher, len(c.tokens), h)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s32, s16 := newStep(FP32), newStep(BF16)
	g32, m32, err := s32.Gradients(ctx, c.images, c.tokens)
	if err != nil {
		t.Fatal(err)
	}
	g16, m16, err := s16.Gradients(ctx, c.images, c.tokens)
	if err != nil {
		t.Fatal(err)
	}
	rl := math.Abs(m16.Loss-m32.Loss) / math.Abs(m32.Loss)
	rg := math.Abs(m16.GradNorm-m32.GradNorm) / math.Abs(m32.GradNorm)
	t.Logf("loss fp32 %.7g bf16 %.7g (relative %.2g); gradient norm fp32 %.6g bf16 %.6g (relative %.2g)",
		m32.Loss, m16.Loss, rl, m32.GradNorm, m16.GradNorm, rg)
	if !(rl <= 2e-3) {
		t.Errorf("bf16 loss %v vs fp32 %v: relative %.3g > 2e-3", m16.Loss, m32.Loss, rl)
	}
	if rl == 0 {
		t.Errorf("bf16 loss equals fp32 exactly: bf16 was not applied")
	}
	if !(rg <= 1e-2) {
		t.Errorf("bf16 gradient norm %v vs fp32 %v: relative %.3g > 1e-2", m16.GradNorm, m32.GradNorm, rg)
	}
	for i, f := range [][2][]float32{{m16.ImageFeatures, m32.ImageFeatures}, {m16.TextFeatures, m32.TextFeatures}} {
		if r := tensorRel(f[0], f[1]); !(r <= 1e-2) {
			t.Errorf("features %d: bf16 differ from fp32 by %.3g·max > 1e-2", i, r)
		}
	}
	worst, worstName := 0.0, ""
	for name, g := range g32 {
		h := g16[name]
		if h == nil {
			t.Errorf("bf16 gradient of %s missing", name)
			continue
		}
		if h.DType != tensor.F32 {
			t.Errorf("bf16 gradient of %s is %s", name, h.DType)
		}
		r := tensorRel(f32(t, h), f32(t, g))
		if r > worst {
			worst, worstName = r, name
		}
		if !(r <= 5e-2) {
			t.Errorf("gradient %s: bf16 differs from fp32 by %.3g·max|g| > 5e-2", name, r)
		}
	}
	t.Logf("gradients: worst tensor %s at %.3g·max|g|", worstName, worst)

	for k := range 3 {
		m, err := s16.Run(ctx, c.images, c.tokens, CosineLR(hp.LRBase, hp.Warmup, int(hp.TotalSteps), k))
		if err != nil {
			t.Fatalf("bf16 iteration %d: %v", k, err)
		}
		t.Logf("bf16 iteration %d: loss %.6g, gradient norm %.6g", k, m.Loss, m.GradNorm)
	}
	state, err := s16.State()
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range state.Weights {
		if w.DType != tensor.F32 && w.DType != tensor.I64 {
			t.Errorf("weight %s is %s after bf16 steps", name, w.DType)
		}
	}
	for name, m := range state.Moments {
		if m.DType != tensor.F32 {
			t.Errorf("AdamW moment %s is %s, want F32", name, m.DType)
		}
	}
}
