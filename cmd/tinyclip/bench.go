package main

import (
	"context"
	_ "embed"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/config"
)

func init() {
	register(command{"bench", "measure images/s, texts/s and pairs/s of a model (or of random weights for a zoo architecture); 'bench distill': distillation steps/s", runBench, 91})
}

// benchClassNames are the 1000 ImageNet class names of the official
// zero-shot recipe; the benchmark texts are "a photo of a {class}.".
//
//go:embed bench_classnames.txt
var benchClassNames string

// benchPrompts returns n prompts, cycling through the ImageNet classes
// starting at class first.
func benchPrompts(n, first int) []string {
	names := strings.Split(strings.TrimSpace(benchClassNames), "\n")
	out := make([]string, n)
	for i := range out {
		out[i] = "a photo of a " + names[(first+i)%len(names)] + "."
	}
	return out
}

// intList is a comma-separated list of positive integers.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	*l = out
	return nil
}

// benchRow is one (batch, threads) measurement.
type benchRow struct {
	Batch      int     `json:"batch"`
	Threads    int     `json:"threads"`
	MsImage    float64 `json:"ms_per_image"`
	ImagesPerS float64 `json:"images_per_s"`
	MsText     float64 `json:"ms_per_text"`
	TextsPerS  float64 `json:"texts_per_s"`
	PairsPerS  float64 `json:"pairs_per_s"`
	ImageGMACs float64 `json:"image_gmac_per_s"`
	TextGMACs  float64 `json:"text_gmac_per_s"`
}

// benchReport is the --json output.
type benchReport struct {
	Model          string     `json:"model"`
	Random         bool       `json:"random"`
	Seed           uint64     `json:"seed,omitempty"`
	Precision      string     `json:"precision"`
	ImageGMACs     float64    `json:"image_gmacs"`
	TextGMACs77    float64    `json:"text_gmacs_77_tokens"`
	TextTokens     float64    `json:"text_tokens_mean"`
	TextGMACs      float64    `json:"text_gmacs_as_run"`
	LoadMs         float64    `json:"load_ms"`
	FirstImageMs   float64    `json:"first_image_ms"`
	Iters          int        `json:"iters"`
	SpinWaitUs     float64    `json:"spin_wait_us"`
	Rows           []benchRow `json:"rows"`
	CosineImageMin *float64   `json:"cosine_vs_fp32_image_min,omitempty"`
	CosineTextMin  *float64   `json:"cosine_vs_fp32_text_min,omitempty"`
}

