package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// Preprocessing variants (spec §4.1 and §4.7).
const (
	// VariantOpenCLIP is the official transform: resize, centre crop
	// rounding half to even, conversion to RGB after cropping.
	VariantOpenCLIP = "open_clip"
	// VariantHF is transformers' CLIPImageProcessor: conversion to RGB
	// first, centre crop offsets rounded down.
	VariantHF = "hf"
)

// CLIP's normalisation constants, the default of both variants.
var (
	clipMean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	clipStd  = [3]float32{0.26862954, 0.26130258, 0.27577711}
)

// PreprocessConfig is the image transform a model directory declares, from
// open_clip_config.json's preprocess_cfg or Hugging Face's
// preprocessor_config.json, with the defaults of each for missing keys.
type PreprocessConfig struct {
	// Variant is VariantOpenCLIP or VariantHF.
	Variant string
	// Size is the resize target: the shorter side's length (ResizeMode
	// "shortest") or the longer side's ("longest"); 0 when the images are
	// not resized (ResizeMode "") or are resized to exactly
	// CropHeight×CropWidth ("squash").
	Size int
	// CropHeight and CropWidth are the centre crop; 0 means no crop.
	CropHeight, CropWidth int
	// Mean and Std normalise each RGB channel after scaling to [0, 1],
	// rounded to float32 as the reference implementations use them
	// (identity 0 and 1 when the config disables normalisation).
	Mean, Std [3]float32
	// RescaleFactor scales the uint8 values (1/255 unless the config says
	// otherwise; 1 when rescaling is disabled).
	RescaleFactor float64
	// Interpolation is the resize filter: "bicubic", "bilinear", "nearest",
	// "lanczos", "box" or "hamming".
	Interpolation string
	// ResizeMode is "shortest", "longest" or "squash" (open_clip's modes).
	ResizeMode string
	// FillColor is open_clip's padding value (0 to 255).
	FillColor int
}

// rgb decodes a 3-element list of numbers, rounded to float32.
func rgb(raw json.RawMessage, what string) ([3]float32, error) {
	var v []float64
	if err := json.Unmarshal(raw, &v); err != nil || len(v) != 3 {
		return [3]float32{}, fmt.Errorf("%s: want 3 numbers, got %s", what, raw)
	}
	return [3]float32{float32(v[0]), float32(v[1]), float32(v[2])}, nil
}

func present(m map[string]json.RawMessage, k string) (json.RawMessage, bool) {
	raw, ok := m[k]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return nil, false
	}
	return raw, true
}

// parseOpenCLIPPreprocess reads the preprocess_cfg of an
// open_clip_config.json body; nil when it has none.
func parseOpenCLIPPreprocess(data []byte) (*PreprocessConfig, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, err
	}
	raw, ok := present(top, "preprocess_cfg")
	if !ok {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("preprocess_cfg: not an object")
	}
	p := &PreprocessConfig{Variant: VariantOpenCLIP, Size: 224, CropHeight: 224, CropWidth: 224,
		Mean: clipMean, Std: clipStd, RescaleFactor: 1.0 / 255, Interpolation: "bicubic", ResizeMode: "shortest"}
	var err error
	if raw, ok := present(m, "size"); ok {
		var n int
		var hw []int
		switch {
		case json.Unmarshal(raw, &n) == nil && n > 0:
			p.Size, p.CropHeight, p.CropWidth = n, n, n
		case json.Unmarshal(raw, &hw) == nil && len(hw) == 2 && hw[0] > 0 && hw[1] > 0:
			p.CropHeight, p.CropWidth = hw[0], hw[1]
			if hw[0] == hw[1] {
				p.Size = hw[0]
			} else {
				p.Size = 0
			}
		default:
			return nil, fmt.Errorf("preprocess_cfg.size: want a positive int or [height, width], got %s", raw)
		}
	}
	for _, f := range []struct {
		key string
		dst *[3]float32
	}{{"mean", &p.Mean}, {"std", &p.Std}} {
		if raw, ok := present(m, f.key); ok {
			if *f.dst, err = rgb(raw, "preprocess_cfg."+f.key); err != nil {
				return nil, err
			}
		}
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"interpolation", &p.Interpolation}, {"resize_mode", &p.ResizeMode}} {
		if raw, ok := present(m, f.key); ok {
			if err := json.Unmarshal(raw, f.dst); err != nil {
				return nil, fmt.Errorf("preprocess_cfg.%s: want a string, got %s", f.key, raw)
			}
		}
	}
	if p.ResizeMode == "squash" {
		p.Size = 0
	}
	if raw, ok := present(m, "fill_color"); ok {
		if err := json.Unmarshal(raw, &p.FillColor); err != nil || p.FillColor < 0 || p.FillColor > 255 {
			return nil, fmt.Errorf("preprocess_cfg.fill_color: want 0..255, got %s", raw)
		}
	}
	return p, nil
}

