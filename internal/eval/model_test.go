package eval_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/eval"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
)

// TestClassifierFixtureModels builds the classifier of every fixture model
// with BuildClassifier (batches that straddle classes) and compares it with
// the official recipe computed directly here, in float64, from the same
// model's text embeddings of each class's prompts: normalise each, average,
// normalise. Tolerance 1e-5 per element.
func TestClassifierFixtureModels(t *testing.T) {
	ctx := context.Background()
	classes, _ := eval.ClassSet("cifar10")
	templates, _ := eval.TemplateSet("cifar18")
	templates = templates[:7]
	for _, name := range []string{"vit-p16", "vit-p32-quickgelu", "resnet", "auto-pruned"} {
		t.Run(name, func(t *testing.T) {
			m, err := tinyclip.Load(ctx, fixtures.Path(t, "fixtures", "models", name, "open_clip"))
			if err != nil {
				t.Fatal(err)
			}
			enc := func(ctx context.Context, texts []string) ([][]float32, error) {
				return m.EncodeTexts(ctx, texts, tinyclip.Raw())
			}
			got, err := eval.BuildClassifier(ctx, enc, classes, templates, eval.BuildOptions{BatchSize: 9})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(classes) {
				t.Fatalf("%d rows, want %d", len(got), len(classes))
			}
			worst := 0.0
			for c, class := range classes {
				var prompts []string
				for _, tpl := range templates {
					prompts = append(prompts, eval.Prompt(tpl, class))
				}
				raw, err := m.EncodeTexts(ctx, prompts, tinyclip.Raw())
				if err != nil {
					t.Fatal(err)
				}
				mean := make([]float64, m.EmbedDim())
				for _, r := range raw {
					var n float64
					for _, v := range r {
						n += float64(v) * float64(v)
					}
					for k, v := range r {
						mean[k] += float64(v) / math.Sqrt(n) / float64(len(raw))
					}
				}
				var n float64
				for _, v := range mean {
					n += v * v
				}
				for k := range mean {
					d := math.Abs(mean[k]/math.Sqrt(n) - float64(got[c][k]))
					worst = math.Max(worst, d)
				}
			}
			if worst > 1e-5 {
				t.Errorf("classifier differs from the direct recipe by up to %.2e > 1e-5", worst)
			}
			t.Logf("max abs difference from the direct recipe: %.2e", worst)

			// The root package's ZeroShot delegates to the same recipe.
			zs, err := m.ZeroShot(ctx, classes, templates)
			if err != nil {
				t.Fatal(err)
			}
			for c := range classes {
				for k, v := range zs.Weights()[c] {
					if math.Abs(float64(v-got[c][k])) > 1e-6 {
						t.Fatalf("ZeroShot row %d differs from BuildClassifier", c)
					}
				}
			}
		})
	}
}

// TestWeightsHashKeysTheCache checks that the model fingerprint used in the
// cache key follows the weights: the same files give the same hash, the
// files of another model another one.
func TestWeightsHashKeysTheCache(t *testing.T) {
	ctx := context.Background()
	dir := fixtures.Path(t, "fixtures", "models")
	hash := func(path string, opts ...tinyclip.Option) string {
		m, err := tinyclip.Load(ctx, path, opts...)
		if err != nil {
			t.Fatal(err)
		}
		h, err := m.WeightsHash()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	a := hash(filepath.Join(dir, "resnet", "open_clip"))
	if a2 := hash(filepath.Join(dir, "resnet", "open_clip")); a2 != a {
		t.Error("hash not deterministic")
	}
	if hash(filepath.Join(dir, "vit-p16", "open_clip")) == a {
		t.Error("vit-p16 has the hash of resnet")
	}
	// The same model stored in bfloat16: other weights, another hash.
	if hash(filepath.Join(dir, "resnet", "tinyclip_bf16.pt"), tinyclip.WithConfig(filepath.Join(dir, "resnet", "config.json"))) == a {
		t.Error("resnet/tinyclip_bf16.pt has the hash of resnet/open_clip")
	}
}
