package train

import (
	"fmt"
	"math"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// Hyper are the hyper-parameters of a training step (spec §5, §7). The
// learning rate is not among them: it is passed to every Step.Run.
type Hyper struct {
	// Alpha and Weight are the official --distillation-alpha and
	// --distillation-weight: the loss is Alpha·Weight·(soft affinity loss)
	// plus (1−Alpha)·Weight·(CLIP loss). The recipe: 1 and 1. Without a
	// teacher the loss is the plain CLIP loss and both are ignored.
	Alpha, Weight float64
	// WeightDecay is AdamW's decay of the decayed group (recipe 0.2).
	WeightDecay float64
	// Beta1, Beta2 and Eps are AdamW's; DefaultHyper picks them by
	// architecture.
	Beta1, Beta2, Eps float64
	// ClipNorm is the global gradient-norm limit (recipe 5); 0 disables
	// clipping.
	ClipNorm float64
	// LogitScale is the official --logit-scale (recipe 50): the teacher's
	// temperature multiplier, and the value the student's logit_scale is
	// reset to (as float32(ln LogitScale)) after every step. 0 means the
	// official behaviour without the flag: the teacher uses its own stored
	// scale and the student's parameter is clamped to [0, ln 100].
	LogitScale float64
	// Precision is the arithmetic of the step's matrix products (FP32,
	// the zero value, or BF16; see Precision). Only Step and
	// DataParallelStep take BF16.
	Precision Precision `json:",omitempty"`
}

// DefaultHyper returns the released recipe's hyper-parameters for a student
// of architecture a: pure affinity mimicking (α = w = 1), weight decay 0.2,
// clipping at 5, both scales fixed at 50, and AdamW betas/eps by tower kind
// as the official code chooses them by model name — (0.9, 0.98), 1e-6 for
// ViT students, (0.9, 0.999), 1e-8 for ResNet students.
func DefaultHyper(a *config.Arch) Hyper {
	h := Hyper{Alpha: 1, Weight: 1, WeightDecay: 0.2, Beta1: 0.9, Beta2: 0.98, Eps: 1e-6, ClipNorm: 5, LogitScale: 50}
	if a != nil && a.Vision.Kind == config.KindResNet {
		h.Beta2, h.Eps = 0.999, 1e-8
	}
	return h
}

// validate reports hyper-parameters outside their domain.
func (h *Hyper) validate() error {
	bad := func(name string, v float64) error {
		return fmt.Errorf("train: hyper-parameter %s = %v out of range", name, v)
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !(h.Alpha >= 0 && h.Alpha <= 1):
		return bad("alpha", h.Alpha)
	case !(h.Weight >= 0) || !finite(h.Weight):
		return bad("weight", h.Weight)
	case !(h.WeightDecay >= 0) || !finite(h.WeightDecay):
		return bad("weight decay", h.WeightDecay)
	case !(h.Beta1 >= 0 && h.Beta1 < 1):
		return bad("beta1", h.Beta1)
	case !(h.Beta2 >= 0 && h.Beta2 < 1):
		return bad("beta2", h.Beta2)
	case !(h.Eps > 0) || !finite(h.Eps):
		return bad("eps", h.Eps)
	case !(h.ClipNorm >= 0) || !finite(h.ClipNorm):
		return bad("clip norm", h.ClipNorm)
	case !(h.LogitScale >= 0) || !finite(h.LogitScale):
		return bad("logit scale", h.LogitScale)
	case !h.Precision.valid():
		return fmt.Errorf("train: precision %q: want fp32 or bf16", string(h.Precision))
	}
	return nil
}

// CosineLR is the official cosine_lr schedule: linear warm-up
// base·(step+1)/warmup for step < warmup, then
// ½(1 + cos(π·(step−warmup)/(total−warmup)))·base; step counts from 0.
func CosineLR(base float64, warmup, total, step int) float64 {
	if step < warmup {
		return base * float64(step+1) / float64(warmup)
	}
	e, es := step-warmup, total-warmup
	if es <= 0 {
		return base
	}
	return 0.5 * (1 + math.Cos(math.Pi*float64(e)/float64(es))) * base
}

// Decayed reports whether the official parameter groups give the tensor
// weight decay: not for tensors with fewer than two dimensions, nor for
// names containing "bn", "ln", "bias" or "logit_scale".
func Decayed(name string, ndim int) bool {
	if ndim < 2 {
		return false
	}
	for _, s := range []string{"bn", "ln", "bias", "logit_scale"} {
		if strings.Contains(name, s) {
			return false
		}
	}
	return true
}
