package train

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Inheritance modes of Recipe.Inherit.
const (
	InheritManual = "manual" // spec §6.1: evenly strided layers, leading slices
	InheritNone   = "none"   // the official random initialisation (Init)
	InheritAuto   = "auto"   // spec §6.2: the teacher's copy with learnable L0 gates, pruned at prune_step
)

// Unset marks integer recipe fields that take a default computed from the
// others (Steps from Epochs, Warmup from Steps).
const Unset = -1

// Recipe describes a distillation run: the YAML file of
// "tinyclip distill --config" (keys as in the yaml tags, unknown keys are
// errors), which the command-line flags override. DefaultRecipe gives the
// defaults; Stages, when present, lists runs made one after the other.
type Recipe struct {
	// Name names a stage (its output sub-directory); unused at the top.
	Name string `yaml:"name,omitempty"`
	// Teacher is the teacher model (a weight file or model directory; the
	// command line also resolves zoo names and Hugging Face ids).
	// TeacherConfig gives its architecture when the file has no config.
	Teacher       string `yaml:"teacher,omitempty"`
	TeacherConfig string `yaml:"teacher_config,omitempty"`
	// Student is a registry name (tinyclip models), a config.json, or a
	// model (file or directory) whose weights are the starting point (then
	// Inherit must be "none"). With Inherit "auto" the student is the
	// teacher's architecture: Student may be left empty, and must name
	// that architecture if given.
	Student string `yaml:"student,omitempty"`
	// Inherit is the initialisation: "manual" (default with a teacher)
	// inherits from InheritFrom (default: the teacher), "none" (default
	// without a teacher) draws the official initialisation from Seed,
	// "auto" starts a masked copy of the teacher (or, with InheritFrom, a
	// pruned model embedded in the teacher's shape, as the official
	// --load-last-stage) and learns which units to prune (the keys below).
	Inherit     string `yaml:"inherit,omitempty"`
	InheritFrom string `yaml:"inherit_from,omitempty"`
	// Data lists the training data: "synthetic[:N[:SEED]]", or ImageFolder
	// directories, caption CSVs and webdataset tar shards (brace ranges
	// such as shard-{000..099}.tar).
	Data StringList `yaml:"data"`
	// Templates make captions for labelled samples without one ("{}" or
	// "{class}" for the class name; default "a photo of a {}."); Classes
	// names the labels of a label CSV or webdataset .cls (a file, or a
	// built-in list such as imagenet1k).
	Templates StringList `yaml:"templates,omitempty"`
	Classes   string     `yaml:"classes,omitempty"`
	// Batch is the batch size B; Accum splits it into that many
	// micro-batches with gradient accumulation (not equivalent to a batch
	// of B for these losses: see AccumStep).
	Batch int `yaml:"batch"`
	Accum int `yaml:"accum"`
	// Steps is the number of training steps; Unset derives it from Epochs
	// (epochs × ⌊samples / B⌋). 0 exports the initial student.
	Steps  int     `yaml:"steps"`
	Epochs float64 `yaml:"epochs,omitempty"`
	// LR is the base learning rate, Warmup the linear warm-up steps before
	// the cosine decay (Unset: a tenth of the steps, at most 2000).
	LR     float64 `yaml:"lr"`
	Warmup int     `yaml:"warmup"`
	// WeightDecay, ClipNorm, Alpha, DistillWeight and LogitScale are the
	// official --wd (0.2), --norm_gradient_clip (5), --distillation-alpha
	// (1), --distillation-weight (1) and --logit-scale (50; 0 = not set).
	WeightDecay   float64 `yaml:"weight_decay"`
	ClipNorm      float64 `yaml:"clip_norm"`
	Alpha         float64 `yaml:"alpha"`
	DistillWeight float64 `yaml:"distill_weight"`
	LogitScale    float64 `yaml:"logit_scale"`
	// Beta1, Beta2 and Eps override AdamW's; 0 keeps the official choice
	// by architecture ((0.9, 0.98, 1e-6) for ViT students, (0.9, 0.999,
	// 1e-8) for ResNet ones).
	Beta1 float64 `yaml:"beta1,omitempty"`
	Beta2 float64 `yaml:"beta2,omitempty"`
	Eps   float64 `yaml:"eps,omitempty"`
	// Seed draws the data order, the crops and the initialisation.
	Seed uint64 `yaml:"seed"`
	// Workers is the number of decoding goroutines (0: GOMAXPROCS).
	Workers int `yaml:"workers,omitempty"`
	// CheckpointEvery and KeepCheckpoints: a checkpoint every N steps (0:
	// only at the end), the newest K kept.
	CheckpointEvery int `yaml:"checkpoint_every"`
	KeepCheckpoints int `yaml:"keep_checkpoints"`
	// MaxNonFinite consecutive non-finite steps are skipped before the run
	// stops (0: stop at the first; the official loop allows 100).
	MaxNonFinite int `yaml:"max_non_finite,omitempty"`
	// EvalEvery evaluates every N steps (0: only at the end). EvalData is
	// a labelled image set for zero-shot accuracy (ImageFolder, path,label
	// CSV, tar, or "synthetic[:N[:SEED]]", seed default Seed+1) with
	// EvalClasses and EvalTemplates (files or built-in lists; defaults:
	// the data's classes, "a photo of a {}."); EvalCaptions is a captioned
	// set for retrieval recall (caption CSV, webdataset tar, synthetic).
	EvalEvery     int    `yaml:"eval_every"`
	EvalData      string `yaml:"eval_data,omitempty"`
	EvalClasses   string `yaml:"eval_classes,omitempty"`
	EvalTemplates string `yaml:"eval_templates,omitempty"`
	EvalCaptions  string `yaml:"eval_captions,omitempty"`
	// Auto weight inheritance (Inherit "auto", spec §6.2; the official
	// --start-sparsity, --target-sparsity, --sparsity-warmup, --prune-step,
	// the log-alpha lr and --l0lr): the Lagrangian drives the expected
	// sparsity of the prunable parameters towards a target that ramps from
	// StartSparsity to TargetSparsity over SparsityWarmup steps (default
	// 1000); at step PruneStep (required) the gates are fused and the
	// student pruned, and it trains on without masks. PruneStep is also
	// the learning-rate warm-up (as the official loop, which ignores
	// --warmup when pruning). L0LR (0.02) and LambdaLR (−0.02, negative:
	// the multipliers ascend) are the L0 optimizer's learning rates.
	StartSparsity  float64 `yaml:"start_sparsity,omitempty"`
	TargetSparsity float64 `yaml:"target_sparsity,omitempty"`
	SparsityWarmup int     `yaml:"sparsity_warmup"`
	PruneStep      int     `yaml:"prune_step"`
	L0LR           float64 `yaml:"l0_lr"`
	LambdaLR       float64 `yaml:"lambda_lr"`
	// Out is the output directory (stages write into Out/<stage name>).
	Out string `yaml:"out"`
	// Stages, if given, are runs made one after the other, each a partial
	// recipe whose keys override the ones above; a stage without Student
	// weights or InheritFrom inherits from the previous stage's final
	// model (the released 100→75→50 % recipes): by manual inheritance, or,
	// for an "auto" stage, embedded into the masked teacher-shaped student
	// (the released auto recipes 0→0.25→0.5→0.75).
	Stages []yaml.Node `yaml:"stages,omitempty"`
}

