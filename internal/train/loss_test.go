package train

import (
	"fmt"
	"math"
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/core/tensors"
)

// affinityCase is the JSON of one fixtures/distill/affinity case.
type affinityCase struct {
	Batch        int                `json:"batch"`
	StudentDim   int                `json:"student_dim"`
	TeacherDim   int                `json:"teacher_dim"`
	StudentScale float64            `json:"student_logit_scale"`
	TeacherScale float64            `json:"teacher_logit_scale"`
	F64          map[string]float64 `json:"float64"`
	GradRecipe   struct {
		F64 float64 `json:"float64"`
	} `json:"grad_recipe_student_logit_scale"`
	GradHalf struct {
		F64 float64 `json:"float64"`
	} `json:"grad_alpha0.5_student_logit_scale"`
}

// TestAffinityLossFixtures feeds the six cases of fixtures/distill/affinity
// to the affinity and CLIP losses: every loss value within 1e-6 relative of
// the float64 reference, gradients w.r.t. the student features within
// 1e-5·max|ref| per tensor, and w.r.t. the student scale within 1e-5
// relative (README §3).
func TestAffinityLossFixtures(t *testing.T) {
	backend, err := defaultBackend()
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		Cases []struct{ Name string } `json:"cases"`
	}
	readJSON(t, distillPath(t, "affinity", "index.json"), &index)
	if len(index.Cases) != 6 {
		t.Fatalf("index lists %d cases, want 6", len(index.Cases))
	}
	for _, c := range index.Cases {
		t.Run(c.Name, func(t *testing.T) {
			var ac affinityCase
			readJSON(t, distillPath(t, "affinity", c.Name+".json"), &ac)
			ts, _ := readSafetensors(t, distillPath(t, "affinity", c.Name+".safetensors"))
			b, ds, dt := ac.Batch, ac.StudentDim, ac.TeacherDim
			exec, err := NewExec(backend, func(in []*Node) []*Node {
				si, st, ti, tt, s, tc := in[0], in[1], in[2], in[3], in[4], in[5]
				one := affinityLoss(si, st, ti, tt, s, tc, 1, 1)
				half := affinityLoss(si, st, ti, tt, s, tc, 0.5, 1)
				zero := affinityLoss(si, st, ti, tt, s, tc, 0, 1)
				g1 := Gradient(one.total, si, st, s)
				gh := Gradient(half.total, si, st, s)
				avg := MulScalar(Add(one.softI2T, one.softT2I), 0.5)
				return append([]*Node{one.softI2T, one.softT2I, avg, half.hard, one.total, half.total, zero.total}, append(g1, gh...)...)
			})
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Call(
				tensors.FromFlatDataAndDimensions(f32(t, ts["student_image"]), b, ds),
				tensors.FromFlatDataAndDimensions(f32(t, ts["student_text"]), b, ds),
				tensors.FromFlatDataAndDimensions(f32(t, ts["teacher_image"]), b, dt),
				tensors.FromFlatDataAndDimensions(f32(t, ts["teacher_text"]), b, dt),
				tensors.FromScalar(float32(ac.StudentScale)),
				tensors.FromScalar(float32(ac.TeacherScale)))
			if err != nil {
				t.Fatal(err)
			}
			scalar := func(i int) float64 { return float64(tensors.ToScalar[float32](out[i])) }
			for i, key := range []string{"soft_img2text", "soft_text2img", "soft_average", "hard_clip",
				"total_alpha_1.0", "total_alpha_0.5", "total_alpha_0.0"} {
				want, ok := ac.F64[key]
				if !ok {
					t.Fatalf("%s missing from the fixture", key)
				}
				got := scalar(i)
				if rel := math.Abs(got-want) / math.Abs(want); !(rel <= 1e-6) {
					t.Errorf("%s = %.9g, want %.9g (relative error %.2g > 1e-6)", key, got, want, rel)
				} else {
					t.Logf("%s: relative error %.2g", key, rel)
				}
			}
			for k, tag := range []string{"recipe", "alpha0.5"} {
				base := 7 + 3*k
				for j, feat := range []string{"student_image", "student_text"} {
					got, err := tensors.CopyFlatData[float32](out[base+j])
					if err != nil {
						t.Fatal(err)
					}
					want := f32(t, ts[fmt.Sprintf("grad_%s_%s", tag, feat)])
					if r := tensorRel(got, want); !(r <= 1e-5) {
						t.Errorf("grad %s %s: max|go-ref|/max|ref| = %.3g > 1e-5", tag, feat, r)
					} else {
						t.Logf("grad %s %s: %.2g", tag, feat, r)
					}
				}
				want := ac.GradRecipe.F64
				if k == 1 {
					want = ac.GradHalf.F64
				}
				got := scalar(base + 2)
				if rel := math.Abs(got-want) / math.Abs(want); !(rel <= 1e-5) {
					t.Errorf("grad %s scale = %.9g, want %.9g (relative %.2g > 1e-5)", tag, got, want, rel)
				}
			}
		})
	}
}
