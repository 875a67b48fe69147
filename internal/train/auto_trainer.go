package train

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// AutoStepper drives a whole auto-inheritance run for the trainer (it
// implements Stepper): masked steps (AutoStep) at iterations before
// L0Config.PruneStep; at that iteration the fuse — the deterministic masks
// of the log-alphas, Prune, and a fresh Student and Step with zero AdamW
// moments and step count, as the official loop builds a fresh set of three
// optimizers — and from then on plain steps of the pruned student. The
// towers' learning rate of the official recipe is CosineLR(base,
// PruneStep, total, iter) over the whole run (the warm-up is the prune
// step; after the fuse it equals cosine_lr_start_nowarmup). An
// AutoStepper is not safe for concurrent use.
type AutoStepper struct {
	full    *config.Arch
	teacher Teacher
	batch   int
	hyper   Hyper
	cfg     L0Config
	noise   Noise

	auto  *AutoStep // before the fuse
	fused *Step     // after it
	last  AutoMetrics
	ran   bool // last holds a masked step's metrics
}

// NewAutoStepper prepares a run of masked steps of batch size b for
// student (see NewAutoStep for teacher, h, cfg and noise).
func NewAutoStepper(student *AutoStudent, teacher Teacher, b int, h Hyper, cfg L0Config, noise Noise) (*AutoStepper, error) {
	s, err := NewAutoStep(student, teacher, b, h, cfg, noise)
	if err != nil {
		return nil, err
	}
	return &AutoStepper{full: student.Arch(), teacher: teacher, batch: b, hyper: h, cfg: cfg, noise: s.noise, auto: s}, nil
}

// BatchSize implements Stepper.
func (p *AutoStepper) BatchSize() int { return p.batch }

// Fused reports whether the gates have been fused (the student pruned).
func (p *AutoStepper) Fused() bool { return p.fused != nil }

// TrainStep implements Stepper: iter is the global step of the sparsity
// schedule and of the fuse.
func (p *AutoStepper) TrainStep(ctx context.Context, iter int, images []float32, tokens [][]int, lr float64) (Metrics, error) {
	if p.fused == nil && iter >= p.cfg.PruneStep {
		if err := p.fuse(); err != nil {
			return Metrics{LR: lr, Loss: math.NaN(), GradNorm: math.NaN()}, err
		}
	}
	if p.fused != nil {
		m, err := p.fused.Run(ctx, images, tokens, lr)
		nan := math.NaN()
		p.last = AutoMetrics{Metrics: m, GlobalStep: int64(iter), Distillation: m.Loss, Target: nan, Expected: nan,
			ExpectedImage: nan, ExpectedText: nan, RemainingImage: nan, RemainingText: nan, Lambda1: nan, Lambda2: nan}
		return m, err
	}
	m, err := p.auto.Run(ctx, images, tokens, int64(iter), lr)
	p.last, p.ran = m, true
	return m.Metrics, err
}

// Last returns the metrics of the last TrainStep; after the fuse the
// L0 fields are NaN.
func (p *AutoStepper) Last() AutoMetrics { return p.last }

// ExtraMetrics returns the L0 quantities of the last masked step for logs
// and progress lines — "expected_sparsity", "target_sparsity",
// "lambda_1", "lambda_2" (the multipliers' means), "lagrangian" — and
// nothing after the fuse.
func (p *AutoStepper) ExtraMetrics() map[string]float64 {
	if p.fused != nil || !p.ran {
		return nil
	}
	m := &p.last
	return map[string]float64{
		"expected_sparsity": m.Expected, "target_sparsity": m.Target,
		"lambda_1": m.Lambda1, "lambda_2": m.Lambda2, "lagrangian": m.Lagrangian,
	}
}

// fuse prunes the masked student and switches to plain steps.
func (p *AutoStepper) fuse() error {
	arch, w, err := p.auto.a.Prune()
	if err != nil {
		return fmt.Errorf("train: fuse: %w", err)
	}
	st, err := NewStudent(arch, w)
	if err != nil {
		return fmt.Errorf("train: fuse: %w", err)
	}
	s, err := NewStep(st, p.teacher, p.batch, p.hyper)
	if err != nil {
		return fmt.Errorf("train: fuse: %w", err)
	}
	p.fused, p.auto = s, nil
	return nil
}

// State implements Stepper: before the fuse AutoStep.State (tower tensors
// and L0 parameters of the full masked model), after it Step.State of the
// pruned student.
func (p *AutoStepper) State() (*State, error) {
	if p.fused != nil {
		return p.fused.State()
	}
	return p.auto.State()
}

// StateArch returns the architecture of the tower tensors State holds: the
// full masked model before the fuse, the pruned one after it.
func (p *AutoStepper) StateArch() *config.Arch {
	if p.fused != nil {
		return p.fused.st.Arch()
	}
	a := cloneArch(p.full)
	return &a
}

