package main

import (
	"context"
	"fmt"
	"os"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/train"
)

func init() {
	register(command{"prune", "fuse the L0 gates of a masked (auto-inheritance) checkpoint into an irregular pruned model", runPrune, 81})
}

func runPrune(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "prune", "--model MASKED_CHECKPOINT --out DIR [--config config.json]")
	model := fs.String("model", "", "masked checkpoint saved before the fuse: a safetensors file or a directory holding one, with tower tensors and *.l0_module.* log-alphas (as 'tinyclip distill --inherit auto' writes them)")
	cfgPath := fs.String("config", "", "config.json giving the architecture (default: the checkpoint's own, else inferred from the shapes with head width 64)")
	out := fs.String("out", "", "output directory for the pruned model (open_clip safetensors + configs with per-layer dimensions)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	if *model == "" || *out == "" {
		return usagef("--model and --out are required")
	}
	var cfg *config.Config
	if *cfgPath != "" {
		b, err := os.ReadFile(*cfgPath)
		if err != nil {
			return err
		}
		if cfg, err = checkpoint.ParseConfig(b); err != nil {
			return fmt.Errorf("%s: %w", *cfgPath, err)
		}
	}
	arch, weights, l0, err := train.ReadMaskedModel(*model, cfg)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	masks, err := train.EvalMasks(arch, l0)
	if err != nil {
		return err
	}
	pa, pw, err := train.Prune(arch, weights, masks)
	if err != nil {
		return err
	}
	if err := train.WriteModel(*out, pa, pw); err != nil {
		return err
	}
	for _, t := range []struct {
		name     string
		full, pr *config.Transformer
	}{{"image", &arch.Vision.Transformer, &pa.Vision.Transformer}, {"text", &arch.Text.Transformer, &pa.Text.Transformer}} {
		heads := make([]int, len(t.pr.Blocks))
		mlp := make([]int, len(t.pr.Blocks))
		for i, b := range t.pr.Blocks {
			heads[i], mlp[i] = b.Heads, b.MLP
		}
		fmt.Fprintf(e.stderr, "%s: width %d of %d, heads per layer %v of %d, MLP widths %v of %d\n",
			t.name, t.pr.Width, t.full.Width, heads, t.full.Blocks[0].Heads, mlp, t.full.Blocks[0].MLP)
	}
	before, after := arch.Params(), pa.Params()
	fmt.Fprintf(e.stderr, "wrote %s: image %s → %s parameters, text (without the token embedding) %s → %s\n", *out,
		commas(before.Image), commas(after.Image), commas(before.TextNoTokenEmb), commas(after.TextNoTokenEmb))
	return nil
}
