package train

import (
	"context"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/engine"
)

// TestTowersMatchEngine runs the four model fixtures (ViT GELU, ViT
// QuickGELU, ModifiedResNet with BatchNorm, the auto-pruned model with
// zero-head layers and zero-width MLPs) through the GoMLX graphs in
// evaluation mode and through internal/engine, from the same open_clip
// safetensors, and compares both with the official outputs.
func TestTowersMatchEngine(t *testing.T) {
	ctx := context.Background()
	pixels := readNpy(t, modelsPath(t, "inputs", "pixels.npy"))
	tokens := tokenRows(readNpy(t, modelsPath(t, "inputs", "tokens.npy")))
	n := pixels.Shape[0]
	for _, name := range []string{"vit-p16", "vit-p32-quickgelu", "resnet", "auto-pruned"} {
		t.Run(name, func(t *testing.T) {
			arch, weights := loadModelDir(t, modelsPath(t, name, "open_clip"))
			st, err := NewStudent(arch, weights)
			if err != nil {
				t.Fatal(err)
			}
			em, err := engine.Build(arch, weights, engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			e := arch.EmbedDim
			gotImg, err := st.EncodeImages(ctx, pixels.F32, n)
			if err != nil {
				t.Fatal(err)
			}
			gotTxt, err := st.EncodeTexts(ctx, tokens)
			if err != nil {
				t.Fatal(err)
			}
			engImg, err := em.EncodeImages(ctx, pixels.F32, n)
			if err != nil {
				t.Fatal(err)
			}
			engTxt, err := em.EncodeTexts(ctx, tokens)
			if err != nil {
				t.Fatal(err)
			}
			wantImg := readNpy(t, modelsPath(t, name, "expected", "image_features.npy")).F32
			wantTxt := readNpy(t, modelsPath(t, name, "expected", "text_features.npy")).F32
			// The engine and the fixtures agree to ~1e-6; the graph must land
			// as close (fixture bound 1e-4, README "Tolerances").
			const tol = 1e-5
			for _, c := range []struct {
				what      string
				got, want []float32
			}{
				{"image vs engine", gotImg, engImg},
				{"text vs engine", gotTxt, engTxt},
				{"image vs official", gotImg, wantImg},
				{"text vs official", gotTxt, wantTxt},
			} {
				r := rowRel(c.got, c.want, e)
				t.Logf("%s: %.2g", c.what, r)
				if r > tol {
					t.Errorf("%s: relative error %.3g > %g", c.what, r, tol)
				}
			}
		})
	}
}
