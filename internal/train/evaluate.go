package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/data"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/eval"
	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

// Evaluator measures a model during training. The trainer builds an
// engine model from the current weights and hands it to each evaluator;
// metric names are prefixed with the evaluator's Name and "/" in the log.
type Evaluator interface {
	Name() string
	Evaluate(ctx context.Context, m *engine.Model) (map[string]float64, error)
}

// ZeroShot is the official zero-shot classification (spec §8) on labelled
// held-out images: a classifier from the class names and templates, the
// eval transform (resize, centre crop), top-1 and top-5 accuracy
// ("top1", "top5") and the mean per-class accuracy ("mean_per_class").
type ZeroShot struct {
	// Data holds labelled images (ImageFolder, label CSV, Synthetic, ...).
	Data data.Dataset
	// Classes name the labels; nil means Data.Classes().
	Classes []string
	// Templates are prompt templates with "{}" (or "{class}"); empty
	// means data.DefaultTemplate.
	Templates []string
	// Tokenize turns a prompt into token ids.
	Tokenize func(string) ([]int, error)
	// Batch is the number of images per engine call (default 64).
	Batch int
	// Label names the evaluator ("zeroshot" when empty).
	Label string
}

// Name implements Evaluator.
func (z *ZeroShot) Name() string {
	if z.Label != "" {
		return z.Label
	}
	return "zeroshot"
}

// Evaluate implements Evaluator.
func (z *ZeroShot) Evaluate(ctx context.Context, m *engine.Model) (map[string]float64, error) {
	classes := z.Classes
	if classes == nil {
		classes = z.Data.Classes()
	}
	if len(classes) == 0 {
		return nil, eval.ErrNoClasses
	}
	templates := make([]string, 0, len(z.Templates))
	for _, t := range z.Templates {
		templates = append(templates, strings.ReplaceAll(t, "{class}", "{}"))
	}
	if len(templates) == 0 {
		templates = []string{data.DefaultTemplate}
	}
	cls, err := eval.BuildClassifier(ctx, textEncoder(m, z.Tokenize), classes, templates, eval.BuildOptions{})
	if err != nil {
		return nil, err
	}
	acc := eval.NewAccuracy(len(classes), 5)
	logits := make([]float32, len(classes))
	err = encodeDataset(ctx, m, z.Data, z.Batch, func(s data.Sample, emb []float32) error {
		if s.Label < 0 || s.Label >= len(classes) {
			return fmt.Errorf("%s: label %d outside the %d classes", s.Name, s.Label, len(classes))
		}
		if logits, err = eval.Logits(logits, cls, emb); err != nil {
			return err
		}
		return acc.Add(s.Label, eval.TopK(logits, acc.K()))
	})
	if err != nil {
		return nil, err
	}
	return map[string]float64{"top1": acc.Top1(), "top5": acc.TopK(), "mean_per_class": acc.MeanPerClass(), "images": float64(acc.N())}, nil
}

// Retrieval is image–text retrieval (open_clip's recall@k, spec §8) on
// captioned held-out images (caption CSV, webdataset with .txt, Synthetic):
// "i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5" and the ten-best recalls.
type Retrieval struct {
	// Data holds images with captions.
	Data data.Dataset
	// Tokenize turns a caption into token ids.
	Tokenize func(string) ([]int, error)
	// Batch is the number of images or captions per engine call (default 64).
	Batch int
	// Label names the evaluator ("retrieval" when empty).
	Label string
}

// Name implements Evaluator.
func (r *Retrieval) Name() string {
	if r.Label != "" {
		return r.Label
	}
	return "retrieval"
}

// Evaluate implements Evaluator.
func (r *Retrieval) Evaluate(ctx context.Context, m *engine.Model) (map[string]float64, error) {
	var images, texts [][]float32
	var owner []int
	var captions []string
	err := encodeDataset(ctx, m, r.Data, r.Batch, func(s data.Sample, emb []float32) error {
		if len(s.Captions) == 0 {
			return fmt.Errorf("%s: no caption", s.Name)
		}
		for _, c := range s.Captions {
			captions = append(captions, c)
			owner = append(owner, len(images))
		}
		images = append(images, emb)
		return nil
	})
	if err != nil {
		return nil, err
	}
	enc := textEncoder(m, r.Tokenize)
	bs := batchOr(r.Batch)
	for i := 0; i < len(captions); i += bs {
		e, err := enc(ctx, captions[i:min(i+bs, len(captions))])
		if err != nil {
			return nil, err
		}
		texts = append(texts, e...)
	}
	res, err := eval.Retrieval(images, texts, owner, eval.RetrievalKs)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{"images": float64(len(images))}
	for _, k := range eval.RetrievalKs {
		out[fmt.Sprintf("i2t_r%d", k)] = res.ImageToText.Recall[k]
		out[fmt.Sprintf("t2i_r%d", k)] = res.TextToImage.Recall[k]
	}
	return out, nil
}

func batchOr(b int) int {
	if b <= 0 {
		return 64
	}
	return b
}

// textEncoder encodes texts with m's text tower.
func textEncoder(m *engine.Model, tokenize func(string) ([]int, error)) eval.TextEncoder {
	return func(ctx context.Context, texts []string) ([][]float32, error) {
		ids := make([][]int, len(texts))
		for i, t := range texts {
			var err error
			if ids[i], err = tokenize(t); err != nil {
				return nil, fmt.Errorf("%q: %w", t, err)
			}
		}
		flat, err := m.EncodeTexts(ctx, ids)
		if err != nil {
			return nil, err
		}
		e := m.EmbedDim()
		out := make([][]float32, len(texts))
		for i := range out {
			out[i] = flat[i*e : (i+1)*e]
		}
		return out, nil
	}
}

// encodeDataset preprocesses every image of ds with the eval transform at
// the model's size, encodes it, and calls fn in dataset order. Unreadable
// images are errors: an evaluation set must be clean.
func encodeDataset(ctx context.Context, m *engine.Model, ds data.Dataset, batch int, fn func(data.Sample, []float32) error) error {
	opts := imageproc.DefaultOptions()
	opts.Size = m.ImageSize()
	pre := func(_ data.Sample, b []byte) ([]float32, error) { return imageproc.Preprocess(b, opts) }
	p := data.NewPipeline(ctx, ds, pre, data.PipelineOptions{BatchSize: batchOr(batch)})
	defer p.Close()
	plane := 3 * opts.Size * opts.Size
	e := m.EmbedDim()
	for {
		items, err := p.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		pixels := make([]float32, 0, len(items)*plane)
		for _, it := range items {
			if it.Err != nil {
				return fmt.Errorf("%s: %w", it.Sample.Name, it.Err)
			}
			pixels = append(pixels, it.Value...)
		}
		emb, err := m.EncodeImages(ctx, pixels, len(items))
		if err != nil {
			return err
		}
		for k, it := range items {
			if err := fn(it.Sample, emb[k*e:(k+1)*e]); err != nil {
				return err
			}
		}
	}
}
