package train

import (
	"bytes"
	"context"
	"math"
	"testing"
)

// TestStepLoss: the forward-only evaluation (Loss) gives the fixture's
// first loss (ViT and ResNet: BatchNorm with batch statistics), the
// forward and backward evaluation (Backward) also its gradient norm and
// clipping coefficient, and neither changes a weight, running statistic or
// counter.
func TestStepLoss(t *testing.T) {
	ctx := context.Background()
	for _, fam := range []string{"vit", "rn"} {
		t.Run(fam, func(t *testing.T) {
			c, hp := loadStepCase(t, fam)
			var res struct {
				Iterations []stepIteration `json:"iterations"`
			}
			readJSON(t, distillPath(t, "step", fam, "result.json"), &res)
			s := c.newStep(t, hp)
			before, err := s.State()
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.Loss(ctx, c.images, c.tokens)
			if err != nil {
				t.Fatal(err)
			}
			it := res.Iterations[0]
			if !relClose(m.Loss, it.Total, 1e-5) || !relClose(m.SoftI2T, it.SoftI2T, 1e-5) || !relClose(m.SoftT2I, it.SoftT2I, 1e-5) {
				t.Errorf("loss %v (%v, %v), fixture %v (%v, %v)", m.Loss, m.SoftI2T, m.SoftT2I, it.Total, it.SoftI2T, it.SoftT2I)
			}
			if !math.IsNaN(m.GradNorm) || m.Skipped || m.Step != 0 {
				t.Errorf("metrics %+v", m)
			}
			b, err := s.Backward(ctx, c.images, c.tokens)
			if err != nil {
				t.Fatal(err)
			}
			if !relClose(b.Loss, it.Total, 1e-5) || !relClose(b.GradNorm, it.GradNorm, 1e-5) || !relClose(b.ClipCoef, it.ClipCoef, 1e-5) {
				t.Errorf("backward: loss %v, gradient norm %v, clip %v; fixture %v, %v, %v", b.Loss, b.GradNorm, b.ClipCoef, it.Total, it.GradNorm, it.ClipCoef)
			}
			if b.Skipped || b.Step != 0 {
				t.Errorf("backward metrics %+v", b)
			}
			after, err := s.State()
			if err != nil {
				t.Fatal(err)
			}
			for name, w := range before.Weights {
				if !bytes.Equal(w.Data, after.Weights[name].Data) {
					t.Errorf("%s changed", name)
				}
			}
			if after.Step != 0 {
				t.Errorf("step count %d", after.Step)
			}
		})
	}
}
