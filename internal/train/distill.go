package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/data"
	"github.com/tinyclip-go/tinyclip/internal/eval"
	"github.com/tinyclip-go/tinyclip/internal/imageproc"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
	"github.com/tinyclip-go/tinyclip/internal/tokenizer"
)

// DistillOptions configures Distill.
type DistillOptions struct {
	// Resume continues the newest checkpoint of each run (stages already
	// finished are skipped).
	Resume bool
	// AllowKernelChange resumes checkpoints written on another kernel path
	// with a warning (see RunOptions).
	AllowKernelChange bool
	// Resolve turns Teacher and InheritFrom values into local paths (the
	// CLI resolves zoo names and Hugging Face ids); nil uses them as they
	// are.
	Resolve func(ctx context.Context, name string) (string, error)
	// Progress receives progress bars (when a terminal), Logger events.
	Progress io.Writer
	Logger   *slog.Logger
	// Hook is called after every step (see RunOptions).
	Hook func(LogRecord)
	// Override, if set, is applied to every run after the recipe's own
	// keys (and a stage's), as command-line flags are.
	Override func(*Recipe)
	// Backend selects the GoMLX backend (ParseBackend; "" the default):
	// on XLA the teacher runs as a GraphTeacher on the same device.
	// AllowDownload lets a missing PJRT plugin be downloaded.
	Backend       string
	AllowDownload bool
	// Devices > 0 splits every batch over that many devices of the
	// backend (DataParallelStep); Precision is the steps' arithmetic.
	Devices   int
	Precision Precision
}

// RunFile is the resolved recipe Distill writes into each run's output
// directory.
const RunFile = "recipe.yaml"

// syntheticTemplates are the prompts of zero-shot evaluation on synthetic
// data, in the phrasing of its captions.
var syntheticTemplates = []string{"a photo of a {}.", "a {}."}

// Distill runs a recipe: each stage (or the recipe itself) loads its
// teacher, builds the student by inheritance or initialisation, opens the
// data and evaluation sets and trains with Run, writing into its output
// directory. It returns one Result per run.
func Distill(ctx context.Context, rc *Recipe, o DistillOptions) ([]*Result, error) {
	runs, err := rc.Expand(o.Override)
	if err != nil {
		return nil, err
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.Default()
	}
	var results []*Result
	prev := ""
	for i := range runs {
		r := runs[i]
		if len(runs) > 1 {
			r.Out = filepath.Join(r.Out, r.Name)
			if i > 0 && r.InheritFrom == "" && r.Inherit != InheritNone && !isModelPath(r.Student) {
				if r.Inherit != InheritAuto {
					r.Inherit = InheritManual
				}
				r.InheritFrom = prev
			}
			lg.Info("stage", "name", r.Name, "out", r.Out)
		}
		res, err := distillOne(ctx, &r, o, lg)
		if err != nil {
			if len(runs) > 1 {
				return results, fmt.Errorf("stage %s: %w", r.Name, err)
			}
			return results, err
		}
		results = append(results, res)
		prev = res.Final
		if prev == "" {
			prev = filepath.Join(r.Out, FinalDir)
		}
	}
	return results, nil
}

// isModelPath reports whether a Student value names weights rather than a
// registry name or a config.json.
func isModelPath(s string) bool {
	if strings.HasSuffix(strings.ToLower(s), ".json") {
		return false
	}
	_, err := os.Stat(s)
	return err == nil
}

// runIdentity is what a checkpoint must agree with to be resumed: every
// input that changes the arithmetic of the run.
type runIdentity struct {
	Student       *config.Config `json:"student"`
	StudentInit   string         `json:"student_init"`
	Teacher       string         `json:"teacher,omitempty"`
	TeacherArch   *config.Config `json:"teacher_arch,omitempty"`
	Inherit       string         `json:"inherit"`
	InheritFrom   string         `json:"inherit_from,omitempty"`
	Data          []string       `json:"data"`
	Samples       int            `json:"samples"`
	Templates     []string       `json:"templates,omitempty"`
	Classes       []string       `json:"classes,omitempty"`
	Batch         int            `json:"batch"`
	Accum         int            `json:"accum"`
	Steps         int            `json:"steps"`
	LR            float64        `json:"lr"`
	Warmup        int            `json:"warmup"`
	Hyper         Hyper          `json:"hyper"`
	L0            *L0Config      `json:"l0,omitempty"`
	Seed          uint64         `json:"seed"`
	ContextLength int            `json:"context_length"`
}

