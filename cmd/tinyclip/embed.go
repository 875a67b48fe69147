package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/tinyclip-go/tinyclip"
)

func init() {
	register(command{"embed", "embed images and texts with a model (JSON Lines)", runEmbed, 30})
}

// modelFlags are the flags shared by the commands that load a model.
type modelFlags struct {
	model   *string
	config  *string
	vocab   *string
	threads *int
	spin    *time.Duration
}

func addModelFlags(fs *flag.FlagSet) modelFlags {
	return modelFlags{
		model:   fs.String("model", "", "model: a .pt or .safetensors file, a model directory, a zoo name (see 'tinyclip models'), a Hugging Face repo id org/name[@revision] or a release URL; downloaded into the Hugging Face cache when needed"),
		config:  fs.String("config", "", "config.json giving the architecture (needed for checkpoints without one whose head width is not 64)"),
		vocab:   fs.String("vocab", "", "tokenizer vocabulary file (default: the one next to the model, else built in)"),
		threads: fs.Int("threads", 0, "goroutines per call (default GOMAXPROCS)"),
		spin:    fs.Duration("spin", 0, "how long idle engine threads poll for work before sleeping, e.g. 50us (default 0: sleep at once; see tinyclip.SetSpinWait)"),
	}
}

// load resolves and loads the --model (defaultModel when it is empty), with
// the flags' options and extra ones.
func (f modelFlags) load(ctx context.Context, e *env, defaultModel string, extra ...tinyclip.Option) (*tinyclip.Model, error) {
	path := *f.model
	if path == "" {
		if defaultModel == "" {
			return nil, usagef("--model is required")
		}
		path = defaultModel
	}
	resolved, err := resolveModelCtx(ctx, e.stderr, path)
	if err != nil {
		return nil, err
	}
	var opts []tinyclip.Option
	if *f.config != "" {
		opts = append(opts, tinyclip.WithConfig(*f.config))
	}
	if *f.vocab != "" {
		opts = append(opts, tinyclip.WithVocab(*f.vocab))
	}
	if *f.threads > 0 {
		opts = append(opts, tinyclip.WithThreads(*f.threads))
	}
	if *f.spin < 0 {
		return nil, usagef("--spin must not be negative")
	}
	tinyclip.SetSpinWait(*f.spin)
	return tinyclip.Load(ctx, resolved, append(opts, extra...)...)
}

// input is one --image or --text argument, in command-line order.
type input struct {
	image bool
	value string
}

// inputList collects --image and --text flags in the order given.
type inputList struct {
	list  *[]input
	image bool
}

func (l inputList) String() string { return "" }
func (l inputList) Set(v string) error {
	*l.list = append(*l.list, input{image: l.image, value: v})
	return nil
}

func runEmbed(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "embed", "--model PATH [--config JSON] [--vocab PATH] [--raw] [--image FILE]... [--text STRING]...")
	mf := addModelFlags(fs)
	raw := fs.Bool("raw", false, "print the towers' raw outputs (official encode_image/encode_text) instead of L2-normalised embeddings")
	var inputs []input
	fs.Var(inputList{&inputs, true}, "image", "image file to embed (repeatable)")
	fs.Var(inputList{&inputs, false}, "text", "text to embed (repeatable; may be empty)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q: use --image FILE or --text STRING", pos)
	}
	if *mf.model == "" {
		return usagef("--model is required")
	}
	if len(inputs) == 0 {
		return usagef("nothing to embed: give --image FILE and/or --text STRING")
	}
	m, err := mf.load(ctx, e, "")
	if err != nil {
		return err
	}
	var eo []tinyclip.EncodeOption
	if *raw {
		eo = append(eo, tinyclip.Raw())
	}
	// Encode images and texts in one batch each, then print in input order.
	var images, texts []string
	for _, in := range inputs {
		if in.image {
			images = append(images, in.value)
		} else {
			texts = append(texts, in.value)
		}
	}
	imgEmb, err := encodeImageFiles(ctx, m, images, eo)
	if err != nil {
		return err
	}
	txtEmb, err := m.EncodeTexts(ctx, texts, eo...)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(e.stdout)
	enc := json.NewEncoder(w)
	for _, in := range inputs {
		var emb []float32
		if in.image {
			emb, imgEmb = imgEmb[0], imgEmb[1:]
		} else {
			emb, txtEmb = txtEmb[0], txtEmb[1:]
		}
		kind := "text"
		if in.image {
			kind = "image"
		}
		if err := enc.Encode(struct {
			Input     string    `json:"input"`
			Type      string    `json:"type"`
			Embedding []float32 `json:"embedding"`
		}{in.value, kind, emb}); err != nil {
			return err
		}
	}
	return w.Flush()
}

// encodeImageFiles preprocesses and encodes image files in one batch.
func encodeImageFiles(ctx context.Context, m *tinyclip.Model, paths []string, eo []tinyclip.EncodeOption) ([][]float32, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	var pixels []float32
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		t, err := m.Preprocess(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		pixels = append(pixels, t...)
	}
	return m.EncodePixels(ctx, pixels, len(paths), eo...)
}
