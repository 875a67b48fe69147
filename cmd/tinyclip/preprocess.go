package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tinyclip-go/tinyclip/internal/imageproc"
	"github.com/tinyclip-go/tinyclip/internal/npy"
)

func init() {
	register(command{"preprocess", "write the model input of images as .npy files", runPreprocess, 20})
}

func runPreprocess(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "preprocess", "--out DIR [--uint8] [--hf] [--size N] IMAGE...")
	out := fs.String("out", "", "output directory (created if missing); writes DIR/<file name>.npy")
	u8 := fs.Bool("uint8", false, "write the uint8 RGB image [S,S,3] after resize and crop instead of the float32 tensor [3,S,S]")
	hf := fs.Bool("hf", false, "Hugging Face CLIPImageProcessor variant: convert to RGB first, floor centre crop")
	size := fs.Int("size", 224, "output size S")
	maxPixels := fs.Int64("max-pixels", 0, "refuse images with more pixels than this (default: Pillow's limit)")
	images, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out DIR is required")
	}
	if len(images) == 0 {
		return usagef("no images given")
	}
	if *size < 1 || *size > 4096 {
		return usagef("--size must be in 1..4096, got %d", *size)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	opts := imageproc.DefaultOptions()
	opts.Size = *size
	if *hf {
		opts.Variant = imageproc.HF
	}
	if *maxPixels > 0 {
		opts.MaxPixels = *maxPixels
	}
	s := *size
	for _, path := range images {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if *u8 {
			pix, err := imageproc.PreprocessUint8(data, opts)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			err = npy.WriteUint8(&buf, []int{s, s, 3}, pix)
			if err != nil {
				return err
			}
		} else {
			t, err := imageproc.Preprocess(data, opts)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if err := npy.WriteFloat32(&buf, []int{3, s, s}, t); err != nil {
				return err
			}
		}
		dst := filepath.Join(*out, filepath.Base(path)+".npy")
		if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
