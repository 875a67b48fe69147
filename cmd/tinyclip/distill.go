package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/tinyclip-go/tinyclip/internal/train"
)

func init() {
	register(command{"distill", "distil a TinyCLIP student from a teacher (affinity mimicking, weight inheritance)", runDistill, 75})
}

// distillFlags holds the flags of tinyclip distill; each overrides the
// recipe key of the same meaning when given.
type distillFlags struct {
	config, teacher, teacherConfig, student, inherit, inheritFrom *string
	data, templates                                               stringList
	classes                                                       *string
	batch, accum, steps, warmup, workers                          *int
	epochs, lr, wd, clip, alpha, weight, scale, beta1, beta2, eps *float64
	startSparsity, targetSparsity, l0LR, lambdaLR                 *float64
	sparsityWarmup, pruneStep                                     *int
	seed                                                          *uint64
	ckptEvery, keep, evalEvery, maxNonFinite                      *int
	evalData, evalClasses, evalTemplates, evalCaptions, out       *string
	resume, allowKernel, allowSlow, printRecipe, jsonOut          *bool
	backend, precision                                            *string // see addBackendFlags
	allowDownload                                                 *bool
	devices                                                       *int
}

func addDistillFlags(fs *flag.FlagSet) *distillFlags {
	d := &distillFlags{
		config:        fs.String("config", "", "recipe file (YAML; see docs/distillation.md); flags override its keys"),
		teacher:       fs.String("teacher", "", "teacher model: weight file, model directory, zoo name or Hugging Face id (recipe: teacher)"),
		teacherConfig: fs.String("teacher-config", "", "config.json of a teacher file without one (teacher_config)"),
		student:       fs.String("student", "", "student: zoo name, config.json, or a model to continue training (student)"),
		inherit:       fs.String("inherit", "", "initialisation: manual (weight inheritance, default with a teacher), none, or auto (learnable L0 masks on the teacher's copy, pruned at --prune-step) (inherit)"),
		inheritFrom:   fs.String("inherit-from", "", "model to inherit from instead of the teacher (inherit_from)"),
		classes:       fs.String("classes", "", "class names of label-only training data: file or built-in list (classes)"),
		batch:         fs.Int("batch", 0, "batch size (batch; default 32)"),
		accum:         fs.Int("accum", 0, "micro-batches per step, gradient accumulation; not the same as a bigger batch for these losses (accum)"),
		steps:         fs.Int("steps", 0, "training steps; 0 writes the initial (inherited) student (steps)"),
		epochs:        fs.Float64("epochs", 0, "training length in epochs when --steps is not given (epochs)"),
		lr:            fs.Float64("lr", 0, "base learning rate (lr; default 1e-4)"),
		warmup:        fs.Int("warmup", 0, "linear warm-up steps before the cosine decay (warmup; default a tenth of the steps, at most 2000)"),
		wd:            fs.Float64("weight-decay", 0, "AdamW weight decay of the decayed group (weight_decay; default 0.2)"),
		clip:          fs.Float64("clip-norm", 0, "global gradient-norm clipping, 0 = none (clip_norm; default 5)"),
		alpha:         fs.Float64("alpha", 0, "distillation alpha: alpha·affinity + (1-alpha)·CLIP loss (alpha; default 1)"),
		weight:        fs.Float64("distill-weight", 0, "distillation weight w (distill_weight; default 1)"),
		scale:         fs.Float64("logit-scale", 0, "fixed logit scale of teacher and student, 0 = learnable (logit_scale; default 50)"),
		beta1:         fs.Float64("beta1", 0, "AdamW beta1 (beta1; default by architecture)"),
		beta2:         fs.Float64("beta2", 0, "AdamW beta2 (beta2; default 0.98 ViT, 0.999 ResNet)"),
		eps:           fs.Float64("eps", 0, "AdamW epsilon (eps; default 1e-6 ViT, 1e-8 ResNet)"),
		seed:          fs.Uint64("seed", 0, "seed of the data order, crops and initialisation (seed)"),
		workers:       fs.Int("workers", 0, "decoding goroutines (workers; default GOMAXPROCS)"),
		ckptEvery:     fs.Int("checkpoint-every", 0, "checkpoint every N steps, 0 = only at the end (checkpoint_every; default 1000)"),
		keep:          fs.Int("keep", 0, "checkpoints kept (keep_checkpoints; default 2)"),
		evalEvery:     fs.Int("eval-every", 0, "evaluate every N steps, 0 = only at the end (eval_every)"),
		maxNonFinite:  fs.Int("max-non-finite", 0, "consecutive non-finite steps skipped before stopping (max_non_finite; default 0)"),
		evalData:      fs.String("eval-data", "", "held-out labelled images for zero-shot accuracy: ImageFolder, CSV, tar or synthetic[:N[:SEED]] (eval_data)"),
		evalClasses:   fs.String("eval-classes", "", "class names for --eval-data: file or built-in list (eval_classes)"),
		evalTemplates: fs.String("eval-templates", "", "prompt templates for --eval-data: file or built-in list (eval_templates)"),
		evalCaptions:  fs.String("eval-captions", "", "held-out captioned images for retrieval recall: caption CSV, webdataset tar or synthetic (eval_captions)"),
		out:           fs.String("out", "", "output directory (out)"),
		resume:        fs.Bool("resume", false, "continue from the newest checkpoint in --out"),
		allowKernel:   fs.Bool("allow-kernel-change", false, "resume a checkpoint written on another CPU kernel path (not bit-identical; warns)"),
		allowSlow:     fs.Bool("allow-slow", false, "run although the binary was built without GOEXPERIMENT=simd (GoMLX's scalar kernels, ~18x slower)"),
		printRecipe:   fs.Bool("print", false, "print the resolved recipe (YAML) and exit"),
		jsonOut:       fs.Bool("json", false, "print the results as JSON"),

		startSparsity:  fs.Float64("start-sparsity", 0, "auto: target sparsity at step 0 (start_sparsity; default 0)"),
		targetSparsity: fs.Float64("target-sparsity", 0, "auto: target sparsity of the prunable parameters reached after the sparsity warm-up (target_sparsity)"),
		sparsityWarmup: fs.Int("sparsity-warmup", 0, "auto: steps over which the target ramps from start to target sparsity (sparsity_warmup; default 1000)"),
		pruneStep:      fs.Int("prune-step", 0, "auto: step at which the gates are fused and the student pruned; also the lr warm-up (prune_step; required)"),
		l0LR:           fs.Float64("l0-lr", 0, "auto: learning rate of the log-alphas (l0_lr; default 0.02)"),
		lambdaLR:       fs.Float64("lambda-lr", 0, "auto: learning rate of the Lagrange multipliers, negative to ascend (lambda_lr; default -0.02)"),
	}
	d.backend, d.precision, d.allowDownload, d.devices = addBackendFlags(fs)
	fs.Var(&d.data, "data", "training data, repeatable: synthetic[:N[:SEED]], ImageFolder, caption CSV, webdataset tars (shard-{000..099}.tar, globs) (data)")
	fs.Var(&d.templates, "template", "caption template for label-only data, repeatable, {} = class name (templates)")
	return d
}

