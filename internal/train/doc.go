// Package train distils TinyCLIP students: differentiable GoMLX versions of
// the three towers, the affinity-mimicking and CLIP losses, manual weight
// inheritance, and one training step with the exact semantics of the
// official training code (spec §5, §6.1, §7). It is the only package of the
// module that imports GoMLX; it runs on GoMLX's pure-Go backend (created
// with ops_sequential), and is meant to be built with GOEXPERIMENT=simd
// (see SIMD).
//
// # Weights
//
// Everything is exchanged as map[string]*tensor.Tensor under open_clip
// names, the form checkpoint.Open returns and engine.Build takes. Inside a
// Student every tensor is a GoMLX variable whose path is the name with "."
// replaced by "/" ("visual.conv1.weight" → "/visual/conv1/weight").
//
//   - Inherit(teacher, teacherArch, studentArch) makes a student's initial
//     weights by manual inheritance (pure Go). Init(arch, seed) draws fresh
//     weights with the official initialisation instead.
//   - NewStudent(arch, weights) holds a model for training; Weights() gives
//     them back (float32, BatchNorm counters int64), Export(dir) and
//     WriteModel write the open_clip hub layout (safetensors + configs) that
//     checkpoint.Open, the engine and open_clip load.
//   - Student.EncodeImages / EncodeTexts run the towers in evaluation mode
//     (raw features, as the engine).
//
// # Training
//
// A Teacher gives L2-normalised features without gradients;
// NewEngineTeacher runs one on internal/engine. NewStep(student, teacher, B,
// DefaultHyper(arch)) prepares steps of batch size B; each Step.Run(ctx,
// images [B·3·S·S], tokens [B][≤77], lr) does, as train_one_epoch does:
// teacher forward with its scale set to LogitScale (50), student forward in
// train mode (ResNet BatchNorm with batch statistics, running statistics
// updated with the unbiased variance, num_batches_tracked += 1), the loss
// α·w·(½CE_i2t + ½CE_t2i) (+ (1−α)·w·CLIP), gradients, global-norm clipping
// as clip_grad_norm_ (norm over every student parameter, logit_scale
// included, coefficient min(1, 5/(norm+1e-6)) always applied), AdamW with
// the official parameter groups (see Decayed) and bias corrections from the
// step count, and finally logit_scale ← float32(ln 50). The first step thus
// uses the student's own initial scale. All of it but the teacher is one
// compiled graph; the learning rate is an input (CosineLR gives the official
// schedule), so nothing recompiles as it changes. Without a teacher the
// loss is the plain CLIP loss.
//
// A NaN or infinite loss (or gradient norm) skips the update, as the
// official loop does, and Run returns the step's Metrics with an error
// wrapping ErrNonFinite; the trainer decides whether to stop.
//
// Step.State returns the complete training state as tensors — weights,
// BatchNorm statistics and counters, AdamW moments ("exp_avg.<name>",
// "exp_avg_sq.<name>") and the step count — and Step.Restore puts one back:
// a restored step continues bit-identically, and runs are deterministic
// (same inputs, same build, same results). Results differ, within float
// rounding, between builds with and without GOEXPERIMENT=simd and between
// CPU kernel paths, so resume with the same binary and machine kind.
//
// Batches have a fixed size B. Texts run only up to the last pooled
// position of the batch, rounded up to 16 tokens (exact: the text tower is
// causal), so a few graphs are compiled per batch size.
//
// AccumStep is the same step with gradient accumulation over
// micro-batches; for these losses it is not equivalent to a bigger batch
// (each softmax sees only its micro-batch), see its documentation.
//
// # Runs
//
// Run drives a Stepper (Step, AccumStep, or another training mode) over a
// data stream (internal/data's Stream: per-epoch order from the seed,
// parallel decoding and augmentation, fixed-size batches, a cursor) for a
// number of iterations with a learning-rate schedule: it writes atomic
// checkpoints (DIR/ckpt-<step>/{model,optim}.safetensors + state.json,
// DIR/latest; WriteCheckpoint, ReadCheckpoint) with the data cursor, the
// data-order generator state, the run's hash and the kernel path, resumes
// them bit-identically, stops on non-finite losses, evaluates (ZeroShot,
// Retrieval) every N steps, logs JSON lines (DIR/log.jsonl), draws
// DIR/curves.png, and exports DIR/final (WriteModel) and DIR/final-hf
// (WriteHF) at the end.
//
// A Recipe (YAML, ParseRecipe) describes a whole distillation — teacher,
// student, inheritance, data, hyper-parameters, evaluation, stages — and
// Distill runs it; it is what "tinyclip distill" executes.
//
// # Auto weight inheritance
//
// With inherit "auto" (spec §6.2) the student is a masked copy of the
// teacher: an AutoStudent carries learnable hard-concrete (L0) gates over
// the hidden dimensions, heads and MLP units of both towers (log-alphas,
// Lagrange multipliers; InitialL0, EvalMasks), an AutoStep trains it with
// the Lagrangian that drives the expected sparsity towards L0Config's
// target, and an AutoStepper (a Stepper) fuses the gates at the prune step
// (Prune, the official prune()) and trains the irregular student on.
// AutoStart gives a stage's start: the teacher's copy, or the previous
// stage's pruned model embedded by ReloadPruned. WriteMaskedModel and
// ReadMaskedModel store masked students ("tinyclip prune" fuses one).
//
// Students and Steps are not safe for concurrent use.
package train