func runBench(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "distill" {
		return runBenchDistill(ctx, e, args[1:])
	}
	fs := newFlagSet(e, "bench", "(--model PATH | --random NAME [--seed N]) [--batch 1,8] [--threads 1,2] [--precision fp32|bf16] [--spin 50us] [--iters N] [--json]")
	model := fs.String("model", "", "model to measure (any form 'tinyclip embed' accepts)")
	configPath := fs.String("config", "", "config.json for --model (see 'tinyclip embed')")
	random := fs.String("random", "", "measure random weights of this zoo config name or config.json instead of a model (written to a temporary directory, as 'tinyclip init' does)")
	seed := fs.Uint64("seed", 0, "seed of the --random weights")
	batches := intList{1, 8}
	fs.Var(&batches, "batch", "batch sizes, comma-separated")
	threads := intList{1}
	fs.Var(&threads, "threads", "thread counts, comma-separated (default 1)")
	precision := fs.String("precision", "fp32", "arithmetic: fp32 or bf16 (bf16 also reports the cosine against fp32)")
	iters := fs.Int("iters", 10, "timed calls per measurement (the median is reported)")
	warmup := fs.Int("warmup", 2, "untimed calls before each measurement")
	asJSON := fs.Bool("json", false, "print a JSON report")
	spin := fs.Duration("spin", 0, "how long idle engine threads poll for work before sleeping, e.g. 50us (default 0: sleep at once; see tinyclip.SetSpinWait)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	if (*model == "") == (*random == "") {
		return usagef("give exactly one of --model and --random")
	}
	if *iters < 1 || *warmup < 0 {
		return usagef("--iters must be at least 1 and --warmup not negative")
	}
	if *spin < 0 {
		return usagef("--spin must not be negative")
	}
	defer tinyclip.SetSpinWait(tinyclip.SetSpinWait(*spin))
	prec, err := tinyclip.ParsePrecision(*precision)
	if err != nil {
		return usagef("%v", err)
	}
	rep := benchReport{Random: *random != "", Iters: *iters, SpinWaitUs: float64(spin.Microseconds())}
	path := *model
	if *random != "" {
		cfg, arch, err := initArch(*random)
		if err != nil {
			return err
		}
		dir, err := os.MkdirTemp("", "tinyclip-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := writeRandomModel(dir, cfg, arch, *seed); err != nil {
			return err
		}
		path, rep.Model, rep.Seed = dir, *random, *seed
	} else {
		if path, err = resolveModelCtx(ctx, e.stderr, path); err != nil {
			return err
		}
		rep.Model = *model
	}
	load := func(threads int, p tinyclip.Precision) (*tinyclip.Model, error) {
		opts := []tinyclip.Option{tinyclip.WithThreads(threads), tinyclip.WithPrecision(p)}
		if *configPath != "" {
			opts = append(opts, tinyclip.WithConfig(*configPath))
		}
		return tinyclip.Load(ctx, path, opts...)
	}

	maxBatch := slices.Max(batches)
	texts := benchPrompts(maxBatch*(*iters+*warmup), 0)
	var arch *config.Arch
	for ti, th := range threads {
		start := time.Now()
		m, err := load(th, prec)
		if err != nil {
			return err
		}
		loadMs := msSince(start)
		s := m.Config().VisionCfg.ImageSize
		if s == 0 {
			s = 224
		}
		pixels := benchPixels(maxBatch, s)
		if ti == 0 {
			rep.Precision = string(m.Precision())
			rep.LoadMs = loadMs
			start = time.Now()
			if _, err := m.EncodePixels(ctx, pixels[:3*s*s], 1); err != nil {
				return err
			}
			rep.FirstImageMs = msSince(start)
			if arch, err = config.FromConfig(m.Config()); err != nil {
				return err
			}
			rep.ImageGMACs = float64(arch.MACs().Image) / 1e9
			rep.TextGMACs77 = float64(arch.MACs().Text) / 1e9
			rep.TextTokens, rep.TextGMACs, err = textMACs(m, arch, texts)
			if err != nil {
				return err
			}
			if m.Precision() != tinyclip.FP32 {
				if err := benchCosine(ctx, m, func() (*tinyclip.Model, error) { return load(th, tinyclip.FP32) }, pixels, maxBatch, texts[:maxBatch], &rep); err != nil {
					return err
				}
			}
		}
		for _, b := range batches {
			if err := ctx.Err(); err != nil {
				return err
			}
			row := benchRow{Batch: b, Threads: th}
			next := 0
			tImg, err := timeCalls(*warmup, *iters, func() error {
				_, err := m.EncodePixels(ctx, pixels[:b*3*s*s], b, tinyclip.Raw())
				return err
			})
			if err != nil {
				return err
			}
			tTxt, err := timeCalls(*warmup, *iters, func() error {
				_, err := m.EncodeTexts(ctx, texts[next:next+b], tinyclip.Raw())
				next += b
				return err
			})
			if err != nil {
				return err
			}
			row.MsImage, row.MsText = tImg/float64(b), tTxt/float64(b)
			row.ImagesPerS, row.TextsPerS = 1000/row.MsImage, 1000/row.MsText
			row.PairsPerS = 1000 / (row.MsImage + row.MsText)
			row.ImageGMACs = rep.ImageGMACs / row.MsImage * 1000
			row.TextGMACs = rep.TextGMACs / row.MsText * 1000
			rep.Rows = append(rep.Rows, row)
		}
	}
	if *asJSON {
		return e.printJSON(rep)
	}
	printBench(e, &rep)
	return nil
}

// benchPixels returns n random normalised images of side s (fixed seed).
func benchPixels(n, s int) []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	p := make([]float32, n*3*s*s)
	for i := range p {
		p[i] = float32(r.NormFloat64())
	}
	return p
}

