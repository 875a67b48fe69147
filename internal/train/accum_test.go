package train

import (
	"context"
	"math"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/data"
)

// firstBatch returns the first training batch of the tiny setup.
func (s *tinySetup) firstBatch(t *testing.T) *data.Batch {
	t.Helper()
	src, err := s.open()(context.Background(), data.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	b, err := src.Next()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAccumStep checks gradient accumulation: with one micro-batch it is
// Step (same weights and AdamW state after three steps, bit for bit); with
// two it applies the clipped mean of the two half-batches' gradients (the
// first AdamW moment after one step is (1−β₁)·coef·mean, coef from the
// norm of the mean), and its loss is the mean of the half-batch losses.
func TestAccumStep(t *testing.T) {
	ctx := context.Background()
	s := newTinySetup(t)
	b := s.firstBatch(t)

	ref := s.step(t)
	one, err := NewAccumStep(ref.st.cloneForTest(t), s.teacher, s.batch, 1, ref.hyper)
	if err != nil {
		t.Fatal(err)
	}
	for k := range 3 {
		lr := 1e-3 * float64(k+1)
		mr, err := ref.Run(ctx, b.Images, b.Tokens, lr)
		if err != nil {
			t.Fatal(err)
		}
		ma, err := one.Run(ctx, b.Images, b.Tokens, lr)
		if err != nil {
			t.Fatal(err)
		}
		if mr.Loss != ma.Loss || mr.GradNorm != ma.GradNorm {
			t.Errorf("step %d: loss %v / %v, norm %v / %v", k, mr.Loss, ma.Loss, mr.GradNorm, ma.GradNorm)
		}
	}
	sr, _ := ref.State()
	sa, _ := one.State()
	if d := sameTensors(sr.Weights, sa.Weights); d != "" {
		t.Errorf("one micro-batch: weights: %s", d)
	}
	if d := sameTensors(sr.Moments, sa.Moments); d != "" {
		t.Errorf("one micro-batch: moments: %s", d)
	}

	// Two micro-batches against the mean of the half-batch gradients.
	half := s.batch / 2
	plane := 3 * 32 * 32
	probe := s.step(t)
	probe.batch = half
	g1, m1, err := probe.Gradients(ctx, b.Images[:half*plane], b.Tokens[:half])
	if err != nil {
		t.Fatal(err)
	}
	g2, m2, err := probe.Gradients(ctx, b.Images[half*plane:], b.Tokens[half:])
	if err != nil {
		t.Fatal(err)
	}
	two, err := NewAccumStep(s.step(t).st, s.teacher, s.batch, 2, ref.hyper)
	if err != nil {
		t.Fatal(err)
	}
	m, err := two.Run(ctx, b.Images, b.Tokens, 1e-3)
	if err != nil {
		t.Fatal(err)
	}
	if want := (m1.Loss + m2.Loss) / 2; math.Abs(m.Loss-want) > 1e-6*math.Abs(want) {
		t.Errorf("loss %v, want the mean of the halves' %v", m.Loss, want)
	}
	var sq float64
	mean := map[string][]float64{}
	for name, a := range g1 {
		va, _ := a.Float32()
		vb, _ := g2[name].Float32()
		mv := make([]float64, len(va))
		var n2 float64
		for i := range va {
			mv[i] = (float64(va[i]) + float64(vb[i])) / 2
			n2 += mv[i] * mv[i]
		}
		sq += n2
		mean[name] = mv
	}
	norm := math.Sqrt(sq)
	if math.Abs(m.GradNorm-norm) > 1e-5*norm {
		t.Errorf("gradient norm %v, want %v", m.GradNorm, norm)
	}
	coef := math.Min(1, 5/(norm+1e-6))
	st, _ := two.State()
	worst := 0.0
	for name, mv := range mean {
		got, _ := st.Moments["exp_avg."+name].Float32()
		var maxRef, maxDiff float64
		for i := range mv {
			want := (1 - ref.hyper.Beta1) * coef * mv[i]
			maxRef = math.Max(maxRef, math.Abs(want))
			maxDiff = math.Max(maxDiff, math.Abs(float64(got[i])-want))
		}
		if maxRef > 0 {
			worst = math.Max(worst, maxDiff/maxRef)
		}
	}
	if worst > 1e-4 {
		t.Errorf("exp_avg differs from (1−β₁)·coef·mean gradient by %.3g of the tensor maximum", worst)
	}
	t.Logf("two micro-batches: loss %.6f, norm %.6f, worst exp_avg error %.2g", m.Loss, m.GradNorm, worst)
}

// cloneForTest returns a new student with s's weights.
func (s *Student) cloneForTest(t *testing.T) *Student {
	t.Helper()
	w, err := s.Weights()
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewStudent(&s.arch, w)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