// fileIdentity names a model file by path and size.
func fileIdentity(path string) string {
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		return fmt.Sprintf("%s (%d bytes)", path, st.Size())
	}
	return path
}

// loadedModel is a checkpoint opened with its architecture.
type loadedModel struct {
	arch *config.Arch
	ck   *checkpoint.Checkpoint
}

// openModel opens weights and resolves their architecture (from cfgPath
// when given, else the checkpoint's own config and the shapes).
func openModel(path, cfgPath string) (*loadedModel, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	cfg := ck.Config
	if cfgPath != "" {
		b, err := os.ReadFile(cfgPath)
		if err != nil {
			ck.Close()
			return nil, fmt.Errorf("train: %w", err)
		}
		if cfg, err = checkpoint.ParseConfig(b); err != nil {
			ck.Close()
			return nil, fmt.Errorf("train: %s: %w", cfgPath, err)
		}
	}
	shapes := make(map[string][]int, len(ck.Tensors))
	for n, t := range ck.Tensors {
		shapes[n] = t.Shape
	}
	arch, err := config.Resolve(cfg, shapes)
	if err != nil {
		ck.Close()
		return nil, fmt.Errorf("train: %s: %w", path, err)
	}
	return &loadedModel{arch: arch, ck: ck}, nil
}

// studentArch resolves a Student value that is a registry name or a
// config.json.
func studentArch(s string) (*config.Arch, error) {
	if strings.HasSuffix(strings.ToLower(s), ".json") {
		b, err := os.ReadFile(s)
		if err != nil {
			return nil, fmt.Errorf("train: student: %w", err)
		}
		cfg, err := checkpoint.ParseConfig(b)
		if err != nil {
			return nil, fmt.Errorf("train: student %s: %w", s, err)
		}
		a, err := config.FromConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("train: student %s: %w", s, err)
		}
		return a, nil
	}
	info, ok := config.Lookup(s)
	if !ok {
		return nil, fmt.Errorf("train: student %q: not a registry name (see tinyclip models), a config.json or a model path", s)
	}
	if info.Config == nil {
		return nil, fmt.Errorf("train: student %q: the registry has no config for it (auto-inherited models): give a config.json", s)
	}
	a, err := config.FromConfig(info.Config)
	if err != nil {
		return nil, fmt.Errorf("train: student %q: %w", s, err)
	}
	return a, nil
}

