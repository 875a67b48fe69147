package train

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// stepCase is one fixtures/distill/step case, loaded.
type stepCase struct {
	fam     string
	arch    *config.Arch
	initial map[string]*tensor.Tensor
	teacher *EngineTeacher
	images  []float32
	tokens  [][]int
	base    float64
	warmup  int
	total   int
	gradTol float64 // per-tensor gradient and AdamW-state tolerance
	wantLRs []float64
}

type paramGroup struct {
	Optimizer   string    `json:"optimizer"`
	WeightDecay float64   `json:"weight_decay"`
	Betas       []float64 `json:"betas"`
	Eps         float64   `json:"eps"`
	Params      []string  `json:"params"`
}

type stepHyper struct {
	LRBase      float64      `json:"lr_base"`
	Beta1       float64      `json:"beta1"`
	Beta2       float64      `json:"beta2"`
	Eps         float64      `json:"eps"`
	WeightDecay float64      `json:"weight_decay"`
	Warmup      int          `json:"warmup"`
	TotalSteps  float64      `json:"total_steps"`
	LRs         []float64    `json:"lrs"`
	Clip        float64      `json:"norm_gradient_clip"`
	LogitScale  float64      `json:"logit_scale_flag"`
	Alpha       float64      `json:"distillation_alpha"`
	Weight      float64      `json:"distillation_weight"`
	Groups      []paramGroup `json:"param_groups"`
}

type stepIteration struct {
	Step             int     `json:"step"`
	LR               float64 `json:"lr"`
	StudentScaleUsed float64 `json:"student_logit_scale_used"`
	TeacherScaleUsed float64 `json:"teacher_logit_scale_used"`
	SoftI2T          float64 `json:"soft_img2text_ce"`
	SoftT2I          float64 `json:"soft_text2img_ce"`
	Total            float64 `json:"total_loss"`
	GradNorm         float64 `json:"grad_norm_before_clip"`
	ClipCoef         float64 `json:"clip_coef_clamped"`
	ScaleAfterReset  float64 `json:"student_logit_scale_param_after_reset"`
}

