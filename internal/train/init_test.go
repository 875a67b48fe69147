package train

import (
	"bytes"
	"math"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// TestInit checks that Init gives every tensor of zoo architectures
// (ViT, ResNet) and of an irregular one with the official distributions'
// scale, deterministically per seed.
func TestInit(t *testing.T) {
	archs := map[string]*config.Arch{}
	for _, name := range []string{"TinyCLIP-ViT-8M-16-Text-3M", "TinyCLIP-ResNet-19M-Text-19M"} {
		info, ok := config.Lookup(name)
		if !ok {
			t.Fatalf("%s not in the registry", name)
		}
		a, err := config.FromConfig(info.Config)
		if err != nil {
			t.Fatal(err)
		}
		archs[name] = a
	}
	archs["auto-pruned"], _ = loadModelDir(t, modelsPath(t, "auto-pruned", "open_clip"))
	std := func(v []float32) float64 {
		s := 0.0
		for _, x := range v {
			s += float64(x) * float64(x)
		}
		return math.Sqrt(s / float64(len(v)))
	}
	for name, a := range archs {
		w, err := Init(a, 7)
		if err != nil {
			t.Fatal(err)
		}
		shapes := map[string][]int{}
		for n, x := range w {
			shapes[n] = x.Shape
		}
		if err := config.Check(a, shapes); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "auto-pruned" { // small: determinism per seed
			again, _ := Init(a, 7)
			other, _ := Init(a, 8)
			if d := sameTensors(w, again); d != "" {
				t.Errorf("%s: Init is not deterministic: %s", name, d)
			}
			if bytes.Equal(w["text_projection"].Data, other["text_projection"].Data) {
				t.Errorf("%s: seeds 7 and 8 give the same text_projection", name)
			}
		}
		if InitialLogitScale != float32(math.Log(1/0.07)) {
			t.Fatalf("InitialLogitScale %v, want float32(ln(1/0.07))", InitialLogitScale)
		}
		if got := f32(t, w["logit_scale"])[0]; got != InitialLogitScale {
			t.Errorf("%s: logit_scale %v", name, got)
		}
		tw := float64(a.Text.Transformer.Width)
		checks := map[string]float64{
			"token_embedding.weight":                  0.02,
			"positional_embedding":                    0.01,
			"text_projection":                         1 / math.Sqrt(tw),
			"transformer.resblocks.0.mlp.c_fc.weight": 1 / math.Sqrt(2*tw),
		}
		if a.Vision.Kind == config.KindViT {
			checks["visual.proj"] = 1 / math.Sqrt(float64(a.Vision.Transformer.Width))
		} else {
			checks["visual.attnpool.q_proj.weight"] = 1 / math.Sqrt(float64(32*a.Vision.Width))
			// Kaiming-uniform a=√5: U(±1/√fan_in), std 1/√(3·fan_in).
			checks["visual.conv2.weight"] = 1 / math.Sqrt(3*float64(a.Vision.Width/2*9))
			if v := f32(t, w["visual.layer1.0.bn3.weight"]); maxAbs(v) != 0 {
				t.Errorf("%s: bn3.weight not zero", name)
			}
			if v := f32(t, w["visual.bn1.running_var"]); v[0] != 1 {
				t.Errorf("%s: running_var %v", name, v[0])
			}
		}
		for tn, want := range checks {
			x, ok := w[tn]
			if !ok {
				if a.Text.Transformer.Blocks[0].MLP == 0 && tn == "transformer.resblocks.0.mlp.c_fc.weight" {
					continue
				}
				t.Fatalf("%s: %s missing", name, tn)
			}
			v := f32(t, x)
			if len(v) < 1000 {
				continue // too few values for a 5 % check
			}
			if got := std(v); math.Abs(got-want) > 0.05*want {
				t.Errorf("%s: %s std %.4g, want %.4g", name, tn, got, want)
			}
		}
	}
}
