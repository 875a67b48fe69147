package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// replayNoise replays the noise recorded in a fixtures/auto/step case:
// iteration k of the case runs at global step steps[k].
type replayNoise struct {
	steps []int
	u     map[string]*tensor.Tensor
}

func (r *replayNoise) Uniform(step int64, tower, kind string, u []float32) error {
	k := slices.Index(r.steps, int(step))
	if k < 0 {
		return fmt.Errorf("no recorded noise for step %d", step)
	}
	x, ok := r.u[fmt.Sprintf("iter%d.u.%s.%s", k, tower, kind)]
	if !ok {
		return fmt.Errorf("no recorded noise iter%d.u.%s.%s", k, tower, kind)
	}
	v, err := x.Float32()
	if err != nil {
		return err
	}
	if len(v) != len(u) {
		return fmt.Errorf("recorded noise has %d values, want %d", len(v), len(u))
	}
	copy(u, v)
	return nil
}

// autoStepHyper is hyperparams.json of a fixtures/auto/step case.
type autoStepHyper struct {
	LRBase        float64      `json:"lr_base"`
	Beta1         float64      `json:"beta1"`
	Beta2         float64      `json:"beta2"`
	Eps           float64      `json:"eps"`
	WeightDecay   float64      `json:"weight_decay"`
	PruneStep     int          `json:"prune_step"`
	TotalSteps    float64      `json:"total_steps"`
	LRs           []float64    `json:"lrs_towers"`
	Steps         []int        `json:"steps"`
	Start         float64      `json:"start_sparsity"`
	Target        float64      `json:"target_sparsity"`
	Warmup        int          `json:"sparsity_warmup"`
	Clip          float64      `json:"norm_gradient_clip"`
	LogitScale    float64      `json:"logit_scale_flag"`
	TotalLossFlag bool         `json:"total_loss_flag"`
	Groups        []paramGroup `json:"param_groups"`
	Prunable      map[string]int
	L0            struct {
		Betas []float64 `json:"betas"`
		Eps   float64   `json:"eps"`
		LRA   float64   `json:"lr_log_alpha"`
		LRL   float64   `json:"lr_lambda"`
	} `json:"l0_optimizer"`
}

// autoStepIteration is one entry of result.json.
type autoStepIteration struct {
	Step     int     `json:"step"`
	LRTowers float64 `json:"lr_towers"`
	LRGroups []struct {
		Optimizer string
		LRs       []float64
	} `json:"lr_per_optimizer_group"`
	Target         float64            `json:"target_sparsity"`
	Expected       float64            `json:"expected_sparsity"`
	ExpectedImage  float64            `json:"expected_sparsity_image"`
	ExpectedText   float64            `json:"expected_sparsity_text"`
	RemainingImage float64            `json:"expected_remaining_params_image"`
	RemainingText  float64            `json:"expected_remaining_params_text"`
	Lambda1        float64            `json:"lambda_1_mean"`
	Lambda2        float64            `json:"lambda_2_mean"`
	StudentScale   float64            `json:"student_logit_scale_used"`
	TeacherScale   float64            `json:"teacher_logit_scale_used"`
	SoftI2T        float64            `json:"soft_img2text_ce"`
	SoftT2I        float64            `json:"soft_text2img_ce"`
	Distillation   float64            `json:"distillation_loss"`
	Lagrangian     float64            `json:"lagrangian"`
	Total          float64            `json:"total_loss"`
	GradNorm       float64            `json:"grad_norm_before_clip"`
	ClipCoef       float64            `json:"clip_coef_clamped"`
	LambdasAfter   map[string]float64 `json:"lambdas_after_step"`
	Clamped        map[string]int     `json:"log_alphas_clamped_after_step"`
}

// autoCase is a loaded fixtures/auto/step case.
type autoCase struct {
	name    string
	arch    *config.Arch
	teacher *EngineTeacher
	weights map[string]*tensor.Tensor // initial student towers
	l0      map[string]*tensor.Tensor // initial L0
	images  []float32
	tokens  [][]int
	hp      autoStepHyper
	iters   []autoStepIteration
	noise   *replayNoise
}

