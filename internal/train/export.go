package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// Files WriteModel writes into its directory.
const (
	ModelFile        = "open_clip_model.safetensors"
	OpenCLIPConfFile = "open_clip_config.json"
	ConfigFile       = "config.json"
)

// WriteModel writes a model in the open_clip hub layout that
// checkpoint.Open, the engine and open_clip load: dir/open_clip_model.safetensors
// (open_clip names, the config in its metadata), dir/open_clip_config.json
// (model_cfg and the CLIP preprocessing at the model's image size) and
// dir/config.json (the official config form; irregular towers carry the
// project's layer_heads/layer_mlp keys). weights must match arch exactly.
// Each file is written atomically (temporary file, fsync, rename); dir is
// created if needed.
func WriteModel(dir string, arch *config.Arch, weights map[string]*tensor.Tensor) error {
	if arch == nil {
		return fmt.Errorf("train: write model %s: nil architecture", dir)
	}
	shapes := make(map[string][]int, len(weights))
	for name, t := range weights {
		if t == nil {
			return fmt.Errorf("train: write model %s: %s: nil tensor", dir, name)
		}
		shapes[name] = t.Shape
	}
	if err := config.Check(arch, shapes); err != nil {
		return fmt.Errorf("train: write model %s: %w", dir, err)
	}
	cfg, err := json.MarshalIndent(arch.Config(), "", "  ")
	if err != nil {
		return fmt.Errorf("train: write model %s: %w", dir, err)
	}
	hub, err := json.MarshalIndent(map[string]any{
		"model_cfg": json.RawMessage(cfg),
		"preprocess_cfg": map[string]any{
			"mean":          []float64{0.48145466, 0.4578275, 0.40821073},
			"std":           []float64{0.26862954, 0.26130258, 0.27577711},
			"interpolation": "bicubic",
			"resize_mode":   "shortest",
			"size":          arch.Vision.ImageSize,
		},
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("train: write model %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("train: write model: %w", err)
	}
	names := make([]string, 0, len(weights))
	for name := range weights {
		names = append(names, name)
	}
	sort.Strings(names)
	list := make([]*tensor.Tensor, len(names))
	for i, name := range names {
		t := *weights[name]
		t.Name = name
		list[i] = &t
	}
	meta := map[string]string{"format": "pt", "config": string(cfg)}
	if err := safetensors.WriteFile(filepath.Join(dir, ModelFile), list, meta); err != nil {
		return fmt.Errorf("train: write model: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, OpenCLIPConfFile), append(hub, '\n')); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ConfigFile), append(cfg, '\n'))
}

// Export writes the student with WriteModel.
func (s *Student) Export(dir string) error {
	w, err := s.Weights()
	if err != nil {
		return err
	}
	return WriteModel(dir, &s.arch, w)
}

// writeFileAtomic writes data to path through a synced temporary file in
// the same directory and a rename.
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("train: %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("train: %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("train: %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("train: %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("train: %s: %w", path, err)
	}
	return nil
}
