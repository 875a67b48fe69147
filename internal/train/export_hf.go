package train

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint/hf"
	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// HFCompatible reports whether a model of architecture a has a Hugging
// Face transformers CLIPModel form: a ViT image tower and both towers with
// the same heads and MLP width in every layer.
func HFCompatible(a *config.Arch) bool {
	ok, _ := hf.Representable(a)
	return ok
}

// WriteHF writes a model as a Hugging Face transformers CLIPModel
// directory: dir/config.json (CLIPConfig), dir/preprocessor_config.json
// (CLIPImageProcessor at the model's image size) and dir/model.safetensors
// (transformers tensor names). Each file is written atomically. The
// architecture must be HFCompatible.
func WriteHF(dir string, arch *config.Arch, weights map[string]*tensor.Tensor) error {
	cfg, err := hf.MarshalConfig(arch)
	if err != nil {
		return fmt.Errorf("train: write HF model %s: %w", dir, err)
	}
	pre, err := hf.MarshalPreprocessor(arch.Vision.ImageSize)
	if err != nil {
		return err
	}
	ts, err := hf.FromOpenCLIP(weights)
	if err != nil {
		return fmt.Errorf("train: write HF model %s: %w", dir, err)
	}
	names := make([]string, 0, len(ts))
	for n := range ts {
		names = append(names, n)
	}
	sort.Strings(names)
	list := make([]*tensor.Tensor, len(names))
	for i, n := range names {
		list[i] = ts[n]
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("train: write HF model: %w", err)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), list, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("train: write HF model: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "preprocessor_config.json"), pre); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "config.json"), cfg)
}