func loadAutoCase(t testing.TB, name string) *autoCase {
	t.Helper()
	c := &autoCase{name: name, arch: autoArch(t)}
	readJSON(t, autoPath(t, "step", name, "hyperparams.json"), &c.hp)
	var res struct {
		Iterations []autoStepIteration `json:"iterations"`
	}
	readJSON(t, autoPath(t, "step", name, "result.json"), &res)
	c.iters = res.Iterations
	tw, _ := readSafetensors(t, autoPath(t, "model", "teacher.safetensors.gz"))
	m, err := engine.Build(c.arch, tw, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.teacher = NewEngineTeacher(m)
	if c.weights, err = Inherit(tw, c.arch, c.arch); err != nil {
		t.Fatal(err)
	}
	init, _ := readSafetensors(t, autoPath(t, "step", name, "initial_l0.safetensors"))
	c.l0, _ = fixtureL0(init)
	c.images = readNpy(t, autoPath(t, "batch", "images_32.npy")).F32
	c.tokens = tokenRows(readNpy(t, autoPath(t, "batch", "texts.npy")))
	u, _ := readSafetensors(t, autoPath(t, "step", name, "noise.safetensors"))
	c.noise = &replayNoise{steps: c.hp.Steps, u: u}
	return c
}

// config returns the case's L0 settings, checking DefaultL0Config against
// the recorded optimizer settings.
func (c *autoCase) config(t testing.TB) L0Config {
	t.Helper()
	cfg := DefaultL0Config(c.hp.Start, c.hp.Target, c.hp.Warmup, c.hp.PruneStep)
	if cfg.LogAlphaLR != c.hp.L0.LRA || cfg.LambdaLR != c.hp.L0.LRL || cfg.Beta1 != c.hp.L0.Betas[0] ||
		cfg.Beta2 != c.hp.L0.Betas[1] || cfg.Eps != c.hp.L0.Eps || !c.hp.TotalLossFlag || cfg.PerTower {
		t.Fatalf("DefaultL0Config %+v differs from the fixture's L0 optimizer %+v", cfg, c.hp.L0)
	}
	return cfg
}

// newStep builds a fresh masked student and step of the case.
func (c *autoCase) newStep(t testing.TB, noise Noise) (*AutoStudent, *AutoStep) {
	t.Helper()
	a, err := NewAutoStudent(c.arch, c.weights, c.l0)
	if err != nil {
		t.Fatal(err)
	}
	h := DefaultHyper(c.arch)
	want := Hyper{Alpha: 1, Weight: 1, WeightDecay: c.hp.WeightDecay, Beta1: c.hp.Beta1, Beta2: c.hp.Beta2,
		Eps: c.hp.Eps, ClipNorm: c.hp.Clip, LogitScale: c.hp.LogitScale}
	if h != want {
		t.Fatalf("DefaultHyper = %+v, fixture %+v", h, want)
	}
	s, err := NewAutoStep(a, c.teacher, len(c.tokens), h, c.config(t), noise)
	if err != nil {
		t.Fatal(err)
	}
	return a, s
}

// splitL0 separates the L0 tensors (our names) from the tower tensors of a
// state or fixture file (fixture names are converted).
func splitL0(ts map[string]*tensor.Tensor) (towers, l0 map[string]*tensor.Tensor) {
	towers, l0 = map[string]*tensor.Tensor{}, map[string]*tensor.Tensor{}
	for n, x := range ts {
		if o, ok := fixtureL0Name(n); ok {
			l0[o] = x
		} else if strings.Contains(n, "l0_module") {
			l0[n] = x
		} else {
			towers[n] = x
		}
	}
	return towers, l0
}

// trainingMasks evaluates the gate samples of log-alphas l0 with the
// case's noise of iteration k, per "tower.kind".
func trainingMasks(t *testing.T, towers [2]l0Tower, l0 map[string]*tensor.Tensor, noise Noise, step int64) map[string][]float32 {
	t.Helper()
	backend, err := defaultBackend()
	if err != nil {
		t.Fatal(err)
	}
	exec, err := NewExec(backend, func(in []*Node) []*Node {
		out := make([]*Node, len(in)/2)
		for i := range out {
			out[i] = sampleGates(in[2*i], in[2*i+1])
		}
		return out
	})
	if err != nil {
		t.Fatal(err)
	}
	var args []any
	var keys []string
	for _, tw := range towers {
		for _, k := range l0Kinds {
			a := l0[tw.param(k+"_loga")]
			u := make([]float32, a.NumElements())
			if err := noise.Uniform(step, tw.name, k, u); err != nil {
				t.Fatal(err)
			}
			args = append(args, tensors.FromFlatDataAndDimensions(f32(t, a), a.Shape...), tensors.FromFlatDataAndDimensions(u, a.Shape...))
			keys = append(keys, tw.name+"."+k)
		}
	}
	out, err := exec.Call(args...)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]float32{}
	for i, k := range keys {
		v, err := flatF32(out[i])
		if err != nil {
			t.Fatal(err)
		}
		m[k] = v
	}
	return m
}

