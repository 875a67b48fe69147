package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/data"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/imageproc"
	"github.com/tinyclip-go/tinyclip/internal/tokenizer"
	"github.com/tinyclip-go/tinyclip/internal/train"
)

// addBackendFlags registers --backend, --precision, --allow-download and
// --devices (distill and bench distill).
func addBackendFlags(fs *flag.FlagSet) (backend, precision *string, allowDownload *bool, devices *int) {
	backend = fs.String("backend", "", "GoMLX backend: go (default), xla:cuda, xla:cpu or xla:/path/to/pjrt_plugin.so, optionally followed by ,plugin-options (XLA needs a binary built with -tags xla; see docs/distillation.md)")
	precision = fs.String("precision", "fp32", "arithmetic of the training step: fp32, or bf16 (bfloat16 matrix products, float32 master weights, loss and optimizer state)")
	allowDownload = fs.Bool("allow-download", false, "let an XLA backend download a missing PJRT plugin (GitHub/PyPI); never otherwise")
	devices = fs.Int("devices", 0, "split every batch over this many devices of the backend (data parallel; 0 = a plain single-device step)")
	return
}

// checkBackendFlags validates --backend and --precision.
func checkBackendFlags(backend, precision string) (train.Precision, error) {
	if _, err := train.ParseBackend(backend); err != nil {
		return train.FP32, usagef("--backend: %v", err)
	}
	p, err := train.ParsePrecision(precision)
	if err != nil {
		return train.FP32, usagef("--precision: %v", err)
	}
	return p, nil
}

// isGoBackendFlag reports a --backend value that selects the Go backend
// (where GOEXPERIMENT=simd matters).
func isGoBackendFlag(backend string) bool {
	s, err := train.ParseBackend(backend)
	return err == nil && s.Kind == "go" && os.Getenv(train.BackendEnv) == ""
}

// benchDistillReport is the --json output of bench distill.
type benchDistillReport struct {
	Backend     string  `json:"backend"`
	Device      string  `json:"device"`
	Teacher     string  `json:"teacher"`
	Student     string  `json:"student"`
	TeacherKind string  `json:"teacher_kind"`
	Batch       int     `json:"batch"`
	Devices     int     `json:"devices"`
	Precision   string  `json:"precision"`
	Steps       int     `json:"steps"`
	Threads     int     `json:"gomaxprocs"`
	FirstStepMs float64 `json:"first_step_ms"`
	// Medians of the timed calls, milliseconds.
	StepMs      float64  `json:"step_ms"`
	TeacherMs   *float64 `json:"teacher_ms,omitempty"`
	LossMs      *float64 `json:"forward_ms,omitempty"`
	GradientsMs *float64 `json:"forward_backward_ms,omitempty"`
	// Derived split of a step (differences of the medians above).
	Split        map[string]float64 `json:"split_ms,omitempty"`
	SamplesPerS  float64            `json:"samples_per_s"`
	Losses       []float64          `json:"losses"`
	Data         benchData          `json:"data"`
	DataKeepsUp  *bool              `json:"data_keeps_up,omitempty"`
	SIMD         bool               `json:"gomlx_simd"`
	PluginPath   string             `json:"plugin,omitempty"`
	EngineKernel string             `json:"engine_kernel,omitempty"`
}

// benchData is the input pipeline's own throughput.
type benchData struct {
	Source     string  `json:"source"`
	Workers    int     `json:"workers"`
	Batches    int     `json:"batches"`
	ImagesPerS float64 `json:"images_per_s"`
	MsPerBatch float64 `json:"ms_per_batch"`
}

