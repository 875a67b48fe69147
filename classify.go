package tinyclip

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/eval"
)

// Classify scores each image embedding against the texts labels, as the
// Hugging Face quick start of the TinyCLIP models does: probabilities =
// softmax over labels of exp(logit_scale) · cos(image, label). images are
// embeddings from EncodeImages or EncodeImageBytes. The result has one row of
// len(labels) probabilities per image.
func (m *Model) Classify(ctx context.Context, images [][]float32, labels []string) ([][]float32, error) {
	if len(labels) == 0 {
		return nil, ErrNoLabels
	}
	for i, l := range labels {
		if strings.TrimSpace(l) == "" {
			return nil, fmt.Errorf("%w: label %d", ErrEmptyText, i)
		}
	}
	texts, err := m.EncodeTexts(ctx, labels)
	if err != nil {
		return nil, err
	}
	scale := math.Exp(float64(m.LogitScale()))
	out := make([][]float32, len(images))
	for i, img := range images {
		if len(img) != m.EmbedDim() {
			return nil, fmt.Errorf("tinyclip: image embedding %d has %d values, want %d", i, len(img), m.EmbedDim())
		}
		logits := make([]float64, len(texts))
		for j, t := range texts {
			logits[j] = scale * float64(Cosine(img, t))
		}
		out[i] = softmax(logits)
	}
	return out, nil
}

// ZeroShot builds a zero-shot classifier as the official zero_shot.py does:
// for each class, every template is filled with the class name ("{}" is
// replaced), the texts are encoded and L2-normalised, averaged, and the mean
// is normalised again. With no templates the class names are used as they are.
func (m *Model) ZeroShot(ctx context.Context, classes, templates []string) (*Classifier, error) {
	if len(classes) == 0 {
		return nil, ErrNoLabels
	}
	if len(templates) == 0 {
		templates = []string{"{}"}
	}
	for i, name := range classes {
		if strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("%w: class %d", ErrEmptyText, i)
		}
	}
	enc := func(ctx context.Context, texts []string) ([][]float32, error) {
		return m.EncodeTexts(ctx, texts, Raw())
	}
	w, err := eval.BuildClassifier(ctx, enc, classes, templates, eval.BuildOptions{})
	if err != nil {
		return nil, err
	}
	c := &Classifier{Classes: append([]string(nil), classes...), weights: w, dim: m.EmbedDim()}
	return c, nil
}

// Classifier is a zero-shot classifier: one unit-norm text embedding per class.
type Classifier struct {
	Classes []string
	weights [][]float32
	dim     int
}

// Weights returns the classifier's class embeddings, one row per class.
func (c *Classifier) Weights() [][]float32 { return c.weights }

// Logits returns 100 · image · classifierᵀ for one normalised image
// embedding, the official zero-shot scoring (a fixed factor of 100, not the
// model's logit scale).
func (c *Classifier) Logits(image []float32) ([]float32, error) {
	if len(image) != c.dim {
		return nil, fmt.Errorf("tinyclip: image embedding has %d values, want %d", len(image), c.dim)
	}
	out := make([]float32, len(c.weights))
	for i, w := range c.weights {
		var s float32
		for k, v := range w {
			s += v * image[k]
		}
		out[i] = 100 * s
	}
	return out, nil
}

// Probabilities returns the softmax of Logits.
func (c *Classifier) Probabilities(image []float32) ([]float32, error) {
	l, err := c.Logits(image)
	if err != nil {
		return nil, err
	}
	f := make([]float64, len(l))
	for i, v := range l {
		f[i] = float64(v)
	}
	return softmax(f), nil
}

func softmax(x []float64) []float32 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = math.Max(mx, v)
	}
	var sum float64
	e := make([]float64, len(x))
	for i, v := range x {
		e[i] = math.Exp(v - mx)
		sum += e[i]
	}
	out := make([]float32, len(x))
	for i := range e {
		out[i] = float32(e[i] / sum)
	}
	return out
}
