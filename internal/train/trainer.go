package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/data"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/progress"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// Stepper is one kind of training step, as the trainer drives it: Step
// (one batch per update) and AccumStep (gradient accumulation) implement
// it, and so can other training modes (e.g. pruning with learnable masks),
// whose extra tensors travel in State.Weights and State.Moments.
type Stepper interface {
	// BatchSize is the number of pairs Run takes.
	BatchSize() int
	// TrainStep trains on one batch at learning rate lr; iter is the
	// training iteration (from 0; schedules such as a sparsity warm-up
	// depend on it). An error wrapping ErrNonFinite means the update was
	// skipped.
	TrainStep(ctx context.Context, iter int, images []float32, tokens [][]int, lr float64) (Metrics, error)
	// State and Restore save and restore everything Run changes.
	State() (*State, error)
	Restore(*State) error
	// Model returns the model as it would be exported now.
	Model() (*config.Arch, map[string]*tensor.Tensor, error)
}

// Optional Stepper methods the trainer uses when present:
//
//   - StateArch() *config.Arch: the architecture of State().Weights when
//     it is not Model()'s (e.g. a masked model exported pruned); it goes
//     into the checkpoint's model.safetensors metadata.
//   - ExtraMetrics() map[string]float64: quantities of the last step
//     logged under "extra" in log.jsonl (e.g. sparsity).
type (
	stateArcher   interface{ StateArch() *config.Arch }
	extraMetricer interface {
		ExtraMetrics() map[string]float64
	}
)

// BatchSize implements Stepper.
func (s *Step) BatchSize() int { return s.batch }

// TrainStep implements Stepper with Run.
func (s *Step) TrainStep(ctx context.Context, _ int, images []float32, tokens [][]int, lr float64) (Metrics, error) {
	return s.Run(ctx, images, tokens, lr)
}

// Model implements Stepper: the student's architecture and weights.
func (s *Step) Model() (*config.Arch, map[string]*tensor.Tensor, error) {
	w, err := s.st.Weights()
	if err != nil {
		return nil, nil, err
	}
	return s.st.Arch(), w, nil
}

// Batches is the training data as the trainer reads it (a *data.Stream).
type Batches interface {
	Next() (*data.Batch, error)
	Close()
}

// OpenBatches opens the training data positioned at a cursor.
type OpenBatches func(ctx context.Context, start data.Cursor) (Batches, error)

// RunOptions configures Run.
type RunOptions struct {
	// Dir is the output directory: checkpoints, log.jsonl, curves.png,
	// final/ and final-hf/.
	Dir string
	// Steps is the number of training iterations (the schedule's length).
	// 0 writes the initial model as the final one.
	Steps int
	// LR gives the learning rate of iteration i (from 0); nil means a
	// constant 1e-4.
	LR func(i int) float64
	// CheckpointEvery writes a checkpoint every that many iterations (0:
	// only at the end); Keep is the number of checkpoints kept (default 2).
	CheckpointEvery, Keep int
	// EvalEvery evaluates every that many iterations (0: only at the end)
	// with each of Evals.
	EvalEvery int
	Evals     []Evaluator
	// Resume continues from the newest checkpoint in Dir (a fresh start
	// when there is none). Without it, Run refuses a Dir that holds
	// checkpoints.
	Resume bool
	// AllowKernelChange resumes a checkpoint written with another Kernel
	// (the continuation is then not bit-identical) with a warning instead
	// of an error.
	AllowKernelChange bool
	// Identity describes the run (data, models, hyper-parameters; JSON
	// encodable); its hash goes into every checkpoint and a resume must
	// present the same.
	Identity any
	// Kernel is the arithmetic path (CurrentKernel); stored and checked
	// like Identity.
	Kernel Kernel
	// OrderRNG, if set, returns the data-order generator state of an
	// epoch (data.EpochOrder), stored in checkpoints and compared on
	// resume.
	OrderRNG func(epoch int) []byte
	// MaxNonFinite is how many consecutive non-finite steps are skipped
	// (as the official loop skips up to 100) before the run stops; 0
	// stops at the first.
	MaxNonFinite int
	// Progress receives a progress bar when it is a terminal (stderr).
	Progress io.Writer
	// Logger receives events (default: slog.Default()).
	Logger *slog.Logger
	// Hook, if set, is called after every step (tests, custom logging).
	Hook func(LogRecord)
	// NoExport skips final/ and final-hf/.
	NoExport bool
}