// timeCalls runs f warmup times, then iters times, and returns the median
// milliseconds of the timed calls.
func timeCalls(warmup, iters int, f func() error) (float64, error) {
	for range warmup {
		if err := f(); err != nil {
			return 0, err
		}
	}
	ms := make([]float64, iters)
	for i := range ms {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		ms[i] = msSince(start)
	}
	slices.Sort(ms)
	if iters%2 == 1 {
		return ms[iters/2], nil
	}
	return (ms[iters/2-1] + ms[iters/2]) / 2, nil
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Nanoseconds()) / 1e6 }

// textMACs returns the mean token count of texts (up to the first EOT, what
// the engine runs) and the mean GMACs of the text tower on them.
func textMACs(m *tinyclip.Model, arch *config.Arch, texts []string) (float64, float64, error) {
	var tokens, macs float64
	for _, t := range texts {
		ids, err := m.Tokenize(t)
		if err != nil {
			return 0, 0, err
		}
		a := *arch
		a.Text.ContextLength = len(ids)
		tokens += float64(len(ids))
		macs += float64(a.MACs().Text) / 1e9
	}
	n := float64(len(texts))
	return tokens / n, macs / n, nil
}

// benchCosine encodes the benchmark inputs with m and an FP32 model and
// records the smallest cosine of each tower.
func benchCosine(ctx context.Context, m *tinyclip.Model, loadFP32 func() (*tinyclip.Model, error), pixels []float32, n int, texts []string, rep *benchReport) error {
	fp, err := loadFP32()
	if err != nil {
		return err
	}
	a, err := m.EncodePixels(ctx, pixels, n)
	if err != nil {
		return err
	}
	b, err := fp.EncodePixels(ctx, pixels, n)
	if err != nil {
		return err
	}
	ci := minCosine(a, b)
	if a, err = m.EncodeTexts(ctx, texts); err != nil {
		return err
	}
	if b, err = fp.EncodeTexts(ctx, texts); err != nil {
		return err
	}
	ct := minCosine(a, b)
	rep.CosineImageMin, rep.CosineTextMin = &ci, &ct
	return nil
}

func minCosine(a, b [][]float32) float64 {
	c := 1.0
	for i := range a {
		c = math.Min(c, float64(tinyclip.Cosine(a[i], b[i])))
	}
	return c
}

func printBench(e *env, r *benchReport) {
	src := r.Model
	if r.Random {
		src = fmt.Sprintf("%s (random weights, seed %d)", r.Model, r.Seed)
	}
	fmt.Fprintf(e.stdout, "model      %s\nprecision  %s\n", src, r.Precision)
	fmt.Fprintf(e.stdout, "GMACs      image %.3f, text %.4f on %.2f tokens (%.3f on 77)\n", r.ImageGMACs, r.TextGMACs, r.TextTokens, r.TextGMACs77)
	fmt.Fprintf(e.stdout, "start-up   load %.0f ms, first image %.1f ms\n", r.LoadMs, r.FirstImageMs)
	if r.CosineImageMin != nil {
		fmt.Fprintf(e.stdout, "cosine     vs fp32: image ≥ %.6f, text ≥ %.6f\n", *r.CosineImageMin, *r.CosineTextMin)
	}
	if r.SpinWaitUs > 0 {
		fmt.Fprintf(e.stdout, "spin wait  %g µs (idle threads poll before sleeping)\n", r.SpinWaitUs)
	}
	fmt.Fprintf(e.stdout, "median of %d calls; texts \"a photo of a {ImageNet class}.\"\n\n", r.Iters)
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "batch\tthreads\tms/image\timages/s\tGMAC/s\tms/text\ttexts/s\tpairs/s\t")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%d\t%d\t%.2f\t%.1f\t%.1f\t%.3f\t%.0f\t%.1f\t\n", row.Batch, row.Threads, row.MsImage, row.ImagesPerS,
			row.ImageGMACs, row.MsText, row.TextsPerS, row.PairsPerS)
	}
	tw.Flush()
}
