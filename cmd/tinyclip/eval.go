package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/data"
	"github.com/tinyclip-go/tinyclip/internal/eval"
	"github.com/tinyclip-go/tinyclip/internal/eval/plot"
	"github.com/tinyclip-go/tinyclip/internal/npy"
	"github.com/tinyclip-go/tinyclip/internal/progress"
)

func init() {
	register(command{"eval", "evaluate a model: zero-shot classification, image-text retrieval", runEval, 50})
}

func runEval(ctx context.Context, e *env, args []string) error {
	usage := func() {
		fmt.Fprint(e.stderr, `Usage: tinyclip eval <zeroshot|retrieval> [flags]

  zeroshot    zero-shot classification accuracy with the official recipe
              (ImageFolder directory, path,label CSV, or tar: ImageFolder or webdataset)
  retrieval   image->text and text->image recall@1/5/10
              (image_path,caption CSV or webdataset tar with .txt captions)

Run 'tinyclip eval <zeroshot|retrieval> -h' for the flags.
`)
	}
	if len(args) == 0 {
		usage()
		return usagef("missing evaluation: zeroshot or retrieval")
	}
	switch args[0] {
	case "zeroshot":
		return runZeroShot(ctx, e, args[1:])
	case "retrieval":
		return runRetrieval(ctx, e, args[1:])
	case "-h", "--help", "help":
		usage()
		return nil
	}
	usage()
	return usagef("unknown evaluation %q: zeroshot or retrieval", args[0])
}

// expandData expands glob patterns in --data values (for shard lists such as
// shards/train-*.tar); a value without a match is kept as given so that
// opening it reports the problem.
func expandData(values []string) []string {
	var out []string
	for _, v := range values {
		if strings.ContainsAny(v, "*?[") {
			if m, err := filepath.Glob(v); err == nil && len(m) > 0 {
				sort.Strings(m)
				out = append(out, m...)
				continue
			}
		}
		out = append(out, v)
	}
	return out
}

// modelFingerprint identifies what the text tower computes: the weights hash
// plus the vocabulary file given with --vocab.
func modelFingerprint(m *tinyclip.Model, vocab string) (string, error) {
	h, err := m.WeightsHash()
	if err != nil {
		return "", err
	}
	if vocab == "" {
		return h, nil
	}
	b, err := os.ReadFile(vocab)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return h + "+vocab:" + hex.EncodeToString(s[:]), nil
}

// classifierResult describes how the classifier was obtained.
type classifierResult struct {
	weights [][]float32
	cached  bool
	seconds float64
	path    string
}

// zeroShotClassifier loads the classifier from the cache or builds it (with
// a progress bar on a terminal) and stores it.
func zeroShotClassifier(ctx context.Context, e *env, m *tinyclip.Model, mf modelFlags, classes, templates []string, cacheDir string, noCache bool) (*classifierResult, error) {
	start := time.Now()
	var cache eval.Cache
	var key string
	if !noCache {
		fp, err := modelFingerprint(m, *mf.vocab)
		if err != nil {
			return nil, err
		}
		key = eval.CacheKey(fp, classes, templates)
		if cacheDir == "" {
			if cacheDir, err = eval.DefaultCacheDir(); err != nil {
				return nil, err
			}
		}
		cache = eval.Cache{Dir: cacheDir}
		w, err := cache.Load(key)
		switch {
		case err == nil && len(w) == len(classes) && len(w[0]) == m.EmbedDim():
			return &classifierResult{weights: w, cached: true, seconds: time.Since(start).Seconds(), path: cache.Path(key)}, nil
		case err == nil:
			fmt.Fprintf(e.stderr, "tinyclip eval: ignoring the cached classifier %s: %d×%d, want %d×%d\n",
				cache.Path(key), len(w), len(w[0]), len(classes), m.EmbedDim())
		case err != eval.ErrNotCached: // present but damaged: rebuilt and replaced below
			fmt.Fprintf(e.stderr, "tinyclip eval: ignoring the cached classifier: %v\n", err)
		}
	}
	bar := progress.New(e.stderr, int64(len(classes)*max(1, len(templates))), "classifier", progress.Options{Unit: "prompt"})
	enc := func(ctx context.Context, texts []string) ([][]float32, error) {
		return m.EncodeTexts(ctx, texts, tinyclip.Raw())
	}
	done := 0
	w, err := eval.BuildClassifier(ctx, enc, classes, templates, eval.BuildOptions{
		Progress: func(d, total int) { bar.Add(int64(d - done)); done = d },
	})
	bar.Finish()
	if err != nil {
		return nil, err
	}
	res := &classifierResult{weights: w, seconds: time.Since(start).Seconds()}
	if !noCache {
		if err := cache.Store(key, w); err != nil {
			fmt.Fprintf(e.stderr, "tinyclip eval: classifier not cached: %v\n", err)
		} else {
			res.path = cache.Path(key)
		}
	}
	return res, nil
}