// StringList is a YAML value that may be one string or a list of strings.
type StringList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*l = StringList{s}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*l = list
	return nil
}

// DefaultRecipe returns the defaults: the released recipe's
// hyper-parameters (lr 1e-4, weight decay 0.2, clipping at 5, α = w = 1,
// logit scale 50, seed 0; for auto inheritance a sparsity warm-up of 1000
// steps and L0 learning rates 0.02 / −0.02), batch 32 (the recipe's is
// 1024 per GPU), no accumulation, a checkpoint every 1000 steps keeping 2,
// steps, warm-up and prune step unset.
func DefaultRecipe() Recipe {
	return Recipe{
		Batch: 32, Accum: 1, Steps: Unset, LR: 1e-4, Warmup: Unset,
		WeightDecay: 0.2, ClipNorm: 5, Alpha: 1, DistillWeight: 1, LogitScale: 50,
		CheckpointEvery: 1000, KeepCheckpoints: 2,
		SparsityWarmup: 1000, PruneStep: Unset, L0LR: 0.02, LambdaLR: -0.02,
	}
}

// maxRecipeBytes bounds a recipe file.
const maxRecipeBytes = 1 << 20

// ParseRecipe reads a YAML recipe over the defaults: keys it does not set
// keep DefaultRecipe's values; unknown keys, several documents and values
// of the wrong type are errors.
func ParseRecipe(r io.Reader) (*Recipe, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxRecipeBytes+1))
	if err != nil {
		return nil, fmt.Errorf("train: recipe: %w", err)
	}
	if len(b) > maxRecipeBytes {
		return nil, fmt.Errorf("train: recipe: larger than %d bytes", maxRecipeBytes)
	}
	rc := DefaultRecipe()
	if err := decodeStrict(b, &rc); err != nil {
		return nil, fmt.Errorf("train: recipe: %w", err)
	}
	for i := range rc.Stages {
		if _, err := rc.stage(i); err != nil {
			return nil, err
		}
	}
	return &rc, nil
}