func runBenchDistill(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench distill", "[--backend B] [--teacher-config NAME] [--student-config NAME] [--batch N] [--precision fp32|bf16] [--steps N] [--json]")
	backend, precision, allowDownload, devices := addBackendFlags(fs)
	teacherCfg := fs.String("teacher-config", "ViT-B-32", "teacher architecture: zoo config name or config.json (random weights)")
	studentCfg := fs.String("student-config", "TinyCLIP-ViT-40M-32-Text-19M", "student architecture: zoo config name or config.json (random weights)")
	batch := fs.Int("batch", 32, "batch size (the global batch with --devices)")
	steps := fs.Int("steps", 5, "timed calls of each graph (the median is reported)")
	warmup := fs.Int("warmup", 1, "untimed calls before each timing (the first compiles)")
	teacherKind := fs.String("teacher", "auto", "teacher: engine (CPU engine), graph (GoMLX graph inside the step, on the backend's device) or auto (engine on the Go backend, graph elsewhere)")
	dataSpec := fs.String("data", "", "training data to time the input pipeline and to train on (default: a generated webdataset of JPEG images, see --data-size)")
	dataImages := fs.Int("data-images", 0, "images in the generated data (default 3 batches)")
	dataSize := fs.Int("data-size", 400, "side of the generated JPEG images (pixels)")
	workers := fs.Int("workers", 0, "decoding goroutines of the input pipeline (default GOMAXPROCS)")
	dataBatches := fs.Int("data-batches", -1, "batches read to time the input pipeline (default: --steps, within 2..8; 0: no timing, only the batch trained on)")
	split := fs.Bool("split", true, "also time the teacher, the forward pass and forward+backward apart from the whole step (plain steps only)")
	seed := fs.Uint64("seed", 0, "seed of the random weights and the data order")
	asJSON := fs.Bool("json", false, "print a JSON report")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	prec, err := checkBackendFlags(*backend, *precision)
	if err != nil {
		return err
	}
	if err := train.CheckBackend(*backend); err != nil {
		return err
	}
	if *batch < 2 || *steps < 1 || *warmup < 0 || *devices < 0 || *dataSize < 16 {
		return usagef("--batch must be at least 2, --steps at least 1, --warmup, --devices not negative, --data-size at least 16")
	}
	switch *teacherKind {
	case "auto", "engine", "graph":
	default:
		return usagef("--teacher must be auto, engine or graph")
	}

	_, tArch, err := initArch(*teacherCfg)
	if err != nil {
		return err
	}
	_, sArch, err := initArch(*studentCfg)
	if err != nil {
		return err
	}
	if tArch.Vision.ImageSize != sArch.Vision.ImageSize {
		return fmt.Errorf("teacher images are %d px, the student's %d px", tArch.Vision.ImageSize, sArch.Vision.ImageSize)
	}
	be, err := train.NewBackend(*backend, train.BackendOptions{AllowDownload: *allowDownload})
	if err != nil {
		return err
	}
	rep := benchDistillReport{
		Backend: be.Name(), Device: be.DeviceDescription(0), Teacher: *teacherCfg, Student: *studentCfg, Batch: *batch,
		Devices: *devices, Precision: prec.String(), Steps: *steps, Threads: runtime.GOMAXPROCS(0), SIMD: train.SIMD,
		PluginPath: be.PluginPath,
	}
	if rep.Devices == 0 {
		rep.Devices = 1
	}

	// The input pipeline, alone.
	tok, err := tokenizer.Default()
	if err != nil {
		return err
	}
	size := sArch.Vision.ImageSize
	specs := []string{*dataSpec}
	rep.Data.Source = *dataSpec
	if *dataSpec == "" {
		n := *dataImages
		if n <= 0 {
			n = 3 * *batch
		}
		dir, err := os.MkdirTemp("", "tinyclip-bench-data-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "shard-000000.tar")
		if err := writeJPEGShard(ctx, path, n, *dataSize, *seed); err != nil {
			return err
		}
		specs[0] = path
		rep.Data.Source = fmt.Sprintf("generated webdataset: %d JPEG images %d×%d (quality 90, 4:2:0)", n, *dataSize, *dataSize)
	}
	ds, err := data.OpenTraining(specs, *seed, size, data.Options{})
	if err != nil {
		return err
	}
	defer ds.Close()
	if ds.Len() < *batch {
		return fmt.Errorf("the data has %d samples, fewer than a batch of %d", ds.Len(), *batch)
	}
	tr := imageproc.DefaultOptions()
	tr.Size = size
	ctxLen := sArch.Text.ContextLength
	st, err := data.NewStream(ctx, ds, data.StreamOptions{
		BatchSize: *batch, Seed: *seed, Transform: tr, Workers: *workers,
		Tokenize: func(s string) ([]int, error) { return tok.TokenizeN(s, ctxLen) },
	})
	if err != nil {
		return err
	}
	first, err := st.Next() // warms the workers
	if err != nil {
		st.Close()
		return err
	}
	rep.Data.Workers = *workers
	if rep.Data.Workers <= 0 {
		rep.Data.Workers = runtime.GOMAXPROCS(0)
	}
	rep.Data.Batches = *dataBatches
	if rep.Data.Batches < 0 {
		rep.Data.Batches = max(2, min(*steps, 8))
	}
	start := time.Now()
	for range rep.Data.Batches {
		if _, err := st.Next(); err != nil {
			st.Close()
			return err
		}
	}
	el := msSince(start)
	st.Close()
	if rep.Data.Batches > 0 {
		rep.Data.MsPerBatch = el / float64(rep.Data.Batches)
		rep.Data.ImagesPerS = float64(*batch) / rep.Data.MsPerBatch * 1000
	}
	images, tokens := first.Images, first.Tokens

	// Teacher and student with random weights.
	tW, err := train.Init(tArch, *seed)
	if err != nil {
		return err
	}
	sW, err := train.Init(sArch, *seed+1)
	if err != nil {
		return err
	}
	var teacher train.Teacher
	kind := *teacherKind
	if kind == "auto" {
		kind = "graph"
		if be.Spec.Kind == "go" {
			kind = "engine"
		}
	}
	rep.TeacherKind = kind
	if kind == "engine" {
		m, err := engine.Build(tArch, tW, engine.Options{})
		if err != nil {
			return err
		}
		et := train.NewEngineTeacher(m)
		rep.EngineKernel = et.Kernel()
		teacher = et
	} else if teacher, err = train.NewGraphTeacher(be, tArch, tW, prec); err != nil {
		return err
	}
	student, err := train.NewStudentOn(be, sArch, sW)
	if err != nil {
		return err
	}
	h := train.DefaultHyper(sArch)
	h.Precision = prec
	var run func() (train.Metrics, error)
	var plain *train.Step
	if *devices > 0 {
		d, err := train.NewDataParallelStep(student, teacher, *batch, *devices, h)
		if err != nil {
			return err
		}
		run = func() (train.Metrics, error) { return d.Run(ctx, images, tokens, 1e-4) }
	} else {
		if plain, err = train.NewStep(student, teacher, *batch, h); err != nil {
			return err
		}
		run = func() (train.Metrics, error) { return plain.Run(ctx, images, tokens, 1e-4) }
	}
	fmt.Fprintf(e.stderr, "bench distill: %s → %s, batch %d, %s on %s; compiling…\n", *teacherCfg, *studentCfg, *batch, prec, be.Name())
	start = time.Now()
	m, err := run()
	if err != nil && !errors.Is(err, train.ErrNonFinite) {
		return err
	}
	rep.FirstStepMs = msSince(start)
	rep.Losses = append(rep.Losses, m.Loss)
	if rep.StepMs, err = timeCalls(max(0, *warmup-1), *steps, func() error {
		m, err := run()
		rep.Losses = append(rep.Losses, m.Loss)
		if errors.Is(err, train.ErrNonFinite) {
			return nil // timing only; the update was skipped
		}
		return err
	}); err != nil {
		return err
	}
	rep.SamplesPerS = float64(*batch) / rep.StepMs * 1000
	if rep.Data.Batches > 0 {
		keeps := rep.Data.ImagesPerS >= rep.SamplesPerS
		rep.DataKeepsUp = &keeps
	}

	if *split && plain != nil {
		timeOne := func(f func() error) (*float64, error) {
			ms, err := timeCalls(*warmup, *steps, f)
			return &ms, err
		}
		if rep.TeacherMs, err = timeOne(func() error {
			if _, err := teacher.EncodeImages(ctx, images, *batch); err != nil {
				return err
			}
			_, err := teacher.EncodeTexts(ctx, tokens)
			return err
		}); err != nil {
			return err
		}
		if rep.LossMs, err = timeOne(func() error { _, err := plain.Loss(ctx, images, tokens); return err }); err != nil {
			return err
		}
		if rep.GradientsMs, err = timeOne(func() error { _, err := plain.Backward(ctx, images, tokens); return err }); err != nil {
			return err
		}
		rep.Split = map[string]float64{
			"teacher":          *rep.TeacherMs,
			"student_forward":  *rep.LossMs - *rep.TeacherMs,
			"student_backward": *rep.GradientsMs - *rep.LossMs,
			"optimizer":        rep.StepMs - *rep.GradientsMs,
		}
		if rep.Data.Batches > 0 {
			rep.Split["data"] = rep.Data.MsPerBatch
		}
	}
	if *asJSON {
		return e.printJSON(rep)
	}
	printBenchDistill(e, &rep)
	return nil
}

func printBenchDistill(e *env, r *benchDistillReport) {
	fmt.Fprintf(e.stdout, "teacher    %s (random weights, %s)\nstudent    %s (random weights)\n", r.Teacher, r.TeacherKind, r.Student)
	fmt.Fprintf(e.stdout, "backend    %s, %s, %d device(s), GOMAXPROCS %d, GoMLX SIMD %v\n", r.Backend, r.Device, r.Devices, r.Threads, r.SIMD)
	fmt.Fprintf(e.stdout, "batch      %d, precision %s; first step (compilation) %.0f ms\n", r.Batch, r.Precision, r.FirstStepMs)
	fmt.Fprintf(e.stdout, "step       %.1f ms (median of %d): %.1f samples/s\n", r.StepMs, r.Steps, r.SamplesPerS)
	if r.DataKeepsUp != nil {
		keeps := "keeps up"
		if !*r.DataKeepsUp {
			keeps = "does NOT keep up"
		}
		fmt.Fprintf(e.stdout, "data       %.1f images/s with %d workers (%.1f ms/batch; %s): %s\n", r.Data.ImagesPerS, r.Data.Workers, r.Data.MsPerBatch, keeps, r.Data.Source)
	}
	if r.Split != nil {
		fmt.Fprintf(e.stdout, "\nmeasured: teacher %.1f ms, forward (teacher + student + loss) %.1f ms, forward+backward %.1f ms, whole step %.1f ms\n",
			*r.TeacherMs, *r.LossMs, *r.GradientsMs, r.StepMs)
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "part\tms\tshare of the step\t")
		for _, k := range []string{"teacher", "student_forward", "student_backward", "optimizer"} {
			fmt.Fprintf(tw, "%s\t%.1f\t%.0f%%\t\n", k, r.Split[k], 100*r.Split[k]/r.StepMs)
		}
		if d, ok := r.Split["data"]; ok {
			fmt.Fprintf(tw, "data (parallel)\t%.1f\t\t\n", d)
		}
		tw.Flush()
		fmt.Fprintln(e.stdout, "(student forward = forward − teacher, backward = forward+backward − forward, optimizer = step − forward+backward: differences of separately compiled graphs)")
		for _, k := range []string{"student_forward", "student_backward", "optimizer"} {
			if r.Split[k] < 0 {
				fmt.Fprintf(e.stdout, "%s is negative: the timing noise exceeds that part; rerun with more --steps on a quieter machine\n", k)
			}
		}
	}
}

