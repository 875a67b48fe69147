package train

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/engine"
)

// stagedAutoRecipe is the released three-stage auto recipe (spec §6.2) in
// one file, as docs/distillation.md shows it.
const stagedAutoRecipe = `
teacher: /models/vit-b-32-laion2b_e16.pt
inherit: auto
data: "/data/laion400m/{00000..41455}.tar"
batch: 1024
epochs: 6
lr: 0.0001
sparsity_warmup: 1000
out: runs/auto
stages:
  - {name: 63m, start_sparsity: 0,    target_sparsity: 0.25, prune_step: 3000}
  - {name: 45m, start_sparsity: 0.25, target_sparsity: 0.5,  prune_step: 5000}
  - {name: 22m, start_sparsity: 0.5,  target_sparsity: 0.75, prune_step: 8000}
`

func TestAutoRecipe(t *testing.T) {
	r, err := ParseRecipe(strings.NewReader(stagedAutoRecipe))
	if err != nil {
		t.Fatal(err)
	}
	runs, err := r.Expand(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name          string
		start, target float64
		prune         int
	}{{"63m", 0, 0.25, 3000}, {"45m", 0.25, 0.5, 5000}, {"22m", 0.5, 0.75, 8000}}
	if len(runs) != len(want) {
		t.Fatalf("%d stages", len(runs))
	}
	for i, w := range want {
		g := runs[i]
		if g.Name != w.name || g.Inherit != InheritAuto || g.StartSparsity != w.start || g.TargetSparsity != w.target ||
			g.PruneStep != w.prune || g.SparsityWarmup != 1000 || g.L0LR != 0.02 || g.LambdaLR != -0.02 {
			t.Errorf("stage %d: %+v", i+1, g)
		}
		if err := g.Validate(); err != nil {
			t.Errorf("stage %d: %v", i+1, err)
		}
		if c := g.l0Config(); c != DefaultL0Config(w.start, w.target, 1000, w.prune) {
			t.Errorf("stage %d: L0 settings %+v", i+1, c)
		}
		// The resolved recipe reads back the same.
		y, err := g.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseRecipe(bytes.NewReader(y))
		if err != nil {
			t.Fatalf("stage %d: %v\n%s", i+1, err, y)
		}
		back.Name = g.Name
		if back.l0Config() != g.l0Config() || back.Inherit != InheritAuto {
			t.Errorf("stage %d: marshalled and parsed back: %+v", i+1, back)
		}
	}

	ok := runs[0]
	ok.Epochs, ok.Steps = 0, 10
	for name, mod := range map[string]func(*Recipe){
		"no teacher":             func(r *Recipe) { r.Teacher = "" },
		"accumulation":           func(r *Recipe) { r.Accum = 2 },
		"no prune step":          func(r *Recipe) { r.PruneStep = Unset },
		"negative prune step":    func(r *Recipe) { r.PruneStep = -3 },
		"warm-up not prune step": func(r *Recipe) { r.Warmup = 100 },
		"no target":              func(r *Recipe) { r.TargetSparsity = 0 },
		"target 1":               func(r *Recipe) { r.TargetSparsity = 1 },
		"start −0.1":             func(r *Recipe) { r.StartSparsity = -0.1 },
		"negative warm-up":       func(r *Recipe) { r.SparsityWarmup = -1 },
		"l0 lr NaN":              func(r *Recipe) { r.L0LR = math.NaN() },
		"lambda lr Inf":          func(r *Recipe) { r.LambdaLR = math.Inf(-1) },
		"sparsity with manual":   func(r *Recipe) { r.Inherit, r.Student = InheritManual, "s.json" },
	} {
		r := ok
		mod(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	same := ok
	same.Warmup = same.PruneStep // the official scripts set both
	if err := same.Validate(); err != nil {
		t.Errorf("warmup = prune_step: %v", err)
	}
}

// logRecords reads a run's log.jsonl.
func logRecords(t *testing.T, dir string) []LogRecord {
	t.Helper()
	var out []LogRecord
	for _, line := range strings.Split(strings.TrimSpace(string(readBytes(t, filepath.Join(dir, LogFile)))), "\n") {
		var rec LogRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

// TestDistillAuto runs the staged auto recipe end to end on the tiny
// teacher: stage 1 (0 → 0.5) from the teacher's copy through the fuse,
// stage 2 (0.5 → 0.75) from stage 1's pruned model; the logs carry the
// sparsity quantities before each fuse and none after, the checkpoint
// before the fuse is the masked model (tinyclip prune reads it), the final
// models are irregular and load in the engine, and stage 2 ends no wider
// than stage 1. Resuming a finished stage changes nothing; other L0
// settings are refused.
func TestDistillAuto(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	teacher, _, _ := writeTinyModels(t, dir)
	out := filepath.Join(dir, "auto")
	r, err := ParseRecipe(strings.NewReader(`
teacher: ` + teacher + `
inherit: auto
data: synthetic:48
batch: 8
steps: 5
lr: 0.001
sparsity_warmup: 1
l0_lr: 2
checkpoint_every: 2
keep_checkpoints: 5
eval_data: synthetic:16
out: ` + out + `
stages:
  - {name: s50, target_sparsity: 0.5, prune_step: 3}
  - {name: s25, start_sparsity: 0.5, target_sparsity: 0.75, prune_step: 3}
`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Distill(ctx, r, DistillOptions{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("%d results", len(res))
	}
	full := parseArch(t, tinyTeacherJSON)
	var widths [2][2]int
	for i, stage := range []string{"s50", "s25"} {
		sdir := filepath.Join(out, stage)
		// The log: L0 quantities at the masked steps 1–3, none after the fuse.
		var steps int
		for _, rec := range logRecords(t, sdir) {
			if rec.Eval != nil {
				continue
			}
			steps++
			_, has := rec.Extra["expected_sparsity"]
			if masked := rec.Step <= 3; has != masked {
				t.Errorf("%s step %d: extra %v", stage, rec.Step, rec.Extra)
			}
			if rec.Step == 1 {
				for _, k := range []string{"target_sparsity", "lambda_1", "lambda_2", "lagrangian"} {
					if _, ok := rec.Extra[k]; !ok {
						t.Errorf("%s step 1: no %s in %v", stage, k, rec.Extra)
					}
				}
				if txt := progressText(*rec.Loss, rec.LR, 1, rec.Extra); !strings.Contains(txt, "sparsity ") || !strings.Contains(txt, "target ") || !strings.Contains(txt, "λ1 ") {
					t.Errorf("progress line %q", txt)
				}
			}
		}
		if steps != 5 {
			t.Errorf("%s: %d step records", stage, steps)
		}
		// ckpt-2 (before the fuse) is the masked model; ckpt-4 the pruned one.
		ck2, err := ReadCheckpoint(filepath.Join(sdir, "ckpt-2"))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ck2.State.Weights[ImageL0Prefix+"hidden_loga"]; !ok || !sameArch(ck2.Arch, full) {
			t.Errorf("%s ckpt-2: no log-alphas or not the full architecture", stage)
		}
		ma, mw, ml0, err := ReadMaskedModel(filepath.Join(sdir, "ckpt-2"), nil)
		if err != nil || !sameArch(ma, full) || len(ml0) != 10 || len(mw) != len(full.TensorShapes()) {
			t.Errorf("%s ckpt-2 as a masked model: %v", stage, err)
		}
		ck4, err := ReadCheckpoint(filepath.Join(sdir, "ckpt-4"))
		if err != nil {
			t.Fatal(err)
		}
		for n := range ck4.State.Weights {
			if strings.Contains(n, "l0_module") {
				t.Errorf("%s ckpt-4 (after the fuse) holds %s", stage, n)
			}
		}
		// The final model: irregular, loadable, the checkpoint's architecture.
		fa, fw := loadModelDir(t, res[i].Final)
		if !sameArch(fa, ck4.Arch) {
			t.Errorf("%s: final architecture %+v, the checkpoint's %+v", stage, fa.Config(), ck4.Arch.Config())
		}
		if sameArch(fa, full) {
			t.Errorf("%s pruned nothing", stage)
		}
		m, err := engine.Build(fa, fw, engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.EncodeTexts(ctx, [][]int{{49406, 320, 49407}}); err != nil {
			t.Fatal(err)
		}
		widths[i] = [2]int{fa.Vision.Transformer.Width, fa.Text.Transformer.Width}
		if fa.Params().Image >= full.Params().Image {
			t.Errorf("%s: image tower not smaller than the teacher's", stage)
		}
		t.Logf("%s: image width %d %v, text width %d %v; image parameters %d of %d", stage, fa.Vision.Transformer.Width,
			fa.Vision.Transformer.Blocks, fa.Text.Transformer.Width, fa.Text.Transformer.Blocks, fa.Params().Image, full.Params().Image)
		if _, ok := res[i].Eval["zeroshot/top1"]; !ok {
			t.Errorf("%s: no evaluation: %v", stage, res[i].Eval)
		}
		if res[i].FinalHF != "" && !slices.Equal(full.Vision.Transformer.Blocks, fa.Vision.Transformer.Blocks) {
			t.Errorf("%s: an irregular student exported as HF", stage)
		}
	}
	if widths[1][0] > widths[0][0] || widths[1][1] > widths[0][1] {
		t.Errorf("stage 2 widths %v wider than stage 1's %v", widths[1], widths[0])
	}
	y := string(readBytes(t, filepath.Join(out, "s25", RunFile)))
	if !strings.Contains(y, "inherit_from: "+filepath.Join(out, "s50", FinalDir)) || !strings.Contains(y, "inherit: auto") {
		t.Errorf("stage 2 does not continue stage 1 by auto inheritance:\n%s", y)
	}

	// Resuming the finished run changes nothing; other L0 settings are refused.
	before := readBytes(t, filepath.Join(res[1].Final, ModelFile))
	if _, err := Distill(ctx, r, DistillOptions{Logger: quiet(), Resume: true}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, readBytes(t, filepath.Join(res[1].Final, ModelFile))) {
		t.Error("resuming the finished run changed the model")
	}
	_, err = Distill(ctx, r, DistillOptions{Logger: quiet(), Resume: true, Override: func(x *Recipe) { x.L0LR = 1 }})
	if err == nil || !strings.Contains(err.Error(), "l0") {
		t.Errorf("changed l0_lr: %v", err)
	}

	// The student, if given, must be the teacher's architecture.
	bad := DefaultRecipe()
	bad.Teacher, bad.Inherit, bad.Student, bad.Data, bad.Steps = teacher, InheritAuto, filepath.Join(dir, "student.json"), StringList{"synthetic:16"}, 1
	bad.TargetSparsity, bad.PruneStep, bad.Out, bad.Batch = 0.5, 1, filepath.Join(dir, "bad"), 8
	if _, err := Distill(ctx, &bad, DistillOptions{Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "teacher's architecture") {
		t.Errorf("auto with another student architecture: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "bad")); err != nil {
		t.Fatal(err)
	}
}

// autoKillPrune is the prune step of the auto-inheritance run the SIGKILL
// test interrupts (killSteps iterations in all).
const autoKillPrune = 6

// newAutoKillStepper is the auto-inheritance run of the SIGKILL test: the
// tiny teacher's masked copy, target sparsity 0.5 reached after 2 steps,
// a large log-alpha learning rate so that the fuse at autoKillPrune prunes
// units.
func (s *tinySetup) newAutoKillStepper() (*AutoStepper, error) {
	tw, err := Init(s.teacherArch, 11)
	if err != nil {
		return nil, err
	}
	w, l0, err := AutoStart(s.teacherArch, tw, nil)
	if err != nil {
		return nil, err
	}
	a, err := NewAutoStudent(s.teacherArch, w, l0)
	if err != nil {
		return nil, err
	}
	cfg := DefaultL0Config(0, 0.5, 2, autoKillPrune)
	cfg.LogAlphaLR = 2
	return NewAutoStepper(a, s.teacher, s.batch, DefaultHyper(s.teacherArch), cfg, SeededNoise{Seed: 5})
}

// autoKillOptions are the run options of the auto SIGKILL test: the
// official schedule, warm-up = prune step.
func (s *tinySetup) autoKillOptions(dir string) RunOptions {
	o := s.options(dir, killSteps)
	o.LR = func(i int) float64 { return CosineLR(1e-3, autoKillPrune, killSteps, i) }
	o.Identity = map[string]any{"test": "tiny auto", "steps": killSteps, "prune_step": autoKillPrune}
	return o
}

// hasL0 reports whether a state holds L0 parameters (a masked model).
func hasL0(st *State) bool {
	for n := range st.Weights {
		if strings.Contains(n, ".l0_module.") {
			return true
		}
	}
	return false
}

// TestAutoResumeAfterSIGKILL kills an auto-inheritance run twice with
// SIGKILL — before the fuse (the newest checkpoint holds the masked model,
// its log-alphas and multipliers, and all four optimizers' moments) and
// after it (the pruned student and its fresh optimizers) — resuming it in
// a new process each time and finally in this one, and compares the final
// model, the last checkpoint and the log with an uninterrupted run's, byte
// for byte.
func TestAutoResumeAfterSIGKILL(t *testing.T) {
	s := newTinySetup(t)
	dir := t.TempDir()
	ck := killChildAfter(t, dir, "auto", "ckpt-2")
	if !hasL0(ck.State) || ck.Info.Step > autoKillPrune || !sameArch(ck.Arch, s.teacherArch) {
		t.Fatalf("first kill: %s is not a masked checkpoint before the fuse", ck.Dir)
	}
	for _, n := range []string{"exp_avg." + ImageL0Prefix + "heads_loga", "exp_avg_sq." + TextL0Prefix + "lambda_1", "exp_avg.visual.conv1.weight"} {
		if _, ok := ck.State.Moments[n]; !ok {
			t.Errorf("masked checkpoint without %s", n)
		}
	}
	ck = killChildAfter(t, dir, "auto", "ckpt-8")
	if hasL0(ck.State) || ck.Info.Step <= autoKillPrune || sameArch(ck.Arch, s.teacherArch) {
		t.Fatalf("second kill: %s is not a pruned checkpoint after the fuse", ck.Dir)
	}
	if ck.State.Step != int64(ck.Info.Step-autoKillPrune) {
		t.Errorf("pruned checkpoint at step %d has optimizer step %d: the optimizers were not fresh at the fuse", ck.Info.Step, ck.State.Step)
	}

	o := s.autoKillOptions(dir)
	o.Resume = true
	p, err := s.newAutoKillStepper()
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), p, s.open(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed <= autoKillPrune {
		t.Fatalf("the last resume started at %d", res.Resumed)
	}
	ref := t.TempDir()
	q, err := s.newAutoKillStepper()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), q, s.open(), s.autoKillOptions(ref)); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join("ckpt-"+strconv.Itoa(killSteps), CheckpointModel)
	for _, f := range []string{filepath.Join(FinalDir, ModelFile), filepath.Join(FinalDir, ConfigFile), final,
		filepath.Join("ckpt-"+strconv.Itoa(killSteps), CheckpointOptim)} {
		if !bytes.Equal(readBytes(t, filepath.Join(ref, f)), readBytes(t, filepath.Join(dir, f))) {
			t.Errorf("%s differs from the uninterrupted run's", f)
		}
	}
	a, b := stepLosses(t, ref), stepLosses(t, dir)
	if len(a) != killSteps || strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("log losses differ:\n%v\n%v", a, b)
	}
	var sp []string
	for _, rec := range logRecords(t, dir) {
		if v, ok := rec.Extra["expected_sparsity"]; ok {
			sp = append(sp, strconv.FormatFloat(v, 'f', 4, 64))
		}
	}
	if len(sp) != autoKillPrune {
		t.Errorf("%d steps log an expected sparsity, want the %d masked ones", len(sp), autoKillPrune)
	}
	t.Logf("expected sparsity at the masked steps: %v", sp)
}