// decodeStrict decodes one YAML document into v, rejecting unknown keys.
// An empty document leaves v as it is.
func decodeStrict(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("more than one YAML document")
	}
	return nil
}

// stage returns stage i: a copy of r (without stages) with the stage's
// keys applied.
func (r *Recipe) stage(i int) (Recipe, error) {
	st := *r
	st.Stages = nil
	st.Name = ""
	node := r.Stages[i]
	if node.Kind != yaml.MappingNode {
		return st, fmt.Errorf("train: recipe: stage %d is not a mapping", i+1)
	}
	b, err := yaml.Marshal(&node)
	if err != nil {
		return st, fmt.Errorf("train: recipe: stage %d: %w", i+1, err)
	}
	if err := decodeStrict(b, &st); err != nil {
		return st, fmt.Errorf("train: recipe: stage %d: %w", i+1, err)
	}
	if len(st.Stages) > 0 {
		return st, fmt.Errorf("train: recipe: stage %d has stages of its own", i+1)
	}
	if st.Name == "" {
		st.Name = fmt.Sprintf("stage-%d", i+1)
	}
	return st, nil
}

// Expand returns the runs of the recipe: itself when it has no stages,
// else its stages with apply (e.g. command-line overrides, may be nil)
// applied to each after the stage's own keys.
func (r *Recipe) Expand(apply func(*Recipe)) ([]Recipe, error) {
	if len(r.Stages) == 0 {
		st := *r
		if apply != nil {
			apply(&st)
		}
		return []Recipe{st}, nil
	}
	out := make([]Recipe, len(r.Stages))
	names := map[string]bool{}
	for i := range r.Stages {
		st, err := r.stage(i)
		if err != nil {
			return nil, err
		}
		if apply != nil {
			apply(&st)
		}
		if names[st.Name] {
			return nil, fmt.Errorf("train: recipe: two stages named %q", st.Name)
		}
		names[st.Name] = true
		out[i] = st
	}
	return out, nil
}

