package hf

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// TestMarshalConfigRoundTrip writes the CLIPConfig of every regular ViT
// in the registry and of a tiny head-width-16 model, reads it back with
// ParseConfig and compares the architectures; ResNet and irregular towers
// are refused.
func TestMarshalConfigRoundTrip(t *testing.T) {
	var archs []*config.Arch
	for _, m := range config.Models() {
		if m.Config == nil {
			continue
		}
		a, err := config.FromConfig(m.Config)
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := Representable(a); !ok {
			if a.Vision.Kind == config.KindViT {
				t.Errorf("%s: a regular ViT refused", m.Name)
			}
			continue
		}
		archs = append(archs, a)
	}
	tiny, err := config.Parse([]byte(`{"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8, "mlp_ratio": 2.5},
		"text_cfg": {"width": 32, "heads": 2, "layers": 3}}`))
	if err != nil {
		t.Fatal(err)
	}
	ta, err := config.FromConfig(tiny)
	if err != nil {
		t.Fatal(err)
	}
	archs = append(archs, ta)
	if len(archs) < 4 {
		t.Fatalf("only %d architectures to test", len(archs))
	}
	for _, a := range archs {
		b, err := MarshalConfig(a)
		if err != nil {
			t.Fatal(err)
		}
		if !IsCLIPConfig(b) {
			t.Fatalf("not recognised as a CLIPConfig:\n%s", b)
		}
		cfg, err := ParseConfig(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := config.FromConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, a) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, a)
		}
	}

	rn, _ := config.Lookup("RN50")
	ra, err := config.FromConfig(rn.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MarshalConfig(ra); !errors.Is(err, ErrNotRepresentable) {
		t.Errorf("ResNet: %v", err)
	}
	irr := *ta
	irr.Text.Transformer.Blocks = append([]config.Block(nil), ta.Text.Transformer.Blocks...)
	irr.Text.Transformer.Blocks[1].MLP = 64
	if _, err := MarshalConfig(&irr); !errors.Is(err, ErrNotRepresentable) {
		t.Errorf("irregular text tower: %v", err)
	}
}

func TestMarshalPreprocessor(t *testing.T) {
	b, err := MarshalPreprocessor(64)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["crop_size"].(map[string]any)["height"].(float64) != 64 {
		t.Errorf("%s", b)
	}
}