// hfSize decodes a transformers size: an int, {"shortest_edge": n} or
// {"height": h, "width": w}.
func hfSize(raw json.RawMessage, what string) (shortest, h, w int, err error) {
	var n int
	if json.Unmarshal(raw, &n) == nil && n > 0 {
		return n, n, n, nil
	}
	var m map[string]int
	if json.Unmarshal(raw, &m) == nil {
		if s, ok := m["shortest_edge"]; ok && s > 0 {
			return s, s, s, nil
		}
		if h, w := m["height"], m["width"]; h > 0 && w > 0 {
			return 0, h, w, nil
		}
	}
	return 0, 0, 0, fmt.Errorf("%s: want an int, {\"shortest_edge\": n} or {\"height\": h, \"width\": w}, got %s", what, raw)
}

// parseHFPreprocess reads a preprocessor_config.json body.
func parseHFPreprocess(data []byte) (*PreprocessConfig, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	p := &PreprocessConfig{Variant: VariantHF, Size: 224, CropHeight: 224, CropWidth: 224,
		Mean: clipMean, Std: clipStd, RescaleFactor: 1.0 / 255, Interpolation: "bicubic", ResizeMode: "shortest"}
	flag := func(k string) (bool, error) {
		raw, ok := present(m, k)
		if !ok {
			return true, nil
		}
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return false, fmt.Errorf("%s: want a bool, got %s", k, raw)
		}
		return b, nil
	}
	var err error
	var sizeH, sizeW int
	if raw, ok := present(m, "size"); ok {
		if p.Size, sizeH, sizeW, err = hfSize(raw, "size"); err != nil {
			return nil, err
		}
		if p.Size == 0 {
			p.ResizeMode = "squash"
		}
	}
	if raw, ok := present(m, "crop_size"); ok {
		if _, p.CropHeight, p.CropWidth, err = hfSize(raw, "crop_size"); err != nil {
			return nil, err
		}
	}
	if raw, ok := present(m, "resample"); ok {
		var r int
		names := []string{"nearest", "lanczos", "bilinear", "bicubic", "box", "hamming"}
		if err := json.Unmarshal(raw, &r); err != nil || r < 0 || r >= len(names) {
			return nil, fmt.Errorf("resample: want a PIL filter number 0..5, got %s", raw)
		}
		p.Interpolation = names[r]
	}
	for _, f := range []struct {
		key string
		dst *[3]float32
	}{{"image_mean", &p.Mean}, {"image_std", &p.Std}} {
		if raw, ok := present(m, f.key); ok {
			if *f.dst, err = rgb(raw, f.key); err != nil {
				return nil, err
			}
		}
	}
	if raw, ok := present(m, "rescale_factor"); ok {
		if err := json.Unmarshal(raw, &p.RescaleFactor); err != nil || !(p.RescaleFactor > 0) || math.IsInf(p.RescaleFactor, 0) {
			return nil, fmt.Errorf("rescale_factor: want a positive number, got %s", raw)
		}
	}
	resize, err := flag("do_resize")
	if err != nil {
		return nil, err
	}
	crop, err := flag("do_center_crop")
	if err != nil {
		return nil, err
	}
	switch {
	case !resize:
		p.Size, p.ResizeMode = 0, ""
	case p.ResizeMode == "squash":
		// Resized to exactly size; a different crop afterwards is not
		// expressible here (and no CLIP processor does it).
		if crop && (p.CropHeight != sizeH || p.CropWidth != sizeW) {
			return nil, fmt.Errorf("size %dx%d followed by a %dx%d centre crop is not supported", sizeH, sizeW, p.CropHeight, p.CropWidth)
		}
		p.CropHeight, p.CropWidth = sizeH, sizeW
		crop = true
	}
	if !crop {
		p.CropHeight, p.CropWidth = 0, 0
	}
	rescale, err := flag("do_rescale")
	if err != nil {
		return nil, err
	}
	if !rescale {
		p.RescaleFactor = 1
	}
	norm, err := flag("do_normalize")
	if err != nil {
		return nil, err
	}
	if !norm {
		p.Mean, p.Std = [3]float32{}, [3]float32{1, 1, 1}
	}
	return p, nil
}