// Result summarises a finished run.
type Result struct {
	// Steps is the number of iterations done, Resumed the iteration the
	// run continued from (0 for a fresh start).
	Steps, Resumed int
	// Last holds the metrics of the last step (zero when none ran).
	Last Metrics
	// Eval holds the last evaluation's metrics.
	Eval map[string]float64
	// Final is the exported model directory ("" with NoExport), FinalHF
	// the Hugging Face one ("" when the architecture has none).
	Final, FinalHF string
	// SkippedSamples counts the corrupt samples passed over.
	SkippedSamples int
}

// Files in the output directory besides checkpoints.
const (
	LogFile    = "log.jsonl"
	CurvesFile = "curves.png"
	FinalDir   = "final"
	FinalHFDir = "final-hf"
)

// Run trains with step on batches from open until opts.Steps iterations
// are done: each iteration takes the next batch, sets the learning rate
// opts.LR(i) and runs the step; every CheckpointEvery iterations it writes
// a checkpoint (weights, optimizer state, data cursor, order-RNG state,
// run hash, kernel path) atomically, every EvalEvery iterations it runs
// the evaluators; it appends one JSON line per step and per evaluation to
// DIR/log.jsonl and redraws DIR/curves.png. At the end it writes a last
// checkpoint, evaluates, and exports the model to DIR/final (and
// DIR/final-hf when the architecture has a Hugging Face form).
//
// A run killed at any point and started again with Resume ends with
// bit-identical weights, on the same Kernel. A non-finite loss stops the
// run with an error wrapping ErrNonFinite (after MaxNonFinite skipped
// steps), leaving the last good checkpoint as it was (no checkpoint is
// written right after a skipped step).
func Run(ctx context.Context, step Stepper, open OpenBatches, opts RunOptions) (*Result, error) {
	r, err := newRunner(step, open, &opts)
	if err != nil {
		return nil, err
	}
	defer r.closeLog()
	return r.run(ctx)
}

type runner struct {
	step    Stepper
	open    OpenBatches
	o       *RunOptions
	log     *slog.Logger
	runDesc []byte // Identity as JSON
	hash    string
	logF    *os.File
	points  []LogRecord
	evals   []LogRecord

	iter      int
	cursor    data.Cursor
	skipped   int
	nonFinite int
	lastLR    float64
	lastCkpt  string
}