// zsPerClass is one class of the --json report.
type zsPerClass struct {
	Index   int     `json:"index"`
	Class   string  `json:"class"`
	Correct int     `json:"correct"`
	Total   int     `json:"total"`
	Top1    float64 `json:"top1"`
}

// evalBadImage is an image that could not be read or decoded.
type evalBadImage struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// zeroShotReport is the --json output of eval zeroshot.
type zeroShotReport struct {
	Data              []string       `json:"data"`
	Images            int            `json:"images"`
	Unreadable        int            `json:"unreadable"`
	Unlabelled        int            `json:"unlabelled"`
	Top1              float64        `json:"top1"`
	TopK              float64        `json:"top5"`
	K                 int            `json:"k"`
	MeanPerClassTop1  float64        `json:"mean_per_class_top1"`
	Classes           int            `json:"classes"`
	Templates         int            `json:"templates"`
	ClassifierCached  bool           `json:"classifier_cached"`
	ClassifierSeconds float64        `json:"classifier_seconds"`
	ClassifierFile    string         `json:"classifier_file,omitempty"`
	Seconds           float64        `json:"seconds"`
	ImagesPerSecond   float64        `json:"images_per_second"`
	PerClass          []zsPerClass   `json:"per_class"`
	UnreadableImages  []evalBadImage `json:"unreadable_images,omitempty"`
}

// zsPrediction is one line of --predictions (the format of refclip.py zeroshot).
type zsPrediction struct {
	Path  string `json:"path"`
	Label int    `json:"label"`
	Pred  int    `json:"pred"`
	Top5  []int  `json:"top5"`
}

// evalPixels is what the decode goroutines hand to the encoder.
type evalPixels = []float32

// encodeReadable encodes the images of a pipeline batch that could be read
// and returns those items with their embeddings. An unreadable one is
// appended to bad and reported on stderr (followed by note) or, with
// strict, ends the run with an error.
func (e *env) encodeReadable(ctx context.Context, m *tinyclip.Model, items []data.Item[evalPixels], strict bool, bad *[]evalBadImage, note string) ([]data.Item[evalPixels], [][]float32, error) {
	var pixels []float32
	var ok []data.Item[evalPixels]
	for _, it := range items {
		if it.Err != nil {
			*bad = append(*bad, evalBadImage{it.Sample.Name, it.Err.Error()})
			if strict {
				return nil, nil, fmt.Errorf("unreadable image %s: %w (--strict)", it.Sample.Name, it.Err)
			}
			fmt.Fprintf(e.stderr, "tinyclip eval: unreadable image %s: %v%s\n", it.Sample.Name, it.Err, note)
			continue
		}
		pixels = append(pixels, it.Value...)
		ok = append(ok, it)
	}
	if len(ok) == 0 {
		return nil, nil, nil
	}
	emb, err := m.EncodePixels(ctx, pixels, len(ok))
	return ok, emb, err
}

