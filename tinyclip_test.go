package tinyclip

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/npy"
)

// manifest is the part of fixtures/models/manifest.json the tests use.
type manifest struct {
	Tolerances struct {
		EmbeddingRel float64 `json:"embedding_rel"`
		LogitsAbs    float64 `json:"logits_abs"`
		ProbsAbs     float64 `json:"probs_abs"`
	} `json:"tolerances"`
	Models []struct {
		Name       string  `json:"name"`
		Config     string  `json:"config"`
		LogitScale float64 `json:"logit_scale"`
		Files      []struct {
			Path   string `json:"path"`
			Format string `json:"format"`
			Config string `json:"config"`
			Dir    string `json:"dir"`
		} `json:"files"`
	} `json:"models"`
}

func readManifest(t *testing.T) (*manifest, string) {
	t.Helper()
	dir := fixtures.Path(t, "fixtures", "models")
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Tolerances.EmbeddingRel == 0 || len(m.Models) != 4 {
		t.Fatalf("manifest: unexpected content (tolerances %+v, %d models)", m.Tolerances, len(m.Models))
	}
	return &m, dir
}

func readNpy(t *testing.T, path string) *npy.Array {
	t.Helper()
	a, err := npy.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// maxRelErr is the fixtures' embedding error: per row max_i |got−want| / ‖want‖₂,
// maximum over rows.
func maxRelErr(t *testing.T, got [][]float32, want []float32, dim int) float64 {
	t.Helper()
	if len(got)*dim != len(want) {
		t.Fatalf("got %d rows of %d, want %d values", len(got), dim, len(want))
	}
	worst := 0.0
	for r, row := range got {
		if len(row) != dim {
			t.Fatalf("row %d has %d values, want %d", r, len(row), dim)
		}
		w := want[r*dim : (r+1)*dim]
		var norm, mx float64
		for i := range w {
			norm += float64(w[i]) * float64(w[i])
			mx = math.Max(mx, math.Abs(float64(row[i])-float64(w[i])))
		}
		worst = math.Max(worst, mx/math.Sqrt(norm))
	}
	return worst
}

type modelCase struct {
	model, file  string // model name and path relative to fixtures/models
	load, config string // what to pass to Load and WithConfig ("" for none)
}

// fixtureCases lists every file of every fixture model, as Load is meant to
// be called on it: weight files with the model's config, directories as they are.
func fixtureCases(t *testing.T) ([]modelCase, *manifest, string) {
	m, dir := readManifest(t)
	var cases []modelCase
	for _, mod := range m.Models {
		for _, f := range mod.Files {
			cfg := f.Config
			if cfg == "" {
				cfg = mod.Config
			}
			cases = append(cases, modelCase{mod.Name, f.Path, filepath.Join(dir, f.Path), filepath.Join(dir, cfg)})
			if f.Dir != "" { // a Hugging Face directory
				cases = append(cases, modelCase{mod.Name, f.Dir + "/", filepath.Join(dir, f.Dir), ""})
			}
		}
		// open_clip directories carry open_clip_config.json.
		cases = append(cases, modelCase{mod.Name, mod.Name + "/open_clip/", filepath.Join(dir, mod.Name, "open_clip"), ""})
	}
	// Official layout: config.json next to the only weight file.
	for _, name := range []string{"vit-p16", "vit-p32-quickgelu", "auto-pruned"} {
		cases = append(cases, modelCase{name, name + "/", filepath.Join(dir, name), ""})
	}
	return cases, m, dir
}

func TestFixtureModels(t *testing.T) {
	cases, man, dir := fixtureCases(t)
	pixels := readNpy(t, filepath.Join(dir, "inputs", "pixels.npy"))
	var texts []string
	b, err := os.ReadFile(filepath.Join(dir, "inputs", "texts.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &texts); err != nil {
		t.Fatal(err)
	}
	tol := man.Tolerances
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			var opts []Option
			if c.config != "" {
				opts = append(opts, WithConfig(c.config))
			}
			m, err := Load(ctx, c.load, opts...)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			exp := filepath.Join(dir, c.model, "expected")
			ls := readNpy(t, filepath.Join(exp, "logit_scale.npy")).F32
			if m.LogitScale() != ls[0] {
				t.Errorf("logit_scale %v, want %v", m.LogitScale(), ls[0])
			}
			if e := float32(math.Exp(float64(m.LogitScale()))); math.Abs(float64(e-ls[1]))/float64(ls[1]) > 1e-6 {
				t.Errorf("exp(logit_scale) %v, want %v", e, ls[1])
			}
			dim := m.EmbedDim()
			n := pixels.Shape[0]

			imgRaw, err := m.EncodePixels(ctx, pixels.F32, n, Raw())
			if err != nil {
				t.Fatal(err)
			}
			txtRaw, err := m.EncodeTexts(ctx, texts, Raw())
			if err != nil {
				t.Fatal(err)
			}
			img, err := m.EncodePixels(ctx, pixels.F32, n)
			if err != nil {
				t.Fatal(err)
			}
			txt, err := m.EncodeTexts(ctx, texts)
			if err != nil {
				t.Fatal(err)
			}
			for _, chk := range []struct {
				name string
				got  [][]float32
			}{{"image_features", imgRaw}, {"text_features", txtRaw}, {"image_embeds", img}, {"text_embeds", txt}} {
				e := maxRelErr(t, chk.got, readNpy(t, filepath.Join(exp, chk.name+".npy")).F32, dim)
				t.Logf("%s: max relative error %.2e", chk.name, e)
				if e > tol.EmbeddingRel {
					t.Errorf("%s: max relative error %.3e > %g", chk.name, e, tol.EmbeddingRel)
				}
			}

			// logits_per_image = exp(s) · image_embeds · text_embedsᵀ.
			wantLogits := readNpy(t, filepath.Join(exp, "logits_per_image.npy")).F32
			scale := math.Exp(float64(m.LogitScale()))
			var worst float64
			for i := range img {
				for j := range txt {
					got := scale * float64(Cosine(img[i], txt[j]))
					worst = math.Max(worst, math.Abs(got-float64(wantLogits[i*len(txt)+j])))
				}
			}
			t.Logf("logits: max abs error %.2e", worst)
			if worst > tol.LogitsAbs {
				t.Errorf("logits: max abs error %.3e > %g", worst, tol.LogitsAbs)
			}

			probs, err := m.Classify(ctx, img, texts[:1])
			if err != nil {
				t.Fatal(err)
			}
			if len(probs) != n || probs[0][0] != 1 {
				t.Errorf("one label: probs %v, want 1", probs[0])
			}
		})
	}
}

