package train

import (
	"fmt"
	"math"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// applyGradients runs the optimizer part of a step alone — clipping,
// AdamW, logit-scale reset — on given gradients, and returns the gradient
// norm and clipping coefficient.
func (s *Step) applyGradients(t *testing.T, grads map[string]*tensor.Tensor, lr float64) (float64, float64) {
	t.Helper()
	used := s.usedParams()
	exec, err := model.NewExec(s.st.backend, s.st.store, func(scope *model.Scope, in []*Node) []*Node {
		norm, coef := s.clip(in[:len(used)])
		s.update(scope, used, in[:len(used)], coef, IsFinite(norm), in[len(used)])
		return []*Node{norm, coef}
	})
	if err != nil {
		t.Fatal(err)
	}
	args := make([]any, 0, len(used)+1)
	for _, name := range used {
		g, ok := grads[name]
		if !ok {
			t.Fatalf("no gradient for %s", name)
		}
		shape := s.st.store.GetVariable(varPath(name)).Shape().Dimensions
		args = append(args, newTensor(f32(t, g), shape))
	}
	args = append(args, s.stepScalars(lr, 0))
	out, err := exec.Call(args...)
	if err != nil {
		t.Fatal(err)
	}
	s.count++
	return float64(tensors.ToScalar[float32](out[0])), float64(tensors.ToScalar[float32](out[1]))
}

// TestOptimizerAlone is README test 3: the official iteration-0 gradients
// go through clipping, AdamW and the logit-scale reset alone, and the
// parameters (buffers need the forward pass and are left out) and AdamW
// state are compared with the official ones by the step rules.
func TestOptimizerAlone(t *testing.T) {
	for _, fam := range []string{"vit", "rn"} {
		t.Run(fam, func(t *testing.T) {
			c, hp := loadStepCase(t, fam)
			s := c.newStep(t, hp)
			grads, _ := readSafetensors(t, distillPath(t, "step", fam, "grads_iter0_before_clip.safetensors.gz"))
			var res struct {
				Iterations []stepIteration `json:"iterations"`
			}
			readJSON(t, distillPath(t, "step", fam, "result.json"), &res)
			norm, coef := s.applyGradients(t, grads, hp.LRs[0])
			if !relClose(norm, res.Iterations[0].GradNorm, 1e-6) || !relClose(coef, res.Iterations[0].ClipCoef, 1e-6) {
				t.Errorf("norm %.9g, coef %.9g; official %.9g, %.9g", norm, coef, res.Iterations[0].GradNorm, res.Iterations[0].ClipCoef)
			}
			got := mustState(t, s)
			want, _ := readSafetensors(t, distillPath(t, "step", fam, "student_after_iter0.safetensors.gz"))
			for name := range want {
				if strings.HasSuffix(name, "running_mean") || strings.HasSuffix(name, "running_var") || strings.HasSuffix(name, "num_batches_tracked") {
					delete(want, name)
					delete(got.Weights, name)
				}
			}
			checkWeights(t, "parameters after the optimizer", got.Weights, want, hp.LRs[0])
			wantState, _ := readSafetensors(t, distillPath(t, "step", fam, "adam_after_iter0_subset.safetensors.gz"))
			checkState(t, "AdamW state", got.Moments, wantState, c.gradTol)
			// With the official gradients the moments are near float32-exact.
			worst := 0.0
			for name, w := range wantState {
				worst = math.Max(worst, tensorRel(f32(t, got.Moments[name]), f32(t, w)))
			}
			if worst > 1e-6 {
				t.Errorf("AdamW moments from the official gradients: worst %.3g > 1e-6", worst)
			}
			t.Log(fmt.Sprintf("moments from official gradients: worst %.2g", worst))
		})
	}
}