// distillOne runs one recipe without stages.
func distillOne(ctx context.Context, r *Recipe, o DistillOptions, lg *slog.Logger) (*Result, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	resolve := func(name string) (string, error) {
		if o.Resolve == nil || name == "" {
			return name, nil
		}
		return o.Resolve(ctx, name)
	}
	tok, err := tokenizer.Default()
	if err != nil {
		return nil, err
	}
	id := runIdentity{Inherit: r.Inherit, Seed: r.Seed, Batch: r.Batch, Accum: r.Accum, LR: r.LR}
	backend, backendName, err := o.runBackend(r, lg)
	if err != nil {
		return nil, err
	}

	// Teacher.
	var teacher Teacher
	kernel := ""
	var teacherModel *loadedModel
	if r.Teacher != "" {
		p, err := resolve(r.Teacher)
		if err != nil {
			return nil, err
		}
		if teacherModel, err = openModel(p, r.TeacherConfig); err != nil {
			return nil, fmt.Errorf("train: teacher: %w", err)
		}
		defer teacherModel.ck.Close()
		if teacher, kernel, err = runTeacher(backend, teacherModel.arch, teacherModel.ck.Tensors, o.Precision); err != nil {
			return nil, fmt.Errorf("train: teacher %s: %w", p, err)
		}
		id.Teacher, id.TeacherArch = fileIdentity(p), teacherModel.arch.Config()
	}

	// Student architecture and initial weights (and L0 parameters).
	var arch *config.Arch
	var weights, l0 map[string]*tensor.Tensor
	if r.Inherit == InheritAuto {
		if teacherModel == nil {
			return nil, fmt.Errorf("train: inherit auto needs a teacher")
		}
		if arch, weights, l0, err = autoInit(r, teacherModel, resolve, &id); err != nil {
			return nil, err
		}
	} else if isModelPath(r.Student) {
		if r.Inherit == InheritManual {
			return nil, fmt.Errorf("train: student %s is a model: its weights are the start (inherit none), not inherited", r.Student)
		}
		sm, err := openModel(r.Student, "")
		if err != nil {
			return nil, fmt.Errorf("train: student: %w", err)
		}
		arch, weights = sm.arch, copyTensors(sm.ck.Tensors)
		sm.ck.Close()
		id.StudentInit, id.Inherit = "weights "+fileIdentity(r.Student), InheritNone
	} else {
		if arch, err = studentArch(r.Student); err != nil {
			return nil, err
		}
		mode := r.Inherit
		if mode == "" {
			mode = InheritNone
			if teacher != nil {
				mode = InheritManual
			}
		}
		id.Inherit = mode
		switch mode {
		case InheritManual:
			src := teacherModel
			if r.InheritFrom != "" {
				p, err := resolve(r.InheritFrom)
				if err != nil {
					return nil, err
				}
				if src, err = openModel(p, ""); err != nil {
					return nil, fmt.Errorf("train: inherit_from: %w", err)
				}
				defer src.ck.Close()
				id.InheritFrom = fileIdentity(p)
			}
			if weights, err = Inherit(src.ck.Tensors, src.arch, arch); err != nil {
				return nil, err
			}
			id.StudentInit = "manual inheritance"
		default:
			if weights, err = Init(arch, r.Seed); err != nil {
				return nil, err
			}
			id.StudentInit = fmt.Sprintf("init seed %d", r.Seed)
		}
	}
	id.Student = arch.Config()
	size := arch.Vision.ImageSize
	if teacher != nil && teacher.ImageSize() != size {
		return nil, fmt.Errorf("train: teacher images are %d px, the student's %d px", teacher.ImageSize(), size)
	}

	// Hyper-parameters and the step.
	h := DefaultHyper(arch)
	h.Alpha, h.Weight, h.WeightDecay, h.ClipNorm, h.LogitScale = r.Alpha, r.DistillWeight, r.WeightDecay, r.ClipNorm, r.LogitScale
	if r.Beta1 > 0 {
		h.Beta1 = r.Beta1
	}
	if r.Beta2 > 0 {
		h.Beta2 = r.Beta2
	}
	if r.Eps > 0 {
		h.Eps = r.Eps
	}
	h.Precision = o.Precision
	id.Hyper = h
	var teach Teacher
	if teacher != nil {
		teach = teacher
	}
	var step Stepper
	if l0 != nil {
		a, err := NewAutoStudent(arch, weights, l0)
		if err != nil {
			return nil, err
		}
		cfg := r.l0Config()
		id.L0 = &cfg
		if step, err = NewAutoStepper(a, teach, r.Batch, h, cfg, SeededNoise{Seed: r.Seed}); err != nil {
			return nil, err
		}
	} else {
		student, err := NewStudentOn(backend, arch, weights)
		if err != nil {
			return nil, err
		}
		if r.Accum > 1 {
			step, err = NewAccumStep(student, teach, r.Batch, r.Accum, h)
		} else {
			step, err = plainStep(student, teach, r.Batch, o.Devices, h)
		}
		if err != nil {
			return nil, err
		}
	}

	// Training data.
	ctxLen := arch.Text.ContextLength
	tokenize := func(s string) ([]int, error) { return tok.TokenizeN(s, ctxLen) }
	steps := r.Steps
	var ds data.Dataset
	if len(r.Data) > 0 {
		if ds, err = data.OpenTraining(r.Data, r.Seed, size, data.Options{}); err != nil {
			return nil, err
		}
		defer ds.Close()
		id.Data, id.Samples = r.Data, ds.Len()
		if steps == Unset {
			steps = int(r.Epochs * float64(ds.Len()/r.Batch))
		}
	} else {
		steps = 0
	}
	var classes []string
	if r.Classes != "" {
		if classes, err = eval.LoadClasses(r.Classes); err != nil {
			return nil, err
		}
	}
	id.Templates, id.Classes, id.Steps, id.ContextLength = r.Templates, classes, steps, ctxLen
	warmup := r.Warmup
	switch {
	case r.Inherit == InheritAuto:
		warmup = r.PruneStep // the official loop's warm-up when pruning
	case warmup == Unset:
		warmup = min(2000, steps/10)
	}
	id.Warmup = warmup
	tr := imageproc.DefaultOptions()
	tr.Size = size
	open := func(ctx context.Context, start data.Cursor) (Batches, error) {
		if ds == nil {
			return nil, errors.New("train: no training data")
		}
		return data.NewStream(ctx, ds, data.StreamOptions{
			BatchSize: r.Batch, Seed: r.Seed, Transform: tr, Tokenize: tokenize,
			Templates: r.Templates, Classes: classes, Workers: r.Workers, Start: start,
		})
	}

	// Evaluation.
	evals, closeEvals, err := r.evaluators(size, tokenize)
	if err != nil {
		return nil, err
	}
	defer closeEvals()

	if err := os.MkdirAll(r.Out, 0o755); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	resolved := *r
	resolved.Steps, resolved.Warmup = steps, warmup
	if y, err := resolved.Marshal(); err == nil {
		if err := writeFileAtomic(filepath.Join(r.Out, RunFile), y); err != nil {
			return nil, err
		}
	}
	n := 0
	if ds != nil {
		n = ds.Len()
	}
	base := r.LR
	lg.Info("distill", "student", r.Student, "teacher", r.Teacher, "inherit", id.Inherit, "steps", steps,
		"batch", r.Batch, "accum", r.Accum, "lr", base, "warmup", warmup, "samples", n, "out", r.Out)
	if id.L0 != nil {
		lg.Info("auto inheritance", "start_sparsity", id.L0.StartSparsity, "target_sparsity", id.L0.TargetSparsity,
			"sparsity_warmup", id.L0.SparsityWarmup, "prune_step", id.L0.PruneStep, "l0_lr", id.L0.LogAlphaLR, "lambda_lr", id.L0.LambdaLR)
		if id.L0.PruneStep >= steps {
			lg.Warn("prune_step is not before the last step: the run ends before the fuse; its final model is the pruning of the last gates",
				"prune_step", id.L0.PruneStep, "steps", steps)
		}
	}
	return Run(ctx, step, open, RunOptions{
		Dir:               r.Out,
		Steps:             steps,
		LR:                func(i int) float64 { return CosineLR(base, warmup, steps, i) },
		CheckpointEvery:   r.CheckpointEvery,
		Keep:              r.KeepCheckpoints,
		EvalEvery:         r.EvalEvery,
		Evals:             evals,
		Resume:            o.Resume,
		AllowKernelChange: o.AllowKernelChange,
		Identity:          id,
		Kernel:            o.kernel(kernel, backendName),
		OrderRNG: func(epoch int) []byte {
			_, st := data.EpochOrder(r.Seed, epoch, n, false)
			return st
		},
		MaxNonFinite: r.MaxNonFinite,
		Progress:     o.Progress,
		Logger:       lg,
		Hook:         o.Hook,
	})
}