// Restore implements Stepper. A state with L0 parameters is a masked one
// (before the fuse); a state without is a pruned student's, whose
// per-layer dimensions are read from its shapes (the head widths are the
// full model's).
func (p *AutoStepper) Restore(st *State) error {
	if st == nil {
		return fmt.Errorf("train: restore: invalid state")
	}
	masked := false
	for name := range st.Weights {
		if slices.Contains(strings.Split(name, "."), "l0_module") {
			masked = true
			break
		}
	}
	if masked {
		if p.auto == nil {
			towers := make(map[string]*tensor.Tensor)
			l0 := make(map[string]*tensor.Tensor)
			for n, t := range st.Weights {
				if strings.Contains(n, ".l0_module.") {
					l0[n] = t
				} else {
					towers[n] = t
				}
			}
			a, err := NewAutoStudent(p.full, towers, l0)
			if err != nil {
				return fmt.Errorf("train: restore: %w", err)
			}
			s, err := NewAutoStep(a, p.teacher, p.batch, p.hyper, p.cfg, p.noise)
			if err != nil {
				return fmt.Errorf("train: restore: %w", err)
			}
			if err := s.Restore(st); err != nil {
				return err
			}
			p.auto, p.fused = s, nil
			return nil
		}
		if err := p.auto.Restore(st); err != nil {
			return err
		}
		p.fused = nil
		return nil
	}
	shapes := make(map[string][]int, len(st.Weights))
	for n, t := range st.Weights {
		if t == nil {
			return fmt.Errorf("train: restore: %s: nil tensor", n)
		}
		shapes[n] = t.Shape
	}
	arch, err := PrunedArch(p.full, shapes)
	if err != nil {
		return fmt.Errorf("train: restore: %w", err)
	}
	if p.fused != nil && slices.Equal(p.fused.st.arch.Vision.Transformer.Blocks, arch.Vision.Transformer.Blocks) &&
		slices.Equal(p.fused.st.arch.Text.Transformer.Blocks, arch.Text.Transformer.Blocks) &&
		p.fused.st.arch.Vision.Transformer.Width == arch.Vision.Transformer.Width &&
		p.fused.st.arch.Text.Transformer.Width == arch.Text.Transformer.Width {
		return p.fused.Restore(st)
	}
	stu, err := NewStudent(arch, st.Weights)
	if err != nil {
		return fmt.Errorf("train: restore: %w", err)
	}
	s, err := NewStep(stu, p.teacher, p.batch, p.hyper)
	if err != nil {
		return fmt.Errorf("train: restore: %w", err)
	}
	if err := s.Restore(st); err != nil {
		return err
	}
	p.fused, p.auto = s, nil
	return nil
}

// Model implements Stepper: the pruned student — after the fuse the one
// being trained, before it what the fuse would make of the current
// log-alphas (AutoStudent.Prune), which is the inference model the masked
// one stands for.
func (p *AutoStepper) Model() (*config.Arch, map[string]*tensor.Tensor, error) {
	if p.fused != nil {
		w, err := p.fused.st.Weights()
		if err != nil {
			return nil, nil, err
		}
		return p.fused.st.Arch(), w, nil
	}
	return p.auto.a.Prune()
}

// PrunedArch returns the architecture of a pruned student of the full
// architecture full from its tensor shapes (open_clip names): the towers'
// widths from visual.ln_pre.weight and ln_final.weight, each layer's heads
// from its attn.in_proj_weight rows (none without one) with the full
// model's head widths, its MLP width from mlp.c_fc.weight (no MLP without
// one). The shapes are checked against the result.
func PrunedArch(full *config.Arch, shapes map[string][]int) (*config.Arch, error) {
	if full == nil {
		return nil, fmt.Errorf("train: pruned architecture: nil architecture")
	}
	a := cloneArch(full)
	if a.Vision.Kind != config.KindViT {
		return nil, fmt.Errorf("train: pruned architecture: a %s image tower cannot be pruned", a.Vision.Kind)
	}
	for _, tc := range []struct {
		tr          *config.Transformer
		width, pref string
	}{{&a.Vision.Transformer, "visual.ln_pre.weight", "visual.transformer.resblocks."}, {&a.Text.Transformer, "ln_final.weight", "transformer.resblocks."}} {
		s, ok := shapes[tc.width]
		if !ok || len(s) != 1 {
			return nil, fmt.Errorf("train: pruned architecture: %s missing or not a vector", tc.width)
		}
		tc.tr.Width = s[0]
		for l := range tc.tr.Blocks {
			p := tc.pref + strconv.Itoa(l) + "."
			b := config.Block{}
			if s, ok := shapes[p+"attn.in_proj_weight"]; ok && len(s) == 2 && tc.tr.HeadDim > 0 {
				if s[0]%(3*tc.tr.HeadDim) != 0 {
					return nil, fmt.Errorf("train: pruned architecture: %sattn.in_proj_weight has %d rows, not 3 × heads × %d", p, s[0], tc.tr.HeadDim)
				}
				b.Heads = s[0] / (3 * tc.tr.HeadDim)
			}
			if s, ok := shapes[p+"mlp.c_fc.weight"]; ok && len(s) == 2 {
				b.MLP, b.HasMLP = s[0], true
			}
			tc.tr.Blocks[l] = b
		}
	}
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("train: pruned architecture: %w", err)
	}
	if err := config.Check(&a, shapes); err != nil {
		return nil, fmt.Errorf("train: pruned architecture: %w", err)
	}
	return &a, nil
}

// AutoStart returns the initial tower weights and L0 parameters of one
// stage of the staged auto-inheritance recipe (spec §6.2) for a masked
// student of the teacher's architecture arch: the first stage (previous
// nil) copies the teacher — Inherit with equal shapes, so logit_scale gets
// InitialLogitScale — with InitialL0; a later stage embeds the previous
// stage's pruned student (its final model's tensors under open_clip names)
// with ReloadPruned, as the official --resume … --load-last-stage does.
func AutoStart(arch *config.Arch, teacher, previous map[string]*tensor.Tensor) (weights, l0 map[string]*tensor.Tensor, err error) {
	if previous != nil {
		return ReloadPruned(arch, previous)
	}
	if weights, err = Inherit(teacher, arch, arch); err != nil {
		return nil, nil, err
	}
	if l0, err = InitialL0(arch); err != nil {
		return nil, nil, err
	}
	return weights, l0, nil
}