func loadStepCase(t testing.TB, fam string) (*stepCase, stepHyper) {
	t.Helper()
	var hp stepHyper
	readJSON(t, distillPath(t, "step", fam, "hyperparams.json"), &hp)
	c := &stepCase{fam: fam, base: hp.LRBase, warmup: hp.Warmup, total: int(hp.TotalSteps), wantLRs: hp.LRs}
	c.arch = readConfigArch(t, distillPath(t, "inherit", fam, "student-b.config.json"))
	c.initial, _ = readSafetensors(t, distillPath(t, "inherit", fam, "student-b.safetensors.gz"))
	tArch := readConfigArch(t, distillPath(t, "inherit", fam, "teacher.config.json"))
	tw, _ := readSafetensors(t, distillPath(t, "inherit", fam, "teacher.safetensors.gz"))
	m, err := engine.Build(tArch, tw, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.teacher = NewEngineTeacher(m)
	c.images = readNpy(t, distillPath(t, "step", "batch", familyImages[fam])).F32
	c.tokens = tokenRows(readNpy(t, distillPath(t, "step", "batch", "texts.npy")))
	c.gradTol = 1e-4
	if fam == "rn" {
		c.gradTol = 5e-4
	}
	return c, hp
}

// namedFeatures are features to compare with the fixture entry
// iter<k>.<key> of features.safetensors.
type namedFeatures struct {
	key string
	got []float32
}

// studentFeatures names a step's student image and text features.
func studentFeatures(img, txt []float32) []namedFeatures {
	return []namedFeatures{{"student_image_features", img}, {"student_text_features", txt}}
}

// checkFeatures compares features of iteration k with the fixture's, within
// 1e-5 relative to the largest reference value.
func checkFeatures(t *testing.T, k int, feats map[string]*tensor.Tensor, fs ...namedFeatures) {
	t.Helper()
	for _, f := range fs {
		want := f32(t, feats[fmt.Sprintf("iter%d.%s", k, f.key)])
		if r := tensorRel(f.got, want); !(r <= 1e-5) {
			t.Errorf("iteration %d: %s: max|go-ref|/max|ref| = %.3g > 1e-5", k, f.key, r)
		}
	}
}

// expected returns the official loop's iterations (result.json) and
// student features (features.safetensors) of the case.
func (c *stepCase) expected(t testing.TB) ([]stepIteration, map[string]*tensor.Tensor) {
	t.Helper()
	var res struct {
		Iterations []stepIteration `json:"iterations"`
	}
	readJSON(t, distillPath(t, "step", c.fam, "result.json"), &res)
	feats, _ := readSafetensors(t, distillPath(t, "step", c.fam, "features.safetensors"))
	return res.Iterations, feats
}

// newFixtureStep builds a fresh student and step of the case with the
// hyper-parameters of hyperparams.json.
func (c *stepCase) newStep(t testing.TB, hp stepHyper) *Step {
	t.Helper()
	st, err := NewStudent(c.arch, c.initial)
	if err != nil {
		t.Fatal(err)
	}
	h := DefaultHyper(c.arch)
	// The fixture's values, which DefaultHyper must reproduce.
	want := Hyper{Alpha: hp.Alpha, Weight: hp.Weight, WeightDecay: hp.WeightDecay, Beta1: hp.Beta1, Beta2: hp.Beta2,
		Eps: hp.Eps, ClipNorm: hp.Clip, LogitScale: hp.LogitScale}
	if h != want {
		t.Fatalf("DefaultHyper = %+v, fixture %+v", h, want)
	}
	s, err := NewStep(st, c.teacher, len(c.tokens), h)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// keyBias returns, for a tensor name, the element range [lo, hi) of its
// key-bias part (README §5: rows [A, 2A) of attn.in_proj_bias, all of
// visual.attnpool.k_proj.bias), or ok false.
func keyBias(name string, n int) (lo, hi int, ok bool) {
	switch {
	case strings.HasSuffix(name, "attn.in_proj_bias"):
		return n / 3, 2 * n / 3, true
	case name == "visual.attnpool.k_proj.bias":
		return 0, n, true
	}
	return 0, 0, false
}

// isKeyBias reports whether element i of tensor name is a key bias.
func isKeyBias(name string, i, n int) bool {
	lo, hi, ok := keyBias(name, n)
	return ok && i >= lo && i < hi
}

// stripPrefix removes "exp_avg." / "exp_avg_sq." from an AdamW state name.
func stateParam(name string) string {
	if p, ok := strings.CutPrefix(name, "exp_avg_sq."); ok {
		return p
	}
	return strings.TrimPrefix(name, "exp_avg.")
}

// checkStepIteration checks what a step implementation returned for
// iteration k of the step fixture fam against the official iteration it: the
// losses, gradient norm, clip coefficient and logit scales, and the student
// features, within 1e-5 relative; after iterations 0 and 2 the weights
// (state reads them), after 2 also the AdamW state. sumLR is the sum of the
// learning rates so far (the weights' tolerance scales with it).
func checkStepIteration(t *testing.T, c *stepCase, fam string, k int, it stepIteration, m Metrics, feats map[string]*tensor.Tensor, state func() (*State, error), sumLR float64) {
	t.Helper()
	for _, q := range []struct {
		what      string
		got, want float64
	}{
		{"total_loss", m.Loss, it.Total}, {"soft_img2text_ce", m.SoftI2T, it.SoftI2T},
		{"soft_text2img_ce", m.SoftT2I, it.SoftT2I}, {"grad_norm_before_clip", m.GradNorm, it.GradNorm},
		{"clip_coef_clamped", m.ClipCoef, it.ClipCoef}, {"student_logit_scale_used", m.StudentScale, it.StudentScaleUsed},
		{"teacher_logit_scale_used", m.TeacherScale, it.TeacherScaleUsed},
	} {
		if !relClose(q.got, q.want, 1e-5) {
			t.Errorf("iteration %d: %s = %.9g, want %.9g (relative %.2g)", k, q.what, q.got, q.want, math.Abs(q.got-q.want)/math.Abs(q.want))
		}
	}
	checkFeatures(t, k, feats, studentFeatures(m.ImageFeatures, m.TextFeatures)...)
	if k != 0 && k != 2 {
		return
	}
	st, err := state()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := readSafetensors(t, distillPath(t, "step", fam, fmt.Sprintf("student_after_iter%d.safetensors.gz", k)))
	checkWeights(t, fmt.Sprintf("weights after iteration %d", k), st.Weights, want, sumLR)
	if k == 2 {
		wantState, _ := readSafetensors(t, distillPath(t, "step", fam, "adam_after_iter2.safetensors.gz"))
		checkState(t, "AdamW state after iteration 2", st.Moments, wantState, c.gradTol)
	}
}

// checkWeights applies README §5's weight rule to a whole model: L is the
// sum of the learning rates applied.
func checkWeights(t *testing.T, what string, got, want map[string]*tensor.Tensor, l float64) {
	t.Helper()
	nonZero, outliers := 0, 0
	worst, worstKey := 0.0, 0.0
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: %s missing", what, name)
			continue
		}
		if g.DType != w.DType || fmt.Sprint(g.Shape) != fmt.Sprint(w.Shape) {
			t.Errorf("%s: %s is %s %v, want %s %v", what, name, g.DType, g.Shape, w.DType, w.Shape)
			continue
		}
		if w.DType == tensor.I64 {
			if string(g.Data) != string(w.Data) {
				gv, _ := intScalar(g)
				wv, _ := intScalar(w)
				t.Errorf("%s: %s = %d, want %d", what, name, gv, wv)
			}
			continue
		}
		gv, wv := f32(t, g), f32(t, w)
		if name == "logit_scale" {
			if gv[0] != float32(math.Log(50)) || wv[0] != gv[0] {
				t.Errorf("%s: logit_scale %v, want float32(ln 50) = %v (fixture %v)", what, gv[0], float32(math.Log(50)), wv[0])
			}
			continue
		}
		bad := 0
		for i := range wv {
			d := math.Abs(float64(gv[i]) - float64(wv[i]))
			ref := math.Abs(float64(wv[i]))
			if isKeyBias(name, i, len(wv)) {
				worstKey = math.Max(worstKey, d/l)
				if !(d <= 2*l) {
					bad++
				}
				continue
			}
			if wv[i] != 0 {
				nonZero++
				if !(d <= 1e-5*ref) {
					outliers++
				}
			}
			if !(d <= 1e-5*ref+0.1*l) {
				bad++
			}
			if ref > 0 {
				worst = math.Max(worst, (d-1e-5*ref)/l)
			}
		}
		if bad > 0 {
			t.Errorf("%s: %s: %d elements outside |go-ref| <= 1e-5·|ref| + 0.1·L (2·L for key biases)", what, name, bad)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: %s not in the fixture", what, name)
		}
	}
	t.Logf("%s: %d of %d non-zero elements beyond 1e-5 relative; worst excess %.3g·L, worst key bias %.3g·L",
		what, outliers, nonZero, worst, worstKey)
	if float64(outliers) > 0.01*float64(nonZero) {
		t.Errorf("%s: %d of %d non-zero elements beyond 1e-5 relative (at most 1 %% allowed)", what, outliers, nonZero)
	}
}