func newRunner(step Stepper, open OpenBatches, o *RunOptions) (*runner, error) {
	if step == nil || open == nil {
		return nil, fmt.Errorf("train: run: no step or no data")
	}
	if o.Dir == "" {
		return nil, fmt.Errorf("train: run: no output directory")
	}
	if o.Steps < 0 || o.CheckpointEvery < 0 || o.EvalEvery < 0 || o.MaxNonFinite < 0 {
		return nil, fmt.Errorf("train: run: negative steps or intervals")
	}
	if o.Keep <= 0 {
		o.Keep = 2
	}
	if o.LR == nil {
		o.LR = func(int) float64 { return 1e-4 }
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.Default()
	}
	run, err := json.Marshal(o.Identity)
	if err != nil {
		return nil, fmt.Errorf("train: run description: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if err := cleanTemporary(o.Dir); err != nil {
		return nil, err
	}
	return &runner{step: step, open: open, o: o, log: lg, runDesc: run, hash: hashRun(run)}, nil
}

func (r *runner) closeLog() {
	if r.logF != nil {
		r.logF.Close()
	}
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	o := r.o
	res := &Result{}
	if err := r.resume(); err != nil {
		return nil, err
	}
	res.Resumed = r.iter
	if err := r.openLog(); err != nil {
		return nil, err
	}
	if r.iter < o.Steps {
		last, err := r.loop(ctx)
		res.Last = last
		if err != nil {
			r.drawCurves()
			return res, err
		}
		if _, err := r.checkpoint(); err != nil {
			return res, err
		}
	}
	res.Steps, res.SkippedSamples = r.iter, r.skipped
	if len(o.Evals) > 0 && (len(r.evals) == 0 || r.evals[len(r.evals)-1].Step != r.iter) {
		ev, err := r.evaluate(ctx)
		if err != nil {
			return res, err
		}
		res.Eval = ev
	} else if len(r.evals) > 0 {
		res.Eval = r.evals[len(r.evals)-1].Eval
	}
	r.drawCurves()
	if o.NoExport {
		return res, nil
	}
	arch, w, err := r.step.Model()
	if err != nil {
		return res, err
	}
	res.Final = filepath.Join(o.Dir, FinalDir)
	if err := WriteModel(res.Final, arch, w); err != nil {
		return res, err
	}
	if HFCompatible(arch) {
		res.FinalHF = filepath.Join(o.Dir, FinalHFDir)
		if err := WriteHF(res.FinalHF, arch, w); err != nil {
			return res, err
		}
	}
	r.log.Info("training done", "steps", r.iter, "final", res.Final, "final_hf", res.FinalHF)
	return res, nil
}

// resume restores the newest checkpoint when asked to, and refuses to
// overwrite a run otherwise.
func (r *runner) resume() error {
	o := r.o
	latest, err := LatestCheckpoint(o.Dir)
	if err != nil {
		return err
	}
	if !o.Resume {
		if latest != "" {
			return fmt.Errorf("train: %s already holds checkpoints (%s): resume it, or choose another output directory", o.Dir, filepath.Base(latest))
		}
		return nil
	}
	if latest == "" {
		r.log.Info("no checkpoint to resume: starting afresh", "dir", o.Dir)
		return nil
	}
	ck, err := ReadCheckpoint(latest)
	if err != nil {
		return err
	}
	info := &ck.Info
	if info.ConfigHash != r.hash {
		return fmt.Errorf("train: resume %s: the run differs from the checkpoint's (%s)", latest, describeDiff(info.Run, r.runDesc))
	}
	if info.TotalSteps != o.Steps {
		return fmt.Errorf("train: resume %s: %d steps in all, the checkpoint's run has %d", latest, o.Steps, info.TotalSteps)
	}
	if info.Kernel != o.Kernel {
		msg := fmt.Sprintf("checkpoint written with kernel %+v, this process uses %+v: the continuation will not be bit-identical", info.Kernel, o.Kernel)
		if !o.AllowKernelChange {
			return fmt.Errorf("train: resume %s: %s (allow it explicitly to continue anyway)", latest, msg)
		}
		r.log.Warn("RESUMING ON A DIFFERENT KERNEL PATH: " + msg)
	}
	if o.OrderRNG != nil && info.OrderRNG != nil {
		if got := o.OrderRNG(info.Cursor.Epoch); string(got) != string(info.OrderRNG) {
			return fmt.Errorf("train: resume %s: the data order of epoch %d differs from the checkpoint's (another Go version's shuffle?)", latest, info.Cursor.Epoch)
		}
	}
	if err := r.step.Restore(ck.State); err != nil {
		return fmt.Errorf("train: resume %s: %w", latest, err)
	}
	r.iter, r.cursor, r.skipped, r.nonFinite, r.lastLR = info.Step, info.Cursor, info.SkippedSamples, info.NonFinite, info.LR
	r.lastCkpt = latest
	r.log.Info("resumed", "checkpoint", latest, "step", r.iter, "cursor", fmt.Sprintf("%+v", r.cursor))
	return nil
}

// describeDiff names the top-level keys in which two run descriptions
// differ.
func describeDiff(a, b []byte) string {
	var ma, mb map[string]json.RawMessage
	if json.Unmarshal(a, &ma) != nil || json.Unmarshal(b, &mb) != nil {
		return "different run descriptions"
	}
	var keys []string
	for k, v := range ma {
		if w, ok := mb[k]; !ok || string(w) != string(v) {
			keys = append(keys, fmt.Sprintf("%s: %s → %s", k, truncate(string(v), 60), truncate(string(mb[k]), 60)))
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			keys = append(keys, fmt.Sprintf("%s: new", k))
		}
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return "different run descriptions"
	}
	return fmt.Sprint(keys)
}

// loop runs the iterations.
func (r *runner) loop(ctx context.Context) (Metrics, error) {
	o := r.o
	var last Metrics
	src, err := r.open(ctx, r.cursor)
	if err != nil {
		return last, err
	}
	defer src.Close()
	bar := progress.New(o.Progress, int64(o.Steps), "distill", progress.Options{Unit: "step"})
	defer bar.Finish()
	bar.Add(int64(r.iter))
	batch := r.step.BatchSize()
	rate := math.NaN()
	for r.iter < o.Steps {
		t0 := time.Now()
		b, err := src.Next()
		if err != nil {
			return last, fmt.Errorf("train: step %d: data: %w", r.iter+1, err)
		}
		dataSec := time.Since(t0).Seconds()
		for _, s := range b.Skipped {
			r.log.Warn("skipped a sample", "sample", s.Name, "err", s.Err)
		}
		r.skipped += len(b.Skipped)
		lr := o.LR(r.iter)
		m, runErr := r.step.TrainStep(ctx, r.iter, b.Images, b.Tokens, lr)
		if runErr != nil && !errors.Is(runErr, ErrNonFinite) {
			return last, runErr
		}
		last = m
		r.iter++
		r.cursor = b.Next
		r.lastLR = lr
		dt := time.Since(t0).Seconds()
		if sps := float64(batch) / dt; math.IsNaN(rate) {
			rate = sps
		} else {
			rate = 0.9*rate + 0.1*sps
		}
		rec := LogRecord{
			Step: r.iter, OptimizerStep: m.Step, Epoch: b.Epoch, LR: lr,
			Loss: num(m.Loss), SoftI2T: num(m.SoftI2T), SoftT2I: num(m.SoftT2I), Hard: num(m.Hard),
			GradNorm: num(m.GradNorm), ClipCoef: num(m.ClipCoef), Scale: num(m.StudentScale),
			Seconds: dt, SamplesPerSecond: float64(batch) / dt, SkippedSamples: len(b.Skipped), NonFinite: m.Skipped,
			DataSeconds: dataSec,
		}
		if ss, ok := src.(interface{ Stats() data.StreamStats }); ok {
			rec.DataImagesPerSecond = ss.Stats().ImagesPerSecond()
		}
		if x, ok := r.step.(extraMetricer); ok {
			rec.Extra = finiteOnly(x.ExtraMetrics())
		}
		if err := r.record(rec); err != nil {
			return last, err
		}
		if o.Hook != nil {
			o.Hook(rec)
		}
		bar.Describe(progressText(m.Loss, lr, rate, rec.Extra))
		bar.Add(1)
		if runErr != nil { // non-finite
			r.nonFinite++
			r.log.Warn("non-finite step skipped", "step", r.iter, "loss", m.Loss, "grad_norm", m.GradNorm)
			if r.nonFinite > o.MaxNonFinite {
				where := "no checkpoint was written"
				if r.lastCkpt != "" {
					where = "the last good checkpoint is " + r.lastCkpt
				}
				return last, fmt.Errorf("train: stopped at step %d after %d consecutive non-finite steps (loss %v, gradient norm %v; %s): %w",
					r.iter, r.nonFinite, m.Loss, m.GradNorm, where, ErrNonFinite)
			}
		} else {
			r.nonFinite = 0
		}
		// No checkpoint right after a skipped step: its forward pass may
		// have left non-finite BatchNorm statistics.
		if r.iter < o.Steps && o.CheckpointEvery > 0 && r.iter%o.CheckpointEvery == 0 && r.nonFinite == 0 {
			if _, err := r.checkpoint(); err != nil {
				return last, err
			}
			r.drawCurves()
		}
		if r.iter < o.Steps && o.EvalEvery > 0 && r.iter%o.EvalEvery == 0 && len(o.Evals) > 0 {
			if _, err := r.evaluate(ctx); err != nil {
				return last, err
			}
		}
		if err := ctx.Err(); err != nil {
			return last, fmt.Errorf("train: %w", err)
		}
	}
	return last, nil
}

// checkpoint writes the current state.
func (r *runner) checkpoint() (string, error) {
	st, err := r.step.State()
	if err != nil {
		return "", err
	}
	var arch *config.Arch
	if sa, ok := r.step.(stateArcher); ok {
		arch = sa.StateArch()
	} else if arch, _, err = r.step.Model(); err != nil {
		return "", err
	}
	info := CheckpointInfo{
		Step: r.iter, TotalSteps: r.o.Steps, LR: r.lastLR, Cursor: r.cursor,
		SkippedSamples: r.skipped, NonFinite: r.nonFinite,
		Run: r.runDesc, ConfigHash: r.hash, Kernel: r.o.Kernel,
	}
	if r.o.OrderRNG != nil {
		info.OrderRNG = r.o.OrderRNG(r.cursor.Epoch)
	}
	dir, err := WriteCheckpoint(r.o.Dir, arch, st, info, r.o.Keep)
	if err != nil {
		return "", err
	}
	r.lastCkpt = dir
	r.log.Debug("checkpoint", "dir", dir)
	return dir, nil
}

// evaluate runs the evaluators on the current model.
func (r *runner) evaluate(ctx context.Context) (map[string]float64, error) {
	arch, w, err := r.step.Model()
	if err != nil {
		return nil, err
	}
	m, err := engine.Build(arch, w, engine.Options{})
	if err != nil {
		return nil, fmt.Errorf("train: evaluation: %w", err)
	}
	out := map[string]float64{}
	for _, ev := range r.o.Evals {
		res, err := ev.Evaluate(ctx, m)
		if err != nil {
			return nil, fmt.Errorf("train: evaluation %s: %w", ev.Name(), err)
		}
		for k, v := range res {
			out[ev.Name()+"/"+k] = v
		}
	}
	rec := LogRecord{Step: r.iter, Eval: out}
	r.log.Info("evaluation", "step", r.iter, "metrics", out)
	if err := r.record(rec); err != nil {
		return nil, err
	}
	return out, nil
}

// progressText is the progress bar's description of a step: loss,
// learning rate and samples/s, and, while gates are learnt (the extra
// metrics of an AutoStepper), the expected sparsity against its target and
// the two Lagrange multipliers.
func progressText(loss, lr, rate float64, extra map[string]float64) string {
	s := fmt.Sprintf("loss %.4f lr %.2e %.1f samples/s", loss, lr, rate)
	if sp, ok := extra["expected_sparsity"]; ok {
		s += fmt.Sprintf(" sparsity %.3f target %.3f λ1 %.3f λ2 %.3f", sp, extra["target_sparsity"], extra["lambda_1"], extra["lambda_2"])
	}
	return s
}

// finiteOnly drops the values JSON cannot hold (nil when none is left).
func finiteOnly(m map[string]float64) map[string]float64 {
	var out map[string]float64
	for k, v := range m {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			if out == nil {
				out = make(map[string]float64, len(m))
			}
			out[k] = v
		}
	}
	return out
}