// autoInit returns the start of an auto-inheritance run: the masked
// student's architecture (the teacher's), its tower weights and its L0
// parameters — the teacher's copy with fresh gates, or, with InheritFrom
// (a later stage), that pruned model embedded by ReloadPruned (AutoStart).
func autoInit(r *Recipe, teacher *loadedModel, resolve func(string) (string, error), id *runIdentity) (*config.Arch, map[string]*tensor.Tensor, map[string]*tensor.Tensor, error) {
	arch := teacher.arch
	if r.Student != "" {
		if isModelPath(r.Student) {
			return nil, nil, nil, fmt.Errorf("train: with inherit auto the student is the teacher's architecture; %s is a model: continue from a pruned model with inherit_from", r.Student)
		}
		sa, err := studentArch(r.Student)
		if err != nil {
			return nil, nil, nil, err
		}
		if !sameArch(sa, arch) {
			return nil, nil, nil, fmt.Errorf("train: with inherit auto the student must have the teacher's architecture; %s differs (leave student out)", r.Student)
		}
	}
	var prev map[string]*tensor.Tensor
	id.StudentInit = "auto: masked copy of the teacher"
	if r.InheritFrom != "" {
		p, err := resolve(r.InheritFrom)
		if err != nil {
			return nil, nil, nil, err
		}
		pm, err := openModel(p, "")
		if err != nil {
			return nil, nil, nil, fmt.Errorf("train: inherit_from: %w", err)
		}
		prev = copyTensors(pm.ck.Tensors)
		pm.ck.Close()
		id.InheritFrom = fileIdentity(p)
		id.StudentInit = "auto: pruned model embedded in the teacher's shape"
	}
	w, l0, err := AutoStart(arch, teacher.ck.Tensors, prev)
	if err != nil {
		if prev != nil {
			return nil, nil, nil, fmt.Errorf("train: inherit_from %s: %w", r.InheritFrom, err)
		}
		return nil, nil, nil, err
	}
	return arch, w, l0, nil
}