// checkState applies the AdamW-state rule: per tensor max|go-ref| <=
// tol·max|ref|, key-bias slices excluded.
func checkState(t *testing.T, what string, got, want map[string]*tensor.Tensor, tol float64) {
	t.Helper()
	worst, worstName := 0.0, ""
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: %s missing", what, name)
			continue
		}
		gv, wv := f32(t, g), f32(t, w)
		if len(gv) != len(wv) {
			t.Errorf("%s: %s has %d elements, want %d", what, name, len(gv), len(wv))
			continue
		}
		p := stateParam(name)
		var gs, ws []float32
		for i := range wv {
			if !isKeyBias(p, i, len(wv)) {
				gs, ws = append(gs, gv[i]), append(ws, wv[i])
			}
		}
		r := tensorRel(gs, ws)
		if r > worst {
			worst, worstName = r, name
		}
		if !(r <= tol) {
			t.Errorf("%s: %s: max|go-ref|/max|ref| = %.3g > %g", what, name, r, tol)
		}
	}
	t.Logf("%s: worst tensor %s %.3g (bound %g)", what, worstName, worst, tol)
}

func relClose(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*math.Abs(want)
}

// TestStepFixtures runs the official training loop's three iterations of
// fixtures/distill/step/{vit,rn} and checks them by README §5: losses and
// gradient norms within 1e-5 relative, features within 1e-5·max|ref|,
// iteration-0 gradients per tensor (key biases within 1e-6 absolute), the
// weights after iterations 0 and 2 by the weight rule, and the AdamW state.
func TestStepFixtures(t *testing.T) {
	for _, fam := range []string{"vit", "rn"} {
		t.Run(fam, func(t *testing.T) { testStepFixture(t, fam) })
	}
}