// checkAutoGradients compares gradients before clipping with a fixture file
// (README §6: per tensor 1e-4·max|ref|; key-bias slices 1e-6 absolute).
func checkAutoGradients(t *testing.T, what string, got, wantFile map[string]*tensor.Tensor) {
	t.Helper()
	worst, worstName := 0.0, ""
	n := 0
	for name, w := range wantFile {
		if o, ok := fixtureL0Name(name); ok {
			name = o
		}
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: gradient of %s missing", what, name)
			continue
		}
		n++
		gv, wv := f32(t, g), f32(t, w)
		if lo, hi, kb := keyBias(name, len(wv)); kb {
			if d := maxDiff(gv[lo:hi], wv[lo:hi]); !(d <= 1e-6) {
				t.Errorf("%s: %s key bias: max|go-ref| = %.3g > 1e-6", what, name, d)
			}
			gv = append(slices.Clone(gv[:lo]), gv[hi:]...)
			wv = append(slices.Clone(wv[:lo]), wv[hi:]...)
		}
		if r := checkRel(t, what+": "+name, gv, wv, 1e-4); r > worst {
			worst, worstName = r, name
		}
	}
	if n != len(got) {
		t.Errorf("%s: %d gradients, fixture has %d", what, len(got), n)
	}
	t.Logf("%s: worst tensor %s %.3g (bound 1e-4)", what, worstName, worst)
}

// TestAutoStepFixtures runs the official auto-inheritance loop's two
// iterations of fixtures/auto/step/{recipe,midway} with the recorded noise
// and checks them by README §6: masks from the noise (1e-6, identical
// exact-0/1 sets), losses, Lagrangian, expected sparsities and parameters,
// target, learning rates, multipliers, grad norm and clip coefficient,
// features, gradients before clipping (L0 included) at both iterations,
// tower weights by the weight rule, log-alphas (1e-4) and multipliers
// (1e-5) after each iteration, the clamp counts, the logit-scale reset, and
// the state of all four AdamW optimizers after iteration 1.
func TestAutoStepFixtures(t *testing.T) {
	for _, name := range []string{"recipe", "midway"} {
		t.Run(name, func(t *testing.T) { testAutoStepFixture(t, name) })
	}
}