// stageName is what a stage name may be (it becomes a directory name).
var stageName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate reports the first invalid value of a single run (not a recipe
// with stages).
func (r *Recipe) Validate() error {
	bad := func(format string, a ...any) error { return fmt.Errorf("train: recipe: "+format, a...) }
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case len(r.Stages) > 0:
		return bad("expand the stages first")
	case r.Name != "" && !stageName.MatchString(r.Name):
		return bad("stage name %q: use letters, digits, '.', '_' and '-'", r.Name)
	case strings.TrimSpace(r.Student) == "" && r.Inherit != InheritAuto:
		return bad("no student")
	case len(r.Data) == 0 && r.Steps != 0:
		return bad("no training data")
	case r.Out == "":
		return bad("no output directory")
	case r.Inherit != "" && r.Inherit != InheritManual && r.Inherit != InheritNone && r.Inherit != InheritAuto:
		return bad("inherit %q: want %q, %q or %q", r.Inherit, InheritManual, InheritNone, InheritAuto)
	case r.Inherit == InheritManual && r.Teacher == "" && r.InheritFrom == "":
		return bad("manual inheritance needs a teacher or inherit_from")
	case r.InheritFrom != "" && r.Inherit == InheritNone:
		return bad("inherit_from with inherit none")
	case r.Batch < 2 || r.Batch > 1<<20:
		return bad("batch %d: want 2 to %d", r.Batch, 1<<20)
	case r.Accum < 1 || r.Batch%r.Accum != 0 || r.Batch/r.Accum < 2:
		return bad("accum %d: want a divisor of the batch %d leaving micro-batches of at least 2", r.Accum, r.Batch)
	case r.Steps < Unset || r.Steps > 1<<30:
		return bad("steps %d", r.Steps)
	case r.Steps == Unset && !(r.Epochs > 0):
		return bad("give steps or epochs")
	case !(r.Epochs >= 0) || r.Epochs > 1e6:
		return bad("epochs %v", r.Epochs)
	case !(r.LR > 0) || !finite(r.LR):
		return bad("lr %v: want a positive number", r.LR)
	case r.Warmup < Unset:
		return bad("warmup %d", r.Warmup)
	case r.Workers < 0 || r.CheckpointEvery < 0 || r.KeepCheckpoints < 0 || r.EvalEvery < 0 || r.MaxNonFinite < 0:
		return bad("negative workers, intervals or counts")
	case r.Beta1 < 0 || r.Beta2 < 0 || r.Eps < 0:
		return bad("negative AdamW parameter")
	}
	if err := r.validateAuto(); err != nil {
		return err
	}
	h := Hyper{Alpha: r.Alpha, Weight: r.DistillWeight, WeightDecay: r.WeightDecay, Beta1: 0.9, Beta2: 0.98, Eps: 1e-6,
		ClipNorm: r.ClipNorm, LogitScale: r.LogitScale}
	if r.Beta1 > 0 {
		h.Beta1 = r.Beta1
	}
	if r.Beta2 > 0 {
		h.Beta2 = r.Beta2
	}
	if r.Eps > 0 {
		h.Eps = r.Eps
	}
	if err := h.validate(); err != nil {
		return fmt.Errorf("train: recipe: %w", err)
	}
	return nil
}

// validateAuto checks the keys of auto weight inheritance.
func (r *Recipe) validateAuto() error {
	bad := func(format string, a ...any) error { return fmt.Errorf("train: recipe: "+format, a...) }
	if r.Inherit != InheritAuto {
		if r.TargetSparsity != 0 || r.StartSparsity != 0 || r.PruneStep != Unset {
			mode := "not set"
			if r.Inherit != "" {
				mode = r.Inherit
			}
			return bad("start_sparsity, target_sparsity and prune_step need inherit auto (inherit is %s)", mode)
		}
		return nil
	}
	switch {
	case r.Teacher == "":
		return bad("inherit auto needs a teacher (the student starts as its masked copy)")
	case r.Accum != 1:
		return bad("inherit auto does not support gradient accumulation (accum %d)", r.Accum)
	case r.PruneStep == Unset:
		return bad("inherit auto needs prune_step (the step at which the gates are fused)")
	case r.PruneStep < 0 || r.PruneStep > 1<<30:
		return bad("prune_step %d", r.PruneStep)
	case r.Warmup != Unset && r.Warmup != r.PruneStep:
		return bad("with inherit auto the learning-rate warm-up is prune_step (%d), as in the official loop: leave warmup out (it is %d)", r.PruneStep, r.Warmup)
	case !(r.TargetSparsity > 0):
		return bad("inherit auto needs target_sparsity in (0, 1)")
	}
	cfg := r.l0Config()
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("train: recipe: %w", err)
	}
	return nil
}

// l0Config returns the L0 settings of an auto recipe.
func (r *Recipe) l0Config() L0Config {
	c := DefaultL0Config(r.StartSparsity, r.TargetSparsity, r.SparsityWarmup, r.PruneStep)
	c.LogAlphaLR, c.LambdaLR = r.L0LR, r.LambdaLR
	return c
}

// Marshal returns the recipe as YAML.
func (r *Recipe) Marshal() ([]byte, error) {
	b, err := yaml.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("train: recipe: %w", err)
	}
	return b, nil
}
