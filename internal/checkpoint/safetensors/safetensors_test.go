package safetensors

import (
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"testing"
)

func TestOpenFixtures(t *testing.T) {
	for _, p := range []string{
		"vit-p16/open_clip/open_clip_model.safetensors",
		"vit-p32-quickgelu/hf/model.safetensors",
		"resnet/open_clip/open_clip_model.safetensors",
		"auto-pruned/open_clip/open_clip_model.safetensors",
	} {
		f, err := Open(fixtures.Path(t, "fixtures", "models", p))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(f.Tensors) == 0 {
			t.Errorf("%s: no tensors", p)
		}
		f.Close()
	}
}