func testAutoStepFixture(t *testing.T, name string) {
	ctx := context.Background()
	c := loadAutoCase(t, name)
	a, s := c.newStep(t, c.noise)
	feats, _ := readSafetensors(t, autoPath(t, "step", name, "features.safetensors"))
	recorded, _ := readSafetensors(t, autoPath(t, "step", name, "noise.safetensors"))
	sumLR := 0.0
	for k, it := range c.iters {
		step := int64(c.hp.Steps[k])
		if it.Step != int(step) {
			t.Fatalf("iteration %d is step %d, hyperparams say %d", k, it.Step, step)
		}
		// Masks from the noise and the log-alphas at the start of the iteration.
		l0, err := a.L0()
		if err != nil {
			t.Fatal(err)
		}
		z := trainingMasks(t, a.towers, l0, c.noise, step)
		for key, got := range z {
			want := f32(t, recorded[fmt.Sprintf("iter%d.z.%s", k, key)])
			checkAbs(t, fmt.Sprintf("iteration %d mask %s", k, key), got, want, 1e-6)
			sameSets(t, fmt.Sprintf("iteration %d mask %s", k, key), got, want, true)
		}
		// Gradients before clipping.
		grads, gm, err := s.Gradients(ctx, c.images, c.tokens, step)
		if err != nil {
			t.Fatal(err)
		}
		wantGrads, _ := readSafetensors(t, autoPath(t, "step", name, fmt.Sprintf("grads_iter%d_before_clip.safetensors.gz", k)))
		checkAutoGradients(t, fmt.Sprintf("iteration %d gradients", k), grads, wantGrads)
		if !relClose(gm.Loss, it.Total, 1e-5) {
			t.Errorf("iteration %d: gradient pass loss %.9g, want %.9g", k, gm.Loss, it.Total)
		}

		lr := CosineLR(c.hp.LRBase, c.hp.PruneStep, int(c.hp.TotalSteps), int(step))
		if lr != c.hp.LRs[k] || lr != it.LRTowers {
			t.Errorf("iteration %d: tower lr %v, fixture %v / %v", k, lr, c.hp.LRs[k], it.LRTowers)
		}
		for _, g := range it.LRGroups {
			want := []float64{lr, lr}
			if g.Optimizer == "l0" {
				want = []float64{s.cfg.LogAlphaLR, s.cfg.LambdaLR, s.cfg.LogAlphaLR, s.cfg.LambdaLR}
			}
			if !slices.Equal(g.LRs, want) {
				t.Errorf("iteration %d: %s lrs %v, want %v", k, g.Optimizer, g.LRs, want)
			}
		}
		m, err := s.Run(ctx, c.images, c.tokens, step, lr)
		if err != nil {
			t.Fatalf("iteration %d: %v", k, err)
		}
		sumLR += lr
		for _, q := range []struct {
			what      string
			got, want float64
			rel, abs  float64
		}{
			{"total_loss", m.Loss, it.Total, 1e-5, 0},
			{"distillation_loss", m.Distillation, it.Distillation, 1e-5, 0},
			{"soft_img2text_ce", m.SoftI2T, it.SoftI2T, 1e-5, 0},
			{"soft_text2img_ce", m.SoftT2I, it.SoftT2I, 1e-5, 0},
			{"lagrangian", m.Lagrangian, it.Lagrangian, 1e-5, 1e-6},
			{"grad_norm_before_clip", m.GradNorm, it.GradNorm, 1e-5, 0},
			{"clip_coef_clamped", m.ClipCoef, it.ClipCoef, 1e-5, 0},
			{"expected_sparsity", m.Expected, it.Expected, 0, 1e-6},
			{"expected_sparsity_image", m.ExpectedImage, it.ExpectedImage, 0, 1e-6},
			{"expected_sparsity_text", m.ExpectedText, it.ExpectedText, 0, 1e-6},
			{"expected_remaining_params_image", m.RemainingImage, it.RemainingImage, 1e-6, 0},
			{"expected_remaining_params_text", m.RemainingText, it.RemainingText, 1e-6, 0},
			{"target_sparsity", m.Target, it.Target, 0, 0},
			{"lambda_1_mean", m.Lambda1, it.Lambda1, 0, 1e-5},
			{"lambda_2_mean", m.Lambda2, it.Lambda2, 0, 1e-5},
			{"student_logit_scale_used", m.StudentScale, it.StudentScale, 1e-5, 0},
			{"teacher_logit_scale_used", m.TeacherScale, it.TeacherScale, 1e-5, 0},
		} {
			if d := math.Abs(q.got - q.want); !(d <= q.rel*math.Abs(q.want)+q.abs) {
				t.Errorf("iteration %d: %s = %.9g, want %.9g (|diff| %.3g)", k, q.what, q.got, q.want, d)
			}
		}
		clamped := 0
		for _, n := range it.Clamped {
			clamped += n
		}
		if m.Clamped != clamped {
			t.Errorf("iteration %d: the clamp moved %d log-alphas, fixture %d", k, m.Clamped, clamped)
		}
		if m.Step != int64(k+1) || m.GlobalStep != step || m.LR != lr {
			t.Errorf("iteration %d: metrics step %d, global step %d, lr %v", k, m.Step, m.GlobalStep, m.LR)
		}
		checkFeatures(t, k, feats, studentFeatures(m.ImageFeatures, m.TextFeatures)...)
		// Weights, log-alphas and multipliers after the iteration.
		st, err := s.State()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := readSafetensors(t, autoPath(t, "step", name, fmt.Sprintf("student_after_iter%d.safetensors.gz", k)))
		wantTowers, wantL0 := splitL0(want)
		gotTowers, gotL0 := splitL0(st.Weights)
		checkWeights(t, fmt.Sprintf("weights after iteration %d", k), gotTowers, wantTowers, sumLR)
		if len(gotL0) != len(wantL0) || len(gotL0) != 10 {
			t.Errorf("%d L0 tensors in the state, fixture %d", len(gotL0), len(wantL0))
		}
		for n, w := range wantL0 {
			tol := 1e-4
			if strings.HasSuffix(n, "lambda_1") || strings.HasSuffix(n, "lambda_2") {
				tol = 1e-5
				fn, _ := ourL0Name(n)
				if got := float64(f32(t, gotL0[n])[0]); math.Abs(got-it.LambdasAfter[fn]) > tol {
					t.Errorf("iteration %d: %s after the step %.9g, result.json %.9g", k, n, got, it.LambdasAfter[fn])
				}
			}
			checkAbs(t, fmt.Sprintf("iteration %d: %s", k, n), f32(t, gotL0[n]), f32(t, w), tol)
		}
		if st.Step != int64(k+1) {
			t.Errorf("state step %d, want %d", st.Step, k+1)
		}
	}
	st, err := s.State()
	if err != nil {
		t.Fatal(err)
	}
	wantState, _ := readSafetensors(t, autoPath(t, "step", name, "adam_after_iter1.safetensors.gz"))
	renamed := map[string]*tensor.Tensor{}
	for n, x := range wantState {
		kind, p, _ := strings.Cut(n, ".")
		if o, ok := fixtureL0Name(p); ok {
			n = kind + "." + o
		}
		renamed[n] = x
	}
	checkState(t, "AdamW state of the four optimizers after iteration 1", st.Moments, renamed, 1e-4)
	if len(st.Moments) != len(renamed) {
		t.Errorf("AdamW state has %d tensors, fixture %d", len(st.Moments), len(renamed))
	}
}

