package eval_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/eval"
)

// A zero-shot classifier from a text encoder (here a toy one that embeds a
// prompt by the animal it names), then the official scoring and top-k.
func ExampleBuildClassifier() {
	toy := func(ctx context.Context, texts []string) ([][]float32, error) {
		out := make([][]float32, len(texts))
		for i, t := range texts {
			switch {
			case strings.Contains(t, "cat"):
				out[i] = []float32{1, 0.1, 0}
			case strings.Contains(t, "dog"):
				out[i] = []float32{0.1, 1, 0}
			default:
				out[i] = []float32{0, 0, 1}
			}
		}
		return out, nil
	}
	classes := []string{"cat", "dog", "owl"}
	templates, _ := eval.TemplateSet("simple7")
	w, err := eval.BuildClassifier(context.Background(), toy, classes, templates, eval.BuildOptions{})
	if err != nil {
		log.Fatal(err)
	}
	image := []float32{0.2, 0.9, 0.1} // an image embedding, dog-like
	logits, _ := eval.Logits(nil, w, image)
	top := eval.TopK(logits, 2)
	fmt.Printf("%d classes × %d templates; best %s, then %s\n", len(w), len(templates), classes[top[0]], classes[top[1]])
	// Output:
	// 3 classes × 7 templates; best dog, then cat
}