// TestClassifyProbs checks Classify against probs.npy: softmax over the 8
// fixture texts. The empty text is not a valid label, so the check replaces
// the probabilities through its logit (probs of the other 7 renormalised).
func TestClassifyProbs(t *testing.T) {
	_, dir := readManifest(t)
	pixels := readNpy(t, filepath.Join(dir, "inputs", "pixels.npy"))
	var texts []string
	b, _ := os.ReadFile(filepath.Join(dir, "inputs", "texts.json"))
	if err := json.Unmarshal(b, &texts); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"vit-p16", "vit-p32-quickgelu", "auto-pruned"} {
		m, err := Load(ctx, filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := m.EncodePixels(ctx, pixels.F32, pixels.Shape[0])
		if err != nil {
			t.Fatal(err)
		}
		labels := append(append([]string(nil), texts[:1]...), texts[2:]...) // drop the empty text
		probs, err := m.Classify(ctx, img, labels)
		if err != nil {
			t.Fatal(err)
		}
		want := readNpy(t, filepath.Join(dir, name, "expected", "probs.npy")).F32
		for i, row := range probs {
			w := want[i*8 : (i+1)*8]
			rest := 1 - float64(w[1])
			wl := append(append([]float32(nil), w[:1]...), w[2:]...)
			for j := range row {
				if d := math.Abs(float64(row[j]) - float64(wl[j])/rest); d > 2e-3 {
					t.Errorf("%s image %d label %d: prob %v, want %v", name, i, j, row[j], float64(wl[j])/rest)
				}
			}
		}
	}
}
