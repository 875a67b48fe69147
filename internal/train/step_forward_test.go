package train

import (
	"bytes"
	"context"
	"math"
	"testing"
)

// TestStepLoss: the forward-only evaluation gives the fixture's first loss
// and features (ViT and ResNet: BatchNorm with batch statistics) and
// changes no weight, running statistic or counter.
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