func runZeroShot(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "eval zeroshot", "--model PATH --data DIR|FILE.csv|FILE.tar [--classes NAME|FILE] [--templates NAME|FILE] [--json] [--predictions FILE.jsonl] [--plot FILE.png]")
	mf := addModelFlags(fs)
	var dataArgs stringList
	fs.Var(&dataArgs, "data", "ImageFolder directory, path,label CSV, or tar (ImageFolder or webdataset shard with .cls); repeatable, globs allowed")
	classesArg := fs.String("classes", "", "class names: imagenet, cifar10, cifar100 or a file with one name per line (default: the ImageFolder's folder names)")
	templatesArg := fs.String("templates", "", "prompt templates: openai80, simple7, cifar18 or a file with one template per line, {} for the class (default: cifar18 for CIFAR classes, else openai80)")
	batch := fs.Int("batch", 32, "images per engine call")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "goroutines decoding and preprocessing images")
	limit := fs.Int("limit", 0, "evaluate only the first N images (0: all)")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	predPath := fs.String("predictions", "", "write one JSON line per image: {path, label, pred, top5}")
	plotPath := fs.String("plot", "", "write the confusion matrix as a PNG image")
	clsOut := fs.String("classifier-out", "", "save the [classes, dim] classifier as .npy")
	strict := fs.Bool("strict", false, "stop at the first unreadable image (default: report it and go on)")
	cacheDir := fs.String("cache-dir", "", "classifier cache folder (default $XDG_CACHE_HOME/tinyclip/zeroshot)")
	noCache := fs.Bool("no-cache", false, "always build the classifier, do not read or write the cache")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q: give the dataset with --data", pos)
	}
	if *mf.model == "" {
		return usagef("--model is required")
	}
	if len(dataArgs) == 0 {
		return usagef("--data is required (ImageFolder directory, CSV or tar)")
	}
	if *batch <= 0 || *workers <= 0 || *limit < 0 {
		return usagef("--batch and --workers must be positive, --limit not negative")
	}

	var classes []string
	if *classesArg != "" {
		if classes, err = eval.LoadClasses(*classesArg); err != nil {
			return err
		}
	}
	paths := expandData(dataArgs)
	ds, err := data.OpenAll(paths, data.Options{Classes: classes})
	if err != nil {
		return err
	}
	defer ds.Close()
	if err := checkClasses(e, ds, &classes); err != nil {
		return err
	}
	tplArg := *templatesArg
	if tplArg == "" {
		tplArg = eval.DefaultTemplates(*classesArg)
	}
	templates, err := eval.LoadTemplates(tplArg)
	if err != nil {
		return err
	}

	var pred *bufio.Writer
	var predFile *os.File
	if *predPath != "" {
		if predFile, err = os.Create(*predPath); err != nil {
			return err
		}
		defer predFile.Close()
		pred = bufio.NewWriter(predFile)
	}

	m, err := mf.load(ctx, e, "")
	if err != nil {
		return err
	}
	cls, err := zeroShotClassifier(ctx, e, m, mf, classes, templates, *cacheDir, *noCache)
	if err != nil {
		return err
	}
	if *clsOut != "" {
		if err := writeClassifierNpy(*clsOut, cls.weights); err != nil {
			return err
		}
	}

	n := ds.Len()
	var indices []int
	if *limit > 0 && *limit < n {
		n = *limit
		indices = make([]int, n)
		for i := range indices {
			indices[i] = i
		}
	}
	acc := eval.NewAccuracy(len(classes), 5)
	rep := &zeroShotReport{Data: paths, Classes: len(classes), Templates: len(templates), K: acc.K(),
		ClassifierCached: cls.cached, ClassifierSeconds: cls.seconds, ClassifierFile: cls.path}
	start := time.Now()
	bar := progress.New(e.stderr, int64(n), "images", progress.Options{Unit: "img"})
	p := data.NewPipeline(ctx, ds, func(_ data.Sample, b []byte) (evalPixels, error) { return m.PreprocessRGB(b) },
		data.PipelineOptions{BatchSize: *batch, Workers: *workers, Indices: indices})
	defer p.Close()
	logits := make([]float32, len(classes))
	for {
		items, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			bar.Finish()
			return err
		}
		ok, emb, err := e.encodeReadable(ctx, m, items, *strict, &rep.UnreadableImages, "")
		rep.Unreadable = len(rep.UnreadableImages)
		if err != nil {
			bar.Finish()
			return err
		}
		if len(ok) > 0 {
			for k, it := range ok {
				if logits, err = eval.Logits(logits, cls.weights, emb[k]); err != nil {
					return err
				}
				top := eval.TopK(logits, acc.K())
				rep.Images++
				label := it.Sample.Label
				if label < 0 {
					rep.Unlabelled++
				} else if err := acc.Add(label, top); err != nil {
					return fmt.Errorf("%s: %w", it.Sample.Name, err)
				}
				if pred != nil {
					b, _ := json.Marshal(zsPrediction{it.Sample.Name, label, top[0], top})
					pred.Write(append(b, '\n'))
				}
			}
		}
		bar.Add(int64(len(items)))
	}
	bar.Finish()
	rep.Seconds = time.Since(start).Seconds()
	if rep.Seconds > 0 {
		rep.ImagesPerSecond = float64(rep.Images) / rep.Seconds
	}
	if pred != nil {
		if err := pred.Flush(); err != nil {
			return err
		}
		if err := predFile.Close(); err != nil {
			return err
		}
	}
	if rep.Images == 0 {
		return fmt.Errorf("no image of %s could be read (%d unreadable)", strings.Join(paths, ", "), rep.Unreadable)
	}
	rep.Top1, rep.TopK, rep.MeanPerClassTop1 = acc.Top1(), acc.TopK(), acc.MeanPerClass()
	for i, c := range acc.PerClass() {
		rep.PerClass = append(rep.PerClass, zsPerClass{i, classes[i], c.Correct, c.Total, c.Accuracy()})
	}
	if *plotPath != "" {
		var buf bytes.Buffer
		title := fmt.Sprintf("zero-shot confusion (top-1 %.2f%%, %d images)", 100*rep.Top1, acc.N())
		if err := plot.Confusion(&buf, acc.Confusion(), classes, title); err != nil {
			return err
		}
		if err := os.WriteFile(*plotPath, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if *asJSON {
		return e.printJSON(rep)
	}
	return printZeroShot(e.stdout, rep)
}

// checkClasses takes the class names from the dataset when none were given
// and checks that the dataset's class folders fit the class list.
func checkClasses(e *env, ds data.Dataset, classes *[]string) error {
	folders := ds.Classes()
	if *classes == nil {
		if folders == nil {
			return usagef("--classes is required: the dataset (CSV or webdataset) names no classes")
		}
		*classes = folders
		return nil
	}
	if folders == nil {
		return nil
	}
	if len(folders) > len(*classes) {
		return fmt.Errorf("the dataset has %d class folders but the class list %d names: labels are folder positions, so the lists must match", len(folders), len(*classes))
	}
	if len(folders) < len(*classes) {
		fmt.Fprintf(e.stderr, "tinyclip eval: warning: %d class folders, %d class names; folder i is class i\n", len(folders), len(*classes))
		return nil
	}
	same, inOrder := true, true
	set := map[string]int{}
	for i, c := range *classes {
		set[folderKey(c)]++
		if folderKey(c) != folderKey(folders[i]) {
			inOrder = false
		}
	}
	for _, f := range folders {
		if set[folderKey(f)] == 0 {
			same = false
		}
	}
	if same && !inOrder {
		return fmt.Errorf("the class folders have the names of the class list but in another order: labels are sorted folder positions, so the class list must be in sorted folder order")
	}
	return nil
}

func folderKey(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", " ")) }

func printZeroShot(w io.Writer, r *zeroShotReport) error {
	fmt.Fprintf(w, "top-1 %.2f%%  top-%d %.2f%%  mean per-class top-1 %.2f%%\n", 100*r.Top1, r.K, 100*r.TopK, 100*r.MeanPerClassTop1)
	fmt.Fprintf(w, "%d images (%d unreadable, %d unlabelled), %d classes, %d templates\n", r.Images, r.Unreadable, r.Unlabelled, r.Classes, r.Templates)
	how := "built"
	if r.ClassifierCached {
		how = "loaded from the cache"
	}
	fmt.Fprintf(w, "classifier %s in %.2fs; images: %.1fs, %.1f images/s\n\nper-class top-1:\n", how, r.ClassifierSeconds, r.Seconds, r.ImagesPerSecond)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, c := range r.PerClass {
		if c.Total == 0 {
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%.2f%%\t%d/%d\t\n", c.Index, c.Class, 100*c.Top1, c.Correct, c.Total)
	}
	return tw.Flush()
}

// writeClassifierNpy saves a classifier as a [classes, dim] float32 .npy file.
func writeClassifierNpy(path string, rows [][]float32) error {
	if len(rows) == 0 {
		return errors.New("empty classifier")
	}
	flat := make([]float32, 0, len(rows)*len(rows[0]))
	for _, r := range rows {
		flat = append(flat, r...)
	}
	var buf bytes.Buffer
	if err := npy.WriteFloat32(&buf, []int{len(rows), len(rows[0])}, flat); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// retrievalReport is the --json output of eval retrieval.
type retrievalReport struct {
	Data            []string       `json:"data"`
	Images          int            `json:"images"`
	Captions        int            `json:"captions"`
	Unreadable      int            `json:"unreadable"`
	ImageToText     eval.RankStats `json:"image_to_text"`
	TextToImage     eval.RankStats `json:"text_to_image"`
	Seconds         float64        `json:"seconds"`
	ImagesPerSecond float64        `json:"images_per_second"`
	TextsPerSecond  float64        `json:"texts_per_second"`
	UnreadableFiles []evalBadImage `json:"unreadable_images,omitempty"`
}

func runRetrieval(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "eval retrieval", "--model PATH --data CAPTIONS.csv|SHARD.tar [--json]")
	mf := addModelFlags(fs)
	var dataArgs stringList
	fs.Var(&dataArgs, "data", "image_path,caption CSV (several rows per image allowed) or webdataset tar with .txt captions; repeatable, globs allowed")
	batch := fs.Int("batch", 32, "images per engine call")
	textBatch := fs.Int("text-batch", 256, "captions per engine call")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "goroutines decoding and preprocessing images")
	limit := fs.Int("limit", 0, "evaluate only the first N images (0: all)")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	strict := fs.Bool("strict", false, "stop at the first unreadable image (default: report it, leave it and its captions out)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q: give the dataset with --data", pos)
	}
	if *mf.model == "" {
		return usagef("--model is required")
	}
	if len(dataArgs) == 0 {
		return usagef("--data is required (image_path,caption CSV or webdataset tar)")
	}
	if *batch <= 0 || *textBatch <= 0 || *workers <= 0 || *limit < 0 {
		return usagef("--batch, --text-batch and --workers must be positive, --limit not negative")
	}
	paths := expandData(dataArgs)
	ds, err := data.OpenAll(paths, data.Options{Captions: true})
	if err != nil {
		return err
	}
	defer ds.Close()
	n := ds.Len()
	var indices []int
	if *limit > 0 && *limit < n {
		n = *limit
		indices = make([]int, n)
		for i := range indices {
			indices[i] = i
		}
	}
	m, err := mf.load(ctx, e, "")
	if err != nil {
		return err
	}
	rep := &retrievalReport{Data: paths}
	start := time.Now()
	bar := progress.New(e.stderr, int64(n), "images", progress.Options{Unit: "img"})
	p := data.NewPipeline(ctx, ds, func(_ data.Sample, b []byte) (evalPixels, error) { return m.PreprocessRGB(b) },
		data.PipelineOptions{BatchSize: *batch, Workers: *workers, Indices: indices})
	defer p.Close()
	var images [][]float32
	var captions []string
	var owner []int
	for {
		items, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			bar.Finish()
			return err
		}
		for i := range items {
			if items[i].Err == nil && len(items[i].Sample.Captions) == 0 {
				items[i].Err = errors.New("no caption")
			}
		}
		ok, emb, err := e.encodeReadable(ctx, m, items, *strict, &rep.UnreadableFiles, " (left out with its captions)")
		rep.Unreadable = len(rep.UnreadableFiles)
		if err != nil {
			bar.Finish()
			return err
		}
		if len(ok) > 0 {
			for k, it := range ok {
				for _, c := range it.Sample.Captions {
					captions = append(captions, c)
					owner = append(owner, len(images))
				}
				images = append(images, emb[k])
			}
		}
		bar.Add(int64(len(items)))
	}
	bar.Finish()
	imgSeconds := time.Since(start).Seconds()
	if len(images) == 0 {
		return fmt.Errorf("no image of %s could be read (%d unreadable)", strings.Join(paths, ", "), rep.Unreadable)
	}
	tstart := time.Now()
	tbar := progress.New(e.stderr, int64(len(captions)), "captions", progress.Options{Unit: "text"})
	var texts [][]float32
	for s := 0; s < len(captions); s += *textBatch {
		emb, err := m.EncodeTexts(ctx, captions[s:min(s+*textBatch, len(captions))])
		if err != nil {
			tbar.Finish()
			return err
		}
		texts = append(texts, emb...)
		tbar.Add(int64(len(emb)))
	}
	tbar.Finish()
	txtSeconds := time.Since(tstart).Seconds()
	res, err := eval.Retrieval(images, texts, owner, eval.RetrievalKs)
	if err != nil {
		return err
	}
	rep.Images, rep.Captions = len(images), len(captions)
	rep.ImageToText, rep.TextToImage = res.ImageToText, res.TextToImage
	rep.Seconds = time.Since(start).Seconds()
	if imgSeconds > 0 {
		rep.ImagesPerSecond = float64(len(images)) / imgSeconds
	}
	if txtSeconds > 0 {
		rep.TextsPerSecond = float64(len(captions)) / txtSeconds
	}
	if *asJSON {
		return e.printJSON(rep)
	}
	w := e.stdout
	for _, d := range []struct {
		name string
		st   eval.RankStats
		unit string
	}{{"image→text", rep.ImageToText, "images"}, {"text→image", rep.TextToImage, "captions"}} {
		fmt.Fprintf(w, "%s  R@1 %6.2f%%  R@5 %6.2f%%  R@10 %6.2f%%  mean rank %.2f  median rank %.0f  (%d %s)\n", d.name,
			100*d.st.Recall[1], 100*d.st.Recall[5], 100*d.st.Recall[10], d.st.MeanRank, d.st.MedianRank, d.st.Queries, d.unit)
	}
	fmt.Fprintf(w, "%d images (%d unreadable), %d captions; %.1f images/s, %.1f captions/s\n",
		rep.Images, rep.Unreadable, rep.Captions, rep.ImagesPerSecond, rep.TextsPerSecond)
	return nil
}