// override returns the function that applies the flags given on the
// command line to a recipe.
func (d *distillFlags) override(set map[string]bool) func(*train.Recipe) {
	return func(r *train.Recipe) {
		str := map[string]struct {
			dst *string
			v   *string
		}{
			"teacher": {&r.Teacher, d.teacher}, "teacher-config": {&r.TeacherConfig, d.teacherConfig},
			"student": {&r.Student, d.student}, "inherit": {&r.Inherit, d.inherit}, "inherit-from": {&r.InheritFrom, d.inheritFrom},
			"classes": {&r.Classes, d.classes}, "eval-data": {&r.EvalData, d.evalData}, "eval-classes": {&r.EvalClasses, d.evalClasses},
			"eval-templates": {&r.EvalTemplates, d.evalTemplates}, "eval-captions": {&r.EvalCaptions, d.evalCaptions}, "out": {&r.Out, d.out},
		}
		ints := map[string]struct {
			dst *int
			v   *int
		}{
			"batch": {&r.Batch, d.batch}, "accum": {&r.Accum, d.accum}, "steps": {&r.Steps, d.steps}, "warmup": {&r.Warmup, d.warmup},
			"workers": {&r.Workers, d.workers}, "checkpoint-every": {&r.CheckpointEvery, d.ckptEvery}, "keep": {&r.KeepCheckpoints, d.keep},
			"eval-every": {&r.EvalEvery, d.evalEvery}, "max-non-finite": {&r.MaxNonFinite, d.maxNonFinite},
			"sparsity-warmup": {&r.SparsityWarmup, d.sparsityWarmup}, "prune-step": {&r.PruneStep, d.pruneStep},
		}
		floats := map[string]struct {
			dst *float64
			v   *float64
		}{
			"epochs": {&r.Epochs, d.epochs}, "lr": {&r.LR, d.lr}, "weight-decay": {&r.WeightDecay, d.wd}, "clip-norm": {&r.ClipNorm, d.clip},
			"alpha": {&r.Alpha, d.alpha}, "distill-weight": {&r.DistillWeight, d.weight}, "logit-scale": {&r.LogitScale, d.scale},
			"beta1": {&r.Beta1, d.beta1}, "beta2": {&r.Beta2, d.beta2}, "eps": {&r.Eps, d.eps},
			"start-sparsity": {&r.StartSparsity, d.startSparsity}, "target-sparsity": {&r.TargetSparsity, d.targetSparsity},
			"l0-lr": {&r.L0LR, d.l0LR}, "lambda-lr": {&r.LambdaLR, d.lambdaLR},
		}
		for name := range set {
			if f, ok := str[name]; ok {
				*f.dst = *f.v
			} else if f, ok := ints[name]; ok {
				*f.dst = *f.v
			} else if f, ok := floats[name]; ok {
				*f.dst = *f.v
			}
		}
		if set["seed"] {
			r.Seed = *d.seed
		}
		if set["data"] {
			r.Data = train.StringList(expandData(d.data))
		}
		if set["template"] {
			r.Templates = train.StringList(d.templates)
		}
		if set["epochs"] && !set["steps"] {
			r.Steps = train.Unset
		}
	}
}

