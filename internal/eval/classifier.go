// Package eval measures CLIP models as the TinyCLIP paper does: the zero-shot
// classifier of the official zero_shot.py (with an on-disk cache), top-k and
// per-class accuracy with a confusion matrix, and image–text retrieval
// recall@k as open_clip defines it. It also holds the official class names
// and prompt templates. Plots are in the subpackage plot.
//
// The package works on embeddings and on a text-encoding function, so any
// encoder can be evaluated; the tinyclip package and the CLI connect it to a
// loaded model.
package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
)

// TextEncoder returns one embedding per text: raw tower outputs or
// normalised ones (the classifier recipe normalises them either way).
type TextEncoder func(ctx context.Context, texts []string) ([][]float32, error)

// ErrNoClasses is returned when a classifier is built without classes.
var ErrNoClasses = errors.New("eval: no classes")

// Prompt fills a template: every "{}" is replaced by the class name, which is
// what Python's template.format(name) gives for the official templates (each
// has exactly one "{}").
func Prompt(template, class string) string { return strings.ReplaceAll(template, "{}", class) }

// BuildOptions configures BuildClassifier.
type BuildOptions struct {
	// BatchSize is the number of prompts per encoder call (default 256).
	// Prompts are encoded in class-major order; the batching does not change
	// the result.
	BatchSize int
	// Progress, if set, is called after each batch with the number of
	// prompts encoded so far and the total.
	Progress func(done, total int)
}

// BuildClassifier builds the zero-shot classifier of the official recipe
// (TinyCLIP's zero_shot_classifier, spec §8): for each class, in order, the
// prompts Prompt(t, class) for every template t are encoded, each embedding
// is L2-normalised, the embeddings are averaged, and the mean is normalised
// again. The result has one unit-norm row per class. With no templates the
// class names are used as they are ("{}").
func BuildClassifier(ctx context.Context, enc TextEncoder, classes, templates []string, opts BuildOptions) ([][]float32, error) {
	if len(classes) == 0 {
		return nil, ErrNoClasses
	}
	if len(templates) == 0 {
		templates = []string{"{}"}
	}
	for i, c := range classes {
		if strings.TrimSpace(c) == "" {
			return nil, fmt.Errorf("eval: class %d is blank", i)
		}
	}
	bs := opts.BatchSize
	if bs <= 0 {
		bs = 256
	}
	nt := len(templates)
	total := len(classes) * nt
	out := make([][]float32, len(classes))
	var sum []float64
	batch := make([]string, 0, bs)
	for start := 0; start < total; start += bs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		end := min(start+bs, total)
		batch = batch[:0]
		for p := start; p < end; p++ {
			batch = append(batch, Prompt(templates[p%nt], classes[p/nt]))
		}
		emb, err := enc(ctx, batch)
		if err != nil {
			return nil, fmt.Errorf("eval: encoding prompts of class %q: %w", classes[start/nt], err)
		}
		if len(emb) != len(batch) {
			return nil, fmt.Errorf("eval: text encoder returned %d embeddings for %d prompts", len(emb), len(batch))
		}
		for k, e := range emb {
			p := start + k
			if sum == nil {
				sum = make([]float64, len(e))
			}
			if len(e) != len(sum) || len(e) == 0 {
				return nil, fmt.Errorf("eval: text encoder returned an embedding of %d values, want %d", len(e), len(sum))
			}
			if p%nt == 0 {
				clear(sum)
			}
			// F.normalize: x / max(‖x‖, 1e-12), in float32.
			n := float32(max(norm(e), 1e-12))
			for d, v := range e {
				sum[d] += float64(v / n)
			}
			if p%nt == nt-1 {
				out[p/nt] = meanNormalized(sum, nt)
			}
		}
		if opts.Progress != nil {
			opts.Progress(end, total)
		}
	}
	return out, nil
}

// meanNormalized returns (sum/n) / ‖sum/n‖ in float32.
func meanNormalized(sum []float64, n int) []float32 {
	mean := make([]float32, len(sum))
	for d, v := range sum {
		mean[d] = float32(v / float64(n))
	}
	nm := float32(max(norm(mean), 1e-12))
	for d := range mean {
		mean[d] /= nm
	}
	return mean
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// Scale is the fixed factor of the official zero-shot logits (not the
// model's logit scale).
const Scale = 100

// Logits returns Scale · normalize(image) · Wᵀ for one image embedding (raw or
// normalised) against a classifier W (unit rows), written into dst when it
// has room.
func Logits(dst []float32, classifier [][]float32, image []float32) ([]float32, error) {
	n := float32(max(norm(image), 1e-12))
	if cap(dst) >= len(classifier) {
		dst = dst[:len(classifier)]
	} else {
		dst = make([]float32, len(classifier))
	}
	for c, w := range classifier {
		if len(w) != len(image) {
			return nil, fmt.Errorf("eval: image embedding has %d values, classifier rows %d", len(image), len(w))
		}
		var s float32
		for d, v := range w {
			s += v * (image[d] / n)
		}
		dst[c] = Scale * s
	}
	return dst, nil
}
