package train

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/checkpoint"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/data"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/imageproc"
	"github.com/tinyclip-go/tinyclip/internal/tokenizer"
)

// Tiny towers for the trainer tests (32 px, head width 16).
const (
	tinyTeacherJSON = `{"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 4, "width": 48, "head_width": 16, "patch_size": 8},
		"text_cfg": {"width": 48, "heads": 3, "layers": 4}}`
	tinyStudentJSON = `{"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
		"text_cfg": {"width": 32, "heads": 2, "layers": 2}}`
)

func parseArch(t testing.TB, js string) *config.Arch {
	t.Helper()
	cfg, err := config.Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	a, err := config.FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// tinySetup is a small distillation run: a random tiny teacher, a student
// inheriting from it, synthetic data.
type tinySetup struct {
	teacherArch, studentArch *config.Arch
	teacher                  *EngineTeacher
	ds                       *data.Synthetic
	batch                    int
}

func newTinySetup(t testing.TB) *tinySetup {
	t.Helper()
	s, err := buildTinySetup()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func buildTinySetup() (*tinySetup, error) {
	ta, err := archOf(tinyTeacherJSON)
	if err != nil {
		return nil, err
	}
	sa, err := archOf(tinyStudentJSON)
	if err != nil {
		return nil, err
	}
	tw, err := Init(ta, 11)
	if err != nil {
		return nil, err
	}
	tm, err := engine.Build(ta, tw, engine.Options{})
	if err != nil {
		return nil, err
	}
	ds, err := data.NewSynthetic(data.SyntheticOptions{N: 40, Seed: 3, Size: 32})
	if err != nil {
		return nil, err
	}
	return &tinySetup{teacherArch: ta, studentArch: sa, teacher: NewEngineTeacher(tm), ds: ds, batch: 8}, nil
}

func archOf(js string) (*config.Arch, error) {
	cfg, err := config.Parse([]byte(js))
	if err != nil {
		return nil, err
	}
	return config.FromConfig(cfg)
}

// step builds a fresh student (inherited from the teacher) and its step.
func (s *tinySetup) step(t testing.TB) *Step {
	t.Helper()
	step, err := s.newStep()
	if err != nil {
		t.Fatal(err)
	}
	return step
}

func (s *tinySetup) newStep() (*Step, error) {
	tw, err := Init(s.teacherArch, 11)
	if err != nil {
		return nil, err
	}
	sw, err := Inherit(tw, s.teacherArch, s.studentArch)
	if err != nil {
		return nil, err
	}
	st, err := NewStudent(s.studentArch, sw)
	if err != nil {
		return nil, err
	}
	return NewStep(st, s.teacher, s.batch, DefaultHyper(s.studentArch))
}

func (s *tinySetup) open() OpenBatches {
	tok, _ := tokenizer.Default()
	tr := imageproc.DefaultOptions()
	tr.Size = 32
	return func(ctx context.Context, start data.Cursor) (Batches, error) {
		return data.NewStream(ctx, s.ds, data.StreamOptions{
			BatchSize: s.batch, Seed: 5, Transform: tr, Start: start,
			Tokenize: func(x string) ([]int, error) { return tok.Tokenize(x), nil },
		})
	}
}

func (s *tinySetup) options(dir string, steps int) RunOptions {
	return RunOptions{
		Dir: dir, Steps: steps, CheckpointEvery: 2, Keep: 2,
		LR:       func(i int) float64 { return CosineLR(1e-3, 2, steps, i) },
		Identity: map[string]any{"test": "tiny", "steps": steps},
		Kernel:   CurrentKernel(s.teacher.Kernel()),
		OrderRNG: func(e int) []byte { _, st := data.EpochOrder(5, e, s.ds.Len(), false); return st },
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func readBytes(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRunLayout runs a few steps and checks what the output directory
// holds: rotated checkpoints, latest, the log, the curves, and final
// models loadable by the checkpoint reader and the engine.
func TestRunLayout(t *testing.T) {
	s := newTinySetup(t)
	dir := t.TempDir()
	o := s.options(dir, 7)
	o.EvalEvery = 3
	o.Evals = []Evaluator{&ZeroShot{Data: s.ds, Templates: syntheticTemplates, Tokenize: tokenizeDefault(t)}}
	var hooked atomic.Int64
	o.Hook = func(LogRecord) { hooked.Add(1) }
	res, err := Run(context.Background(), s.step(t), s.open(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 7 || hooked.Load() != 7 {
		t.Fatalf("%d steps, %d hook calls", res.Steps, hooked.Load())
	}
	steps, err := listCheckpoints(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 || steps[0] != 6 || steps[1] != 7 {
		t.Errorf("checkpoints %v, want [6 7] (every 2, the final one, 2 kept)", steps)
	}
	if got := strings.TrimSpace(string(readBytes(t, filepath.Join(dir, LatestFile)))); got != "ckpt-7" {
		t.Errorf("latest = %q", got)
	}
	ck, err := ReadCheckpoint(filepath.Join(dir, "ckpt-6"))
	if err != nil {
		t.Fatal(err)
	}
	if ck.Info.Step != 6 || ck.Info.OptimizerStep != 6 || ck.Info.TotalSteps != 7 || ck.Info.Cursor != (data.Cursor{Epoch: 1, Index: 8}) ||
		len(ck.Info.OrderRNG) == 0 || ck.Info.Kernel != o.Kernel {
		t.Errorf("state.json: %+v", ck.Info)
	}
	// The checkpoint's model file is itself a loadable model.
	if c, err := checkpoint.Open(filepath.Join(dir, "ckpt-6", CheckpointModel)); err != nil {
		t.Errorf("checkpoint model: %v", err)
	} else {
		c.Close()
	}

	// Log: 7 step records, evaluations after 3, 6 and 7.
	f, err := os.Open(filepath.Join(dir, LogFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var nStep, nEval int
	var evalSteps []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec LogRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if rec.Eval != nil {
			nEval++
			evalSteps = append(evalSteps, rec.Step)
			if _, ok := rec.Eval["zeroshot/top1"]; !ok {
				t.Errorf("eval record %v", rec.Eval)
			}
			continue
		}
		nStep++
		if rec.Step != nStep || rec.Loss == nil || rec.GradNorm == nil || rec.LR <= 0 || rec.SamplesPerSecond <= 0 {
			t.Errorf("step record %s", sc.Text())
		}
		// The data.Stream reports the pipeline's throughput; the wait for
		// a batch is part of the step's time.
		if !(rec.DataImagesPerSecond > 0) || rec.DataSeconds < 0 || rec.DataSeconds > rec.Seconds {
			t.Errorf("step record %s: data %v s, %v images/s", sc.Text(), rec.DataSeconds, rec.DataImagesPerSecond)
		}
	}
	if nStep != 7 || nEval != 3 || evalSteps[0] != 3 || evalSteps[2] != 7 {
		t.Errorf("%d step records, evaluations at %v", nStep, evalSteps)
	}
	if _, err := png.Decode(bytes.NewReader(readBytes(t, filepath.Join(dir, CurvesFile)))); err != nil {
		t.Errorf("curves.png: %v", err)
	}
	if res.Eval["zeroshot/top1"] < 0 || res.Eval["zeroshot/images"] != 40 {
		t.Errorf("last evaluation %v", res.Eval)
	}

	// final/ and final-hf/ load and agree.
	if res.Final == "" || res.FinalHF == "" {
		t.Fatalf("exports: %q, %q", res.Final, res.FinalHF)
	}
	models := map[string]*engine.Model{}
	for _, p := range []string{res.Final, res.FinalHF} {
		lm, err := openModel(p, "")
		if err != nil {
			t.Fatal(err)
		}
		m, err := engine.Build(lm.arch, lm.ck.Tensors, engine.Options{})
		lm.ck.Close()
		if err != nil {
			t.Fatal(err)
		}
		models[p] = m
	}
	pix := make([]float32, 2*3*32*32)
	for i := range pix {
		pix[i] = float32(i%13)/6 - 1
	}
	a, _ := models[res.Final].EncodeImages(context.Background(), pix, 2)
	b, _ := models[res.FinalHF].EncodeImages(context.Background(), pix, 2)
	ta, _ := models[res.Final].EncodeTexts(context.Background(), [][]int{{49406, 320, 49407}})
	tb, _ := models[res.FinalHF].EncodeTexts(context.Background(), [][]int{{49406, 320, 49407}})
	if !equalF32(a, b) || !equalF32(ta, tb) {
		t.Error("final and final-hf embed differently")
	}

	// tinyclip.Load reads both exports to the same embeddings.
	var loaded []*tinyclip.Model
	for _, p := range []string{res.Final, res.FinalHF} {
		m, err := tinyclip.Load(context.Background(), p)
		if err != nil {
			t.Fatalf("tinyclip.Load(%s): %v", p, err)
		}
		loaded = append(loaded, m)
	}
	te := make([][][]float32, 2)
	pe := make([][][]float32, 2)
	for i, m := range loaded {
		if te[i], err = m.EncodeTexts(context.Background(), []string{"two red circles on the left.", "a photo of a blue cross."}); err != nil {
			t.Fatal(err)
		}
		if pe[i], err = m.EncodePixels(context.Background(), pix, 2); err != nil {
			t.Fatal(err)
		}
	}
	for k := range te[0] {
		if !equalF32(te[0][k], te[1][k]) || !equalF32(pe[0][k], pe[1][k]) {
			t.Errorf("tinyclip.Load: final and final-hf embed row %d differently", k)
		}
	}

	// A second run into the same directory without Resume is refused.
	if _, err := Run(context.Background(), s.step(t), s.open(), s.options(dir, 7)); err == nil || !strings.Contains(err.Error(), "already holds checkpoints") {
		t.Errorf("second run: %v", err)
	}
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func tokenizeDefault(t testing.TB) func(string) ([]int, error) {
	tok, err := tokenizer.Default()
	if err != nil {
		t.Fatal(err)
	}
	return func(s string) ([]int, error) { return tok.Tokenize(s), nil }
}

// TestRunResumeInProcess stops a run after step 5 (checkpoints at 2 and 4)
// and resumes it with a fresh student: the final weights, the AdamW state
// and the log equal an uninterrupted run's, byte for byte. Resuming with
// another run description or kernel is refused.
func TestRunResumeInProcess(t *testing.T) {
	s := newTinySetup(t)
	ref := t.TempDir()
	if _, err := Run(context.Background(), s.step(t), s.open(), s.options(ref, 8)); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	o := s.options(dir, 8)
	o.Hook = func(r LogRecord) {
		if r.Step == 5 {
			cancel()
		}
	}
	if _, err := Run(ctx, s.step(t), s.open(), o); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, FinalDir)); err == nil {
		t.Fatal("the interrupted run exported a final model")
	}

	// Another learning rate, or another kernel, is refused.
	bad := s.options(dir, 8)
	bad.Resume = true
	bad.Identity = map[string]any{"test": "tiny", "steps": 8, "lr": 1}
	if _, err := Run(context.Background(), s.step(t), s.open(), bad); err == nil || !strings.Contains(err.Error(), "lr") {
		t.Errorf("changed run: %v", err)
	}
	bad = s.options(dir, 8)
	bad.Resume = true
	bad.Kernel.GoMLX = "other"
	if _, err := Run(context.Background(), s.step(t), s.open(), bad); err == nil || !strings.Contains(err.Error(), "kernel") {
		t.Errorf("changed kernel: %v", err)
	}

	o = s.options(dir, 8)
	o.Resume = true
	res, err := Run(context.Background(), s.step(t), s.open(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed != 4 || res.Steps != 8 {
		t.Errorf("resumed at %d, ended at %d; want 4, 8", res.Resumed, res.Steps)
	}
	for _, f := range []string{filepath.Join(FinalDir, ModelFile), filepath.Join("ckpt-8", CheckpointModel), filepath.Join("ckpt-8", CheckpointOptim)} {
		if !bytes.Equal(readBytes(t, filepath.Join(ref, f)), readBytes(t, filepath.Join(dir, f))) {
			t.Errorf("%s differs from the uninterrupted run's", f)
		}
	}
	// The log holds each step once, with the same losses.
	if a, b := stepLosses(t, ref), stepLosses(t, dir); len(a) != 8 || strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("log losses:\n%v\n%v", a, b)
	}
}

// stepLosses returns the loss field of each step record of a run's log.
func stepLosses(t *testing.T, dir string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(readBytes(t, filepath.Join(dir, LogFile)))), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if _, ok := rec["eval"]; !ok {
			out = append(out, string(mustJSON(rec["step"]))+":"+string(mustJSON(rec["loss"])))
		}
	}
	return out
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// nanTeacher returns NaN features from its calls number bad on.
type nanTeacher struct {
	*EngineTeacher
	calls, bad int
}

func (n *nanTeacher) EncodeImages(ctx context.Context, pixels []float32, k int) ([]float32, error) {
	f, err := n.EngineTeacher.EncodeImages(ctx, pixels, k)
	n.calls++
	if n.calls >= n.bad {
		for i := range f {
			f[i] = float32(nanValue())
		}
	}
	return f, err
}

func nanValue() float64 {
	var zero float64
	return zero / zero
}

// TestRunStopsOnNonFinite feeds NaN teacher features from step 4 on: the
// run stops with ErrNonFinite naming the last good checkpoint, which stays
// the newest; with MaxNonFinite the steps are skipped instead, until that
// many in a row.
func TestRunStopsOnNonFinite(t *testing.T) {
	s := newTinySetup(t)
	for _, maxSkip := range []int{0, 2} {
		dir := t.TempDir()
		step := s.step(t)
		step.teacher = &nanTeacher{EngineTeacher: s.teacher, bad: 4}
		o := s.options(dir, 10)
		o.MaxNonFinite = maxSkip
		_, err := Run(context.Background(), step, s.open(), o)
		if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), filepath.Join(dir, "ckpt-2")) {
			t.Fatalf("max %d: %v", maxSkip, err)
		}
		steps, _ := listCheckpoints(dir)
		if len(steps) != 1 || steps[0] != 2 {
			t.Errorf("max %d: checkpoints %v, want only the good ckpt-2", maxSkip, steps)
		}
		if want := 4 + maxSkip; !strings.Contains(err.Error(), "stopped at step "+string(rune('0'+want))) {
			t.Errorf("max %d: %v", maxSkip, err)
		}
		if _, err := os.Stat(filepath.Join(dir, FinalDir)); err == nil {
			t.Errorf("max %d: a final model was exported", maxSkip)
		}
	}
}

// TestRunZeroSteps exports the initial model without training.
func TestRunZeroSteps(t *testing.T) {
	s := newTinySetup(t)
	dir := t.TempDir()
	step := s.step(t)
	_, want, err := step.Model()
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), step, func(context.Context, data.Cursor) (Batches, error) {
		return nil, errors.New("no data needed")
	}, s.options(dir, 0))
	if err != nil {
		t.Fatal(err)
	}
	lm, err := openModel(res.Final, "")
	if err != nil {
		t.Fatal(err)
	}
	defer lm.ck.Close()
	for name, w := range want {
		got := lm.ck.Tensors[name]
		if got == nil || !bytes.Equal(got.Data, w.Data) {
			t.Errorf("%s differs from the initial student", name)
		}
	}
	if steps, _ := listCheckpoints(dir); len(steps) != 0 {
		t.Errorf("checkpoints %v after 0 steps", steps)
	}
}