// writeJPEGShard writes a webdataset shard of n synthetic scenes as JPEG
// images of side px (quality 90) with their captions; the images are drawn
// and encoded on GOMAXPROCS goroutines, written in order.
func writeJPEGShard(ctx context.Context, path string, n, px int, seed uint64) error {
	syn, err := data.NewSynthetic(data.SyntheticOptions{N: n, Seed: seed + 7, Size: px})
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	encode := func(i int) ([]byte, error) {
		m, err := syn.Image(i)
		if err != nil {
			return nil, err
		}
		img := image.NewRGBA(image.Rect(0, 0, m.Width, m.Height))
		for p := 0; p < m.Width*m.Height; p++ {
			img.Pix[4*p], img.Pix[4*p+1], img.Pix[4*p+2], img.Pix[4*p+3] = m.Pix[3*p], m.Pix[3*p+1], m.Pix[3*p+2], 255
		}
		var buf bytes.Buffer
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
		return buf.Bytes(), err
	}
	workers := runtime.GOMAXPROCS(0)
	chunk := 8 * workers
	out := make([][]byte, chunk)
	errs := make([]error, chunk)
	for lo := 0; lo < n; lo += chunk {
		if err := ctx.Err(); err != nil {
			f.Close()
			return err
		}
		hi := min(n, lo+chunk)
		var wg sync.WaitGroup
		next := make(chan int)
		for range workers {
			wg.Go(func() {
				for i := range next {
					out[i-lo], errs[i-lo] = encode(i)
				}
			})
		}
		for i := lo; i < hi; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		for i := lo; i < hi; i++ {
			if errs[i-lo] != nil {
				f.Close()
				return errs[i-lo]
			}
			key := fmt.Sprintf("%06d", i)
			if err := add(key+".jpg", out[i-lo]); err != nil {
				f.Close()
				return err
			}
			if err := add(key+".txt", []byte(syn.Sample(i).Captions[0])); err != nil {
				f.Close()
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
