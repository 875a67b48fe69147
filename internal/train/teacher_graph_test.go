package train

import (
	"context"
	"math"
	"sync"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// fixtureTeacher loads the teacher of a fixtures/distill/inherit family.
func fixtureTeacher(t testing.TB, fam string) (*config.Arch, map[string]*tensor.Tensor) {
	t.Helper()
	arch := readConfigArch(t, distillPath(t, "inherit", fam, "teacher.config.json"))
	w, _ := readSafetensors(t, distillPath(t, "inherit", fam, "teacher.safetensors.gz"))
	return arch, w
}

// TestGraphTeacherParity runs the step fixtures' ViT and ResNet teachers as
// GoMLX graphs on the default backend and on the engine: image and text
// features agree within 1e-5 relative (max|go−engine| / max|engine|) and
// every row has unit norm; bf16 stays within 2e-2.
func TestGraphTeacherParity(t *testing.T) {
	ctx := context.Background()
	for _, fam := range []string{"vit", "rn"} {
		t.Run(fam, func(t *testing.T) {
			c, _ := loadStepCase(t, fam)
			arch, w := fixtureTeacher(t, fam)
			b, err := defaultBackend()
			if err != nil {
				t.Fatal(err)
			}
			n := len(c.tokens)
			wantI, wantT, err := teacherFeatures(ctx, c.teacher, c.images, c.tokens, n)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []Precision{FP32, BF16} {
				gt, err := NewGraphTeacher(b, arch, w, p)
				if err != nil {
					t.Fatal(err)
				}
				if gt.EmbedDim() != c.teacher.EmbedDim() || gt.ImageSize() != c.teacher.ImageSize() || gt.LogitScale() != c.teacher.LogitScale() {
					t.Fatalf("%s: embed %d size %d scale %v; engine %d %d %v", p, gt.EmbedDim(), gt.ImageSize(), gt.LogitScale(),
						c.teacher.EmbedDim(), c.teacher.ImageSize(), c.teacher.LogitScale())
				}
				gotI, gotT, err := teacherFeatures(ctx, gt, c.images, c.tokens, n)
				if err != nil {
					t.Fatal(err)
				}
				tol := 1e-5
				if p == BF16 {
					tol = 2e-2
				}
				for _, f := range []struct {
					what      string
					got, want []float32
				}{{"image", gotI, wantI}, {"text", gotT, wantT}} {
					r := tensorRel(f.got, f.want)
					t.Logf("%s %s features: max|graph−engine|/max|engine| = %.3g", p, f.what, r)
					if !(r <= tol) {
						t.Errorf("%s %s features: relative difference %.3g > %g", p, f.what, r, tol)
					}
					e := gt.EmbedDim()
					for i := 0; i < n; i++ {
						var s float64
						for _, v := range f.got[i*e : (i+1)*e] {
							s += float64(v) * float64(v)
						}
						if math.Abs(math.Sqrt(s)-1) > 1e-5 {
							t.Errorf("%s %s row %d: norm %v", p, f.what, i, math.Sqrt(s))
						}
					}
				}
			}
		})
	}
}

// TestGraphTeacherErrors: bad inputs are errors, not panics.
func TestGraphTeacherErrors(t *testing.T) {
	ctx := context.Background()
	arch, w := fixtureTeacher(t, "vit")
	b, err := defaultBackend()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewGraphTeacher(b, arch, w, "fp8"); err == nil {
		t.Error("precision fp8 accepted")
	}
	if _, err := NewGraphTeacher(b, arch, map[string]*tensor.Tensor{}, FP32); err == nil {
		t.Error("empty weights accepted")
	}
	gt, err := NewGraphTeacher(b, arch, w, FP32)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gt.EncodeImages(ctx, make([]float32, 10), 1); err == nil {
		t.Error("10 pixel values accepted")
	}
	if _, err := gt.EncodeTexts(ctx, [][]int{{49406, 1 << 20}}); err == nil {
		t.Error("token outside the vocabulary accepted")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := gt.EncodeTexts(cancelled, [][]int{{49406, 49407}}); err == nil {
		t.Error("cancelled context ignored")
	}
	// Concurrent use (run with -race).
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = gt.EncodeTexts(ctx, [][]int{{49406, 320 + i, 49407}})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
}

// TestStepFixturesGraphTeacher runs the official loop's three iterations of
// fixtures/distill/step/vit and rn with the teacher inside the step graph
// (a GraphTeacher on the student's backend) instead of the engine, and
// checks them by the fixture README's rules as TestStepFixtures does:
// losses, gradient norms and student features within 1e-5 relative, the
// weights after iterations 0 and 2 by the weight rule, the AdamW state.
func TestStepFixturesGraphTeacher(t *testing.T) {
	ctx := context.Background()
	for _, fam := range []string{"vit", "rn"} {
		t.Run(fam, func(t *testing.T) {
			c, _ := loadStepCase(t, fam)
			iters, feats := c.expected(t)
			st, err := NewStudent(c.arch, c.initial)
			if err != nil {
				t.Fatal(err)
			}
			arch, w := fixtureTeacher(t, fam)
			gt, err := NewGraphTeacher(st.Backend(), arch, w, FP32)
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewStep(st, gt, len(c.tokens), DefaultHyper(c.arch))
			if err != nil {
				t.Fatal(err)
			}
			if s.fused == nil {
				t.Fatal("the graph teacher was not built into the step")
			}
			sumLR := 0.0
			for k, it := range iters {
				lr := CosineLR(c.base, c.warmup, c.total, k)
				m, err := s.Run(ctx, c.images, c.tokens, lr)
				if err != nil {
					t.Fatalf("iteration %d: %v", k, err)
				}
				sumLR += lr
				checkStepIteration(t, c, fam, k, it, m, feats, s.State, sumLR)
			}
			// The teacher's tensors are not part of the student's state.
			state, err := s.State()
			if err != nil {
				t.Fatal(err)
			}
			if len(state.Weights) != len(c.initial) {
				t.Errorf("state has %d weights, the student %d", len(state.Weights), len(c.initial))
			}
		})
	}
}