// sameArch reports whether two architectures are the same (as configs).
func sameArch(a, b *config.Arch) bool {
	ja, err1 := json.Marshal(a.Config())
	jb, err2 := json.Marshal(b.Config())
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// copyTensors copies tensors out of a file mapping.
func copyTensors(ts map[string]*tensor.Tensor) map[string]*tensor.Tensor {
	out := make(map[string]*tensor.Tensor, len(ts))
	for n, t := range ts {
		out[n] = cloneTensor(t)
	}
	return out
}

// evaluators opens the evaluation sets of a recipe.
func (r *Recipe) evaluators(size int, tokenize func(string) ([]int, error)) ([]Evaluator, func(), error) {
	var evals []Evaluator
	var open []data.Dataset
	closeAll := func() {
		for _, d := range open {
			d.Close()
		}
	}
	synthetic := func(spec string) (data.Dataset, bool, error) {
		so, ok, err := data.ParseSynthetic(spec, r.Seed+1)
		if !ok || err != nil {
			return nil, ok, err
		}
		so.Size = size
		ds, err := data.NewSynthetic(so)
		return ds, true, err
	}
	if r.EvalData != "" {
		var classes, templates []string
		var err error
		if r.EvalClasses != "" {
			if classes, err = eval.LoadClasses(r.EvalClasses); err != nil {
				closeAll()
				return nil, nil, err
			}
		}
		if r.EvalTemplates != "" {
			if templates, err = eval.LoadTemplates(r.EvalTemplates); err != nil {
				closeAll()
				return nil, nil, err
			}
		}
		ds, isSyn, err := synthetic(r.EvalData)
		if err == nil && !isSyn {
			ds, err = data.Open(r.EvalData, data.Options{Classes: classes})
		}
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("train: eval data: %w", err)
		}
		open = append(open, ds)
		if isSyn && templates == nil {
			templates = syntheticTemplates
		}
		if classes == nil && ds.Classes() == nil {
			closeAll()
			return nil, nil, fmt.Errorf("train: eval data %s has no class names: give eval_classes", r.EvalData)
		}
		evals = append(evals, &ZeroShot{Data: ds, Classes: classes, Templates: templates, Tokenize: tokenize})
	}
	if r.EvalCaptions != "" {
		ds, isSyn, err := synthetic(r.EvalCaptions)
		if err == nil && !isSyn {
			ds, err = data.Open(r.EvalCaptions, data.Options{Captions: true})
		}
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("train: eval captions: %w", err)
		}
		open = append(open, ds)
		evals = append(evals, &Retrieval{Data: ds, Tokenize: tokenize})
	}
	return evals, closeAll, nil
}
