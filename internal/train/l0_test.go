package train

import (
	"fmt"
	"math"
	"slices"
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

func autoPath(t testing.TB, elem ...string) string {
	return fixtures.Path(t, append([]string{"fixtures", "auto"}, elem...)...)
}

// autoArch is the fixture model's architecture (fixtures/auto/model).
func autoArch(t testing.TB) *config.Arch {
	return readConfigArch(t, autoPath(t, "model", "config.json"))
}

// l0CaseJSON is the part of fixtures/auto/l0/<case>.json the tests read.
type l0CaseJSON struct {
	Towers map[string]struct {
		Rows map[string][]struct {
			N        int     `json:"n"`
			NumZeros int     `json:"num_zeros"`
			SumScore float64 `json:"sum_score"`
		} `json:"deterministic_rows"`
		Prunable  int     `json:"prunable_model_size"`
		PerHead   int     `json:"params_per_head"`
		Lambda1   float64 `json:"lambda_1"`
		Lambda2   float64 `json:"lambda_2"`
		Remaining float64 `json:"expected_remaining_params"`
		Expected  float64 `json:"expected_sparsity"`
		PerTower  []struct {
			Step     int     `json:"step"`
			Loss     float64 `json:"loss"`
			Expected float64 `json:"expected_sparsity"`
			Target   float64 `json:"target_sparsity"`
		} `json:"per_tower_lagrangian"`
	} `json:"towers"`
	Joint []struct {
		Step           int     `json:"step"`
		Target         float64 `json:"target_sparsity"`
		Expected       float64 `json:"expected_sparsity"`
		RemainingImage float64 `json:"expected_remaining_params_image"`
		RemainingText  float64 `json:"expected_remaining_params_text"`
		Violation      float64 `json:"violation"`
		Penalty        float64 `json:"penalty"`
	} `json:"joint_lagrangian"`
	Settings struct {
		Sparsity struct {
			Start, Target float64
			Warmup        int
		} `json:"sparsity"`
	} `json:"settings"`
}

// fixtureL0Name maps the fixtures' L0 names ("image_l0.hidden_loga") to
// ours ("_image_encoder.l0_module.hidden_loga").
func fixtureL0Name(n string) (string, bool) {
	for _, p := range []struct{ from, to string }{{"image_l0.", ImageL0Prefix}, {"text_l0.", TextL0Prefix}} {
		if rest, ok := cutPrefix(n, p.from); ok {
			return p.to + rest, true
		}
	}
	return "", false
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

// ourL0Name is the inverse of fixtureL0Name.
func ourL0Name(n string) (string, bool) {
	for _, p := range []struct{ from, to string }{{ImageL0Prefix, "image_l0."}, {TextL0Prefix, "text_l0."}} {
		if rest, ok := cutPrefix(n, p.from); ok {
			return p.to + rest, true
		}
	}
	return "", false
}

// fixtureL0 renames the L0 tensors of a fixture file to our names; other
// tensors are returned unchanged in the second map.
func fixtureL0(ts map[string]*tensor.Tensor) (l0, rest map[string]*tensor.Tensor) {
	l0, rest = map[string]*tensor.Tensor{}, map[string]*tensor.Tensor{}
	for n, t := range ts {
		if o, ok := fixtureL0Name(n); ok {
			c := *t
			c.Name = o
			l0[o] = &c
		} else {
			rest[n] = t
		}
	}
	return l0, rest
}

// checkAbs requires max|got−want| ≤ tol.
func checkAbs(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if d := maxDiff(got, want); !(d <= tol) {
		t.Errorf("%s: max|go-ref| = %.3g > %g", what, d, tol)
	}
}

// checkRel requires the fixtures' per-tensor rule max|go−ref| ≤
// tol·max|ref| (all-zero references: exactly 0).
func checkRel(t *testing.T, what string, got, want []float32, tol float64) float64 {
	t.Helper()
	if maxAbs(want) == 0 {
		if d := maxDiff(got, want); d != 0 {
			t.Errorf("%s: reference is all zero, got max|go| = %.3g", what, d)
		}
		return 0
	}
	r := tensorRel(got, want)
	if !(r <= tol) {
		t.Errorf("%s: max|go-ref|/max|ref| = %.3g > %g", what, r, tol)
	}
	return r
}

// sameSets requires the exact-0 (and, with ones, exact-1) positions to agree.
func sameSets(t *testing.T, what string, got, want []float32, ones bool) {
	t.Helper()
	for i := range want {
		if (got[i] == 0) != (want[i] == 0) || (ones && (got[i] == 1) != (want[i] == 1)) {
			t.Errorf("%s: element %d is %v, reference %v (exact 0/1 sets differ)", what, i, got[i], want[i])
			return
		}
	}
}

// l0GraphOutputs evaluates, for one set of L0 values, the training masks
// from u, the gradient of Σ coef⊙z, the scores, and for each step the joint
// and per-tower penalties with their gradients.
type l0GraphOut struct {
	z, gradCoef, score [2][3][]float32
	remaining          [2]float64
	expected           [2]float64
	joint              []float64 // per step
	jointExpected      float64
	jointGrads         [][2][5][]float32 // per step, tower, (hidden, heads, inter, λ1, λ2)
	perTower           []float64
	perTowerGrads      [][2][5][]float32
}

func runL0Graph(t *testing.T, towers [2]l0Tower, loga, u, coef [2][3]*tensor.Tensor, lambdas [2][2]float32, targets []float64) l0GraphOut {
	t.Helper()
	backend, err := defaultBackend()
	if err != nil {
		t.Fatal(err)
	}
	nt := len(targets)
	exec, err := NewExec(backend, func(in []*Node) []*Node {
		var p [2]l0Params
		var outs []*Node
		var params []*Node
		for i := range 2 {
			b := i * 11
			p[i] = l0Params{hidden: in[b], heads: in[b+1], inter: in[b+2], lambda1: in[b+9], lambda2: in[b+10]}
			for k := range 3 {
				a, uu, c := in[b+k], in[b+3+k], in[b+6+k]
				z := sampleGates(a, uu)
				gc := Gradient(ReduceAllSum(Mul(c, z)), a)[0]
				outs = append(outs, z, gc, gateScores(a))
			}
			params = append(params, p[i].hidden, p[i].heads, p[i].inter, p[i].lambda1, p[i].lambda2)
		}
		for s := range nt {
			target := Reshape(Slice(in[22], AxisElem(s)), []int{}...)
			lj := lagrangian(towers, p, target, false)
			lp := lagrangian(towers, p, target, true)
			if s == 0 {
				outs = append(outs, ConvertDType(lj.remaining[0], dtype), ConvertDType(lj.remaining[1], dtype),
					ConvertDType(lj.expectedTower[0], dtype), ConvertDType(lj.expectedTower[1], dtype),
					ConvertDType(lj.expected, dtype))
			}
			outs = append(outs, lj.loss, lp.loss)
			outs = append(outs, Gradient(lj.loss, params...)...)
			outs = append(outs, Gradient(lp.loss, params...)...)
		}
		return outs
	})
	if err != nil {
		t.Fatal(err)
	}
	var args []any
	for i := range 2 {
		for _, set := range [][3]*tensor.Tensor{loga[i], u[i], coef[i]} {
			for _, x := range set {
				args = append(args, tensors.FromFlatDataAndDimensions(f32(t, x), x.Shape...))
			}
		}
		args = append(args, tensors.FromScalar(lambdas[i][0]), tensors.FromScalar(lambdas[i][1]))
	}
	args = append(args, tensors.FromFlatDataAndDimensions(slices.Clone(targets), nt))
	out, err := exec.Call(args...)
	if err != nil {
		t.Fatal(err)
	}
	flat := func(x *tensors.Tensor) []float32 {
		v, err := flatF32(x)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	var r l0GraphOut
	k := 0
	for i := range 2 {
		for x := range 3 {
			r.z[i][x], r.gradCoef[i][x], r.score[i][x] = flat(out[k]), flat(out[k+1]), flat(out[k+2])
			k += 3
		}
	}
	r.remaining[0], r.remaining[1] = float64(flat(out[k])[0]), float64(flat(out[k+1])[0])
	r.expected[0], r.expected[1] = float64(flat(out[k+2])[0]), float64(flat(out[k+3])[0])
	r.jointExpected = float64(flat(out[k+4])[0])
	k += 5
	for range nt {
		r.joint = append(r.joint, float64(flat(out[k])[0]))
		r.perTower = append(r.perTower, float64(flat(out[k+1])[0]))
		k += 2
		for _, dst := range []*[][2][5][]float32{&r.jointGrads, &r.perTowerGrads} {
			var g [2][5][]float32
			for i := range 2 {
				for j := range 5 {
					g[i][j] = flat(out[k])
					k++
				}
			}
			*dst = append(*dst, g)
		}
	}
	return r
}

// TestL0Fixtures checks the hard-concrete machinery against fixtures/auto/l0
// (README §5): training masks from the recorded noise, P(gate ≠ 0), soft and
// deterministic masks (1e-6 absolute, identical exact-0/exact-1 sets), the
// gradient of Σ c⊙z, the clamp, the expected remaining parameters (1e-6
// relative) and sparsity (1e-6 absolute), and the per-tower and joint
// penalties (1e-5·|ref| + 1e-7) with their gradients (1e-5·max|ref| per
// tensor, exactly 0 where the reference is 0), at every recorded step.
func TestL0Fixtures(t *testing.T) {
	arch := autoArch(t)
	towers, err := l0Towers(arch)
	if err != nil {
		t.Fatal(err)
	}
	kinds := [3]string{"hidden", "heads", "intermediate"}
	params := [5]string{"hidden_loga", "heads_loga", "intermediate_loga", "lambda_1", "lambda_2"}
	for _, cs := range []string{"random", "recipe-init"} {
		t.Run(cs, func(t *testing.T) {
			var js l0CaseJSON
			readJSON(t, autoPath(t, "l0", cs+".json"), &js)
			ts, _ := readSafetensors(t, autoPath(t, "l0", cs+".safetensors"))
			get := func(name string) *tensor.Tensor {
				x, ok := ts[name]
				if !ok {
					t.Fatalf("%s missing in the fixture", name)
				}
				return x
			}
			cfg := L0Config{StartSparsity: js.Settings.Sparsity.Start, TargetSparsity: js.Settings.Sparsity.Target,
				SparsityWarmup: js.Settings.Sparsity.Warmup}
			var steps []int
			var targets []float64
			for _, j := range js.Joint {
				steps = append(steps, j.Step)
				tg := cfg.Target(int64(j.Step))
				if tg != j.Target {
					t.Errorf("step %d: target sparsity %v, fixture %v", j.Step, tg, j.Target)
				}
				targets = append(targets, tg)
			}
			var loga, u, coef [2][3]*tensor.Tensor
			var lambdas [2][2]float32
			for i, tw := range towers {
				for x, k := range kinds {
					loga[i][x] = get(tw.name + ".loga." + k)
					u[i][x] = get(tw.name + ".u." + k)
					coef[i][x] = get(tw.name + ".coef." + k)
				}
				j := js.Towers[tw.name]
				lambdas[i] = [2]float32{float32(j.Lambda1), float32(j.Lambda2)}
				if tw.prunable() != j.Prunable || tw.paramsPerHead() != j.PerHead {
					t.Errorf("%s: prunable size %d, params per head %d; fixture %d, %d", tw.name, tw.prunable(), tw.paramsPerHead(), j.Prunable, j.PerHead)
				}
			}
			r := runL0Graph(t, towers, loga, u, coef, lambdas, targets)
			for i, tw := range towers {
				jt := js.Towers[tw.name]
				for x, k := range kinds {
					what := tw.name + " " + k
					want := f32(t, get(tw.name+".z_train."+k))
					checkAbs(t, what+" training mask", r.z[i][x], want, 1e-6)
					sameSets(t, what+" training mask", r.z[i][x], want, true)
					checkRel(t, what+" ∂Σc·z/∂loga", r.gradCoef[i][x], f32(t, get(tw.name+".grad_sum_coef_z."+k)), 1e-5)
					wantScore := f32(t, get(tw.name+".score."+k))
					checkAbs(t, what+" score (graph)", r.score[i][x], wantScore, 1e-6)
					a := f32(t, loga[i][x])
					host := make([]float32, len(a))
					soft := make([]float32, len(a))
					clamped := make([]float32, len(a))
					for e, v := range a {
						host[e], soft[e] = gateScore(v), softGate(v)
						clamped[e] = min(max(v, l0ClampLo), l0ClampHi)
					}
					checkAbs(t, what+" score (host)", host, wantScore, 1e-6)
					checkAbs(t, what+" soft mask", soft, f32(t, get(tw.name+".soft."+k)), 1e-6)
					checkAbs(t, what+" clamp", clamped, f32(t, get(tw.name+".clamped."+k)), 1e-6)
					// Deterministic masks, row by row.
					n := tw.shape(k)[len(tw.shape(k))-1]
					var ev []float32
					for row := 0; row < len(a); row += n {
						ev = append(ev, deterministicRow(a[row:row+n])...)
					}
					wantEval := f32(t, get(tw.name+".z_eval."+k))
					checkAbs(t, what+" deterministic mask", ev, wantEval, 1e-6)
					sameSets(t, what+" deterministic mask", ev, wantEval, false)
					for row, jr := range jt.Rows[k] {
						zeros := 0
						for _, v := range ev[row*n : (row+1)*n] {
							if v == 0 {
								zeros++
							}
						}
						if zeros != jr.NumZeros || jr.N != n {
							t.Errorf("%s row %d: %d zeros of %d, fixture %d of %d", what, row, zeros, n, jr.NumZeros, jr.N)
						}
					}
				}
				if !relClose(r.remaining[i], jt.Remaining, 1e-6) {
					t.Errorf("%s: expected remaining params %.9g, want %.9g", tw.name, r.remaining[i], jt.Remaining)
				}
				if d := math.Abs(r.expected[i] - jt.Expected); !(d <= 1e-6) {
					t.Errorf("%s: expected sparsity %.9g, want %.9g", tw.name, r.expected[i], jt.Expected)
				}
			}
			for s, step := range steps {
				jj := js.Joint[s]
				if d := math.Abs(r.jointExpected - jj.Expected); !(d <= 1e-6) {
					t.Errorf("joint expected sparsity %.9g, want %.9g", r.jointExpected, jj.Expected)
				}
				if !(math.Abs(r.joint[s]-jj.Penalty) <= 1e-5*math.Abs(jj.Penalty)+1e-7) {
					t.Errorf("step %d: joint penalty %.9g, want %.9g", step, r.joint[s], jj.Penalty)
				}
				perTower := 0.0
				for i, tw := range towers {
					pt := js.Towers[tw.name].PerTower[s]
					if pt.Step != step || pt.Target != targets[s] {
						t.Fatalf("per-tower entry %d is step %d target %v", s, pt.Step, pt.Target)
					}
					perTower += pt.Loss
					for j, p := range params {
						what := fmt.Sprintf("step %d %s %s", step, tw.name, p)
						checkRel(t, what+" joint gradient", r.jointGrads[s][i][j], f32(t, get(fmt.Sprintf("joint_penalty_step%d.grad.%s.%s", step, tw.name, p))), 1e-5)
						checkRel(t, what+" per-tower gradient", r.perTowerGrads[s][i][j], f32(t, get(fmt.Sprintf("%s.per_tower_penalty_step%d.grad.%s", tw.name, step, p))), 1e-5)
					}
				}
				if !(math.Abs(r.perTower[s]-perTower) <= 1e-5*math.Abs(perTower)+1e-7) {
					t.Errorf("step %d: per-tower penalty sum %.9g, want %.9g", step, r.perTower[s], perTower)
				}
			}
		})
	}
}

// TestL0Constants checks the constants against l0/index.json and the
// official ViT-B/32 numbers (prunable sizes, params per head, scores at ±10
// and at the clamp bounds).
func TestL0Constants(t *testing.T) {
	var idx struct {
		Constants map[string]float64 `json:"constants"`
		ViT       map[string]struct {
			Width, Heads, Layers int
			Prunable             int                `json:"prunable_model_size"`
			PerHead              int                `json:"params_per_head"`
			Scores               map[string]float64 `json:"score_at_log_alpha"`
			ExpectedAt10         float64            `json:"expected_params_with_log_alpha_10"`
			Reload               map[string]struct {
				N     int   `json:"n"`
				Wider []int `json:"stored_widths_that_come_back_wider"`
			} `json:"reload_then_fuse"`
		} `json:"vit_b_32"`
	}
	readJSON(t, autoPath(t, "l0", "index.json"), &idx)
	c := idx.Constants
	for _, k := range []struct {
		name string
		got  float64
	}{
		{"limit_a", L0LimitA}, {"limit_b", L0LimitB}, {"epsilon", L0Epsilon}, {"temperature", L0Temperature},
		{"magical_number", L0MagicalNumber}, {"init_log_alpha", L0InitLogAlpha}, {"init_lambda", L0InitLambda},
		{"clamp_min_float32", float64(l0ClampLo)}, {"clamp_max_float32", float64(l0ClampHi)},
		{"logit_x_times_temperature", l0LogitX},
	} {
		if k.got != c[k.name] {
			t.Errorf("%s = %v, fixture %v", k.name, k.got, c[k.name])
		}
	}
	for _, name := range []string{"image", "text"} {
		v := idx.ViT[name]
		tw := l0Tower{name: name, width: v.Width, heads: v.Heads, layers: v.Layers}
		if tw.prunable() != v.Prunable || tw.paramsPerHead() != v.PerHead {
			t.Errorf("ViT-B/32 %s: prunable %d, per head %d; want %d, %d", name, tw.prunable(), tw.paramsPerHead(), v.Prunable, v.PerHead)
		}
		for a, want := range map[string]float32{"10": 10, "-10": -10, "ln100": l0ClampHi, "ln0.01": l0ClampLo} {
			if got := gateScore(want); float64(got) != v.Scores[a] {
				t.Errorf("score(%s) = %v, want %v", a, got, v.Scores[a])
			}
		}
		// Expected parameters with every log-alpha at 10 (float64 sums of
		// the float32 scores; the fixture is float32).
		s := float64(gateScore(10))
		got := s*float64(tw.width)*s*float64(tw.layers*tw.heads)*float64(tw.paramsPerHead())/float64(tw.width) +
			2*s*float64(tw.width)*s*float64(tw.layers*tw.inter())
		if !relClose(got, v.ExpectedAt10, 1e-6) {
			t.Errorf("ViT-B/32 %s: expected params at log-alpha 10: %.9g, want %.9g", name, got, v.ExpectedAt10)
		}
		// Reload then fuse: a row stored with w kept units (log-alpha 10)
		// and n−w removed (−10) comes back one unit wider exactly for the
		// widths the fixture lists.
		for kind, r := range v.Reload {
			lo, hi := -1, -1
			if len(r.Wider) == 2 {
				lo, hi = r.Wider[0], r.Wider[1]
			}
			row := make([]float32, r.N)
			// The widths around the listed range's ends and a few others.
			var widths []int
			for _, w := range []int{0, 1, 2, lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, hi + 2, r.N / 2, r.N - 1, r.N} {
				if w >= 0 && w <= r.N {
					widths = append(widths, w)
				}
			}
			for _, w := range widths {
				for i := range row {
					row[i] = -10
					if i < w {
						row[i] = 10
					}
				}
				kept := len(nonZero(deterministicRow(row)))
				wider := kept == w+1
				if wider != (w >= lo && w <= hi) || (!wider && kept != w) {
					t.Errorf("ViT-B/32 %s %s: stored width %d comes back as %d", name, kind, w, kept)
					break
				}
			}
		}
	}
}

// TestDeterministicTies checks the documented tie rule: of equal soft
// values at the cut, the highest-indexed are removed first.
func TestDeterministicTies(t *testing.T) {
	row := []float32{-10, -10, -10, 10, -10}
	z := deterministicRow(row)
	// Σ score ≈ 1 + 4·2.2e-4: k = round(5 − 1.0009) = 4, every −10 goes.
	if got := nonZero(z); !slices.Equal(got, []int{3}) {
		t.Errorf("kept %v, want [3]", got)
	}
	// Four equal gates at 0 (score 0.83 each): k = round(4 − 3.32) = 1, a
	// tie between all four: the last one goes.
	row = []float32{0, 0, 0, 0}
	if got := nonZero(deterministicRow(row)); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("kept %v, want [0 1 2]", got)
	}
}

// TestTargetSparsity checks the warm-up schedule in the official order of
// operations.
func TestTargetSparsity(t *testing.T) {
	c := DefaultL0Config(0.25, 0.5, 4, 6)
	for step, want := range map[int64]float64{0: 0.25, 1: 0.3125, 3: 0.4375, 4: 0.5, 9: 0.5} {
		if got := c.Target(step); got != want {
			t.Errorf("Target(%d) = %v, want %v", step, got, want)
		}
	}
	c.SparsityWarmup = 0
	if got := c.Target(0); got != 0.5 {
		t.Errorf("without warm-up: Target(0) = %v, want 0.5", got)
	}
}

// TestSeededNoise checks that the default noise is deterministic per
// (seed, step, tower, kind), differs between them, and stays in range.
func TestSeededNoise(t *testing.T) {
	draw := func(n SeededNoise, step int64, tower, kind string) []float32 {
		u := make([]float32, 1000)
		if err := n.Uniform(step, tower, kind, u); err != nil {
			t.Fatal(err)
		}
		if err := checkNoise(u, tower, kind); err != nil {
			t.Fatal(err)
		}
		return u
	}
	a := draw(SeededNoise{1}, 5, "image", "heads")
	if !slices.Equal(a, draw(SeededNoise{1}, 5, "image", "heads")) {
		t.Error("same seed and step give different noise")
	}
	for _, o := range [][]float32{draw(SeededNoise{2}, 5, "image", "heads"), draw(SeededNoise{1}, 6, "image", "heads"),
		draw(SeededNoise{1}, 5, "text", "heads"), draw(SeededNoise{1}, 5, "image", "hidden")} {
		if slices.Equal(a, o) {
			t.Error("different seed, step, tower or kind give the same noise")
		}
	}
	mean := 0.0
	for _, v := range a {
		mean += float64(v)
	}
	if mean /= float64(len(a)); math.Abs(mean-0.5) > 0.05 {
		t.Errorf("mean of 1000 draws %v, want about 0.5", mean)
	}
}