func runDistill(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "distill", "[--config RECIPE.yaml] [flags]")
	d := addDistillFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	prec, err := checkBackendFlags(*d.backend, *d.precision)
	if err != nil {
		return err
	}
	if err := train.CheckBackend(*d.backend); err != nil && !*d.printRecipe {
		return err // fail fast, before loading anything
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	rc := train.DefaultRecipe()
	if *d.config != "" {
		f, err := os.Open(*d.config)
		if err != nil {
			return err
		}
		r, err := train.ParseRecipe(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", *d.config, err)
		}
		rc = *r
	}
	override := d.override(set)
	if *d.printRecipe {
		runs, err := rc.Expand(override)
		if err != nil {
			return err
		}
		for i, r := range runs {
			if i > 0 {
				fmt.Fprintln(e.stdout, "---")
			}
			b, err := r.Marshal()
			if err != nil {
				return err
			}
			e.stdout.Write(b)
		}
		return nil
	}
	if !train.SIMD && !*d.allowSlow && isGoBackendFlag(*d.backend) {
		return errors.New("this binary was built without GOEXPERIMENT=simd, so GoMLX would train with its scalar kernels (about 18x slower): " +
			"rebuild with 'GOEXPERIMENT=simd go build ./cmd/tinyclip', or pass --allow-slow")
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	results, err := train.Distill(ctx, &rc, train.DistillOptions{
		Resume:            *d.resume,
		AllowKernelChange: *d.allowKernel,
		Resolve: func(ctx context.Context, name string) (string, error) {
			if _, err := os.Stat(name); err == nil {
				return name, nil
			}
			return resolveModelCtx(ctx, e.stderr, name)
		},
		Progress:      e.stderr,
		Logger:        logger,
		Override:      override,
		Backend:       *d.backend,
		AllowDownload: *d.allowDownload,
		Devices:       *d.devices,
		Precision:     prec,
	})
	if err != nil {
		return err
	}
	if *d.jsonOut {
		type out struct {
			Steps          int                `json:"steps"`
			Resumed        int                `json:"resumed_from"`
			Final          string             `json:"final,omitempty"`
			FinalHF        string             `json:"final_hf,omitempty"`
			Loss           float64            `json:"last_loss,omitempty"`
			SkippedSamples int                `json:"skipped_samples"`
			Eval           map[string]float64 `json:"eval,omitempty"`
		}
		list := make([]out, len(results))
		for i, r := range results {
			list[i] = out{r.Steps, r.Resumed, r.Final, r.FinalHF, r.Last.Loss, r.SkippedSamples, r.Eval}
		}
		return e.printJSON(list)
	}
	for _, r := range results {
		fmt.Fprintf(e.stdout, "steps: %d", r.Steps)
		if r.Resumed > 0 {
			fmt.Fprintf(e.stdout, " (resumed at %d)", r.Resumed)
		}
		fmt.Fprintln(e.stdout)
		if r.Final != "" {
			fmt.Fprintf(e.stdout, "final: %s\n", r.Final)
		}
		if r.FinalHF != "" {
			fmt.Fprintf(e.stdout, "final-hf: %s\n", r.FinalHF)
		}
		if r.SkippedSamples > 0 {
			fmt.Fprintf(e.stdout, "skipped samples: %d\n", r.SkippedSamples)
		}
		keys := sortedKeys(r.Eval)
		for _, k := range keys {
			fmt.Fprintf(e.stdout, "%s: %.4f\n", k, r.Eval[k])
		}
	}
	return nil
}