func testStepFixture(t *testing.T, fam string) {
	ctx := context.Background()
	c, hp := loadStepCase(t, fam)
	iters, feats := c.expected(t)
	s := c.newStep(t, hp)

	// Iteration-0 gradients, before clipping.
	grads, gm, err := s.Gradients(ctx, c.images, c.tokens)
	if err != nil {
		t.Fatal(err)
	}
	wantGrads, _ := readSafetensors(t, distillPath(t, "step", fam, "grads_iter0_before_clip.safetensors.gz"))
	if !relClose(gm.Loss, iters[0].Total, 1e-5) {
		t.Errorf("gradient pass loss %.9g, want %.9g", gm.Loss, iters[0].Total)
	}
	worstGrad := 0.0
	for name, w := range wantGrads {
		g, ok := grads[name]
		if !ok {
			t.Errorf("gradient of %s missing", name)
			continue
		}
		gv, wv := f32(t, g), f32(t, w)
		lo, hi, kb := keyBias(name, len(wv))
		if kb {
			// Key biases: zero in exact arithmetic, float noise here.
			if d := maxDiff(gv[lo:hi], wv[lo:hi]); !(d <= 1e-6) {
				t.Errorf("gradient %s key bias: max|go-ref| = %.3g > 1e-6", name, d)
			}
			gv = append(slices.Clone(gv[:lo]), gv[hi:]...)
			wv = append(slices.Clone(wv[:lo]), wv[hi:]...)
			if len(wv) == 0 {
				continue
			}
		}
		r := tensorRel(gv, wv)
		worstGrad = math.Max(worstGrad, r)
		if !(r <= c.gradTol) {
			t.Errorf("gradient %s: max|go-ref|/max|ref| = %.3g > %g", name, r, c.gradTol)
		}
	}
	if len(grads) != len(wantGrads) {
		t.Errorf("%d gradients, fixture has %d", len(grads), len(wantGrads))
	}
	t.Logf("iteration-0 gradients: worst tensor %.3g (bound %g)", worstGrad, c.gradTol)

	sumLR := 0.0
	for k, it := range iters {
		lr := CosineLR(c.base, c.warmup, c.total, k)
		if lr != c.wantLRs[k] || lr != it.LR {
			t.Errorf("iteration %d: lr %v, fixture %v / %v", k, lr, c.wantLRs[k], it.LR)
		}
		m, err := s.Run(ctx, c.images, c.tokens, lr)
		if err != nil {
			t.Fatalf("iteration %d: %v", k, err)
		}
		sumLR += lr
		for _, q := range []struct {
			what      string
			got, want float64
		}{
			{"total_loss", m.Loss, it.Total},
			{"soft_img2text_ce", m.SoftI2T, it.SoftI2T},
			{"soft_text2img_ce", m.SoftT2I, it.SoftT2I},
			{"grad_norm_before_clip", m.GradNorm, it.GradNorm},
			{"clip_coef_clamped", m.ClipCoef, it.ClipCoef},
			{"student_logit_scale_used", m.StudentScale, it.StudentScaleUsed},
			{"teacher_logit_scale_used", m.TeacherScale, it.TeacherScaleUsed},
		} {
			if !relClose(q.got, q.want, 1e-5) {
				t.Errorf("iteration %d: %s = %.9g, want %.9g (relative %.2g > 1e-5)", k, q.what, q.got, q.want, math.Abs(q.got-q.want)/math.Abs(q.want))
			} else {
				t.Logf("iteration %d: %s relative error %.2g", k, q.what, math.Abs(q.got-q.want)/math.Abs(q.want))
			}
		}
		if m.Step != int64(k+1) {
			t.Errorf("iteration %d: step count %d", k, m.Step)
		}
		ti, tt, err := teacherFeatures(ctx, c.teacher, c.images, c.tokens, len(c.tokens))
		if err != nil {
			t.Fatal(err)
		}
		checkFeatures(t, k, feats, append(studentFeatures(m.ImageFeatures, m.TextFeatures),
			namedFeatures{"teacher_image_features", ti}, namedFeatures{"teacher_text_features", tt})...)
		if k == 0 || k == 2 {
			st, err := s.State()
			if err != nil {
				t.Fatal(err)
			}
			want, _ := readSafetensors(t, distillPath(t, "step", fam, fmt.Sprintf("student_after_iter%d.safetensors.gz", k)))
			checkWeights(t, fmt.Sprintf("weights after iteration %d", k), st.Weights, want, sumLR)
			file := "adam_after_iter2.safetensors.gz"
			if k == 0 {
				file = "adam_after_iter0_subset.safetensors.gz"
			}
			wantState, _ := readSafetensors(t, distillPath(t, "step", fam, file))
			checkState(t, fmt.Sprintf("AdamW state after iteration %d", k), st.Moments, wantState, c.gradTol)
			if k == 2 && len(st.Moments) != len(wantState) {
				t.Errorf("AdamW state has %d tensors, fixture %d", len(st.Moments), len(wantState))
			}
			if st.Step != int64(k+1) {
				t.Errorf("state step %d, want %d", st.Step, k+1)
			}
		}
	}
}