// runAuto runs the fixture batch at global steps from..to−1 with the
// case's schedule.
func runAuto(t *testing.T, s *AutoStep, c *autoCase, from, to int) {
	t.Helper()
	for k := from; k < to; k++ {
		lr := CosineLR(c.hp.LRBase, c.hp.PruneStep, int(c.hp.TotalSteps), k)
		if _, err := s.Run(context.Background(), c.images, c.tokens, int64(k), lr); err != nil {
			t.Fatalf("step %d: %v", k, err)
		}
	}
}

// TestAutoResume checks that masked training is deterministic and that
// State/Restore (weights, log-alphas, multipliers, the moments of all four
// optimizers) into a fresh student and step continues bit-identically.
func TestAutoResume(t *testing.T) {
	c := loadAutoCase(t, "recipe")
	noise := SeededNoise{Seed: 7}
	_, a := c.newStep(t, noise)
	runAuto(t, a, c, 0, 2)
	mid, err := a.State()
	if err != nil {
		t.Fatal(err)
	}
	runAuto(t, a, c, 2, 4)
	want, err := a.State()
	if err != nil {
		t.Fatal(err)
	}
	// The Lagrangian is active from step 1 on: the multipliers moved.
	if l := f32(t, want.Weights[ImageL0Prefix+"lambda_1"])[0]; !(l > 10) {
		t.Errorf("lambda_1 = %v after 4 steps, want > 10", l)
	}
	_, b := c.newStep(t, noise)
	runAuto(t, b, c, 0, 4)
	again, err := b.State()
	if err != nil {
		t.Fatal(err)
	}
	if d := sameTensors(again.Weights, want.Weights); d != "" {
		t.Errorf("two runs differ: weights: %s", d)
	}
	if d := sameTensors(again.Moments, want.Moments); d != "" {
		t.Errorf("two runs differ: moments: %s", d)
	}
	_, r := c.newStep(t, noise)
	if err := r.Restore(mid); err != nil {
		t.Fatal(err)
	}
	if r.Count() != 2 {
		t.Errorf("restored count %d, want 2", r.Count())
	}
	runAuto(t, r, c, 2, 4)
	got, err := r.State()
	if err != nil {
		t.Fatal(err)
	}
	if d := sameTensors(got.Weights, want.Weights); d != "" {
		t.Errorf("resumed run differs: weights: %s", d)
	}
	if d := sameTensors(got.Moments, want.Moments); d != "" {
		t.Errorf("resumed run differs: moments: %s", d)
	}
	if got.Step != want.Step {
		t.Errorf("resumed step count %d, want %d", got.Step, want.Step)
	}

	// Restore refuses incomplete or mismatched states and changes nothing.
	before, err := r.State()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*State)
	}{
		{"no log-alpha", func(s *State) { delete(s.Weights, TextL0Prefix+"heads_loga") }},
		{"no L0 moment", func(s *State) { delete(s.Moments, "exp_avg_sq."+ImageL0Prefix+"lambda_2") }},
		{"wrong log-alpha shape", func(s *State) {
			s.Weights[ImageL0Prefix+"hidden_loga"] = tensor.FromFloat32("x", []int{31}, make([]float32, 31))
		}},
		{"no tower tensor", func(s *State) { delete(s.Weights, "visual.proj") }},
		{"no tower moment", func(s *State) { delete(s.Moments, "exp_avg.visual.proj") }},
	} {
		st, err := a.State()
		if err != nil {
			t.Fatal(err)
		}
		c.edit(st)
		if err := r.Restore(st); err == nil {
			t.Errorf("%s: Restore accepted it", c.name)
		}
		now, err := r.State()
		if err != nil {
			t.Fatal(err)
		}
		if d := sameTensors(now.Weights, before.Weights); d != "" {
			t.Errorf("%s: a failed Restore changed the weights: %s", c.name, d)
		}
	}
}

