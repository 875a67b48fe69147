package train

import (
	"os"
	"testing"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// autoArm are the settings of the auto-inheritance arm of the synthetic
// experiment: the masked teacher copy is pruned towards target sparsity
// (reached after warmup steps) and fused at prune, all within the
// experiment's studentSteps.
type autoArm struct {
	target        float64
	warmup, prune int
	l0LR          float64
}

// runAuto trains the auto-inheritance student: AutoStart from the trained
// teacher, AutoStepper with the official schedule (warm-up = prune step)
// for studentSteps, and returns its held-out top-1 and pruned architecture.
func (e experiment) runAuto(t *testing.T, x *expEnv, a autoArm) (float64, *config.Arch, map[string]float64) {
	t.Helper()
	w, l0, err := AutoStart(x.ta, x.tw, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewAutoStudent(x.ta, w, l0)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultL0Config(0, a.target, a.warmup, a.prune)
	cfg.LogAlphaLR = a.l0LR
	p, err := NewAutoStepper(s, x.teacher, e.batch, DefaultHyper(x.ta), cfg, SeededNoise{Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	var extra map[string]float64 // of the last masked step
	hook := func(r LogRecord) {
		if r.Extra != nil {
			extra = r.Extra
		}
	}
	_, _ = e.train(t, x, "auto", p, e.studentSteps, a.prune, hook)
	arch, pw, err := p.Model()
	if err != nil {
		t.Fatal(err)
	}
	return x.score(t, arch, pw), arch, extra
}

// prunableParams counts the parameters of a model without the token
// embedding and the logit scale (the token embedding is 96 % of these tiny
// models; auto inheritance shrinks it only through the hidden width).
func prunableParams(a *config.Arch) int64 {
	p := a.Params()
	return p.Image + p.TextNoTokenEmb
}

// TestAutoInheritance is the acceptance experiment of auto weight
// inheritance (docs/distillation.md): on the synthetic data, with the
// teacher of TestDistillationBeatsScratch (trained once per process), a
// student auto-inherited from the teacher — masked copy, target sparsity
// 0.55 of the prunable parameters, fused at the prune step, trained on —
// ends with at most the parameters of the manual-inheritance student
// (expStudentJSON: half the layers) and about half the teacher's, and
// reaches its held-out zero-shot accuracy at the same total steps: in the
// long variant (TINYCLIP_EXPERIMENT=long) at least the manual student's,
// in the CI variant within 0.04 of it (there a held-out score has a
// standard error of 0.016 and both students are at the teacher's level).
func TestAutoInheritance(t *testing.T) {
	e := experimentFromEnv(t)
	a := autoArm{target: 0.55, warmup: 20, prune: 40, l0LR: 0.3}
	margin := 0.04
	if os.Getenv("TINYCLIP_EXPERIMENT") == "long" {
		a = autoArm{target: 0.55, warmup: 50, prune: 150, l0LR: 0.2}
		margin = 0
	}
	x := e.env(t)
	t.Logf("teacher: %d steps (%v), held-out top-1 %.3f", e.teacherSteps, x.tElapsed.Round(time.Second), x.tscore)
	m := e.manualArm(t, x)
	t0 := time.Now()
	acc, arch, ex := e.runAuto(t, x, a)
	pa, pm, pt := prunableParams(arch), prunableParams(x.sa), prunableParams(x.ta)
	t.Logf("auto inheritance %+v, %d steps (%v): expected sparsity %.3f (target %.3f, λ %.2f/%.2f) at the fuse; "+
		"image width %d, heads %v, MLP %v; text width %d, heads %v, MLP %v",
		a, e.studentSteps, time.Since(t0).Round(time.Second), ex["expected_sparsity"], ex["target_sparsity"], ex["lambda_1"], ex["lambda_2"],
		arch.Vision.Transformer.Width, blockHeads(arch.Vision.Transformer.Blocks), blockMLP(arch.Vision.Transformer.Blocks),
		arch.Text.Transformer.Width, blockHeads(arch.Text.Transformer.Blocks), blockMLP(arch.Text.Transformer.Blocks))
	t.Logf("parameters without the token embedding: auto %d (%.1f %% of the teacher's %d), manual %d (%.1f %%)",
		pa, 100*float64(pa)/float64(pt), pt, pm, 100*float64(pm)/float64(pt))
	t.Logf("held-out top-1: auto %.3f, manual %.3f (inherited, before training %.3f; manual arm %v), teacher %.3f",
		acc, m.distilled, m.inherited, m.elapsed.Round(time.Second), x.tscore)
	if pa > pm || float64(pa) < 0.4*float64(pt) {
		t.Errorf("the auto student has %d parameters: want at most the manual student's %d and about half the teacher's %d", pa, pm, pt)
	}
	if acc < m.distilled-margin {
		t.Errorf("auto inheritance top-1 %.3f below the manual student's %.3f (margin %.2f)", acc, m.distilled, margin)
	}
}

func blockHeads(bs []config.Block) []int {
	out := make([]int, len(bs))
	for i, b := range bs {
		out[i] = b.Heads
	}
	return out
}

func blockMLP(bs []config.Block) []int {
	out := make([]int, len(bs))
	for i, b := range bs {
		out[i] = b.MLP
	}
	return out
}