// TestAutoStepSkipsNonFinite feeds a NaN pixel: Run reports ErrNonFinite,
// nothing is updated, but the clamp (10 → ln 100) and the logit-scale reset
// still apply, as in the official loop.
func TestAutoStepSkipsNonFinite(t *testing.T) {
	c := loadAutoCase(t, "recipe")
	a, s := c.newStep(t, SeededNoise{})
	before, err := s.State()
	if err != nil {
		t.Fatal(err)
	}
	images := slices.Clone(c.images)
	images[5] = float32(math.NaN())
	m, err := s.Run(context.Background(), images, c.tokens, 0, 1e-4)
	if !errors.Is(err, ErrNonFinite) || !m.Skipped {
		t.Fatalf("Run: error %v, skipped %v; want ErrNonFinite", err, m.Skipped)
	}
	after, err := s.State()
	if err != nil {
		t.Fatal(err)
	}
	if after.Step != 0 {
		t.Errorf("step count %d after a skipped step", after.Step)
	}
	l0, err := a.L0()
	if err != nil {
		t.Fatal(err)
	}
	for name, x := range l0 {
		for _, v := range f32(t, x) {
			want := l0ClampHi
			if strings.Contains(name, "lambda") {
				want = 10
			}
			if v != want {
				t.Fatalf("%s = %v after a skipped first step, want %v", name, v, want)
			}
		}
	}
	if m.Clamped != 32+12+384+24+9+288 {
		t.Errorf("clamp moved %d log-alphas, want all", m.Clamped)
	}
	towersBefore, _ := splitL0(before.Weights)
	towersAfter, _ := splitL0(after.Weights)
	delete(towersBefore, "logit_scale")
	if f32(t, towersAfter["logit_scale"])[0] != float32(math.Log(50)) {
		t.Error("logit_scale not reset after a skipped step")
	}
	delete(towersAfter, "logit_scale")
	if d := sameTensors(towersAfter, towersBefore); d != "" {
		t.Errorf("weights changed by a skipped step: %s", d)
	}
	if d := sameTensors(after.Moments, before.Moments); d != "" {
		t.Errorf("moments changed by a skipped step: %s", d)
	}
}

// TestAutoStepErrors checks the refusals of NewAutoStudent, NewAutoStep and
// Run.
func TestAutoStepErrors(t *testing.T) {
	c := loadAutoCase(t, "recipe")
	_, s := c.newStep(t, nil)
	ctx := context.Background()
	if _, err := s.Run(ctx, c.images, c.tokens, int64(c.hp.PruneStep), 1e-4); err == nil {
		t.Error("Run at the prune step: no error")
	}
	if _, err := s.Run(ctx, c.images, c.tokens, -1, 1e-4); err == nil {
		t.Error("Run at step -1: no error")
	}
	if _, err := s.Run(ctx, c.images, c.tokens, 0, math.NaN()); err == nil {
		t.Error("Run with a NaN lr: no error")
	}
	if _, err := s.Run(ctx, c.images[:10], c.tokens, 0, 1e-4); err == nil {
		t.Error("Run with too few pixels: no error")
	}
	bad := badNoise{}
	a, err := NewAutoStudent(c.arch, c.weights, nil)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := NewAutoStep(a, c.teacher, len(c.tokens), DefaultHyper(c.arch), c.config(t), bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bs.Run(ctx, c.images, c.tokens, 0, 1e-4); err == nil {
		t.Error("noise 0: no error")
	}
	cfg := c.config(t)
	cfg.TargetSparsity = 1
	if _, err := NewAutoStep(a, c.teacher, len(c.tokens), DefaultHyper(c.arch), cfg, nil); err == nil {
		t.Error("target sparsity 1: no error")
	}
	irregular := readConfigArch(t, autoPath(t, "prune", "config.json"))
	if _, err := NewAutoStudent(irregular, c.weights, nil); err == nil {
		t.Error("an irregular architecture: no error")
	}
	if _, err := InitialL0(readConfigArch(t, modelsPath(t, "resnet", "config.json"))); err == nil {
		t.Error("a ResNet: no error")
	}
}

// badNoise returns zeros, outside [ε, 1−ε].
type badNoise struct{}

func (badNoise) Uniform(_ int64, _, _ string, u []float32) error {
	clear(u)
	return nil
}

// The trainer drives an AutoStepper.
var _ Stepper = (*AutoStepper)(nil)

// TestAutoStepperFuse runs an AutoStepper across the prune step: masked
// steps, the fuse into the pruned student (PrunedArch of its shapes), plain
// steps after; and checks that State/Restore before and after the fuse,
// into fresh steppers, continue bit-identically.
func TestAutoStepperFuse(t *testing.T) {
	c := loadAutoCase(t, "recipe")
	ctx := context.Background()
	newStepper := func() *AutoStepper {
		a, err := NewAutoStudent(c.arch, c.weights, c.l0)
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewAutoStepper(a, c.teacher, len(c.tokens), DefaultHyper(c.arch), c.config(t), SeededNoise{Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	total := int(c.hp.TotalSteps)
	run := func(p *AutoStepper, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := p.TrainStep(ctx, i, c.images, c.tokens, CosineLR(c.hp.LRBase, c.hp.PruneStep, total, i)); err != nil {
				t.Fatalf("iteration %d: %v", i, err)
			}
		}
	}
	prune := c.hp.PruneStep // 5
	p := newStepper()
	run(p, 0, 3)
	if p.Fused() || p.ExtraMetrics()["target_sparsity"] != c.config(t).Target(2) {
		t.Errorf("after 3 steps: fused %v, extra metrics %v", p.Fused(), p.ExtraMetrics())
	}
	if sa := p.StateArch(); fmt.Sprint(*sa) != fmt.Sprint(*c.arch) {
		t.Errorf("state architecture before the fuse %+v, want the full one", *sa)
	}
	pre, err := p.State()
	if err != nil {
		t.Fatal(err)
	}
	run(p, 3, prune)
	wantArch, wantW, err := p.Model() // what the fuse will make
	if err != nil {
		t.Fatal(err)
	}
	run(p, prune, prune+1)
	if !p.Fused() || p.ExtraMetrics() != nil {
		t.Fatalf("after the prune step: fused %v, extra metrics %v", p.Fused(), p.ExtraMetrics())
	}
	if p.fused.Count() != 1 {
		t.Errorf("the pruned student's step count is %d after one step, want 1 (fresh optimizers)", p.fused.Count())
	}
	gotArch, _, err := p.Model()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(*gotArch) != fmt.Sprint(*wantArch) || fmt.Sprint(*p.StateArch()) != fmt.Sprint(*wantArch) {
		t.Errorf("pruned architecture %+v, the fuse's %+v", *gotArch, *wantArch)
	}
	shapes := map[string][]int{}
	for n, x := range wantW {
		shapes[n] = x.Shape
	}
	if pa, err := PrunedArch(c.arch, shapes); err != nil || fmt.Sprint(*pa) != fmt.Sprint(*wantArch) {
		t.Errorf("PrunedArch = %v, %v; want %+v", pa, err, *wantArch)
	}
	post, err := p.State()
	if err != nil {
		t.Fatal(err)
	}
	run(p, prune+1, prune+3)
	want, err := p.State()
	if err != nil {
		t.Fatal(err)
	}
	for _, c2 := range []struct {
		name  string
		state *State
		from  int
	}{{"before the fuse", pre, 3}, {"after the fuse", post, prune + 1}} {
		q := newStepper()
		if err := q.Restore(c2.state); err != nil {
			t.Fatalf("%s: %v", c2.name, err)
		}
		run(q, c2.from, prune+3)
		got, err := q.State()
		if err != nil {
			t.Fatal(err)
		}
		if d := sameTensors(got.Weights, want.Weights); d != "" {
			t.Errorf("resumed %s: weights differ: %s", c2.name, d)
		}
		if d := sameTensors(got.Moments, want.Moments); d != "" {
			t.Errorf("resumed %s: moments differ: %s", c2.name, d)
		}
		if got.Step != want.Step {
			t.Errorf("resumed %s: step count %d, want %d", c2.name, got.Step, want.Step)
		}
	}
	// A masked state restores into a fused stepper too.
	if err := p.Restore(pre); err != nil || p.Fused() {
		t.Errorf("restoring a masked state into a fused stepper: %v (fused %v)", err, p.Fused())
	}
}

// TestAutoStages runs two short stages of the staged recipe on the fixture
// model: stage 1 (0 → 0.25) from the teacher copy through its fuse, stage 2
// (0.25 → 0.5) from stage 1's pruned model embedded by AutoStart
// (ReloadPruned), with a large log-alpha learning rate so that gates close
// within three steps. The reloaded gates fused at once give back stage 1's
// structure, and stage 2 ends with a pruned model no wider than it.
func TestAutoStages(t *testing.T) {
	c := loadAutoCase(t, "recipe")
	ctx := context.Background()
	tw, _ := readSafetensors(t, autoPath(t, "model", "teacher.safetensors.gz"))
	var previous map[string]*tensor.Tensor
	var prevArch *config.Arch
	for stage, sp := range [][2]float64{{0, 0.25}, {0.25, 0.5}} {
		w, l0, err := AutoStart(c.arch, tw, previous)
		if err != nil {
			t.Fatal(err)
		}
		a, err := NewAutoStudent(c.arch, w, l0)
		if err != nil {
			t.Fatal(err)
		}
		if stage == 0 {
			if v := f32(t, w["logit_scale"])[0]; v != InitialLogitScale {
				t.Errorf("stage 1 logit_scale %v, want the fresh %v", v, InitialLogitScale)
			}
		} else {
			ra, _, err := a.Prune()
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(*ra) != fmt.Sprint(*prevArch) {
				t.Errorf("stage 2 start fused at once: %+v, stage 1 ended with %+v", *ra, *prevArch)
			}
		}
		cfg := DefaultL0Config(sp[0], sp[1], 2, 3)
		cfg.LogAlphaLR = 2 // large moves, so that three steps close gates
		p, err := NewAutoStepper(a, c.teacher, len(c.tokens), DefaultHyper(c.arch), cfg, SeededNoise{Seed: uint64(stage)})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			if _, err := p.TrainStep(ctx, i, c.images, c.tokens, CosineLR(1e-3, cfg.PruneStep, 4, i)); err != nil {
				t.Fatalf("stage %d iteration %d: %v", stage+1, i, err)
			}
		}
		if !p.Fused() {
			t.Fatalf("stage %d not fused", stage+1)
		}
		arch, pw, err := p.Model()
		if err != nil {
			t.Fatal(err)
		}
		if stage == 0 && fmt.Sprint(*arch) == fmt.Sprint(*c.arch) {
			t.Error("stage 1 pruned nothing: the stage chain is not exercised")
		}
		if prevArch != nil && (arch.Vision.Transformer.Width > prevArch.Vision.Transformer.Width ||
			arch.Text.Transformer.Width > prevArch.Text.Transformer.Width) {
			t.Errorf("stage 2 widened the model: %+v after %+v", *arch, *prevArch)
		}
		t.Logf("stage %d: image width %d %v, text width %d %v", stage+1, arch.Vision.Transformer.Width, arch.Vision.Transformer.Blocks,
			arch.Text.Transformer.Width, arch.Text.Transformer.Blocks)
		previous, prevArch = pw, arch
	}
}
